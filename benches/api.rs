//! Read-side latency: metrics API, charts and dashboard pages of `supportlake serve` over a
//! large lake, cold (the first request builds the session's cached views) and warm (p50/p99
//! of repeated requests).
//!
//! ```text
//! cargo build --release
//! SUPPORTLAKE_BENCH_LAKE=/path/to/10M-event-lake cargo bench --profile dev --bench api
//! ```
//! Environment: `SUPPORTLAKE_BIN` (default: the release binary), `SUPPORTLAKE_BENCH_LAKE`
//! (required), `SUPPORTLAKE_BENCH_REPEAT` (default 20), `SUPPORTLAKE_BENCH_FROM`/`_TO`
//! (default 2026-10-01 .. 2026-10-31).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::target_dir;

fn get(addr: &str, path: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out.len())
}

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
    let from = std::env::var("SUPPORTLAKE_BENCH_FROM").unwrap_or_else(|_| "2026-10-01".into());
    let to = std::env::var("SUPPORTLAKE_BENCH_TO").unwrap_or_else(|_| "2026-10-31".into());
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/metrics.toml");
    let mut server = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&config)
        .env(
            "SUPPORTLAKE_PSEUDONYM_KEY",
            "benchmark-pseudonym-key-0123456789",
        )
        .env("SUPPORTLAKE_LOG", "error")
        .env_remove("SUPPORTLAKE_TOKENS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .trim_start_matches("listening on http://")
        .to_owned();
    let r = format!("from={from}&to={to}");
    let routes = [
        format!("/api/v1/metrics/wait?{r}&interval=day&group_by=team"),
        format!("/api/v1/metrics/sla?{r}&interval=day&group_by=team"),
        format!("/api/v1/metrics/open_conversations?{r}&interval=day&group_by=team"),
        format!("/api/v1/charts/wait.svg?{r}&interval=day&group_by=team&target=300"),
        format!("/dashboards/overview?{r}"),
        "/api/v1/live".to_string(),
    ];
    println!(
        "\nread latency: {} , {repeat} warm requests each, loopback, 2 cores",
        lake.display()
    );
    println!(
        "{:<72} {:>9} {:>9} {:>9} {:>7}",
        "route", "cold ms", "p50 ms", "p99 ms", "status"
    );
    for route in &routes {
        let t = Instant::now();
        let (code, _) = get(&addr, route);
        let cold = t.elapsed().as_secs_f64() * 1e3;
        let mut times: Vec<f64> = (0..repeat)
            .map(|_| {
                let t = Instant::now();
                get(&addr, route);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let q = |p: f64| times[((p * times.len() as f64) as usize).min(times.len() - 1)];
        let shown: String = route.chars().take(72).collect();
        println!(
            "{shown:<72} {cold:>9.1} {:>9.1} {:>9.1} {code:>7}",
            q(0.5),
            q(0.99)
        );
    }
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let _ = server.wait();
}
