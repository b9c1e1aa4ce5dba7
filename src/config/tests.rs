use std::time::Duration;

use chrono::{NaiveDate, Weekday};

use super::*;

/// The problems reported for `text`, as displayed.
fn problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, "config.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

/// The single problem reported for `text`.
fn problem(text: &str) -> String {
    let mut all = problems(text);
    assert_eq!(all.len(), 1, "expected one problem, got {all:#?}");
    all.remove(0)
}

fn parse(text: &str) -> Config {
    match Config::from_toml_str(text, "config.toml") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

const FULL: &str = r#"timezone = "America/Sao_Paulo"

[metrics]
service_level_target = "20s"
session_gap = "12h"
link_grace = "90s"

[calendars.default]
mon = ["08:00-12:00", "13:00-18:00"]
tue = ["08:00-18:00"]
sat = ["22:00-06:00"]
sun = []
holidays = ["2026-12-25", 2027-01-01]

[calendars.lisbon]
timezone = "Europe/Lisbon"
fri = ["08:00-24:00"]

[[sla.policies]]
name = "whatsapp-high"
match = { channel = "whatsapp", priority = ["high", "urgent"] }
first_response = "5m"
next_response = "15m"
resolution = "4h"
calendar = "default"

[[sla.policies]]
name = "catch-all"
resolution = "2days"

[[reports]]
name = "daily-sla"
recipients = ["ops@example.com"]
at = 07:30:00

[[dashboards]]
name = "overview"
"#;

#[test]
fn full_example() {
    let c = parse(FULL);
    assert_eq!(c.timezone, chrono_tz::America::Sao_Paulo);
    assert_eq!(
        c.metrics,
        MetricsSettings {
            service_level_target: Duration::from_secs(20),
            session_gap: Duration::from_secs(12 * 3600),
            link_grace: Duration::from_secs(90),
            calendar: None,
        }
    );
    // No `metrics.calendar`, but a calendar named "default" exists.
    assert_eq!(c.metrics_calendar(), "default");
    assert_eq!(
        c.calendars.keys().collect::<Vec<_>>(),
        ["24x7", "default", "lisbon"]
    );
    let default = c.calendar("default").unwrap();
    // The calendar inherits the top-level time zone.
    assert_eq!(default.tz(), chrono_tz::America::Sao_Paulo);
    assert_eq!(default.ranges(Weekday::Mon).len(), 2);
    assert_eq!(default.ranges(Weekday::Sat)[0].to_string(), "22:00-06:00");
    assert!(default.ranges(Weekday::Sun).is_empty());
    assert_eq!(
        default.holidays().iter().copied().collect::<Vec<_>>(),
        [
            NaiveDate::from_ymd_opt(2026, 12, 25).unwrap(),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        ]
    );
    // 9 h on Monday + 10 h on Tuesday + 8 h Saturday night.
    assert_eq!(default.weekly_business_micros(), 27 * 3_600_000_000);
    assert_eq!(
        c.calendar("lisbon").unwrap().tz(),
        chrono_tz::Europe::Lisbon
    );
    assert_eq!(c.sla.len(), 2);
    let high = &c.sla[0];
    assert_eq!(high.name, "whatsapp-high");
    assert_eq!(high.matcher.channel, ["whatsapp"]);
    assert_eq!(high.matcher.priority, ["high", "urgent"]);
    assert!(high.matcher.team.is_empty());
    assert_eq!(high.first_response, Some(Duration::from_secs(300)));
    assert_eq!(high.next_response, Some(Duration::from_secs(900)));
    assert_eq!(high.resolution, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(high.calendar.as_deref(), Some("default"));
    assert_eq!(c.sla[1].first_response, None);
    assert_eq!(c.sla[1].calendar, None);
    assert!(c.sla[1].matcher.is_catch_all());
    assert_eq!(c.policy_calendar(&c.sla[1]).unwrap().name(), "24x7");
    assert_eq!(c.reports.len(), 1);
    assert_eq!(c.reports[0]["name"].as_str(), Some("daily-sla"));
    assert!(c.reports[0]["at"].is_datetime());
    assert_eq!(c.dashboards[0]["name"].as_str(), Some("overview"));
}

#[test]
fn defaults() {
    for text in ["", "# nothing but a comment\n"] {
        let c = parse(text);
        assert_eq!(c, Config::default());
    }
    let c = Config::default();
    assert_eq!(c.timezone, chrono_tz::UTC);
    assert_eq!(c.metrics.service_level_target, Duration::from_secs(60));
    assert_eq!(c.metrics.session_gap, Duration::from_secs(86_400));
    assert_eq!(c.metrics.link_grace, Duration::from_secs(120));
    let always = c.calendar("24x7").unwrap();
    assert_eq!(always.business_micros(0, 12_345), 12_345);
    assert!(c.sla.is_empty() && c.reports.is_empty() && c.dashboards.is_empty());
    assert!(c.policy_for(Some("whatsapp"), None, None, None).is_none());
    // Sections present but partial keep the other defaults.
    let c = parse("[metrics]\nsession_gap = \"30m\"\n");
    assert_eq!(c.metrics.session_gap, Duration::from_secs(1800));
    assert_eq!(c.metrics.service_level_target, Duration::from_secs(60));
}

#[test]
fn first_matching_policy_wins() {
    let c = parse(FULL);
    let name = |channel, team, priority, inbox| {
        c.policy_for(channel, team, priority, inbox)
            .map(|p| p.name.as_str())
    };
    assert_eq!(
        name(Some("whatsapp"), None, Some("urgent"), None),
        Some("whatsapp-high")
    );
    assert_eq!(
        name(Some("whatsapp"), Some("billing"), Some("high"), Some("x")),
        Some("whatsapp-high")
    );
    // Wrong priority, missing priority, different case: the catch-all.
    assert_eq!(
        name(Some("whatsapp"), None, Some("low"), None),
        Some("catch-all")
    );
    assert_eq!(name(Some("whatsapp"), None, None, None), Some("catch-all"));
    assert_eq!(
        name(Some("WhatsApp"), None, Some("high"), None),
        Some("catch-all")
    );
    let m = PolicyMatch {
        inbox: vec!["a".into(), "b".into()],
        team: vec!["t".into()],
        ..PolicyMatch::default()
    };
    assert!(m.matches(None, Some("t"), None, Some("b")));
    assert!(!m.matches(None, Some("t"), None, None));
    assert!(!m.matches(None, Some("u"), None, Some("a")));
}

#[test]
fn metrics_calendar() {
    assert_eq!(Config::default().metrics_calendar(), "24x7");
    let cal = "[calendars.office]\nmon = [\"09:00-17:00\"]\n";
    assert_eq!(parse(cal).metrics_calendar(), "24x7");
    let c = parse(&format!("[metrics]\ncalendar = \"office\"\n{cal}"));
    assert_eq!(c.metrics.calendar.as_deref(), Some("office"));
    assert_eq!(c.metrics_calendar(), "office");
    // The calendar may be defined after the reference.
    assert_eq!(
        problem(&format!("[metrics]\ncalendar = \"ofice\"\n{cal}")),
        "config.toml:2:12: metrics.calendar: no calendar named \"ofice\" (known: office, 24x7)"
    );
}

#[test]
fn reserved_calendar_is_usable_by_name() {
    let c = parse("[[sla.policies]]\nname = \"p\"\nresolution = \"1h\"\ncalendar = \"24x7\"\n");
    assert_eq!(c.sla[0].calendar.as_deref(), Some("24x7"));
}

// ----- one test per kind of error; columns are 1-based and counted by hand -----------------

#[test]
fn toml_syntax_error() {
    // Line 2 `mon = ["08:00-12:00"` never closes; the parser notices at the end of line 2
    // (column 21, just past the last string).
    assert_eq!(
        problem("[calendars.a]\nmon = [\"08:00-12:00\"\n"),
        "config.toml:2:21: unclosed array, expected `]`"
    );
}

#[test]
fn duplicate_key() {
    assert_eq!(
        problem("timezone = \"UTC\"\ntimezone = \"UTC\"\n"),
        "config.toml:2:1: duplicate key"
    );
}

#[test]
fn unknown_keys() {
    assert_eq!(
        problem("timezone = \"UTC\"\ntimezones = \"UTC\"\n"),
        "config.toml:2:1: timezones: unknown key (known keys here: timezone, metrics, calendars, sla, reports, dashboards, smtp, retention)"
    );
    assert_eq!(
        problem("[metrics]\n  sesion_gap = \"1h\"\n"),
        "config.toml:2:3: metrics.sesion_gap: unknown key (known keys here: service_level_target, session_gap, link_grace, calendar)"
    );
    assert_eq!(
        problem("[calendars.default]\nmonday = [\"08:00-12:00\"]\n"),
        "config.toml:2:1: calendars.default.monday: unknown key (known keys here: timezone, mon, tue, wed, thu, fri, sat, sun, holidays)"
    );
    assert_eq!(
        problem("[sla]\npolicy = []\n"),
        "config.toml:2:1: sla.policy: unknown key (known keys here: policies)"
    );
    // `match = { chanel = ...` : the key starts at column 11.
    assert_eq!(
        problem(
            "[[sla.policies]]\nname = \"p\"\nresolution = \"1h\"\nmatch = { chanel = \"whatsapp\" }\n"
        ),
        "config.toml:4:11: sla.policies[0].match.chanel: unknown key (known keys here: channel, team, priority, inbox)"
    );
    assert_eq!(
        problem("[[sla.policies]]\nname = \"p\"\nresolution = \"1h\"\nbusiness_hours = \"x\"\n"),
        "config.toml:4:1: sla.policies[0].business_hours: unknown key (known keys here: name, match, first_response, next_response, resolution, calendar)"
    );
}

#[test]
fn bad_time_range() {
    // The second string of line 3 starts at column 23.
    let text =
        "[calendars.default]\ntimezone = \"UTC\"\nmon = [\"08:00-12:00\", \"13:00-25:00\"]\n";
    assert_eq!(
        problem(text),
        "config.toml:3:23: calendars.default.mon[1]: \"13:00-25:00\" is not a time range (HH:MM-HH:MM)"
    );
    // In a multi-line array the element sits on its own line.
    let text = "[calendars.default]\nmon = [\n    \"08:00-12:00\",\n    \"24:00-08:00\",\n]\n";
    assert_eq!(
        problem(text),
        "config.toml:4:5: calendars.default.mon[1]: \"24:00-08:00\" is not a time range (HH:MM-HH:MM)"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        problem("[calendars.default]\ntue = \"08:00-18:00\"\n"),
        "config.toml:2:7: calendars.default.tue: expected an array, found a string"
    );
    assert_eq!(
        problem("[calendars.default]\ntue = [800]\n"),
        "config.toml:2:8: calendars.default.tue[0]: expected a string, found an integer"
    );
    assert_eq!(
        problem("metrics = 5\n"),
        "config.toml:1:11: metrics: expected a table, found an integer"
    );
    assert_eq!(
        problem("[metrics]\nsession_gap = 3600\n"),
        "config.toml:2:15: metrics.session_gap: expected a duration string such as \"90s\", \"5m\" or \"4h\", found an integer"
    );
    assert_eq!(
        problem("timezone = true\n"),
        "config.toml:1:12: timezone: expected a string, found a boolean"
    );
}

#[test]
fn bad_durations() {
    assert_eq!(
        problem("[metrics]\nservice_level_target = \"60 segundos\"\n"),
        "config.toml:2:24: metrics.service_level_target: \"60 segundos\" is not a duration (e.g. \"90s\", \"5m\", \"1h 30m\"): unknown time unit \"segundos\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)"
    );
    assert_eq!(
        problem("[metrics]\nlink_grace = \"0s\"\n"),
        "config.toml:2:14: metrics.link_grace: \"0s\" must be greater than zero"
    );
    assert_eq!(
        problem("[[sla.policies]]\nname = \"p\"\nresolution = \"200years\"\n"),
        "config.toml:3:14: sla.policies[0].resolution: \"200years\" is longer than 100 years"
    );
}

#[test]
fn bad_time_zones() {
    assert_eq!(
        problem("timezone = \"America/SaoPaulo\"\n"),
        "config.toml:1:12: timezone: \"America/SaoPaulo\" is not an IANA time zone name (e.g. \"America/Sao_Paulo\", \"UTC\")"
    );
    assert_eq!(
        problem("[calendars.x]\ntimezone = \"Mars/Olympus\"\nmon = [\"08:00-09:00\"]\n"),
        "config.toml:2:12: calendars.x.timezone: \"Mars/Olympus\" is not an IANA time zone name (e.g. \"America/Sao_Paulo\", \"UTC\")"
    );
}

#[test]
fn bad_holidays() {
    let head = "[calendars.default]\nmon = [\"08:00-18:00\"]\n";
    // `holidays = ["2026-12-25", "2026-02-30"]`: the second string starts at column 27.
    assert_eq!(
        problem(&format!(
            "{head}holidays = [\"2026-12-25\", \"2026-02-30\"]\n"
        )),
        "config.toml:3:27: calendars.default.holidays[1]: \"2026-02-30\" is not a date (YYYY-MM-DD)"
    );
    assert_eq!(
        problem(&format!("{head}holidays = [\"25/12/2026\"]\n")),
        "config.toml:3:13: calendars.default.holidays[0]: \"25/12/2026\" is not a date (YYYY-MM-DD)"
    );
    // A TOML date-time is not a date.
    assert_eq!(
        problem(&format!("{head}holidays = [2026-12-25T10:00:00]\n")),
        "config.toml:3:13: calendars.default.holidays[0]: 2026-12-25T10:00:00 is not a date (YYYY-MM-DD)"
    );
    assert_eq!(
        problem(&format!("{head}holidays = [20261225]\n")),
        "config.toml:3:13: calendars.default.holidays[0]: expected a date (YYYY-MM-DD), found an integer"
    );
}

#[test]
fn calendar_rules() {
    assert_eq!(
        problem("[calendars.empty]\nsun = []\n"),
        "config.toml:1:1: calendars.empty: no opening hours on any day (list ranges under mon … sun); business time would never pass"
    );
    assert_eq!(
        problem("[calendars.24x7]\nmon = [\"08:00-09:00\"]\n"),
        "config.toml:1:12: calendars.24x7: the name \"24x7\" is reserved for the built-in around-the-clock calendar"
    );
    // Keys that need quoting are shown quoted.
    assert_eq!(
        problem("[calendars.\"\"]\nmon = [\"08:00-09:00\"]\n"),
        "config.toml:1:12: calendars.\"\": a calendar name must not be empty"
    );
    assert_eq!(
        problem("[calendars.\"help desk\"]\nmon = [\"8:00-09:00\"]\n"),
        "config.toml:2:8: calendars.\"help desk\".mon[0]: \"8:00-09:00\" is not a time range (HH:MM-HH:MM)"
    );
}

#[test]
fn unknown_policy_calendar() {
    let text = "[calendars.default]\nmon = [\"08:00-18:00\"]\n\n[[sla.policies]]\nname = \"a\"\nresolution = \"1h\"\n\n[[sla.policies]]\nname = \"b\"\nresolution = \"1h\"\ncalendar = \"weekdays\"\n";
    assert_eq!(
        problem(text),
        "config.toml:11:12: sla.policies[1].calendar: no calendar named \"weekdays\" (known: default, 24x7)"
    );
}

#[test]
fn a_broken_calendar_is_still_known_to_policies() {
    // Only the range is reported, not also "no calendar named default".
    let text = "[calendars.default]\nmon = [\"08:00-18:70\"]\n[[sla.policies]]\nname = \"a\"\nresolution = \"1h\"\ncalendar = \"default\"\n";
    assert_eq!(
        problem(text),
        "config.toml:2:8: calendars.default.mon[0]: \"08:00-18:70\" is not a time range (HH:MM-HH:MM)"
    );
}

#[test]
fn policy_names() {
    // A missing name points at the `[[sla.policies]]` header.
    assert_eq!(
        problem("[[sla.policies]]\nresolution = \"1h\"\n"),
        "config.toml:1:1: sla.policies[0].name: missing; every policy needs a unique name"
    );
    assert_eq!(
        problem("[[sla.policies]]\nname = \"  \"\nresolution = \"1h\"\n"),
        "config.toml:2:8: sla.policies[0].name: a policy name must not be empty"
    );
    let text = "[[sla.policies]]\nname = \"vip\"\nresolution = \"1h\"\n[[sla.policies]]\nname = \"vip\"\nresolution = \"2h\"\n";
    assert_eq!(
        problem(text),
        "config.toml:5:8: sla.policies[1].name: duplicate policy name \"vip\" (already used by sla.policies[0] on line 2)"
    );
}

#[test]
fn policy_without_targets() {
    let text = "[[sla.policies]]\nname = \"a\"\nresolution = \"1h\"\n\n  [[sla.policies]]\nname = \"b\"\ncalendar = \"24x7\"\n";
    assert_eq!(
        problem(text),
        "config.toml:5:3: sla.policies[1]: no target; set at least one of first_response, next_response, resolution"
    );
}

#[test]
fn bad_match_values() {
    let head = "[[sla.policies]]\nname = \"a\"\nresolution = \"1h\"\n";
    assert_eq!(
        problem(&format!("{head}match = {{ channel = \"\" }}\n")),
        "config.toml:4:21: sla.policies[0].match.channel: must not be empty"
    );
    assert_eq!(
        problem(&format!("{head}match = {{ team = [\"billing\", \"\"] }}\n")),
        "config.toml:4:30: sla.policies[0].match.team[1]: must not be empty"
    );
    assert_eq!(
        problem(&format!("{head}match = {{ team = [] }}\n")),
        "config.toml:4:18: sla.policies[0].match.team: an empty list matches nothing; leave the key out to match any value"
    );
    assert_eq!(
        problem(&format!("{head}match = {{ priority = 1 }}\n")),
        "config.toml:4:22: sla.policies[0].match.priority: expected a string or a list of strings, found an integer"
    );
    assert_eq!(
        problem(&format!("{head}match = {{ inbox = [\"a\", 2] }}\n")),
        "config.toml:4:25: sla.policies[0].match.inbox[1]: expected a string, found an integer"
    );
    assert_eq!(
        problem(&format!("{head}match = \"whatsapp\"\n")),
        "config.toml:4:9: sla.policies[0].match: expected a table, found a string"
    );
}

#[test]
fn reports_must_be_tables() {
    assert_eq!(
        problem("reports = \"daily\"\n"),
        "config.toml:1:11: reports: expected an array, found a string"
    );
    assert_eq!(
        problem("dashboards = [1]\n"),
        "config.toml:1:15: dashboards[0]: expected a table, found an integer"
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = "[[sla.policies]]\nname = \"a\"\nresolution = \"1h\"\ncalendar = \"nope\"\n\n[metrics]\nsession_gap = \"soon\"\n\n[calendars.c]\nmon = [\"9-5\"]\n";
    let found = problems(text);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with(
        "config.toml:4:12: sla.policies[0].calendar: no calendar named \"nope\" (known: c, 24x7)"
    ));
    assert!(
        found[1].starts_with("config.toml:7:15: metrics.session_gap: \"soon\" is not a duration")
    );
    assert_eq!(
        found[2],
        "config.toml:10:8: calendars.c.mon[0]: \"9-5\" is not a time range (HH:MM-HH:MM)"
    );
    // The error's Display is the same lines joined.
    let shown = Config::from_toml_str(text, "config.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(shown, found.join("\n"));
}

#[test]
fn columns_count_characters_and_ignore_crlf_and_bom() {
    // "ção" is 3 characters but 5 bytes: the empty string after it is at column 33, not 35.
    let head = "[[sla.policies]]\nname = \"a\"\nresolution = \"1h\"\n";
    assert_eq!(
        problem(&format!(
            "{head}match = {{ team = \"ção\", inbox = \"\" }}\n"
        )),
        "config.toml:4:33: sla.policies[0].match.inbox: must not be empty"
    );
    let crlf = "timezone = \"UTC\"\r\n[metrics]\r\nlink_grace = \"0s\"\r\n";
    assert_eq!(
        problem(crlf),
        "config.toml:3:14: metrics.link_grace: \"0s\" must be greater than zero"
    );
    assert_eq!(
        problem("\u{feff}timezone = \"Nowhere\"\n"),
        "config.toml:1:12: timezone: \"Nowhere\" is not an IANA time zone name (e.g. \"America/Sao_Paulo\", \"UTC\")"
    );
}

#[test]
fn line_column_is_total() {
    use super::error::line_column;
    let text = "ab\ncé\n";
    assert_eq!(line_column(text, 0), (1, 1));
    assert_eq!(line_column(text, 3), (2, 1));
    assert_eq!(line_column(text, 4), (2, 2));
    // Inside the two-byte "é": moved back to its start.
    assert_eq!(line_column(text, 5), (2, 2));
    assert_eq!(line_column(text, 999), (3, 1));
    assert_eq!(line_column("", 7), (1, 1));
}

#[test]
fn load_reads_files_and_names_them() {
    let dir = std::env::temp_dir().join(format!("supportlake-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("rules.toml");
    std::fs::write(&good, FULL).unwrap();
    assert_eq!(Config::load(&good).unwrap(), parse(FULL));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[metrics]\nlink_grace = \"0s\"\n").unwrap();
    let err = Config::load(&bad).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:2:14: metrics.link_grace: \"0s\" must be greater than zero",
            bad.display()
        )
    );

    let latin1 = dir.join("latin1.toml");
    std::fs::write(&latin1, b"# ok\n# Sa\xe3o Paulo\n").unwrap();
    let err = Config::load(&latin1).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:2:5: the file is not valid UTF-8", latin1.display())
    );

    let missing = dir.join("missing.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().starts_with(&format!(
        "{}: cannot read configuration: ",
        missing.display()
    )));
    assert!(err.diagnostics().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn module_doc_example() {
    // Keep the example in the module docs true.
    let text = "[calendars.default]\nmon = [\"08:00-12:00\", \"13:00-25:00\"]\n\n[[sla.policies]]\nname = \"vip\"\nresolution = \"4h\"\ncalendar = \"weekdays\"\n";
    assert_eq!(
        problems(text),
        [
            "config.toml:2:23: calendars.default.mon[1]: \"13:00-25:00\" is not a time range (HH:MM-HH:MM)",
            "config.toml:7:12: sla.policies[0].calendar: no calendar named \"weekdays\" (known: default, 24x7)",
        ]
    );
}

#[test]
fn retention_periods_are_whole_days_per_table() {
    let c =
        parse("[retention]\nevents = \"730d\"\nconversations = \"2days\"\nrejected = \"90d\"\n");
    assert_eq!(
        c.retention.tables,
        vec![("events".to_owned(), 730), ("conversations".to_owned(), 2)]
    );
    assert_eq!(c.retention.rejected, Some(90));
    assert!(Config::default().retention.is_empty());
}

#[test]
fn retention_refuses_the_wal_the_audit_log_and_partial_days() {
    let all = problems(
        "[retention]\nwal = \"7d\"\naudit = \"7d\"\nevents = \"36h\"\nmessages = \"7d\"\n",
    );
    assert_eq!(all.len(), 4, "{all:#?}");
    assert!(
        all[0].starts_with("config.toml:2:1: retention.wal: the write-ahead log has no retention"),
        "{}",
        all[0]
    );
    assert!(
        all[1].starts_with("config.toml:3:1: retention.audit:"),
        "{}",
        all[1]
    );
    assert_eq!(
        all[2],
        "config.toml:4:10: retention.events: \"36h\" is not a whole number of days (write e.g. \"730d\" or \"90d\")"
    );
    assert_eq!(
        all[3],
        "config.toml:5:1: retention.messages: unknown key (known keys here: events, conversations, sla_targets, conversation_intervals, conversation_links, conversation_owners, conversation_messages, agent_status_intervals, rejected)"
    );
    assert_eq!(
        problem("[retention]\nevents = \"0d\"\n"),
        "config.toml:2:10: retention.events: \"0d\" must be greater than zero"
    );
}
