//! `supportlake ingest` end to end: the real binary, real files, a real lake on disk.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("receipt has no {key}: {v}"))
}

fn data_files(lake: &Path) -> Vec<PathBuf> {
    walk(&lake.join("events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

#[test]
fn ingesting_the_same_files_twice_adds_nothing() {
    let dir = tmp();
    let gen_dir = dir.path().join("gen");
    generate(&gen_dir, 2, 60, 7);
    let lake = dir.path().join("lake");
    let files = source_files(&gen_dir);

    let (code, first) = ingest(&lake, &files);
    assert_eq!(code, 0, "{first}");
    let stored = n(&first, "accepted");
    assert!(stored > 1000, "{first}");
    assert_eq!(n(&first, "duplicates"), 0);
    let before = sql_csv(&lake, ALL_EVENTS);
    let files_before = data_files(&lake);

    let (code, second) = ingest(&lake, &files);
    assert_eq!(code, 0, "{second}");
    assert_eq!(n(&second, "accepted"), 0, "{second}");
    assert_eq!(n(&second, "duplicates"), n(&first, "events"));
    assert_eq!(sql_csv(&lake, ALL_EVENTS), before);
    assert_eq!(
        data_files(&lake),
        files_before,
        "no new files for nothing new"
    );
    let count = sql_csv(
        &lake,
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events",
    );
    assert_eq!(count, format!("n,d\n{stored},{stored}\n"));
}

/// A tiny deterministic shuffle, so the test does not depend on a random source.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (seed >> 33) as usize % (i + 1);
        items.swap(i, j);
    }
}

#[test]
fn shuffled_and_overlapping_files_make_the_same_lake() {
    let dir = tmp();
    let gen_dir = dir.path().join("gen");
    generate(&gen_dir, 3, 50, 11);
    let in_order = dir.path().join("lake-in-order");
    let (code, receipt) = ingest(&in_order, &source_files(&gen_dir));
    assert_eq!(code, 0, "{receipt}");

    // Per source, shuffle every line and deal them into three files that overlap: each line
    // lands in one file, and every third line in a second one too.
    let mut shuffled_files = Vec::new();
    for (s, source) in ["agent-log", "whatsapp", "chatwoot"]
        .into_iter()
        .enumerate()
    {
        let mut lines: Vec<String> = walk(&gen_dir.join(source))
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        shuffle(&mut lines, 42 + s as u64);
        let mut parts = vec![String::new(), String::new(), String::new()];
        for (i, l) in lines.iter().enumerate() {
            parts[i % 3].push_str(l);
            parts[i % 3].push('\n');
            if i % 3 == 0 {
                parts[(i + 1) % 3].push_str(l);
                parts[(i + 1) % 3].push('\n');
            }
        }
        for (k, p) in parts.into_iter().enumerate() {
            let f = dir.path().join(format!("{source}-part{k}.jsonl"));
            std::fs::write(&f, p).unwrap();
            shuffled_files.push(f);
        }
    }
    shuffle(&mut shuffled_files, 7);
    let shuffled = dir.path().join("lake-shuffled");
    let (code, r2) = ingest(&shuffled, &shuffled_files);
    assert_eq!(code, 0, "{r2}");
    assert!(
        n(&r2, "duplicates") > 0,
        "the overlap is seen as duplicates: {r2}"
    );
    assert_eq!(n(&r2, "accepted"), n(&receipt, "accepted"));
    assert_eq!(
        sql_csv(&shuffled, ALL_EVENTS),
        sql_csv(&in_order, ALL_EVENTS)
    );
}

#[test]
fn bad_input_keeps_the_good_records_and_exits_2() {
    let dir = tmp();
    let lake = dir.path().join("lake");
    let files: Vec<PathBuf> = [
        "bad/malformed-json.jsonl",
        "bad/wrong-type.jsonl",
        "bad/missing-field.jsonl",
        "bad/unknown-type.jsonl",
        "bad/impossible-timestamp.jsonl",
        "bad/truncated.jsonl",
        "bad/non-utf8.jsonl",
        "bad/not-an-object.jsonl",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let (code, r) = ingest(&lake, &files);
    assert_eq!(code, 2, "{r}");
    // Each file holds the same two good events (ids ok-1, ok-2): stored once.
    assert_eq!(n(&r, "accepted"), 2, "{r}");
    assert_eq!(n(&r, "rejected_records"), 22, "{r}");
    let by = &r["rejected"];
    assert_eq!(by["invalid_json"], 2);
    assert_eq!(by["bad_timestamp"], 4);
    assert_eq!(by["not_utf8"], 1);
    assert_eq!(by["truncated"], 1);
    assert_eq!(by["not_an_object"], 4);

    // The quarantine holds every rejected record, raw, with its reasons.
    let q = PathBuf::from(r["rejected_file"].as_str().unwrap());
    assert!(q.starts_with(lake.join("_rejected")), "{}", q.display());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&q)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 22);
    let non_utf8 = lines
        .iter()
        .find(|l| l["rejects"][0]["code"] == "not_utf8")
        .unwrap();
    assert!(non_utf8["raw_base64"].as_str().is_some(), "{non_utf8}");
    let unknown = lines
        .iter()
        .find(|l| l["rejects"][0]["code"] == "unknown_type")
        .unwrap();
    assert!(
        unknown["input"]
            .as_str()
            .unwrap()
            .ends_with("unknown-type.jsonl")
    );
    assert_eq!(unknown["record"], 2);
    assert!(
        unknown["raw"]
            .as_str()
            .unwrap()
            .contains("conversation.exploded")
    );
}

