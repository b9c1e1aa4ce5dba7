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

/// The fixture's lake, opened once (computed from the events: it has no rollups).
fn fixture_engine() -> &'static (Engine, Arc<Config>) {
    static E: std::sync::OnceLock<(Engine, Arc<Config>)> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        let f = fixture();
        let config = Arc::new(Config::from_toml_str(CONFIG, "test.toml").unwrap());
        let engine = rt()
            .block_on(Engine::open(
                &LakePaths::new(f._dir.path().join("baseline")),
                Arc::clone(&config),
            ))
            .unwrap();
        (engine, config)
    })
}

fn ts_sql(t: DateTime<Utc>) -> String {
    format!(
        "arrow_cast({}, 'Timestamp(Microsecond, Some(\"UTC\"))')",
        t.timestamp_micros()
    )
}

/// The backlog by the plain definition: every sample instant joined with every open stretch,
/// the team in force read from the conversation's events (`bot` while no team was named and
/// the conversation had not reached the human queue). `(team, bucket start µs) → (open,
/// waiting)`.
fn backlog_by_definition(
    engine: &Engine,
    req: &MetricRequest,
) -> std::collections::BTreeMap<(String, i64), (i64, i64)> {
    let (from, to, now) = (ts_sql(req.from), ts_sql(req.to), ts_sql(req.now));
    let (interval, tz) = (req.interval.to_string(), req.tz.name());
    let sql = format!(
        "WITH b AS (SELECT unnest(bucket_starts({from}, {to}, '{interval}', '{tz}')) AS bucket_start),
         samples AS (
           SELECT bucket_start, least(bucket_end(bucket_start, '{interval}', '{tz}'), {to}, {now}) AS at
           FROM b WHERE bucket_start <= {now}),
         open_at AS (
           SELECT DISTINCT s.bucket_start, s.at, i.conversation_id
           FROM samples s JOIN conversation_intervals i
             ON i.open_from <= s.at AND (i.open_to IS NULL OR i.open_to > s.at)),
         team_at AS (
           SELECT o.bucket_start, o.conversation_id,
                  last_value(e.team ORDER BY e.ts, e.kind_rank, e.event_id)
                    FILTER (WHERE e.team IS NOT NULL) AS team
           FROM open_at o JOIN conversation_events e ON e.conv = o.conversation_id AND e.ts <= o.at
           GROUP BY 1, 2)
         SELECT COALESCE(t.team,
                         CASE WHEN c.queued_at IS NULL OR c.queued_at > o.at THEN 'bot' END,
                         '') AS team,
                CAST(o.bucket_start AS BIGINT) AS bucket,
                count(*) AS open,
                count(*) FILTER (WHERE c.queued_at <= o.at
                  AND (c.first_response_at IS NULL OR c.first_response_at > o.at)) AS waiting
         FROM open_at o
         JOIN conversations c ON c.conversation_id = o.conversation_id
         LEFT JOIN team_at t ON t.bucket_start = o.bucket_start AND t.conversation_id = o.conversation_id
         GROUP BY 1, 2"
    );
    let (_, batches) = rt().block_on(engine.sql(&sql)).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for b in &batches {
        let team = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let team = team
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .clone()
        };
        let (bucket, open, waiting) = (col(1), col(2), col(3));
        for r in 0..b.num_rows() {
            out.insert(
                (team.value(r).to_owned(), bucket.value(r)),
                (open.value(r), waiting.value(r)),
            );
        }
    }
    out
}

