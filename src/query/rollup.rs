//! Incremental rollups: the derived tables kept as Parquet beside `events`.
//!
//! Computing `conversations` from every event costs seconds per ten million events, and the
//! answer for last month does not change when today's events arrive. The tables of
//! [`TABLES`] are therefore materialized under `<lake>/<table>/date=D/<generation>.parquet`
//! (D = UTC day the conversation started; every row of a conversation sits in that one
//! partition) and listed by the manifest `<lake>/_rollup/state.json`
//! ([`crate::lake::rollup_state`]).
//!
//! # Refresh
//!
//! A refresh looks at the `events` files the manifest has not seen (new flushes, late events
//! in old partitions, merged files of partly unseen inputs) and recomputes only the
//! conversations they can change:
//!
//! 1. **Seeds**: the conversation ids, customer keys and ids of loose messages in the new
//!    files.
//! 2. **Closure** over all events: a conversation depends on all its events; a customer's
//!    loose WhatsApp messages link to that customer's conversations and sessions; a loose
//!    message is dropped when the same message was reported inside a conversation. So the
//!    set grows — events of the seeded conversations bring their customers, events of those
//!    customers bring their conversations, loose messages bring the conversations that hold
//!    a copy — until a round adds nothing.
//! 3. **Recompute** the views of `queries/views/` over just those events: the same SQL as
//!    the raw path, so the result is the same by construction, not by a second
//!    implementation.
//! 4. **Replace**: in each partition that held or now holds an affected conversation, the
//!    old rows of affected conversations are dropped and the new ones added, as a new file;
//!    then the manifest is replaced (one rename). Replaced files are deleted by a later
//!    refresh once the grace period is over.
//!
//! A rebuild (`--rebuild`, a new configuration fingerprint, or no manifest) starts from
//! empty tables and feeds every events file through the same steps, a bounded number of
//! events at a time, so memory stays bounded on a lake of any size.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::files::FilesTable;
use super::{Engine, QueryError, catalog};
use crate::config::Config;
use crate::lake::compact::event_partitions;
use crate::lake::rollup_state::{Retired, RollupState};
use crate::lake::writer::{data_files, file_name, list_dir, write_batches_file};
use crate::lake::{LakeError, LakePaths, PartitionDate};
use crate::sources::time::utc_day;

/// The materialized tables, in the order they are computed.
pub const TABLES: [&str; 6] = [
    "conversation_links",
    "conversations",
    "conversation_intervals",
    "conversation_owners",
    "conversation_messages",
    "sla_targets",
];

/// The materialized table that is not per conversation: each agent's status stretches,
/// from the `agent_status` events. It is small (a row per status change), so a refresh that
/// sees new status events recomputes it whole and rewrites the partitions (UTC day of
/// `from_ts`) whose content changed.
pub const AGENT_STATUS: &str = "agent_status_intervals";

/// Whether a view is read from the rollups when they are usable.
pub fn is_materialized(view: &str) -> bool {
    TABLES.contains(&view) || view == AGENT_STATUS
}

/// The column naming the conversation a row belongs to.
fn key_column(table: &str) -> &'static str {
    if table == "conversation_links" {
        "conv"
    } else {
        "conversation_id"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Invalid(String),
}

type Result<T, E = RollupError> = std::result::Result<T, E>;

/// What the rollup tables depend on besides the events: this version's view definitions and
/// the configuration they read (time zone, metric settings, calendars, SLA policies).
pub fn fingerprint(config: &Config) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    for (name, sql) in catalog::VIEWS {
        h.update(name.as_bytes());
        h.update(sql.as_bytes());
    }
    h.update(
        format!(
            "{:?}|{:?}|{:?}|{:?}",
            config.timezone, config.metrics, config.calendars, config.sla
        )
        .as_bytes(),
    );
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The live data files of every `events` partition (directory name → file names).
pub fn live_event_files(paths: &LakePaths) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for (date, dir) in event_partitions(paths)? {
        let names: BTreeSet<String> = data_files(&dir)?.iter().map(|p| file_name(p)).collect();
        if !names.is_empty() {
            out.insert(date.dir_name(), names);
        }
    }
    Ok(out)
}

/// The manifest, when the engine may read it (see [`super::Rollups`]). Problems are logged
/// and mean "compute from events".
pub(crate) fn usable_state(
    paths: &LakePaths,
    config: &Config,
    must_be_current: bool,
) -> Option<RollupState> {
    let state = match RollupState::load(paths) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            warn!(error = %e, "rollups not used");
            return None;
        }
    };
    if state.fingerprint != fingerprint(config) {
        info!(
            "rollups were computed with another configuration or version; computing from events until they are rebuilt"
        );
        return None;
    }
    if must_be_current {
        match live_event_files(paths) {
            Ok(live) if live == state.processed => {}
            Ok(_) => {
                info!(
                    "rollups are behind the events (run `supportlake rollup`); computing from events"
                );
                return None;
            }
            Err(e) => {
                warn!(error = %e, "rollups not used");
                return None;
            }
        }
    }
    Some(state)
}

