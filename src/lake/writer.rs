//! The lake writer: batches of events in, crash-safe, deduplicated Parquet partitions out.
//!
//! ```text
//! append(batch) ─► per row: UTC day of ts, hash of event_id
//!               ─► drop ids already in that day's partition (on disk or pending) ─► pending rows per day
//!               ─► a day with enough rows, or memory over budget ─► write_partition_file
//! write_partition_file: sort by ts ─► .<name>.tmp ─► fsync ─► re-read footer ─► rename ─► fsync dir
//! ```
//!
//! **Deduplication.** An event's partition is the UTC day of its `ts`, and a re-sent event
//! has the same `ts`, so a duplicate can only ever meet its original inside one partition.
//! The writer keeps the set of event-id hashes of every partition it touched (loaded on
//! first touch by reading only the `event_id` column of the partition's files) and drops
//! rows whose id is already there. Hashes are 128-bit xxh3: at a billion events the chance
//! that two different ids collide is below 10⁻²⁰.
//!
//! **Crash safety.** A data file becomes visible only by `rename` after its bytes and
//! footer are durable, so a crash at any instant leaves either the whole file or nothing
//! under a name readers list. The id sets are rebuilt from the committed files, so a
//! replay after a crash adds only what was not committed.
//!
//! **A failed write changes nothing.** When a file cannot be written (a full disk, a
//! directory that cannot be created), its rows stay pending and their ids stay in the set,
//! exactly as before the attempt, so a later write or flush takes them; the temp file is
//! removed. A writer whose owner retries (the server's log flusher) never loses a row to a
//! failure, and never mistakes its own pending rows for duplicates.
//!
//! **A damaged file stops nothing.** A committed file whose ids cannot be read because its
//! bytes are damaged is moved aside ([`super::damage`]) and the partition goes on without it.
//!
//! Only one writer may own a lake at a time; see [`super::LakeLock`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::{interleave_record_batch, take_record_batch};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnPath;
use tracing::{debug, info};

use super::paths::{DataFileName, EVENTS, LakePaths, PartitionDate};
use super::{LakeError, Result};
use crate::event::{self, col};
use crate::sources::time::utc_day;

/// Tunables of the writer. The defaults keep an ingest of any size under ~256 MB.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// A partition's pending rows are written once they reach this many.
    pub target_file_rows: usize,
    /// Pending rows of all partitions together may hold this much memory before the largest
    /// are written early.
    pub pending_bytes_budget: usize,
    /// Row groups are cut when their encoded size estimate reaches this.
    pub row_group_bytes: usize,
    /// Memory allowed for the id sets of partitions that have nothing pending.
    pub id_cache_bytes: usize,
    /// ZSTD level: 1 writes fastest; higher levels trade speed for smaller files.
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            target_file_rows: 2_000_000,
            pending_bytes_budget: 48 << 20,
            row_group_bytes: 32 << 20,
            id_cache_bytes: 32 << 20,
            zstd_level: 1,
        }
    }
}

/// What one `append` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub accepted: u64,
    /// Rows whose event id was already in the lake or earlier in this writer's input.
    pub duplicates: u64,
}

/// A committed data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub partition: PartitionDate,
    pub rows: u64,
    pub bytes: u64,
}

/// Hashes are already uniformly distributed; hashing them again would only cost time.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type IdSet = HashSet<u128, BuildHasherDefault<IdentityHasher>>;

/// Bytes an id set slot costs: the 16-byte hash and a control byte, over the 7/8 of slots
/// a table fills before it grows.
const ID_SLOT_BYTES: usize = 20;

/// The hash that identifies an event id in the dedupe sets.
pub fn id_hash(event_id: &str) -> u128 {
    twox_hash::XxHash3_128::oneshot_with_seed(0x5375_7070_6f72_746c, event_id.as_bytes())
}

#[derive(Default)]
struct Pending {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    first_seq: u64,
    last_seq: u64,
}

struct PartitionState {
    ids: IdSet,
    pending: Pending,
    last_used: u64,
}

/// Writes the `events` table. See the module docs.
pub struct LakeWriter {
    paths: LakePaths,
    opts: WriterOptions,
    props: Arc<WriterProperties>,
    next_seq: u64,
    partitions: HashMap<PartitionDate, PartitionState>,
    pending_bytes: usize,
    clock: u64,
    written: Vec<WrittenFile>,
}

