//! End-to-end checks of the generator: they run small simulations and read the files
//! back the way a decoder would, so a broken promise (order, format, truth) fails here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use serde_json::Value;

use super::{GenerateError, GenerateOptions, Summary, generate};

fn options(out: &Path, days: u32, per_day: u32, seed: u64) -> GenerateOptions {
    GenerateOptions {
        out: out.to_path_buf(),
        start: NaiveDate::from_ymd_opt(2026, 11, 2).expect("valid date"),
        days,
        conversations_per_day: per_day,
        seed,
        timezone: chrono_tz::America::Sao_Paulo,
        id_offset: 0,
    }
}

fn run(out: &Path, days: u32, per_day: u32, seed: u64) -> Summary {
    generate(&options(out, days, per_day, seed), &mut |_| {}).expect("generate succeeds")
}

fn ts_of(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad RFC 3339 {s:?}: {e}"))
        .timestamp()
}

fn opt_ts(s: &str) -> Option<i64> {
    (!s.is_empty()).then(|| ts_of(s))
}

/// Files of one kind, in date order.
fn day_files(out: &Path, kind: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(out.join(kind))
        .expect("kind dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .expect("readable")
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad JSON {e}: {l}", path.display()))
        })
        .collect()
}

fn all_lines(out: &Path, kind: &str) -> Vec<Value> {
    day_files(out, kind).iter().flat_map(|p| lines(p)).collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The time a body stands for: its latest item for WhatsApp, the change or message
/// time for Chatwoot.
fn body_ts(kind: &str, v: &Value) -> i64 {
    match kind {
        "agent-log" => ts_of(str_of(v, "ts")),
        "whatsapp" => wa_items(v)
            .iter()
            .map(|(_, item, _)| item_ts(item))
            .max()
            .expect("a body has items"),
        _ => {
            if str_of(v, "event").starts_with("conversation_") {
                let f = v["updated_at"].as_f64().expect("updated_at is a number");
                assert_eq!(f.fract(), 0.0, "whole seconds");
                f as i64
            } else {
                ts_of(str_of(v, "created_at"))
            }
        }
    }
}

fn item_ts(item: &Value) -> i64 {
    str_of(item, "timestamp")
        .parse()
        .expect("unix seconds as a string")
}

/// (phone_number_id, item, is_status) for every message and status in a WhatsApp body.
fn wa_items(v: &Value) -> Vec<(String, Value, bool)> {
    let mut out = Vec::new();
    for entry in v["entry"].as_array().expect("entry array") {
        for change in entry["changes"].as_array().expect("changes array") {
            let value = &change["value"];
            let inbox = str_of(&value["metadata"], "phone_number_id").to_string();
            for m in value["messages"].as_array().into_iter().flatten() {
                out.push((inbox.clone(), m.clone(), false));
            }
            for s in value["statuses"].as_array().into_iter().flatten() {
                out.push((inbox.clone(), s.clone(), true));
            }
        }
    }
    out
}

fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = fs::read_to_string(path).expect("csv readable");
    let mut it = text.lines();
    let header: Vec<String> = it
        .next()
        .expect("header")
        .split(',')
        .map(String::from)
        .collect();
    it.map(|l| {
        let cells: Vec<&str> = l.split(',').collect();
        assert_eq!(
            cells.len(),
            header.len(),
            "{}: ragged row {l}",
            path.display()
        );
        header
            .iter()
            .cloned()
            .zip(cells.into_iter().map(String::from))
            .collect()
    })
    .collect()
}

fn tree(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(out)
                    .expect("inside")
                    .to_string_lossy()
                    .into_owned();
                m.insert(rel, fs::read(&p).expect("file"));
            }
        }
    }
    m
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let c = tmp.path().join("c");
    let sa = run(&a, 3, 250, 7);
    let sb = run(&b, 3, 250, 7);
    run(&c, 3, 250, 8);
    let (ta, tb, tc) = (tree(&a), tree(&b), tree(&c));
    assert!(ta.len() > 5);
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, v) in &ta {
        assert!(tb[k] == *v, "{k} differs between identical runs");
    }
    assert_eq!(sa.events, sb.events);
    assert_eq!(sa.bytes, sb.bytes);
    let differing = ta.iter().filter(|(k, v)| tc.get(*k) != Some(*v)).count();
    assert!(differing > 0, "a different seed must change the output");
    assert_ne!(ta["truth/conversations.csv"], tc["truth/conversations.csv"]);
}

