//! The write-ahead log of the server: events are durable here before a request is answered,
//! and reach the lake's Parquet files later, in bulk.
//!
//! # Format
//!
//! `<lake>/_wal/<16-digit segment number>.wal`. A segment is a magic line followed by
//! records: `u32` little-endian payload length, `u64` little-endian XXH64 of the payload, the
//! payload. A payload is either a row record ([`RowRecord`]: the events of one request,
//! written by the server) or one Arrow IPC stream holding one batch of canonical events
//! (written by erasure when it rewrites a segment, and by servers before row records). The
//! first bytes tell them apart: an IPC stream starts with `0xFFFFFFFF`, a row record with
//! `ROW1`.
//!
//! # Invariants
//!
//! - **Ack after fsync.** [`Wal::append`] resolves only after the record and every record
//!   before it are written and `fdatasync`ed. Appends that arrive while a sync is running
//!   are written together and share the next sync (group commit).
//! - **Trim after commit.** A segment is deleted only after the lake writer has committed
//!   (written, fsynced, renamed) every event in it.
//! - **Replay is harmless.** The lake writer drops event ids it already has, so replaying a
//!   segment that was partly or wholly flushed before a crash adds nothing.
//! - **A torn tail is not data.** A record cut short or failing its checksum at the end of a
//!   segment was never acknowledged (its sync never completed); reading stops there.
//! - **Bounded.** At most `queue` appends wait for the writer; beyond that, and after a
//!   failed write or sync, [`Wal::append`] refuses at once so the caller can answer 503.
//! - **Maintenance sees a quiet lake.** Work that rewrites or drops lake files (erasure,
//!   retention) runs through [`Wal::run_exclusive`], on the flusher thread, right after a
//!   flush that put everything acknowledged before it into Parquet and trimmed the log; no
//!   flush overlaps it, and the lake writer reloads its event ids from the files after it.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::writer::{LakeWriter, WriterOptions, sync_dir};
use super::{LakeError, LakeLock, LakePaths};
use crate::event::{Author, EventBatchBuilder, EventRef, EventSink, Kind, Source};

const MAGIC: &[u8] = b"supportlake-wal 1\n";
/// Records larger than this are refused (a request body is far smaller).
const MAX_RECORD: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("the write-ahead log is full ({0} appends waiting); retry shortly")]
    Busy(usize),
    #[error("the write-ahead log is not writable: {0}")]
    Failed(String),
    #[error("the write-ahead log has shut down")]
    Closed,
    #[error("cannot encode events for the write-ahead log: {0}")]
    Encode(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Appends allowed to wait for the writer.
    pub queue: usize,
    /// A segment is closed (and becomes flushable) at this size.
    pub segment_bytes: u64,
    /// The flusher turns closed segments into Parquet at least this often; the open segment
    /// is closed for it when older than this.
    pub flush_interval: Duration,
    /// Sync every append on its own instead of in groups (for comparison in benchmarks).
    pub sync_each: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            queue: 4096,
            segment_bytes: 64 << 20,
            flush_interval: Duration::from_secs(5),
            sync_each: false,
        }
    }
}

/// Counters for `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct WalStats {
    pub appends: AtomicU64,
    pub syncs: AtomicU64,
    pub bytes_unflushed: AtomicU64,
    pub events_flushed: AtomicU64,
    pub flushes: AtomicU64,
    pub last_flush_micros: AtomicU64,
    /// When the oldest record not yet in the lake was appended (monotonic clock).
    pub oldest_unflushed: Mutex<Option<Instant>>,
    /// Bumped after every flush that committed files, so readers can refresh.
    pub lake_generation: AtomicU64,
    pub failed: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

