//! Bulk-ingest benchmark: `supportlake ingest` beside DuckDB's `read_json` → `COPY … TO
//! parquet` on the same files, in the same run, each in its own process so wall time, CPU
//! time and peak memory (max RSS) are measured the same way.
//!
//! ```text
//! cargo build --release && cargo bench --profile dev --bench ingest
//! SUPPORTLAKE_BENCH_PER_DAY=16000 SUPPORTLAKE_BENCH_DAYS=30 cargo bench --profile dev --bench ingest   # ≈ 10 M events
//! ```
//! Environment: `SUPPORTLAKE_BENCH_DIR` (data and lakes; default `$CARGO_TARGET_DIR/bench`),
//! `SUPPORTLAKE_BIN` (default: the release binary), `SUPPORTLAKE_BENCH_DAYS`,
//! `SUPPORTLAKE_BENCH_PER_DAY`. Needs `python3 -m pip install duckdb`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Measured, measure, target_dir};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn files_under(dir: &Path, sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

struct Row {
    what: String,
    events: u64,
    mb: f64,
    m: Measured,
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter we do not use.
    let bin = std::env::var_os("SUPPORTLAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/supportlake"));
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --release` first or set SUPPORTLAKE_BIN",
        bin.display()
    );
    let days = env_or("SUPPORTLAKE_BENCH_DAYS", 30);
    let per_day = env_or("SUPPORTLAKE_BENCH_PER_DAY", 16_000);
    let root = std::env::var_os("SUPPORTLAKE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench"));
    let data = root.join(format!("gen-{days}d-{per_day}"));
    let key = "benchmark-pseudonym-key-0123456789";

    if !data.join("manifest.json").is_file() {
        eprintln!(
            "generating {days} days × {per_day} conversations/day into {} …",
            data.display()
        );
        let m = measure(
            Command::new(&bin)
                .args([
                    "generate",
                    "--quiet",
                    "--seed",
                    "1",
                    "--start",
                    "2026-10-01",
                ])
                .arg("--days")
                .arg(days.to_string())
                .arg("--conversations-per-day")
                .arg(per_day.to_string())
                .arg("--out")
                .arg(&data),
        );
        eprintln!("{}  ({:.1} s)", m.stdout.trim(), m.wall_s);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all: Vec<PathBuf> = ["agent-log", "whatsapp", "chatwoot"]
        .iter()
        .flat_map(|s| files_under(&data, s))
        .collect();
    let agent_log = files_under(&data, "agent-log");

    let mut rows = Vec::new();
    for (label, files) in [("all sources", &all), ("agent log only", &agent_log)] {
        let lake = root.join("lake");
        let _ = std::fs::remove_dir_all(&lake);
        let ours = measure(
            Command::new(&bin)
                .env("SUPPORTLAKE_PSEUDONYM_KEY", key)
                .args(["ingest", "--quiet", "--receipt", "json", "--lake"])
                .arg(&lake)
                .args(files.iter()),
        );
        let receipt: serde_json::Value =
            serde_json::from_str(&ours.stdout).expect("receipt is JSON");
        let events = receipt["events"].as_u64().unwrap_or(0);
        assert_eq!(receipt["rejected_records"].as_u64(), Some(0), "{receipt}");
        let mb = bytes(files) as f64 / 1e6;
        rows.push(Row {
            what: format!("supportlake ingest ({label})"),
            events,
            mb,
            m: ours,
        });

        let out = root.join("duckdb.parquet");
        let _ = std::fs::remove_file(&out);
        let list: Vec<String> = files.iter().map(|f| format!("'{}'", f.display())).collect();
        let script = format!(
            "import duckdb\ncon = duckdb.connect()\ncon.execute('SET threads = {cores}')\n\
             con.execute(\"COPY (SELECT * FROM read_json([{}], format = 'newline_delimited', union_by_name = true, maximum_object_size = 67108864)) TO '{}' (FORMAT parquet, COMPRESSION zstd)\")\n",
            list.join(", "),
            out.display()
        );
        let theirs = measure(Command::new("python3").arg("-c").arg(script));
        rows.push(Row {
            what: format!("DuckDB read_json → COPY parquet ({label})"),
            events,
            mb,
            m: theirs,
        });
    }

    println!("\ningest benchmark: {days} days × {per_day} conversations/day, {cores} cores");
    println!(
        "{:<48} {:>11} {:>9} {:>8} {:>8} {:>11} {:>13} {:>9}",
        "run", "events", "MB", "wall s", "cpu s", "events/s", "ev/cpu-s", "max RSS"
    );
    for r in &rows {
        println!(
            "{:<48} {:>11} {:>9.0} {:>8.2} {:>8.2} {:>11.0} {:>13.0} {:>6.0} MB",
            r.what,
            r.events,
            r.mb,
            r.m.wall_s,
            r.m.cpu_s,
            r.events as f64 / r.m.wall_s,
            r.events as f64 / r.m.cpu_s,
            r.m.max_rss_mb
        );
    }
    for pair in rows.chunks(2) {
        if let [ours, duck] = pair {
            println!(
                "ratio ({}): supportlake is {:.2}× DuckDB's rate (wall), {:.2}× per CPU-second",
                ours.what.trim_start_matches("supportlake ingest "),
                duck.m.wall_s / ours.m.wall_s,
                duck.m.cpu_s / ours.m.cpu_s
            );
        }
    }
}