#[test]
fn files_are_in_time_order_and_named_by_utc_date() {
    let tmp = tempfile::tempdir().expect("tempdir");
    run(tmp.path(), 3, 400, 11);
    for kind in ["agent-log", "whatsapp", "chatwoot"] {
        let files = day_files(tmp.path(), kind);
        assert!(!files.is_empty(), "{kind} has files");
        let mut last = i64::MIN;
        for f in files {
            let stem = f
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("stem")
                .to_string();
            for v in lines(&f) {
                let t = body_ts(kind, &v);
                assert!(t >= last, "{}: {t} after {last}", f.display());
                last = t;
                let date = DateTime::from_timestamp(t, 0)
                    .expect("in range")
                    .date_naive()
                    .to_string();
                assert_eq!(date, stem, "{}: line dated {date}", f.display());
            }
        }
    }
}

const AGENT_LOG_FIELDS: &[&str] = &[
    "id",
    "ts",
    "type",
    "conversation_id",
    "customer",
    "agent_id",
    "team",
    "channel",
    "inbox",
    "priority",
    "author",
    "private",
    "message_id",
    "score",
    "status",
    "reason",
    "attrs",
];
const AGENT_LOG_TYPES: &[&str] = &[
    "conversation.opened",
    "conversation.queued",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.resolved",
    "conversation.reopened",
    "message.sent",
    "message.received",
    "csat.submitted",
    "agent.status",
];

#[test]
fn agent_log_lines_follow_the_format() {
    let tmp = tempfile::tempdir().expect("tempdir");
    run(tmp.path(), 4, 300, 3);
    let mut ids = HashSet::new();
    let mut seen_types = HashSet::new();
    let mut previous_id = 0u64;
    for f in day_files(tmp.path(), "agent-log") {
        let text = fs::read_to_string(&f).expect("readable");
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("JSON");
            let obj = v.as_object().expect("an object per line");
            for k in obj.keys() {
                assert!(
                    AGENT_LOG_FIELDS.contains(&k.as_str()),
                    "unknown field {k} in {line}"
                );
            }
            let id = obj["id"].as_str().expect("string id");
            let n: u64 = id
                .strip_prefix("ev-")
                .and_then(|n| n.parse().ok())
                .expect("ev-N");
            assert!(n > previous_id, "ids rise with the file order");
            previous_id = n;
            assert!(ids.insert(id.to_string()), "duplicate id {id}");
            let ts = obj["ts"].as_str().expect("ts string");
            assert!(
                ts.len() == 20 && ts.ends_with('Z'),
                "whole-second UTC ts: {ts}"
            );
            let t = ts_of(ts);
            assert!((946_684_800..4_102_444_800).contains(&t));
            let kind = obj["type"].as_str().expect("type string");
            assert!(AGENT_LOG_TYPES.contains(&kind), "unknown type {kind}");
            seen_types.insert(kind.to_string());
            for k in [
                "conversation_id",
                "customer",
                "agent_id",
                "team",
                "channel",
                "inbox",
                "priority",
                "author",
                "message_id",
                "status",
                "reason",
            ] {
                if let Some(x) = obj.get(k) {
                    assert!(x.is_string(), "{k} must be a string in {line}");
                }
            }
            if let Some(p) = obj.get("private") {
                assert!(p.is_boolean());
            }
            if let Some(a) = obj.get("attrs") {
                assert!(a.is_object());
            }
            if kind.starts_with("conversation.") || kind == "csat.submitted" {
                assert!(obj.contains_key("conversation_id"), "{line}");
            }
            match kind {
                "csat.submitted" => {
                    let s = obj["score"].as_u64().expect("integer score");
                    assert!((1..=5).contains(&s));
                }
                "agent.status" => {
                    assert!(obj.contains_key("agent_id"));
                    let s = obj["status"].as_str().expect("status");
                    assert!(["available", "paused", "offline"].contains(&s));
                    if s == "paused" {
                        assert!(obj.contains_key("reason"), "pauses say why");
                    }
                }
                "message.sent" => {
                    let author = obj.get("author").and_then(Value::as_str).unwrap_or("agent");
                    assert!(author == "agent" || author == "bot");
                    let private = obj.get("private").and_then(Value::as_bool).unwrap_or(false);
                    if author == "agent" {
                        assert!(obj.contains_key("agent_id"));
                    }
                    assert_eq!(
                        obj.contains_key("message_id"),
                        !private,
                        "public messages carry a wamid"
                    );
                }
                "conversation.opened" | "conversation.reopened" => {
                    assert!(obj.contains_key("customer"));
                }
                "conversation.queued" | "conversation.transferred" => {
                    assert!(obj.contains_key("team") && obj.contains_key("priority"));
                }
                "conversation.assigned" => {
                    assert!(obj.contains_key("agent_id") && obj.contains_key("team"));
                }
                "conversation.resolved" => {
                    let r = obj["reason"].as_str().expect("reason");
                    assert!(["solved", "bot_resolved", "customer_left"].contains(&r));
                    assert_eq!(obj.contains_key("agent_id"), r == "solved");
                }
                _ => {}
            }
        }
    }
    for kind in [
        "conversation.opened",
        "conversation.queued",
        "conversation.assigned",
        "conversation.resolved",
        "message.sent",
        "csat.submitted",
        "agent.status",
    ] {
        assert!(seen_types.contains(kind), "a 4-day run has {kind} lines");
    }
}

