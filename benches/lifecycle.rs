//! Lake lifecycle benchmark: a year of generated events (≥ 50 M), the rollup rebuild, the
//! refresh after one more day of events, and dashboard/metric latency with rollups, computed
//! from the raw events by us, and by DuckDB from the raw events (the same definitions,
//! `benches/duckdb_metrics.py`), in the same run. Totals of both answers are compared so a
//! fast wrong answer cannot pass.
//!
//! ```text
//! cargo build --release && cargo bench --profile dev --bench lifecycle
//! ```
//! Environment: `SUPPORTLAKE_BENCH_DIR` (default `$CARGO_TARGET_DIR/bench`; the lake is
//! built once into `year-lake`, a month at a time, so the generated input never takes more
//! than a month of disk), `SUPPORTLAKE_BENCH_DAYS` (365), `SUPPORTLAKE_BENCH_END` (the last
//! day, `YYYY-MM-DD`; default today, UTC, so the dashboards' default "last 7 days" is live
//! data with "now" inside it), `SUPPORTLAKE_BENCH_PER_DAY`
//! (conversations a day, 6 500 ≈ 140 k events), `SUPPORTLAKE_BIN` (default: the release
//! binary), `SUPPORTLAKE_BENCH_RAW=0` skips our computation from raw events (it needs
//! memory in proportion to the lake). Needs `python3 -m pip install duckdb`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{Duration, NaiveDate};
use common::{Measured, close, measure, metric_totals as totals, target_dir};

const KEY: &str = "benchmark-pseudonym-key-0123456789";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn generate_and_ingest(
    bin: &Path,
    root: &Path,
    lake: &Path,
    start: NaiveDate,
    days: u64,
    per_day: u64,
    seed: u64,
) -> Measured {
    let data = root.join("year-gen-chunk");
    let _ = std::fs::remove_dir_all(&data);
    measure(
        Command::new(bin)
            .args(["generate", "--quiet", "--seed", &seed.to_string()])
            .args(["--id-offset", &(seed * 1_000_000).to_string(), "--start"])
            .arg(start.to_string())
            .args(["--days", &days.to_string(), "--conversations-per-day"])
            .arg(per_day.to_string())
            .arg("--out")
            .arg(&data),
    );
    let files: Vec<PathBuf> = ["agent-log", "whatsapp", "chatwoot"]
        .iter()
        .flat_map(|s| std::fs::read_dir(data.join(s)).into_iter().flatten())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let m = measure(
        Command::new(bin)
            .env("SUPPORTLAKE_PSEUDONYM_KEY", KEY)
            .args(["ingest", "--quiet", "--no-rollup", "--lake"])
            .arg(lake)
            .args(files),
    );
    let _ = std::fs::remove_dir_all(&data);
    m
}