impl LakeWriter {
    /// Opens the writer; scans the committed file names to continue the sequence numbers and
    /// removes temp files left by a crash (they were never visible, and their rows were
    /// never acknowledged as committed).
    pub fn open(paths: LakePaths, opts: WriterOptions) -> Result<Self> {
        let events = paths.events();
        fs::create_dir_all(&events).map_err(|e| LakeError::io(&events, e))?;
        let mut max_seq = 0;
        for dir in list_dir(&events)? {
            let name = file_name(&dir);
            if PartitionDate::parse_dir_name(&name).is_none() || !dir.is_dir() {
                continue;
            }
            for file in list_dir(&dir)? {
                let name = file_name(&file);
                if let Some(f) = DataFileName::parse(&name) {
                    max_seq = max_seq.max(f.last_seq);
                } else if name.starts_with('.') && name.ends_with(".tmp") {
                    fs::remove_file(&file).map_err(|e| LakeError::io(&file, e))?;
                    info!(path = %file.display(), "removed an uncommitted temp file left by an interrupted write");
                }
            }
        }
        let props = data_file_properties(&opts)?;
        Ok(LakeWriter {
            paths,
            opts,
            props: Arc::new(props),
            next_seq: max_seq + 1,
            partitions: HashMap::new(),
            pending_bytes: 0,
            clock: 0,
            written: Vec::new(),
        })
    }

    /// The sequence number the next accepted row gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Files committed since the writer was opened.
    pub fn written(&self) -> &[WrittenFile] {
        &self.written
    }

    /// Rows accepted but not yet in a committed file.
    pub fn pending_rows(&self) -> usize {
        self.partitions.values().map(|p| p.pending.rows).sum()
    }

    /// Drops the event-id sets of partitions with nothing pending, so they are read again
    /// from the files on next use. For after the files changed beneath the writer (an
    /// erasure rewrote them, retention dropped them).
    pub fn forget_ids(&mut self) {
        self.partitions.retain(|_, s| s.pending.rows > 0);
    }

    /// Adds a batch of [`event::schema`] rows. Rows whose event id is already in the lake (or
    /// earlier in this batch) are dropped. Accepted rows are durable only after
    /// [`Self::flush`] (or when the writer decides to write their partition).
    pub fn append(&mut self, batch: &RecordBatch) -> Result<AppendOutcome> {
        if batch.num_rows() == 0 {
            return Ok(AppendOutcome::default());
        }
        if batch.schema().fields() != event::schema().fields() {
            return Err(LakeError::Schema(
                "batch does not have the events schema".into(),
            ));
        }
        let ids = string_column(batch, col::EVENT_ID)?;
        let ts = batch
            .column_by_name(col::TS)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| LakeError::Schema("ts column missing".into()))?;

