//! The fault suite: an operator's bad day, tried on the real binary from outside.
//!
//! - SIGKILL over and over while signed WhatsApp webhooks are posted: every acknowledged
//!   delivery is in the lake exactly once, and no file is torn.
//! - The lake's disk fills up (a small tmpfs, and a loop-mounted ext4): no 2xx for what was
//!   not stored, nothing acknowledged lost, `/readyz` says why, and the server recovers by
//!   itself once space is back.
//! - A damaged Parquet file (cut short; pages scrambled): moved aside and named, and every
//!   other event, day and query goes on.
//! - Damaged write-ahead log records (one in the middle of a segment, a damaged first
//!   line): only the damaged record is lost, its bytes are kept, the rest is replayed.
//!
//! The same tests run in two sizes: small in CI (`cargo test`), large through
//! `benches/faults.sh` (`SUPPORTLAKE_FAULT_SCALE=large`). Each prints one line
//! `FAULT-FIGURES {json}` with what it measured; docs/reliability.md has the large run's.
//!
//! The disk-full tests mount file systems, which needs root. Where mounting is refused the
//! test fails, saying so, unless `SUPPORTLAKE_FAULTS_NO_MOUNT=skip` is set: then it prints
//! a `SKIPPED` line. It never passes silently.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, run};
use hmac::{Hmac, KeyInit, Mac};

const INGEST: &str = "ingest-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdef";
const WA_SECRET: &str = "whatsapp-app-secret";

/// How big a run is.
struct Scale {
    kill_cycles: usize,
    slow_connections: usize,
    bad_requests: usize,
    full_disk_mib: u64,
    wal_records: usize,
    wal_damage_points: usize,
}

fn scale() -> Scale {
    if std::env::var("SUPPORTLAKE_FAULT_SCALE").as_deref() == Ok("large") {
        Scale {
            kill_cycles: 200,
            slow_connections: 300,
            bad_requests: 2_000,
            full_disk_mib: 96,
            wal_records: 2_000,
            wal_damage_points: 20,
        }
    } else {
        Scale {
            kill_cycles: 4,
            slow_connections: 20,
            bad_requests: 120,
            full_disk_mib: 40,
            wal_records: 60,
            wal_damage_points: 2,
        }
    }
}

fn figures(test: &str, fields: serde_json::Value) {
    let mut v = fields;
    v["test"] = test.into();
    println!("FAULT-FIGURES {v}");
}