fn request(
    metric: Metric,
    interval: Interval,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> MetricRequest {
    MetricRequest {
        metric,
        from,
        to,
        interval,
        group_by: Some(Dimension::Team),
        tz: fixture_engine().1.timezone,
        business_hours: false,
        filters: Filters::default(),
        now,
        sla_metric: None,
    }
}

/// Backlog points: (team, bucket start in µs) → (open, waiting).
type Backlog = std::collections::BTreeMap<(String, i64), (i64, i64)>;

/// The backlog by `open_conversations` and by the plain definition, for a range of
/// `len_min` minutes starting `start_min` after the fixture's base instant and a "now"
/// `now_min` after it.
fn backlog_both_ways(
    start_min: i64,
    len_min: i64,
    now_min: i64,
    hourly: bool,
) -> (Backlog, Backlog) {
    let (engine, _) = fixture_engine();
    let base: DateTime<Utc> = "2026-11-01T18:00:00Z".parse().unwrap();
    let minutes = chrono::Duration::minutes;
    let interval = if hourly {
        Interval::Hour
    } else {
        Interval::Day
    };
    let req = request(
        Metric::OpenConversations,
        interval,
        base + minutes(start_min),
        base + minutes(start_min + len_min),
        base + minutes(now_min),
    );
    let expected = backlog_by_definition(engine, &req);
    let r = rt().block_on(metrics::run(engine, &req)).unwrap();
    let mut got = std::collections::BTreeMap::new();
    for s in &r.series {
        for p in &s.points {
            let metrics::rows::Detail::Open { waiting, .. } = &p.detail else {
                panic!("not a backlog point")
            };
            let Some(v) = p.value else { continue };
            if v == 0.0 {
                continue;
            }
            let start = DateTime::parse_from_rfc3339(&p.start)
                .unwrap()
                .timestamp_micros();
            got.insert(
                (s.group.clone().unwrap_or_default(), start),
                (v as i64, *waiting as i64),
            );
        }
    }
    (got, expected)
}

/// "now" exactly on an hour boundary inside the range: the hour that ends at "now" and the
/// hour that starts at "now" are both sampled at "now", and each open conversation counts
/// once in each (the team lookup used to join by instant and matched both samples, so every
/// conversation counted twice in those two hours). Found by the property test below.
#[test]
fn the_backlog_at_now_on_a_bucket_boundary_counts_each_conversation_once() {
    let (got, expected) = backlog_both_ways(0, 2341, 2340, true);
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// `open_conversations` finds the samples of each stretch with `sample_buckets` and the
    /// team in force with `conversation_owners`; the plain definition joins every sample
    /// with every stretch and reads the team from the events. Same numbers.
    #[test]
    fn the_backlog_by_lookup_equals_the_backlog_by_definition(
        start_min in 0i64..(3 * 24 * 60),
        len_min in 1i64..(4 * 24 * 60),
        now_min in 0i64..(5 * 24 * 60),
        hourly in any::<bool>(),
    ) {
        let (got, expected) = backlog_both_ways(start_min, len_min, now_min, hourly);
        prop_assert_eq!(got, expected);
    }

    /// The server answers from rows of ended intervals kept from an earlier state of the
    /// lake, the intervals since then and the rest of the range, each asked apart
    /// (`split_for_carry`); shaped together they give the answer of one query, for every
    /// metric, any boundary the kept rows end at and any "now".
    #[test]
    fn a_request_answered_in_parts_gives_the_same_answer(
        start_min in 0i64..(2 * 24 * 60),
        len_min in 60i64..(4 * 24 * 60),
        now_frac in 0.0f64..1.2,
        kept_frac in 0.0f64..1.0,
        hourly in any::<bool>(),
        which in any::<prop::sample::Index>(),
        business in any::<bool>(),
    ) {
        let (engine, _) = fixture_engine();
        let base: DateTime<Utc> = "2026-11-01T18:00:00Z".parse().unwrap();
        let minutes = chrono::Duration::minutes;
        let interval = if hourly { Interval::Hour } else { Interval::Day };
        let metric = Metric::ALL[which.index(Metric::ALL.len())];
        let from = base + minutes(start_min);
        let mut req = request(
            metric,
            interval,
            from,
            from + minutes(len_min),
            from + minutes((len_min as f64 * now_frac) as i64),
        );
        req.business_hours = business && metric.has_business_form();
        let kept_until = from + minutes((len_min as f64 * kept_frac) as i64);
        let whole = rt().block_on(metrics::run(engine, &req)).unwrap();
        let split = rt().block_on(metrics::run_split(engine, &req, kept_until)).unwrap();
        prop_assert_eq!(serde_json::to_string(&split).unwrap(), serde_json::to_string(&whole).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The server keeps an `sla` answer from the "now" it was computed at until the instant
    /// `unchanged_until` names; asked at any "now" in that span, the query gives the same
    /// answer.
    #[test]
    fn an_sla_answer_holds_until_its_next_due_time(
        start_min in 0i64..(2 * 24 * 60),
        len_min in 60i64..(4 * 24 * 60),
        now_frac in 0.0f64..1.2,
        later_frac in 0.0f64..1.0,
        hourly in any::<bool>(),
    ) {
        let (engine, _) = fixture_engine();
        let base: DateTime<Utc> = "2026-11-01T18:00:00Z".parse().unwrap();
        let minutes = chrono::Duration::minutes;
        let interval = if hourly { Interval::Hour } else { Interval::Day };
        let from = base + minutes(start_min);
        let now = from + minutes((len_min as f64 * now_frac) as i64);
        let req = request(Metric::Sla, interval, from, from + minutes(len_min), now);
        let answer = rt().block_on(metrics::run(engine, &req)).unwrap();
        let until = rt().block_on(metrics::unchanged_until(engine, &req)).unwrap();
        if let Some(u) = until {
            prop_assert!(u > now);
        }
        // A "now" in [now, until), within three days.
        let span = until.map_or(chrono::Duration::days(3), |u| (u - now).min(chrono::Duration::days(3)));
        let later = now + chrono::Duration::microseconds(
            ((span.num_microseconds().unwrap() - 1) as f64 * later_frac) as i64,
        );
        let mut again = req.clone();
        again.now = later;
        let later_answer = rt().block_on(metrics::run(engine, &again)).unwrap();
        prop_assert_eq!(
            serde_json::to_string(&later_answer).unwrap(),
            serde_json::to_string(&answer).unwrap(),
            "now {} held until {:?}, asked at {}", now, until, later
        );
    }
}

/// The span `unchanged_until` names is not for ever where targets are still open: asked
/// just before an open target's due time, the answer changes right at it.
#[test]
fn an_sla_answer_changes_when_an_open_target_falls_due() {
    let (engine, _) = fixture_engine();
    let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let (from, to) = (t("2026-11-01T03:00:00Z"), t("2026-11-05T03:00:00Z"));
    let mut changed = 0;
    let mut now = from;
    // Walk "now" from due time to due time across the range.
    for _ in 0..40 {
        let req = request(Metric::Sla, Interval::Hour, from, to, now);
        let Some(until) = rt()
            .block_on(metrics::unchanged_until(engine, &req))
            .unwrap()
        else {
            break;
        };
        assert!(until > now);
        let before = rt().block_on(metrics::run(engine, &req)).unwrap();
        let mut at = req.clone();
        at.now = until;
        let after = rt().block_on(metrics::run(engine, &at)).unwrap();
        if serde_json::to_string(&before).unwrap() != serde_json::to_string(&after).unwrap() {
            changed += 1;
        }
        now = until;
    }
    assert!(
        changed > 0,
        "the fixture has open targets falling due in the range, and the answer moves with them"
    );
}

#[test]
fn only_metrics_that_read_now_key_their_answers_by_it() {
    let reading: Vec<&str> = Metric::ALL
        .iter()
        .filter(|m| m.reads_now())
        .map(|m| m.as_str())
        .collect();
    assert_eq!(reading, ["open_conversations", "sla", "agent_activity"]);
    let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let at = |metric, now| {
        request(
            metric,
            Interval::Day,
            t("2026-11-02T03:00:00Z"),
            t("2026-11-05T03:00:00Z"),
            t(now),
        )
        .cache_key()
    };
    // wait does not read now: one answer whenever it is asked.
    assert_eq!(
        at(Metric::Wait, "2026-11-03T10:00:00Z"),
        at(Metric::Wait, "2026-11-04T10:00:00Z")
    );
    // sla does; so does the backlog while the range is still running …
    assert_ne!(
        at(Metric::Sla, "2026-11-06T10:00:00Z"),
        at(Metric::Sla, "2026-11-07T10:00:00Z")
    );
    assert_ne!(
        at(Metric::OpenConversations, "2026-11-03T10:00:00Z"),
        at(Metric::OpenConversations, "2026-11-03T10:00:01Z")
    );
    // … but not once it has ended.
    assert_eq!(
        at(Metric::OpenConversations, "2026-11-06T10:00:00Z"),
        at(Metric::OpenConversations, "2026-11-07T10:00:00Z")
    );
}
