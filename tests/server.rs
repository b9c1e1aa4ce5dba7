//! `supportlake serve` over real sockets: every route × role, webhook signatures, body
//! limits, replayed deliveries, and a SIGKILL in the middle of acknowledged posts.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{bin, fixture, run};
use hmac::{Hmac, KeyInit, Mac};

const READ: &str = "read-token-0123456789abcdef";
const INGEST: &str = "ingest-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";
const WA_SECRET: &str = "whatsapp-app-secret";
const CW_SECRET: &str = "chatwoot-secret";

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(lake: &std::path::Path, extra: &[&str]) -> Server {
        let mut child = bin()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--flush-interval",
                "0.2",
                "--lake",
            ])
            .arg(lake)
            .args(extra)
            .env(
                "SUPPORTLAKE_TOKENS",
                format!("read:{READ},ingest:{INGEST},admin:{ADMIN}"),
            )
            .env("SUPPORTLAKE_WHATSAPP_APP_SECRET", WA_SECRET)
            .env("SUPPORTLAKE_WHATSAPP_VERIFY_TOKEN", "verify-me")
            .env("SUPPORTLAKE_CHATWOOT_SECRET", CW_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("serve prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        http(&self.addr, method, path, headers, body).expect("HTTP round trip")
    }

    /// SIGTERM, then wait: the server drains and flushes the WAL into the lake.
    fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().expect("serve exits");
        assert!(status.success(), "serve exited with {status}");
    }
}

/// One HTTP/1.1 request; returns (status, head, body).
fn http_full(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Bodies may come chunked; the tests only look for substrings and JSON objects in them.
    Ok((status, body))
}

fn sign(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn lake_count(lake: &std::path::Path, sql: &str) -> String {
    let (code, out, err) = run(bin()
        .args(["sql", "--format", "csv", "--lake"])
        .arg(lake)
        .arg(sql));
    assert_eq!(code, 0, "{err}");
    out.lines().nth(1).unwrap_or_default().to_owned()
}

fn agent_line(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","ts":"2026-11-02T12:00:00Z","type":"conversation.opened","conversation_id":"c-{id}","customer":"+55 11 98765-4321","channel":"whatsapp"}}"#
    )
}

