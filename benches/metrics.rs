//! Metrics benchmark: every metric for 30 days by day and by team, `supportlake metrics`
//! beside DuckDB running the same definitions (the SQL files of `queries/`, translated by
//! `benches/duckdb_metrics.py`) over the same Parquet, in the same run. Each run is its own
//! process, so wall time, CPU time and peak memory (max RSS) are measured the same way; the
//! totals of both results are compared so a fast wrong answer cannot pass.
//!
//! ```text
//! cargo build --release && cargo bench --profile dev --bench metrics
//! ```
//! Environment: `SUPPORTLAKE_BENCH_DIR` (default `$CARGO_TARGET_DIR/bench`; the generated
//! data of the ingest benchmark is reused, and its lake is built once into `metrics-lake`),
//! `SUPPORTLAKE_BIN` (default: the release binary), `SUPPORTLAKE_BENCH_LAKE` (use this lake
//! instead), `SUPPORTLAKE_BENCH_METRICS` (comma-separated subset). Needs
//! `python3 -m pip install duckdb`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{close, measure, metric_totals as our_totals, target_dir};

const METRICS: [&str; 13] = [
    "wait",
    "wait_to_assign",
    "first_response",
    "handle",
    "resolution",
    "open_conversations",
    "messages",
    "service_level",
    "abandonment",
    "csat",
    "sla",
    "sla_breaches",
    "agent_activity",
];

fn main() {
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("SUPPORTLAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/supportlake"));
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --release` first or set SUPPORTLAKE_BIN",
        bin.display()
    );
    let root = std::env::var_os("SUPPORTLAKE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench"));
    let key = "benchmark-pseudonym-key-0123456789";
    let (from, to) = ("2026-10-01T03:00:00Z", "2026-10-31T03:00:00Z");

    let lake = match std::env::var_os("SUPPORTLAKE_BENCH_LAKE") {
        Some(l) => PathBuf::from(l),
        None => {
            let data = root.join("gen-30d-16000");
            let lake = root.join("metrics-lake");
            if !data.join("manifest.json").is_file() {
                eprintln!("generating 30 days × 16 000 conversations/day …");
                measure(
                    Command::new(&bin)
                        .args(["generate", "--quiet", "--seed", "1", "--start"])
                        .args(["2026-10-01", "--days", "30", "--conversations-per-day"])
                        .arg("16000")
                        .arg("--out")
                        .arg(&data),
                );
            }
            if !lake.join("events").is_dir() {
                eprintln!("ingesting into {} …", lake.display());
                let files: Vec<PathBuf> = ["agent-log", "whatsapp", "chatwoot"]
                    .iter()
                    .flat_map(|s| std::fs::read_dir(data.join(s)).into_iter().flatten())
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                measure(
                    Command::new(&bin)
                        .env("SUPPORTLAKE_PSEUDONYM_KEY", key)
                        .args(["ingest", "--quiet", "--lake"])
                        .arg(&lake)
                        .args(files),
                );
            }
            lake
        }
    };
    let events = measure(
        Command::new(&bin)
            .args(["sql", "--format", "csv", "--lake"])
            .arg(&lake)
            .arg("SELECT count(*) AS n FROM events"),
    )
    .stdout
    .lines()
    .nth(1)
    .and_then(|l| l.trim().parse::<u64>().ok())
    .unwrap_or(0);
    let config = root_dir.join("benches/metrics.toml");
    let only: Option<Vec<String>> = std::env::var("SUPPORTLAKE_BENCH_METRICS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());

    println!(
        "\nmetrics benchmark: {events} events in {}, {from} .. {to}, by day and by team, {} cores",
        lake.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // DuckDB runs each metric twice: from the raw events (the view SQL computes every
    // derived table) and, when the lake has rollups, over the rollup files supportlake
    // reads (only the metric's own SQL runs).
    let rollups = lake.join("_rollup/state.json").is_file();
    let modes: &[&str] = if rollups {
        &["raw", "rollups"]
    } else {
        &["raw"]
    };
    println!(
        "{:<20} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>6}",
        "metric",
        "ours s",
        "cpu s",
        "RSS MB",
        "DuckDB",
        "duck s",
        "duck q s",
        "cpu s",
        "RSS MB",
        "ratio",
        "agree"
    );
    let mut ratios: Vec<(&str, f64)> = Vec::new();
    let mut worst_rss: f64 = 0.0;
    for name in METRICS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|m| m == name)) {
            continue;
        }
        let mut cmd = Command::new(&bin);
        if name == "sla_breaches" {
            cmd.args(["metrics", "sla", "--breaches"]);
        } else {
            cmd.args(["metrics", name]);
        }
        let ours = measure(
            cmd.arg("--lake")
                .arg(&lake)
                .arg("--config")
                .arg(&config)
                .args(["--from", from, "--to", to, "--now", to])
                .args([
                    "--interval",
                    "day",
                    "--group-by",
                    "team",
                    "--format",
                    "json",
                ]),
        );
        let ours_json: serde_json::Value =
            serde_json::from_str(&ours.stdout).expect("metrics --format json is JSON");
        let (oc, ov) = our_totals(&ours_json);
        worst_rss = worst_rss.max(ours.max_rss_mb);
        for &mode in modes {
            let duck =
                common::duckdb_metric(&lake, &config, name, from, to, "day", mode == "rollups");
            let duck_json: serde_json::Value =
                serde_json::from_str(duck.stdout.trim()).expect("duckdb_metrics.py prints JSON");
            let dt = &duck_json["totals"];
            let dc = dt.get("count").and_then(|x| x.as_f64()).unwrap_or_else(|| {
                if name == "sla_breaches" {
                    duck_json["rows"].as_f64().unwrap_or(0.0)
                } else {
                    0.0
                }
            });
            let dv = dt.get("value").and_then(|x| x.as_f64()).unwrap_or(0.0);
            let agree = close(oc, dc) && close(ov, dv);
            let ratio = ours.wall_s / duck.wall_s;
            ratios.push((mode, ratio));
            println!(
                "{:<20} {:>9.2} {:>8.2} {:>8.0} {:>8} {:>9.2} {:>9.2} {:>8.2} {:>8.0} {:>6.2}× {:>6}",
                name,
                ours.wall_s,
                ours.cpu_s,
                ours.max_rss_mb,
                mode,
                duck.wall_s,
                duck_json["seconds"].as_f64().unwrap_or(f64::NAN),
                duck.cpu_s,
                duck.max_rss_mb,
                ratio,
                if agree { "yes" } else { "NO" }
            );
            if !agree {
                eprintln!(
                    "  totals differ: ours count {oc} value {ov}; DuckDB ({mode}) count {dc} value {dv}"
                );
            }
        }
    }
    for &mode in modes {
        let r: Vec<f64> = ratios
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, r)| *r)
            .collect();
        if r.is_empty() {
            continue;
        }
        let geomean = (r.iter().map(|r| r.ln()).sum::<f64>() / r.len() as f64).exp();
        let worst = r.iter().cloned().fold(0.0, f64::max);
        println!(
            "vs DuckDB ({mode}): geomean {geomean:.2}× DuckDB's time (wall, whole process; < 1 is \
             faster), worst {worst:.2}×; our peak RSS {worst_rss:.0} MB"
        );
    }
}