/// A table over the manifest's files of `table` (or an empty one). Files retention has
/// dropped since the last refresh are left out.
pub(crate) async fn table_provider(
    ctx: &SessionContext,
    paths: &LakePaths,
    state: &RollupState,
    table: &str,
    schema: SchemaRef,
) -> Result<Arc<FilesTable>, QueryError> {
    let files = state
        .tables
        .get(table)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let provider = FilesTable::open(ctx, paths.root(), files, schema).await?;
    debug!(table, files = provider.file_count(), "rollup table");
    Ok(Arc::new(provider))
}

/// A table over explicit files (relative to `root`), no partition columns.
async fn files_table(
    ctx: &SessionContext,
    root: &Path,
    files: &[String],
    schema: SchemaRef,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    Ok(Arc::new(FilesTable::open(ctx, root, files, schema).await?))
}

/// Tunables of a refresh.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// Start from empty tables.
    pub rebuild: bool,
    /// Replaced rollup files are deleted once they have been out of the manifest this long.
    pub grace: Duration,
    /// New events taken per step (bounds memory).
    pub step_events: u64,
}

impl Default for RefreshOptions {
    fn default() -> Self {
        RefreshOptions {
            rebuild: false,
            grace: Duration::from_secs(600),
            step_events: 8_000_000,
        }
    }
}

/// What a refresh did.
#[derive(Debug, Default, Clone)]
pub struct RefreshReport {
    pub rebuilt: bool,
    pub steps: usize,
    pub new_files: usize,
    pub new_events: u64,
    /// Events the recomputed conversations hold (new and old).
    pub events_recomputed: u64,
    pub conversations_recomputed: u64,
    pub partitions_rewritten: usize,
    pub files_written: usize,
    pub files_deleted: usize,
    pub elapsed: Duration,
}

struct NewFile {
    partition: String,
    name: String,
    rows: u64,
}

