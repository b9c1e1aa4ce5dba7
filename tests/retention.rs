//! `supportlake retention` with an injected clock (`--now`), and `serve` applying
//! `[retention]` at start. The expected numbers are counted by hand from the input below.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::{bin, run, run_ok, walk};
use parquet::arrow::ArrowWriter;

/// Agent-log events per UTC day.
const DAYS: [(&str, usize); 5] = [
    ("2020-01-01", 2),
    ("2026-11-01", 3),
    ("2026-11-02", 2),
    ("2026-11-05", 4),
    ("2026-11-06", 1),
];

fn events_file(dir: &Path, days: &[(&str, usize)]) -> PathBuf {
    let mut lines = String::new();
    for (day, n) in days {
        for i in 0..*n {
            lines.push_str(&format!(
                r#"{{"id":"{day}-{i}","ts":"{day}T10:0{i}:00Z","type":"conversation.opened","conversation_id":"c-{day}-{i}","channel":"whatsapp"}}"#
            ));
            lines.push('\n');
        }
    }
    let p = dir.join("events.jsonl");
    fs::write(&p, lines).unwrap();
    p
}

/// A derived-table partition of `rows` rows.
fn derived(lake: &Path, table: &str, day: &str, rows: usize) {
    let dir = lake.join(table).join(format!("date={day}"));
    fs::create_dir_all(&dir).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("conv", DataType::Utf8, false)]));
    let convs: Vec<String> = (0..rows).map(|i| format!("c-{day}-{i}")).collect();
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(convs))]).unwrap();
    let f = File::create(dir.join(format!("{:020}-{:020}.parquet", 1, rows))).unwrap();
    let mut w = ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn count(lake: &Path) -> u64 {
    let out = run_ok(
        bin()
            .args(["sql", "--format", "csv", "--lake"])
            .arg(lake)
            .arg("SELECT count(*) FROM events"),
        0,
    );
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

fn retention(lake: &Path, config: &Path, args: &[&str]) -> serde_json::Value {
    let out = run_ok(
        bin()
            .args(["retention", "--format", "json", "--lake"])
            .arg(lake)
            .arg("--config")
            .arg(config)
            .args(args),
        0,
    );
    serde_json::from_str(&out).unwrap()
}

fn snapshot(lake: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(lake)
        .into_iter()
        .filter(|p| !p.ends_with("_lock"))
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn retention_drops_exactly_the_expired_partitions_at_the_injected_date() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Without the rollups ingest would build: this test places derived partitions itself.
    run_ok(
        bin()
            .args(["ingest", "--quiet", "--no-rollup", "--lake"])
            .arg(&lake)
            .arg(events_file(dir.path(), &DAYS)),
        0,
    );
    assert_eq!(count(&lake), 12);
    derived(&lake, "conversations", "2026-11-01", 2);
    derived(&lake, "conversations", "2026-11-05", 1);
    let rejected = lake.join("_rejected");
    fs::create_dir_all(&rejected).unwrap();
    fs::write(rejected.join("20261101T100000Z-1.jsonl"), "{}\n{}\n").unwrap();
    fs::write(rejected.join("http-20261105T100000.000001-0.jsonl"), "{}\n").unwrap();
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        "[retention]\nevents = \"3d\"\nconversations = \"3d\"\nrejected = \"2d\"\n",
    )
    .unwrap();

    // 2026-11-06 minus 3 days: partitions before 2026-11-03 go (2 + 3 + 2 = 7 events);
    // quarantine before 2026-11-04.
    let now = ["--now", "2026-11-06T10:00:00Z"];
    let before = snapshot(&lake);
    let plan = retention(&lake, &config, &[&["--dry-run"][..], &now].concat());
    let listed: Vec<(String, String, u64)> = plan["expired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["table"].as_str().unwrap().to_owned(),
                e["date"].as_str().unwrap().to_owned(),
                e["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, u64)> = [
        ("events", "2020-01-01", 2),
        ("events", "2026-11-01", 3),
        ("events", "2026-11-02", 2),
        ("conversations", "2026-11-01", 2),
        ("rejected", "2026-11-01", 2),
    ]
    .iter()
    .map(|(t, d, n)| ((*t).to_owned(), (*d).to_owned(), *n))
    .collect();
    assert_eq!(listed, expected);
    assert_eq!(plan["dropped"].as_array().unwrap().len(), 0);
    assert_eq!(snapshot(&lake), before, "a dry run changes nothing");
    assert_eq!(count(&lake), 12);
    let text = run_ok(
        bin()
            .args(["retention", "--dry-run", "--lake"])
            .arg(&lake)
            .arg("--config")
            .arg(&config)
            .args(now),
        0,
    );
    assert!(
        text.contains("would drop (dry run")
            && text.contains("events/date=2026-11-02")
            && text.contains("keeps 3 day(s): from 2026-11-03"),
        "{text}"
    );

    let done = retention(&lake, &config, &now);
    assert_eq!(done["dropped"], plan["expired"]);
    assert_eq!(count(&lake), 12 - 7);
    for gone in [
        "events/date=2020-01-01",
        "events/date=2026-11-01",
        "events/date=2026-11-02",
        "conversations/date=2026-11-01",
        "_rejected/20261101T100000Z-1.jsonl",
    ] {
        assert!(!lake.join(gone).exists(), "{gone}");
    }
    assert!(lake.join("conversations/date=2026-11-05").exists());
    assert!(
        rejected
            .join("http-20261105T100000.000001-0.jsonl")
            .exists()
    );
    let again = retention(&lake, &config, &now);
    assert_eq!(again["expired"].as_array().unwrap().len(), 0);

    // Our listing tables skip a hidden folder inside a table (DuckDB's glob would not, and
    // fail on its name: so retention moves a partition out of the table instead).
    let hidden = lake.join("events/.leftover");
    fs::rename(lake.join("events/date=2026-11-05"), &hidden).unwrap();
    assert_eq!(count(&lake), 1, "the hidden folder is not read");
    fs::rename(&hidden, lake.join("events/date=2026-11-05")).unwrap();
    assert_eq!(count(&lake), 5);

    // A crash between the move and the removal leaves the partition under _expired/:
    // no reader of the table sees it — ours nor DuckDB's — and the next run deletes it.
    let moved = lake.join("_expired/events-2026-11-05");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(lake.join("events/date=2026-11-05"), &moved).unwrap();
    assert_eq!(count(&lake), 1);
    assert_eq!(duckdb_count(&lake), 1);
    retention(&lake, &config, &now);
    assert!(!moved.exists());
    assert_eq!(count(&lake), 1);
}

/// `count(*)` of the events table as DuckDB reads it (PyPI `duckdb`, as tests/duckdb.rs).
fn duckdb_count(lake: &Path) -> u64 {
    let script = "import sys, duckdb\n\
print(duckdb.sql(f\"SELECT count(*) FROM read_parquet('{sys.argv[1]}/events/*/*.parquet', hive_partitioning = true)\").fetchall()[0][0])";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(lake)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "DuckDB failed (is the PyPI package duckdb installed? .ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn retention_explains_a_missing_section_and_refuses_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    fs::write(&config, "timezone = \"UTC\"\n").unwrap();
    let (code, _, err) = run(bin()
        .args(["retention", "--lake"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config));
    assert_eq!(code, 1);
    assert!(err.contains("has no [retention] section"), "{err}");
    fs::write(&config, "[retention]\nwal = \"7d\"\n").unwrap();
    let (code, _, err) = run(bin()
        .args(["retention", "--lake"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config));
    assert_eq!(code, 1);
    assert!(
        err.contains("config.toml:2:1: retention.wal: the write-ahead log has no retention"),
        "{err}"
    );
}

/// `serve` applies `[retention]` at start (with the real clock: 2020 is long expired, 2099
/// is not).
#[test]
fn serve_applies_retention_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let file = events_file(dir.path(), &[("2020-01-01", 2), ("2099-01-01", 3)]);
    assert_eq!(common::ingest(&lake, &[file]).0, 0);
    let config = dir.path().join("config.toml");
    fs::write(&config, "[retention]\nevents = \"30d\"\n").unwrap();
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let started = Instant::now();
    while lake.join("events/date=2020-01-01").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not drop the expired partition"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The server owns the lake: the command only lists, and says why.
    let (code, _, err) = run(bin()
        .args(["retention", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&config));
    assert_eq!(code, 1);
    assert!(
        err.contains("in use by serve") && err.contains("--dry-run"),
        "{err}"
    );
    retention(&lake, &config, &["--dry-run"]);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(count(&lake), 3);
}
