//! Helpers shared by the end-to-end tests: run the real binary, on real files.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub const KEY: &str = "end-to-end-test-key-0123456789";

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_supportlake"));
    c.env("SUPPORTLAKE_PSEUDONYM_KEY", KEY)
        .env_remove("SUPPORTLAKE_PSEUDONYM_KEY_FILE")
        .env_remove("SUPPORTLAKE_LAKE")
        .env("SUPPORTLAKE_LOG", "warn");
    c
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample-data/fixtures")
        .join(rel)
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the supportlake binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs, insisting on the exit code; returns stdout.
pub fn run_ok(cmd: &mut Command, expected_code: i32) -> String {
    let (code, out, err) = run(cmd);
    assert_eq!(code, expected_code, "stdout:\n{out}\nstderr:\n{err}");
    out
}

pub fn ingest(lake: &Path, files: &[PathBuf]) -> (i32, serde_json::Value) {
    let mut c = bin();
    c.arg("ingest")
        .arg("--lake")
        .arg(lake)
        .args(["--receipt", "json", "--quiet"]);
    c.args(files);
    let (code, out, err) = run(&mut c);
    let receipt = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("receipt is JSON ({e}):\n{out}\nstderr:\n{err}"));
    (code, receipt)
}

pub fn sql_csv(lake: &Path, query: &str) -> String {
    run_ok(
        bin()
            .arg("sql")
            .arg("--lake")
            .arg(lake)
            .args(["--format", "csv", query]),
        0,
    )
}

/// Every stored event except `received_at` (which is the time of ingest), in a stable order.
pub const ALL_EVENTS: &str = "SELECT * EXCLUDE (received_at) FROM events ORDER BY event_id";

/// Generates a small simulated dataset with the real `generate` command.
pub fn generate(out: &Path, days: u32, per_day: u32, seed: u64) {
    run_ok(
        bin().arg("generate").arg("--out").arg(out).args([
            "--days",
            &days.to_string(),
            "--conversations-per-day",
            &per_day.to_string(),
            "--seed",
            &seed.to_string(),
            "--start",
            "2026-11-02",
            "--quiet",
        ]),
        0,
    );
}

/// The source files a generated dataset holds, sorted.
pub fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["agent-log", "whatsapp", "chatwoot"] {
        let d = dir.join(sub);
        for e in std::fs::read_dir(&d).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    files.sort();
    files
}

/// Every file under a directory, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// One HTTP/1.1 request on a fresh connection; returns (status, head, body bytes), with a
/// chunked body joined.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// A seeded xorshift generator: the same seed, the same numbers (for test orders).
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Shuffles in place (Fisher–Yates) with numbers from `next`.
pub fn shuffle<T>(items: &mut [T], next: &mut impl FnMut() -> u64) {
    for i in (1..items.len()).rev() {
        items.swap(i, (next() % (i as u64 + 1)) as usize);
    }
}

/// Python prelude of [`duckdb`]: `src` is the lake's events table as DuckDB reads it.
const DUCKDB_PRELUDE: &str = "import sys, json, glob, datetime, duckdb\n\
src = f\"read_parquet('{sys.argv[1]}/events/*/*.parquet', hive_partitioning = true)\"\n";

/// Runs a Python snippet with DuckDB (PyPI `duckdb`) over the lake's Parquet: the lake path
/// is `sys.argv[1]`, `args` follow it; returns what it prints.
pub fn duckdb(lake: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{DUCKDB_PRELUDE}{script}"))
        .arg(lake)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "DuckDB script failed (is the PyPI package `duckdb` installed? .ci/run installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Ingests `inputs` in this process into a new lake at `lake` — every event received at
/// `received` (RFC 3339), no record may be rejected — and opens a query engine over it with
/// `config`. The runtime is returned with the engine: queries run on it.
pub fn open_lake(
    lake: &Path,
    inputs: &[supportlake::ingest::Input],
    config: std::sync::Arc<supportlake::config::Config>,
    received: &str,
) -> (tokio::runtime::Runtime, supportlake::query::Engine) {
    use supportlake::ingest::{self, IngestOptions, NoProgress};
    let paths = supportlake::lake::LakePaths::new(lake.to_path_buf());
    let key = supportlake::pseudonym::PseudonymKey::new(KEY.as_bytes().to_vec()).unwrap();
    let received: chrono::DateTime<chrono::Utc> = received.parse().unwrap();
    let receipt = ingest::ingest(
        &paths,
        inputs,
        &IngestOptions::default(),
        &key,
        std::sync::Arc::new(move || received),
        "test",
        &NoProgress,
    )
    .unwrap();
    assert_eq!(receipt.total_rejects(), 0, "{receipt:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt
        .block_on(supportlake::query::Engine::open(&paths, config))
        .unwrap();
    (rt, engine)
}

/// The rows of a simple CSV (a header line, no quoted commas) as maps of column → value.
pub fn csv_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The port `supportlake pg` listens on, read from its first line of output
/// (`listening on postgres://host:port/…`).
pub fn pg_port(child: &mut std::process::Child) -> u16 {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on postgres://")
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
}