/// Brings the rollup tables up to date with the events. The caller must be the lake's only
/// writer of rollups (the server's maintenance task or a command holding the lake lock).
/// `now` stamps the manifest and decides which grace periods are over; `progress` is told
/// (done, total) new events after each step.
pub async fn refresh(
    paths: &LakePaths,
    config: Arc<Config>,
    opts: &RefreshOptions,
    now: SystemTime,
    mut progress: impl FnMut(u64, u64),
) -> Result<RefreshReport> {
    let now_s = unix_seconds(now);
    let stamp = chrono::DateTime::<chrono::Utc>::from(now).to_rfc3339();
    let started = Instant::now();
    let fp = fingerprint(&config);
    let mut report = RefreshReport::default();
    let old = RollupState::load(paths)?;
    let mut state = match old {
        Some(s) if !opts.rebuild && s.fingerprint == fp => s,
        other => {
            report.rebuilt = true;
            let mut fresh = RollupState::new(fp);
            if let Some(o) = other {
                fresh.generation = o.generation;
                fresh.retired = o.retired.clone();
                let since = now_s;
                for f in o.live_files() {
                    fresh.retired.push(Retired {
                        path: f.to_owned(),
                        since,
                    });
                }
            }
            fresh
        }
    };

    // Forget rollup files that retention dropped.
    for files in state.tables.values_mut() {
        files.retain(|f| paths.root().join(f).is_file());
    }
    let live = live_event_files(paths)?;
    // Forget events files that are gone (merged, expired).
    for (part, names) in state.processed.iter_mut() {
        if let Some(l) = live.get(part) {
            names.retain(|n| l.contains(n));
        } else {
            names.clear();
        }
    }
    state.processed.retain(|_, v| !v.is_empty());

    let mut new_files = Vec::new();
    for (part, names) in &live {
        for name in names {
            if !state.processed.get(part).is_some_and(|s| s.contains(name)) {
                let path = paths.events().join(part).join(name);
                new_files.push(NewFile {
                    partition: part.clone(),
                    name: name.clone(),
                    rows: footer_rows(&path)?,
                });
            }
        }
    }
    report.new_files = new_files.len();
    report.new_events = new_files.iter().map(|f| f.rows).sum();

    if !new_files.is_empty() {
        let raw = Engine::open_with(paths, Arc::clone(&config), super::Rollups::Never).await?;
        // A refresh reads few rows of every events file (the affected conversations):
        // with the filters evaluated inside the Parquet reader, the other columns are
        // decoded only for the rows that pass (on a year of events, the read of a day's
        // affected conversations took 7.5 s without, 1.6 s with).
        {
            let state = raw.context().state_ref();
            let mut state = state.write();
            let parquet = &mut state.config_mut().options_mut().execution.parquet;
            parquet.pushdown_filters = true;
            parquet.reorder_filters = true;
        }
        let rel: Vec<String> = new_files
            .iter()
            .map(|f| format!("events/{}/{}", f.partition, f.name))
            .collect();
        let statuses_changed =
            report.rebuilt || has_agent_status(raw.context(), paths, &rel).await?;
        let mut done = 0;
        let mut step: Vec<NewFile> = Vec::new();
        let mut step_rows = 0;
        let mut files = new_files.into_iter().peekable();
        while let Some(f) = files.next() {
            step_rows += f.rows;
            step.push(f);
            let full = step_rows >= opts.step_events.max(1);
            if full || files.peek().is_none() {
                run_step(paths, &config, &raw, &mut state, &step, now_s, &mut report).await?;
                log_memory();
                state.refreshed_at = stamp.clone();
                state.save(paths)?;
                report.steps += 1;
                done += step_rows;
                progress(done, report.new_events);
                step.clear();
                step_rows = 0;
            }
        }
        if statuses_changed {
            let t = Instant::now();
            let written = refresh_agent_status(paths, &raw, &mut state, now_s).await?;
            report.files_written += written;
            state.refreshed_at = stamp.clone();
            state.save(paths)?;
            debug!(
                files = written,
                seconds = t.elapsed().as_secs_f64(),
                "agent status stretches recomputed"
            );
        }
    } else if report.rebuilt || Some(&state) != RollupState::load(paths)?.as_ref() {
        state.refreshed_at = stamp.clone();
        state.save(paths)?;
    }
    report.files_deleted = collect_garbage(paths, &mut state, opts.grace, now_s)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn unix_seconds(now: SystemTime) -> i64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn footer_rows(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| LakeError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| LakeError::parquet(path, e))?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Deletes retired files past the grace period and files of the rollup tables that no
/// manifest knows (left by a refresh that crashed before replacing the manifest).
fn collect_garbage(
    paths: &LakePaths,
    state: &mut RollupState,
    grace: Duration,
    now: i64,
) -> Result<usize> {
    let mut deleted = 0;
    let mut keep = Vec::new();
    for r in std::mem::take(&mut state.retired) {
        if now - r.since >= grace.as_secs() as i64 {
            let p = paths.root().join(&r.path);
            match std::fs::remove_file(&p) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LakeError::io(&p, e).into()),
            }
        } else {
            keep.push(r);
        }
    }
    state.retired = keep;
    let known: HashSet<String> = state
        .live_files()
        .into_iter()
        .map(str::to_owned)
        .chain(state.retired.iter().map(|r| r.path.clone()))
        .collect();
    for table in TABLES.iter().chain([&AGENT_STATUS]) {
        for dir in list_dir(&paths.table(table))? {
            if !dir.is_dir() {
                continue;
            }
            for f in list_dir(&dir)? {
                let rel = format!("{table}/{}/{}", file_name(&dir), file_name(&f));
                let stray_temp = file_name(&f).starts_with('.') && file_name(&f).ends_with(".tmp");
                if (rel.ends_with(".parquet") && !known.contains(&rel)) || stray_temp {
                    std::fs::remove_file(&f).map_err(|e| LakeError::io(&f, e))?;
                    deleted += 1;
                }
            }
            if list_dir(&dir)?.is_empty() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
    state.save(paths)?;
    Ok(deleted)
}

/// Whether any of the events files (relative to the lake root) holds an agent status event.
async fn has_agent_status(ctx: &SessionContext, paths: &LakePaths, rel: &[String]) -> Result<bool> {
    let table = files_table(ctx, paths.root(), rel, super::events_read_schema()).await?;
    ctx.register_table("_rollup_status", table)?;
    let found = ctx
        .sql("SELECT 1 FROM _rollup_status WHERE kind = 'agent_status' LIMIT 1")
        .await;
    let found = match found {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    };
    ctx.deregister_table("_rollup_status")?;
    Ok(found?.iter().any(|b| b.num_rows() > 0))
}

/// Recomputes [`AGENT_STATUS`] from every event and replaces the partitions whose content
/// changed. Partitions older than the oldest events partition are history (retention took
/// their events) and stay as they are. Returns the number of files written.
async fn refresh_agent_status(
    paths: &LakePaths,
    raw: &Engine,
    state: &mut RollupState,
    since: i64,
) -> Result<usize> {
    // A fixed row order, so equal content hashes equal.
    let (schema, batches) = raw
        .sql(&format!(
            "SELECT * FROM {AGENT_STATUS} ORDER BY from_ts, agent_id, to_ts, status, reason"
        ))
        .await?;
    let schema = plain_schema(&schema);
    let mut by_day: BTreeMap<i32, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches.iter().filter(|b| b.num_rows() > 0) {
        let b = plain_batch(b, &schema)?;
        let from = column(&b, "from_ts")?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| RollupError::Invalid("from_ts is not a timestamp".into()))?
            .clone();
        let mut idx: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
        for i in 0..b.num_rows() {
            idx.entry(utc_day(from.value(i)))
                .or_default()
                .push(i as u32);
        }
        for (d, rows) in idx {
            let taken =
                arrow::compute::take_record_batch(&b, &arrow::array::UInt32Array::from(rows))?;
            by_day.entry(d).or_default().push(taken);
        }
    }
    let converter = arrow::row::RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|f| arrow::row::SortField::new(f.data_type().clone()))
            .collect(),
    )?;
    let mut hashes: BTreeMap<i32, String> = BTreeMap::new();
    for (day, bs) in &by_day {
        let mut h = twox_hash::XxHash3_128::new();
        for b in bs {
            let rows = converter.convert_columns(b.columns())?;
            for r in rows.iter() {
                let bytes: &[u8] = r.as_ref();
                h.write(&(bytes.len() as u64).to_le_bytes());
                h.write(bytes);
            }
        }
        hashes.insert(*day, format!("{:032x}", h.finish_128()));
    }

    let oldest_events = state
        .processed
        .keys()
        .filter_map(|p| PartitionDate::parse_dir_name(p))
        .min();
    let files = state.tables.remove(AGENT_STATUS).unwrap_or_default();
    let mut current: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for f in files {
        current.entry(partition_of(&f)?.0).or_default().push(f);
    }
    let days: BTreeSet<i32> = current.keys().chain(by_day.keys()).copied().collect();
    let generation = state.generation + 1;
    let mut written = 0;
    let mut kept: Vec<String> = Vec::new();
    for day in days {
        let d = PartitionDate(day);
        let prefix = format!("{AGENT_STATUS}/{}", d.dir_name());
        let old = current.remove(&day).unwrap_or_default();
        let frozen = oldest_events.is_some_and(|o| d < o);
        let unchanged = !old.is_empty() && state.content.get(&prefix) == hashes.get(&day);
        if frozen || unchanged {
            kept.extend(old);
            continue;
        }
        for rel in old {
            state.retired.push(Retired { path: rel, since });
        }
        state.content.remove(&prefix);
        if let (Some(bs), Some(h)) = (by_day.get(&day), hashes.get(&day)) {
            let rel = format!("{prefix}/{generation:020}.parquet");
            write_batches_file(&paths.root().join(&rel), Arc::clone(&schema), bs)?;
            written += 1;
            kept.push(rel);
            state.content.insert(prefix, h.clone());
        }
    }
    kept.sort();
    if written > 0 {
        state.generation = generation;
    }
    if !kept.is_empty() {
        state.tables.insert(AGENT_STATUS.to_owned(), kept);
    }
    Ok(written)
}

