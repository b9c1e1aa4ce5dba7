//! One scenario per metric rule: a few hand-written events, ingested into a real lake, then
//! the metric computed through the same query path as `supportlake metrics`. Expected
//! numbers are worked out by hand in the comments.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use supportlake::config::Config;
use supportlake::ingest::Input;
use supportlake::interval::Interval;
use supportlake::metrics::{self, Dimension, Filters, Metric, MetricRequest, MetricResult};
use supportlake::query::Engine;

struct Lake {
    _dir: tempfile::TempDir,
    engine: Engine,
    config: Arc<Config>,
}

/// Ingests agent-log lines (and optional WhatsApp bodies) into a fresh lake and opens it.
fn lake(agent_log: &str, whatsapp: &str, config_toml: &str) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (name, text) in [("agent.jsonl", agent_log), ("whatsapp.jsonl", whatsapp)] {
        if !text.trim().is_empty() {
            let p: PathBuf = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            inputs.push(Input::Path(p));
        }
    }
    let config = Arc::new(Config::from_toml_str(config_toml, "test.toml").unwrap());
    let (_rt, engine) = common::open_lake(
        &dir.path().join("lake"),
        &inputs,
        Arc::clone(&config),
        "2026-12-01T00:00:00Z",
    );
    Lake {
        _dir: dir,
        engine,
        config,
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

impl Lake {
    fn metric(&self, metric: Metric, from: &str, to: &str, interval: Interval) -> MetricResult {
        self.metric_with(
            metric,
            from,
            to,
            interval,
            None,
            false,
            "2026-12-01T00:00:00Z",
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn metric_with(
        &self,
        metric: Metric,
        from: &str,
        to: &str,
        interval: Interval,
        group_by: Option<Dimension>,
        business_hours: bool,
        now: &str,
    ) -> MetricResult {
        let req = MetricRequest {
            metric,
            from: t(from),
            to: t(to),
            interval,
            group_by,
            tz: self.config.timezone,
            business_hours,
            filters: Filters::default(),
            now: t(now),
            sla_metric: None,
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(metrics::run(&self.engine, &req)).unwrap()
    }

    /// One conversation's row as JSON.
    fn conversation(&self, id: &str) -> serde_json::Value {
        let rows = self.query(&format!(
            "SELECT * FROM conversations WHERE conversation_id = '{id}'"
        ));
        assert_eq!(rows.len(), 1, "conversation {id}: {rows:?}");
        rows.into_iter().next().unwrap()
    }

    fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (_, batches) = rt.block_on(self.engine.sql(sql)).unwrap();
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

/// The single point of an ungrouped, single-bucket result.
fn only_point(r: &MetricResult) -> serde_json::Value {
    assert_eq!(r.series.len(), 1, "{r:#?}");
    let points: Vec<_> = r.series[0]
        .points
        .iter()
        .filter(|p| serde_json::to_value(p).unwrap()["count"] != 0 || p.value.is_some())
        .collect();
    assert_eq!(points.len(), 1, "{r:#?}");
    serde_json::to_value(points[0]).unwrap()
}

fn secs(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

const UTC_CONFIG: &str = "timezone = \"UTC\"\n";

#[test]
fn bot_handoff_queue_time_starts_when_the_bot_hands_over() {
    // c-1: the bot talks first, then hands over at 10:02:00.
    //   wait           = 10:06:30 − 10:02:00 = 270 s
    //   wait_to_assign = 10:05:00 − 10:02:00 = 180 s
    //   first_response = 10:06:30 − 10:00:00 = 390 s (bot time included)
    //   handle         = 10:20:00 − 10:05:00 = 900 s
    //   resolution     = 10:20:00 − 10:00:00 = 1200 s
    // c-2: a bot-only conversation: never queued, bot_resolved, not in any wait.
    // c-3: bot, then an agent takes it without a queue event: queued_at = the assignment.
    let log = r#"
{"id":"1","ts":"2026-11-02T10:00:00Z","type":"conversation.opened","conversation_id":"c-1","customer":"+5511900000001","channel":"whatsapp"}
{"id":"2","ts":"2026-11-02T10:00:05Z","type":"message.sent","conversation_id":"c-1","author":"bot"}
{"id":"3","ts":"2026-11-02T10:01:00Z","type":"message.received","conversation_id":"c-1"}
{"id":"4","ts":"2026-11-02T10:02:00Z","type":"conversation.queued","conversation_id":"c-1","team":"billing"}
{"id":"5","ts":"2026-11-02T10:05:00Z","type":"conversation.assigned","conversation_id":"c-1","agent_id":"ana"}
{"id":"6","ts":"2026-11-02T10:06:30Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
{"id":"7","ts":"2026-11-02T10:20:00Z","type":"conversation.resolved","conversation_id":"c-1","agent_id":"ana"}
{"id":"8","ts":"2026-11-02T11:00:00Z","type":"conversation.opened","conversation_id":"c-2","customer":"+5511900000002"}
{"id":"9","ts":"2026-11-02T11:00:03Z","type":"message.sent","conversation_id":"c-2","author":"bot"}
{"id":"10","ts":"2026-11-02T11:03:00Z","type":"conversation.resolved","conversation_id":"c-2","reason":"bot_resolved"}
{"id":"11","ts":"2026-11-02T12:00:00Z","type":"conversation.opened","conversation_id":"c-3","customer":"+5511900000003"}
{"id":"12","ts":"2026-11-02T12:00:02Z","type":"message.sent","conversation_id":"c-3","author":"bot"}
{"id":"13","ts":"2026-11-02T12:04:00Z","type":"conversation.assigned","conversation_id":"c-3","agent_id":"bruno","team":"support"}
{"id":"14","ts":"2026-11-02T12:05:00Z","type":"message.sent","conversation_id":"c-3","author":"agent","agent_id":"bruno"}
"#;
    let l = lake(log, "", UTC_CONFIG);
    let c1 = l.conversation("c-1");
    assert_eq!(c1["queued_at"], "2026-11-02T10:02:00Z");
    assert_eq!(c1["outcome"], "answered");
    assert_eq!(secs(&c1, "wait_s"), 270.0);
    assert_eq!(secs(&c1, "wait_to_assign_s"), 180.0);
    assert_eq!(secs(&c1, "first_response_s"), 390.0);
    assert_eq!(secs(&c1, "handle_s"), 900.0);
    assert_eq!(secs(&c1, "resolution_s"), 1200.0);
    let c2 = l.conversation("c-2");
    assert_eq!(c2["outcome"], "bot_resolved");
    assert!(c2.get("queued_at").is_none_or(|v| v.is_null()), "{c2}");
    let c3 = l.conversation("c-3");
    assert_eq!(c3["queued_at"], "2026-11-02T12:04:00Z");
    assert_eq!(secs(&c3, "wait_s"), 60.0);

    let (from, to) = ("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z");
    // TME over c-1 and c-3: (270 + 60) / 2 = 165 s; p50 of {60, 270} = 165; max 270.
    let wait = only_point(&l.metric(Metric::Wait, from, to, Interval::Day));
    assert_eq!(wait["count"], 2);
    assert_eq!(wait["value"], 165.0);
    assert_eq!(wait["p50"], 165.0);
    assert_eq!(wait["max"], 270.0);
    // Abandonment: nobody abandoned; the bot contained one.
    let ab = only_point(&l.metric(Metric::Abandonment, from, to, Interval::Day));
    assert_eq!(ab["value"], 0.0);
    assert_eq!(ab["bot_resolved"], 1);
    assert_eq!(ab["answered"], 2);
}

#[test]
fn after_a_transfer_the_wait_belongs_to_who_answered_and_the_handle_to_who_resolved() {
    // Queued to billing 09:00, ana (billing) assigned 09:01 and answers 09:03: wait 180 s,
    // billing / ana. Transferred to support / bruno 09:10, resolved 09:30: handle =
    // 09:30 − 09:01 = 1740 s, support / bruno.
    let log = r#"
{"id":"1","ts":"2026-11-02T09:00:00Z","type":"conversation.opened","conversation_id":"c-1","customer":"+5511900000001"}
{"id":"2","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"c-1","team":"billing"}
{"id":"3","ts":"2026-11-02T09:01:00Z","type":"conversation.assigned","conversation_id":"c-1","agent_id":"ana","team":"billing"}
{"id":"4","ts":"2026-11-02T09:03:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
{"id":"5","ts":"2026-11-02T09:10:00Z","type":"conversation.transferred","conversation_id":"c-1","team":"support","agent_id":"bruno"}
{"id":"6","ts":"2026-11-02T09:20:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"bruno"}
{"id":"7","ts":"2026-11-02T09:30:00Z","type":"conversation.resolved","conversation_id":"c-1","agent_id":"bruno"}
"#;
    let l = lake(log, "", UTC_CONFIG);
    let (from, to) = ("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z");
    let by_team = |m| {
        let r = l.metric_with(m, from, to, Interval::Day, Some(Dimension::Team), false, to);
        let groups: Vec<(Option<String>, Option<f64>)> = r
            .series
            .iter()
            .map(|s| (s.group.clone(), s.points[0].value))
            .collect();
        groups
    };
    assert_eq!(
        by_team(Metric::Wait),
        [(Some("billing".into()), Some(180.0))]
    );
    assert_eq!(
        by_team(Metric::Handle),
        [(Some("support".into()), Some(1740.0))]
    );
    let c = l.conversation("c-1");
    assert_eq!(c["agent_first_response"], "ana");
    assert_eq!(c["agent_resolved"], "bruno");
    assert_eq!(c["transfers"], 1);
}

#[test]
fn a_reopened_conversation_has_one_first_response_and_is_closed_between() {
    // No bot, no queue event: queued_at = started_at = 09:00. Reply 09:02 (wait 120 s),
    // resolved 09:10, reopened 11:00, reply 11:05, resolved again 11:20.
    //   resolved_at = 11:20 (the last resolution); handle = 11:20 − 09:01 = 8340 s.
    //   Backlog: open at 09:05 (1), closed at 10:00 (0), open at 11:10 (1), closed at 12:00.
    let log = r#"
{"id":"1","ts":"2026-11-02T09:00:00Z","type":"conversation.opened","conversation_id":"c-1","customer":"+5511900000001","team":"support"}
{"id":"2","ts":"2026-11-02T09:01:00Z","type":"conversation.assigned","conversation_id":"c-1","agent_id":"ana"}
{"id":"3","ts":"2026-11-02T09:02:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
{"id":"4","ts":"2026-11-02T09:10:00Z","type":"conversation.resolved","conversation_id":"c-1"}
{"id":"5","ts":"2026-11-02T11:00:00Z","type":"conversation.reopened","conversation_id":"c-1"}
{"id":"6","ts":"2026-11-02T11:05:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
{"id":"7","ts":"2026-11-02T11:20:00Z","type":"conversation.resolved","conversation_id":"c-1"}
"#;
    let l = lake(log, "", UTC_CONFIG);
    let c = l.conversation("c-1");
    assert_eq!(secs(&c, "wait_s"), 120.0);
    assert_eq!(c["resolved_at"], "2026-11-02T11:20:00Z");
    assert_eq!(secs(&c, "handle_s"), 8340.0);
    assert_eq!(c["reopens"], 1);
    let r = l.metric_with(
        Metric::OpenConversations,
        "2026-11-02T09:00:00Z",
        "2026-11-02T12:00:00Z",
        Interval::Hour,
        None,
        false,
        "2026-12-01T00:00:00Z",
    );
    // Samples at each hour's end: 10:00, 11:00, 12:00.
    let open: Vec<f64> = r.series[0]
        .points
        .iter()
        .map(|p| p.value.unwrap())
        .collect();
    assert_eq!(open, [0.0, 1.0, 0.0], "{r:#?}");
    // The reopening at 11:00 opens it at the 11:00 sample (opened at or before t).
    let r = l.metric_with(
        Metric::OpenConversations,
        "2026-11-02T09:00:00Z",
        "2026-11-02T09:30:00Z",
        Interval::Hour,
        None,
        false,
        "2026-11-02T09:05:00Z",
    );
    assert_eq!(
        r.series[0].points[0].value,
        Some(1.0),
        "sampled at now = 09:05"
    );
}

#[test]
fn a_private_note_is_not_a_reply() {
    // Queued 09:00; a private note at 09:01; the public reply at 09:04: wait = 240 s.
    let log = r#"
{"id":"1","ts":"2026-11-02T09:00:00Z","type":"conversation.opened","conversation_id":"c-1","customer":"+5511900000001"}
{"id":"2","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"c-1","team":"billing"}
{"id":"3","ts":"2026-11-02T09:01:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana","private":true}
{"id":"4","ts":"2026-11-02T09:04:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
"#;
    let l = lake(log, "", UTC_CONFIG);
    let c = l.conversation("c-1");
    assert_eq!(secs(&c, "wait_s"), 240.0);
    assert_eq!(c["messages_out"], 1);
    assert_eq!(c["private_notes"], 1);
    let m = only_point(&l.metric(
        Metric::Messages,
        "2026-11-02T00:00:00Z",
        "2026-11-03T00:00:00Z",
        Interval::Day,
    ));
    assert_eq!(m["value"], 1.0, "the note is not a message: {m}");
}

#[test]
fn abandonment_before_and_after_assignment() {
    // c-1 answered after 30 s; c-2 left at 09:15 never assigned (lost); c-3 assigned 09:02
    // and left at 09:10 before any reply (abandoned_after_assignment).
    //   abandonment   = 2 ÷ 3 = 66.67 %  (lost 1, after assignment 1)
    //   service level = answered within 60 s ÷ (answered + abandoned) = 1 ÷ 3 = 33.33 %
    let log = r#"
{"id":"1","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"c-1","team":"billing"}
{"id":"2","ts":"2026-11-02T09:00:30Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
{"id":"3","ts":"2026-11-02T09:20:00Z","type":"conversation.resolved","conversation_id":"c-1"}
{"id":"4","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"c-2","team":"billing"}
{"id":"5","ts":"2026-11-02T09:15:00Z","type":"conversation.resolved","conversation_id":"c-2","reason":"customer_left"}
{"id":"6","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"c-3","team":"billing"}
{"id":"7","ts":"2026-11-02T09:02:00Z","type":"conversation.assigned","conversation_id":"c-3","agent_id":"bruno"}
{"id":"8","ts":"2026-11-02T09:10:00Z","type":"conversation.resolved","conversation_id":"c-3","reason":"customer_left"}
"#;
    let l = lake(log, "", UTC_CONFIG);
    assert_eq!(l.conversation("c-2")["outcome"], "lost");
    assert_eq!(
        l.conversation("c-3")["outcome"],
        "abandoned_after_assignment"
    );
    let (from, to) = ("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z");
    let ab = only_point(&l.metric(Metric::Abandonment, from, to, Interval::Day));
    assert!((secs(&ab, "value") - 200.0 / 3.0).abs() < 1e-9, "{ab}");
    assert_eq!(
        (ab["lost"].clone(), ab["abandoned_after_assignment"].clone()),
        (1.into(), 1.into())
    );
    let sl = only_point(&l.metric(Metric::ServiceLevel, from, to, Interval::Day));
    assert!((secs(&sl, "value") - 100.0 / 3.0).abs() < 1e-9, "{sl}");
    assert_eq!(sl["within_target"], 1);
    // Abandoned conversations have no wait: TME counts the one answer only.
    let w = only_point(&l.metric(Metric::Wait, from, to, Interval::Day));
    assert_eq!(
        (w["count"].clone(), w["value"].clone()),
        (1.into(), 30.0.into())
    );
}

#[test]
fn a_conversation_across_midnight_and_a_dst_change_counts_real_seconds_in_local_days() {
    // New York, 2026-11-01: clocks fall back from 02:00 EDT to 01:00 EST (a 25-hour day).
    // Queued Sat 2026-10-31 23:30 EDT (03:30Z), answered Sun 01:30 EST (06:30Z): the local
    // clocks differ by 2 h, the wait is 3 h = 10 800 s, and it belongs to Sunday's bucket,
    // which runs 2026-11-01T00:00-04:00 … 2026-11-02T00:00-05:00.
    let log = r#"
{"id":"1","ts":"2026-10-31T23:30:00-04:00","type":"conversation.queued","conversation_id":"c-1","team":"night"}
{"id":"2","ts":"2026-11-01T01:30:00-05:00","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
"#;
    let l = lake(log, "", "timezone = \"America/New_York\"\n");
    let r = l.metric(
        Metric::Wait,
        "2026-10-31T00:00:00-04:00",
        "2026-11-03T00:00:00-05:00",
        Interval::Day,
    );
    let points = &r.series[0].points;
    assert_eq!(points.len(), 3);
    assert_eq!(points[1].start, "2026-11-01T00:00:00-04:00");
    assert_eq!(points[1].end, "2026-11-02T00:00:00-05:00");
    assert_eq!(points[1].value, Some(10_800.0));
    assert_eq!(points[0].value, None, "nothing answered on Saturday");
}

const BRAZIL_CALENDAR: &str = r#"
timezone = "America/Sao_Paulo"
[metrics]
calendar = "default"
[calendars.default]
mon = ["08:00-12:00", "13:00-18:00"]
tue = ["08:00-12:00", "13:00-18:00"]
wed = ["08:00-12:00", "13:00-18:00"]
thu = ["08:00-12:00", "13:00-18:00"]
fri = ["08:00-12:00", "13:00-18:00"]
holidays = ["2026-11-20"]
"#;

#[test]
fn business_hours_skip_nights_weekends_lunch_and_holidays() {
    // Queued Thursday 2026-11-19 17:50 (São Paulo), answered Monday 11-23 08:10.
    //   calendar: Thu 17:50 → Sun 17:50 = 3 days = 259 200 s, + 14 h 20 min = 51 600 s
    //             = 310 800 s
    //   business: Thu 17:50–18:00 = 600 s; Fri 11-20 is a holiday; weekend closed;
    //             Mon 08:00–08:10 = 600 s → 1 200 s
    // c-2, queued 11:55 answered 13:05 on Monday: 5 min before lunch + 5 min after = 600 s.
    let log = r#"
{"id":"1","ts":"2026-11-19T17:50:00-03:00","type":"conversation.queued","conversation_id":"c-1","team":"billing"}
{"id":"2","ts":"2026-11-23T08:10:00-03:00","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
{"id":"3","ts":"2026-11-23T11:55:00-03:00","type":"conversation.queued","conversation_id":"c-2","team":"billing"}
{"id":"4","ts":"2026-11-23T13:05:00-03:00","type":"message.sent","conversation_id":"c-2","author":"agent","agent_id":"ana"}
"#;
    let l = lake(log, "", BRAZIL_CALENDAR);
    let c1 = l.conversation("c-1");
    assert_eq!(secs(&c1, "wait_s"), 310_800.0);
    assert_eq!(secs(&c1, "wait_business_s"), 1_200.0);
    assert_eq!(secs(&l.conversation("c-2"), "wait_business_s"), 600.0);
    // Through the metric: (1200 + 600) / 2 = 900 business seconds on Monday.
    let r = l.metric_with(
        Metric::Wait,
        "2026-11-23T00:00:00-03:00",
        "2026-11-24T00:00:00-03:00",
        Interval::Day,
        None,
        true,
        "2026-12-01T00:00:00Z",
    );
    assert!(r.business_hours);
    assert_eq!(r.series[0].points[0].value, Some(900.0));
}

#[test]
fn an_overnight_shift_counts_across_midnight() {
    // Calendar "night": every day 22:00–06:00. Queued Tue 05:50, answered Tue 22:05:
    // 10 min before the shift ends at 06:00 + 5 min after it starts at 22:00 = 900 s.
    let config = r#"
timezone = "America/Sao_Paulo"
[metrics]
calendar = "night"
[calendars.night]
mon = ["22:00-06:00"]
tue = ["22:00-06:00"]
wed = ["22:00-06:00"]
thu = ["22:00-06:00"]
fri = ["22:00-06:00"]
sat = ["22:00-06:00"]
sun = ["22:00-06:00"]
"#;
    let log = r#"
{"id":"1","ts":"2026-11-24T05:50:00-03:00","type":"conversation.queued","conversation_id":"c-1"}
{"id":"2","ts":"2026-11-24T22:05:00-03:00","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
"#;
    let l = lake(log, "", config);
    let c = l.conversation("c-1");
    assert_eq!(secs(&c, "wait_business_s"), 900.0);
    assert_eq!(secs(&c, "wait_s"), 16.25 * 3600.0);
}

#[test]
fn a_whatsapp_message_joins_the_agent_log_conversation_of_its_customer() {
    // The customer writes on WhatsApp at 10:00:00 (no conversation id); the platform opens
    // c-1 for the same number (another notation, without the ninth digit on WhatsApp's
    // side) at 10:00:01 — within the 2-minute grace, so the message is c-1's first event:
    // started_at = 10:00:00. Their 10:03 message joins c-1 too: messages_in = 2.
    // Thirty hours after the resolution the customer writes again and no platform opens a
    // conversation: that message starts a session of its own.
    let wa = |id: &str, ts: i64| {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"104729381001"}},"contacts":[{{"profile":{{"name":"Joana"}},"wa_id":"551187654321"}}],"messages":[{{"from":"551187654321","id":"{id}","timestamp":"{ts}","type":"text","text":{{"body":"oi"}}}}]}}}}]}}]}}"#
        )
    };
    let t0 = t("2026-11-02T10:00:00Z").timestamp();
    let whatsapp = [
        wa("wamid.A", t0),
        wa("wamid.B", t0 + 180),
        wa("wamid.C", t0 + 1200 + 30 * 3600),
    ]
    .join("\n");
    let log = r#"
{"id":"1","ts":"2026-11-02T10:00:01Z","type":"conversation.opened","conversation_id":"c-1","customer":"+55 11 98765-4321","channel":"whatsapp"}
{"id":"2","ts":"2026-11-02T10:00:30Z","type":"conversation.queued","conversation_id":"c-1","team":"billing"}
{"id":"3","ts":"2026-11-02T10:02:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
{"id":"4","ts":"2026-11-02T10:20:00Z","type":"conversation.resolved","conversation_id":"c-1"}
"#;
    let l = lake(log, &whatsapp, UTC_CONFIG);
    let c = l.conversation("c-1");
    assert_eq!(c["started_at"], "2026-11-02T10:00:00Z");
    assert_eq!(c["messages_in"], 2);
    assert_eq!(secs(&c, "first_response_s"), 120.0);
    let sessions = l.query(
        "SELECT conversation_id, messages_in, outcome FROM conversations \
         WHERE starts_with(conversation_id, 'session:')",
    );
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["messages_in"], 1);
}

#[test]
fn every_sla_state() {
    // Policy: first response 5 min, next response 10 min, resolution 1 h, calendar time.
    // 2026-11-01 (all settled):
    //   A: queued 09:00, reply 09:03 (first_response achieved), customer 09:05, reply 09:12
    //      (next_response: 7 min, achieved), resolved 09:30 (resolution achieved).
    //   B: queued 09:00, reply 09:10 (breached, 5 min late), resolved 11:00 (breached).
    //   E: queued 09:00, customer left 09:01: first_response was not due yet → cancelled;
    //      the resolution at 09:01 is within 1 h → achieved.
    // 2026-11-02, judged at now = 09:02:
    //   C: queued 09:00, nothing yet: first_response due 09:05 → active; resolution active.
    //   D: queued 08:00, nothing yet: first_response due 08:05 → active_breached; resolution
    //      due 09:00 → active_breached.
    // Over both days: achieved 4, breached 2, active 2, active_breached 2, cancelled 1;
    // achievement rate = 4 ÷ 6 = 66.67 %.
    let config = r#"
timezone = "UTC"
[[sla.policies]]
name = "standard"
first_response = "5m"
next_response = "10m"
resolution = "1h"
"#;
    let log = r#"
{"id":"a1","ts":"2026-11-01T09:00:00Z","type":"conversation.queued","conversation_id":"A"}
{"id":"a2","ts":"2026-11-01T09:03:00Z","type":"message.sent","conversation_id":"A","author":"agent","agent_id":"ana"}
{"id":"a3","ts":"2026-11-01T09:05:00Z","type":"message.received","conversation_id":"A"}
{"id":"a4","ts":"2026-11-01T09:12:00Z","type":"message.sent","conversation_id":"A","author":"agent","agent_id":"ana"}
{"id":"a5","ts":"2026-11-01T09:30:00Z","type":"conversation.resolved","conversation_id":"A"}
{"id":"b1","ts":"2026-11-01T09:00:00Z","type":"conversation.queued","conversation_id":"B"}
{"id":"b2","ts":"2026-11-01T09:10:00Z","type":"message.sent","conversation_id":"B","author":"agent","agent_id":"ana"}
{"id":"b3","ts":"2026-11-01T11:00:00Z","type":"conversation.resolved","conversation_id":"B"}
{"id":"e1","ts":"2026-11-01T09:00:00Z","type":"conversation.queued","conversation_id":"E"}
{"id":"e2","ts":"2026-11-01T09:01:00Z","type":"conversation.resolved","conversation_id":"E","reason":"customer_left"}
{"id":"c1","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"C"}
{"id":"d1","ts":"2026-11-02T08:00:00Z","type":"conversation.queued","conversation_id":"D"}
"#;
    let l = lake(log, "", config);
    let r = l.metric_with(
        Metric::Sla,
        "2026-11-01T00:00:00Z",
        "2026-11-03T00:00:00Z",
        Interval::Month,
        None,
        false,
        "2026-11-02T09:02:00Z",
    );
    let p = serde_json::to_value(&r.series[0].points[0]).unwrap();
    assert_eq!(
        (
            p["achieved"].clone(),
            p["breached"].clone(),
            p["active"].clone(),
            p["active_breached"].clone(),
            p["cancelled"].clone()
        ),
        (4.into(), 2.into(), 2.into(), 2.into(), 1.into()),
        "{p}"
    );
    assert!((secs(&p, "value") - 200.0 / 3.0).abs() < 1e-9);
    let next = l.query(
        "SELECT conversation_id, applied_at, due_at, satisfied_at FROM sla_targets \
         WHERE metric = 'next_response'",
    );
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0]["due_at"], "2026-11-01T09:15:00Z");
}

#[test]
fn a_whatsapp_system_notice_is_not_a_customer_message() {
    // The customer writes at 10:00:00; c-1 opens at 10:00:01 and is queued; the agent
    // replies at 10:02. At 10:05 WhatsApp reports that the customer changed their number
    // (a `system` message from the customer's number): that is the platform speaking, not
    // the customer, so
    //   messages_in of c-1          = 1 (only the 10:00 message)
    //   messages in the day         = 2 (10:00 in, 10:02 out)
    //   next_response SLA instances = 0 (no customer turn after the reply)
    // Before, the notice counted as a second customer message and opened a next_response
    // target due 10:15 that breached when nobody answered a notice.
    let wa = |id: &str, ts: i64, body: &str| {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"104729381001"}},"contacts":[{{"profile":{{"name":"Joana"}},"wa_id":"551187654321"}}],"messages":[{{"from":"551187654321","id":"{id}","timestamp":"{ts}",{body}}}]}}}}]}}]}}"#
        )
    };
    let t0 = t("2026-11-02T10:00:00Z").timestamp();
    let whatsapp = [
        wa("wamid.A", t0, r#""type":"text","text":{"body":"oi"}"#),
        wa(
            "wamid.S",
            t0 + 300,
            r#""type":"system","system":{"body":"changed number","wa_id":"551187650000","type":"user_changed_number"}"#,
        ),
    ]
    .join("\n");
    let log = r#"
{"id":"1","ts":"2026-11-02T10:00:01Z","type":"conversation.opened","conversation_id":"c-1","customer":"+5511987654321","channel":"whatsapp"}
{"id":"2","ts":"2026-11-02T10:00:30Z","type":"conversation.queued","conversation_id":"c-1","team":"billing"}
{"id":"3","ts":"2026-11-02T10:02:00Z","type":"message.sent","conversation_id":"c-1","author":"agent","agent_id":"ana"}
"#;
    let config = r#"
timezone = "UTC"
[[sla.policies]]
name = "standard"
first_response = "5m"
next_response = "10m"
"#;
    let l = lake(log, &whatsapp, config);
    let stored = l.query("SELECT kind, author FROM events WHERE event_id = 'wamid.S'");
    assert_eq!(stored.len(), 1, "the notice is kept: {stored:?}");
    assert_eq!(stored[0]["author"], "system");
    let c = l.conversation("c-1");
    assert_eq!(c["messages_in"], 1, "{c}");
    let m = only_point(&l.metric(
        Metric::Messages,
        "2026-11-02T00:00:00Z",
        "2026-11-03T00:00:00Z",
        Interval::Day,
    ));
    assert_eq!(m["value"], 2.0, "{m}");
    assert_eq!(m["messages_in"], 1, "{m}");
    let next = l.query("SELECT conversation_id FROM sla_targets WHERE metric = 'next_response'");
    assert!(next.is_empty(), "a notice is not a turn: {next:?}");
}
