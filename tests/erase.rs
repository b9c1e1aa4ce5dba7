//! Erasure (LGPD art. 18) through the real binary: `supportlake erase` on a lake holding one
//! customer in WhatsApp loose messages, agent-log and Chatwoot conversations, derived tables,
//! the quarantine and a write-ahead log left by a killed server; then the same through
//! `DELETE /api/v1/customers/{key}` on a running server with events still in its log; and an
//! erasure aborted half-way and finished by a rerun.
//!
//! "Gone" is checked byte by byte: every file under the lake is scanned for the customer key
//! and the phone number in its notations, raw and — for Parquet, whose pages are compressed —
//! decoded row by row. Each scan is first shown to find them before the erasure.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;

use common::{bin, fixture, manifest_dir, request, run, run_ok, walk};
use hmac::{Hmac, KeyInit, Mac};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use supportlake::lake::LakePaths;
use supportlake::pseudonym::{PseudonymKey, Pseudonymizer};

/// Joana, the customer who asks to be forgotten: she is in every fixture.
const PHONE: &str = "+55 11 98765-4321";
/// Her number in the notations the sources and people use.
const PHONE_FORMS: [&str; 5] = [
    "5511987654321",
    "551187654321",
    "98765-4321",
    "98765.4321",
    "987654321",
];
/// Bob, who stays.
const BOB: &str = "+55 21 99999-0000";

const READ: &str = "read-token-0123456789abcdef";
const INGEST: &str = "ingest-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";
const WA_SECRET: &str = "whatsapp-app-secret";

fn key_of(identity: &str) -> String {
    let k = PseudonymKey::new(common::KEY.as_bytes().to_vec()).unwrap();
    Pseudonymizer::new(&k)
        .customer_key(identity)
        .unwrap()
        .to_owned()
}

/// Where Joana (or her key) is still found: `file (how): needle`.
fn traces(lake: &Path, key: &str) -> Vec<String> {
    let upper = key.to_ascii_uppercase();
    let mut needles: Vec<&str> = PHONE_FORMS.to_vec();
    needles.push(key);
    needles.push(&upper);
    let mut hits = Vec::new();
    for file in walk(lake) {
        let bytes = fs::read(&file).unwrap();
        let rel = file.strip_prefix(lake).unwrap().display().to_string();
        for n in &needles {
            if memchr::memmem::find(&bytes, n.as_bytes()).is_some() {
                hits.push(format!("{rel} (bytes): {n}"));
            }
        }
        if file.extension().is_some_and(|x| x == "parquet") {
            let text = parquet_text(&file);
            for n in &needles {
                if text.contains(n) {
                    hits.push(format!("{rel} (decoded rows): {n}"));
                }
            }
        }
    }
    hits
}

/// Every row of a Parquet file as text.
fn parquet_text(path: &Path) -> String {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not a readable Parquet file: {e}", path.display()))
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

fn sql(lake: &Path, query: &str) -> String {
    run_ok(
        bin()
            .args(["sql", "--format", "csv", "--lake"])
            .arg(lake)
            .arg(query),
        0,
    )
}

fn sql_one(lake: &Path, query: &str) -> u64 {
    let out = sql(lake, query);
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("one number from {query}: {out}"))
}

fn erase(lake: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
    let mut c = bin();
    c.args(["erase", "--format", "json", "--lake"])
        .arg(lake)
        .args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let (code, out, err) = run(&mut c);
    let record = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, record, err)
}

fn ingest(lake: &Path, files: &[PathBuf], expected: i32) {
    let (code, receipt) = common::ingest(lake, files);
    assert_eq!(code, expected, "{receipt}");
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn wa_body(from: &str, wamid: &str, ts: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"240000000000001","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"5511300010001","phone_number_id":"104729381001"}},"contacts":[{{"profile":{{"name":"Someone"}},"wa_id":"{from}"}}],"messages":[{{"from":"{from}","id":"{wamid}","timestamp":"{ts}","type":"text","text":{{"body":"oi"}}}}]}}}}]}}]}}"#
    )
}