#[test]
fn truth_invariants_hold() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = run(tmp.path(), 4, 300, 5);
    let rows = read_csv(&tmp.path().join("truth/conversations.csv"));
    assert_eq!(rows.len() as u64, s.conversations);
    let mut ids = HashSet::new();
    for r in &rows {
        assert!(ids.insert(r["conversation_id"].clone()));
        let started = ts_of(&r["started_at"]);
        let queued = opt_ts(&r["queued_at"]);
        let assigned = opt_ts(&r["assigned_at"]);
        let first = opt_ts(&r["first_response_at"]);
        let resolved = opt_ts(&r["resolved_at"]);
        if let Some(q) = queued {
            assert!(started <= q);
        }
        if let Some(a) = assigned {
            assert!(
                queued.is_some_and(|q| q <= a),
                "assigned after queued: {r:?}"
            );
        }
        if let Some(f) = first {
            assert!(
                assigned.is_some_and(|a| a <= f),
                "first response after assignment: {r:?}"
            );
            assert!(!r["agent_first_response"].is_empty() && !r["team_first_response"].is_empty());
        }
        let channel_ok = match r["source"].as_str() {
            "agent_log" => r["channel"] == "whatsapp" && r["conversation_id"].starts_with("c-"),
            "chatwoot" => {
                r["channel"] == "webchat"
                    && r["inbox"] == "7"
                    && r["conversation_id"].starts_with("chatwoot:7:")
            }
            _ => false,
        };
        assert!(channel_ok, "{r:?}");
        let customer = &r["customer"];
        assert!(
            (customer.starts_with("+55") && customer.len() == 14) || customer.starts_with("BR."),
            "canonical customer {customer}"
        );
        match r["outcome"].as_str() {
            "bot_resolved" => {
                assert!(queued.is_none() && assigned.is_none() && resolved.is_some());
                assert_eq!(
                    r["messages_out"].parse::<u32>().ok().map(|n| n >= 1),
                    Some(true)
                );
            }
            "lost" => assert!(
                queued.is_some() && assigned.is_none() && first.is_none() && resolved.is_some()
            ),
            "abandoned_after_assignment" => {
                assert!(assigned.is_some() && first.is_none() && resolved.is_some());
            }
            "answered" => assert!(first.is_some() && resolved.is_some()),
            "open" => assert!(resolved.is_none()),
            other => panic!("unknown outcome {other}"),
        }
        if let Some(res) = resolved {
            assert!(res >= started);
        }
        if !r["csat_score"].is_empty() {
            let sc: u8 = r["csat_score"].parse().expect("score");
            assert!((1..=5).contains(&sc));
            assert!(first.is_some(), "ratings only after an agent reply");
        }
    }
}

