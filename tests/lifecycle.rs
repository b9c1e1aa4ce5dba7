//! The lake's lifecycle through the real binary: compaction under concurrent readers and
//! SIGKILL, rollups after shuffled, late and duplicated ingests, and the server's upkeep.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{ALL_EVENTS, bin, generate, request, run, run_ok, sql_csv, walk};

/// Lines of a generated dataset, by source, shuffled with a seed and every `dup`-th line
/// repeated; written as `chunks` rounds of files.
fn shuffled_chunks(
    data: &Path,
    out: &Path,
    chunks: usize,
    dup: usize,
    seed: u64,
) -> Vec<Vec<PathBuf>> {
    let mut lines: Vec<(&str, String)> = Vec::new();
    for source in ["agent-log", "whatsapp", "chatwoot"] {
        for f in walk(&data.join(source)) {
            for l in std::fs::read_to_string(f).unwrap().lines() {
                lines.push((source, l.to_owned()));
            }
        }
    }
    common::shuffle(&mut lines, &mut common::xorshift(seed));
    let again: Vec<_> = lines.iter().step_by(dup).cloned().collect();
    lines.extend(again);
    std::fs::create_dir_all(out).unwrap();
    let per = lines.len().div_ceil(chunks);
    lines
        .chunks(per)
        .enumerate()
        .map(|(k, chunk)| {
            let mut files = Vec::new();
            for source in ["agent-log", "whatsapp", "chatwoot"] {
                let mine: Vec<&str> = chunk
                    .iter()
                    .filter(|(s, _)| *s == source)
                    .map(|(_, l)| l.as_str())
                    .collect();
                if !mine.is_empty() {
                    let p = out.join(format!("{k:03}-{source}.jsonl"));
                    std::fs::write(&p, mine.join("\n")).unwrap();
                    files.push(p);
                }
            }
            files
        })
        .collect()
}

fn ingest_quiet(lake: &Path, files: &[PathBuf], extra: &[&str]) {
    let (code, out, err) = run(bin()
        .arg("ingest")
        .arg("--lake")
        .arg(lake)
        .args(["--quiet", "--receipt", "json"])
        .args(extra)
        .args(files));
    assert!(
        code == 0 || code == 2,
        "ingest failed ({code}):\n{out}\n{err}"
    );
}

fn data_files(lake: &Path) -> Vec<PathBuf> {
    walk(&lake.join("events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

const COUNT: &str = "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events";

#[test]
fn compaction_keeps_every_event_exactly_once_under_readers_and_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, 3, 80, 5);
    let lake = dir.path().join("lake");
    // Many small deliveries: every ingest run adds a file to each day it touches.
    for files in shuffled_chunks(&data, &dir.path().join("chunks"), 12, 1_000_000, 9) {
        ingest_quiet(&lake, &files, &["--no-rollup"]);
    }
    let before_files = data_files(&lake).len();
    assert!(before_files >= 24, "{before_files} files");
    let baseline = sql_csv(&lake, COUNT);
    let all_before = sql_csv(&lake, ALL_EVENTS);
    let n: u64 = baseline
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 5_000, "{baseline}");
    assert_eq!(baseline.lines().nth(1).unwrap(), format!("{n},{n}"));

    // A reader counts over and over while compactions run and are killed.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (lake, stop, baseline) = (lake.clone(), Arc::clone(&stop), baseline.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                assert_eq!(sql_csv(&lake, COUNT), baseline, "a read during compaction");
                reads += 1;
            }
            reads
        })
    };
    for delay_ms in [5u64, 20, 60, 150, 300, 600] {
        let mut child = bin()
            .args(["compact", "--quiet", "--target-rows", "900", "--lake"])
            .arg(&lake)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(
            sql_csv(&lake, COUNT),
            baseline,
            "after a SIGKILL at {delay_ms} ms"
        );
    }
    let out = run_ok(
        bin()
            .args(["compact", "--target-rows", "900", "--lake"])
            .arg(&lake),
        0,
    );
    assert!(out.contains("files: "), "{out}");
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();
    assert!(reads >= 3, "only {reads} reads ran during compaction");

    // Replaced files are still there for readers; with no grace they go.
    assert!(data_files(&lake).len() > before_files / 2);
    let out = run_ok(
        bin()
            .args(["compact", "--grace", "0s", "--lake"])
            .arg(&lake),
        0,
    );
    assert!(out.contains("replaced files deleted"), "{out}");
    let after_files = data_files(&lake).len();
    assert!(
        after_files * 2 < before_files,
        "{before_files} → {after_files} files\n{out}"
    );
    assert!(
        !walk(&lake.join("events"))
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".tmp")),
        "no temp file is left"
    );
    assert_eq!(sql_csv(&lake, COUNT), baseline);
    assert_eq!(sql_csv(&lake, ALL_EVENTS), all_before);

    // DuckDB-style readers that glob the folder see every event once after the grace period.
    // (The writer still dedupes against merged files: ingesting everything again adds nothing.)
    for files in shuffled_chunks(&data, &dir.path().join("again"), 2, 1_000_000, 3) {
        ingest_quiet(&lake, &files, &["--no-rollup"]);
    }
    assert_eq!(sql_csv(&lake, COUNT), baseline);
}

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        r#"timezone = "America/Sao_Paulo"
[metrics]
calendar = "default"
[calendars.default]
mon = ["08:00-18:00"]
tue = ["08:00-18:00"]
wed = ["08:00-18:00"]
thu = ["08:00-18:00"]
fri = ["08:00-18:00"]
[[sla.policies]]
name = "all"
first_response = "5m"
next_response = "10m"
resolution = "2h"
calendar = "default"
"#,
    )
    .unwrap();
    p
}

