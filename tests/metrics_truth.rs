//! End to end against the simulation: 30 generated days go through `generate` → `ingest` →
//! the query layer, and every conversation's timestamps, owners and counts must equal the
//! simulation's own truth file; the metrics must equal what the truth says they are.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::*;
use supportlake::config::Config;
use supportlake::interval::Interval;
use supportlake::lake::LakePaths;
use supportlake::metrics::{self, Dimension, Filters, Metric, MetricRequest};
use supportlake::query::Engine;

type Row = BTreeMap<String, String>;

fn truth(path: &std::path::Path) -> Vec<Row> {
    common::csv_rows(&std::fs::read_to_string(path).unwrap())
}

fn micros(s: &str) -> Option<i64> {
    (!s.is_empty()).then(|| s.parse::<DateTime<Utc>>().unwrap().timestamp_micros())
}

#[test]
fn thirty_days_of_simulation_match_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    generate(&gen_dir, 30, 50, 9);
    let lake = dir.path().join("lake");
    let (code, receipt) = ingest(&lake, &source_files(&gen_dir));
    assert_eq!(code, 0, "{receipt}");

    let config =
        Arc::new(Config::from_toml_str("timezone = \"America/Sao_Paulo\"\n", "test.toml").unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt
        .block_on(Engine::open(&LakePaths::new(&lake), Arc::clone(&config)))
        .unwrap();

    // Our conversations, as text keyed by id.
    let (_, batches) = rt
        .block_on(engine.sql(
            "SELECT conversation_id, \
               arrow_cast(started_at, 'Int64') AS started, arrow_cast(queued_at, 'Int64') AS queued, \
               arrow_cast(assigned_at, 'Int64') AS assigned, \
               arrow_cast(first_response_at, 'Int64') AS first_response, \
               arrow_cast(resolved_at, 'Int64') AS resolved, outcome, \
               team_first_response, agent_first_response, team_resolved, agent_resolved, \
               messages_in, messages_out, private_notes, transfers, reopens, csat_score \
             FROM conversations",
        ))
        .unwrap();
    let mut ours: HashMap<String, serde_json::Value> = HashMap::new();
    for b in &batches {
        let mut buf = Vec::new();
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        w.write(b).unwrap();
        w.finish().unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&buf).unwrap();
        for r in rows {
            ours.insert(r["conversation_id"].as_str().unwrap().to_owned(), r);
        }
    }
    let truth = truth(&gen_dir.join("truth/conversations.csv"));
    assert!(truth.len() > 1000, "{} conversations", truth.len());
    assert_eq!(
        ours.keys().filter(|k| k.starts_with("session:")).count(),
        0,
        "every WhatsApp message found its conversation"
    );
    assert_eq!(ours.len(), truth.len());

    let mut mismatches = Vec::new();
    let mut check = |id: &str, what: &str, ours: String, theirs: String| {
        if ours != theirs && mismatches.len() < 20 {
            mismatches.push(format!("{id} {what}: ours {ours:?}, truth {theirs:?}"));
        }
    };
    let num = |v: &serde_json::Value| v.as_i64().map(|n| n.to_string()).unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    for t in &truth {
        let id = t["conversation_id"].as_str();
        let o = ours.get(id).unwrap_or_else(|| panic!("{id} missing"));
        for (col, field) in [
            ("started", "started_at"),
            ("queued", "queued_at"),
            ("assigned", "assigned_at"),
            ("first_response", "first_response_at"),
        ] {
            check(
                id,
                field,
                num(&o[col]),
                micros(&t[field]).map(|m| m.to_string()).unwrap_or_default(),
            );
        }
        let outcome = t["outcome"].as_str();
        if outcome != "open" {
            check(
                id,
                "resolved_at",
                num(&o["resolved"]),
                micros(&t["resolved_at"]).unwrap().to_string(),
            );
            check(id, "outcome", text(&o["outcome"]), outcome.to_owned());
            check(
                id,
                "team_resolved",
                text(&o["team_resolved"]),
                t["team_resolved"].clone(),
            );
            if outcome == "answered" {
                check(
                    id,
                    "agent_resolved",
                    text(&o["agent_resolved"]),
                    t["agent_resolved"].clone(),
                );
            }
        } else {
            assert!(
                ["waiting", "with_bot", "answered"].contains(&o["outcome"].as_str().unwrap()),
                "{id}: open in the truth, {} here",
                o["outcome"]
            );
        }
        check(
            id,
            "team_first_response",
            text(&o["team_first_response"]),
            t["team_first_response"].clone(),
        );
        check(
            id,
            "agent_first_response",
            text(&o["agent_first_response"]),
            t["agent_first_response"].clone(),
        );
        for f in [
            "messages_in",
            "messages_out",
            "private_notes",
            "transfers",
            "reopens",
            "csat_score",
        ] {
            check(id, f, num(&o[f]), t[f].clone());
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // Metrics, from the truth alone: daily mean wait and abandonment per team.
    let tz = chrono_tz::America::Sao_Paulo;
    let first = truth
        .iter()
        .filter_map(|t| micros(&t["started_at"]))
        .min()
        .unwrap();
    let last = truth
        .iter()
        .flat_map(|t| [micros(&t["first_response_at"]), micros(&t["resolved_at"])])
        .flatten()
        .max()
        .unwrap();
    let from = Interval::Day.start_of(first, tz);
    let to = Interval::Day.next(Interval::Day.start_of(last, tz), tz);
    let mut expected: BTreeMap<(String, i64), (f64, u64)> = BTreeMap::new();
    for t in &truth {
        if let (Some(q), Some(f)) = (micros(&t["queued_at"]), micros(&t["first_response_at"])) {
            let e = expected
                .entry((
                    t["team_first_response"].clone(),
                    Interval::Day.start_of(f, tz),
                ))
                .or_default();
            e.0 += (f - q) as f64 / 1e6;
            e.1 += 1;
        }
    }
    let req = MetricRequest {
        metric: Metric::Wait,
        from: DateTime::from_timestamp_micros(from).unwrap(),
        to: DateTime::from_timestamp_micros(to).unwrap(),
        interval: Interval::Day,
        group_by: Some(Dimension::Team),
        tz,
        business_hours: false,
        filters: Filters::default(),
        now: DateTime::from_timestamp_micros(to).unwrap(),
        sla_metric: None,
    };
    let result = rt.block_on(metrics::run(&engine, &req)).unwrap();
    let mut got: BTreeMap<(String, i64), (f64, u64)> = BTreeMap::new();
    for s in &result.series {
        for p in &s.points {
            let v = serde_json::to_value(p).unwrap();
            let count = v["count"].as_u64().unwrap();
            if count > 0 {
                let start = DateTime::parse_from_rfc3339(&p.start)
                    .unwrap()
                    .timestamp_micros();
                got.insert(
                    (s.group.clone().unwrap_or_default(), start),
                    (p.value.unwrap() * count as f64, count),
                );
            }
        }
    }
    assert_eq!(got.len(), expected.len());
    for (k, (sum, n)) in &expected {
        let (gsum, gn) = got[k];
        assert_eq!(gn, *n, "{k:?}");
        assert!(
            (gsum - sum).abs() < 1e-6 * sum.max(1.0),
            "{k:?}: {gsum} vs {sum}"
        );
    }

    // Abandonment per team over the whole range, counted from the truth.
    let mut ab: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for t in &truth {
        let at = match t["outcome"].as_str() {
            "answered" => micros(&t["first_response_at"]),
            "lost" | "abandoned_after_assignment" => micros(&t["resolved_at"]),
            _ => None,
        };
        if at.is_some_and(|a| a >= from && a < to) {
            let team = if t["outcome"] == "answered" {
                t["team_first_response"].clone()
            } else {
                t["team_resolved"].clone()
            };
            let e = ab.entry(team).or_default();
            e.1 += 1;
            if t["outcome"] != "answered" {
                e.0 += 1;
            }
        }
    }
    let req = MetricRequest {
        metric: Metric::Abandonment,
        interval: Interval::Month,
        ..req
    };
    let result = rt.block_on(metrics::run(&engine, &req)).unwrap();
    for s in &result.series {
        let (abandoned, total) = s.points.iter().fold((0, 0), |acc, p| {
            let v = serde_json::to_value(p).unwrap();
            (
                acc.0 + v["abandoned"].as_u64().unwrap(),
                acc.1 + v["count"].as_u64().unwrap(),
            )
        });
        let team = s.group.clone().unwrap_or_default();
        let expected = ab.remove(&team).unwrap_or_default();
        assert_eq!((abandoned, total), expected, "abandonment of team {team:?}");
    }
    assert!(ab.is_empty(), "teams missing from the metric: {ab:?}");
}

#[test]
fn the_cli_prints_the_documented_json_shape() {
    let sample = manifest_dir().join("sample-data/simulated");
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert_eq!(ingest(&lake, &source_files(&sample)).0, 0);
    let out = run_ok(
        bin()
            .arg("metrics")
            .arg("wait")
            .arg("--lake")
            .arg(&lake)
            .args([
                "--from",
                "2026-11-02",
                "--to",
                "2026-11-09",
                "--tz",
                "America/Sao_Paulo",
                "--group-by",
                "team",
                "--format",
                "json",
            ]),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["metric"], "wait");
    assert_eq!(v["unit"], "seconds");
    assert_eq!(v["business_hours"], false);
    assert_eq!(v["from"], "2026-11-02T00:00:00-03:00");
    assert_eq!(v["to"], "2026-11-09T00:00:00-03:00");
    assert_eq!(v["interval"], "day");
    assert_eq!(v["group_by"], "team");
    let series = v["series"].as_array().unwrap();
    let groups: Vec<&str> = series
        .iter()
        .map(|s| s["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["billing", "sales", "support"]);
    for s in series {
        let points = s["points"].as_array().unwrap();
        assert_eq!(points.len(), 7, "one point per day, empty days included");
        let keys: Vec<&str> = points[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["start", "end", "value", "count", "p50", "p90", "p95", "max"]
        );
    }
    // The table form names the metric, the range and the grouping.
    let table = run_ok(
        bin()
            .arg("metrics")
            .arg("abandonment")
            .arg("--lake")
            .arg(&lake)
            .args([
                "--from",
                "2026-11-02",
                "--to",
                "2026-11-09",
                "--tz",
                "America/Sao_Paulo",
            ]),
        0,
    );
    assert!(
        table.starts_with("abandonment (percent), 2026-11-02T00:00:00-03:00"),
        "{table}"
    );
    // Errors are clear.
    let (code, _, err) = run(bin().arg("metrics").arg("tme").arg("--lake").arg(&lake));
    assert_eq!(code, 1);
    assert!(err.contains("unknown metric \"tme\""), "{err}");
    let (code, _, err) = run(bin()
        .arg("metrics")
        .arg("wait")
        .arg("--lake")
        .arg(&lake)
        .args(["--from", "yesterday"]));
    assert_eq!(code, 1);
    assert!(err.contains("neither an RFC 3339 instant"), "{err}");
}