/// Logs the process's resident memory after a step (the figure that bounds `--step-events`).
fn log_memory() {
    let rss_mb = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096 / (1 << 20));
    debug!(rss_mb, "memory after a rollup step");
}

/// A one-column table of keys for semi joins.
fn keys_table(keys: &HashSet<String>) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
    let array: ArrayRef = Arc::new(StringArray::from_iter_values(keys.iter()));
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![array])?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn strings(col: &ArrayRef) -> Result<StringArray> {
    let c = arrow::compute::cast(col, &DataType::Utf8)?;
    c.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| RollupError::Invalid("expected a string column".into()))
}

fn column<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| RollupError::Invalid(format!("column {name} missing")))
}

/// The distinct non-NULL strings of a one-column query.
async fn distinct(ctx: &SessionContext, sql: &str) -> Result<HashSet<String>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut out = HashSet::new();
    for b in &batches {
        let c = strings(b.column(0))?;
        out.extend(c.iter().flatten().map(str::to_owned));
    }
    Ok(out)
}

/// The keys a set of events touches: conversation ids, customer keys, ids of loose messages.
#[derive(Default)]
struct Keys {
    convs: HashSet<String>,
    customers: HashSet<String>,
    loose_messages: HashSet<String>,
}

impl Keys {
    fn is_empty(&self) -> bool {
        self.convs.is_empty() && self.customers.is_empty() && self.loose_messages.is_empty()
    }
}

/// One round of the closure in a single scan of every live events file: the customers
/// of the conversations in `delta`, the conversations and loose messages of its customers,
/// the conversations holding a copy of its loose messages, and the customers of loose
/// messages whose id is in `named` (messages a new event reports inside a conversation).
///
/// Read with the Parquet reader directly rather than through a query: `kind`,
/// `conversation_id` and `customer_key` come out as dictionaries, so each distinct value of
/// a row group is looked up once, and the files are read in parallel.
fn closure_round(paths: &LakePaths, delta: &Keys, named: &HashSet<String>) -> Result<Keys> {
    let mut files = Vec::new();
    for (part, names) in live_event_files(paths)? {
        for name in names {
            files.push(paths.events().join(&part).join(name));
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let sets = RoundSets {
        convs: fast(&delta.convs),
        customers: fast(&delta.customers),
        loose_messages: fast(&delta.loose_messages),
        named: fast(named),
    };
    let parts: Vec<Result<Keys>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let files: Vec<&PathBuf> = files.iter().skip(t).step_by(threads).collect();
                let sets = &sets;
                scope.spawn(move || {
                    let mut found = Keys::default();
                    for path in files {
                        scan_keys(path, sets, &mut found)?;
                    }
                    Ok(found)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(RollupError::Invalid("a scan thread panicked".into())))
            })
            .collect()
    });
    let mut found = Keys::default();
    for part in parts {
        let part = part?;
        found.convs.extend(part.convs);
        found.customers.extend(part.customers);
        found.loose_messages.extend(part.loose_messages);
    }
    Ok(found)
}

