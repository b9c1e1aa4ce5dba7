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