fn agent(id: &str, ts: &str, kind: &str, conv: &str, extra: &str) -> String {
    format!(r#"{{"id":"{id}","ts":"{ts}","type":"{kind}","conversation_id":"{conv}"{extra}}}"#)
}

/// Bad input naming Joana (twice) and Bob (once), for the quarantine.
fn bad_inputs(dir: &Path) -> Vec<PathBuf> {
    vec![
        write(
            dir,
            "bad-agent-log.jsonl",
            &[
                agent(
                    "ok-1",
                    "2026-11-03T10:00:00Z",
                    "conversation.opened",
                    "c-900",
                    &format!(r#","customer":"{BOB}""#),
                ),
                agent(
                    "bad-1",
                    "2026-13-45T00:00:00Z",
                    "message.received",
                    "c-42",
                    r#","customer":"+55 (11) 98765-4321""#,
                ),
                agent(
                    "bad-2",
                    "yesterday",
                    "message.received",
                    "c-900",
                    &format!(r#","customer":"{BOB}""#),
                ),
            ],
        ),
        write(
            dir,
            "bad-whatsapp.jsonl",
            &[
                wa_body("5521999990000", "wamid.BOB0001", "1793707200"),
                wa_body("5511987654321", "wamid.JOANA-BAD", "not-a-time"),
            ],
        ),
    ]
}

fn fixtures() -> Vec<PathBuf> {
    [
        "whatsapp/every-message-type.jsonl",
        "whatsapp/statuses.jsonl",
        "chatwoot/every-event.jsonl",
        "agent-log/every-type.jsonl",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect()
}

fn simulated() -> Vec<PathBuf> {
    common::source_files(&manifest_dir().join("sample-data/simulated"))
}

/// Derived tables as the rollups write them (`<table>/date=D/*.parquet`, rows keyed by
/// `conv`), materialized here from the query views of the same lake.
fn derive_tables(lake: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = supportlake::query::Engine::open(
            &LakePaths::new(lake),
            Arc::new(supportlake::config::Config::default()),
        )
        .await
        .unwrap();
        for (table, query) in [
            (
                "conversations",
                "SELECT conversation_id AS conv, customer_key, source, channel, started_at, \
                 CAST(CAST(started_at AS DATE) AS VARCHAR) AS d FROM conversations",
            ),
            (
                "conversation_intervals",
                "SELECT conv, event_id, kind, ts, CAST(CAST(ts AS DATE) AS VARCHAR) AS d \
                 FROM conversation_events",
            ),
        ] {
            let (_, batches) = engine.sql(query).await.unwrap();
            let mut by_day: BTreeMap<String, Vec<arrow::array::RecordBatch>> = BTreeMap::new();
            for b in batches {
                let days = arrow::compute::cast(
                    b.column_by_name("d").unwrap(),
                    &arrow::datatypes::DataType::Utf8,
                )
                .unwrap();
                let days = days
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .unwrap()
                    .clone();
                let keep: Vec<usize> = (0..b.num_columns() - 1).collect();
                let b = b.project(&keep).unwrap();
                for day in days
                    .iter()
                    .flatten()
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    let mask: arrow::array::BooleanArray =
                        days.iter().map(|d| Some(d == Some(day))).collect();
                    let part = arrow::compute::filter_record_batch(&b, &mask).unwrap();
                    by_day.entry(day.to_owned()).or_default().push(part);
                }
            }
            for (day, parts) in by_day {
                let dir = lake.join(table).join(format!("date={day}"));
                fs::create_dir_all(&dir).unwrap();
                let f = File::create(dir.join(format!("{:020}-{:020}.parquet", 1, 1))).unwrap();
                let mut w = ArrowWriter::try_new(f, parts[0].schema(), None).unwrap();
                for p in &parts {
                    w.write(p).unwrap();
                }
                w.close().unwrap();
            }
        }
    });
}

/// Events per customer other than `key`, outside the conversations `convs` (an SQL list),
/// as CSV.
fn others(lake: &Path, key: &str, convs: &str) -> String {
    sql(
        lake,
        &format!(
            "SELECT customer_key, count(*) AS n FROM events \
             WHERE customer_key IS NOT NULL AND customer_key <> '{key}' \
               AND (conversation_id IS NULL OR conversation_id NOT IN ({convs})) \
             GROUP BY 1 ORDER BY 1"
        ),
    )
}

/// Every file under the lake and its bytes, except the audit log and the lock.
fn snapshot(lake: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(lake)
        .into_iter()
        .filter(|p| !p.starts_with(lake.join("_audit")) && !p.ends_with("_lock"))
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn audit_lines(lake: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(lake.join("_audit/erasures.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn erase_removes_every_trace_of_one_customer_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut inputs = simulated();
    inputs.extend(fixtures());
    inputs.extend(bad_inputs(dir.path()));
    // Loose WhatsApp messages of hers two weeks before her conversations: a session.
    inputs.push(write(
        dir.path(),
        "loose.jsonl",
        &[
            wa_body("5511987654321", "wamid.LOOSE01", "1792497600"),
            wa_body("551187654321", "wamid.LOOSE02", "1792497660"),
        ],
    ));
    ingest(&lake, &inputs, 2);
    derive_tables(&lake);
    let key = key_of(PHONE);
    assert_eq!(
        sql_one(
            &lake,
            &format!(
                "SELECT count(*) FROM conversations WHERE conversation_id LIKE 'session:{key}:%'"
            )
        ),
        1,
        "her loose messages make a session"
    );

    // Before: she is everywhere, and the scan sees her.
    let found = traces(&lake, &key);
    for place in [
        "_rejected",
        "events/",
        "conversations/",
        "conversation_intervals/",
    ] {
        assert!(
            found.iter().any(|h| h.starts_with(place)),
            "the scan finds her in {place} before the erasure: {found:#?}"
        );
    }
    let convs = format!(
        "SELECT DISTINCT conversation_id FROM events WHERE customer_key = '{key}' AND conversation_id IS NOT NULL"
    );
    let conv_list: Vec<String> = sql(&lake, &convs)
        .lines()
        .skip(1)
        .map(|c| format!("'{c}'"))
        .collect();
    let n_convs = conv_list.len() as u64;
    let conv_list = conv_list.join(",");
    assert!(n_convs >= 2, "agent-log and Chatwoot conversations");
    let hers = sql_one(
        &lake,
        &format!(
            "SELECT count(*) FROM events WHERE customer_key = '{key}' OR conversation_id IN ({convs})"
        ),
    );
    let total = sql_one(&lake, "SELECT count(*) FROM events");
    // A conversation is erased whole. (The simulated week happens to hold a Chatwoot
    // conversation with the fixture's inbox and number, `chatwoot:7:42`, under another
    // customer: as one conversation id names one conversation, it goes too.)
    let others_before = others(&lake, &key, &conv_list);
    assert!(others_before.lines().count() > 50, "{others_before}");

    // Erase.
    let (code, record, err) = erase(&lake, &["--customer", PHONE], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(record["identified_by"], "phone");
    // Her conversations in the events, and the session the derived tables know her by.
    assert_eq!(record["conversations"].as_u64(), Some(n_convs + 1));
    assert_eq!(record["rows_removed"]["events"].as_u64(), Some(hers));
    assert!(
        record["rows_removed"]["conversations"].as_u64().unwrap() >= 3,
        "{record}"
    );
    assert!(
        record["rows_removed"]["conversation_intervals"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(record["quarantine"]["lines_removed"], 2, "{record}");
    assert_eq!(record["actor"]["via"], "cli");

    // After: nothing of her, byte for byte; everyone else as before.
    let left = traces(&lake, &key);
    assert!(left.is_empty(), "traces left: {left:#?}");
    assert_eq!(sql_one(&lake, "SELECT count(*) FROM events"), total - hers);
    let others_after = others(&lake, &key, &conv_list);
    assert!(
        others_after == others_before,
        "another customer's events changed"
    );
    let rejected = fs::read_to_string(walk(&lake.join("_rejected")).remove(0)).unwrap();
    assert!(
        rejected.contains("bad-2"),
        "Bob's rejected line stays: {rejected}"
    );
    assert!(rejected.contains("99999-0000"), "{rejected}");

    // The audit record: what was done, never whom.
    let audit = fs::read_to_string(lake.join("_audit/erasures.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 1);
    for secret in PHONE_FORMS.iter().copied().chain([key.as_str(), "Joana"]) {
        assert!(!audit.contains(secret), "the audit log holds {secret}");
    }
    assert_eq!(audit_lines(&lake)[0], record);
    assert!(!lake.join("_audit/pending-erasure.json").exists());

    // Again: nothing to do, no data file touched; the request is still audited.
    let before = snapshot(&lake);
    let (code, again, err) = erase(&lake, &["--customer-key", &key.to_ascii_uppercase()], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again["identified_by"], "customer_key");
    assert_eq!(
        again["files_rewritten"].as_array().unwrap().len(),
        0,
        "{again}"
    );
    assert_eq!(again["quarantine"]["lines_removed"], 0);
    assert_eq!(snapshot(&lake), before);
    assert_eq!(audit_lines(&lake).len(), 2);

    // The text output teaches.
    let text = run_ok(
        bin()
            .args(["erase", "--lake"])
            .arg(&lake)
            .args(["--customer", "5511987654321"]),
        0,
    );
    assert!(
        text.contains("nothing of this customer is in the lake"),
        "{text}"
    );
}

/// A server killed with events still in its write-ahead log: `erase` rewrites the log, and
/// the replay at the next start does not bring her back.
#[test]
fn erase_rewrites_a_left_over_log_and_the_replay_does_not_restore_her() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let key = key_of(PHONE);
    let mut s = Server::start(&lake, &["--flush-interval", "3600"]);
    s.post_joana_and_bob();
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let in_wal = traces(&lake, &key);
    assert!(
        in_wal.iter().any(|h| h.starts_with("_wal")),
        "her events wait in the log: {in_wal:#?}"
    );

    let (code, record, err) = erase(&lake, &["--customer", PHONE], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        record["wal"]["events_removed"].as_u64().unwrap() >= 3,
        "{record}"
    );
    assert!(!record["wal"]["flushed_first"].as_bool().unwrap());
    assert_eq!(record["quarantine"]["lines_removed"], 1, "{record}");
    let left = traces(&lake, &key);
    assert!(left.is_empty(), "traces left: {left:#?}");

    // Replay.
    Server::start(&lake, &[]).stop();
    assert_eq!(
        sql_one(
            &lake,
            &format!("SELECT count(*) FROM events WHERE customer_key = '{key}'")
        ),
        0
    );
    assert_eq!(
        sql_one(
            &lake,
            &format!(
                "SELECT count(*) FROM events WHERE customer_key = '{}'",
                key_of(BOB)
            )
        ),
        3
    );
    assert!(traces(&lake, &key).is_empty());
}

#[test]
fn erase_through_the_server_with_events_still_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, &fixtures(), 0);
    let key = key_of(PHONE);
    let in_parquet = sql_one(
        &lake,
        &format!(
            "SELECT count(*) FROM events WHERE customer_key = '{key}' OR conversation_id IN \
             (SELECT conversation_id FROM events WHERE customer_key = '{key}')"
        ),
    );
    let s = Server::start(&lake, &["--flush-interval", "3600"]);
    s.post_joana_and_bob();

    // While the server runs, the command refuses and points to the route.
    let (code, _, err) = erase(&lake, &["--customer", PHONE], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("in use by serve") && err.contains(&format!("/api/v1/customers/{key}")),
        "{err}"
    );

    let found = traces(&lake, &key);
    assert!(found.iter().any(|h| h.starts_with("_wal")), "{found:#?}");
    assert!(found.iter().any(|h| h.starts_with("events/")), "{found:#?}");
    assert!(
        found.iter().any(|h| h.starts_with("_rejected")),
        "{found:#?}"
    );

    let route = format!("/api/v1/customers/{key}");
    let auth = |t: &str| format!("Bearer {t}");
    assert_eq!(request(&s.addr, "DELETE", &route, &[], b"").0, 401);
    for t in [READ, INGEST] {
        let (code, _, body) = request(
            &s.addr,
            "DELETE",
            &route,
            &[("Authorization", &auth(t))],
            b"",
        );
        assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    }
    let bad = request(
        &s.addr,
        "DELETE",
        "/api/v1/customers/%20",
        &[("Authorization", &auth(ADMIN))],
        b"",
    );
    assert_eq!(bad.0, 400);
    let (code, _, body) = request(
        &s.addr,
        "DELETE",
        &route,
        &[("Authorization", &auth(ADMIN))],
        b"",
    );
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 200, "{body}");
    let record: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(record["actor"]["via"], "http");
    assert_eq!(
        record["actor"]["who"],
        "admin token #3 of SUPPORTLAKE_TOKENS"
    );
    assert_eq!(record["wal"]["flushed_first"], true);
    assert_eq!(record["identified_by"], "customer_key");
    assert_eq!(record["quarantine"]["lines_removed"], 1, "{record}");
    // Hers in Parquet, plus the three posted just before (one of them her conversation's
    // assignment, which names no customer).
    assert_eq!(
        record["rows_removed"]["events"].as_u64(),
        Some(in_parquet + 3),
        "{record}"
    );

    // Gone while the server runs, and readers see it at once.
    let left = traces(&lake, &key);
    assert!(left.is_empty(), "traces left: {left:#?}");
    let q = format!("SELECT count(*) AS n FROM events WHERE customer_key = '{key}'");
    let (code, _, body) = request(
        &s.addr,
        "POST",
        "/api/v1/sql",
        &[("Authorization", &auth(READ))],
        q.as_bytes(),
    );
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("\"n\":0"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let audit = fs::read_to_string(lake.join("_audit/erasures.jsonl")).unwrap();
    assert!(!audit.contains(ADMIN) && !audit.contains(&key), "{audit}");

    // Bob posts after the erasure; then a restart; she does not come back.
    s.stop();
    Server::start(&lake, &[]).stop();
    assert_eq!(
        sql_one(
            &lake,
            &format!("SELECT count(*) FROM events WHERE customer_key = '{key}'")
        ),
        0
    );
    assert_eq!(
        sql_one(
            &lake,
            &format!(
                "SELECT count(*) FROM events WHERE customer_key = '{}'",
                key_of(BOB)
            )
        ),
        3
    );
    assert!(traces(&lake, &key).is_empty());
}

/// Aborted after all but the last file: every file is whole, the plan is on disk, and a
/// rerun finishes — including rows that only the plan still ties to her (events of her
/// conversation that carry no customer, in a file after the one that named her).
#[test]
fn an_erasure_aborted_half_way_is_finished_by_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let key = key_of(PHONE);
    ingest(&lake, &fixtures(), 0);
    ingest(&lake, &bad_inputs(dir.path()), 2);
    // Her conversation c-4242: opened with her number in one file, the agent's side (no
    // customer) in a later one.
    let late = |name: &str, lines: Vec<String>| write(dir.path(), name, &lines);
    ingest(
        &lake,
        &[late(
            "a.jsonl",
            vec![agent(
                "z-1",
                "2026-11-20T10:00:00Z",
                "conversation.opened",
                "c-4242",
                &format!(r#","customer":"{PHONE}""#),
            )],
        )],
        0,
    );
    ingest(
        &lake,
        &[late(
            "b.jsonl",
            vec![
                agent(
                    "z-2",
                    "2026-11-20T10:01:00Z",
                    "conversation.assigned",
                    "c-4242",
                    r#","agent_id":"ana.souza""#,
                ),
                agent(
                    "z-3",
                    "2026-11-20T10:02:00Z",
                    "message.sent",
                    "c-4242",
                    r#","author":"agent","agent_id":"ana.souza""#,
                ),
                agent(
                    "z-4",
                    "2026-11-20T10:30:00Z",
                    "conversation.resolved",
                    "c-4242",
                    r#","agent_id":"ana.souza""#,
                ),
            ],
        )],
        0,
    );
    derive_tables(&lake);
    let agent_side = "SELECT count(*) FROM events WHERE event_id IN ('z-2','z-3','z-4')";
    assert_eq!(sql_one(&lake, agent_side), 3);

    // How many files a whole erasure rewrites, on a copy.
    let copy = dir.path().join("copy");
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&lake)
            .arg(&copy),
        0,
    );
    let (code, whole, err) = erase(&copy, &["--customer", PHONE], &[]);
    assert_eq!(code, 0, "{err}");
    let files = whole["files_rewritten"].as_array().unwrap().len() as u64
        + whole["quarantine"]["files_rewritten"].as_u64().unwrap()
        + whole["quarantine"]["files_removed"].as_u64().unwrap();
    assert!(files >= 4, "{whole}");
    let last = whole["files_rewritten"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last.as_str()
            .unwrap()
            .starts_with("events/date=2026-11-20/"),
        "{whole}"
    );

    let abort_at = (files - 1).to_string();
    let (code, _, err) = erase(
        &lake,
        &["--customer", PHONE],
        &[("SUPPORTLAKE_TEST_ERASE_ABORT_AFTER_FILES", &abort_at)],
    );
    assert_ne!(code, 0, "the hook aborts: {err}");
    assert!(lake.join("_audit/pending-erasure.json").exists());
    assert!(!lake.join("_audit/erasures.jsonl").exists());
    // Whole files only: every Parquet file reads, no temp file is visible as data.
    for f in walk(&lake) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "{}", f.display());
        if name.ends_with(".parquet") {
            parquet_text(&f);
        }
    }
    assert_eq!(
        sql_one(&lake, agent_side),
        3,
        "the last file was not reached"
    );
    // Her key is in the lake now only where the plan keeps it.
    let left: Vec<String> = traces(&lake, &key)
        .into_iter()
        .filter(|h| !h.starts_with("_audit/pending-erasure.json"))
        .collect();
    assert!(left.is_empty(), "{left:#?}");

    let (code, record, err) = erase(&lake, &["--customer", PHONE], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(record["resumed"], 1);
    assert_eq!(sql_one(&lake, agent_side), 0, "the plan carried c-4242");
    assert!(traces(&lake, &key).is_empty());
    assert!(!lake.join("_audit/pending-erasure.json").exists());
    // The record of the interrupted erasure adds up to the one done in one go.
    assert_eq!(record["rows_removed"], whole["rows_removed"]);
    assert_eq!(record["files_rewritten"], whole["files_rewritten"]);
    assert_eq!(record["quarantine"], whole["quarantine"]);
    assert_eq!(audit_lines(&lake).len(), 1);
}

/// A compacted file hides the files its sequence range covers by their names: erasure
/// rewrites covered files too, keeps every name, and leaves a file it empties as an empty
/// Parquet file of the same schema.
#[test]
fn covered_and_emptied_files_keep_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let key = key_of(PHONE);
    ingest(
        &lake,
        &[write(
            dir.path(),
            "hers.jsonl",
            &[agent(
                "h-1",
                "2026-11-21T10:00:00Z",
                "conversation.opened",
                "c-77",
                &format!(r#","customer":"{PHONE}""#),
            )],
        )],
        0,
    );
    let part = lake.join("events/date=2026-11-21");
    let original = walk(&part).remove(0);
    // Stand-in for a compaction that left its input beside its output.
    let covered = part.join(format!("{:020}-{:020}.parquet", 0, 0));
    fs::copy(&original, &covered).unwrap();
    let names_before: Vec<PathBuf> = walk(&lake)
        .into_iter()
        .filter(|p| !p.ends_with("_lock"))
        .collect();

    let (code, record, err) = erase(&lake, &["--customer", PHONE], &[]);
    assert_eq!(code, 0, "{err}");
    // Both events files, and her rows in the rollup tables ingest refreshed.
    let rewritten: Vec<&str> = record["files_rewritten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        rewritten
            .iter()
            .filter(|f| f.starts_with("events/"))
            .count(),
        2,
        "{record}"
    );
    assert!(
        rewritten.iter().any(|f| f.starts_with("conversations/")),
        "{record}"
    );
    for f in [&original, &covered] {
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(f).unwrap()).unwrap();
        assert_eq!(b.metadata().file_metadata().num_rows(), 0);
        assert_eq!(b.schema().fields(), supportlake::event::schema().fields());
    }
    let names_after: Vec<PathBuf> = walk(&lake)
        .into_iter()
        .filter(|p| !p.ends_with("_lock") && !p.starts_with(lake.join("_audit")))
        .collect();
    assert_eq!(names_after, names_before);
    assert!(traces(&lake, &key).is_empty());
    assert_eq!(sql_one(&lake, "SELECT count(*) FROM events"), 0);
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(lake: &Path, extra: &[&str]) -> Server {
        let mut child = bin()
            .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
            .arg(lake)
            .args(extra)
            .env(
                "SUPPORTLAKE_TOKENS",
                format!("read:{READ},ingest:{INGEST},admin:{ADMIN}"),
            )
            .env("SUPPORTLAKE_WHATSAPP_APP_SECRET", WA_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    /// Three events of Joana (an agent-log conversation, a WhatsApp message), three of Bob,
    /// and a rejected line with her number — all acknowledged, so all in the log.
    fn post_joana_and_bob(&self) {
        let lines = [
            agent(
                "p-1",
                "2026-11-22T10:00:00Z",
                "conversation.opened",
                "c-500",
                &format!(r#","customer":"{PHONE}""#),
            ),
            agent(
                "p-2",
                "2026-11-22T10:01:00Z",
                "conversation.assigned",
                "c-500",
                r#","agent_id":"ana.souza""#,
            ),
            agent(
                "p-3",
                "2026-11-22T10:00:00Z",
                "conversation.opened",
                "c-501",
                &format!(r#","customer":"{BOB}""#),
            ),
            agent(
                "p-4",
                "2026-11-22T10:02:00Z",
                "message.received",
                "c-501",
                &format!(r#","customer":"{BOB}""#),
            ),
            agent(
                "p-bad",
                "2026-11-22T25:00:00Z",
                "message.received",
                "c-500",
                r#","customer":"5511987654321""#,
            ),
        ]
        .join("\n");
        let (code, _, body) = request(
            &self.addr,
            "POST",
            "/ingest/events",
            &[("Authorization", &format!("Bearer {INGEST}"))],
            lines.as_bytes(),
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        for (from, id) in [
            ("5511987654321", "wamid.JOANA-LIVE"),
            ("5521999990000", "wamid.BOB-LIVE"),
        ] {
            let body = wa_body(from, id, "1795341600");
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WA_SECRET.as_bytes()).unwrap();
            mac.update(body.as_bytes());
            let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            let (code, _, resp) = request(
                &self.addr,
                "POST",
                "/webhooks/whatsapp",
                &[("X-Hub-Signature-256", &sig)],
                body.as_bytes(),
            );
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
        }
    }

    /// SIGTERM: drains, flushes the log into the lake, exits 0.
    fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
    }
}

/// Byte range of one column chunk in a Parquet file's first row group.
fn column_chunk(path: &Path, column: &str) -> std::ops::Range<usize> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let c = r
        .metadata()
        .row_group(0)
        .columns()
        .iter()
        .find(|c| c.column_path().string() == column)
        .unwrap()
        .byte_range();
    c.0 as usize..(c.0 + c.1) as usize
}

/// Damaged files are kept for inspection (`_damaged/`, `_wal/damaged/`); an erasure removes
/// those that may hold her, keeps those shown to hold none of her, and names what it removed
/// in the audit record. A file that turns out damaged during the erasure goes the same way.
#[test]
fn damaged_files_that_may_hold_her_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let key = key_of(PHONE);
    let bob_key = key_of(BOB);
    for (who, phone, day) in [("her", PHONE, "2026-11-21"), ("bob", BOB, "2026-11-22")] {
        let lines: Vec<String> = (0..40)
            .map(|i| {
                agent(
                    &format!("{who}-{i}"),
                    &format!("{day}T10:00:{:02}Z", i % 60),
                    "message.received",
                    &format!("c-{who}-{i}"),
                    &format!(r#","customer":"{phone}""#),
                )
            })
            .collect();
        ingest(
            &lake,
            &[write(dir.path(), &format!("{who}.jsonl"), &lines)],
            0,
        );
    }
    // Her events file: the customer_key pages scrambled, so nothing can show it is free of her.
    let hers = walk(&lake.join("events/date=2026-11-21")).remove(0);
    let range = column_chunk(&hers, "customer_key");
    let mut bytes = fs::read(&hers).unwrap();
    for b in &mut bytes[range] {
        *b = b.wrapping_mul(167).wrapping_add(13);
    }
    fs::write(&hers, &bytes).unwrap();
    // A readable copy of Bob's file moved aside earlier: it holds none of her, so it stays.
    let bobs = walk(&lake.join("events/date=2026-11-22")).remove(0);
    let aside = lake
        .join("_damaged/events/date=2026-11-22/00000000000000000099-00000000000000000099.parquet");
    fs::create_dir_all(aside.parent().unwrap()).unwrap();
    fs::copy(&bobs, &aside).unwrap();
    // Kept log bytes: one run with her key, one with Bob's.
    let kept = lake.join("_wal/damaged");
    fs::create_dir_all(&kept).unwrap();
    fs::write(
        kept.join("0000000000000001.wal.000000000018-000000000100"),
        format!("junk{key}junk"),
    )
    .unwrap();
    fs::write(
        kept.join("0000000000000001.wal.000000000200-000000000300"),
        format!("junk{bob_key}junk"),
    )
    .unwrap();

    let (code, record, err) = erase(&lake, &["--customer", PHONE], &[]);
    assert_eq!(code, 0, "{err}");
    let removed: Vec<&str> = record["damaged_removed"]
        .as_array()
        .unwrap_or_else(|| panic!("{record}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(removed.len(), 2, "{record}");
    assert!(
        removed
            .iter()
            .any(|r| r.starts_with("_damaged/events/date=2026-11-21/")),
        "{removed:?}"
    );
    assert!(
        removed
            .iter()
            .any(|r| r.contains("000000000018-000000000100")),
        "{removed:?}"
    );
    assert!(aside.exists(), "Bob's file stays");
    assert!(
        kept.join("0000000000000001.wal.000000000200-000000000300")
            .exists()
    );
    let left = traces(&lake, &key);
    assert!(left.is_empty(), "{left:?}");
    // Bob is all there.
    assert_eq!(
        sql_one(
            &lake,
            "SELECT count(*) FROM events WHERE event_id LIKE 'bob-%'"
        ),
        40
    );
}
