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

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
    let key = std::env::temp_dir().join("supportlake-bench-analyst.key");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let mut server = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
            "--sql-timeout",
            "600",
            "--sql-memory",
            "2048",
            "--lake",
        ])
        .arg(&lake)
        .env("SUPPORTLAKE_TOKENS", format!("read:{TOKEN}"))
        .env("SUPPORTLAKE_PSEUDONYM_KEY_FILE", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let (mut http, mut pg) = (None, None);
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    while http.is_none() || pg.is_none() {
        let line = lines
            .next()
            .expect("serve announces its addresses")
            .unwrap();
        if let Some(a) = line.strip_prefix("listening on http://") {
            http = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("listening on postgres://") {
            pg = Some(
                a.split('/')
                    .next()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/analyst_queries.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(&lake)
        .arg(http.unwrap())
        .arg(pg.unwrap())
        .arg(TOKEN)
        .arg(&repeat)
        .status()
        .expect("python3 runs");
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "analyst_queries.py failed");
}
