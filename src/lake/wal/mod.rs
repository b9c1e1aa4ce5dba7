//! The write-ahead log of the server: events are durable here before a request is answered,
//! and reach the lake's Parquet files later, in bulk.
//!
//! ```text
//! append ─► writer thread: frames of a group ─► write ─► fdatasync ─► answer every append of the group
//!                              <lake>/_wal/<n>.wal (space allocated ahead of the writes)
//! flusher thread, every flush interval: close the open segment ─► read the closed ones
//!   (intact frames; damaged bytes reported and kept aside) ─► lake writer ─► Parquet commit
//!   ─► delete the segments
//! ```
//!
//! The bytes of a segment are described in [`segment`].
//!
//! # Invariants
//!
//! - **Ack after fsync.** [`Wal::append`] resolves only after the record and every record
//!   before it are written and `fdatasync`ed. Appends that arrive while a sync is running
//!   are written together and share the next sync (group commit).
//! - **Space before the ack.** A group is written only into space the file system has
//!   already allocated to the open segment (`fallocate`, ahead of the writes), so a disk
//!   that fills fails the *allocation* — nothing written, the appends answered with an
//!   error (503) — never a record half on disk. A reserve file (`_wal/reserve`) holds space
//!   back for the flusher: when a flush meets a full disk, the reserve is released so the
//!   log can turn into Parquet (several times smaller) and be deleted, which frees space.
//! - **Trim after commit.** A segment is deleted only after the lake writer has committed
//!   (written, fsynced, renamed) every event in it, and after its damaged bytes, if any,
//!   were kept aside. A failed flush changes nothing: the lake writer's state is as before
//!   the attempt ([`LakeWriter`]), the segments stay, and the next flush tries again.
//! - **Replay is harmless.** The lake writer drops event ids it already has, so replaying a
//!   segment that was partly or wholly flushed before a crash adds nothing.
//! - **Damage costs only itself.** A record that fails its checks costs that record: the
//!   frames after it are found and read ([`segment`]); the bytes are copied to
//!   `_wal/damaged/` and the log says exactly which bytes of which segment were skipped.
//! - **A failure is not forever.** After a failed write the log refuses appends at once
//!   (503), and probes every [`WalOptions::probe_interval`] by opening a new segment; the
//!   first probe that succeeds makes it writable again. Flushes retry every flush interval.
//!   [`WalStats::health`] says what is wrong meanwhile (`/readyz`).
//! - **Bounded.** At most `queue` appends wait for the writer; beyond that [`Wal::append`]
//!   refuses at once so the caller can answer 503.
//! - **Maintenance sees a quiet lake.** Work that rewrites or drops lake files (erasure,
//!   retention) runs through [`Wal::run_exclusive`], on the flusher thread, right after a
//!   flush that put everything acknowledged before it into Parquet and trimmed the log; no
//!   flush overlaps it, and the lake writer reloads its event ids from the files after it.

pub mod segment;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{error, info, warn};

pub(crate) use segment::encode_segment;
pub use segment::{
    Damage, DamageKind, RowRecord, SegmentRead, encode, parse_segment, read_segment,
};

use super::writer::{LakeWriter, WriterOptions, sync_dir};
use super::{LakeError, LakeLock, LakePaths};

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
    /// Space allocated to the open segment ahead of its writes, at a time.
    pub allocate_ahead: u64,
    /// Size of the reserve file; `None`: 64 MiB, or a sixteenth of the file system when
    /// that is smaller; `Some(0)`: no reserve.
    pub reserve_bytes: Option<u64>,
    /// How often a log that failed tries again.
    pub probe_interval: Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            queue: 4096,
            segment_bytes: 64 << 20,
            flush_interval: Duration::from_secs(5),
            sync_each: false,
            allocate_ahead: 4 << 20,
            reserve_bytes: None,
            probe_interval: Duration::from_secs(1),
        }
    }
}

/// Counters for `/metrics` and the state behind `/readyz`.
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
    /// The log refuses appends: its last write or sync failed and no probe succeeded since.
    pub failed: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// Times the log became writable again after a failure.
    pub recoveries: AtomicU64,
    /// Why the last flush failed, until one succeeds.
    pub flush_error: Mutex<Option<String>>,
    pub flush_failures: AtomicU64,
    /// Bytes of segments that could not be read (torn writes included).
    pub damaged_bytes: AtomicU64,
    /// Runs of damaged bytes that may have held acknowledged events (kept aside).
    pub damaged_runs: AtomicU64,
    /// Whether the reserve file is in place.
    pub reserve_held: AtomicBool,
}

