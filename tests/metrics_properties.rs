//! Invariants of the metrics layer, as property tests:
//! - shuffling deliveries, or delivering some twice, changes no metric;
//! - business seconds, through SQL, are additive over adjacent intervals, never exceed
//!   calendar seconds, and are zero over a holiday.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use supportlake::config::Config;
use supportlake::ingest::{self, IngestOptions, Input, NoProgress};
use supportlake::interval::Interval;
use supportlake::lake::LakePaths;
use supportlake::metrics::{self, Dimension, Filters, Metric, MetricRequest};
use supportlake::pseudonym::PseudonymKey;
use supportlake::query::Engine;

const CONFIG: &str = r#"
timezone = "America/Sao_Paulo"
[metrics]
calendar = "default"
[calendars.default]
mon = ["08:00-12:00", "13:00-18:00"]
tue = ["08:00-12:00", "13:00-18:00"]
wed = ["08:00-12:00", "13:00-18:00"]
thu = ["08:00-12:00", "13:00-18:00"]
fri = ["08:00-12:00", "13:00-18:00"]
sat = ["22:00-02:00"]
holidays = ["2026-11-03"]
[[sla.policies]]
name = "all"
first_response = "5m"
next_response = "10m"
resolution = "2h"
calendar = "default"
"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn ingest_files(lake: &Path, files: &[PathBuf]) {
    let key = PseudonymKey::new(common::KEY.as_bytes().to_vec()).unwrap();
    let received: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    let inputs: Vec<Input> = files.iter().cloned().map(Input::Path).collect();
    ingest::ingest(
        &LakePaths::new(lake),
        &inputs,
        &IngestOptions::default(),
        &key,
        Arc::new(move || received),
        "prop",
        &NoProgress,
    )
    .unwrap();
}

/// Every metric, grouped by team, per day, in calendar and business time: as JSON text.
fn all_metrics(lake: &Path) -> Vec<String> {
    let config = Arc::new(Config::from_toml_str(CONFIG, "test.toml").unwrap());
    let rt = rt();
    let engine = rt
        .block_on(Engine::open(&LakePaths::new(lake), Arc::clone(&config)))
        .unwrap();
    let mut out = Vec::new();
    for &metric in Metric::ALL {
        for business in [false, true] {
            if business && !metric.has_business_form() {
                continue;
            }
            let req = MetricRequest {
                metric,
                from: "2026-11-02T03:00:00Z".parse().unwrap(),
                to: "2026-11-05T03:00:00Z".parse().unwrap(),
                interval: Interval::Day,
                group_by: Some(Dimension::Team),
                tz: config.timezone,
                business_hours: business,
                filters: Filters::default(),
                now: "2026-11-04T15:00:00Z".parse().unwrap(),
                sla_metric: None,
            };
            let r = rt.block_on(metrics::run(&engine, &req)).unwrap();
            out.push(serde_json::to_string(&r).unwrap());
        }
    }
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    lines: Vec<(&'static str, String)>,
    baseline: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let gen_dir = dir.path().join("gen");
        common::generate(&gen_dir, 3, 40, 21);
        let mut lines = Vec::new();
        for source in ["agent-log", "whatsapp", "chatwoot"] {
            for f in common::walk(&gen_dir.join(source)) {
                for l in std::fs::read_to_string(f).unwrap().lines() {
                    lines.push((source, l.to_owned()));
                }
            }
        }
        let lake = dir.path().join("baseline");
        ingest_files(&lake, &common::source_files(&gen_dir));
        let baseline = all_metrics(&lake);
        Fixture {
            _dir: dir,
            lines,
            baseline,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn shuffled_and_duplicated_deliveries_change_no_metric(
        seed in any::<u64>(),
        duplicate_every in 2usize..7,
        files_per_source in 1usize..4,
    ) {
        let f = fixture();
        // A seeded permutation, then every n-th line delivered a second time, far from the
        // first copy.
        let mut lines = f.lines.clone();
        common::shuffle(&mut lines, &mut common::xorshift(seed));
        let again: Vec<_> = lines.iter().step_by(duplicate_every).cloned().collect();
        lines.extend(again);
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for source in ["agent-log", "whatsapp", "chatwoot"] {
            let mine: Vec<&String> = lines.iter().filter(|(s, _)| *s == source).map(|(_, l)| l).collect();
            for k in 0..files_per_source {
                let part: Vec<&str> = mine.iter().skip(k).step_by(files_per_source).map(|l| l.as_str()).collect();
                let p = dir.path().join(format!("{source}-{k}.jsonl"));
                std::fs::write(&p, part.join("\n")).unwrap();
                files.push(p);
            }
        }
        let lake = dir.path().join("lake");
        ingest_files(&lake, &files);
        let got = all_metrics(&lake);
        prop_assert_eq!(got.len(), f.baseline.len());
        for (g, b) in got.iter().zip(&f.baseline) {
            prop_assert_eq!(g, b);
        }
    }
}

/// `business_seconds` through SQL, over instants given as µs.
fn business_sql(engine: &Engine, pairs: &[(i64, i64)]) -> Vec<f64> {
    let values: Vec<String> = pairs
        .iter()
        .map(|(a, b)| {
            format!(
                "(arrow_cast({a}, 'Timestamp(Microsecond, Some(\"UTC\"))'), arrow_cast({b}, 'Timestamp(Microsecond, Some(\"UTC\"))'))"
            )
        })
        .collect();
    let sql = format!(
        "SELECT business_seconds(column1, column2, 'default') AS s FROM (VALUES {})",
        values.join(", ")
    );
    let (_, batches) = rt().block_on(engine.sql(&sql)).unwrap();
    batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

fn empty_engine() -> &'static (tempfile::TempDir, Engine) {
    static E: std::sync::OnceLock<(tempfile::TempDir, Engine)> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(Config::from_toml_str(CONFIG, "test.toml").unwrap());
        let engine = rt()
            .block_on(Engine::open(
                &LakePaths::new(dir.path().join("lake")),
                config,
            ))
            .unwrap();
        (dir, engine)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn business_seconds_in_sql_are_additive_bounded_and_zero_on_holidays(
        a in 1_793_000_000_000_000i64..1_796_000_000_000_000,
        d1 in 0i64..400_000_000_000,
        d2 in 0i64..400_000_000_000,
    ) {
        let (b, c) = (a + d1, a + d1 + d2);
        let (_, engine) = empty_engine();
        let r = business_sql(engine, &[(a, b), (b, c), (a, c)]);
        // Whole microseconds: the sum is exact in f64 at these magnitudes.
        prop_assert!((r[0] + r[1] - r[2]).abs() < 1e-6, "{r:?}");
        prop_assert!(r[2] <= (c - a) as f64 / 1e6 + 1e-9);
        prop_assert!(r.iter().all(|x| *x >= 0.0));
    }
}

#[test]
fn business_seconds_over_a_holiday_are_zero() {
    // 2026-11-03 (a Tuesday) is a holiday in the test calendar: its whole local day counts 0;
    // the Monday before it counts its 9 hours.
    let (_, engine) = empty_engine();
    let day = |d: &str| DateTime::parse_from_rfc3339(d).unwrap().timestamp_micros();
    let r = business_sql(
        engine,
        &[
            (
                day("2026-11-03T00:00:00-03:00"),
                day("2026-11-04T00:00:00-03:00"),
            ),
            (
                day("2026-11-02T00:00:00-03:00"),
                day("2026-11-03T00:00:00-03:00"),
            ),
        ],
    );
    assert_eq!(r, [0.0, 9.0 * 3600.0]);
}
