//! The public payload corpus (sample-data/corpus/, provenance in its README): SDK test
//! fixtures and vendors' published examples, each with the events it must give, written by
//! hand in `expected/<name>.json`. Every file goes through the real paths — `supportlake
//! ingest`, and the signed webhook routes of `supportlake serve` — and the lake must hold
//! exactly the expected events, and the quarantine exactly the expected rejects.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{bin, manifest_dir, run};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use supportlake::pseudonym::{PseudonymKey, Pseudonymizer, normalize_identity};
use supportlake::sources::{self, SourceFormat};

const WA_SECRET: &str = "corpus-whatsapp-app-secret";
const CW_SECRET: &str = "corpus-chatwoot-secret";

/// The columns compared (all but `received_at`, which is the time of ingest).
const COLUMNS: [&str; 16] = [
    "source",
    "kind",
    "conversation_id",
    "customer_key",
    "agent_id",
    "team",
    "channel",
    "inbox",
    "priority",
    "author",
    "message_id",
    "status",
    "reason",
    "csat_score",
    "attrs",
    "ts_us",
];

struct Case {
    input: PathBuf,
    /// The input's path under sample-data/corpus/, as the expected file names it.
    name: String,
    format: SourceFormat,
    /// event_id → the row it must be stored as.
    events: BTreeMap<String, Value>,
    /// (record, field, code) of each reject.
    rejected: BTreeSet<(u64, String, String)>,
    duplicates: u64,
}

fn corpus_dir() -> PathBuf {
    manifest_dir().join("sample-data/corpus")
}

fn customer_key(identity: &str) -> String {
    let key = PseudonymKey::new(common::KEY.as_bytes().to_vec()).unwrap();
    let id = normalize_identity(identity)
        .unwrap_or_else(|| panic!("{identity:?} is no identity: fix the expected file"));
    Pseudonymizer::new(&key).key_of(&id)
}