        // Group row indices by partition, keeping input order within each.
        let mut groups: BTreeMap<PartitionDate, Vec<u32>> = BTreeMap::new();
        for i in 0..batch.num_rows() {
            groups
                .entry(PartitionDate(utc_day(ts.value(i))))
                .or_default()
                .push(i as u32);
        }
        // A day that fails (its ids cannot be read, its file cannot be written) keeps its
        // state as before and the other days go on; the first error is returned at the end.
        let mut outcome = AppendOutcome::default();
        let mut first_error = None;
        for (date, rows) in groups {
            match self.add_rows(date, rows, batch, ids) {
                Ok(n) => outcome.accepted += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        outcome.duplicates = batch.num_rows() as u64 - outcome.accepted;
        let mut unwritable = std::collections::HashSet::new();
        while self.pending_bytes > self.opts.pending_bytes_budget {
            let largest = self
                .partitions
                .iter()
                .filter(|(d, s)| s.pending.rows > 0 && !unwritable.contains(*d))
                .max_by_key(|(_, s)| s.pending.bytes)
                .map(|(d, _)| *d);
            let Some(d) = largest else { break };
            if let Err(e) = self.write_partition(d) {
                unwritable.insert(d);
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.evict_id_sets() {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(outcome), Err)
    }

    /// Adds the rows of `batch` at `rows` (all of day `date`) that are new; answers how
    /// many. Their ids join the day's set only once the rows are pending.
    fn add_rows(
        &mut self,
        date: PartitionDate,
        rows: Vec<u32>,
        batch: &RecordBatch,
        ids: &StringArray,
    ) -> Result<u64> {
        self.touch(date)?;
        let state = self
            .partitions
            .get_mut(&date)
            .unwrap_or_else(|| unreachable!("touch() loads the partition"));
        let mut kept = Vec::with_capacity(rows.len());
        let mut hashes = Vec::with_capacity(rows.len());
        for i in rows {
            let h = id_hash(ids.value(i as usize));
            if state.ids.insert(h) {
                kept.push(i);
                hashes.push(h);
            }
        }
        if kept.is_empty() {
            return Ok(0);
        }
        let n = kept.len();
        let taken = if n == batch.num_rows() {
            // The whole batch, in order: share it instead of copying.
            Ok(batch.clone())
        } else {
            take_record_batch(batch, &UInt32Array::from(kept))
        };
        let taken = match taken {
            Ok(t) => t,
            Err(e) => {
                // The rows are not pending after all: neither are their ids.
                for h in &hashes {
                    state.ids.remove(h);
                }
                return Err(e.into());
            }
        };
        let bytes = taken.get_array_memory_size();
        let p = &mut state.pending;
        if p.rows == 0 {
            p.first_seq = self.next_seq;
        }
        p.last_seq = self.next_seq + n as u64 - 1;
        self.next_seq += n as u64;
        p.rows += n;
        p.bytes += bytes;
        p.batches.push(taken);
        self.pending_bytes += bytes;
        if p.rows >= self.opts.target_file_rows {
            // A failure leaves the rows pending: they are not lost, only not written yet.
            self.write_partition(date)?;
        }
        Ok(n as u64)
    }

    /// Writes every pending row. After it returns `Ok`, everything appended is committed.
    /// A day that fails to write keeps its rows pending and the other days are still
    /// written; the first error is returned.
    pub fn flush(&mut self) -> Result<()> {
        let mut dates: Vec<PartitionDate> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.pending.rows > 0)
            .map(|(d, _)| *d)
            .collect();
        dates.sort();
        let mut first_error = None;
        for d in dates {
            if let Err(e) = self.write_partition(d) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Loads a partition's id set if it is not in memory, and marks it recently used.
    fn touch(&mut self, date: PartitionDate) -> Result<()> {
        self.clock += 1;
        if let Some(s) = self.partitions.get_mut(&date) {
            s.last_used = self.clock;
            return Ok(());
        }
        let dir = self.paths.partition(EVENTS, date);
        let ids = load_ids(&self.paths, &dir)?;
        debug!(partition = %date, ids = ids.len(), "loaded partition ids");
        self.partitions.insert(
            date,
            PartitionState {
                ids,
                pending: Pending::default(),
                last_used: self.clock,
            },
        );
        Ok(())
    }

    /// Keeps the id sets within their memory budget: the least recently used partitions are
    /// written out (if they have pending rows) and their id sets dropped; a partition touched
    /// again reloads its ids from its files. The partition used last always stays, so one
    /// very large day is reloaded at most once per write.
    fn evict_id_sets(&mut self) -> Result<()> {
        loop {
            let total: usize = self
                .partitions
                .values()
                .map(|s| s.ids.capacity() * ID_SLOT_BYTES)
                .sum();
            if total <= self.opts.id_cache_bytes || self.partitions.len() <= 1 {
                return Ok(());
            }
            let newest = self.partitions.values().map(|s| s.last_used).max();
            let oldest = self
                .partitions
                .iter()
                .filter(|(_, s)| Some(s.last_used) != newest)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(d, _)| *d);
            let Some(d) = oldest else {
                return Ok(());
            };
            self.write_partition(d)?;
            self.partitions.remove(&d);
        }
    }

    fn write_partition(&mut self, date: PartitionDate) -> Result<()> {
        let Some(state) = self.partitions.get_mut(&date) else {
            return Ok(());
        };
        let pending = std::mem::take(&mut state.pending);
        if pending.rows == 0 {
            return Ok(());
        }
        self.pending_bytes -= pending.bytes;
        let name = DataFileName {
            first_seq: pending.first_seq,
            last_seq: pending.last_seq,
        };
        let dir = self.paths.partition(EVENTS, date);
        let result = SortedSlices::new(&pending.batches).and_then(|mut slices| {
            write_file(&dir, name, pending.rows, self.props.clone(), || {
                slices.next()
            })
        });
        let written = match result {
            Ok(w) => w,
            Err(e) => {
                // Nothing was committed: the rows stay pending (their ids stay in the set,
                // which is right, since they are still on their way), so a later write
                // takes them. Dropping them here would lose acknowledged events, because a
                // replay of the log would then find their ids and skip them.
                self.pending_bytes += pending.bytes;
                if let Some(state) = self.partitions.get_mut(&date) {
                    state.pending = pending;
                }
                return Err(e);
            }
        };
        drop(pending);
        info!(partition = %date, rows = written.rows, bytes = written.bytes, file = %written.path.display(), "committed data file");
        self.written.push(WrittenFile {
            partition: date,
            ..written
        });
        Ok(())
    }
}

/// The Parquet settings of every `events` data file.
pub(crate) fn data_file_properties(opts: &WriterOptions) -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(opts.zstd_level).map_err(|e| LakeError::Options(e.to_string()))?,
        ))
        .set_max_row_group_bytes(Some(opts.row_group_bytes.max(1)))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_statistics_enabled(EnabledStatistics::Page)
        // Unique per row: a dictionary would only cost time and then be abandoned.
        .set_column_dictionary_enabled(ColumnPath::from(col::EVENT_ID), false)
        .set_column_dictionary_enabled(ColumnPath::from(col::MESSAGE_ID), false)
        .set_created_by(format!("supportlake {}", env!("CARGO_PKG_VERSION")))
        .build())
}