/// What is wrong, for `/readyz`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Health {
    /// Appends are refused (the server cannot take events): why.
    pub not_ready: Option<String>,
    /// Things that work around a fault (flushes failing, the reserve spent).
    pub degraded: Vec<String>,
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

    pub fn health(&self) -> Health {
        let mut h = Health::default();
        if self.failed.load(Ordering::SeqCst) {
            let why = lock(&self.last_error).clone().unwrap_or_default();
            h.not_ready = Some(format!("the write-ahead log cannot take events: {why}"));
        }
        if let Some(why) = lock(&self.flush_error).clone() {
            h.degraded.push(format!(
                "flushing the write-ahead log into the lake fails ({} bytes wait in the log, retried every flush interval): {why}",
                self.bytes_unflushed.load(Ordering::Relaxed)
            ));
        }
        h
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    flusher: Option<std::thread::JoinHandle<Result<(), String>>>,
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

/// The folder where damaged bytes of segments are kept, inside the log's folder.
pub const DAMAGED_DIR: &str = "damaged";
/// The reserve file, inside the log's folder.
const RESERVE: &str = "reserve";

/// Whether an error (or anything it wraps) is a full disk or an exhausted quota.
pub fn is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && (io.raw_os_error() == Some(libc::ENOSPC)
                || io.raw_os_error() == Some(libc::EDQUOT)
                || io.kind() == std::io::ErrorKind::StorageFull)
        {
            return true;
        }
        if let Some(parquet::errors::ParquetError::External(inner)) =
            err.downcast_ref::<parquet::errors::ParquetError>()
        {
            return is_disk_full(inner.as_ref());
        }
        cur = err.source();
    }
    let text = e.to_string();
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}

/// Asks the file system for `len` bytes at `offset` of `file` without changing its size.
/// File systems that cannot do it (and the error that says so) are taken as a yes: the
/// write itself then finds out.
fn allocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor this `File` owns.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(()),
        _ => Err(e),
    }
}

/// Total and free bytes of the file system holding `dir`.
fn fs_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// Space held back on the log's disk for the flusher (see the module docs).
struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    fn new(dir: &Path, configured: Option<u64>) -> Self {
        let bytes = configured.unwrap_or_else(|| {
            let total = fs_space(dir).map_or(u64::MAX, |(t, _)| t);
            (64u64 << 20).min(total / 16)
        });
        Reserve {
            path: dir.join(RESERVE),
            bytes,
        }
    }

    /// Puts the reserve in place if it is missing and the disk has room for it with plenty
    /// to spare; answers whether it is in place.
    fn ensure(&self, stats: &WalStats) -> bool {
        if self.bytes == 0 {
            return false;
        }
        if fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.bytes) {
            stats.reserve_held.store(true, Ordering::Relaxed);
            return true;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if fs_space(dir).is_some_and(|(_, free)| free < self.bytes.saturating_mul(4)) {
            return false;
        }
        let made = (|| -> std::io::Result<()> {
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&self.path)?;
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on a descriptor this `File` owns.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, self.bytes as libc::off_t) };
            if r != 0 {
                // No fallocate here: write the space out.
                let zeros = vec![0u8; 1 << 20];
                let mut left = self.bytes;
                let mut w = &f;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    w.write_all(&zeros[..n])?;
                    left -= n as u64;
                }
            }
            f.sync_all()
        })();
        match made {
            Ok(()) => {
                stats.reserve_held.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                let _ = fs::remove_file(&self.path);
                warn!(error = %e, path = %self.path.display(), "cannot put the write-ahead log's reserve in place; will try again");
                false
            }
        }
    }

    /// Gives the reserve's space back to the file system; answers whether there was any.
    fn release(&self, stats: &WalStats) -> bool {
        stats.reserve_held.store(false, Ordering::Relaxed);
        match fs::remove_file(&self.path) {
            Ok(()) => {
                warn!(
                    bytes = self.bytes,
                    "the disk is full: released the write-ahead log's reserve so acknowledged events can reach the lake"
                );
                true
            }
            Err(_) => false,
        }
    }
}