#[test]
fn every_route_by_role_signatures_limits_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let s = Server::start(&lake, &["--max-body", "65536"]);

    // Read API: no token, wrong role, right role, admin.
    let m = "/api/v1/metrics/wait?from=2026-11-01&to=2026-11-03&interval=day";
    assert_eq!(s.request("GET", m, &[], b"").0, 401);
    assert_eq!(
        s.request(
            "GET",
            m,
            &[("Authorization", &bearer("nope-not-a-token-at-all"))],
            b""
        )
        .0,
        401
    );
    assert_eq!(
        s.request("GET", m, &[("Authorization", &bearer(INGEST))], b"")
            .0,
        403
    );
    let (code, body) = s.request("GET", m, &[("Authorization", &bearer(READ))], b"");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"metric\":\"wait\""), "{body}");
    assert_eq!(
        s.request("GET", m, &[("Authorization", &bearer(ADMIN))], b"")
            .0,
        200
    );
    let (code, body) = s.request(
        "GET",
        "/api/v1/metrics/nonsense",
        &[("Authorization", &bearer(READ))],
        b"",
    );
    assert_eq!(code, 404);
    assert!(
        body.contains("\"error\":\"unknown_metric\"") && body.contains("\"message\""),
        "{body}"
    );

    // Charts: the same metric drawn, SVG or PNG, read role.
    let c = "/api/v1/charts/wait.svg?from=2026-11-01&to=2026-11-03&group_by=team&target=300";
    assert_eq!(s.request("GET", c, &[], b"").0, 401);
    assert_eq!(
        s.request("GET", c, &[("Authorization", &bearer(INGEST))], b"")
            .0,
        403
    );
    let (code, svg) = s.request("GET", c, &[("Authorization", &bearer(READ))], b"");
    assert_eq!(code, 200, "{svg}");
    assert!(
        svg.contains("<svg") && svg.contains("wait by team (day)"),
        "{svg}"
    );
    let (code, png) = s.request(
        "GET",
        "/api/v1/charts/service_level.png?from=2026-11-01&to=2026-11-03&kind=bar",
        &[("Authorization", &bearer(ADMIN))],
        b"",
    );
    assert_eq!(code, 200);
    assert!(png.contains("PNG"), "a PNG body");
    let (code, body) = s.request(
        "GET",
        "/api/v1/charts/wait.svg?kind=pie&from=2026-11-01&to=2026-11-03",
        &[("Authorization", &bearer(READ))],
        b"",
    );
    assert_eq!(code, 400);
    assert!(body.contains("unknown chart kind"), "{body}");
    assert_eq!(
        s.request(
            "GET",
            "/api/v1/charts/wait.gif",
            &[("Authorization", &bearer(READ))],
            b""
        )
        .0,
        404
    );

    // Agent events: ingest role (or admin) only.
    let lines = format!("{}\n{}\n", agent_line("e1"), agent_line("e2"));
    assert_eq!(
        s.request("POST", "/ingest/events", &[], lines.as_bytes()).0,
        401
    );
    assert_eq!(
        s.request(
            "POST",
            "/ingest/events",
            &[("Authorization", &bearer(READ))],
            lines.as_bytes()
        )
        .0,
        403
    );
    let (code, body) = s.request(
        "POST",
        "/ingest/events",
        &[("Authorization", &bearer(INGEST))],
        lines.as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"accepted\":2"), "{body}");
    // A bad line is rejected and reported; the good one is kept.
    let mixed = format!("{}\n{{\"id\":\"x\"}}\n", agent_line("e3"));
    let (code, body) = s.request(
        "POST",
        "/ingest/events",
        &[("Authorization", &bearer(ADMIN))],
        mixed.as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"accepted\":1") && body.contains("\"rejected_records\":1"),
        "{body}"
    );

    // WhatsApp handshake.
    let (code, body) = s.request(
        "GET",
        "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444",
        &[],
        b"",
    );
    assert_eq!((code, body.as_str()), (200, "1158201444"));
    assert_eq!(
        s.request(
            "GET",
            "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            &[],
            b""
        )
        .0,
        403
    );

    // WhatsApp signatures on the raw bytes, accents and emoji included.
    let wa = std::fs::read_to_string(fixture("whatsapp/batched-entries.json")).unwrap();
    let body = wa.replace("primeira", "primeira ação, olá 👋");
    assert!(body.contains('👋'));
    let good = sign(WA_SECRET, &[body.as_bytes()]);
    assert_eq!(
        s.request("POST", "/webhooks/whatsapp", &[], body.as_bytes())
            .0,
        401,
        "missing signature"
    );
    let wrong = sign("another-secret", &[body.as_bytes()]);
    assert_eq!(
        s.request(
            "POST",
            "/webhooks/whatsapp",
            &[("X-Hub-Signature-256", &wrong)],
            body.as_bytes()
        )
        .0,
        401
    );
    let changed = body.replacen('1', "2", 1);
    assert_eq!(
        s.request(
            "POST",
            "/webhooks/whatsapp",
            &[("X-Hub-Signature-256", &good)],
            changed.as_bytes()
        )
        .0,
        401
    );
    let (code, first) = s.request(
        "POST",
        "/webhooks/whatsapp",
        &[("X-Hub-Signature-256", &good)],
        body.as_bytes(),
    );
    assert_eq!(code, 200, "{first}");
    // Meta retries: the same delivery again is acknowledged and adds nothing.
    assert_eq!(
        s.request(
            "POST",
            "/webhooks/whatsapp",
            &[("X-Hub-Signature-256", &good)],
            body.as_bytes()
        )
        .0,
        200
    );

    // Chatwoot: signed, stale, URL token.
    let cw = std::fs::read_to_string(fixture("chatwoot/every-event.jsonl")).unwrap();
    let cw = cw.lines().next().unwrap().as_bytes().to_vec();
    let now = chrono::Utc::now().timestamp().to_string();
    let sig = sign(CW_SECRET, &[now.as_bytes(), b".", &cw]);
    let (code, body) = s.request(
        "POST",
        "/webhooks/chatwoot",
        &[
            ("X-Chatwoot-Signature", &sig),
            ("X-Chatwoot-Timestamp", &now),
        ],
        &cw,
    );
    assert_eq!(code, 200, "{body}");
    let old = (chrono::Utc::now().timestamp() - 301).to_string();
    let stale = sign(CW_SECRET, &[old.as_bytes(), b".", &cw]);
    let (code, body) = s.request(
        "POST",
        "/webhooks/chatwoot",
        &[
            ("X-Chatwoot-Signature", &stale),
            ("X-Chatwoot-Timestamp", &old),
        ],
        &cw,
    );
    assert_eq!(code, 401);
    assert!(body.contains("5 minutes"), "{body}");
    assert_eq!(
        s.request(
            "POST",
            &format!("/webhooks/chatwoot?token={CW_SECRET}"),
            &[],
            &cw
        )
        .0,
        200
    );
    assert_eq!(
        s.request("POST", "/webhooks/chatwoot?token=wrong", &[], &cw)
            .0,
        401
    );
    assert_eq!(s.request("POST", "/webhooks/chatwoot", &[], &cw).0, 401);

    // Oversized bodies: 413 in the JSON error shape.
    let big = vec![b' '; 70_000];
    let (code, body) = s.request(
        "POST",
        "/ingest/events",
        &[("Authorization", &bearer(INGEST))],
        &big,
    );
    assert_eq!(code, 413);
    assert!(body.contains("\"error\":\"too_large\""), "{body}");

    // Pages: a browser without a session is sent to sign in; a read token signs it in
    // with an HttpOnly, SameSite cookie; the dashboards render with inline charts and no
    // external reference.
    let (code, head, _) = http_full(&s.addr, "GET", "/dashboards/overview", &[], b"");
    assert_eq!(code, 303);
    assert!(
        head.contains("location: /signin?next=%2Fdashboards%2Foverview"),
        "{head}"
    );
    let (code, _, _) = http_full(
        &s.addr,
        "POST",
        "/signin",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={INGEST}&next=/").as_bytes(),
    );
    assert_eq!(
        code, 401,
        "an ingest token does not sign in to the dashboards"
    );
    let (code, head, _) = http_full(
        &s.addr,
        "POST",
        "/signin",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={READ}&next=/dashboards/sla").as_bytes(),
    );
    assert_eq!(code, 303);
    assert!(
        head.contains(&format!(
            "set-cookie: supportlake_session={READ}; HttpOnly; SameSite=Strict; Path=/"
        )),
        "{head}"
    );
    assert!(head.contains("location: /dashboards/sla"), "{head}");
    let cookie = format!("supportlake_session={READ}");
    for page in [
        "/",
        "/dashboards/overview?from=2026-11-01&to=2026-11-03",
        "/dashboards/sla",
        "/dashboards/agents",
        "/dashboards/csat",
        "/conversations?from=2026-11-01&to=2026-11-03",
    ] {
        let (code, body) = s.request("GET", page, &[("Cookie", &cookie)], b"");
        assert_eq!(code, 200, "{page}: {body}");
        let external = body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !external.contains("http://") && !external.contains("https://"),
            "{page} refers outside"
        );
        if page.starts_with("/dashboards/") {
            assert!(
                body.contains("<svg") && body.contains("class=\"headline\""),
                "{page}"
            );
            assert!(
                body.contains("http-equiv=\"refresh\""),
                "{page} refreshes itself"
            );
        }
    }
    let (code, body) = s.request(
        "GET",
        "/dashboards/overview?from=2026-11-01&to=2026-11-03",
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(code, 200);
    assert!(
        body.contains("TME") && body.contains("href=\"/conversations?from=2026-11-01"),
        "{body}"
    );
    assert_eq!(
        s.request("GET", "/dashboards/nope", &[("Cookie", &cookie)], b"")
            .0,
        404
    );

    // Drill-down rows: JSON and CSV, read role.
    let d = "/api/v1/conversations?from=2026-11-01&to=2026-11-03&format=csv";
    assert_eq!(
        s.request("GET", d, &[("Authorization", &bearer(INGEST))], b"")
            .0,
        403
    );
    let (code, csv) = s.request("GET", d, &[("Authorization", &bearer(READ))], b"");
    assert_eq!(code, 200);
    assert!(csv.contains("conversation_id,started_at"), "{csv}");
    let (code, json) = s.request(
        "GET",
        "/api/v1/conversations?from=2026-11-01&to=2026-11-03&limit=x",
        &[("Authorization", &bearer(READ))],
        b"",
    );
    assert_eq!(code, 400, "{json}");

    // Live backlog, read role.
    assert_eq!(s.request("GET", "/api/v1/live", &[], b"").0, 401);
    let (code, live) = s.request(
        "GET",
        "/api/v1/live",
        &[("Authorization", &bearer(READ))],
        b"",
    );
    assert_eq!(code, 200, "{live}");
    assert!(
        live.contains("\"waiting\"") && live.contains("\"teams\""),
        "{live}"
    );

    // OpenAPI: every route is described, and every described route exists.
    let (code, doc) = s.request("GET", "/api/v1/openapi.json", &[], b"");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("openapi.json is JSON");
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for route in [
        "/webhooks/whatsapp",
        "/webhooks/chatwoot",
        "/ingest/events",
        "/api/v1/metrics/{name}",
        "/api/v1/charts/{file}",
        "/api/v1/conversations",
        "/api/v1/live",
        "/api/v1/sql",
        "/api/v1/reports",
        "/api/v1/customers/{key}",
        "/api/v1/openapi.json",
        "/",
        "/dashboards/{name}",
        "/conversations",
        "/signin",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains(&route), "{route} is not in openapi.json");
    }
    for path in &paths {
        let concrete = path.replace("{name}", "wait").replace("{file}", "wait.svg");
        let method = if doc["paths"][path].get("get").is_some() {
            "GET"
        } else {
            "POST"
        };
        let (code, body) = s.request(method, &concrete, &[("Authorization", &bearer(ADMIN))], b"");
        assert!(
            !body.contains("\"error\":\"not_found\"") || code != 404 || path.contains('{'),
            "{path} is described but not routed"
        );
    }

    // Ops.
    assert_eq!(s.request("GET", "/healthz", &[], b"").0, 200);
    assert_eq!(s.request("GET", "/readyz", &[], b"").0, 200);
    let (code, prom) = s.request("GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    assert!(
        prom.contains("supportlake_events_acknowledged_total"),
        "{prom}"
    );
    let (code, body) = s.request("GET", "/nowhere", &[], b"");
    assert_eq!(code, 404);
    assert!(body.contains("\"error\":\"not_found\""), "{body}");

    s.stop();
    // After the drain every acknowledged event is in the lake once: e1 e2 e3, and the
    // WhatsApp delivery counted once although it was posted twice.
    assert_eq!(
        lake_count(
            &lake,
            "SELECT count(*) FROM events WHERE event_id IN ('e1','e2','e3')"
        )
        .trim(),
        "3"
    );
    let dup = lake_count(
        &lake,
        "SELECT count(*) - count(DISTINCT event_id) FROM events",
    );
    assert_eq!(dup.trim(), "0");
    let wa_events = lake_count(
        &lake,
        "SELECT count(*) FROM events WHERE source = 'whatsapp'",
    );
    assert!(wa_events.trim().parse::<u64>().unwrap() > 0);
}