struct Append {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

enum Msg {
    Append(Append),
    /// Close the open segment (if it has records) so the flusher can take it; answers the
    /// lowest segment number the writer may still append to (every segment below it is
    /// closed for good).
    Rotate(oneshot::Sender<u64>),
}

/// Work for the flusher thread: told whether the flush before it succeeded, it works and
/// returns its answer, which the flusher sends once the writer and the readers are told what
/// changed.
type Job = Box<dyn FnOnce(Result<(), String>) -> Answer + Send>;
type Answer = Box<dyn FnOnce() + Send>;

/// A handle to the log; cheap to clone.
#[derive(Clone)]
pub struct Wal {
    tx: SyncSender<Msg>,
    queue: usize,
    stats: Arc<WalStats>,
    jobs: mpsc::Sender<Job>,
}

/// The background threads; [`WalThreads::shutdown`] stops them after a last flush.
pub struct WalThreads {
    writer: Option<std::thread::JoinHandle<()>>,
    flusher: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    wal: Wal,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.wal"))
}

fn segment_number(p: &Path) -> Option<u64> {
    let name = p.file_name()?.to_str()?;
    let n = name.strip_suffix(".wal")?;
    (n.len() == 16).then(|| n.parse().ok()).flatten()
}

/// The segments in the directory, oldest first.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LakeError> {
    let mut v = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(LakeError::io(dir, e)),
    };
    for entry in rd {
        let p = entry.map_err(|e| LakeError::io(dir, e))?.path();
        if let Some(n) = segment_number(&p) {
            v.push((n, p));
        }
    }
    v.sort();
    Ok(v)
}

/// Encodes a batch of events as one WAL payload.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    let mut w = StreamWriter::try_new(&mut buf, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(buf)
}

/// The first bytes of a row record.
const ROWS_TAG: &[u8; 4] = b"ROW1";
/// Rows per batch when a segment's row records are read back.
const READ_BATCH_ROWS: usize = 8192;
/// Length that stands for an absent optional string in a row record.
const ABSENT: u32 = u32::MAX;

/// The events of one request as a write-ahead log record: a few plain bytes per field,
/// much cheaper to build for a handful of events than an Arrow batch, which the flusher
/// builds once per segment instead.
///
/// Layout (little-endian): `ROW1`, `received_at` (`i64` µs), the event count (`u32`), then
/// per event: `ts` (`i64` µs), `source`, `kind` and `author` as `u8`-length strings (length
/// 0: no author), `csat_score` as a presence byte and an `i8`, then `event_id` and the
/// eleven optional strings (`conversation_id` … `reason`, `attrs`) each as a `u32` length
/// (`u32::MAX`: absent) and UTF-8 bytes.
pub struct RowRecord {
    buf: Vec<u8>,
    count: u32,
}

impl RowRecord {
    pub fn new(received_at: DateTime<Utc>, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 16);
        buf.extend_from_slice(ROWS_TAG);
        buf.extend_from_slice(&received_at.timestamp_micros().to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        RowRecord { buf, count: 0 }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The payload to append.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[12..16].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }

    fn short(&mut self, s: &str) {
        // Enum names: a few bytes, far below 255.
        self.buf.push(s.len().min(255) as u8);
        self.buf
            .extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
    }

    fn string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(s.as_bytes());
            }
            None => self.buf.extend_from_slice(&ABSENT.to_le_bytes()),
        }
    }
}

impl EventSink for RowRecord {
    fn push(&mut self, e: &EventRef<'_>) {
        self.buf.extend_from_slice(&e.ts.to_le_bytes());
        self.short(e.source.as_str());
        self.short(e.kind.as_str());
        self.short(e.author.map_or("", Author::as_str));
        match e.csat_score {
            Some(v) => self.buf.extend_from_slice(&[1, v as u8]),
            None => self.buf.extend_from_slice(&[0, 0]),
        }
        self.string(Some(e.event_id));
        for s in [
            e.conversation_id,
            e.customer_key,
            e.agent_id,
            e.team,
            e.channel,
            e.inbox,
            e.priority,
            e.message_id,
            e.status,
            e.reason,
            e.attrs,
        ] {
            self.string(s);
        }
        self.count += 1;
    }
}

