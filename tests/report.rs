//! SLA reports end to end: `supportlake report --send` to a real SMTP server (aiosmtpd) with
//! the captured message checked against `/api/v1/metrics`; a failed send exits non-zero;
//! `serve` sends a scheduled report and shows its last run in `/api/v1/reports`; the HTML
//! opened in headless Chromium for a screenshot.
//!
//! `.ci/run` installs aiosmtpd (PyPI) and chromium.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, generate, ingest, manifest_dir, request, run, source_files};

const FROM: &str = "2026-11-03T00:00:00Z";
const TO: &str = "2026-11-04T00:00:00Z";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A generated lake (2026-11-02 .. 04) and a config with one SLA policy for everything.
fn lake(dir: &Path, extra_config: &str) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    generate(&data, 3, 60, 11);
    let lake = dir.join("lake");
    let (code, receipt) = ingest(&lake, &source_files(&data));
    assert_eq!(code, 0, "{receipt}");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "timezone = \"UTC\"\n\n[[sla.policies]]\nname = \"all\"\nfirst_response = \"5m\"\nnext_response = \"15m\"\nresolution = \"4h\"\n\n{extra_config}"
        ),
    )
    .unwrap();
    (lake, config)
}

/// aiosmtpd keeping every message as JSON under `out`; returns the process and its port.
fn smtp_sink(out: &Path) -> (Kill, u16) {
    let mut child = Command::new("python3")
        .arg(manifest_dir().join("tests/report/smtp_sink.py"))
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("smtp_sink.py said {line:?} (is aiosmtpd installed?)"));
    (Kill(child), port)
}

fn wait_for_messages(out: &Path, n: usize, within: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + within;
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(out)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        if files.len() >= n || Instant::now() > deadline {
            return files;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `serve` on the lake (no tokens: loopback, open routes); returns it and its address.
fn serve(lake: &Path, config: &Path, smtp_port: Option<u16>) -> (Kill, String) {
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--lake"])
        .arg(lake)
        .arg("--config")
        .arg(config)
        .env_remove("SUPPORTLAKE_TOKENS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = smtp_port {
        cmd.env("SUPPORTLAKE_SMTP_URL", format!("smtp://127.0.0.1:{p}"))
            .env("SUPPORTLAKE_SMTP_FROM", "Reports <reports@example.com>");
    }
    let mut child = cmd.spawn().expect("serve starts");
    let addr = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on http://").map(str::to_owned))
        .expect("serve announces its address");
    (Kill(child), addr)
}

fn get(addr: &str, path: &str) -> serde_json::Value {
    let (code, _, body) = request(addr, "GET", path, &[], b"");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn report_by_email_matches_the_metrics_api() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(dir.path(), "");
    let mails = dir.path().join("mails");
    let (_sink, port) = smtp_sink(&mails);
    let (_server, addr) = serve(&lake, &config, None);
    let (code, out, err) = run(bin()
        .args(["report", "sla", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&config)
        .args([
            "--period",
            &format!("{FROM}/{TO}"),
            "--send",
            "--to",
            "a@example.com",
            "--to",
            "b@example.com",
        ])
        .env("SUPPORTLAKE_SMTP_URL", format!("smtp://127.0.0.1:{port}"))
        .env("SUPPORTLAKE_SMTP_FROM", "Reports <reports@example.com>"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("sent"), "{err}");
    let files = wait_for_messages(&mails, 1, Duration::from_secs(10));
    assert_eq!(files.len(), 1, "one message captured");
    let check = Command::new("python3")
        .arg(manifest_dir().join("tests/report/check_mail.py"))
        .arg(&files[0])
        .arg(&addr)
        .args([FROM, TO, "a@example.com,b@example.com"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check_mail.py: {}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(
        summary["subject"]
            .as_str()
            .unwrap()
            .contains("SLA report 2026-11-03"),
        "{summary}"
    );
}

#[test]
fn a_failed_send_is_a_clear_error_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(dir.path(), "");
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = run(bin()
        .args(["report", "sla", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&config)
        .args([
            "--period",
            &format!("{FROM}/{TO}"),
            "--send",
            "--to",
            "a@example.com",
        ])
        .env("SUPPORTLAKE_SMTP_URL", format!("smtp://127.0.0.1:{port}")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("failed after 3 attempt(s)"), "{err}");
    // No SMTP configured, no recipients: told what to set.
    let (code, _, err) = run(bin()
        .args(["report", "sla", "--send", "--to", "a@example.com", "--lake"])
        .arg(&lake)
        .env_remove("SUPPORTLAKE_SMTP_URL"));
    assert_eq!(code, 1);
    assert!(err.contains("SUPPORTLAKE_SMTP_URL"), "{err}");
    let (code, _, err) = run(bin().args(["report", "weekly", "--lake"]).arg(&lake));
    assert_eq!(code, 1);
    assert!(err.contains("no report named \"weekly\""), "{err}");
}

#[test]
fn serve_sends_scheduled_reports_and_lists_their_last_run() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(
        dir.path(),
        &format!(
            "[[reports]]\nname = \"diario\"\ncron = \"*/3 * * * * *\"\nperiod = \"{FROM}/{TO}\"\nrecipients = [\"ops@example.com\"]\nlanguage = \"pt\"\n"
        ),
    );
    let mails = dir.path().join("mails");
    let (_sink, port) = smtp_sink(&mails);
    let (_server, addr) = serve(&lake, &config, Some(port));
    let files = wait_for_messages(&mails, 1, Duration::from_secs(60));
    assert!(!files.is_empty(), "no scheduled report arrived");
    let captured: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(captured["rcpt_tos"], serde_json::json!(["ops@example.com"]));
    let raw =
        String::from_utf8_lossy(&base64_decode(captured["data"].as_str().unwrap())).into_owned();
    assert!(raw.contains("Subject:"), "{raw}");
    // The Portuguese subject (RFC 2047-encoded because of the accent).
    assert!(
        raw.contains("Relat") || raw.contains("=?utf-8?"),
        "{}",
        &raw[..400.min(raw.len())]
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(&addr, "/api/v1/reports");
        let diario = r["reports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "diario")
            .cloned()
            .unwrap();
        assert_eq!(diario["cron"], "*/3 * * * * *");
        assert!(diario["next_run"].is_string(), "{diario}");
        if diario["last_run"]["status"] == "sent" {
            assert_eq!(
                diario["last_run"]["recipients"],
                serde_json::json!(["ops@example.com"])
            );
            assert!(
                r["reports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == "sla")
            );
            break;
        }
        assert!(Instant::now() < deadline, "no sent run recorded: {diario}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn report_html_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = lake(dir.path(), "");
    let html = dir.path().join("report.html");
    let (code, _, err) = run(bin()
        .args(["report", "sla", "--lake"])
        .arg(&lake)
        .arg("--config")
        .arg(&config)
        .args(["--period", &format!("{FROM}/{TO}"), "--out"])
        .arg(&html));
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.contains("data:image/png;base64,") && !text.contains("cid:"));
    let Some(chrome) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed"
        );
        eprintln!("skipped the screenshot: chromium is not installed");
        return;
    };
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
        .join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("report-sla.png");
    let _ = std::fs::remove_file(&shot);
    let status = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=820,1500",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
}
