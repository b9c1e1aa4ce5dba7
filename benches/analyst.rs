//! Analyst SQL over a large lake: the queries of `benches/analyst_queries.py` through
//! `POST /api/v1/sql` and the Postgres protocol of a release `supportlake serve`, beside
//! DuckDB in-process on the same Parquet files, in the same run.
//!
//! ```text
//! cargo build --release
//! SUPPORTLAKE_BENCH_LAKE=/path/to/10M-event-lake cargo bench --profile dev --bench analyst
//! ```
//! Environment: `SUPPORTLAKE_BIN` (default: the release binary), `SUPPORTLAKE_BENCH_LAKE`
//! (required), `SUPPORTLAKE_BENCH_REPEAT` (default 5).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::target_dir;

const TOKEN: &str = "bench-read-token-0123456789";

fn main() {
    let bin = std::env::var_os("SUPPORTLAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/supportlake"));
    let lake = std::env::var_os("SUPPORTLAKE_BENCH_LAKE")
        .map(PathBuf::from)
        .expect("set SUPPORTLAKE_BENCH_LAKE");
    let repeat = std::env::var("SUPPORTLAKE_BENCH_REPEAT").unwrap_or_else(|_| "5".into());
    // The lake's own business rules: with others, the server would rebuild the rollups
    // first (and the benchmark would share the machine with that).
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/metrics.toml");
    let tokens = format!("read:{TOKEN}");
    let (server, addrs) = common::start_server_on(
        &bin,
        &lake,
        Some(&config),
        &[
            "--pg-listen",
            "127.0.0.1:0",
            "--sql-timeout",
            "600",
            "--sql-memory",
            "2048",
        ],
        &[("SUPPORTLAKE_TOKENS", tokens.as_str())],
    );
    let pg_port = addrs
        .pg
        .as_deref()
        .and_then(|a| a.rsplit(':').next())
        .expect("a Postgres address")
        .to_owned();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/analyst_queries.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(&lake)
        .arg(&addrs.http)
        .arg(&pg_port)
        .arg(TOKEN)
        .arg(&repeat)
        .status()
        .expect("python3 runs");
    common::stop_server(server);
    assert!(status.success(), "analyst_queries.py failed");
}