impl Wal {
    /// Opens the log in `<lake>/_wal`, starts the writer and the flusher. Segments left by
    /// an earlier run are flushed into the lake first (replay); a replay that fails is not
    /// fatal — the segments stay and the flusher tries again, as after any failed flush.
    pub fn start(paths: LakePaths, opts: WalOptions) -> Result<(Wal, WalThreads), WalError> {
        let dir = paths.wal();
        fs::create_dir_all(&dir).map_err(|e| LakeError::io(&dir, e))?;
        let stats = Arc::new(WalStats::default());
        // One writer per lake: held by the flusher for as long as it runs.
        let lock = LakeLock::acquire(&paths, &format!("serve, pid {}", std::process::id()))?;
        let mut lake = LakeWriter::open(paths.clone(), WriterOptions::default())?;
        // Leftovers of a write the process did not live to finish.
        for (_, p) in segments(&dir)? {
            if fs::metadata(&p).is_ok_and(|m| m.len() == 0) {
                let _ = fs::remove_file(&p);
            }
        }
        let reserve = Reserve::new(&dir, opts.reserve_bytes);
        let left = segments(&dir)?;
        if !left.is_empty() {
            info!(
                segments = left.len(),
                "replaying the write-ahead log into the lake"
            );
            if let Err(e) = flush_segments(&mut lake, &left, &stats) {
                note_flush_failure(&stats, &e.to_string());
            }
        }
        reserve.ensure(&stats);
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
                    let f = Flusher {
                        dir,
                        lake,
                        wal,
                        opts,
                        reserve,
                    };
                    let last = f.run(stop, jobs_rx);
                    drop(lock);
                    last
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
        if self.stats.failed.load(Ordering::SeqCst) {
            let why = lock(&self.stats.last_error).clone().unwrap_or_default();
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
    /// the last handle. An error says that acknowledged events are still only in the log
    /// (and why): they are safe there and reach the lake at the next start.
    pub fn shutdown(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        let last = match self.flusher.take() {
            Some(f) => f
                .join()
                .unwrap_or_else(|_| Err("the flusher stopped unexpectedly".into())),
            None => Ok(()),
        };
        drop(self.wal);
        drop(self.writer.take());
        last
    }
}

struct OpenSegment {
    n: u64,
    file: File,
    bytes: u64,
    /// Bytes the file system has allocated to the file (at least `bytes`).
    allocated: u64,
    opened: Instant,
    records: u64,
}

fn open_segment(dir: &Path, n: u64, ahead: u64) -> std::io::Result<OpenSegment> {
    let path = segment_path(dir, n);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    let made = (|| {
        allocate(&file, 0, ahead.max(segment::MAGIC.len() as u64))?;
        file.write_all(segment::MAGIC)?;
        file.sync_all()?;
        sync_dir(dir).map_err(|e| std::io::Error::other(e.to_string()))
    })();
    if let Err(e) = made {
        // Never leave a half-made segment: the next try creates the next number anew.
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(OpenSegment {
        n,
        file,
        bytes: segment::MAGIC.len() as u64,
        allocated: ahead,
        opened: Instant::now(),
        records: 0,
    })
}

fn fail(stats: &WalStats, why: String) {
    if !stats.failed.swap(true, Ordering::SeqCst) {
        error!(error = %why, "write-ahead log write failed; refusing appends (503) and probing until a write succeeds");
    }
    *lock(&stats.last_error) = Some(why);
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
    let mut last_probe = Instant::now();
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
                if stats.failed.load(Ordering::SeqCst)
                    && last_probe.elapsed() >= opts.probe_interval
                {
                    // Probe: a new segment with its space allocated and its first line
                    // synced is exactly what the next append needs.
                    last_probe = Instant::now();
                    match open_segment(&dir, next, opts.allocate_ahead) {
                        Ok(s) => {
                            next += 1;
                            seg = Some(s);
                            stats.failed.store(false, Ordering::SeqCst);
                            *lock(&stats.last_error) = None;
                            stats.recoveries.fetch_add(1, Ordering::Relaxed);
                            info!("write-ahead log writable again; taking appends");
                        }
                        Err(e) => {
                            *lock(&stats.last_error) =
                                Some(format!("{}: {e}", segment_path(&dir, next).display()));
                        }
                    }
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
            let result = if stats.failed.load(Ordering::SeqCst) {
                // Appends that were on their way when the log failed.
                Err(lock(&stats.last_error).clone().unwrap_or_default())
            } else {
                write_group(&dir, &mut next, &mut seg, &group, &mut buf, &stats, &opts)
            };
            if let Err(e) = &result {
                fail(&stats, e.clone());
                last_probe = Instant::now();
                // The open segment's state after a failed write or sync is unknown:
                // never append to it again.
                seg = None;
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
    opts: &WalOptions,
) -> Result<(), String> {
    if seg.is_none() {
        let s = open_segment(dir, *next, opts.allocate_ahead)
            .map_err(|e| format!("{}: {e}", segment_path(dir, *next).display()))?;
        *next += 1;
        *seg = Some(s);
    }
    let s = seg.as_mut().ok_or("no segment")?;
    buf.clear();
    for a in group {
        segment::push_frame(buf, &a.payload);
    }
    let path = segment_path(dir, s.n);
    let end = s.bytes + buf.len() as u64;
    if end > s.allocated {
        // Space first: a full disk fails here, with nothing written.
        let grow = (end - s.allocated).max(opts.allocate_ahead);
        allocate(&s.file, s.allocated, grow).map_err(|e| format!("{}: {e}", path.display()))?;
        s.allocated += grow;
    }
    s.file
        .write_all(buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    s.file
        .sync_data()
        .map_err(|e| format!("{}: fsync: {e}", path.display()))?;
    s.bytes = end;
    s.records += group.len() as u64;
    stats
        .appends
        .fetch_add(group.len() as u64, Ordering::Relaxed);
    stats.syncs.fetch_add(1, Ordering::Relaxed);
    stats
        .bytes_unflushed
        .fetch_add(buf.len() as u64, Ordering::Relaxed);
    lock(&stats.oldest_unflushed).get_or_insert_with(Instant::now);
    Ok(())
}

/// Copies a segment's damaged bytes that may have held acknowledged events to
/// `_wal/damaged/<segment>.<start>-<end>`, and logs every run of damage.
fn keep_damage(path: &Path, read: &SegmentRead, stats: &WalStats) -> Result<(), LakeError> {
    if read.damage.is_empty() {
        return Ok(());
    }
    let bytes = fs::read(path).map_err(|e| LakeError::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new(".")).join(DAMAGED_DIR);
    let name = super::writer::file_name(path);
    for d in &read.damage {
        stats
            .damaged_bytes
            .fetch_add(d.end - d.start, Ordering::Relaxed);
        if !d.may_hold_acknowledged() {
            warn!(segment = %path.display(), "write-ahead log: {d}");
            continue;
        }
        super::writer::create_dir_durable(&dir)?;
        let kept = dir.join(format!("{name}.{:012}-{:012}", d.start, d.end));
        let run = bytes
            .get(d.start as usize..d.end as usize)
            .unwrap_or_default();
        let mut f = File::create(&kept).map_err(|e| LakeError::io(&kept, e))?;
        f.write_all(run)
            .and_then(|()| f.sync_all())
            .map_err(|e| LakeError::io(&kept, e))?;
        sync_dir(&dir)?;
        stats.damaged_runs.fetch_add(1, Ordering::Relaxed);
        error!(segment = %path.display(), kept = %kept.display(), "write-ahead log: {d}");
    }
    Ok(())
}

/// Puts the events of `segs` into the lake and deletes the segments. Stops at nothing: a
/// batch or a day that fails leaves the writer as it was for it and the other days go on;
/// the first error is returned at the end, and then no segment is deleted (what did get
/// committed is dropped as duplicate when the segments are read again).
fn flush_segments(
    lake: &mut LakeWriter,
    segs: &[(u64, PathBuf)],
    stats: &WalStats,
) -> Result<(), WalError> {
    let started = Instant::now();
    let mut events = 0u64;
    let mut bytes = 0u64;
    let mut first_error: Option<LakeError> = None;
    let mut reads = Vec::with_capacity(segs.len());
    for (_, path) in segs {
        // Appends counted record bytes only; the magic line is not among them.
        bytes += fs::metadata(path)
            .map(|m| m.len().saturating_sub(segment::MAGIC.len() as u64))
            .unwrap_or(0);
        let read = read_segment(path)?;
        for batch in &read.batches {
            events += batch.num_rows() as u64;
            if let Err(e) = lake.append(batch) {
                first_error.get_or_insert(e);
            }
        }
        reads.push(read);
    }
    if let Err(e) = lake.flush() {
        first_error.get_or_insert(e);
    }
    if let Some(e) = first_error {
        return Err(e.into());
    }
    for ((_, path), read) in segs.iter().zip(&reads) {
        keep_damage(path, read, stats)?;
    }
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

fn note_flush_failure(stats: &WalStats, why: &str) {
    error!(error = %why, "flushing the write-ahead log into the lake failed; the events stay in the log and the flush is retried");
    stats.flush_failures.fetch_add(1, Ordering::Relaxed);
    *lock(&stats.flush_error) = Some(why.to_owned());
}

/// The flusher thread's state.
struct Flusher {
    dir: PathBuf,
    lake: LakeWriter,
    wal: Wal,
    opts: WalOptions,
    reserve: Reserve,
}

impl Flusher {
    /// Flushes the closed segments below `bound`. A full disk releases the reserve and tries
    /// once more at once.
    fn flush_closed(&mut self, bound: u64) -> Result<(), String> {
        let stats = Arc::clone(self.wal.stats());
        let closed: Vec<_> = match segments(&self.dir) {
            Ok(all) => all.into_iter().filter(|(n, _)| *n < bound).collect(),
            Err(e) => return Err(format!("cannot list the write-ahead log: {e}")),
        };
        if closed.is_empty() {
            return Ok(());
        }
        let mut result = flush_segments(&mut self.lake, &closed, &stats);
        if let Err(e) = &result
            && is_disk_full(e)
            && self.reserve.release(&stats)
        {
            result = flush_segments(&mut self.lake, &closed, &stats);
        }
        match result {
            Ok(()) => {
                if stats.bytes_unflushed.load(Ordering::Relaxed) == 0 {
                    *lock(&stats.oldest_unflushed) = None;
                }
                if lock(&stats.flush_error).take().is_some() {
                    info!("flushing the write-ahead log into the lake works again");
                }
                if !stats.reserve_held.load(Ordering::Relaxed) {
                    self.reserve.ensure(&stats);
                }
                Ok(())
            }
            Err(e) => {
                let why = e.to_string();
                note_flush_failure(&stats, &why);
                Err(format!("flushing the write-ahead log failed: {why}"))
            }
        }
    }

    /// Runs until `stop`; answers whether the last flush put everything into the lake.
    fn run(mut self, stop: Arc<AtomicBool>, jobs: Receiver<Job>) -> Result<(), String> {
        let mut last = Instant::now();
        let mut outcome = Ok(());
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
                        if last.elapsed() < self.opts.flush_interval {
                            continue;
                        }
                    }
                }
            }
            last = Instant::now();
            // Close the open segment so everything acknowledged so far is flushable; only
            // the segments below the writer's bound are touched.
            let Some(bound) = self.wal.rotate_blocking() else {
                if let Some(j) = job {
                    j(Err("the write-ahead log has shut down".into()))();
                }
                break;
            };
            let flushed = self.flush_closed(bound);
            outcome = flushed.clone();
            if let Some(j) = job {
                let ran = flushed.is_ok();
                let answer = j(flushed);
                if ran {
                    // The job may have rewritten or dropped files: the writer's id sets must
                    // mirror the files again, and readers must reopen their sessions.
                    self.lake.forget_ids();
                    self.wal
                        .stats()
                        .lake_generation
                        .fetch_add(1, Ordering::SeqCst);
                }
                answer();
            }
            if stopping {
                break;
            }
        }
        outcome.map_err(|e| {
            let left = segments(&self.dir).map(|s| s.len()).unwrap_or(0);
            format!(
                "{e}; {left} segment(s) of acknowledged events stay in {} and are flushed at the next start",
                self.dir.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::event::{EventBatchBuilder, EventRef, EventSink, Kind, Source};

    fn batch(id: &str) -> arrow::array::RecordBatch {
        let mut b = EventBatchBuilder::new(Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap());
        b.push(&EventRef::new(
            id,
            1_793_620_800_000_000,
            Source::AgentLog,
            Kind::ConversationOpened,
        ));
        b.finish()
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
            .unwrap()
            .unwrap();
        assert!(matches!(
            wal.run_exclusive(|| ()).await,
            Err(WalError::Closed)
        ));
    }
}