fn sql_with(lake: &Path, cfg: &Path, query: &str, from_events: bool) -> (String, String) {
    let mut c = bin();
    c.env("SUPPORTLAKE_LOG", "info")
        .args(["sql", "--format", "csv", "--lake"])
        .arg(lake)
        .arg("--config")
        .arg(cfg);
    if from_events {
        c.arg("--from-events");
    }
    let (code, out, err) = run(c.arg(query));
    assert_eq!(code, 0, "{err}");
    (out, err)
}

fn metric_json(lake: &Path, cfg: &Path, name: &str, from_events: bool) -> String {
    let mut c = bin();
    c.args(["metrics", name, "--lake"])
        .arg(lake)
        .arg("--config")
        .arg(cfg)
        .args([
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-07",
            "--interval",
            "day",
            "--group-by",
            "team",
            "--now",
            "2026-11-06T12:00:00Z",
            "--format",
            "json",
        ]);
    if from_events {
        c.arg("--from-events");
    }
    run_ok(&mut c, 0)
}

#[test]
fn rollups_after_shuffled_late_duplicated_ingests_equal_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let data = dir.path().join("data");
    generate(&data, 4, 50, 17);
    let lake = dir.path().join("lake");
    // Four rounds in shuffled order (later rounds bring events of earlier days: late
    // events), every 5th line twice. Each ingest refreshes the rollups.
    for files in shuffled_chunks(&data, &dir.path().join("chunks"), 4, 5, 21) {
        ingest_quiet(&lake, &files, &["--config", cfg.to_str().unwrap()]);
    }
    assert!(lake.join("_rollup/state.json").is_file());
    let tables = [
        "SELECT * FROM conversations ORDER BY conversation_id",
        "SELECT * FROM conversation_links ORDER BY event_id",
        "SELECT * FROM conversation_intervals ORDER BY conversation_id, open_from",
        "SELECT * FROM sla_targets ORDER BY conversation_id, metric, applied_at, policy",
        "SELECT * FROM conversation_owners ORDER BY conversation_id, ts, kind_rank, event_id",
        "SELECT * FROM conversation_messages ORDER BY event_id",
    ];
    let check = |label: &str| {
        for q in tables {
            let (rolled, log) = sql_with(&lake, &cfg, q, false);
            assert!(
                log.contains("derived tables read from the rollups"),
                "{label}: {log}"
            );
            let (raw, log) = sql_with(&lake, &cfg, q, true);
            assert!(!log.contains("read from the rollups"), "{label}: {log}");
            assert!(rolled.lines().count() > 10, "{label}: {q}");
            assert_eq!(rolled, raw, "{label}: {q}");
        }
        for m in [
            "wait",
            "handle",
            "open_conversations",
            "messages",
            "service_level",
            "abandonment",
            "csat",
            "sla",
            "agent_activity",
        ] {
            assert_eq!(
                metric_json(&lake, &cfg, m, false),
                metric_json(&lake, &cfg, m, true),
                "{label}: {m}"
            );
        }
    };
    check("incremental");

    let out = run_ok(
        bin()
            .args(["rollup", "--lake"])
            .arg(&lake)
            .arg("--config")
            .arg(&cfg),
        0,
    );
    assert!(out.contains("up to date"), "{out}");
    let out = run_ok(
        bin()
            .args(["rollup", "--rebuild", "--step-events", "5000", "--lake"])
            .arg(&lake)
            .arg("--config")
            .arg(&cfg),
        0,
    );
    assert!(out.contains("rebuilt"), "{out}");
    check("rebuilt");

    // Events the rollups have not seen: the command line computes from the events.
    let extra = dir.path().join("late.jsonl");
    std::fs::write(
        &extra,
        r#"{"id":"late-1","ts":"2026-11-03T12:00:00Z","type":"conversation.opened","conversation_id":"late-conv","team":"late-team"}"#,
    )
    .unwrap();
    ingest_quiet(&lake, &[extra], &["--no-rollup"]);
    let (out, log) = sql_with(
        &lake,
        &cfg,
        "SELECT count(*) FROM conversations WHERE conversation_id = 'late-conv'",
        false,
    );
    assert!(log.contains("behind the events"), "{log}");
    assert!(out.ends_with("1\n"), "{out}");
}

