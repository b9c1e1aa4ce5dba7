//! Rollups equal the raw computation, as a property: generated events (agent log, WhatsApp,
//! Chatwoot — loose WhatsApp messages linked to conversations included) delivered in a
//! random order, some twice, in random chunks, with an incremental refresh after every
//! chunk and a compaction now and then. Whatever the order, the rollup tables and every
//! metric equal what the views compute from all the events at once.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use supportlake::config::Config;
use supportlake::ingest::{self, IngestOptions, Input, NoProgress};
use supportlake::interval::Interval;
use supportlake::lake::LakePaths;
use supportlake::lake::compact::{CompactOptions, compact_lake};
use supportlake::metrics::{self, Dimension, Filters, Metric, MetricRequest};
use supportlake::pseudonym::PseudonymKey;
use supportlake::query::rollup::{self, RefreshOptions};
use supportlake::query::{Engine, Rollups};

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
[[sla.policies]]
name = "all"
first_response = "5m"
next_response = "10m"
resolution = "2h"
calendar = "default"
"#;

fn config() -> Arc<Config> {
    Arc::new(Config::from_toml_str(CONFIG, "test.toml").unwrap())
}

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

/// The first rollup file (if any) holding an instant before the first instant of its
/// `date=D` partition. The server keeps answers about time before the first changed
/// partition across refreshes, which holds only if no partition reaches back before its day.
fn instant_before_its_partition(lake: &Path) -> Option<String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
    let mut checked = 0;
    for f in common::walk(lake) {
        let rel = f.strip_prefix(lake).unwrap().to_string_lossy().into_owned();
        if rel.starts_with("events/") || rel.starts_with('_') || !rel.ends_with(".parquet") {
            continue;
        }
        let dir = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let day = chrono::NaiveDate::parse_from_str(dir.strip_prefix("date=").unwrap(), "%Y-%m-%d")
            .unwrap()
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            std::fs::File::open(&f).unwrap(),
            8192,
        )
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
                if !matches!(
                    field.data_type(),
                    DataType::Timestamp(TimeUnit::Microsecond, _)
                ) {
                    continue;
                }
                let ts = col.as_primitive::<TimestampMicrosecondType>();
                checked += ts.len() - ts.null_count();
                if let Some(min) = arrow::compute::min(ts)
                    && min < day
                {
                    return Some(format!("{rel}: {} = {min} < {day}", field.name()));
                }
            }
        }
    }
    assert!(checked > 0, "no rollup instants under {}", lake.display());
    None
}

/// Every row of every rollup table, in a fixed order, as text.
fn tables(engine: &Engine) -> Vec<String> {
    let rt = rt();
    rollup::TABLES
        .iter()
        .chain([&rollup::AGENT_STATUS])
        .map(|t| {
            let (schema, _) = rt
                .block_on(engine.sql(&format!("SELECT * FROM {t} LIMIT 0")))
                .unwrap();
            let order: Vec<String> = (1..=schema.fields().len()).map(|i| i.to_string()).collect();
            let (_, batches) = rt
                .block_on(engine.sql(&format!("SELECT * FROM {t} ORDER BY {}", order.join(", "))))
                .unwrap();
            format!(
                "{t}\n{}",
                arrow::util::pretty::pretty_format_batches(&batches).unwrap()
            )
        })
        .collect()
}