fn string_column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| LakeError::Schema(format!("{name} column missing or not a string")))
}

/// Rows to write in slices of this many.
const SLICE_ROWS: usize = 64 * 1024;

/// Hands out the rows of several batches in `ts` order, a slice at a time, so a file is
/// written without first copying all its rows into one sorted batch. Input that is already
/// in order (the usual case) is passed through without copying at all.
pub(crate) struct SortedSlices<'b> {
    batches: &'b [RecordBatch],
    /// (batch, row) in ts order, when the input is not already sorted.
    order: Option<Vec<(usize, usize)>>,
    /// Position: batch and row for in-order input, index into `order` otherwise.
    batch: usize,
    row: usize,
}

impl<'b> SortedSlices<'b> {
    pub(crate) fn new(batches: &'b [RecordBatch]) -> Result<Self> {
        let ts: Vec<&TimestampMicrosecondArray> = batches
            .iter()
            .map(|b| {
                b.column_by_name(col::TS)
                    .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
                    .ok_or_else(|| LakeError::Schema("ts column missing".into()))
            })
            .collect::<Result<_>>()?;
        let in_order = ts.iter().flat_map(|a| a.values().iter()).is_sorted();
        let order = (!in_order).then(|| {
            let mut idx: Vec<(usize, usize)> = ts
                .iter()
                .enumerate()
                .flat_map(|(b, a)| (0..a.len()).map(move |r| (b, r)))
                .collect();
            idx.sort_by_key(|&(b, r)| ts[b].value(r));
            idx
        });
        Ok(SortedSlices {
            batches,
            order,
            batch: 0,
            row: 0,
        })
    }

    pub(crate) fn next(&mut self) -> Result<Option<RecordBatch>> {
        match &self.order {
            None => {
                while let Some(b) = self.batches.get(self.batch) {
                    if self.row < b.num_rows() {
                        let len = SLICE_ROWS.min(b.num_rows() - self.row);
                        let out = b.slice(self.row, len);
                        self.row += len;
                        return Ok(Some(out));
                    }
                    self.batch += 1;
                    self.row = 0;
                }
                Ok(None)
            }
            Some(order) => {
                if self.row >= order.len() {
                    return Ok(None);
                }
                let end = (self.row + SLICE_ROWS).min(order.len());
                let refs: Vec<&RecordBatch> = self.batches.iter().collect();
                let out = interleave_record_batch(&refs, &order[self.row..end])?;
                self.row = end;
                Ok(Some(out))
            }
        }
    }
}

pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut out = Vec::new();
            for entry in rd {
                out.push(entry.map_err(|e| LakeError::io(dir, e))?.path());
            }
            out.sort();
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(LakeError::io(dir, e)),
    }
}

pub(crate) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Committed data files of a partition directory that readers see (files covered by a
/// compacted file are left out), in name (= write) order.
pub fn data_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let names: Vec<DataFileName> = list_dir(dir)?
        .iter()
        .filter_map(|p| DataFileName::parse(&file_name(p)))
        .collect();
    let (live, _) = super::paths::live_and_covered(&names);
    Ok(live.iter().map(|n| dir.join(n.file_name())).collect())
}

/// Reads the event-id hashes of every committed file of a partition. A damaged file is
/// moved aside ([`super::damage`]) and its ids left out, so it stops nothing: the
/// partition takes new rows, and a re-delivery of the rows it held is accepted again.
fn load_ids(paths: &LakePaths, dir: &Path) -> Result<IdSet> {
    let mut ids = IdSet::default();
    for path in data_files(dir)? {
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| file_ids(&path)));
        let why = match read {
            Ok(Ok(file)) => {
                ids.reserve(file.len());
                ids.extend(file);
                continue;
            }
            Ok(Err(LakeError::Parquet { source, .. })) if super::damage::is_damage(&source) => {
                source.to_string()
            }
            Ok(Err(LakeError::Schema(why))) => why,
            Ok(Err(e)) => return Err(e),
            Err(panic) => format!(
                "the Parquet reader gave up on it: {}",
                super::damage::panic_text(&panic)
            ),
        };
        super::damage::quarantine(paths, &path, &why, std::time::SystemTime::now())?;
    }
    Ok(ids)
}

/// The event-id hashes of one data file.
fn file_ids(path: &Path) -> Result<Vec<u128>> {
    let file = File::open(path).map_err(|e| LakeError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| LakeError::parquet(path, e))?;
    let leaf = builder
        .schema()
        .index_of(col::EVENT_ID)
        .map_err(|_| LakeError::Schema(format!("{} has no event_id column", path.display())))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [leaf]);
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let mut ids = Vec::with_capacity(rows);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| LakeError::parquet(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| LakeError::parquet(path, e.into()))?;
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| {
                LakeError::Schema(format!("{}: event_id is not a string", path.display()))
            })?;
        ids.extend((0..col.len()).map(|i| id_hash(col.value(i))));
    }
    if ids.len() != rows {
        return Err(LakeError::parquet(
            path,
            parquet::errors::ParquetError::General(format!(
                "the footer promises {rows} rows but {} were read",
                ids.len()
            )),
        ));
    }
    Ok(ids)
}

/// Writes one data file crash-safely: temp name → fsync → footer check → rename → fsync dir.
pub(crate) fn write_file(
    dir: &Path,
    name: DataFileName,
    rows: usize,
    props: Arc<WriterProperties>,
    mut next: impl FnMut() -> Result<Option<RecordBatch>>,
) -> Result<WrittenFile> {
    create_dir_durable(dir)?;
    let final_path = dir.join(name.file_name());
    if final_path.exists() {
        return Err(LakeError::Exists(final_path));
    }
    let tmp_path = dir.join(name.temp_name());
    let result = write_temp(&tmp_path, rows, props, &mut next);
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(e) => {
            // Whatever was written is garbage now; on a full disk it is also the space the
            // next try needs.
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&tmp_path, &final_path) {
        let _ = fs::remove_file(&tmp_path);
        return Err(LakeError::io(&final_path, e));
    }
    sync_dir(dir)?;
    Ok(WrittenFile {
        path: final_path,
        partition: PartitionDate(0),
        rows: rows as u64,
        bytes,
    })
}

