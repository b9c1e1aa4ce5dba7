//! What the benchmark harnesses share: running a command in its own process and reading
//! its wall time, CPU time and peak memory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Measured {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_mb: f64,
    pub stdout: String,
}

/// Runs a command to completion and reads its resource usage with wait4.
// The child is reaped by wait4 below, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn measure(cmd: &mut Command) -> Measured {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("command starts");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed");
    let wall_s = started.elapsed().as_secs_f64();
    let stdout = reader.join().unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "command failed ({status}): {cmd:?}\n{stdout}"
    );
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        wall_s,
        cpu_s: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        stdout,
    }
}

/// `$CARGO_TARGET_DIR`, or `target/` of the crate.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Sums of `count` and `value` over every point of a `metrics --format json` answer (or
/// the row count of a list answer, as `sla --breaches` gives).
pub fn metric_totals(json: &serde_json::Value) -> (f64, f64) {
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    if let Some(rows) = json.as_array() {
        return (rows.len() as f64, 0.0);
    }
    let mut count = 0.0;
    let mut value = 0.0;
    for s in json["series"].as_array().into_iter().flatten() {
        for p in s["points"].as_array().into_iter().flatten() {
            count += num(p, "count");
            value += num(p, "value");
        }
    }
    (count, value)
}

/// Equal up to floating-point summation order.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// One HTTP/1.1 GET on a new connection: the whole response, head and body.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a response read by [`http_get`].
pub fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A value of the server's Prometheus text (`/metrics`).
pub fn prom(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Starts `supportlake serve` on a free loopback port over `lake` (no tokens unless `env`
/// sets them) and answers the process and its HTTP address once its first rollup refresh
/// is done, so timings do not share the machine with it.
pub fn start_server(
    bin: &Path,
    lake: &Path,
    config: Option<&Path>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let (child, addrs) = start_server_on(bin, lake, config, extra, env);
    (child, addrs.http)
}

/// The addresses a server announced.
pub struct Addresses {
    pub http: String,
    /// `host:port` of the Postgres listener, when `--pg-listen` was given.
    pub pg: Option<String>,
}

/// [`start_server`], also answering the Postgres address when `extra` asks for one.
pub fn start_server_on(
    bin: &Path,
    lake: &Path,
    config: Option<&Path>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, Addresses) {
    use std::io::BufRead;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--lake"])
        .arg(lake)
        .args(extra);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.env(
        "SUPPORTLAKE_PSEUDONYM_KEY",
        "benchmark-pseudonym-key-0123456789",
    )
    .env("SUPPORTLAKE_LOG", "error")
    .env_remove("SUPPORTLAKE_TOKENS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut server = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let wants_pg = extra.contains(&"--pg-listen");
    let mut lines = std::io::BufReader::new(server.stdout.take().expect("piped stdout")).lines();
    let (mut http, mut pg) = (None, None);
    while http.is_none() || (wants_pg && pg.is_none()) {
        let line = lines
            .next()
            .expect("serve announces its addresses")
            .expect("a line");
        if let Some(a) = line.strip_prefix("listening on http://") {
            http = Some(a.trim().to_owned());
        } else if let Some(a) = line.strip_prefix("listening on postgres://") {
            // postgres://HOST:PORT/supportlake
            pg = a.split('/').next().map(str::to_owned);
        }
    }
    let http = http.expect("an HTTP address");
    for _ in 0..2400 {
        if prom(
            &http_get(&http, "/metrics"),
            "supportlake_rollup_refreshes_total",
        ) >= 1.0
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    (server, Addresses { http, pg })
}

/// Stops a server started by [`start_server`] (SIGTERM: it flushes and exits).
pub fn stop_server(mut server: std::process::Child) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let _ = server.wait();
}

/// Latency of a route: the first request, then p50 and p99 of `repeat` more, in ms.
pub fn latency(addr: &str, route: &str, repeat: usize) -> (u16, f64, f64, f64) {
    let t = Instant::now();
    let code = status(&http_get(addr, route));
    let first = t.elapsed().as_secs_f64() * 1e3;
    let mut times: Vec<f64> = (0..repeat.max(1))
        .map(|_| {
            let t = Instant::now();
            http_get(addr, route);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((p * times.len() as f64) as usize).min(times.len() - 1)];
    (code, first, q(0.5), q(0.99))
}

/// Runs `benches/duckdb_metrics.py`: DuckDB computing metric `name` with our view and
/// metric SQL over `lake`, by team in America/Sao_Paulo; `rollups` reads the derived
/// tables from the lake's rollup files instead of computing them from the events.
#[allow(dead_code)] // not every benchmark compares with DuckDB
pub fn duckdb_metric(
    lake: &Path,
    config: &Path,
    name: &str,
    from: &str,
    to: &str,
    interval: &str,
    rollups: bool,
) -> Measured {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("benches/duckdb_metrics.py"))
        .arg(lake)
        .arg(root.join("queries"))
        .arg(config)
        .args([name, from, to, interval, "America/Sao_Paulo", "team"]);
    if rollups {
        cmd.arg("rollups");
    }
    measure(&mut cmd)
}