/// `supportlake serve` as a child process, its log kept in a file.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Server {
    fn start(lake: &Path, log: &Path, extra: &[&str]) -> Server {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = bin()
            .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
            .arg(lake)
            .args(extra)
            .env("SUPPORTLAKE_TOKENS", format!("read:{READ},ingest:{INGEST}"))
            .env("SUPPORTLAKE_WHATSAPP_APP_SECRET", WA_SECRET)
            .env("SUPPORTLAKE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("serve prints its address");
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            panic!(
                "serve did not start: {line:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        Server {
            addr: addr.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signals a child we started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("serve exits")
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test must not leave its server running (stop() and kill() reap it first).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; (status, body). `None` when the connection fails.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Agent-log lines with the given ids, on 2026-11-02 (or the given UTC day).
fn agent_lines(ids: &[String], day: &str) -> String {
    ids.iter()
        .map(|id| {
            format!(
                r#"{{"id":"{id}","ts":"{day}T12:00:00Z","type":"message.received","conversation_id":"c-{id}","customer":"+55 11 98765-4321","channel":"whatsapp","message_id":"m-{id}"}}"#
            ) + "\n"
        })
        .collect()
}

/// Agent-log lines like [`agent_lines`] with random bytes in `attrs`, which Parquet cannot
/// compress away: a disk fills with them at about the rate they are posted.
fn noisy_lines(ids: &[String], day: &str, rand: &mut impl FnMut() -> u64) -> String {
    ids.iter()
        .map(|id| {
            let noise: String = (0..6).map(|_| format!("{:016x}", rand())).collect();
            format!(
                r#"{{"id":"{id}","ts":"{day}T12:00:00Z","type":"message.received","conversation_id":"c-{id}","customer":"+55 11 98765-4321","channel":"whatsapp","message_id":"m-{id}","attrs":{{"tag":"{noise}"}}}}"#
            ) + "\n"
        })
        .collect()
}

fn post_lines(addr: &str, body: &str) -> Option<u16> {
    http(
        addr,
        "POST",
        "/ingest/events",
        &[("Authorization", &bearer(INGEST))],
        body.as_bytes(),
    )
    .map(|r| r.0)
}

/// A WhatsApp Cloud API webhook body with one inbound text message per wamid.
fn whatsapp_body(wamids: &[String], unix_ts: i64) -> String {
    let messages: Vec<String> = wamids
        .iter()
        .map(|id| {
            format!(
                r#"{{"from":"5511987654321","id":"{id}","timestamp":"{unix_ts}","type":"text","text":{{"body":"oi"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"240000000000001","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"5511300010001","phone_number_id":"104729381001"}},"contacts":[{{"profile":{{"name":"Cliente"}},"wa_id":"5511987654321"}}],"messages":[{}]}}}}]}}]}}"#,
        messages.join(",")
    )
}

fn whatsapp_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WA_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Every event id in the lake, with how many times it is there.
fn stored_ids(lake: &Path) -> BTreeMap<String, u64> {
    let (code, out, err) = run(bin()
        .args(["sql", "--format", "csv", "--lake"])
        .arg(lake)
        .arg("SELECT event_id, count(*) AS n FROM events GROUP BY event_id"));
    assert_eq!(code, 0, "{err}");
    out.lines()
        .skip(1)
        .filter_map(|l| l.rsplit_once(','))
        .map(|(id, n)| (id.to_owned(), n.parse().unwrap()))
        .collect()
}

/// Acknowledged ids missing from the lake, and ids stored more than once.
fn lost_and_doubled(lake: &Path, acked: &[String]) -> (Vec<String>, u64) {
    let stored = stored_ids(lake);
    let lost = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .cloned()
        .collect();
    let doubled = stored.values().filter(|n| **n > 1).count() as u64;
    (lost, doubled)
}

/// Files of the lake that `supportlake check` finds damaged (its exit code is 2 then).
fn torn_files(lake: &Path) -> (i32, String) {
    let (code, out, err) = run(bin().args(["check", "--quiet", "--lake"]).arg(lake));
    assert!(code == 0 || code == 2, "check failed to run: {err}");
    (code, out)
}

// --- SIGKILL under load --------------------------------------------------------------------

/// Signed WhatsApp deliveries from two clients while the server is SIGKILLed at random
/// moments, cycle after cycle. Every acknowledged message must be in the lake exactly once
/// and no data file may be torn.
#[test]
fn sigkill_cycles_under_signed_webhook_load() {
    let sc = scale();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    let mut rand = common::xorshift(0x5eed_0001);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let base_ts = 1_793_620_800i64;
    let started = Instant::now();
    for cycle in 0..sc.kill_cycles {
        let s = Server::start(
            &lake,
            &log,
            &[
                "--flush-interval",
                "0.2",
                "--compact-interval",
                "2s",
                "--grace",
                "1s",
            ],
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..2)
            .map(|c| {
                let (addr, acked, stop, sent) =
                    (s.addr.clone(), acked.clone(), stop.clone(), sent.clone());
                std::thread::spawn(move || {
                    let mut k = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let ids: Vec<String> = (0..5)
                            .map(|i| format!("wamid.k{cycle}-{c}-{k}-{i}"))
                            .collect();
                        // Spread over three days, late ones included.
                        let body =
                            whatsapp_body(&ids, base_ts + ((k % 3) as i64) * 86_400 + k as i64);
                        let sig = whatsapp_signature(body.as_bytes());
                        sent.fetch_add(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        match http(
                            &addr,
                            "POST",
                            "/webhooks/whatsapp",
                            &[
                                ("X-Hub-Signature-256", &sig),
                                ("Content-Type", "application/json"),
                            ],
                            body.as_bytes(),
                        ) {
                            Some((200, _)) => acked.lock().unwrap().extend(ids),
                            Some((503, _)) => std::thread::sleep(Duration::from_millis(20)),
                            Some((code, b)) => panic!("unexpected {code}: {b}"),
                            None => break,
                        }
                        k += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150 + rand() % 600));
        s.kill();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in clients {
            c.join().unwrap();
        }
    }
    // A last clean run replays what the last kill left.
    let s = Server::start(&lake, &log, &["--flush-interval", "0.2"]);
    let status = s.stop();
    assert!(status.success(), "serve exited with {status}");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= sc.kill_cycles * 10,
        "only {} acknowledged",
        acked.len()
    );
    let (lost, doubled) = lost_and_doubled(&lake, &acked);
    let (check, out) = torn_files(&lake);
    figures(
        "sigkill_cycles",
        serde_json::json!({
            "cycles": sc.kill_cycles, "sent": sent.load(std::sync::atomic::Ordering::Relaxed),
            "acknowledged": acked.len(), "lost": lost.len(), "duplicated": doubled,
            "torn_files": if check == 0 { 0 } else { out.lines().filter(|l| l.starts_with("damaged")).count() },
            "seconds": started.elapsed().as_secs_f64(),
        }),
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(doubled, 0, "events stored twice");
    assert_eq!(check, 0, "supportlake check found damage:\n{out}");
}

// --- A full disk ---------------------------------------------------------------------------

/// A file system mounted for one test, unmounted when dropped.
struct Mount {
    dir: tempfile::TempDir,
    _image: Option<tempfile::TempDir>,
}

impl Mount {
    fn tmpfs(mib: u64) -> Result<Mount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        mount(
            &["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"],
            dir.path(),
        )?;
        Ok(Mount { dir, _image: None })
    }

    fn ext4(mib: u64) -> Result<Mount, String> {
        let image_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = image_dir.path().join("disk.img");
        let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        f.set_len(mib << 20).map_err(|e| e.to_string())?;
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .output()
            .map_err(|e| format!("mkfs.ext4: {e} (Debian package e2fsprogs)"))?;
        if !out.status.success() {
            return Err(format!(
                "mkfs.ext4: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        mount(
            &["-o", "loop", image.to_str().unwrap_or_default()],
            dir.path(),
        )?;
        Ok(Mount {
            dir,
            _image: Some(image_dir),
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn mount(args: &[&str], at: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .map_err(|e| format!("mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A mount, or the test's verdict when there is none: a failure, or a loud skip when the
/// run allows it.
fn mount_or_skip(what: &str, m: Result<Mount, String>) -> Option<Mount> {
    match m {
        Ok(m) => Some(m),
        Err(e) if std::env::var("SUPPORTLAKE_FAULTS_NO_MOUNT").as_deref() == Ok("skip") => {
            println!("SKIPPED {what}: this machine refuses the mount ({e})");
            eprintln!("SKIPPED {what}: this machine refuses the mount ({e})");
            None
        }
        Err(e) => panic!(
            "{what} needs to mount a small file system and cannot ({e}); run as root, or set \
             SUPPORTLAKE_FAULTS_NO_MOUNT=skip to skip it knowingly"
        ),
    }
}

fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and a zeroed out-parameter of the right type.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Fills `dir`'s file system with a file until `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5a_u8; 1 << 20];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = ((free - leave) as usize).min(chunk.len());
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        let _ = f.sync_data();
    }
    path
}

/// A value of the Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// The lake on a small file system that fills up under load; then space comes back.
fn disk_full(kind: &str, m: Mount) {
    let sc = scale();
    let lake = m.path().join("lake");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let s = Server::start(&lake, &log, &["--flush-interval", "0.3"]);
    // Some room for the log and the lake, then none.
    let filler = fill(m.path(), 8 << 20);
    let mut rand = common::xorshift(0xd15c_f011);
    let mut acked: Vec<String> = Vec::new();
    let (mut refused, mut acked_while_full) = (0u64, 0u64);
    let mut first_refusal: Option<Instant> = None;
    let mut last_ok = Instant::now();
    let mut k = 0u64;
    // Post until the server has refused everything for two seconds.
    let started = Instant::now();
    while last_ok.elapsed() < Duration::from_secs(2) || first_refusal.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the disk never filled"
        );
        let ids: Vec<String> = (0..200).map(|i| format!("full-{kind}-{k}-{i}")).collect();
        k += 1;
        match post_lines(&s.addr, &noisy_lines(&ids, "2026-11-02", &mut rand)) {
            Some(200) => {
                if first_refusal.is_some() {
                    acked_while_full += ids.len() as u64;
                }
                acked.extend(ids);
                last_ok = Instant::now();
            }
            Some(503) => {
                refused += 1;
                first_refusal.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(50));
            }
            Some(code) => panic!("unexpected {code} while the disk fills"),
            None => panic!("the server stopped answering:\n{}", s.log_text()),
        }
    }
    let (code, body) = http(&s.addr, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(code, 503, "readyz while the disk is full: {body}");
    assert!(
        body.contains("space") || body.contains("quota"),
        "readyz says why: {body}"
    );

    // Space comes back: the server must notice by itself.
    std::fs::remove_file(&filler).unwrap();
    let back = Instant::now();
    let mut recovered = None;
    while back.elapsed() < Duration::from_secs(60) {
        let ids: Vec<String> = (0..10).map(|i| format!("back-{kind}-{k}-{i}")).collect();
        k += 1;
        if post_lines(&s.addr, &agent_lines(&ids, "2026-11-03")) == Some(200) {
            acked.extend(ids);
            recovered = Some(back.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered =
        recovered.unwrap_or_else(|| panic!("no recovery within 60 s:\n{}", s.log_text()));
    let mut ready = None;
    while back.elapsed() < Duration::from_secs(60) {
        if http(&s.addr, "GET", "/readyz", &[], b"").map(|r| r.0) == Some(200) {
            ready = Some(back.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = ready.expect("readyz turns ready again");
    let (_, metrics) = http(&s.addr, "GET", "/metrics", &[], b"").unwrap();
    let log_text = s.log_text();
    let status = s.stop();
    assert!(status.success(), "serve exited with {status}:\n{log_text}");
    let (lost, doubled) = lost_and_doubled(&lake, &acked);
    figures(
        &format!("disk_full_{kind}"),
        serde_json::json!({
            "disk_mib": sc.full_disk_mib, "acknowledged": acked.len(), "refused_503": refused,
            "acked_after_first_503": acked_while_full,
            "lost": lost.len(), "duplicated": doubled,
            "flush_failures": metric(&metrics, "supportlake_wal_flush_failures_total"),
            "log_recoveries": metric(&metrics, "supportlake_wal_recoveries_total"),
            "seconds_to_take_events_again": recovered.as_secs_f64(),
            "seconds_to_ready": ready.as_secs_f64(),
        }),
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(doubled, 0);
}

/// Regression: with the lake's disk full, a failed flush used to drop the events whose ids
/// it had already taken, then delete the log: acknowledged events lost; and the log never
/// took appends again after its first failed write.
#[test]
fn disk_full_on_tmpfs_loses_nothing_and_recovers() {
    if let Some(m) = mount_or_skip("disk full on tmpfs", Mount::tmpfs(scale().full_disk_mib)) {
        disk_full("tmpfs", m);
    }
}

#[test]
fn disk_full_on_loop_ext4_loses_nothing_and_recovers() {
    if let Some(m) = mount_or_skip("disk full on ext4", Mount::ext4(scale().full_disk_mib + 24)) {
        disk_full("ext4", m);
    }
}

// --- A damaged Parquet file ----------------------------------------------------------------

/// Byte range of one column chunk of a Parquet file's first row group.
fn column_chunk(path: &Path, column: &str) -> std::ops::Range<usize> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let rg = r.metadata().row_group(0);
    let c = rg
        .columns()
        .iter()
        .find(|c| c.column_path().string() == column)
        .unwrap();
    let (start, len) = c.byte_range();
    start as usize..(start + len) as usize
}

fn footer_rows(path: &Path) -> u64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    r.metadata().file_metadata().num_rows() as u64
}

fn data_files(lake: &Path) -> Vec<PathBuf> {
    common::walk(&lake.join("events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

/// Regression: one damaged events file used to stop every flush (for every day) while
/// `/readyz` said ready and posts were acknowledged; SIGTERM then exited 0 with those
/// events unflushed, the next start refused (its replay read the file), and queries did not
/// say which file they could not read.
#[test]
fn a_damaged_parquet_file_is_isolated_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    // Three days in the lake, one file each.
    let days = ["2026-11-02", "2026-11-03", "2026-11-04"];
    let mut all: Vec<String> = Vec::new();
    for (d, day) in days.iter().enumerate() {
        let ids: Vec<String> = (0..300).map(|i| format!("base-{d}-{i}")).collect();
        let input = dir.path().join(format!("{day}.jsonl"));
        std::fs::write(&input, agent_lines(&ids, day)).unwrap();
        let (code, _) = common::ingest(&lake, &[input]);
        assert_eq!(code, 0);
        all.extend(ids);
    }
    let files = data_files(&lake);
    assert_eq!(files.len(), 3);
    // Day 1: cut in half (no footer). Day 2: the `conversation_id` column's pages
    // scrambled (footer and event ids intact, so only reading the rows finds it; a column
    // whose statistics say it holds one value may be answered from them, so not `kind`).
    let cut = files[0].clone();
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let scrambled = files[1].clone();
    let range = column_chunk(&scrambled, "conversation_id");
    let lost_rows = footer_rows(&scrambled) + 300;
    let mut bytes = std::fs::read(&scrambled).unwrap();
    for b in &mut bytes[range] {
        *b = b.wrapping_mul(167).wrapping_add(13);
    }
    std::fs::write(&scrambled, &bytes).unwrap();
    let in_damaged: HashSet<String> = all
        .iter()
        .filter(|id| id.starts_with("base-0-") || id.starts_with("base-1-"))
        .cloned()
        .collect();

    // Starts although old files are damaged.
    // No rollups: the query below is the first to read the scrambled pages.
    let s = Server::start(
        &lake,
        &log,
        &[
            "--flush-interval",
            "0.2",
            "--compact-interval",
            "0s",
            "--no-rollups",
        ],
    );
    // New events for every day, damaged ones included, and a new day.
    let mut acked = Vec::new();
    for (d, day) in days.iter().chain(&["2026-11-05"]).enumerate() {
        let ids: Vec<String> = (0..50).map(|i| format!("new-{d}-{i}")).collect();
        assert_eq!(post_lines(&s.addr, &agent_lines(&ids, day)), Some(200));
        acked.extend(ids);
    }
    // The flush into day 1 meets the cut file: moved aside, named by /readyz.
    let deadline = Instant::now() + Duration::from_secs(30);
    let readyz = loop {
        let (code, body) = http(&s.addr, "GET", "/readyz", &[], b"").unwrap();
        if body.contains("date=2026-11-02") || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(readyz.0, 200, "degraded is still ready: {}", readyz.1);
    assert!(
        readyz.1.contains("degraded") && readyz.1.contains("date=2026-11-02"),
        "{}",
        readyz.1
    );
    assert!(!cut.exists(), "the cut file is moved aside");

    // A query over the scrambled file names it; once it is moved aside, a retry answers.
    let sql = br#"{"sql": "SELECT count(DISTINCT conversation_id) AS n FROM events"}"#;
    let auth = bearer(READ);
    let (code, body) = http(
        &s.addr,
        "POST",
        "/api/v1/sql",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        sql,
    )
    .unwrap();
    let scrambled_name = scrambled
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_ne!(code, 200, "the scrambled pages cannot be read: {body}");
    assert!(
        body.contains(&scrambled_name) && body.contains("damaged_file"),
        "the error names the file: {code} {body}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        let (code, body) = http(
            &s.addr,
            "POST",
            "/api/v1/sql",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            sql,
        )
        .unwrap();
        if code == 200 || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(answered.0, 200, "{}", answered.1);
    assert!(!scrambled.exists(), "the scrambled file is moved aside");
    let (code, metrics) = http(&s.addr, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("supportlake_damaged_files_moved_total 2"),
        "{metrics}"
    );
    let log_text = s.log_text();
    assert!(log_text.contains(&scrambled_name), "the log names the file");
    let status = s.stop();
    assert!(status.success(), "{status}");
    // Starts again, clean.
    let s = Server::start(&lake, &log, &["--flush-interval", "0.2"]);
    assert!(s.stop().success());

    let stored = stored_ids(&lake);
    let expected: Vec<&String> = all
        .iter()
        .filter(|id| !in_damaged.contains(*id))
        .chain(&acked)
        .collect();
    let lost: Vec<&&String> = expected
        .iter()
        .filter(|id| !stored.contains_key(**id))
        .collect();
    let moved = common::walk(&lake.join("_damaged"));
    figures(
        "damaged_parquet",
        serde_json::json!({
            "files_damaged": 2, "files_moved_aside": moved.iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count(),
            "rows_in_damaged_files": lost_rows, "events_lost_beyond_damaged_files": lost.len(),
            "acknowledged_after_damage": acked.len(),
        }),
    );
    assert!(
        lost.is_empty(),
        "lost beyond the damaged files: {:?}",
        &lost[..lost.len().min(5)]
    );
    assert!(stored.values().all(|n| *n == 1));
    // The damaged files' own events are gone (nothing pretends otherwise).
    assert!(!stored.contains_key("base-0-0"));
}

// --- Damaged log records ---------------------------------------------------------------------

/// Where each frame of a segment starts (the frame marker; the payloads here are JSON-made
/// text, which never holds the marker's bytes).
fn frame_starts(seg: &[u8]) -> Vec<usize> {
    seg.windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0xD5, 0x1A, 0x7E, 0xC3])
        .map(|(i, _)| i)
        .collect()
}

/// Regression: a record failing its checksum in the middle of a segment used to end the
/// replay of that segment (every record after it dropped, logged as never acknowledged), a
/// damaged first line dropped the whole segment, and the segment was then deleted.
#[test]
fn damaged_log_records_cost_only_themselves() {
    let sc = scale();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    let s = Server::start(&lake, &log, &["--flush-interval", "3600"]);
    let mut batches: Vec<Vec<String>> = Vec::new();
    for r in 0..sc.wal_records {
        let ids: Vec<String> = (0..3).map(|i| format!("wal-{r}-{i}")).collect();
        assert_eq!(
            post_lines(&s.addr, &agent_lines(&ids, "2026-11-02")),
            Some(200)
        );
        batches.push(ids);
    }
    s.kill();
    let segs: Vec<PathBuf> = std::fs::read_dir(lake.join("_wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    let seg = &segs[0];
    let mut bytes = std::fs::read(seg).unwrap();
    let starts = frame_starts(&bytes);
    assert_eq!(starts.len(), sc.wal_records);
    // Damage a payload byte of records spread through the middle, and the first line.
    let step = sc.wal_records / (sc.wal_damage_points + 1);
    let damaged: Vec<usize> = (1..=sc.wal_damage_points).map(|i| i * step).collect();
    for &r in &damaged {
        bytes[starts[r] + 20 + 5] ^= 0x41;
    }
    bytes[2] = b'#';
    std::fs::write(seg, &bytes).unwrap();

    let s = Server::start(&lake, &log, &["--flush-interval", "0.2"]);
    let status = s.stop();
    assert!(status.success(), "{status}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    let stored = stored_ids(&lake);
    let lost_records: HashSet<usize> = damaged.iter().copied().collect();
    let mut lost_beyond = 0;
    for (r, ids) in batches.iter().enumerate() {
        for id in ids {
            let there = stored.contains_key(id);
            if lost_records.contains(&r) {
                assert!(!there, "{id} of a damaged record cannot be there");
            } else if !there {
                lost_beyond += 1;
            }
        }
    }
    let kept: Vec<PathBuf> = common::walk(&lake.join("_wal/damaged"));
    figures(
        "damaged_wal",
        serde_json::json!({
            "records": sc.wal_records, "records_damaged": damaged.len(),
            "events_lost_beyond_damaged_records": lost_beyond,
            "damaged_byte_runs_kept": kept.len(),
        }),
    );
    assert_eq!(lost_beyond, 0, "intact records lost");
    assert_eq!(
        kept.len(),
        damaged.len(),
        "the damaged bytes are kept: {kept:?}"
    );
    for (k, &r) in kept.iter().zip(&damaged) {
        let run = std::fs::read(k).unwrap();
        assert_eq!(run, bytes[starts[r]..starts[r + 1]], "{}", k.display());
    }
    assert!(
        log_text.contains("damaged between intact records"),
        "the log says what was skipped:\n{log_text}"
    );
    assert!(log_text.contains("first line is damaged"), "{log_text}");
    assert!(
        !log_text.contains("never acknowledged"),
        "nothing is blamed on a torn write:\n{log_text}"
    );
}

// --- A day that cannot be written ------------------------------------------------------------

/// Regression: when a flush kept failing, SIGTERM still exited 0 with acknowledged events
/// only in the log, and one day that could not be written held back every other day.
#[test]
fn a_day_that_cannot_be_written_holds_back_no_other_and_a_stop_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    let s = Server::start(&lake, &log, &["--flush-interval", "0.2", "--no-rollups"]);
    // The folder of 2026-11-09 cannot be made: a file holds its name.
    let blocked = lake.join("events/date=2026-11-09");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"in the way").unwrap();
    let stuck: Vec<String> = (0..20).map(|i| format!("stuck-{i}")).collect();
    let free: Vec<String> = (0..20).map(|i| format!("free-{i}")).collect();
    assert_eq!(
        post_lines(&s.addr, &agent_lines(&stuck, "2026-11-09")),
        Some(200)
    );
    assert_eq!(
        post_lines(&s.addr, &agent_lines(&free, "2026-11-10")),
        Some(200)
    );
    // The other day reaches the lake; /readyz names the failing flush.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = http(&s.addr, "GET", "/readyz", &[], b"").unwrap();
        let stored = data_files(&lake).len();
        if (body.contains("flushing the write-ahead log") && stored == 1)
            || Instant::now() > deadline
        {
            assert_eq!(code, 200, "{body}");
            assert!(
                body.contains("degraded") && body.contains("date=2026-11-09"),
                "{body}"
            );
            assert_eq!(stored, 1, "the free day is in the lake");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = s.stop();
    assert!(
        !status.success(),
        "a stop that leaves acknowledged events in the log says so"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("still only in the write-ahead log"), "{text}");
    // Once the way is clear, the next start puts them in the lake.
    std::fs::remove_file(&blocked).unwrap();
    let s = Server::start(&lake, &log, &["--flush-interval", "0.2", "--no-rollups"]);
    assert!(s.stop().success());
    let (lost, doubled) = lost_and_doubled(&lake, &[stuck, free].concat());
    assert!(lost.is_empty(), "{lost:?}");
    assert_eq!(doubled, 0);
}

// --- supportlake check ------------------------------------------------------------------------

/// `supportlake check` reads every file and lists what is damaged (exit 2), and
/// `--move-damaged` moves damaged events files aside; then the lake checks clean.
#[test]
fn check_finds_damage_and_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    for (d, day) in ["2026-11-02", "2026-11-03"].iter().enumerate() {
        let ids: Vec<String> = (0..100).map(|i| format!("chk-{d}-{i}")).collect();
        let input = dir.path().join(format!("{day}.jsonl"));
        std::fs::write(&input, agent_lines(&ids, day)).unwrap();
        assert_eq!(common::ingest(&lake, &[input]).0, 0);
    }
    let (code, out) = torn_files(&lake);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing damaged"), "{out}");
    let victim = data_files(&lake)[1].clone();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 30]).unwrap();
    let (code, out) = torn_files(&lake);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("damaged  events  events/date=2026-11-03/"),
        "{out}"
    );
    assert!(victim.exists(), "check alone changes nothing");
    let (code, out, err) = run(bin()
        .args(["check", "--quiet", "--move-damaged", "--lake"])
        .arg(&lake));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("moved to _damaged/events/date=2026-11-03/"),
        "{out}"
    );
    assert!(!victim.exists());
    let (code, out) = torn_files(&lake);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("aside    _damaged/events/date=2026-11-03/"),
        "{out}"
    );
    // The other day is all there; the moved file's rows are gone from the table.
    let stored = stored_ids(&lake);
    assert_eq!(
        stored.keys().filter(|k| k.starts_with("chk-0-")).count(),
        100
    );
    assert_eq!(stored.keys().filter(|k| k.starts_with("chk-1-")).count(), 0);
}

// --- Slow and malformed connections, a burst of bad requests ------------------------------

/// A crowd of connections trickling their request heads a byte at a time (and some saying
/// nothing at all) while a real client posts: the crowd is cut off at the header timeout,
/// and the real client is answered all along.
#[test]
fn a_crowd_of_slow_connections_is_cut_off_and_the_server_keeps_answering() {
    let sc = scale();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    let s = Server::start(&lake, &log, &["--header-timeout", "2s", "--no-rollups"]);
    let started = Instant::now();
    let crowd: Vec<_> = (0..sc.slow_connections)
        .map(|i| {
            let addr = s.addr.clone();
            std::thread::spawn(move || -> Option<Duration> {
                let mut c = TcpStream::connect(&addr).ok()?;
                let opened = Instant::now();
                c.set_read_timeout(Some(Duration::from_millis(250))).ok()?;
                let head = b"POST /ingest/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n";
                let mut k = 0;
                let mut buf = [0u8; 512];
                while opened.elapsed() < Duration::from_secs(30) {
                    if i % 4 != 0 && k < head.len() {
                        if c.write_all(&head[k..k + 1]).is_err() {
                            return Some(opened.elapsed());
                        }
                        k += 1;
                    }
                    match c.read(&mut buf) {
                        Ok(0) => return Some(opened.elapsed()),
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return Some(opened.elapsed()),
                    }
                }
                None
            })
        })
        .collect();
    // Meanwhile a real client.
    let mut worst = Duration::ZERO;
    let mut acked = Vec::new();
    let mut k = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let ids: Vec<String> = (0..5).map(|i| format!("real-{k}-{i}")).collect();
        k += 1;
        let t = Instant::now();
        assert_eq!(
            post_lines(&s.addr, &agent_lines(&ids, "2026-11-02")),
            Some(200)
        );
        worst = worst.max(t.elapsed());
        acked.extend(ids);
    }
    let closed: Vec<Option<Duration>> = crowd.into_iter().map(|t| t.join().unwrap()).collect();
    let never = closed.iter().filter(|c| c.is_none()).count();
    let slowest = closed.iter().flatten().max().copied().unwrap_or_default();
    let status = s.stop();
    assert!(status.success());
    let (lost, _) = lost_and_doubled(&lake, &acked);
    figures(
        "slow_connections",
        serde_json::json!({
            "slow_connections": sc.slow_connections, "header_timeout_s": 2,
            "never_closed": never, "slowest_close_s": slowest.as_secs_f64(),
            "real_client_requests": k, "real_client_worst_ms": worst.as_secs_f64() * 1e3,
            "real_client_lost": lost.len(),
        }),
    );
    assert_eq!(never, 0, "slow connections never closed");
    assert!(
        slowest < Duration::from_secs(6),
        "the slowest was closed after {slowest:?}"
    );
    assert!(lost.is_empty());
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .expect("VmRSS")
        / 1024.0
}

/// Bad requests of every kind — bad signatures, wrong tokens, bodies that are not JSON,
/// lines too long, malformed HTTP — many and large at once: every one is answered with an
/// error (never a 2xx), and the memory they took is given back.
#[test]
fn a_burst_of_bad_requests_is_refused_and_leaves_no_memory_behind() {
    let sc = scale();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    let s = Server::start(
        &lake,
        &log,
        &["--no-rollups", "--max-body-memory", "1073741824"],
    );
    let pid = s.child.id();
    for _ in 0..4 {
        http(
            &s.addr,
            "POST",
            "/webhooks/whatsapp",
            &[("X-Hub-Signature-256", "sha256=00")],
            &[b'{'; 4096],
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let baseline = rss_mib(pid);
    let per_worker = sc.bad_requests / 8;
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let addr = s.addr.clone();
            std::thread::spawn(move || -> u64 {
                let mut rand = common::xorshift(w + 7);
                let mut errors = 0u64;
                for i in 0..per_worker {
                    let len = (1 << 20) + (rand() % (7 << 20)) as usize;
                    let body = vec![b'{'; len];
                    let answer = match (w as usize + i) % 5 {
                        0 => http(
                            &addr,
                            "POST",
                            "/webhooks/whatsapp",
                            &[("X-Hub-Signature-256", "sha256=00")],
                            &body,
                        ),
                        1 => http(
                            &addr,
                            "POST",
                            "/ingest/events",
                            &[("Authorization", "Bearer wrong-token-0123456789")],
                            &body,
                        ),
                        2 => http(
                            &addr,
                            "POST",
                            "/api/v1/sql",
                            &[
                                ("Authorization", &bearer(READ)),
                                ("Content-Type", "application/json"),
                            ],
                            &body,
                        ),
                        // One line far over the line limit: rejected, nothing stored.
                        3 => http(
                            &addr,
                            "POST",
                            "/ingest/events",
                            &[("Authorization", &bearer(INGEST))],
                            &[b'x'; 5 << 20],
                        ),
                        _ => {
                            // Not HTTP at all.
                            let mut c = TcpStream::connect(&addr).unwrap();
                            let _ = c.write_all(&body[..64 << 10]);
                            let mut sink = Vec::new();
                            c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                            let _ = c.read_to_end(&mut sink);
                            let text = String::from_utf8_lossy(&sink).into_owned();
                            text.split_whitespace()
                                .nth(1)
                                .and_then(|c| c.parse().ok())
                                .map(|c| (c, text))
                        }
                    };
                    match answer {
                        Some((code, _)) if code >= 400 => errors += 1,
                        Some((code, b))
                            if (w as usize + i) % 5 == 3
                                && code == 200
                                && b.contains("\"accepted\":0") =>
                        {
                            errors += 1
                        }
                        Some((code, b)) => {
                            panic!("a bad request got {code}: {}", &b[..b.len().min(300)])
                        }
                        None => errors += 1, // closed without an answer (not HTTP)
                    }
                }
                errors
            })
        })
        .collect();
    let mut refused = 0;
    for w in workers {
        refused += w.join().unwrap();
    }
    let after = rss_mib(pid);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut settled = rss_mib(pid);
    while settled > baseline + 32.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        settled = rss_mib(pid);
    }
    assert!(s.stop().success());
    figures(
        "bad_request_burst",
        serde_json::json!({
            "requests": per_worker * 8, "refused": refused, "rss_baseline_mib": baseline,
            "rss_after_burst_mib": after, "rss_settled_mib": settled,
        }),
    );
    assert_eq!(
        stored_ids(&lake).len(),
        0,
        "nothing of a bad request is stored"
    );
    assert!(
        settled <= baseline + 32.0,
        "VmRSS {settled:.0} MiB after the burst, baseline {baseline:.0} MiB"
    );
}

/// With rollups on, the refresh that follows a start reads every events file: it meets a
/// damaged one, has it moved aside, and refreshes without it — no query needed.
#[test]
fn the_rollup_refresh_moves_a_damaged_file_aside_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = dir.path().join("serve.log");
    for (d, day) in ["2026-11-02", "2026-11-03"].iter().enumerate() {
        let ids: Vec<String> = (0..200).map(|i| format!("r-{d}-{i}")).collect();
        let input = dir.path().join(format!("{day}.jsonl"));
        std::fs::write(&input, agent_lines(&ids, day)).unwrap();
        assert_eq!(common::ingest(&lake, &[input]).0, 0);
    }
    // The rollups are current; a new day makes the next refresh read the events again, and
    // the scrambled file is in the way.
    let victim = data_files(&lake)[0].clone();
    let range = column_chunk(&victim, "conversation_id");
    let mut bytes = std::fs::read(&victim).unwrap();
    for b in &mut bytes[range] {
        *b = b.wrapping_mul(167).wrapping_add(13);
    }
    std::fs::write(&victim, &bytes).unwrap();
    let s = Server::start(&lake, &log, &["--flush-interval", "0.2"]);
    let ids: Vec<String> = (0..10).map(|i| format!("late-{i}")).collect();
    assert_eq!(
        post_lines(&s.addr, &agent_lines(&ids, "2026-11-02")),
        Some(200)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (_, m) = http(&s.addr, "GET", "/metrics", &[], b"").unwrap();
        let refreshed = metric(&m, "supportlake_rollup_refreshes_total") >= 1.0;
        if (refreshed && !victim.exists()) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !victim.exists(),
        "the refresh had the damaged file moved aside:\n{}",
        s.log_text()
    );
    assert!(
        metric(&metrics, "supportlake_rollup_refreshes_total") >= 1.0,
        "{metrics}"
    );
    // The dashboards' numbers come from the refreshed rollups: the other day is there.
    let (code, body) = http(
        &s.addr,
        "GET",
        "/api/v1/metrics/messages?from=2026-11-01&to=2026-11-05&interval=day",
        &[("Authorization", &bearer(READ))],
        b"",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(s.stop().success());
}