/// Writes, fsyncs and checks the temp file of [`write_file`]; returns its size.
fn write_temp(
    tmp_path: &Path,
    rows: usize,
    props: Arc<WriterProperties>,
    next: &mut impl FnMut() -> Result<Option<RecordBatch>>,
) -> Result<u64> {
    let file = File::create(tmp_path).map_err(|e| LakeError::io(tmp_path, e))?;
    let mut writer = ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, file),
        event::schema(),
        Some((*props).clone()),
    )
    .map_err(|e| LakeError::parquet(tmp_path, e))?;
    let mut written_rows = 0;
    while let Some(slice) = next()? {
        written_rows += slice.num_rows();
        writer
            .write(&slice)
            .map_err(|e| LakeError::parquet(tmp_path, e))?;
    }
    if written_rows != rows {
        return Err(LakeError::Verify {
            path: tmp_path.to_owned(),
            expected: rows as u64,
            found: written_rows as i64,
        });
    }
    let buffered = writer
        .into_inner()
        .map_err(|e| LakeError::parquet(tmp_path, e))?;
    let file = buffered
        .into_inner()
        .map_err(|e| LakeError::io(tmp_path, e.into_error()))?;
    file.sync_all().map_err(|e| LakeError::io(tmp_path, e))?;
    let bytes = file
        .metadata()
        .map_err(|e| LakeError::io(tmp_path, e))?
        .len();
    drop(file);
    verify_footer(tmp_path, written_rows as u64)?;
    Ok(bytes)
}

/// Re-reads the footer of a just-written file and checks its row count: a file that cannot
/// be read back never gets a visible name.
fn verify_footer(path: &Path, expected_rows: u64) -> Result<()> {
    let file = File::open(path).map_err(|e| LakeError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| LakeError::parquet(path, e))?;
    let rows = reader.metadata().file_metadata().num_rows();
    if rows < 0 || rows as u64 != expected_rows {
        return Err(LakeError::Verify {
            path: path.to_owned(),
            expected: expected_rows,
            found: rows,
        });
    }
    Ok(())
}

/// Creates a directory (and parents) so that the new entries survive a crash.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d.to_owned());
        cur = d.parent();
    }
    fs::create_dir_all(dir).map_err(|e| LakeError::io(dir, e))?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// fsyncs a directory so a rename or a new entry in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(|e| LakeError::io(d, e))
}

