//! Edits, deletions and reactions change no metric: a conversation is computed twice, once
//! from its messages alone and once with the customer's edit, deletion, reaction and
//! reaction removal and the business's edited and deleted echoes added
//! (sample-data/fixtures/whatsapp/message-changes.jsonl), through the same query path as
//! `supportlake metrics`. Every wait, first response, customer turn and message count must
//! come out the same — and the changes must be in the lake, so the comparison is not empty.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use supportlake::config::Config;
use supportlake::ingest::{self, IngestOptions, Input, NoProgress};
use supportlake::interval::Interval;
use supportlake::lake::LakePaths;
use supportlake::metrics::{self, Filters, Metric, MetricRequest};
use supportlake::pseudonym::PseudonymKey;
use supportlake::query::Engine;

const CONFIG: &str = r#"
timezone = "UTC"

[[sla.policies]]
name = "standard"
first_response = "10m"
next_response = "10m"
resolution = "1h"
"#;

/// c-1, worked by hand (UTC, 2026-11-02):
///   12:00:00 opened · 12:00:10 customer message CHG_IN1 · 12:00:30 queued (billing)
///   12:01:00 assigned to ana · 12:05:00 ana replies (CHG_AGENT1)
///   12:10:00 customer message CHG_IN2 (a new customer turn) · 12:12:00 ana replies
///   12:30:00 resolved
/// wait = 12:05:00 − 12:00:30 = 270 s; first_response = 12:05:00 − 12:00:00 = 300 s;
/// messages in = 2, out = 2; next_response targets (customer turns after a reply) = 1.
const LOG: &str = r#"
{"id":"e1","ts":"2026-11-02T12:00:00Z","type":"conversation.opened","conversation_id":"c-1","customer":"+5511987654321","channel":"whatsapp","inbox":"104729381001"}
{"id":"e2","ts":"2026-11-02T12:00:30Z","type":"conversation.queued","conversation_id":"c-1","team":"billing"}
{"id":"e3","ts":"2026-11-02T12:01:00Z","type":"conversation.assigned","conversation_id":"c-1","agent_id":"ana","team":"billing"}
{"id":"e4","ts":"2026-11-02T12:05:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana","message_id":"wamid.CHG_AGENT1"}
{"id":"e5","ts":"2026-11-02T12:12:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana","message_id":"wamid.CHG_AGENT2"}
{"id":"e6","ts":"2026-11-02T12:30:00Z","type":"conversation.resolved","conversation_id":"c-1","agent_id":"ana","reason":"solved"}
"#;

fn customer_message(id: &str, unix: i64) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"240000000000001","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"104729381001"}},"contacts":[{{"profile":{{"name":"Joana"}},"wa_id":"5511987654321"}}],"messages":[{{"from":"5511987654321","id":"{id}","timestamp":"{unix}","type":"text","text":{{"body":"oi"}}}}]}}}}]}}]}}"#
    )
}

struct Lake {
    _dir: tempfile::TempDir,
    engine: Engine,
    rt: tokio::runtime::Runtime,
}

fn lake(with_changes: bool) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.jsonl");
    std::fs::write(&log, LOG).unwrap();
    // 12:00:10 and 12:10:00.
    let messages = dir.path().join("whatsapp.jsonl");
    std::fs::write(
        &messages,
        [
            customer_message("wamid.CHG_IN1", 1_793_620_810),
            customer_message("wamid.CHG_IN2", 1_793_621_400),
        ]
        .join("\n"),
    )
    .unwrap();
    let mut inputs = vec![Input::Path(log), Input::Path(messages)];
    if with_changes {
        inputs.push(Input::Path(common::fixture(
            "whatsapp/message-changes.jsonl",
        )));
    }
    let paths = LakePaths::new(dir.path().join("lake"));
    let key = PseudonymKey::new(common::KEY.as_bytes().to_vec()).unwrap();
    let received: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    let receipt = ingest::ingest(
        &paths,
        &inputs,
        &IngestOptions::default(),
        &key,
        Arc::new(move || received),
        "test",
        &NoProgress,
    )
    .unwrap();
    assert_eq!(receipt.total_rejects(), 0, "{receipt:?}");
    let config = Arc::new(Config::from_toml_str(CONFIG, "test.toml").unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt.block_on(Engine::open(&paths, config)).unwrap();
    Lake {
        _dir: dir,
        engine,
        rt,
    }
}

impl Lake {
    fn metric(&self, metric: Metric) -> serde_json::Value {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let req = MetricRequest {
            metric,
            from: t("2026-11-02T00:00:00Z"),
            to: t("2026-11-03T00:00:00Z"),
            interval: Interval::Day,
            group_by: None,
            tz: chrono_tz::UTC,
            business_hours: false,
            filters: Filters::default(),
            now: t("2026-12-01T00:00:00Z"),
            sla_metric: None,
        };
        let result = self.rt.block_on(metrics::run(&self.engine, &req)).unwrap();
        serde_json::to_value(&result.series).unwrap()
    }

    fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        let (_, batches) = self.rt.block_on(self.engine.sql(sql)).unwrap();
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::ArrayWriter::new(&mut buf);
            for b in &batches {
                w.write(b).unwrap();
            }
            w.finish().unwrap();
        }
        if buf.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice(&buf).unwrap()
    }
}

#[test]
fn edits_revokes_and_reactions_change_no_wait_first_response_turn_or_message_count() {
    let plain = lake(false);
    let changed = lake(true);

    // The changes are stored, as statuses of the messages they change.
    let statuses = changed.query(
        "SELECT status, count(*) AS n FROM events WHERE kind = 'message_status' \
         GROUP BY status ORDER BY status",
    );
    assert_eq!(
        serde_json::Value::Array(statuses),
        serde_json::json!([
            {"status": "deleted", "n": 2},
            {"status": "edited", "n": 2},
            {"status": "reacted", "n": 1},
            {"status": "reaction_removed", "n": 1},
        ])
    );

    // The hand-worked numbers, from the messages alone.
    let c = &plain.query(
        "SELECT wait_s, first_response_s, messages_in, messages_out, outcome \
         FROM conversations WHERE conversation_id = 'c-1'",
    )[0];
    assert_eq!(c["wait_s"], 270.0, "{c}");
    assert_eq!(c["first_response_s"], 300.0, "{c}");
    assert_eq!(
        (c["messages_in"].as_i64(), c["messages_out"].as_i64()),
        (Some(2), Some(2))
    );
    let turns = "SELECT count(*) AS n FROM sla_targets WHERE metric = 'next_response'";
    assert_eq!(plain.query(turns)[0]["n"], 1);

    // With the changes: every row of every view and metric that counts messages is equal.
    for sql in [
        "SELECT * FROM conversations ORDER BY conversation_id",
        "SELECT * FROM conversation_messages ORDER BY conversation_id, ts, event_id",
        "SELECT * FROM sla_targets ORDER BY conversation_id, metric, applied_at",
        "SELECT * FROM conversation_intervals ORDER BY conversation_id, open_from",
    ] {
        assert_eq!(plain.query(sql), changed.query(sql), "{sql}");
    }
    for &metric in Metric::ALL {
        assert_eq!(plain.metric(metric), changed.metric(metric), "{metric:?}");
    }
    // …and the numbers that matter are the hand-worked ones.
    let point = |series: &serde_json::Value| series[0]["points"][0].clone();
    assert_eq!(point(&changed.metric(Metric::Wait))["value"], 270.0);
    assert_eq!(
        point(&changed.metric(Metric::FirstResponse))["value"],
        300.0
    );
}