type FastSet<'a> = HashSet<&'a str, foldhash::fast::RandomState>;

fn fast(set: &HashSet<String>) -> FastSet<'_> {
    set.iter().map(String::as_str).collect()
}

/// The keys a closure round looks for.
struct RoundSets<'a> {
    convs: FastSet<'a>,
    customers: FastSet<'a>,
    loose_messages: FastSet<'a>,
    named: FastSet<'a>,
}

/// One file's part of [`closure_round`].
fn scan_keys(path: &Path, sets: &RoundSets<'_>, found: &mut Keys) -> Result<()> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int32Type;
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};

    const COLUMNS: [&str; 4] = ["kind", "conversation_id", "customer_key", "message_id"];
    let file = File::open(path).map_err(|e| LakeError::io(path, e))?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
        .map_err(|e| LakeError::parquet(path, e))?;
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let hint: Vec<Field> = meta
        .schema()
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "kind" | "conversation_id" | "customer_key" if f.data_type() == &DataType::Utf8 => {
                f.as_ref().clone().with_data_type(dictionary.clone())
            }
            "message_id" if f.data_type() == &DataType::Utf8 => {
                f.as_ref().clone().with_data_type(DataType::Utf8View)
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    let meta = ArrowReaderMetadata::try_new(
        Arc::clone(meta.metadata()),
        ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(hint))),
    )
    .map_err(|e| LakeError::parquet(path, e))?;
    let idx = COLUMNS
        .iter()
        .map(|n| {
            meta.schema()
                .index_of(n)
                .map_err(|_| RollupError::Invalid(format!("{}: no column {n}", path.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    let mask = parquet::arrow::ProjectionMask::roots(meta.parquet_schema(), idx);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| LakeError::parquet(path, e))?;
    let not_dictionary =
        |n: &str| RollupError::Invalid(format!("{}: {n} is not a string column", path.display()));
    for b in reader {
        let b = b.map_err(|e| LakeError::parquet(path, e.into()))?;
        let col = |n: &str| column(&b, n);
        let kind = col("kind")?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| not_dictionary("kind"))?;
        let conv = col("conversation_id")?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| not_dictionary("conversation_id"))?;
        let cust = col("customer_key")?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| not_dictionary("customer_key"))?;
        let msg = col("message_id")?
            .as_string_view_opt()
            .ok_or_else(|| not_dictionary("message_id"))?;
        let kind_values = kind
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| not_dictionary("kind"))?;
        let conv_values = conv
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| not_dictionary("conversation_id"))?;
        let cust_values = cust
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| not_dictionary("customer_key"))?;
        // Per dictionary value: 0 = not a conversation event, 1 = one, 2 = a customer
        // message (kinds as in CONVERSATION_KINDS and LOOSE).
        let kind_class: Vec<u8> = kind_values
            .iter()
            .map(|k| match k {
                None | Some("agent_status" | "message_status") => 0,
                Some("message_in" | "message_out") => 2,
                Some(_) => 1,
            })
            .collect();
        let in_set = |values: &StringArray, set: &FastSet<'_>| -> Vec<bool> {
            values
                .iter()
                .map(|v| v.is_some_and(|v| set.contains(v)))
                .collect()
        };
        let conv_hit = in_set(conv_values, &sets.convs);
        let cust_hit = in_set(cust_values, &sets.customers);
        let (kind_keys, conv_keys, cust_keys) = (kind.keys(), conv.keys(), cust.keys());
        for i in 0..b.num_rows() {
            let class = if kind_keys.is_valid(i) {
                kind_class[kind_keys.value(i) as usize]
            } else {
                0
            };
            if class == 0 {
                continue;
            }
            let c = conv_keys.is_valid(i).then(|| conv_keys.value(i) as usize);
            let k = cust_keys.is_valid(i).then(|| cust_keys.value(i) as usize);
            let m = msg.is_valid(i).then(|| msg.value(i));
            match (c, k) {
                (Some(c), Some(k)) => {
                    if conv_hit[c] {
                        found.customers.insert(cust_values.value(k).to_owned());
                    }
                    if cust_hit[k] {
                        found.convs.insert(conv_values.value(c).to_owned());
                    }
                }
                (None, Some(k)) if class == 2 => {
                    if let Some(m) = m {
                        if cust_hit[k] {
                            found.loose_messages.insert(m.to_owned());
                        }
                        if sets.named.contains(m) {
                            found.customers.insert(cust_values.value(k).to_owned());
                        }
                    }
                }
                _ => {}
            }
            if let (Some(c), Some(m)) = (c, m)
                && !sets.loose_messages.is_empty()
                && sets.loose_messages.contains(m)
            {
                found.convs.insert(conv_values.value(c).to_owned());
            }
        }
    }
    Ok(())
}