/// What the source files say about one conversation, decoded independently of the
/// simulation.
#[derive(Default, Debug)]
struct Decoded {
    started: Option<i64>,
    queued: Option<i64>,
    assigned: Option<i64>,
    first_response: Option<i64>,
    resolved: Option<i64>,
    open_at_end: bool,
    messages_in: u32,
    messages_out: u32,
    notes: u32,
    transfers: u32,
    reopens: u32,
    csat: Option<u64>,
}

/// Canonical identity of a WhatsApp sender: E.164 with the ninth digit restored, or
/// the BSUID when there is no phone.
fn wa_identity(from: Option<&str>, user_id: &str) -> String {
    match from {
        Some(f) if f.len() == 12 => format!("+{}9{}", &f[..4], &f[4..]),
        Some(f) => format!("+{f}"),
        None => user_id.to_string(),
    }
}

#[test]
fn truth_counts_match_the_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    run(tmp.path(), 3, 300, 21);
    let out = tmp.path();
    let rows = read_csv(&out.join("truth/conversations.csv"));
    let mut dec: HashMap<String, Decoded> = HashMap::new();

    // Agent log.
    let mut public_wamids = HashSet::new();
    for v in all_lines(out, "agent-log") {
        let kind = str_of(&v, "type");
        if kind == "agent.status" {
            continue;
        }
        let t = ts_of(str_of(&v, "ts"));
        let d = dec
            .entry(str_of(&v, "conversation_id").to_string())
            .or_default();
        match kind {
            "conversation.opened" => d.started = Some(t),
            "conversation.queued" => {
                d.queued.get_or_insert(t);
                d.open_at_end = true;
            }
            "conversation.assigned" => {
                d.assigned.get_or_insert(t);
            }
            "conversation.transferred" => d.transfers += 1,
            "conversation.reopened" => d.reopens += 1,
            "conversation.resolved" => {
                d.resolved = Some(t);
                d.open_at_end = false;
            }
            "csat.submitted" => d.csat = v["score"].as_u64(),
            "message.sent" => {
                if v["private"].as_bool() == Some(true) {
                    d.notes += 1;
                } else {
                    d.messages_out += 1;
                    public_wamids.insert(str_of(&v, "message_id").to_string());
                    if str_of(&v, "author") == "agent"
                        && d.queued.is_some()
                        && d.first_response.is_none()
                    {
                        d.first_response = Some(t);
                    }
                }
            }
            other => panic!("unexpected {other}"),
        }
    }

    // WhatsApp customer messages, attributed by (inbox, customer) to the latest
    // conversation that customer started there.
    let mut starts: HashMap<(String, String), Vec<(i64, String)>> = HashMap::new();
    for r in rows.iter().filter(|r| r["source"] == "agent_log") {
        starts
            .entry((r["inbox"].clone(), r["customer"].clone()))
            .or_default()
            .push((ts_of(&r["started_at"]), r["conversation_id"].clone()));
    }
    for v in starts.values_mut() {
        v.sort();
    }
    let mut statuses = 0;
    for body in all_lines(out, "whatsapp") {
        for (inbox, item, is_status) in wa_items(&body) {
            if is_status {
                statuses += 1;
                assert!(
                    public_wamids.contains(str_of(&item, "id")),
                    "status of an unknown message"
                );
                continue;
            }
            let who = wa_identity(item["from"].as_str(), str_of(&item, "from_user_id"));
            let t = item_ts(&item);
            let conv = starts
                .get(&(inbox, who.clone()))
                .and_then(|v| v.iter().rev().find(|(s, _)| *s <= t))
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| panic!("message from {who} at {t} has no conversation"));
            // A reaction is a status of the message it reacts to, not a message.
            if item["type"] != "reaction" {
                dec.entry(conv).or_default().messages_in += 1;
            }
        }
    }
    assert!(statuses > 0);

    // Chatwoot.
    for v in all_lines(out, "chatwoot") {
        let event = str_of(&v, "event");
        let conv = if event.starts_with("conversation_") {
            &v
        } else {
            &v["conversation"]
        };
        let key = format!("chatwoot:7:{}", conv["id"].as_u64().expect("display id"));
        let d = dec.entry(key).or_default();
        let t = body_ts("chatwoot", &v);
        match event {
            "conversation_created" => d.started = Some(t),
            "conversation_status_changed" => {
                let ch = &v["changed_attributes"][0]["status"];
                match (str_of(ch, "previous_value"), str_of(ch, "current_value")) {
                    ("pending", "open") => {
                        d.queued.get_or_insert(t);
                        d.open_at_end = true;
                    }
                    ("resolved", "open") => {
                        d.reopens += 1;
                        d.open_at_end = true;
                    }
                    (_, "resolved") => {
                        d.resolved = Some(t);
                        d.open_at_end = false;
                    }
                    other => panic!("unexpected status change {other:?}"),
                }
            }
            "conversation_updated" => {
                for ch in v["changed_attributes"].as_array().expect("changes") {
                    if ch["assignee_id"]["current_value"].is_u64() {
                        d.assigned.get_or_insert(t);
                    }
                    if ch.get("team_id").is_some() {
                        d.transfers += 1;
                    }
                }
            }
            "message_created" => {
                let private = v["private"].as_bool().expect("private flag");
                match (str_of(&v, "message_type"), private) {
                    ("incoming", _) => d.messages_in += 1,
                    ("outgoing", true) => d.notes += 1,
                    ("outgoing", false) => {
                        d.messages_out += 1;
                        if str_of(&v["sender"], "type") == "user"
                            && d.queued.is_some()
                            && d.first_response.is_none()
                        {
                            d.first_response = Some(t);
                        }
                    }
                    other => panic!("unexpected message {other:?}"),
                }
            }
            "message_updated" => {
                assert_eq!(str_of(&v, "content_type"), "input_csat");
                d.csat =
                    v["content_attributes"]["submitted_values"]["csat_survey_response"]["rating"]
                        .as_u64();
            }
            other => panic!("unexpected event {other}"),
        }
    }

    let mut checked = 0;
    for r in &rows {
        let id = &r["conversation_id"];
        let d = dec
            .get(id)
            .unwrap_or_else(|| panic!("{id} appears in no file"));
        let ctx = format!("{id}: {d:?} vs {r:?}");
        assert_eq!(d.started, Some(ts_of(&r["started_at"])), "{ctx}");
        assert_eq!(d.queued, opt_ts(&r["queued_at"]), "{ctx}");
        assert_eq!(d.assigned, opt_ts(&r["assigned_at"]), "{ctx}");
        assert_eq!(d.first_response, opt_ts(&r["first_response_at"]), "{ctx}");
        let truth_resolved = opt_ts(&r["resolved_at"]);
        if r["outcome"] == "open" {
            assert!(truth_resolved.is_none());
            assert!(d.resolved.is_none() || d.open_at_end, "{ctx}");
        } else {
            assert_eq!(d.resolved, truth_resolved, "{ctx}");
        }
        assert_eq!(d.messages_in.to_string(), r["messages_in"], "{ctx}");
        assert_eq!(d.messages_out.to_string(), r["messages_out"], "{ctx}");
        assert_eq!(d.notes.to_string(), r["private_notes"], "{ctx}");
        assert_eq!(d.transfers.to_string(), r["transfers"], "{ctx}");
        assert_eq!(d.reopens.to_string(), r["reopens"], "{ctx}");
        assert_eq!(
            d.csat.map(|c| c.to_string()).unwrap_or_default(),
            r["csat_score"],
            "{ctx}"
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        dec.len(),
        "every conversation in the files has a truth row"
    );
}

