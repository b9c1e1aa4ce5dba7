//! SLA scenarios through the binary: `supportlake ingest` writes the lake (and its rollups,
//! with the scenario's configuration), `supportlake metrics` answers — from the rollups and
//! again with `--from-events`, which must agree. Expected numbers are worked out by hand in
//! the comments.

mod common;

use std::path::PathBuf;

use common::{bin, run, run_ok};

struct Scenario {
    dir: tempfile::TempDir,
}

impl Scenario {
    /// Writes the configuration and the agent log, and ingests the log with that
    /// configuration (so the rollups are computed with it).
    fn new(config: &str, agent_log: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log: PathBuf = dir.path().join("agent.jsonl");
        std::fs::write(&log, agent_log.trim_start()).unwrap();
        let s = Scenario { dir };
        run_ok(
            bin()
                .arg("ingest")
                .arg("--lake")
                .arg(s.lake())
                .arg("--config")
                .arg(s.config())
                .args(["--quiet", "--receipt", "json"])
                .arg(&log),
            0,
        );
        s
    }

    fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn metrics_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = bin();
        c.arg("metrics")
            .args(args)
            .arg("--lake")
            .arg(self.lake())
            .arg("--config")
            .arg(self.config());
        c
    }

    /// `supportlake metrics <args> --format json`, from the rollups and from the events:
    /// both must give the same answer, which is returned.
    fn metric(&self, args: &[&str]) -> serde_json::Value {
        let rollups = run_ok(self.metrics_cmd(args).args(["--format", "json"]), 0);
        let events = run_ok(
            self.metrics_cmd(args)
                .args(["--format", "json", "--from-events"]),
            0,
        );
        assert_eq!(rollups, events, "rollups and events disagree on {args:?}");
        serde_json::from_str(&rollups).unwrap()
    }

    /// `supportlake metrics sla --breaches <args> --format csv`, as rows of named fields.
    fn breaches(&self, args: &[&str]) -> Vec<std::collections::BTreeMap<String, String>> {
        let csv = run_ok(
            self.metrics_cmd(&["sla", "--breaches"])
                .args(args)
                .args(["--format", "csv"]),
            0,
        );
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        lines
            .map(|l| {
                header
                    .iter()
                    .zip(l.split(','))
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    fn sql(&self, query: &str) -> (i32, String, String) {
        run(bin()
            .arg("sql")
            .arg("--lake")
            .arg(self.lake())
            .arg("--config")
            .arg(self.config())
            .args(["--format", "csv", query]))
    }
}

/// Whether a point counts anything.
fn has_data(p: &serde_json::Value) -> bool {
    !p["value"].is_null()
        || ["count", "bot_resolved", "resolved"]
            .iter()
            .any(|k| p[k].as_u64().is_some_and(|n| n > 0))
}

/// The one point with data of each series that has one, by group: (group, point).
fn points_by_group(r: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for s in r["series"].as_array().unwrap() {
        let group = s["group"]
            .as_str()
            .map_or("(null)".to_owned(), str::to_owned);
        let with_data: Vec<&serde_json::Value> = s["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| has_data(p))
            .collect();
        assert!(with_data.len() <= 1, "group {group}: {s}");
        if let Some(p) = with_data.first() {
            out.push((group, (*p).clone()));
        }
    }
    out
}

/// (achieved, breached, active, active_breached, cancelled) of an `sla` point.
fn states(p: &serde_json::Value) -> [u64; 5] {
    [
        "achieved",
        "breached",
        "active",
        "active_breached",
        "cancelled",
    ]
    .map(|k| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}")))
}

fn value(p: &serde_json::Value) -> f64 {
    p["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("value in {p}"))
}

/// The most common real setup: VIP around the clock, everyone else in office hours.
const MIXED_CALENDARS: &str = r#"
timezone = "America/Sao_Paulo"

[calendars.office]
mon = ["08:00-12:00", "13:00-18:00"]
tue = ["08:00-12:00", "13:00-18:00"]
wed = ["08:00-12:00", "13:00-18:00"]
thu = ["08:00-12:00", "13:00-18:00"]
fri = ["08:00-12:00", "13:00-18:00"]

[[sla.policies]]
name = "vip"
match = { priority = "high" }
first_response = "15m"
resolution = "2h"

[[sla.policies]]
name = "standard"
first_response = "1h"
resolution = "8h"
calendar = "office"
"#;

#[test]
fn policies_on_a_24x7_and_an_office_calendar_in_one_query() {
    // São Paulo (UTC−3, no clock changes since 2019). Friday 2026-11-06 to Tuesday 11-10.
    // vip (priority high) is measured around the clock, standard in office hours
    // (Mon–Fri 08:00–12:00, 13:00–18:00).
    //
    // V1 vip, billing: queued Fri 17:50. First response due 18:05; reply 18:00 → achieved.
    //    Resolution due 19:50; resolved 19:00 → achieved.
    // V2 vip, billing: queued Fri 23:00. First response due 23:15; reply Sat 00:20 →
    //    breached. Resolution due Sat 01:00; resolved 00:30 → achieved.
    // S1 standard, support: queued Fri 17:30. First response: 30 business min on Friday
    //    (17:30–18:00), 30 more on Monday → due Mon 08:30; reply Mon 08:20 → achieved (in
    //    calendar time it waited 62 h 50 min). Resolution 8 h: 0.5 h Friday, Mon 08–12
    //    (4 h), 13:00 + 3.5 h → due Mon 16:30; resolved 16:00 → achieved.
    // S2 standard, support: queued Mon 11:30, nobody answers, the customer leaves at 14:00.
    //    First response: 11:30–12:00, lunch, 13:00–13:30 → due 13:30; closed 14:00 after it
    //    → breached (counted at 13:30). Resolution due Tue 10:30 (0.5 h + 5 h Monday, 2.5 h
    //    Tuesday); resolved Mon 14:00 → achieved.
    // S3 standard, support: queued Sat 10:00 (office closed); reply Mon 08:45 → 45 business
    //    min → achieved. Resolution due Mon 17:00 (08–12, 13–17); still open at "now", Tue
    //    12:00 → active_breached (counted at Mon 17:00).
    //
    // Per team (one November bucket):
    //   billing: achieved 3 (V1 ×2, V2 resolution), breached 1 (V2 first response)
    //            → 3 ÷ 4 = 75 %
    //   support: achieved 4 (S1 ×2, S2 resolution, S3 first response), breached 1 (S2 first
    //            response), active_breached 1 (S3 resolution) → 4 ÷ 5 = 80 %
    //   all:     7 ÷ 9 = 77.78 %
    let log = r#"
{"id":"v1-1","ts":"2026-11-06T17:50:00-03:00","type":"conversation.queued","conversation_id":"V1","team":"billing","priority":"high"}
{"id":"v1-2","ts":"2026-11-06T18:00:00-03:00","type":"message.sent","conversation_id":"V1","author":"agent","agent_id":"ana"}
{"id":"v1-3","ts":"2026-11-06T19:00:00-03:00","type":"conversation.resolved","conversation_id":"V1","agent_id":"ana"}
{"id":"v2-1","ts":"2026-11-06T23:00:00-03:00","type":"conversation.queued","conversation_id":"V2","team":"billing","priority":"high"}
{"id":"v2-2","ts":"2026-11-07T00:20:00-03:00","type":"message.sent","conversation_id":"V2","author":"agent","agent_id":"ana"}
{"id":"v2-3","ts":"2026-11-07T00:30:00-03:00","type":"conversation.resolved","conversation_id":"V2","agent_id":"ana"}
{"id":"s1-1","ts":"2026-11-06T17:30:00-03:00","type":"conversation.queued","conversation_id":"S1","team":"support"}
{"id":"s1-2","ts":"2026-11-09T08:20:00-03:00","type":"message.sent","conversation_id":"S1","author":"agent","agent_id":"bruno"}
{"id":"s1-3","ts":"2026-11-09T16:00:00-03:00","type":"conversation.resolved","conversation_id":"S1","agent_id":"bruno"}
{"id":"s2-1","ts":"2026-11-09T11:30:00-03:00","type":"conversation.queued","conversation_id":"S2","team":"support"}
{"id":"s2-2","ts":"2026-11-09T14:00:00-03:00","type":"conversation.resolved","conversation_id":"S2","reason":"customer_left"}
{"id":"s3-1","ts":"2026-11-07T10:00:00-03:00","type":"conversation.queued","conversation_id":"S3","team":"support"}
{"id":"s3-2","ts":"2026-11-09T08:45:00-03:00","type":"message.sent","conversation_id":"S3","author":"agent","agent_id":"bruno"}
"#;
    let s = Scenario::new(MIXED_CALENDARS, log);
    let range = [
        "--from",
        "2026-11-06",
        "--to",
        "2026-11-11",
        "--interval",
        "month",
        "--now",
        "2026-11-10T12:00:00-03:00",
    ];
    let by_team = s.metric(&[&["sla"][..], &range, &["--group-by", "team"]].concat());
    let groups = points_by_group(&by_team);
    assert_eq!(groups.len(), 2, "{by_team}");
    let (billing, support) = (&groups[0], &groups[1]);
    assert_eq!(billing.0, "billing");
    assert_eq!(states(&billing.1), [3, 1, 0, 0, 0], "{}", billing.1);
    assert_eq!(value(&billing.1), 75.0);
    assert_eq!(support.0, "support");
    assert_eq!(states(&support.1), [4, 1, 0, 1, 0], "{}", support.1);
    assert_eq!(value(&support.1), 80.0);
    let all = s.metric(&[&["sla"][..], &range].concat());
    let all = &points_by_group(&all)[0].1;
    assert_eq!(states(all), [7, 2, 0, 1, 0], "{all}");
    assert!((value(all) - 700.0 / 9.0).abs() < 1e-9, "{all}");

    // The due times, each in its own policy's calendar (UTC = local + 3 h).
    let (code, out, err) = s.sql(
        "SELECT conversation_id, metric, policy, CAST(due_at AS VARCHAR) AS due FROM sla_targets \
         ORDER BY conversation_id, metric",
    );
    assert_eq!(code, 0, "{err}");
    let due: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(
        due,
        [
            "S1,first_response,standard,2026-11-09T11:30:00Z",
            "S1,resolution,standard,2026-11-09T19:30:00Z",
            "S2,first_response,standard,2026-11-09T16:30:00Z",
            "S2,resolution,standard,2026-11-10T13:30:00Z",
            "S3,first_response,standard,2026-11-09T12:00:00Z",
            "S3,resolution,standard,2026-11-09T20:00:00Z",
            "V1,first_response,vip,2026-11-06T21:05:00Z",
            "V1,resolution,vip,2026-11-06T22:50:00Z",
            "V2,first_response,vip,2026-11-07T02:15:00Z",
            "V2,resolution,vip,2026-11-07T04:00:00Z",
        ]
    );
}

#[test]
fn business_time_functions_take_a_calendar_per_row() {
    // One table, three calendars: Fri 2026-11-06 17:30 → Mon 11-09 08:20 (São Paulo).
    //   office: 17:30–18:00 Friday + 08:00–08:20 Monday = 50 min = 3 000 s;
    //           one business hour after Friday 17:30 is Monday 08:30 (11:30Z)
    //   24x7:   62 h 50 min = 226 200 s; an hour later is Friday 18:30 (21:30Z)
    //   NULL:   the same as 24x7.
    let s = Scenario::new(MIXED_CALENDARS, "");
    let t = |v: &str| format!("arrow_cast('{v}', 'Timestamp(Microsecond, Some(\"UTC\"))')");
    let (a, b) = (t("2026-11-06T20:30:00Z"), t("2026-11-09T11:20:00Z"));
    let (code, out, err) = s.sql(&format!(
        "SELECT n, business_seconds(a, b, cal) AS secs, CAST(business_add(a, 3600, cal) AS VARCHAR) AS due \
         FROM (VALUES (1, {a}, {b}, 'office'), (2, {a}, {b}, '24x7'), (3, {a}, {b}, CAST(NULL AS VARCHAR)), \
                      (4, {a}, {b}, 'office')) AS v(n, a, b, cal) ORDER BY n"
    ));
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(
        rows,
        [
            "1,3000.0,2026-11-09T11:30:00Z",
            "2,226200.0,2026-11-06T21:30:00Z",
            "3,226200.0,2026-11-06T21:30:00Z",
            "4,3000.0,2026-11-09T11:30:00Z",
        ]
    );
    // A calendar the configuration does not have is named, with the ones it has.
    let (code, _, err) = s.sql(&format!(
        "SELECT business_seconds(a, b, cal) FROM (VALUES ({a}, {b}, 'office'), ({a}, {b}, 'weekdays')) AS v(a, b, cal)"
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("no calendar named \"weekdays\" in the configuration (known: 24x7, office)"),
        "{err}"
    );
}

#[test]
fn a_target_breached_without_an_answer_belongs_to_the_queue_it_waited_in() {
    // Policy: first response 10 min, resolution 1 h, calendar time. Monday 2026-11-02 UTC,
    // judged at 12:00.
    //   A: queued billing 09:00, ana assigned 09:01, replies 09:05 (first response
    //      achieved, ana), resolved 09:30 (resolution achieved, ana).
    //   B: queued billing 09:00, nobody answers, the customer leaves 09:20: first response
    //      due 09:10, closed after → breached, counted at 09:10, when billing's queue held
    //      it; resolution achieved at 09:20 (billing).
    //   C: queued billing 09:00, transferred to support's queue 09:05, nobody answers, still
    //      open: first response due 09:10 and resolution due 10:00 → both active_breached,
    //      both support's (in force at their due times).
    //   D: queued support 09:00, moved to billing 09:30 (after its due time), the customer
    //      leaves 09:40: first response breached at 09:10 → support's; resolution achieved
    //      at 09:40 → billing's.
    //   E: queued billing 09:00, the customer leaves 09:05, before the first response was
    //      due → cancelled (billing, 09:05); resolution achieved at 09:05 (billing).
    //
    // By team:
    //   billing: achieved 5 (A ×2, B, D, E resolutions), breached 1 (B), cancelled 1 (E)
    //            → 5 ÷ 6 = 83.33 %
    //   support: breached 1 (D first response), active_breached 2 (C) → 0 ÷ 1 = 0 %
    //   No "(none)" group: every target has the team whose queue held it.
    // By agent: ana achieved 2 (A); everything else happened with nobody assigned —
    //   unassigned: achieved 3, breached 2, active_breached 2, cancelled 1 → 3 ÷ 5 = 60 %.
    let config = r#"
timezone = "UTC"
[[sla.policies]]
name = "standard"
first_response = "10m"
resolution = "1h"
"#;
    let log = r#"
{"id":"a1","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"A","team":"billing"}
{"id":"a2","ts":"2026-11-02T09:01:00Z","type":"conversation.assigned","conversation_id":"A","agent_id":"ana"}
{"id":"a3","ts":"2026-11-02T09:05:00Z","type":"message.sent","conversation_id":"A","author":"agent","agent_id":"ana"}
{"id":"a4","ts":"2026-11-02T09:30:00Z","type":"conversation.resolved","conversation_id":"A","agent_id":"ana"}
{"id":"b1","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"B","team":"billing"}
{"id":"b2","ts":"2026-11-02T09:20:00Z","type":"conversation.resolved","conversation_id":"B","reason":"customer_left"}
{"id":"c1","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"C","team":"billing"}
{"id":"c2","ts":"2026-11-02T09:05:00Z","type":"conversation.transferred","conversation_id":"C","team":"support"}
{"id":"d1","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"D","team":"support"}
{"id":"d2","ts":"2026-11-02T09:30:00Z","type":"conversation.transferred","conversation_id":"D","team":"billing"}
{"id":"d3","ts":"2026-11-02T09:40:00Z","type":"conversation.resolved","conversation_id":"D","reason":"customer_left"}
{"id":"e1","ts":"2026-11-02T09:00:00Z","type":"conversation.queued","conversation_id":"E","team":"billing"}
{"id":"e2","ts":"2026-11-02T09:05:00Z","type":"conversation.resolved","conversation_id":"E","reason":"customer_left"}
"#;
    let s = Scenario::new(config, log);
    let range = [
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-03",
        "--now",
        "2026-11-02T12:00:00Z",
    ];
    let by_team = s.metric(&[&["sla"][..], &range, &["--group-by", "team"]].concat());
    let groups = points_by_group(&by_team);
    let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(names, ["billing", "support"], "{by_team}");
    assert_eq!(states(&groups[0].1), [5, 1, 0, 0, 1], "{}", groups[0].1);
    assert!((value(&groups[0].1) - 500.0 / 6.0).abs() < 1e-9);
    assert_eq!(states(&groups[1].1), [0, 1, 0, 2, 0], "{}", groups[1].1);
    assert_eq!(value(&groups[1].1), 0.0);

    let by_agent = s.metric(&[&["sla"][..], &range, &["--group-by", "agent"]].concat());
    let groups = points_by_group(&by_agent);
    let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(names, ["ana", "unassigned"], "{by_agent}");
    assert_eq!(states(&groups[0].1), [2, 0, 0, 0, 0]);
    assert_eq!(states(&groups[1].1), [3, 2, 0, 2, 1], "{}", groups[1].1);
    assert_eq!(value(&groups[1].1), 60.0);

    // Filtering by a team gives that team's own lost conversations.
    let support = s.metric(&[&["sla"][..], &range, &["--team", "support"]].concat());
    assert_eq!(states(&points_by_group(&support)[0].1), [0, 1, 0, 2, 0]);

    // The breach list names the same teams: B (billing), D and C (support).
    let rows = s.breaches(&range);
    let listed: Vec<(&str, &str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["conversation_id"].as_str(),
                r["metric"].as_str(),
                r["state"].as_str(),
                r["team"].as_str(),
                r["agent"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("B", "first_response", "breached", "billing", "unassigned"),
            (
                "C",
                "first_response",
                "active_breached",
                "support",
                "unassigned"
            ),
            ("D", "first_response", "breached", "support", "unassigned"),
            (
                "C",
                "resolution",
                "active_breached",
                "support",
                "unassigned"
            ),
        ]
    );
}

#[test]
fn conversations_only_a_bot_had_are_the_group_bot() {
    // UTC, Monday 2026-11-02.
    //   X: opened 10:00, bot 10:00:05, customer 10:01, bot 10:02, resolved 10:03 without
    //      ever reaching the human queue (bot_resolved); rated 5 at 10:04.
    //   Y: opened 10:00, bot 10:00:05, queued billing 10:01, ana assigned 10:02, replies
    //      10:03, resolved 10:10.
    //   Z: opened 11:00, bot 11:00:05, still with the bot at "now" (11:30).
    // By agent:
    //   abandonment: ana answered 1; bot bot_resolved 1 (nobody abandoned).
    //   messages:    bot 5 (X's three, Y's bot message before the handover, Z's); ana 1.
    //   csat:        bot: 1 rating, satisfied → 100 %.
    //   open_conversations at 11:30: Z, with the bot → bot 1.
    let config = "timezone = \"UTC\"\n";
    let log = r#"
{"id":"x1","ts":"2026-11-02T10:00:00Z","type":"conversation.opened","conversation_id":"X","channel":"whatsapp"}
{"id":"x2","ts":"2026-11-02T10:00:05Z","type":"message.sent","conversation_id":"X","author":"bot"}
{"id":"x3","ts":"2026-11-02T10:01:00Z","type":"message.received","conversation_id":"X"}
{"id":"x4","ts":"2026-11-02T10:02:00Z","type":"message.sent","conversation_id":"X","author":"bot"}
{"id":"x5","ts":"2026-11-02T10:03:00Z","type":"conversation.resolved","conversation_id":"X","reason":"bot_resolved"}
{"id":"x6","ts":"2026-11-02T10:04:00Z","type":"csat.submitted","conversation_id":"X","score":5}
{"id":"y1","ts":"2026-11-02T10:00:00Z","type":"conversation.opened","conversation_id":"Y","channel":"whatsapp"}
{"id":"y2","ts":"2026-11-02T10:00:05Z","type":"message.sent","conversation_id":"Y","author":"bot"}
{"id":"y3","ts":"2026-11-02T10:01:00Z","type":"conversation.queued","conversation_id":"Y","team":"billing"}
{"id":"y4","ts":"2026-11-02T10:02:00Z","type":"conversation.assigned","conversation_id":"Y","agent_id":"ana"}
{"id":"y5","ts":"2026-11-02T10:03:00Z","type":"message.sent","conversation_id":"Y","author":"agent","agent_id":"ana"}
{"id":"y6","ts":"2026-11-02T10:10:00Z","type":"conversation.resolved","conversation_id":"Y","agent_id":"ana"}
{"id":"z1","ts":"2026-11-02T11:00:00Z","type":"conversation.opened","conversation_id":"Z","channel":"whatsapp"}
{"id":"z2","ts":"2026-11-02T11:00:05Z","type":"message.sent","conversation_id":"Z","author":"bot"}
"#;
    let s = Scenario::new(config, log);
    let range = [
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-03",
        "--now",
        "2026-11-02T11:30:00Z",
        "--group-by",
        "agent",
    ];
    let groups = |metric: &str| points_by_group(&s.metric(&[&[metric][..], &range].concat()));

    let ab = groups("abandonment");
    assert_eq!(ab.len(), 2, "{ab:?}");
    assert_eq!((ab[0].0.as_str(), &ab[0].1["answered"]), ("ana", &1.into()));
    assert_eq!(
        (ab[1].0.as_str(), &ab[1].1["bot_resolved"]),
        ("bot", &1.into())
    );
    assert_eq!(ab[1].1["abandoned"], 0);

    let m = groups("messages");
    let counts: Vec<(&str, f64)> = m.iter().map(|(g, p)| (g.as_str(), value(p))).collect();
    assert_eq!(counts, [("ana", 1.0), ("bot", 5.0)]);

    // ana resolved Y (unrated); X's rating is the bot's.
    let c = groups("csat");
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(
        (c[0].0.as_str(), &c[0].1["resolved"], &c[0].1["count"]),
        ("ana", &1.into(), &0.into())
    );
    assert_eq!((c[1].0.as_str(), value(&c[1].1)), ("bot", 100.0));

    let open = groups("open_conversations");
    let open: Vec<(&str, f64)> = open.iter().map(|(g, p)| (g.as_str(), value(p))).collect();
    assert_eq!(open, [("bot", 1.0)]);
}