fn all_metrics(engine: &Engine) -> Vec<String> {
    let rt = rt();
    let config = config();
    let mut out = Vec::new();
    for &metric in Metric::ALL {
        let req = MetricRequest {
            metric,
            from: "2026-11-02T03:00:00Z".parse().unwrap(),
            to: "2026-11-06T03:00:00Z".parse().unwrap(),
            interval: Interval::Day,
            group_by: Some(Dimension::Team),
            tz: config.timezone,
            business_hours: metric.has_business_form(),
            filters: Filters::default(),
            now: "2026-11-05T15:00:00Z".parse().unwrap(),
            sla_metric: None,
        };
        let r = rt.block_on(metrics::run(engine, &req)).unwrap();
        out.push(serde_json::to_string(&r).unwrap());
    }
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    lines: Vec<(&'static str, String)>,
    tables: Vec<String>,
    metrics: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let gen_dir = dir.path().join("gen");
        common::generate(&gen_dir, 4, 30, 33);
        let mut lines = Vec::new();
        for source in ["agent-log", "whatsapp", "chatwoot"] {
            for f in common::walk(&gen_dir.join(source)) {
                for l in std::fs::read_to_string(f).unwrap().lines() {
                    lines.push((source, l.to_owned()));
                }
            }
        }
        // Customers who write without a conversation ever opening: sessions of loose
        // messages, split by a day of silence (customer 0 and 3 twice).
        let mut extra = Vec::new();
        for c in 0..6 {
            for (day, hour) in [(2, 10), (2, 11), (4, 9)].into_iter().skip(c % 3) {
                let line = format!(
                    r#"{{"id":"loose-{c}-{day}-{hour}","ts":"2026-11-0{day}T{hour}:{c:02}:00Z","type":"message.received","customer":"+551199900{c:04}","channel":"whatsapp"}}"#
                );
                lines.push(("agent-log", line.clone()));
                extra.push(line);
            }
        }
        // A message reported twice: loose under the customer's phone and, by another
        // source, inside a conversation under a contact id. When the second copy arrives
        // in a later chunk, the phone's session loses the message: a refresh has to find
        // that customer through the message id alone.
        for c in 0..2 {
            for line in [
                format!(
                    r#"{{"id":"loose-copy-{c}","ts":"2026-11-02T10:30:00Z","type":"message.received","customer":"+551199900{c:04}","channel":"whatsapp","message_id":"wamid-copy-{c}"}}"#
                ),
                format!(
                    r#"{{"id":"named-copy-{c}","ts":"2026-11-02T10:30:05Z","type":"message.received","customer":"contact-copy-{c}","channel":"whatsapp","conversation_id":"copy-conv-{c}","message_id":"wamid-copy-{c}"}}"#
                ),
            ] {
                lines.push(("agent-log", line.clone()));
                extra.push(line);
            }
        }
        let extra_file = dir.path().join("loose.jsonl");
        std::fs::write(&extra_file, extra.join("\n")).unwrap();
        // The reference: every event at once, computed from the events.
        let lake = dir.path().join("baseline");
        let mut all = common::source_files(&gen_dir);
        all.push(extra_file);
        ingest_files(&lake, &all);
        let engine = rt()
            .block_on(Engine::open_with(
                &LakePaths::new(&lake),
                config(),
                Rollups::Never,
            ))
            .unwrap();
        let tables = tables(&engine);
        let metrics = all_metrics(&engine);
        // The data must exercise linking: loose WhatsApp messages and sessions.
        let (_, b) = rt()
            .block_on(engine.sql(
                "SELECT count(*) FILTER (WHERE starts_with(conv, 'session:')), count(*) FROM conversation_links",
            ))
            .unwrap();
        let c = b[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        let n = b[0].column(1).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        assert!(c.value(0) > 0 && n.value(0) > c.value(0), "sessions {} of {} links", c.value(0), n.value(0));
        Fixture {
            _dir: dir,
            lines,
            tables,
            metrics,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn rollups_refreshed_chunk_by_chunk_equal_the_raw_computation(
        seed in any::<u64>(),
        duplicate_every in 3usize..9,
        chunks in 2usize..6,
        compact_after in 0usize..6,
    ) {
        let f = fixture();
        let mut lines = f.lines.clone();
        let mut next = common::xorshift(seed);
        common::shuffle(&mut lines, &mut next);
        let again: Vec<_> = lines.iter().step_by(duplicate_every).cloned().collect();
        lines.extend(again);
        // Random cut points: chunks of uneven size.
        let mut cuts: Vec<usize> = (1..chunks).map(|_| (next() % lines.len() as u64) as usize).collect();
        cuts.push(0);
        cuts.push(lines.len());
        cuts.sort();

        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let paths = LakePaths::new(&lake);
        let rt = rt();
        // The first refresh builds the rollups; a cut at 0 leaves the first chunk empty, so
        // that is not always the refresh after chunk 0.
        let mut refreshed = false;
        for (k, w) in cuts.windows(2).enumerate() {
            let mut files = Vec::new();
            for source in ["agent-log", "whatsapp", "chatwoot"] {
                let mine: Vec<&str> = lines[w[0]..w[1]]
                    .iter()
                    .filter(|(s, _)| *s == source)
                    .map(|(_, l)| l.as_str())
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let p = dir.path().join(format!("{k}-{source}.jsonl"));
                std::fs::write(&p, mine.join("\n")).unwrap();
                files.push(p);
            }
            if files.is_empty() {
                continue;
            }
            ingest_files(&lake, &files);
            if k == compact_after {
                compact_lake(&paths, &CompactOptions { grace: std::time::Duration::ZERO, ..CompactOptions::default() }, SystemTime::now()).unwrap();
            }
            let r = rt.block_on(rollup::refresh(&paths, config(), &RefreshOptions::default(), SystemTime::now(), |_, _| {})).unwrap();
            prop_assert_eq!(r.rebuilt, !refreshed, "refresh after chunk {}", k);
            refreshed = true;
        }
        let engine = rt.block_on(Engine::open(&paths, config())).unwrap();
        prop_assert!(engine.reads_rollups());
        let got = tables(&engine);
        for (g, b) in got.iter().zip(&f.tables) {
            prop_assert_eq!(g, b);
        }
        prop_assert_eq!(all_metrics(&engine), f.metrics.clone());
        prop_assert_eq!(instant_before_its_partition(&lake), None);

        // A rebuild from scratch gives the same tables again.
        let r = rt.block_on(rollup::refresh(&paths, config(), &RefreshOptions { rebuild: true, step_events: 3_000, ..RefreshOptions::default() }, SystemTime::now(), |_, _| {})).unwrap();
        prop_assert!(r.rebuilt && r.steps > 1);
        let engine = rt.block_on(Engine::open(&paths, config())).unwrap();
        prop_assert!(engine.reads_rollups());
        let got = tables(&engine);
        for (g, b) in got.iter().zip(&f.tables) {
            prop_assert_eq!(g, b);
        }
    }
}

#[test]
fn a_refresh_with_nothing_new_changes_nothing_and_a_new_configuration_rebuilds() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let gen_files: Vec<PathBuf> = {
        let p = dir.path().join("all.jsonl");
        let agent: Vec<&str> = f
            .lines
            .iter()
            .filter(|(s, _)| *s == "agent-log")
            .map(|(_, l)| l.as_str())
            .collect();
        std::fs::write(&p, agent.join("\n")).unwrap();
        vec![p]
    };
    let lake = dir.path().join("lake");
    let paths = LakePaths::new(&lake);
    ingest_files(&lake, &gen_files);
    let rt = rt();
    let first = rt
        .block_on(rollup::refresh(
            &paths,
            config(),
            &RefreshOptions::default(),
            SystemTime::now(),
            |_, _| {},
        ))
        .unwrap();
    assert!(first.rebuilt && first.conversations_recomputed > 0);
    let again = rt
        .block_on(rollup::refresh(
            &paths,
            config(),
            &RefreshOptions::default(),
            SystemTime::now(),
            |_, _| {},
        ))
        .unwrap();
    assert!(!again.rebuilt);
    assert_eq!(
        (again.new_files, again.steps, again.files_written),
        (0, 0, 0)
    );

    // Another calendar: the rollups no longer apply until rebuilt.
    let other = Arc::new(
        Config::from_toml_str(&CONFIG.replace("08:00-12:00", "07:00-12:00"), "other.toml").unwrap(),
    );
    let engine = rt
        .block_on(Engine::open(&paths, Arc::clone(&other)))
        .unwrap();
    assert!(!engine.reads_rollups());
    let r = rt
        .block_on(rollup::refresh(
            &paths,
            Arc::clone(&other),
            &RefreshOptions::default(),
            SystemTime::now(),
            |_, _| {},
        ))
        .unwrap();
    assert!(r.rebuilt);
    let engine = rt.block_on(Engine::open(&paths, other)).unwrap();
    assert!(engine.reads_rollups());
}
