//! Headless Chromium (Debian `chromium`) loads every dashboard from a running `demo` through
//! the DevTools protocol (`tests/browser/cdp_check.py`): each page answers 200 and loads,
//! with no console message, no exception, no browser log entry, no failed request and no
//! request to any other origin. Screenshots go to `$CARGO_TARGET_DIR/screenshots/` (or
//! `target/screenshots/`) to be looked at.
//!
//! `.ci/run` installs chromium and websocket-client. Without chromium the test fails under
//! CI (`CI` set) and is skipped with a notice elsewhere.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::bin;

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

#[test]
fn every_dashboard_renders_in_chromium_without_errors_or_external_requests() {
    let Some(chrome) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed (apt-get install chromium)"
        );
        eprintln!("skipped: chromium is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut demo = bin()
        .args([
            "demo",
            "--days",
            "3",
            "--conversations-per-day",
            "60",
            "--listen",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(dir.path())
        .env_remove("SUPPORTLAKE_PSEUDONYM_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let addr = BufReader::new(demo.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on http://").map(str::to_owned))
        .expect("demo announces its address");
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let urls: Vec<String> = [
        "",
        "dashboards/overview",
        "dashboards/sla",
        "dashboards/agents",
        "dashboards/csat",
        "conversations",
    ]
    .iter()
    .map(|p| format!("http://{addr}/{p}"))
    .collect();
    let out = Command::new("python3")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/cdp_check.py"))
        .arg(&chrome)
        .arg(&shots)
        .args(&urls)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "cdp_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cdp_check.py prints JSON");
    for url in &urls {
        let r = &report[url.as_str()];
        assert_eq!(r["loaded"], true, "{url}: {r}");
        assert_eq!(r["status"], 200, "{url}: {r}");
        for k in ["console", "exceptions", "log", "external", "failed"] {
            assert_eq!(
                r[k].as_array().map(Vec::len),
                Some(0),
                "{url}: {k}: {}",
                r[k]
            );
        }
        let shot = r["screenshot"].as_str().unwrap_or_default();
        let size = std::fs::metadata(shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{url}: screenshot {shot} is {size} bytes");
    }
    unsafe {
        libc::kill(demo.id() as i32, libc::SIGTERM);
    }
    assert!(demo.wait().unwrap().success());
}