#[test]
fn summary_events_equal_items_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = run(tmp.path(), 2, 500, 9);
    let out = tmp.path();
    let al = all_lines(out, "agent-log").len() as u64;
    let cw = all_lines(out, "chatwoot").len() as u64;
    let wa_bodies = all_lines(out, "whatsapp");
    let wa: u64 = wa_bodies.iter().map(|b| wa_items(b).len() as u64).sum();
    assert!(
        wa > wa_bodies.len() as u64,
        "some bodies batch several items"
    );
    assert!(
        wa_bodies
            .iter()
            .any(|b| b["entry"].as_array().is_some_and(|e| e.len() == 2)),
        "some bodies span both accounts"
    );
    assert_eq!(s.events, al + cw + wa);
    let manifest: Value =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    assert_eq!(manifest["events"].as_u64(), Some(s.events));
    assert_eq!(manifest["kinds"]["whatsapp"]["events"].as_u64(), Some(wa));
    let on_disk: u64 = s
        .files
        .iter()
        .map(|p| fs::metadata(p).expect("written").len())
        .sum();
    assert_eq!(on_disk, s.bytes);
    assert_eq!(
        s.files
            .last()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str()),
        Some("manifest.json")
    );
}

#[test]
fn agent_status_truth_mirrors_the_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    run(tmp.path(), 8, 300, 2);
    let mut starts: HashSet<(String, i64, String)> = HashSet::new();
    for v in all_lines(tmp.path(), "agent-log") {
        if str_of(&v, "type") == "agent.status" {
            starts.insert((
                str_of(&v, "agent_id").into(),
                ts_of(str_of(&v, "ts")),
                str_of(&v, "status").into(),
            ));
        }
    }
    let rows = read_csv(&tmp.path().join("truth/agent_status.csv"));
    assert_eq!(rows.len(), starts.len());
    let mut reasons = HashSet::new();
    for r in &rows {
        let from = ts_of(&r["from"]);
        assert!(ts_of(&r["to"]) >= from);
        assert!(
            starts.contains(&(r["agent_id"].clone(), from, r["status"].clone())),
            "{r:?}"
        );
        assert!(!r["agent_id"].starts_with("chatwoot:"));
        reasons.insert(r["reason"].clone());
    }
    for reason in ["lunch", "break"] {
        assert!(reasons.contains(reason), "pauses with reason {reason}");
    }
}