/// Reads a row record into `out`; the error says what is wrong with it.
fn read_rows(payload: &[u8], out: &mut EventBatchBuilder) -> Result<(), String> {
    struct Cursor<'a> {
        b: &'a [u8],
        at: usize,
    }
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
            let end = end.ok_or_else(|| format!("row record cut short at byte {}", self.at))?;
            let s = &self.b[self.at..end];
            self.at = end;
            Ok(s)
        }
        fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
            let mut a = [0u8; N];
            a.copy_from_slice(self.take(N)?);
            Ok(a)
        }
        fn text(&mut self, n: usize) -> Result<&'a str, String> {
            let at = self.at;
            std::str::from_utf8(self.take(n)?)
                .map_err(|_| format!("row record holds a string that is not UTF-8 at byte {at}"))
        }
        fn short(&mut self) -> Result<&'a str, String> {
            let [n] = self.array::<1>()?;
            self.text(n as usize)
        }
        fn string(&mut self) -> Result<Option<&'a str>, String> {
            match u32::from_le_bytes(self.array()?) {
                ABSENT => Ok(None),
                n => self.text(n as usize).map(Some),
            }
        }
    }
    let mut c = Cursor { b: payload, at: 0 };
    if c.take(4)? != ROWS_TAG {
        return Err("not a row record".into());
    }
    let received_at = i64::from_le_bytes(c.array()?);
    out.set_received_at(crate::event::micros_to_datetime(received_at));
    let count = u32::from_le_bytes(c.array()?);
    for _ in 0..count {
        let ts = i64::from_le_bytes(c.array()?);
        let source = c.short()?;
        let source = Source::parse(source).ok_or_else(|| format!("unknown source {source:?}"))?;
        let kind = c.short()?;
        let kind = Kind::parse(kind).ok_or_else(|| format!("unknown kind {kind:?}"))?;
        let author = match c.short()? {
            "" => None,
            a => Some(Author::parse(a).ok_or_else(|| format!("unknown author {a:?}"))?),
        };
        let [has_csat, csat] = c.array::<2>()?;
        let event_id = c.string()?.ok_or("row record without an event id")?;
        let mut e = EventRef::new(event_id, ts, source, kind);
        e.author = author;
        e.csat_score = (has_csat == 1).then_some(csat as i8);
        e.conversation_id = c.string()?;
        e.customer_key = c.string()?;
        e.agent_id = c.string()?;
        e.team = c.string()?;
        e.channel = c.string()?;
        e.inbox = c.string()?;
        e.priority = c.string()?;
        e.message_id = c.string()?;
        e.status = c.string()?;
        e.reason = c.string()?;
        e.attrs = c.string()?;
        out.push(&e);
    }
    if c.at != payload.len() {
        return Err(format!(
            "row record has {} bytes after its {count} events",
            payload.len() - c.at
        ));
    }
    Ok(())
}