#[test]
fn no_tokens_means_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(bin()
        .args(["serve", "--listen", "0.0.0.0:0", "--lake"])
        .arg(dir.path())
        .env_remove("SUPPORTLAKE_TOKENS"));
    assert_eq!(code, 1);
    assert!(err.contains("loopback"), "{err}");
}

/// Posts agent events in batches while the server is SIGKILLed; after a restart every
/// acknowledged event is in the lake exactly once.
#[test]
fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut s = Server::start(&lake, &[]);
    let addr = s.addr.clone();
    let client = std::thread::spawn(move || {
        let mut acked: Vec<String> = Vec::new();
        let started = Instant::now();
        for batch in 0.. {
            let ids: Vec<String> = (0..50).map(|i| format!("k{batch}-{i}")).collect();
            let body: String = ids.iter().map(|id| agent_line(id) + "\n").collect();
            match http(
                &addr,
                "POST",
                "/ingest/events",
                &[("Authorization", &format!("Bearer {INGEST}"))],
                body.as_bytes(),
            ) {
                Ok((200, _)) => acked.extend(ids),
                _ => break,
            }
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(1500));
    s.child.kill().expect("SIGKILL");
    s.child.wait().unwrap();
    let acked = client.join().unwrap();
    assert!(
        acked.len() >= 100,
        "the client got {} acks before the kill",
        acked.len()
    );

    // Restart: the WAL is replayed into the lake; then a clean stop.
    let s = Server::start(&lake, &[]);
    s.stop();
    let (code, out, err) = run(bin()
        .args(["sql", "--format", "csv", "--lake"])
        .arg(&lake)
        .arg("SELECT event_id FROM events"));
    assert_eq!(code, 0, "{err}");
    let stored: std::collections::HashSet<&str> = out.lines().skip(1).collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let dup = lake_count(
        &lake,
        "SELECT count(*) - count(DISTINCT event_id) FROM events",
    );
    assert_eq!(dup.trim(), "0", "and none twice");
}

/// The README's run command: `demo` generates, ingests, summarizes, then serves charts and
/// metrics on loopback until SIGTERM.
#[test]
fn demo_serves_what_it_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args([
            "demo",
            "--days",
            "2",
            "--conversations-per-day",
            "40",
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
    let mut addr = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("listening on http://") {
            addr = Some(a.to_owned());
            break;
        }
    }
    let addr = addr.expect("demo announces its address");
    let (code, body) = http(
        &addr,
        "GET",
        "/api/v1/metrics/messages?group_by=team",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"metric\":\"messages\""), "{body}");
    let (code, svg) = http(
        &addr,
        "GET",
        "/api/v1/charts/wait.svg?group_by=team&target=300",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(svg.contains("<svg"));
    assert!(dir.path().join("config.toml").is_file());

    // `sla` reads "now", yet a second ask while no due time of an open target has passed
    // is answered from the kept answer: the same numbers, one more cache hit.
    let hits = |addr: &str| -> f64 {
        let (_, text) = http(addr, "GET", "/metrics", &[], b"").unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("supportlake_query_cache_hits_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the cache hit counter")
    };
    let today = chrono::Utc::now().date_naive();
    let sla = format!(
        "/api/v1/metrics/sla?group_by=team&interval=day&from={}&to={}",
        today - chrono::Duration::days(7),
        today + chrono::Duration::days(1)
    );
    let sla = sla.as_str();
    let (code, first) = http(&addr, "GET", sla, &[], b"").unwrap();
    assert_eq!(code, 200, "{first}");
    assert!(first.contains("\"achieved\""), "{first}");
    let before = hits(&addr);
    let (code, second) = http(&addr, "GET", sla, &[], b"").unwrap();
    assert_eq!(code, 200);
    assert_eq!(second, first);
    assert_eq!(hits(&addr), before + 1.0, "the second sla answer was kept");

    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
}