#[test]
fn one_bad_item_of_a_webhook_body_does_not_lose_the_others() {
    let dir = tmp();
    let lake = dir.path().join("lake");
    let mut c = bin();
    c.arg("ingest")
        .arg("--lake")
        .arg(&lake)
        .args(["--source", "whatsapp", "--quiet"])
        .arg(fixture("bad/whatsapp-partial.jsonl"));
    let (code, out, _) = run(&mut c);
    assert_eq!(code, 2, "{out}");
    let stored = out
        .lines()
        .find(|l| l.trim_start().starts_with("stored (new)"))
        .unwrap();
    assert_eq!(stored.split_whitespace().last(), Some("1"), "{out}");
    assert!(
        out.contains("record 1 at entry[0].changes[0].value.messages[1], field `entry[0].changes[0].value.messages[1].timestamp`"),
        "{out}"
    );
    let ids = sql_csv(&lake, "SELECT event_id FROM events");
    assert_eq!(ids, "event_id\nwamid.OK1\n");
}

#[test]
fn a_100_mb_line_is_rejected_without_losing_its_neighbours() {
    let dir = tmp();
    let lake = dir.path().join("lake");
    let path = dir.path().join("huge.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, r#"{{"id":"before","ts":"2026-11-02T12:00:00Z","type":"message.received","conversation_id":"c-1"}}"#).unwrap();
        write!(f, r#"{{"id":"huge","ts":"2026-11-02T12:00:01Z","type":"message.received","conversation_id":"c-1","attrs":{{"blob":""#).unwrap();
        let block = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&block).unwrap();
        }
        writeln!(f, r#""}}}}"#).unwrap();
        writeln!(f, r#"{{"id":"after","ts":"2026-11-02T12:00:02Z","type":"message.received","conversation_id":"c-1"}}"#).unwrap();
    }
    let (code, r) = ingest(&lake, std::slice::from_ref(&path));
    assert_eq!(code, 2, "{r}");
    assert_eq!(n(&r, "accepted"), 2);
    assert_eq!(r["rejected"]["too_long"], 1);
    assert!(
        r["examples"][0].as_str().unwrap().contains("record 2"),
        "{r}"
    );
    let q: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(r["rejected_file"].as_str().unwrap())
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(q["raw_truncated"], true);
    assert!(q["raw_bytes"].as_u64().unwrap() > 100 << 20);
    assert!(q["raw"].as_str().unwrap().len() <= 64 << 10);
    assert_eq!(
        sql_csv(&lake, "SELECT event_id FROM events ORDER BY ts"),
        "event_id\nbefore\nafter\n"
    );
}

#[test]
fn stdin_and_pretty_printed_documents_are_inputs_too() {
    let dir = tmp();
    let lake = dir.path().join("lake");
    let mut child = bin()
        .arg("ingest")
        .arg("--lake")
        .arg(&lake)
        .args(["--receipt", "json", "--quiet", "-"])
        .arg(fixture("whatsapp/batched-entries.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(fixture("agent-log/every-type.jsonl")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n(&r, "accepted"), 15 + 5);
    let by_source = sql_csv(
        &lake,
        "SELECT source, count(*) AS n FROM events GROUP BY source ORDER BY source",
    );
    assert_eq!(by_source, "source,n\nagent_log,15\nwhatsapp,5\n");
}

#[test]
fn fatal_errors_exit_1_with_a_clear_message() {
    let dir = tmp();
    let lake = dir.path().join("lake");
    let good = fixture("agent-log/every-type.jsonl");

    let (code, _, err) = run(bin()
        .env_remove("SUPPORTLAKE_PSEUDONYM_KEY")
        .arg("ingest")
        .arg("--lake")
        .arg(&lake)
        .arg(&good));
    assert_eq!(code, 1);
    assert!(err.contains("SUPPORTLAKE_PSEUDONYM_KEY"), "{err}");
    assert!(err.contains("supportlake keygen"), "{err}");

    let (code, _, err) = run(bin()
        .env("SUPPORTLAKE_PSEUDONYM_KEY", "short")
        .arg("ingest")
        .arg("--lake")
        .arg(&lake)
        .arg(&good));
    assert_eq!(code, 1);
    assert!(err.contains("at least 16"), "{err}");
    assert!(!err.contains("short\""), "the key is never echoed: {err}");

    let (code, _, err) = run(bin()
        .arg("ingest")
        .arg("--lake")
        .arg(&lake)
        .arg(dir.path().join("missing.jsonl")));
    assert_eq!(code, 1);
    assert!(err.contains("missing.jsonl"), "{err}");

    // A second writer is refused while one holds the lake.
    let paths = supportlake::lake::LakePaths::new(&lake);
    let lock = supportlake::lake::LakeLock::acquire(&paths, "test holder, pid 1").unwrap();
    let (code, _, err) = run(bin().arg("ingest").arg("--lake").arg(&lake).arg(&good));
    assert_eq!(code, 1);
    assert!(
        err.contains("in use by another supportlake process (test holder, pid 1)"),
        "{err}"
    );
    drop(lock);
    let (code, _) = ingest(&lake, &[good]);
    assert_eq!(code, 0);
}

#[test]
fn files_being_written_are_invisible_and_cleaned_up() {
    let dir = tmp();
    let lake = dir.path().join("lake");
    let good = fixture("agent-log/every-type.jsonl");
    assert_eq!(ingest(&lake, std::slice::from_ref(&good)).0, 0);
    let partition = lake.join("events/date=2026-11-02");
    // What a crash mid-write leaves: a torn file under the temp name.
    let torn = partition.join(".00000000000000000100-00000000000000000200.parquet.tmp");
    std::fs::write(&torn, b"PAR1 torn").unwrap();
    assert_eq!(
        sql_csv(&lake, "SELECT count(*) AS n FROM events"),
        "n\n15\n"
    );
    let other = fixture("whatsapp/statuses.jsonl");
    assert_eq!(ingest(&lake, &[other]).0, 0);
    assert!(
        !torn.exists(),
        "the next writer removes uncommitted temp files"
    );
    assert_eq!(
        sql_csv(&lake, "SELECT count(*) AS n FROM events"),
        "n\n19\n"
    );
}

#[test]
fn no_phone_number_name_or_text_reaches_the_lake() {
    let dir = tmp();
    let gen_dir = dir.path().join("gen");
    generate(&gen_dir, 1, 80, 3);
    let lake = dir.path().join("lake");
    assert_eq!(ingest(&lake, &source_files(&gen_dir)).0, 0);
    let dump = sql_csv(&lake, "SELECT * FROM events");
    // Customers from the simulation's truth: their numbers (any 8-digit tail) must be absent.
    let truth = std::fs::read_to_string(gen_dir.join("truth/conversations.csv")).unwrap();
    let mut checked = 0;
    for row in truth.lines().skip(1) {
        let customer = row.split(',').nth(2).unwrap();
        if let Some(digits) = customer.strip_prefix('+') {
            let tail = &digits[digits.len() - 8..];
            assert!(
                !dump.contains(tail),
                "phone digits {tail} found in the lake"
            );
            checked += 1;
        }
    }
    assert!(checked > 50);
    // Profile names and message text as the sources sent them.
    let raw = walk(&gen_dir.join("whatsapp"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<String>();
    let mut names = 0;
    for part in raw.split(r#""profile":{"name":""#).skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(
            !dump.contains(name),
            "profile name {name:?} found in the lake"
        );
        names += 1;
    }
    for part in raw.split(r#""body":""#).skip(1).take(200) {
        let text = part.split('"').next().unwrap();
        if text.len() > 12 {
            assert!(
                !dump.contains(text),
                "message text {text:?} found in the lake"
            );
        }
    }
    assert!(names > 50);
}

#[test]
fn the_committed_sample_is_the_generators_output_and_ingests_cleanly() {
    let sample = manifest_dir().join("sample-data/simulated");
    let dir = tmp();
    let again = dir.path().join("again");
    run_ok(
        bin().arg("generate").arg("--out").arg(&again).args([
            "--days",
            "7",
            "--conversations-per-day",
            "40",
            "--seed",
            "2026",
            "--start",
            "2026-11-02",
            "--quiet",
        ]),
        0,
    );
    let ours: Vec<PathBuf> = walk(&sample);
    let theirs: Vec<PathBuf> = walk(&again);
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{} differs from a fresh run of the generator",
            a.display()
        );
    }
    let lake = dir.path().join("lake");
    let (code, r) = ingest(&lake, &source_files(&sample));
    assert_eq!(code, 0, "{r}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sample.join("manifest.json")).unwrap())
            .unwrap();
    let skipped: u64 = r["skipped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        n(&r, "events") + skipped,
        manifest["events"].as_u64().unwrap(),
        "{r}"
    );
}