/// A whole segment holding `batches`, one record each: what [`read_segment`] reads back.
pub(crate) fn encode_segment(batches: &[RecordBatch]) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = MAGIC.to_vec();
    for b in batches {
        let payload = encode(b)?;
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&twox_hash::XxHash64::oneshot(0, &payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    Ok(out)
}

/// Reads the complete records of a segment; stops at a torn or corrupt tail.
pub fn read_segment(path: &Path) -> Result<Vec<RecordBatch>, LakeError> {
    let f = File::open(path).map_err(|e| LakeError::io(path, e))?;
    let mut r = BufReader::new(f);
    let mut magic = vec![0u8; MAGIC.len()];
    if r.read_exact(&mut magic).is_err() || magic != MAGIC {
        warn!(path = %path.display(), "not a write-ahead log segment (or empty); skipped");
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut rows = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
    loop {
        let mut head = [0u8; 12];
        if r.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes(head[..4].try_into().unwrap_or_default()) as usize;
        let sum = u64::from_le_bytes(head[4..].try_into().unwrap_or_default());
        if len > MAX_RECORD {
            warn!(path = %path.display(), "write-ahead log record with an impossible length; tail ignored");
            break;
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).is_err() {
            warn!(path = %path.display(), "write-ahead log ends in a partial record (never acknowledged); ignored");
            break;
        }
        if twox_hash::XxHash64::oneshot(0, &payload) != sum {
            warn!(path = %path.display(), "write-ahead log record fails its checksum (never acknowledged); tail ignored");
            break;
        }
        if payload.starts_with(ROWS_TAG) {
            read_rows(&payload, &mut rows)
                .map_err(|e| LakeError::Options(format!("{}: {e}", path.display())))?;
            if rows.len() >= READ_BATCH_ROWS {
                out.push(rows.finish());
            }
            continue;
        }
        // Keep the order of the records: rows read so far come first.
        if !rows.is_empty() {
            out.push(rows.finish());
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(payload), None)
            .map_err(|e| LakeError::Options(format!("{}: {e}", path.display())))?;
        for b in reader {
            out.push(b.map_err(|e| LakeError::Options(format!("{}: {e}", path.display())))?);
        }
    }
    if !rows.is_empty() {
        out.push(rows.finish());
    }
    Ok(out)
}

impl WalStats {
    /// How long the oldest acknowledged record not yet in the lake has waited.
    pub fn ingest_lag(&self) -> Duration {
        self.oldest_unflushed
            .lock()
            .ok()
            .and_then(|o| o.map(|t| t.elapsed()))
            .unwrap_or_default()
    }
}

impl Wal {
    /// Opens the log in `<lake>/_wal`, starts the writer and the flusher. Segments left by
    /// an earlier run are flushed into the lake first (replay).
    pub fn start(paths: LakePaths, opts: WalOptions) -> Result<(Wal, WalThreads), WalError> {
        let dir = paths.root().join("_wal");
        fs::create_dir_all(&dir).map_err(|e| LakeError::io(&dir, e))?;
        let stats = Arc::new(WalStats::default());
        // One writer per lake: held by the flusher for as long as it runs.
        let lock = LakeLock::acquire(&paths, &format!("serve, pid {}", std::process::id()))?;
        let mut lake = LakeWriter::open(paths.clone(), WriterOptions::default())?;
        let left = segments(&dir)?;
        if !left.is_empty() {
            info!(
                segments = left.len(),
                "replaying the write-ahead log into the lake"
            );
            flush_segments(&mut lake, &left, &stats)?;
        }
        let next = left.last().map_or(1, |(n, _)| n + 1);
        let (tx, rx) = mpsc::sync_channel(opts.queue);
        let (jobs, jobs_rx) = mpsc::channel();
        let wal = Wal {
            tx,
            queue: opts.queue,
            stats: Arc::clone(&stats),
            jobs,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let dir = dir.clone();
            let stats = Arc::clone(&stats);
            let opts = opts.clone();
            std::thread::Builder::new()
                .name("wal-writer".into())
                .spawn(move || writer_loop(dir, next, rx, opts, stats))
                .map_err(|e| WalError::Failed(e.to_string()))?
        };
        let flusher = {
            let wal = wal.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("wal-flusher".into())
                .spawn(move || {
                    flusher_loop(dir, lake, wal, opts, stop, jobs_rx);
                    drop(lock);
                })
                .map_err(|e| WalError::Failed(e.to_string()))?
        };
        Ok((
            wal.clone(),
            WalThreads {
                writer: Some(writer),
                flusher: Some(flusher),
                stop,
                wal,
            },
        ))
    }

    pub fn stats(&self) -> &Arc<WalStats> {
        &self.stats
    }

    /// Appends one payload (see [`encode`]); resolves once it is durable.
    pub async fn append(&self, payload: Vec<u8>) -> Result<(), WalError> {
        if self.stats.failed.load(Ordering::Relaxed) {
            let why = self
                .stats
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default();
            return Err(WalError::Failed(why));
        }
        let (done, wait) = oneshot::channel();
        match self.tx.try_send(Msg::Append(Append { payload, done })) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(WalError::Busy(self.queue)),
            Err(TrySendError::Disconnected(_)) => return Err(WalError::Closed),
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WalError::Failed(e)),
            Err(_) => Err(WalError::Closed),
        }
    }

    /// Runs `work` on the flusher thread once everything acknowledged before this call is
    /// committed to Parquet and its log segments deleted, with no flush running meanwhile.
    /// Events acknowledged while `work` runs wait in the log for the next flush. Fails
    /// without running `work` when that flush fails or the log has shut down.
    pub async fn run_exclusive<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, WalError> {
        let (done, wait) = oneshot::channel();
        let job: Job = Box::new(move |flushed| {
            let result = flushed.map(|()| work());
            Box::new(move || {
                let _ = done.send(result);
            })
        });
        self.jobs.send(job).map_err(|_| WalError::Closed)?;
        match wait.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(WalError::Failed(e)),
            Err(_) => Err(WalError::Closed),
        }
    }

    /// Closes the open segment; returns the bound below which every segment is closed and
    /// holds everything acknowledged so far (None when the writer has stopped).
    fn rotate_blocking(&self) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Rotate(tx)).ok()?;
        rx.blocking_recv().ok()
    }
}

impl WalThreads {
    /// Flushes everything acknowledged into the lake and stops the flusher. Call it once
    /// no more appends can arrive (the HTTP server has drained); the writer thread ends with
    /// the last handle.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(f) = self.flusher.take() {
            let _ = f.join();
        }
        drop(self.wal);
        drop(self.writer.take());
    }
}

