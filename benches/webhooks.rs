//! Webhook benchmark: signed WhatsApp deliveries posted by `wrk` (Debian package) to
//! `supportlake serve` over loopback, each answered only once durable. Run twice in the same
//! run: with group commit (the default) and with one fsync per request (`--wal-sync-each`),
//! to show what group commit gains.
//!
//! ```text
//! cargo build --release && cargo bench --profile dev --bench webhooks
//! ```
//! Environment: `SUPPORTLAKE_BIN` (default: the release binary), `SUPPORTLAKE_BENCH_SECONDS`
//! (default 10), `SUPPORTLAKE_BENCH_CONNECTIONS` (default 64).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::target_dir;
use hmac::{Hmac, KeyInit, Mac};

const SECRET: &str = "bench-app-secret";

struct Run {
    label: &'static str,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    syncs: f64,
    appends: f64,
}

/// wrk prints latencies as "1.23ms", "456.00us" or "1.02s".
fn ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e3)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * scale
}

fn run(
    bin: &Path,
    label: &'static str,
    extra: &[&str],
    script: &PathBuf,
    secs: u64,
    conns: u64,
) -> Run {
    let lake = tempfile::tempdir().unwrap();
    let (server, addr) = common::start_server(
        bin,
        lake.path(),
        None,
        extra,
        &[("SUPPORTLAKE_WHATSAPP_APP_SECRET", SECRET)],
    );
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://{addr}/webhooks/whatsapp"))
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let metrics = common::http_get(&addr, "/metrics");
    common::stop_server(server);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    Run {
        label,
        requests_per_s: field("Requests/sec:").parse().unwrap_or(0.0),
        p50_ms: ms(&field("50%")),
        p99_ms: ms(&field("99%")),
        errors: field("Non-2xx or 3xx responses:").parse().unwrap_or(0),
        syncs: common::prom(&metrics, "supportlake_wal_syncs_total"),
        appends: common::prom(&metrics, "supportlake_wal_appends_total"),
    }
}

fn main() {
    let bin = std::env::var_os("SUPPORTLAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/supportlake"));
    assert!(
        bin.is_file(),
        "{} not found: cargo build --release first",
        bin.display()
    );
    let secs: u64 = std::env::var("SUPPORTLAKE_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let conns: u64 = std::env::var("SUPPORTLAKE_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    // One inbound text message: one event per delivery, as Meta usually sends them.
    let fixture = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("sample-data/fixtures/whatsapp/every-message-type.jsonl"),
    )
    .unwrap();
    let body = fixture.lines().next().unwrap().to_owned();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.json");
    std::fs::write(&body_path, &body).unwrap();
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "local f = io.open(\"{}\", \"rb\")\nwrk.method = \"POST\"\nwrk.body = f:read(\"*a\")\nf:close()\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"X-Hub-Signature-256\"] = \"sha256={sig}\"\n",
            body_path.display()
        ),
    )
    .unwrap();
    let group = run(&bin, "group commit", &[], &script, secs, conns);
    let each = run(
        &bin,
        "fsync per request",
        &["--wal-sync-each"],
        &script,
        secs,
        conns,
    );
    println!(
        "\nwebhook benchmark: POST /webhooks/whatsapp (1 event per delivery, signed), wrk -t2 -c{conns} -d{secs}s, loopback, 2 cores"
    );
    println!(
        "{:<20} {:>12} {:>9} {:>9} {:>8} {:>14}",
        "mode", "events/s", "p50 ms", "p99 ms", "errors", "appends/fsync"
    );
    for r in [&group, &each] {
        println!(
            "{:<20} {:>12.0} {:>9.2} {:>9.2} {:>8} {:>14.1}",
            r.label,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            if r.syncs > 0.0 {
                r.appends / r.syncs
            } else {
                0.0
            }
        );
    }
    println!(
        "group commit is {:.1}× the fsync-per-request rate",
        group.requests_per_s / each.requests_per_s.max(1e-9)
    );
}