/// Reads every expected file; each event is its `defaults` overlaid with its own fields,
/// `customer` (the raw identity) turned into the key the lake stores.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(corpus_dir().join("expected")).unwrap() {
        let path = entry.unwrap().path();
        let spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = spec["input"].as_str().unwrap().to_owned();
        let format = match spec["format"].as_str().unwrap() {
            "whatsapp" => SourceFormat::WhatsApp,
            "chatwoot" => SourceFormat::Chatwoot,
            other => panic!("{}: unknown format {other}", path.display()),
        };
        let mut events = BTreeMap::new();
        for e in spec["events"].as_array().unwrap() {
            let mut row = spec["defaults"].as_object().unwrap().clone();
            row.extend(e.as_object().unwrap().clone());
            let id = row.remove("event_id").unwrap().as_str().unwrap().to_owned();
            let ts = row.remove("ts").unwrap();
            let ts = chrono::DateTime::parse_from_rfc3339(ts.as_str().unwrap()).unwrap();
            row.insert("ts_us".into(), json!(ts.timestamp_micros()));
            if let Some(c) = row.remove("customer") {
                row.insert(
                    "customer_key".into(),
                    json!(customer_key(c.as_str().unwrap())),
                );
            }
            let mut full = serde_json::Map::new();
            for c in COLUMNS {
                full.insert(c.into(), row.remove(c).unwrap_or(Value::Null));
            }
            assert!(row.is_empty(), "{}: unknown fields {row:?}", path.display());
            assert!(
                events.insert(id.clone(), Value::Object(full)).is_none(),
                "{}: {id} twice",
                path.display()
            );
        }
        let rejected = spec["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["record"].as_u64().unwrap(),
                    r["field"].as_str().unwrap().to_owned(),
                    r["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        cases.push(Case {
            input: corpus_dir().join(&name),
            name,
            format,
            events,
            rejected,
            duplicates: spec["duplicates"].as_u64().unwrap(),
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// Every event the corpus must give, by id (ids are unique across the whole corpus).
fn all_expected(cases: &[Case]) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for c in cases {
        for (id, row) in &c.events {
            assert!(
                all.insert(id.clone(), row.clone()).is_none(),
                "{id} is expected from two corpus files"
            );
        }
    }
    all
}

/// The lake's events, by id, as the expected files write them.
fn stored(lake: &Path) -> BTreeMap<String, Value> {
    let cols = COLUMNS
        .iter()
        .map(|c| match *c {
            "ts_us" => "arrow_cast(ts, 'Int64') AS ts_us".to_owned(),
            c => c.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let (code, out, err) = run(bin()
        .args(["sql", "--format", "json", "--lake"])
        .arg(lake)
        .arg(format!(
            "SELECT event_id, {cols} FROM events ORDER BY event_id"
        )));
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mut by_id = BTreeMap::new();
    for mut row in rows {
        let obj = row.as_object_mut().unwrap();
        let id = obj.remove("event_id").unwrap().as_str().unwrap().to_owned();
        let mut full = serde_json::Map::new();
        for c in COLUMNS {
            full.insert(c.into(), obj.remove(c).unwrap_or(Value::Null));
        }
        assert!(
            by_id.insert(id.clone(), Value::Object(full)).is_none(),
            "{id} is stored twice"
        );
    }
    by_id
}

/// Compares row by row, so a failure names the event and the column.
fn assert_same(what: &str, got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>) {
    let mut problems = Vec::new();
    for (id, w) in want {
        match got.get(id) {
            None => problems.push(format!("missing {id}: expected {w}")),
            Some(g) => {
                for c in COLUMNS {
                    if g[c] != w[c] {
                        problems.push(format!("{id}.{c}: got {}, expected {}", g[c], w[c]));
                    }
                }
            }
        }
    }
    for (id, g) in got {
        if !want.contains_key(id) {
            problems.push(format!("unexpected {id}: {g}"));
        }
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

/// The records of an input as a webhook would deliver them: each line of JSON Lines, or the
/// whole pretty-printed document.
fn records(input: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(input).unwrap();
    if sources::looks_like_document(&bytes) {
        return vec![bytes];
    }
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn every_corpus_file_has_its_expected_events_and_its_provenance() {
    let readme = std::fs::read_to_string(corpus_dir().join("README.md")).unwrap();
    let cases = cases();
    let named: BTreeSet<String> = cases.iter().map(|c| c.name.clone()).collect();
    let mut inputs = BTreeSet::new();
    for sub in ["whatsapp", "chatwoot"] {
        for e in std::fs::read_dir(corpus_dir().join(sub)).unwrap() {
            inputs.insert(format!(
                "{sub}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    assert_eq!(
        named, inputs,
        "inputs without an expected file, or the reverse"
    );
    for name in &inputs {
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not in the corpus README"
        );
    }
    all_expected(&cases);
}

/// The pure decoders alone: a quick, precise check before the slower paths below.
#[test]
fn corpus_decodes_to_exactly_the_expected_events() {
    let key = PseudonymKey::new(common::KEY.as_bytes().to_vec()).unwrap();
    for case in cases() {
        let bytes = std::fs::read(&case.input).unwrap();
        let d = sources::decode_input(
            case.format,
            &bytes,
            &mut Pseudonymizer::new(&key),
            chrono::Utc::now(),
        );
        let rejected: BTreeSet<(u64, String, String)> = d
            .report
            .rejects
            .iter()
            .map(|r| (r.position.record, r.field.clone(), r.code.to_owned()))
            .collect();
        assert_eq!(rejected, case.rejected, "{}", case.name);
        let mut got = BTreeMap::new();
        for e in &d.events {
            let mut row = serde_json::to_value(e).unwrap();
            let obj = row.as_object_mut().unwrap();
            obj.insert("ts_us".into(), json!(e.ts.timestamp_micros()));
            let mut full = serde_json::Map::new();
            for c in COLUMNS {
                full.insert(c.into(), obj.remove(c).unwrap_or(Value::Null));
            }
            // A redelivered event decodes again; the lake keeps one.
            got.insert(e.event_id.clone(), Value::Object(full));
        }
        assert_eq!(
            d.events.len() as u64 - got.len() as u64,
            case.duplicates,
            "{}: repeated ids",
            case.name
        );
        assert_same(&case.name, &got, &case.events);
    }
}

#[test]
fn corpus_through_ingest_gives_exactly_the_expected_events() {
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let inputs: Vec<PathBuf> = cases.iter().map(|c| c.input.clone()).collect();
    let (code, receipt) = common::ingest(&lake, &inputs);
    let want_rejects: usize = cases.iter().map(|c| c.rejected.len()).sum();
    assert_eq!(code, if want_rejects > 0 { 2 } else { 0 }, "{receipt:#}");
    let want_dups: u64 = cases.iter().map(|c| c.duplicates).sum();
    assert_eq!(receipt["duplicates"], want_dups, "{receipt:#}");
    assert_same("supportlake ingest", &stored(&lake), &all_expected(&cases));

    // The quarantine holds exactly the expected rejects, each under its input's name.
    let mut got = BTreeSet::new();
    for f in common::walk(&lake.join("_rejected")) {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            let input = r["input"].as_str().unwrap().to_owned();
            for x in r["rejects"].as_array().unwrap() {
                got.insert((
                    input.clone(),
                    r["record"].as_u64().unwrap(),
                    x["field"].as_str().unwrap().to_owned(),
                    x["code"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    let mut want = BTreeSet::new();
    for c in &cases {
        for (record, field, code) in &c.rejected {
            want.insert((
                c.input.display().to_string(),
                *record,
                field.clone(),
                code.clone(),
            ));
        }
    }
    assert_eq!(got, want);
}

/// Kills the server if the test fails before it stopped it, so no process outlives the test.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn sign(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn corpus_through_signed_webhooks_gives_exactly_the_expected_events() {
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let child = bin()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--flush-interval",
            "0.2",
        ])
        .arg("--lake")
        .arg(&lake)
        .env("SUPPORTLAKE_TOKENS", "read:corpus-read-token-0123456789")
        .env("SUPPORTLAKE_WHATSAPP_APP_SECRET", WA_SECRET)
        .env("SUPPORTLAKE_CHATWOOT_SECRET", CW_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let mut server = Running(child);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    for case in &cases {
        for (i, body) in records(&case.input).iter().enumerate() {
            let record = i as u64 + 1;
            let (status, _, answer) = match case.format {
                SourceFormat::WhatsApp => common::request(
                    &addr,
                    "POST",
                    "/webhooks/whatsapp",
                    &[("X-Hub-Signature-256", &sign(WA_SECRET, &[body]))],
                    body,
                ),
                _ => {
                    let now = chrono::Utc::now().timestamp().to_string();
                    common::request(
                        &addr,
                        "POST",
                        "/webhooks/chatwoot",
                        &[
                            (
                                "X-Chatwoot-Signature",
                                &sign(CW_SECRET, &[now.as_bytes(), b".", body]),
                            ),
                            ("X-Chatwoot-Timestamp", &now),
                        ],
                        body,
                    )
                }
            };
            let answer: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(&answer));
            });
            assert_eq!(status, 200, "{} record {record}: {answer}", case.name);
            // Each reject of this body is named in the answer by its field.
            let rejects: Vec<&str> = answer["rejects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            let want: Vec<&(u64, String, String)> =
                case.rejected.iter().filter(|r| r.0 == record).collect();
            assert_eq!(
                rejects.len(),
                want.len(),
                "{} record {record}: {answer}",
                case.name
            );
            for (_, field, _) in want {
                assert!(
                    rejects.iter().any(|r| r.contains(&format!("`{field}`"))),
                    "{} record {record}: {field} not in {answer}",
                    case.name
                );
            }
        }
    }
    // SIGTERM: the server flushes its log into the lake and exits.
    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGTERM);
    }
    assert!(server.0.wait().unwrap().success());
    assert_same("supportlake serve", &stored(&lake), &all_expected(&cases));
}