struct OpenSegment {
    n: u64,
    file: File,
    bytes: u64,
    opened: Instant,
    records: u64,
}

fn open_segment(dir: &Path, n: u64) -> std::io::Result<OpenSegment> {
    let path = segment_path(dir, n);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    file.write_all(MAGIC)?;
    file.sync_all()?;
    sync_dir(dir).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(OpenSegment {
        n,
        file,
        bytes: MAGIC.len() as u64,
        opened: Instant::now(),
        records: 0,
    })
}

fn fail(stats: &WalStats, why: String) {
    error!(error = %why, "write-ahead log write failed; refusing appends until a write succeeds");
    stats.failed.store(true, Ordering::SeqCst);
    if let Ok(mut e) = stats.last_error.lock() {
        *e = Some(why);
    }
}

fn writer_loop(
    dir: PathBuf,
    mut next: u64,
    rx: Receiver<Msg>,
    opts: WalOptions,
    stats: Arc<WalStats>,
) {
    let mut seg: Option<OpenSegment> = None;
    let mut group: Vec<Append> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Wait for work; close an idle segment that is old enough to flush.
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if seg
                    .as_ref()
                    .is_some_and(|s| s.records > 0 && s.opened.elapsed() >= opts.flush_interval)
                {
                    seg = None;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut msgs = vec![first];
        if !opts.sync_each {
            while msgs.len() < 1024 {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut rotations = Vec::new();
        for m in msgs {
            match m {
                Msg::Append(a) => group.push(a),
                Msg::Rotate(r) => rotations.push(r),
            }
        }
        if !group.is_empty() {
            let result = write_group(&dir, &mut next, &mut seg, &group, &mut buf, &stats);
            match &result {
                Ok(()) => {
                    if stats.failed.swap(false, Ordering::SeqCst) {
                        info!("write-ahead log writable again");
                    }
                }
                Err(e) => {
                    fail(&stats, e.clone());
                    // The open segment's state after a failed write or sync is unknown:
                    // never append to it again.
                    seg = None;
                }
            }
            for a in group.drain(..) {
                let _ = a.done.send(result.clone());
            }
            if seg.as_ref().is_some_and(|s| s.bytes >= opts.segment_bytes) {
                seg = None;
            }
        }
        if !rotations.is_empty() {
            if seg.as_ref().is_some_and(|s| s.records > 0) {
                seg = None;
            }
            let bound = seg.as_ref().map_or(next, |s| s.n);
            for r in rotations {
                let _ = r.send(bound);
            }
        }
    }
}

fn write_group(
    dir: &Path,
    next: &mut u64,
    seg: &mut Option<OpenSegment>,
    group: &[Append],
    buf: &mut Vec<u8>,
    stats: &WalStats,
) -> Result<(), String> {
    if seg.is_none() {
        let s = open_segment(dir, *next)
            .map_err(|e| format!("{}: {e}", segment_path(dir, *next).display()))?;
        *next += 1;
        *seg = Some(s);
    }
    let s = seg.as_mut().ok_or("no segment")?;
    buf.clear();
    for a in group {
        buf.extend_from_slice(&(a.payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&twox_hash::XxHash64::oneshot(0, &a.payload).to_le_bytes());
        buf.extend_from_slice(&a.payload);
    }
    let path = segment_path(dir, s.n);
    s.file
        .write_all(buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    s.file
        .sync_data()
        .map_err(|e| format!("{}: fsync: {e}", path.display()))?;
    s.bytes += buf.len() as u64;
    s.records += group.len() as u64;
    stats
        .appends
        .fetch_add(group.len() as u64, Ordering::Relaxed);
    stats.syncs.fetch_add(1, Ordering::Relaxed);
    stats
        .bytes_unflushed
        .fetch_add(buf.len() as u64, Ordering::Relaxed);
    if let Ok(mut oldest) = stats.oldest_unflushed.lock() {
        oldest.get_or_insert_with(Instant::now);
    }
    Ok(())
}

fn flush_segments(
    lake: &mut LakeWriter,
    segs: &[(u64, PathBuf)],
    stats: &WalStats,
) -> Result<(), WalError> {
    let started = Instant::now();
    let mut events = 0u64;
    let mut bytes = 0u64;
    for (_, path) in segs {
        // Appends counted record bytes only; the magic line is not among them.
        bytes += fs::metadata(path)
            .map(|m| m.len().saturating_sub(MAGIC.len() as u64))
            .unwrap_or(0);
        for batch in read_segment(path)? {
            events += batch.num_rows() as u64;
            lake.append(&batch)?;
        }
    }
    lake.flush()?;
    for (_, path) in segs {
        fs::remove_file(path).map_err(|e| LakeError::io(path, e))?;
    }
    if let Some((_, p)) = segs.first()
        && let Some(dir) = p.parent()
    {
        sync_dir(dir)?;
    }
    stats.events_flushed.fetch_add(events, Ordering::Relaxed);
    stats.flushes.fetch_add(1, Ordering::Relaxed);
    stats
        .last_flush_micros
        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let _ = stats
        .bytes_unflushed
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some(b.saturating_sub(bytes))
        });
    stats.lake_generation.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn flusher_loop(
    dir: PathBuf,
    mut lake: LakeWriter,
    wal: Wal,
    opts: WalOptions,
    stop: Arc<AtomicBool>,
    jobs: Receiver<Job>,
) {
    let mut last = Instant::now();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut job = None;
        if !stopping {
            match jobs.recv_timeout(Duration::from_millis(100)) {
                Ok(j) => job = Some(j),
                Err(e) => {
                    if e == RecvTimeoutError::Disconnected {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    if last.elapsed() < opts.flush_interval {
                        continue;
                    }
                }
            }
        }
        last = Instant::now();
        // Close the open segment so everything acknowledged so far is flushable; only the
        // segments below the writer's bound are touched.
        let Some(bound) = wal.rotate_blocking() else {
            if let Some(j) = job {
                j(Err("the write-ahead log has shut down".into()))();
            }
            break;
        };
        let flushed = match segments(&dir) {
            Ok(all) => {
                let closed: Vec<_> = all.into_iter().filter(|(n, _)| *n < bound).collect();
                if closed.is_empty() {
                    Ok(())
                } else if let Err(e) = flush_segments(&mut lake, &closed, wal.stats()) {
                    // Nothing is lost: the segments stay and are retried next time.
                    error!(error = %e, "flushing the write-ahead log into the lake failed; will retry");
                    Err(format!("flushing the write-ahead log failed: {e}"))
                } else {
                    if wal.stats().bytes_unflushed.load(Ordering::Relaxed) == 0
                        && let Ok(mut oldest) = wal.stats().oldest_unflushed.lock()
                    {
                        *oldest = None;
                    }
                    Ok(())
                }
            }
            Err(e) => {
                error!(error = %e, "cannot list the write-ahead log");
                Err(format!("cannot list the write-ahead log: {e}"))
            }
        };
        if let Some(j) = job {
            let ran = flushed.is_ok();
            let answer = j(flushed);
            if ran {
                // The job may have rewritten or dropped files: the writer's id sets must
                // mirror the files again, and readers must reopen their sessions.
                lake.forget_ids();
                wal.stats().lake_generation.fetch_add(1, Ordering::SeqCst);
            }
            answer();
        }
        if stopping {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::event::{EventBatchBuilder, EventRef, EventSink, Kind, Source};

    fn batch(id: &str) -> RecordBatch {
        let mut b = EventBatchBuilder::new(Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap());
        b.push(&EventRef::new(
            id,
            1_793_620_800_000_000,
            Source::AgentLog,
            Kind::ConversationOpened,
        ));
        b.finish()
    }

    /// Events with every field set, none set, and text that is not ASCII.
    fn varied_events() -> Vec<crate::event::Event> {
        use crate::event::Author;
        let mut full = EventRef::new(
            "wamid.ÉÑ-1",
            1_793_620_800_123_456,
            Source::WhatsApp,
            Kind::CsatSubmitted,
        );
        full.conversation_id = Some("c-1");
        full.customer_key = Some("ab12");
        full.agent_id = Some("agente.joão");
        full.team = Some("suporte 🛟");
        full.channel = Some("whatsapp");
        full.inbox = Some("");
        full.priority = Some("high");
        full.author = Some(Author::Customer);
        full.message_id = Some("m-1");
        full.status = Some("read");
        full.reason = Some("131047");
        full.csat_score = Some(-3);
        full.attrs = Some(r#"{"private":true}"#);
        let bare = EventRef::new("e-2", -5, Source::AgentLog, Kind::AgentStatus);
        let received = Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap();
        let mut sink = crate::event::VecSink::new(received);
        sink.push(&full);
        sink.push(&bare);
        sink.events
    }

    #[test]
    fn row_records_read_back_as_the_batch_the_events_make() {
        let events = varied_events();
        let received = events[0].received_at;
        let mut direct = EventBatchBuilder::new(received);
        let mut record = RowRecord::new(received, 0);
        for e in &events {
            direct.push(&e.as_ref());
            record.push(&e.as_ref());
        }
        assert_eq!(record.len(), 2);
        let mut back = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
        read_rows(&record.finish(), &mut back).unwrap();
        assert_eq!(back.finish(), direct.finish());
    }

    #[test]
    fn a_damaged_row_record_is_an_error_not_a_panic() {
        let events = varied_events();
        let mut record = RowRecord::new(events[0].received_at, 0);
        for e in &events {
            record.push(&e.as_ref());
        }
        let payload = record.finish();
        for cut in 0..payload.len() {
            let mut out = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
            assert!(
                read_rows(&payload[..cut], &mut out).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = payload.clone();
        longer.push(0);
        let mut out = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
        let err = read_rows(&longer, &mut out).unwrap_err();
        assert!(err.contains("1 bytes after its 2 events"), "{err}");
        let mut bad_kind = payload;
        // The kind's first letter ("c" of csat_submitted) after tag, received_at, count,
        // ts, and the source "whatsapp" with its length byte.
        let at = 4 + 8 + 4 + 8 + 9 + 1;
        assert_eq!(bad_kind[at], b'c');
        bad_kind[at] = b'x';
        let mut out = EventBatchBuilder::new(DateTime::<Utc>::UNIX_EPOCH);
        let err = read_rows(&bad_kind, &mut out).unwrap_err();
        assert!(err.contains("unknown kind"), "{err}");
    }

    #[test]
    fn a_segment_mixing_row_and_arrow_records_reads_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let events = varied_events();
        let mut seg = MAGIC.to_vec();
        let mut add = |payload: Vec<u8>| {
            seg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            seg.extend_from_slice(&twox_hash::XxHash64::oneshot(0, &payload).to_le_bytes());
            seg.extend_from_slice(&payload);
        };
        let mut first = RowRecord::new(events[0].received_at, 0);
        first.push(&events[0].as_ref());
        add(first.finish());
        add(encode(&batch("middle")).unwrap());
        let mut last = RowRecord::new(events[1].received_at, 0);
        last.push(&events[1].as_ref());
        add(last.finish());
        let path = dir.path().join("0000000000000001.wal");
        std::fs::write(&path, &seg).unwrap();
        let ids: Vec<String> = read_segment(&path)
            .unwrap()
            .iter()
            .flat_map(|b| {
                let col = b.column(0).as_any();
                let a = col.downcast_ref::<arrow::array::StringArray>().unwrap();
                a.iter().map(|v| v.unwrap().to_owned()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(ids, ["wamid.ÉÑ-1", "middle", "e-2"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn exclusive_work_runs_after_a_flush_of_everything_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(dir.path());
        let opts = WalOptions {
            flush_interval: Duration::from_secs(3600),
            ..WalOptions::default()
        };
        let (wal, threads) = Wal::start(paths.clone(), opts).unwrap();
        wal.append(encode(&batch("a")).unwrap()).await.unwrap();
        let generation = wal.stats().lake_generation.load(Ordering::SeqCst);
        let p = paths.clone();
        let (files, segs) = wal
            .run_exclusive(move || {
                let part = p.partition(
                    crate::lake::paths::EVENTS,
                    crate::lake::PartitionDate(20_759),
                );
                let files = crate::lake::writer::data_files(&part).unwrap().len();
                let closed = segments(&p.wal()).unwrap();
                (files, closed)
            })
            .await
            .unwrap();
        assert_eq!(
            files, 1,
            "the acknowledged event is in Parquet before the work runs"
        );
        assert!(segs.is_empty(), "and its segment is gone: {segs:?}");
        assert!(wal.stats().lake_generation.load(Ordering::SeqCst) >= generation + 2);
        tokio::task::spawn_blocking(move || threads.shutdown())
            .await
            .unwrap();
        assert!(matches!(
            wal.run_exclusive(|| ()).await,
            Err(WalError::Closed)
        ));
    }
}