fn main() {
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("SUPPORTLAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/supportlake"));
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    let root = std::env::var_os("SUPPORTLAKE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench"));
    let days = env_num("SUPPORTLAKE_BENCH_DAYS", 365).max(2);
    let per_day = env_num("SUPPORTLAKE_BENCH_PER_DAY", 6_500);
    let config = root_dir.join("benches/metrics.toml");
    let last_day = std::env::var("SUPPORTLAKE_BENCH_END")
        .ok()
        .and_then(|d| d.parse::<NaiveDate>().ok())
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let first = last_day - Duration::days(days as i64 - 1);
    let lake = root.join(format!("year-lake-v4-{first}-{days}d-{per_day}"));

    // 1. The lake: every day but the last, a month at a time.
    if !lake.join("events").is_dir() {
        let mut start = first;
        let mut chunk = 0;
        while start < last_day {
            let n = (last_day - start).num_days().min(30) as u64;
            eprintln!("generating and ingesting {start} + {n} days …");
            let m = generate_and_ingest(&bin, &root, &lake, start, n, per_day, 100 + chunk);
            eprintln!("  ingest {:.1} s", m.wall_s);
            start += Duration::days(n as i64);
            chunk += 1;
        }
    }
    let _ = std::fs::remove_dir_all(lake.join("_rollup"));
    for t in supportlake_tables() {
        let _ = std::fs::remove_dir_all(lake.join(t));
    }
    let count = |lake: &Path| -> u64 {
        measure(
            Command::new(&bin)
                .args(["sql", "--format", "csv", "--lake"])
                .arg(lake)
                .arg("SELECT count(*) AS n FROM events"),
        )
        .stdout
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
    };
    let before = count(&lake);

    // 2. Rebuild, then 3. one more day and the refresh.
    let rebuild = measure(
        Command::new(&bin)
            .args(["rollup", "--quiet", "--rebuild", "--grace", "0s", "--lake"])
            .arg(&lake)
            .arg("--config")
            .arg(&config),
    );
    let day = generate_and_ingest(&bin, &root, &lake, last_day, 1, per_day, 99);
    let events = count(&lake);
    let refresh = measure(
        Command::new(&bin)
            .args(["rollup", "--grace", "0s", "--lake"])
            .arg(&lake)
            .arg("--config")
            .arg(&config),
    );
    println!(
        "\nlake lifecycle: {events} events ({before} + {} on {last_day}), {days} days from {first}, {} cores",
        events - before,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "rollup --rebuild: {:.1} s wall, {:.1} s CPU, {:.0} MB RSS",
        rebuild.wall_s, rebuild.cpu_s, rebuild.max_rss_mb
    );
    println!(
        "ingest of the last day: {:.1} s; rollup refresh after it: {:.2} s wall, {:.2} s CPU, {:.0} MB RSS\n  {}",
        day.wall_s,
        refresh.wall_s,
        refresh.cpu_s,
        refresh.max_rss_mb,
        refresh.stdout.trim().replace('\n', "\n  ")
    );

    // 4. Metric queries: rollups vs DuckDB from the raw events (and us from raw).
    let to = last_day + Duration::days(1);
    let month = to - Duration::days(30);
    let week = to - Duration::days(7);
    let queries: Vec<(&str, NaiveDate, &str)> = vec![
        ("wait", week, "day"),
        ("wait", month, "day"),
        ("handle", month, "day"),
        ("messages", month, "day"),
        ("wait", first, "month"),
    ];
    let tz_from = |d: NaiveDate| format!("{d}T03:00:00Z");
    println!(
        "\n{:<34} {:>10} {:>8} {:>10} {:>10} {:>8} {:>10} {:>6}",
        "metric, range, interval (by team)",
        "rollups s",
        "RSS MB",
        "DuckDB s",
        "DuckDB q s",
        "RSS MB",
        "speed-up",
        "agree"
    );
    let mut speedups = Vec::new();
    for (name, from, interval) in &queries {
        let (f, t) = (tz_from(*from), tz_from(to));
        let ours = measure(
            Command::new(&bin)
                .args(["metrics", name, "--lake"])
                .arg(&lake)
                .arg("--config")
                .arg(&config)
                .args([
                    "--from",
                    &f,
                    "--to",
                    &t,
                    "--now",
                    &t,
                    "--interval",
                    interval,
                ])
                .args(["--group-by", "team", "--format", "json"]),
        );
        let duck = common::duckdb_metric(&lake, &config, name, &f, &t, interval, false);
        let oj: serde_json::Value = serde_json::from_str(&ours.stdout).expect("JSON");
        let dj: serde_json::Value = serde_json::from_str(duck.stdout.trim()).expect("JSON");
        let (oc, ov) = totals(&oj);
        let dc = dj["totals"]["count"].as_f64().unwrap_or(0.0);
        let dv = dj["totals"]["value"].as_f64().unwrap_or(0.0);
        let agree = close(oc, dc) && close(ov, dv);
        let speedup = duck.wall_s / ours.wall_s;
        speedups.push(speedup);
        println!(
            "{:<34} {:>10.3} {:>8.0} {:>10.2} {:>10.2} {:>8.0} {:>9.1}× {:>6}",
            format!("{name}, {from} .. {to}, {interval}"),
            ours.wall_s,
            ours.max_rss_mb,
            duck.wall_s,
            dj["seconds"].as_f64().unwrap_or(f64::NAN),
            duck.max_rss_mb,
            speedup,
            if agree { "yes" } else { "NO" }
        );
        if !agree {
            eprintln!("  totals differ: ours {oc} / {ov}; DuckDB {dc} / {dv}");
        }
    }
    let geomean = (speedups.iter().map(|r| r.ln()).sum::<f64>() / speedups.len() as f64).exp();
    let least = speedups.iter().cloned().fold(f64::INFINITY, f64::min);
    println!("rollups vs DuckDB from raw events: geomean {geomean:.1}× faster, least {least:.1}×");

    // 5. The server: dashboard pages and the metrics API over the rollups.
    let (server, addr) = common::start_server(&bin, &lake, Some(&config), &[], &[]);
    // No range: the page's default, the last 7 days up to tomorrow — "now" inside it.
    let routes = [
        "/dashboards/overview".to_string(),
        "/dashboards/sla".to_string(),
        "/dashboards/agents".to_string(),
        "/dashboards/csat".to_string(),
        format!("/dashboards/overview?from={month}&to={to}"),
        format!("/dashboards/overview?from={first}&to={to}"),
        format!("/dashboards/sla?from={month}&to={to}"),
        format!("/api/v1/metrics/wait?from={month}&to={to}&interval=day&group_by=team"),
        format!("/api/v1/metrics/wait?from={first}&to={to}&interval=month&group_by=team"),
        format!("/api/v1/metrics/sla?from={week}&to={to}&interval=day&group_by=team"),
        format!(
            "/api/v1/metrics/open_conversations?from={week}&to={to}&interval=day&group_by=team"
        ),
        format!("/api/v1/metrics/agent_activity?from={week}&to={to}&interval=day"),
        "/api/v1/live".to_string(),
    ];
    println!(
        "\n{:<80} {:>9} {:>9} {:>9} {:>6}",
        "route (serve, rollups)", "first ms", "p50 ms", "p99 ms", "status"
    );
    for route in &routes {
        let (code, first, p50, p99) = common::latency(&addr, route, 15);
        println!("{route:<80} {first:>9.1} {p50:>9.1} {p99:>9.1} {code:>6}");
    }
    common::stop_server(server);

    // 6. Last, as it needs memory in proportion to the lake: us from the raw events.
    if env_num("SUPPORTLAKE_BENCH_RAW", 1) == 1 {
        let (f, t) = (tz_from(month), tz_from(to));
        let raw = measure(
            Command::new(&bin)
                .args(["metrics", "wait", "--from-events", "--lake"])
                .arg(&lake)
                .arg("--config")
                .arg(&config)
                .args(["--from", &f, "--to", &t, "--now", &t, "--interval", "day"])
                .args(["--group-by", "team", "--format", "json"]),
        );
        println!(
            "ours from raw events (--from-events), wait, 30 days by day: {:.1} s wall, {:.0} MB RSS",
            raw.wall_s, raw.max_rss_mb
        );
    }
}

/// The rollup tables' folders.
fn supportlake_tables() -> [&'static str; 7] {
    [
        "conversations",
        "conversation_links",
        "conversation_intervals",
        "conversation_owners",
        "conversation_messages",
        "sla_targets",
        "agent_status_intervals",
    ]
}