/// Local weekday (0 = Monday) and hour of an instant in the run's time zone.
fn local(ts: i64) -> (u32, u32) {
    let t = DateTime::from_timestamp(ts, 0)
        .expect("in range")
        .with_timezone(&chrono_tz::America::Sao_Paulo);
    (t.weekday().num_days_from_monday(), t.hour())
}

#[test]
fn waits_follow_the_clock_and_abandonment_is_plausible() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = run(tmp.path(), 7, 300, 1);
    let rows = read_csv(&tmp.path().join("truth/conversations.csv"));
    let mut buckets: HashMap<&str, (f64, u32)> = HashMap::new();
    let (mut queued, mut abandoned, mut bot) = (0u32, 0u32, 0u32);
    for r in &rows {
        bot += u32::from(r["outcome"] == "bot_resolved");
        let Some(q) = opt_ts(&r["queued_at"]) else {
            continue;
        };
        queued += 1;
        abandoned +=
            u32::from(r["outcome"] == "lost" || r["outcome"] == "abandoned_after_assignment");
        let Some(f) = opt_ts(&r["first_response_at"]) else {
            continue;
        };
        let (wd, h) = local(q);
        let bucket = if wd == 6 || !(7..20).contains(&h) {
            "night_or_sunday"
        } else if wd < 5 && (h == 11 || (15..17).contains(&h)) {
            "peak"
        } else if wd < 5 && (12..14).contains(&h) {
            "off_peak"
        } else {
            continue;
        };
        let b = buckets.entry(bucket).or_default();
        b.0 += (f - q) as f64;
        b.1 += 1;
    }
    let mean = |k: &str| {
        buckets
            .get(k)
            .map(|(s, n)| s / f64::from(*n))
            .unwrap_or(0.0)
    };
    let (night, peak, off) = (mean("night_or_sunday"), mean("peak"), mean("off_peak"));
    assert!(
        off > 0.0 && night > 10.0 * off,
        "night {night:.0}s vs off-peak {off:.0}s"
    );
    assert!(peak > off, "peak {peak:.0}s vs off-peak {off:.0}s");
    let rate = f64::from(abandoned) / f64::from(queued);
    assert!((0.04..0.14).contains(&rate), "abandonment {rate:.3}");
    let containment = f64::from(bot) / rows.len() as f64;
    assert!(
        (0.17..0.27).contains(&containment),
        "containment {containment:.3}"
    );
    let daily = s.conversations as f64 / 7.0;
    assert!(
        (240.0..360.0).contains(&daily),
        "{daily:.0} conversations a day"
    );
}

#[test]
fn progress_is_reported_each_day() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut seen = Vec::new();
    let s = generate(&options(tmp.path(), 3, 50, 4), &mut |p| {
        seen.push(p.clone())
    })
    .expect("runs");
    assert_eq!(
        seen.iter().map(|p| p.day).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(seen.windows(2).all(|w| w[0].events <= w[1].events));
    assert_eq!(seen.last().map(|p| p.events), Some(s.events));
}