const READ: &str = "read-token-0123456789";
const INGEST: &str = "ingest-token-0123456789";

struct Server {
    child: Child,
    http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(lake: &Path, cfg: &Path, extra: &[&str]) -> Server {
    let mut child = bin()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--flush-interval",
            "0.2",
            "--lake",
        ])
        .arg(lake)
        .arg("--config")
        .arg(cfg)
        .args(extra)
        .env("SUPPORTLAKE_TOKENS", format!("read:{READ},ingest:{INGEST}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http = loop {
        let line = lines.next().expect("serve announces its address").unwrap();
        if let Some(a) = line.strip_prefix("listening on http://") {
            break a.to_owned();
        }
    };
    Server { child, http }
}

fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {READ}");
    let (status, _, body) = request(addr, "GET", path, &[("Authorization", &auth)], b"");
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The events of a conversation opened at `hour`:00Z on `day`, queued 10 s later and
/// answered by an agent `reply_s` seconds after that, as JSON lines.
fn conversation(id: &str, day: &str, hour: u32, reply_s: u32) -> String {
    format!(
        "{{\"id\":\"o-{id}\",\"ts\":\"{day}T{hour:02}:00:00Z\",\"type\":\"conversation.opened\",\"conversation_id\":\"{id}\",\"team\":\"t\"}}\n\
         {{\"id\":\"q-{id}\",\"ts\":\"{day}T{hour:02}:00:10Z\",\"type\":\"conversation.queued\",\"conversation_id\":\"{id}\",\"team\":\"t\"}}\n\
         {{\"id\":\"m-{id}\",\"ts\":\"{day}T{hour:02}:{:02}:{:02}Z\",\"type\":\"message.sent\",\"author\":\"agent\",\"agent_id\":\"a\",\"conversation_id\":\"{id}\",\"team\":\"t\"}}\n",
        (10 + reply_s) / 60,
        (10 + reply_s) % 60,
    )
}

