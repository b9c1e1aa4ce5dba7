//! Read-side latency: metrics API, charts and dashboard pages of `supportlake serve` over a
//! large lake — the first request after start (it opens the session and fills the caches)
//! and p50/p99 of repeated requests.
//!
//! ```text
//! cargo build --release
//! SUPPORTLAKE_BENCH_LAKE=/path/to/10M-event-lake cargo bench --profile dev --bench api
//! ```
//! The dashboards are asked without a range — their default, the last 7 days up to
//! tomorrow, with "now" inside — so the lake should hold data up to today (e.g. `generate
//! --start <today − 29 days> --days 30`). Environment: `SUPPORTLAKE_BIN` (default: the
//! release binary), `SUPPORTLAKE_BENCH_LAKE` (required), `SUPPORTLAKE_BENCH_REPEAT`
//! (default 20), `SUPPORTLAKE_BENCH_DAYS` (the 30-day rows, default 30).

mod common;

use std::path::PathBuf;

use chrono::Duration;
use common::{latency, start_server, stop_server, target_dir};

fn main() {
    let bin = std::env::var_os("SUPPORTLAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/supportlake"));
    let lake = std::env::var_os("SUPPORTLAKE_BENCH_LAKE")
        .map(PathBuf::from)
        .expect("set SUPPORTLAKE_BENCH_LAKE");
    let repeat: usize = std::env::var("SUPPORTLAKE_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let days: i64 = std::env::var("SUPPORTLAKE_BENCH_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/metrics.toml");
    let today = chrono::Utc::now().date_naive();
    let (to, month, week) = (
        today + Duration::days(1),
        today + Duration::days(1 - days),
        today + Duration::days(1 - 7),
    );
    let (server, addr) = start_server(&bin, &lake, Some(&config), &[], &[]);
    let m = format!("from={month}&to={to}");
    let w = format!("from={week}&to={to}");
    let routes = [
        "/dashboards/overview".to_string(),
        "/dashboards/sla".to_string(),
        "/dashboards/agents".to_string(),
        "/dashboards/csat".to_string(),
        format!("/dashboards/overview?{m}"),
        format!("/dashboards/sla?{m}"),
        format!("/api/v1/metrics/wait?{m}&interval=day&group_by=team"),
        format!("/api/v1/charts/wait.svg?{m}&interval=day&group_by=team&target=300"),
        format!("/api/v1/metrics/sla?{w}&interval=day&group_by=team"),
        format!("/api/v1/metrics/sla?{m}&interval=day&group_by=team"),
        format!("/api/v1/metrics/open_conversations?{w}&interval=day&group_by=team"),
        format!("/api/v1/metrics/open_conversations?{m}&interval=day&group_by=team"),
        format!("/api/v1/metrics/agent_activity?{w}&interval=day"),
        "/api/v1/live".to_string(),
    ];
    println!(
        "\nread latency: {} , {repeat} repeated requests each, loopback, 2 cores",
        lake.display()
    );
    println!(
        "{:<80} {:>9} {:>9} {:>9} {:>7}",
        "route", "first ms", "p50 ms", "p99 ms", "status"
    );
    for route in &routes {
        let (code, first, p50, p99) = latency(&addr, route, repeat);
        println!("{route:<80} {first:>9.1} {p50:>9.1} {p99:>9.1} {code:>7}");
    }
    stop_server(server);
}