/// Customer messages a source reported without a conversation.
const LOOSE: &str = "AND conversation_id IS NULL AND kind IN ('message_in', 'message_out')";
const CONVERSATION_KINDS: &str = "kind NOT IN ('agent_status', 'message_status')";

async fn run_step(
    paths: &LakePaths,
    config: &Arc<Config>,
    raw: &Engine,
    state: &mut RollupState,
    step: &[NewFile],
    since: i64,
    report: &mut RefreshReport,
) -> Result<()> {
    let ctx = raw.context();
    // 1. Seeds from the new files alone: their conversations, customers and loose
    // messages, and the ids of the messages they report inside a conversation (whose loose
    // copies' customers the first closure round adds).
    let t0 = Instant::now();
    let rel: Vec<String> = step
        .iter()
        .map(|f| format!("events/{}/{}", f.partition, f.name))
        .collect();
    let new_events = files_table(ctx, paths.root(), &rel, super::events_read_schema()).await?;
    ctx.register_table("_rollup_new", new_events)?;
    let mut keys = Keys::default();
    let mut delta = Keys::default();
    let seeded = async {
        let new = |col: &str, cond: &str| {
            format!(
                "SELECT DISTINCT {col} FROM _rollup_new WHERE {CONVERSATION_KINDS} \
                   AND {col} IS NOT NULL {cond}"
            )
        };
        delta.convs = distinct(ctx, &new("conversation_id", "")).await?;
        delta.customers = distinct(ctx, &new("customer_key", "")).await?;
        delta.loose_messages = distinct(ctx, &new("message_id", LOOSE)).await?;
        let named = distinct(
            ctx,
            &new(
                "message_id",
                "AND conversation_id IS NOT NULL AND kind IN ('message_in', 'message_out')",
            ),
        )
        .await?;
        Ok::<_, RollupError>(named)
    }
    .await;
    ctx.deregister_table("_rollup_new")?;
    let mut named = seeded?;
    let t_seeds = t0.elapsed();

    // 2. Closure over every event, one scan per round: customers of the conversations,
    // conversations and loose messages of the customers, conversations holding a copy of a
    // loose message; in the first round also the customers whose loose copy of a message
    // a new event now reports inside a conversation.
    let mut rounds = 0;
    while !delta.is_empty() || !named.is_empty() {
        rounds += 1;
        keys.convs.extend(delta.convs.iter().cloned());
        keys.customers.extend(delta.customers.iter().cloned());
        keys.loose_messages
            .extend(delta.loose_messages.iter().cloned());
        let found = closure_round(paths, &delta, &named)?;
        named.clear();
        delta = Keys {
            convs: found
                .convs
                .into_iter()
                .filter(|c| !keys.convs.contains(c))
                .collect(),
            customers: found
                .customers
                .into_iter()
                .filter(|c| !keys.customers.contains(c))
                .collect(),
            loose_messages: found
                .loose_messages
                .into_iter()
                .filter(|m| !keys.loose_messages.contains(m))
                .collect(),
        };
    }
    let t_closure = t0.elapsed() - t_seeds;

    // 3. The events of the affected conversations and customers, and the views over them.
    ctx.register_table("_rollup_c", keys_table(&keys.convs)?)?;
    ctx.register_table("_rollup_k", keys_table(&keys.customers)?)?;
    let subset = ctx
        .sql(&format!(
            "SELECT * FROM events WHERE {CONVERSATION_KINDS} \
               AND conversation_id IN (SELECT k FROM _rollup_c) \
             UNION ALL SELECT * FROM events WHERE {CONVERSATION_KINDS} \
               AND conversation_id IS NULL AND customer_key IN (SELECT k FROM _rollup_k)"
        ))
        .await?;
    // Kept as plain strings: a string view of a filtered row keeps the whole decoded page
    // it points into alive, and a step keeps millions of such rows until its views ran.
    let subset_schema = super::without_string_views(subset.schema().as_arrow());
    // Filtered inside the Parquet reader, the rows come in many small batches; the views
    // run over them several times, so they are joined into batches of the session's size.
    let batch_rows = ctx.copied_config().batch_size().max(1);
    let mut read_batches = 0usize;
    let subset = async {
        let mut stream = subset.execute_stream().await?;
        let mut out = Vec::new();
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut pending_rows = 0;
        let flush = |pending: &mut Vec<RecordBatch>, out: &mut Vec<RecordBatch>| {
            if !pending.is_empty() {
                out.push(arrow::compute::concat_batches(
                    &subset_schema,
                    pending.iter(),
                )?);
                pending.clear();
            }
            Ok::<_, RollupError>(())
        };
        while let Some(b) = futures::StreamExt::next(&mut stream).await {
            let b = plain_batch(&b?, &subset_schema)?;
            read_batches += 1;
            pending_rows += b.num_rows();
            pending.push(b);
            if pending_rows >= batch_rows {
                flush(&mut pending, &mut out)?;
                pending_rows = 0;
            }
        }
        flush(&mut pending, &mut out)?;
        Ok::<_, RollupError>(out)
    }
    .await;
    ctx.deregister_table("_rollup_c")?;
    ctx.deregister_table("_rollup_k")?;
    let subset = subset?;
    report.events_recomputed += subset.iter().map(|b| b.num_rows() as u64).sum::<u64>();
    let t_subset = t0.elapsed() - t_seeds - t_closure;
    let parts = ctx.copied_config().target_partitions().max(1);
    let mut split: Vec<Vec<RecordBatch>> = vec![Vec::new(); parts];
    for (i, b) in subset.into_iter().enumerate() {
        split[i % parts].push(b);
    }
    let events = MemTable::try_new(subset_schema, split)?;
    let sub = Engine::over_events(Arc::new(events), Arc::clone(config)).await?;
    let mut fresh: BTreeMap<&str, (SchemaRef, Vec<RecordBatch>)> = BTreeMap::new();
    for table in TABLES {
        let (schema, batches) = sub.sql(&format!("SELECT * FROM {table}")).await?;
        let schema = plain_schema(&schema);
        let batches = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| plain_batch(b, &schema))
            .collect::<Result<Vec<_>>>()?;
        fresh.insert(table, (schema, batches));
    }
    drop(sub);
    let t_views = t0.elapsed() - t_seeds - t_closure - t_subset;

    // Start day of each recomputed conversation.
    let mut start_day: HashMap<String, i32> = HashMap::new();
    for b in &fresh["conversations"].1 {
        let ids = strings(column(b, "conversation_id")?)?;
        let started = column(b, "started_at")?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| RollupError::Invalid("started_at is not a timestamp".into()))?
            .clone();
        for i in 0..b.num_rows() {
            start_day.insert(ids.value(i).to_owned(), utc_day(started.value(i)));
        }
    }
    report.conversations_recomputed += start_day.len() as u64;

    // 4. The old rows to replace: affected conversations of the current tables. Partitions
    // older than the oldest events left (retention may keep rollups longer than events) are
    // history: their conversations can no longer be recomputed, so only a row of a
    // conversation recomputed now leaves them.
    let oldest_events = state
        .processed
        .keys()
        .chain(step.iter().map(|f| &f.partition))
        .filter_map(|p| PartitionDate::parse_dir_name(p))
        .min();
    let mut replaced: HashSet<String> = start_day.keys().cloned().collect();
    let mut days: BTreeSet<i32> = start_day.values().copied().collect();
    for rel in state
        .tables
        .get("conversations")
        .cloned()
        .unwrap_or_default()
    {
        let path = paths.root().join(&rel);
        let day = partition_of(&rel)?;
        let frozen = oldest_events.is_some_and(|o| day < o);
        for b in read_columns(&path, &["conversation_id", "customer_key"])? {
            let ids = strings(b.column(0))?;
            let cust = strings(b.column(1))?;
            for i in 0..b.num_rows() {
                let id = ids.value(i);
                let affected = if frozen {
                    start_day.contains_key(id)
                } else {
                    keys.convs.contains(id)
                        || (cust.is_valid(i) && keys.customers.contains(cust.value(i)))
                };
                if affected {
                    replaced.insert(id.to_owned());
                    days.insert(day.0);
                }
            }
        }
    }

    state.generation += 1;
    let generation = state.generation;
    for table in TABLES {
        let (schema, batches) = &fresh[table];
        let key = key_column(table);
        // New rows by day.
        let mut by_day: BTreeMap<i32, Vec<RecordBatch>> = BTreeMap::new();
        for b in batches {
            let ids = strings(column(b, key)?)?;
            let mut idx: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
            for i in 0..b.num_rows() {
                let d = start_day.get(ids.value(i)).copied().ok_or_else(|| {
                    RollupError::Invalid(format!(
                        "{table} has a row for conversation {} that conversations does not",
                        ids.value(i)
                    ))
                })?;
                idx.entry(d).or_default().push(i as u32);
            }
            for (d, rows) in idx {
                let taken =
                    arrow::compute::take_record_batch(b, &arrow::array::UInt32Array::from(rows))?;
                by_day.entry(d).or_default().push(taken);
            }
        }
        let files = state.tables.entry(table.to_owned()).or_default();
        for &day in &days {
            let d = PartitionDate(day);
            let prefix = format!("{table}/{}/", d.dir_name());
            let (old, rest): (Vec<String>, Vec<String>) =
                files.drain(..).partition(|f| f.starts_with(&prefix));
            *files = rest;
            let mut out: Vec<RecordBatch> = Vec::new();
            let mut removed: Vec<RecordBatch> = Vec::new();
            for rel in &old {
                for b in read_columns(&paths.root().join(rel), &[])? {
                    let b = plain_batch(&b, schema)?;
                    let ids = strings(column(&b, key)?)?;
                    let keep: BooleanArray = (0..b.num_rows())
                        .map(|i| Some(!replaced.contains(ids.value(i))))
                        .collect();
                    let kept = arrow::compute::filter_record_batch(&b, &keep)?;
                    if kept.num_rows() > 0 {
                        out.push(kept);
                    }
                    let gone =
                        arrow::compute::filter_record_batch(&b, &arrow::compute::not(&keep)?)?;
                    if gone.num_rows() > 0 {
                        removed.push(gone);
                    }
                }
            }
            let added = by_day.remove(&day).unwrap_or_default();
            // Most recomputed conversations come out as they were (a customer's old
            // conversations are recomputed whenever she writes again): a partition whose
            // replaced rows equal its new rows keeps its file, so the refresh writes only
            // what changed and readers keep their cached footers.
            if !old.is_empty() && same_rows(schema, &removed, &added)? {
                files.extend(old);
                continue;
            }
            for rel in &old {
                state.retired.push(Retired {
                    path: rel.clone(),
                    since,
                });
            }
            report.partitions_rewritten += 1;
            out.extend(added);
            if out.iter().map(|b| b.num_rows()).sum::<usize>() > 0 {
                let rel = format!("{prefix}{generation:020}.parquet");
                write_batches_file(&paths.root().join(&rel), Arc::clone(schema), &out)?;
                report.files_written += 1;
                files.push(rel);
            }
        }
        files.sort();
    }
    debug!(
        files = step.len(),
        rounds,
        conversations = start_day.len(),
        seeds_s = t_seeds.as_secs_f64(),
        closure_s = t_closure.as_secs_f64(),
        subset_s = t_subset.as_secs_f64(),
        subset_batches = read_batches,
        views_s = t_views.as_secs_f64(),
        write_s = (t0.elapsed() - t_seeds - t_closure - t_subset - t_views).as_secs_f64(),
        "rollup step"
    );
    for f in step {
        state
            .processed
            .entry(f.partition.clone())
            .or_default()
            .insert(f.name.clone());
    }
    Ok(())
}