#[test]
fn rejects_bad_options() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = options(tmp.path(), 0, 10, 1);
    assert!(matches!(
        generate(&o, &mut |_| {}),
        Err(GenerateError::InvalidOption { option: "days", .. })
    ));
    o.days = 1;
    o.conversations_per_day = 0;
    assert!(matches!(
        generate(&o, &mut |_| {}),
        Err(GenerateError::InvalidOption {
            option: "conversations_per_day",
            ..
        })
    ));
    o.conversations_per_day = 10;
    o.start = NaiveDate::from_ymd_opt(2099, 12, 31).expect("date");
    assert!(matches!(
        generate(&o, &mut |_| {}),
        Err(GenerateError::InvalidOption {
            option: "start",
            ..
        })
    ));
}

#[test]
fn output_directory_rules() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Someone else's file: refused, and left alone.
    let foreign = tmp.path().join("foreign");
    fs::create_dir_all(&foreign).expect("mkdir");
    fs::write(foreign.join("notes.txt"), "keep me").expect("write");
    let err = generate(&options(&foreign, 1, 10, 1), &mut |_| {}).expect_err("refused");
    assert!(matches!(err, GenerateError::ForeignFile { .. }), "{err}");
    assert!(foreign.join("notes.txt").exists());

    // Our layout without a manifest might be real data: refused too.
    let lookalike = tmp.path().join("lookalike");
    fs::create_dir_all(lookalike.join("agent-log")).expect("mkdir");
    fs::write(lookalike.join("agent-log/2026-01-01.jsonl"), "{}\n").expect("write");
    let err = generate(&options(&lookalike, 1, 10, 1), &mut |_| {}).expect_err("refused");
    assert!(
        matches!(err, GenerateError::NotGeneratorOutput { .. }),
        "{err}"
    );

    // An earlier run is replaced entirely, stale days included.
    let again = tmp.path().join("again");
    let mut o = options(&again, 2, 50, 1);
    generate(&o, &mut |_| {}).expect("first run");
    o.start = NaiveDate::from_ymd_opt(2027, 3, 1).expect("date");
    let s = generate(&o, &mut |_| {}).expect("second run");
    let written: HashSet<PathBuf> = s.files.iter().cloned().collect();
    for (rel, _) in tree(&again) {
        assert!(
            written.contains(&again.join(&rel)),
            "stale file {rel} survived"
        );
    }
}

#[test]
fn customers_vary_their_identities() {
    let tmp = tempfile::tempdir().expect("tempdir");
    run(tmp.path(), 3, 600, 13);
    let (mut old, mut bsuid_only, mut messages) = (0, 0, 0);
    for body in all_lines(tmp.path(), "whatsapp") {
        for (_, item, is_status) in wa_items(&body) {
            if is_status {
                continue;
            }
            messages += 1;
            match item["from"].as_str() {
                None => bsuid_only += 1,
                Some(f) if f.len() == 12 => old += 1,
                Some(f) => assert_eq!(f.len(), 13),
            }
            assert!(str_of(&item, "from_user_id").starts_with("BR."));
        }
        for entry in body["entry"].as_array().into_iter().flatten() {
            for c in entry["changes"][0]["value"]["contacts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert!(!str_of(&c["profile"], "name").is_empty());
            }
        }
    }
    assert!(
        old > messages / 40 && old < messages / 5,
        "old-format share {old}/{messages}"
    );
    assert!(
        bsuid_only > 0 && bsuid_only < messages / 8,
        "BSUID-only share {bsuid_only}/{messages}"
    );
    let notations: HashSet<usize> = all_lines(tmp.path(), "agent-log")
        .iter()
        .filter(|v| str_of(v, "type") == "conversation.opened")
        .map(|v| {
            let c = str_of(v, "customer");
            if c.starts_with("BR.") {
                0
            } else {
                1 + usize::from(c.contains(' '))
                    + 2 * usize::from(c.contains('('))
                    + 4 * usize::from(c.starts_with('+'))
            }
        })
        .collect();
    assert!(
        notations.len() >= 4,
        "several customer notations: {notations:?}"
    );
}