/// Writes batches of any schema to `path` crash-safely, the way data files are written:
/// hidden temp name, fsync, footer check, rename, fsync of the directory. Replaces nothing:
/// an existing `path` is an error. Returns the file's size.
pub fn write_batches_file(
    path: &Path,
    schema: arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_durable(dir)?;
    if path.exists() {
        return Err(LakeError::Exists(path.to_owned()));
    }
    let tmp = dir.join(format!(".{}.tmp", file_name(path)));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("supportlake {}", env!("CARGO_PKG_VERSION")))
        .build();
    let written = (|| {
        let file = File::create(&tmp).map_err(|e| LakeError::io(&tmp, e))?;
        let mut writer =
            ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema, Some(props))
                .map_err(|e| LakeError::parquet(&tmp, e))?;
        let mut rows = 0u64;
        for b in batches {
            rows += b.num_rows() as u64;
            writer.write(b).map_err(|e| LakeError::parquet(&tmp, e))?;
        }
        let file = writer
            .into_inner()
            .map_err(|e| LakeError::parquet(&tmp, e))?
            .into_inner()
            .map_err(|e| LakeError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| LakeError::io(&tmp, e))?;
        let bytes = file.metadata().map_err(|e| LakeError::io(&tmp, e))?.len();
        drop(file);
        verify_footer(&tmp, rows)?;
        fs::rename(&tmp, path)
            .map_err(|e| LakeError::io(path, e))
            .map(|()| bytes)
    })();
    match written {
        Ok(bytes) => {
            sync_dir(dir)?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventBatchBuilder, EventRef, EventSink, Kind, Source};

    /// `n` events on 2026-11-02 (day 20 759) with ids `{prefix}{i}`.
    fn batch(prefix: &str, n: usize) -> RecordBatch {
        let mut b = EventBatchBuilder::new(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
        for i in 0..n {
            let id = format!("{prefix}{i}");
            b.push(&EventRef::new(
                &id,
                1_793_620_800_000_000 + i as i64,
                Source::AgentLog,
                Kind::MessageIn,
            ));
        }
        b.finish()
    }

    fn rows_in(dir: &Path) -> u64 {
        data_files(dir)
            .unwrap()
            .iter()
            .map(|p| {
                let r = SerializedFileReader::new(File::open(p).unwrap()).unwrap();
                r.metadata().file_metadata().num_rows() as u64
            })
            .sum()
    }

    /// Regression: a write that failed (a full disk) dropped its pending rows while their
    /// ids stayed in the set, so the server's retry read them again from the log, found the
    /// ids, skipped them as duplicates, and deleted the log: acknowledged events lost.
    #[test]
    fn a_failed_write_keeps_its_rows_for_the_retry() {
        let lake = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(lake.path());
        let part = paths.partition(EVENTS, PartitionDate(20_759));
        let mut w = LakeWriter::open(paths.clone(), WriterOptions::default()).unwrap();
        let b = batch("a", 100);
        assert_eq!(w.append(&b).unwrap().accepted, 100);
        let blocker = block_write(&part, 1, 100);
        assert!(w.flush().is_err());
        assert_eq!(w.pending_rows(), 100, "the rows wait for the next write");
        // The retry reads the same events again (the log was not trimmed): all duplicates
        // of pending rows, and they must still reach the file.
        assert_eq!(w.append(&b).unwrap().duplicates, 100);
        assert!(w.flush().is_err());
        fs::remove_dir(&blocker).unwrap();
        w.flush().unwrap();
        assert_eq!(rows_in(&part), 100);
        assert_eq!(w.pending_rows(), 0);
    }

    /// Makes the write of the file of sequence numbers `first..=last` fail: a directory
    /// holds its temp name.
    fn block_write(part: &Path, first: u64, last: u64) -> PathBuf {
        let name = DataFileName {
            first_seq: first,
            last_seq: last,
        };
        let blocker = part.join(name.temp_name());
        fs::create_dir_all(&blocker).unwrap();
        blocker
    }

    /// A day that cannot be written does not hold back the others.
    #[test]
    fn one_failing_day_does_not_stop_the_others() {
        let lake = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(lake.path());
        let bad = paths.partition(EVENTS, PartitionDate(20_759));
        let mut w = LakeWriter::open(paths.clone(), WriterOptions::default()).unwrap();
        block_write(&bad, 1, 10);
        let mut next_day = EventBatchBuilder::new(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
        next_day.push(&EventRef::new(
            "b0",
            1_793_620_800_000_000 + 86_400_000_000,
            Source::AgentLog,
            Kind::MessageIn,
        ));
        w.append(&batch("a", 10)).unwrap();
        w.append(&next_day.finish()).unwrap();
        assert!(w.flush().is_err());
        assert_eq!(rows_in(&paths.partition(EVENTS, PartitionDate(20_760))), 1);
        assert_eq!(w.pending_rows(), 10);
    }

    /// Regression: one damaged file used to make every flush into its partition fail (its
    /// ids could not be loaded), so nothing acknowledged after it reached the lake.
    #[test]
    fn a_damaged_file_is_moved_aside_and_its_partition_takes_rows() {
        let lake = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(lake.path());
        let part = paths.partition(EVENTS, PartitionDate(20_759));
        let mut w = LakeWriter::open(paths.clone(), WriterOptions::default()).unwrap();
        w.append(&batch("a", 50)).unwrap();
        w.flush().unwrap();
        w.append(&batch("b", 50)).unwrap();
        w.flush().unwrap();
        drop(w);
        let files = data_files(&part).unwrap();
        assert_eq!(files.len(), 2);
        let bytes = fs::read(&files[0]).unwrap();
        fs::write(&files[0], &bytes[..bytes.len() / 2]).unwrap();

        let mut w = LakeWriter::open(paths.clone(), WriterOptions::default()).unwrap();
        // The damaged file's ids are gone with it: its events are accepted again.
        let out = w.append(&batch("a", 50)).unwrap();
        assert_eq!(out.accepted, 50);
        assert_eq!(w.append(&batch("b", 50)).unwrap().duplicates, 50);
        w.flush().unwrap();
        assert_eq!(rows_in(&part), 100);
        let moved = crate::lake::damage::list(&paths);
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(
            moved[0].was,
            format!("events/date=2026-11-02/{}", file_name(&files[0]))
        );
    }
}