/// Whether two sets of rows of one schema hold the same rows, in any order.
fn same_rows(schema: &SchemaRef, a: &[RecordBatch], b: &[RecordBatch]) -> Result<bool> {
    let count = |x: &[RecordBatch]| x.iter().map(|b| b.num_rows()).sum::<usize>();
    if count(a) != count(b) {
        return Ok(false);
    }
    let fields = schema
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = |x: &[RecordBatch]| -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(count(x));
        for batch in x {
            let rows = converter.convert_columns(batch.columns())?;
            out.extend(rows.iter().map(|r| r.as_ref().to_vec()));
        }
        out.sort_unstable();
        Ok(out)
    };
    Ok(rows(a)? == rows(b)?)
}

/// The partition of a rollup file path `table/date=D/name`.
fn partition_of(rel: &str) -> Result<PartitionDate> {
    rel.split('/')
        .nth(1)
        .and_then(PartitionDate::parse_dir_name)
        .ok_or_else(|| RollupError::Invalid(format!("{rel}: not a rollup partition path")))
}

/// Reads a Parquet file, all columns or the named ones (in that order).
fn read_columns(path: &PathBuf, names: &[&str]) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|e| LakeError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| LakeError::parquet(path, e))?;
    let schema = Arc::clone(builder.schema());
    let builder = if names.is_empty() {
        builder
    } else {
        let idx = names
            .iter()
            .map(|n| {
                schema
                    .index_of(n)
                    .map_err(|_| RollupError::Invalid(format!("{}: no column {n}", path.display())))
            })
            .collect::<Result<Vec<_>>>()?;
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), idx.clone());
        builder.with_projection(mask)
    };
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| LakeError::parquet(path, e))?;
    let mut out = Vec::new();
    for b in reader {
        let b = b?;
        if names.is_empty() {
            out.push(b);
        } else {
            // The projection keeps file order; put the columns in the asked order.
            let cols = names
                .iter()
                .map(|n| {
                    b.column_by_name(n).cloned().ok_or_else(|| {
                        RollupError::Invalid(format!("{}: no column {n}", path.display()))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let fields: Vec<Field> = names
                .iter()
                .zip(&cols)
                .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
                .collect();
            out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?);
        }
    }
    Ok(out)
}

/// The schema as stored: string views become plain strings (every reader knows those), and
/// every column nullable.
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                    t => t.clone(),
                };
                Field::new(f.name(), t, true)
            })
            .collect::<Vec<_>>(),
    ))
}

fn plain_batch(b: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| {
            let c = column(b, f.name())?;
            Ok(if c.data_type() == f.data_type() {
                Arc::clone(c)
            } else {
                arrow::compute::cast(c, f.data_type())?
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), cols)?)
}