/// Posts JSON lines to the server's event endpoint; they must be acknowledged.
fn post_events(addr: &str, body: &str) {
    let auth = format!("Bearer {INGEST}");
    let (status, _, b) = request(
        addr,
        "POST",
        "/ingest/events",
        &[("Authorization", &auth)],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
}

/// A counter of the server's `/metrics`.
fn counter(addr: &str, name: &str) -> u64 {
    let (status, _, body) = request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[test]
fn serve_refreshes_rollups_after_flushes_and_compacts_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let lake = dir.path().join("lake");
    let s = serve(&lake, &cfg, &["--compact-interval", "1s", "--grace", "0s"]);
    // Ten deliveries, each its own flush: ten small files in one day.
    for k in 0..10 {
        post_events(
            &s.http,
            &conversation(&format!("c{k}"), "2026-11-04", 10 + k, 60),
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    // The wait of every conversation is 60 s; all ten show once the rollups caught up.
    let path = "/api/v1/metrics/wait?from=2026-11-04&to=2026-11-05";
    wait_for("the rollups to hold all ten conversations", || {
        let v = get_json(&s.http, path);
        v["series"][0]["points"][0]["count"] == 10
    });
    let v = get_json(&s.http, path);
    assert_eq!(v["series"][0]["points"][0]["value"], 60.0, "{v}");
    // Compaction merged the day's small files (and, with no grace, deleted the inputs).
    let day = lake.join("events/date=2026-11-04");
    wait_for("compaction", || {
        std::fs::read_dir(&day)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count()
            == 1
    });
    assert!(counter(&s.http, "supportlake_compaction_files_merged_total") >= 2);
    let v = get_json(&s.http, path);
    assert_eq!(v["series"][0]["points"][0]["count"], 10, "{v}");
}

/// The server keeps the rows of ended intervals across rollup refreshes and asks again only
/// for the intervals from the first partition a refresh changed. After a new conversation
/// on the last day, and after a late reply on the first day, a question asked before
/// answers exactly what a question never asked before answers.
#[test]
fn kept_interval_rows_follow_every_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let lake = dir.path().join("lake");
    // The first three conversations are ingested with their rollups before the server
    // starts, so every session of the server reads rollups.
    let first = dir.path().join("first.jsonl");
    std::fs::write(
        &first,
        conversation("c2", "2026-11-02", 15, 60)
            + &conversation("c3", "2026-11-03", 15, 120)
            + &conversation("c4", "2026-11-04", 15, 180),
    )
    .unwrap();
    ingest_quiet(&lake, &[first], &["--config", cfg.to_str().unwrap()]);
    let s = serve(&lake, &cfg, &["--compact-interval", "0s"]);
    let post = |body: String| post_events(&s.http, &body);
    let series = |v: &serde_json::Value| v["series"].clone();
    let day_point = |v: &serde_json::Value, day: &str| {
        v["series"][0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["start"].as_str().unwrap().starts_with(day))
            .cloned()
            .unwrap()
    };
    // Asked again after every change: its rows are kept from one state to the next.
    let kept = "/api/v1/metrics/wait?from=2026-11-02&to=2026-11-06&interval=day";
    // A question of the same answer never asked before (its start differs by seconds).
    let asked = std::cell::Cell::new(0u32);
    let fresh_of = |metric: &str, to: &str| {
        asked.set(asked.get() + 1);
        let n = asked.get();
        get_json(
            &s.http,
            &format!(
                "/api/v1/metrics/{metric}?from=2026-11-02T00:{:02}:{:02}-03:00&to={to}&interval=day",
                n / 60,
                n % 60
            ),
        )
    };
    let fresh = || fresh_of("wait", "2026-11-06");
    // The same pair for `sla`, whose ended intervals read "now".
    let kept_sla = "/api/v1/metrics/sla?from=2026-11-02&to=2026-11-06&interval=day";
    let fresh_sla = || fresh_of("sla", "2026-11-06");
    let reused = || counter(&s.http, "supportlake_query_kept_rows_reused_total");

    let v = get_json(&s.http, kept);
    assert_eq!(day_point(&v, "2026-11-02")["value"], 60.0, "{v}");
    assert_eq!(day_point(&v, "2026-11-03")["value"], 120.0, "{v}");
    assert_eq!(series(&v), series(&fresh()));
    assert_eq!(series(&get_json(&s.http, kept_sla)), series(&fresh_sla()));
    let before = reused();
    // The same question ending two days earlier reuses the rows kept above, without the
    // days past its end.
    let v = get_json(
        &s.http,
        "/api/v1/metrics/wait?from=2026-11-02&to=2026-11-04&interval=day",
    );
    assert_eq!(v["series"][0]["points"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(series(&v), series(&fresh_of("wait", "2026-11-04")));
    assert!(reused() > before, "the kept rows were not used");
    let before = reused();

    // A new conversation at 01:00Z on 11-04 — 22:00 on 11-03 in São Paulo: its partition is
    // the UTC day 11-04, its interval the local day 11-03. The rows of 11-02 stay; 11-03 on
    // are asked again.
    post(conversation("c3b", "2026-11-04", 1, 300));
    wait_for("the new conversation", || {
        day_point(&fresh(), "2026-11-03")["count"] == 2
    });
    let v = get_json(&s.http, kept);
    // 11-03: (120 + 300) / 2 = 210 s over two conversations.
    assert_eq!(day_point(&v, "2026-11-03")["value"], 210.0, "{v}");
    assert_eq!(series(&v), series(&fresh()));
    assert_eq!(series(&get_json(&s.http, kept_sla)), series(&fresh_sla()));
    assert!(reused() > before, "the kept rows were not used");

    // A late, earlier reply in the first day's conversation: everything is asked again.
    post(
        "{\"id\":\"m-c2-early\",\"ts\":\"2026-11-02T15:00:40Z\",\"type\":\"message.sent\",\"author\":\"agent\",\"agent_id\":\"a\",\"conversation_id\":\"c2\",\"team\":\"t\"}\n"
            .to_string(),
    );
    wait_for("the late reply", || {
        day_point(&fresh(), "2026-11-02")["value"] == 30.0
    });
    let v = get_json(&s.http, kept);
    // 11-02: the reply 30 s after queueing is now the first one.
    assert_eq!(day_point(&v, "2026-11-02")["value"], 30.0, "{v}");
    assert_eq!(series(&v), series(&fresh()));
    assert_eq!(series(&get_json(&s.http, kept_sla)), series(&fresh_sla()));
}
