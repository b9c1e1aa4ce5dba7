//! Bulk ingest: files (or stdin) of source records into the lake, in bounded memory.
//!
//! ```text
//!  reader (this thread)            decoders (N threads)              committer (1 thread)
//!  read 4 MiB blocks ──chunks──►  decode lines → Arrow batch ──►  reorder by chunk number
//!  cut at the last newline         + rejects with their raw line     → LakeWriter::append (dedupe)
//!  detect the source format                                          → quarantine rejects
//!  cut over-long lines                                               → flush at the end
//! ```
//! Channels are bounded, so a slow disk slows the reader instead of filling memory; the
//! writer's own budgets bound what it holds. Chunks are committed in input order, so the
//! first copy of a duplicated event is the one kept and a run is reproducible.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::EventBatchBuilder;
use crate::lake::quarantine::{Quarantine, RAW_PREFIX};
use crate::lake::{LakeError, LakeLock, LakePaths, LakeWriter, WriterOptions};
use crate::pseudonym::{PseudonymKey, Pseudonymizer};
use crate::sources::{self, Position, Reject, Report, SourceFormat, codes};

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "-".into(),
        }
    }
}

/// The longest line of JSON Lines kept by default, by `ingest` and by `POST /ingest/events`
/// alike; a longer line is rejected ([`too_long`]).
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// The clock that stamps `received_at` (a parameter so tests can fix it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// `None` detects the format of each input from its first records.
    pub format: Option<SourceFormat>,
    /// Longer lines are rejected without being held in memory.
    pub max_line_bytes: usize,
    /// Bytes read per chunk handed to a decoder.
    pub chunk_bytes: usize,
    /// Decoder threads.
    pub workers: usize,
    /// Largest pretty-printed JSON document (not JSON Lines) read as a whole.
    pub max_document_bytes: usize,
    pub writer: WriterOptions,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            format: None,
            max_line_bytes: MAX_LINE_BYTES,
            chunk_bytes: 2 << 20,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_document_bytes: 64 << 20,
            writer: WriterOptions::default(),
        }
    }
}

/// Progress reporting hooks (the CLI draws a bar; tests pass [`NoProgress`]).
pub trait Progress: Sync {
    fn start(&self, _total_bytes: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// What an ingest run did: the receipt printed at the end and answered over HTTP.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Receipt {
    pub inputs: u64,
    pub bytes_read: u64,
    /// Non-blank lines (or document elements) read.
    pub records: u64,
    /// Events decoded from the records.
    pub events: u64,
    /// Events stored (new to the lake).
    pub accepted: u64,
    /// Events already in the lake, or repeated in the input: stored once.
    pub duplicates: u64,
    /// Records with at least one reject.
    pub rejected_records: u64,
    /// Rejects by reason class.
    pub rejected: BTreeMap<String, u64>,
    /// Valid input that carries nothing stored, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The first rejects, for people.
    pub examples: Vec<String>,
    /// Where rejected records were kept.
    pub rejected_file: Option<PathBuf>,
    pub files_written: u64,
    pub partitions: BTreeSet<String>,
    pub elapsed_ms: u64,
}

impl Receipt {
    pub fn total_rejects(&self) -> u64 {
        self.rejected.values().sum()
    }
}

const EXAMPLES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("cannot read {input}: {source}")]
    Input {
        input: String,
        #[source]
        source: io::Error,
    },
    #[error("a pipeline thread stopped unexpectedly: {0}")]
    Pipeline(String),
}

/// One unit of work for a decoder, numbered for in-order commit.
enum Work {
    Lines {
        seq: u64,
        input: usize,
        format: Option<SourceFormat>,
        first_line: u64,
        data: Vec<u8>,
    },
    /// A line too long to hold: only its start was kept.
    LongLine {
        seq: u64,
        input: usize,
        line: u64,
        prefix: Vec<u8>,
        total_len: u64,
    },
}

struct RejectedRecord {
    record: u64,
    rejects: Vec<Reject>,
    raw: Vec<u8>,
    total_len: u64,
}

struct Decoded {
    seq: u64,
    input: usize,
    batch: Option<RecordBatch>,
    report: Report,
    records: u64,
    rejected: Vec<RejectedRecord>,
    bytes: u64,
}

/// Ingests `inputs` into the lake at `paths`. Holds the lake lock for the run.
pub fn ingest(
    paths: &LakePaths,
    inputs: &[Input],
    opts: &IngestOptions,
    key: &PseudonymKey,
    clock: Clock,
    run_id: &str,
    progress: &dyn Progress,
) -> Result<Receipt, IngestError> {
    let started = Instant::now();
    let _lock = LakeLock::acquire(paths, &format!("ingest, pid {}", std::process::id()))?;
    let mut writer = LakeWriter::open(paths.clone(), opts.writer.clone())?;
    let total: Option<u64> = inputs
        .iter()
        .map(|i| match i {
            Input::Path(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Stdin => None,
        })
        .sum();
    progress.start(total);
    let names: Vec<String> = inputs.iter().map(Input::name).collect();
    let workers = opts.workers.max(1);
    let (work_tx, work_rx) = sync_channel::<Work>(workers * 2);
    let (done_tx, done_rx) = sync_channel::<Decoded>(workers * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let pseudonymizer = Pseudonymizer::new(key);

    let result = std::thread::scope(|scope| {
        // Owned here, so any early return drops it and stops the decoders.
        let work_tx = work_tx;
        for _ in 0..workers {
            let rx = Arc::clone(&work_rx);
            let tx = done_tx.clone();
            let p = pseudonymizer.clone();
            let clock = Arc::clone(&clock);
            let max_line = opts.max_line_bytes;
            std::thread::Builder::new()
                .name("ingest-decode".into())
                .spawn_scoped(scope, move || decode_worker(&rx, &tx, p, &clock, max_line))
                .map_err(|e| IngestError::Pipeline(format!("cannot start a decoder: {e}")))?;
        }
        drop(done_tx);
        let committer = std::thread::Builder::new()
            .name("ingest-commit".into())
            .spawn_scoped(scope, || {
                commit(done_rx, &mut writer, paths, run_id, &names, progress)
            })
            .map_err(|e| IngestError::Pipeline(format!("cannot start the committer: {e}")))?;
        let read_result = read_inputs(inputs, opts, &work_tx);
        drop(work_tx);
        let commit_result = committer
            .join()
            .map_err(|_| IngestError::Pipeline("the committer panicked".into()))?;
        // A failed commit closes the channels, which stops the reader with a send error;
        // report the commit failure, the real cause.
        let receipt = commit_result?;
        read_result?;
        Ok::<_, IngestError>(receipt)
    });
    progress.finish();
    let mut receipt = result?;
    receipt.inputs = inputs.len() as u64;
    receipt.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(receipt)
}

fn decode_worker(
    rx: &Mutex<Receiver<Work>>,
    tx: &SyncSender<Decoded>,
    mut pseudonymizer: Pseudonymizer,
    clock: &Clock,
    max_line: usize,
) {
    let mut builder = EventBatchBuilder::new(clock());
    loop {
        let work = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(work) = work else { return };
        let out = match work {
            Work::LongLine {
                seq,
                input,
                line,
                prefix,
                total_len,
            } => {
                let reject = too_long(line, total_len, max_line);
                let mut report = Report::default();
                report.rejects.push(reject.clone());
                Decoded {
                    seq,
                    input,
                    batch: None,
                    report,
                    records: 1,
                    rejected: vec![RejectedRecord {
                        record: line,
                        rejects: vec![reject],
                        raw: prefix,
                        total_len,
                    }],
                    bytes: total_len,
                }
            }
            Work::Lines {
                seq,
                input,
                format,
                first_line,
                data,
            } => {
                builder.set_received_at(clock());
                let mut report = Report::default();
                let mut rejected = Vec::new();
                let mut records = 0;
                let body = data.strip_suffix(b"\n").unwrap_or(&data);
                for (this, line) in (first_line..).zip(body.split(|b| *b == b'\n')) {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    records += 1;
                    let before = report.rejects.len();
                    if line.len() > max_line {
                        report
                            .rejects
                            .push(too_long(this, line.len() as u64, max_line));
                    } else {
                        match format.or_else(|| SourceFormat::detect(line)) {
                            Some(f) => sources::decode_record(
                                f,
                                line,
                                this,
                                &mut pseudonymizer,
                                &mut builder,
                                &mut report,
                            ),
                            None => report.reject(
                                this,
                                "",
                                "",
                                codes::WRONG_SOURCE,
                                "cannot tell which source sent this record (not a WhatsApp, \
                                 Chatwoot or agent-log record); name it with --source",
                            ),
                        }
                    }
                    if report.rejects.len() > before {
                        let keep = line.len().min(if line.len() > max_line {
                            RAW_PREFIX
                        } else {
                            line.len()
                        });
                        rejected.push(RejectedRecord {
                            record: this,
                            rejects: report.rejects.drain(before..).collect(),
                            raw: line[..keep].to_vec(),
                            total_len: line.len() as u64,
                        });
                    }
                }
                // Rejects travel with their records; keep only counts in the report.
                for r in &rejected {
                    report.rejects.extend(r.rejects.iter().cloned());
                }
                let batch = (!builder.is_empty()).then(|| builder.finish());
                Decoded {
                    seq,
                    input,
                    batch,
                    report,
                    records,
                    rejected,
                    bytes: data.len() as u64,
                }
            }
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}

/// The reject of a line of `len` bytes, over the limit of `max`.
pub fn too_long(line: u64, len: u64, max: usize) -> Reject {
    Reject {
        position: Position {
            record: line,
            pointer: String::new(),
        },
        field: String::new(),
        code: codes::TOO_LONG,
        reason: format!(
            "line of {len} bytes is longer than the limit of {max} bytes (--max-line-bytes)"
        ),
    }
}

fn commit(
    rx: Receiver<Decoded>,
    writer: &mut LakeWriter,
    paths: &LakePaths,
    run_id: &str,
    names: &[String],
    progress: &dyn Progress,
) -> Result<Receipt, IngestError> {
    let mut receipt = Receipt::default();
    let mut quarantine = Quarantine::new(paths, run_id);
    let mut waiting: BTreeMap<u64, Decoded> = BTreeMap::new();
    let mut next = 0u64;
    for d in rx {
        waiting.insert(d.seq, d);
        while let Some(d) = waiting.remove(&next) {
            next += 1;
            let input = names.get(d.input).map_or("?", String::as_str);
            receipt.bytes_read += d.bytes;
            receipt.records += d.records;
            receipt.events += d.report.events;
            for r in &d.report.rejects {
                *receipt.rejected.entry(r.code.to_owned()).or_default() += 1;
                if receipt.examples.len() < EXAMPLES {
                    receipt.examples.push(format!("{input}: {r}"));
                }
            }
            for (k, v) in &d.report.skipped {
                *receipt.skipped.entry((*k).to_owned()).or_default() += v;
            }
            receipt.rejected_records += d.rejected.len() as u64;
            for r in &d.rejected {
                quarantine.keep(input, r.record, &r.rejects, &r.raw, r.total_len)?;
            }
            if let Some(batch) = &d.batch {
                let outcome = writer.append(batch)?;
                receipt.accepted += outcome.accepted;
                receipt.duplicates += outcome.duplicates;
            }
            progress.advance(d.bytes);
        }
    }
    writer.flush()?;
    receipt.rejected_file = quarantine.finish()?;
    receipt.files_written = writer.written().len() as u64;
    receipt.partitions = writer
        .written()
        .iter()
        .map(|f| f.partition.to_string())
        .collect();
    Ok(receipt)
}

/// Reads every input into numbered chunks of whole lines.
fn read_inputs(
    inputs: &[Input],
    opts: &IngestOptions,
    tx: &SyncSender<Work>,
) -> Result<(), IngestError> {
    let mut seq = 0u64;
    let send = |w: Work| {
        tx.send(w)
            .map_err(|_| IngestError::Pipeline("the decoders stopped".into()))
    };
    for (index, input) in inputs.iter().enumerate() {
        let name = input.name();
        let io_err = |source: io::Error| IngestError::Input {
            input: name.clone(),
            source,
        };
        let mut reader: Box<dyn Read> = match input {
            Input::Path(p) => Box::new(File::open(p).map_err(io_err)?),
            Input::Stdin => Box::new(io::stdin().lock()),
        };
        let mut format = opts.format;
        let mut detected = opts.format.is_some();
        let mut buf: Vec<u8> = Vec::with_capacity(opts.chunk_bytes + 64 * 1024);
        let mut line_no: u64 = 1;
        let mut first_block = true;
        let mut eof = false;
        while !eof {
            let start = buf.len();
            buf.resize(start + opts.chunk_bytes, 0);
            let n = read_full(&mut reader, &mut buf[start..]).map_err(io_err)?;
            buf.truncate(start + n);
            eof = n == 0;

            if first_block && !buf.is_empty() {
                first_block = false;
                if sources::looks_like_document(&buf) {
                    let mut rest = Vec::new();
                    reader
                        .take(opts.max_document_bytes as u64 + 1)
                        .read_to_end(&mut rest)
                        .map_err(io_err)?;
                    buf.extend_from_slice(&rest);
                    send_document(&mut seq, index, format, &buf, opts, tx)?;
                    break;
                }
            }
            if !detected && let Some(f) = detect_in(&buf) {
                format = Some(f);
                detected = true;
            }
            let cut = if eof {
                buf.len()
            } else {
                match memchr::memrchr(b'\n', &buf) {
                    Some(p) => p + 1,
                    None => 0,
                }
            };
            if cut > 0 {
                let rest = buf.split_off(cut);
                let lines = memchr::memchr_iter(b'\n', &buf).count() as u64
                    + u64::from(!buf.ends_with(b"\n"));
                let data = std::mem::replace(&mut buf, rest);
                send(Work::Lines {
                    seq,
                    input: index,
                    format,
                    first_line: line_no,
                    data,
                })?;
                seq += 1;
                line_no += lines;
            } else if buf.len() > opts.max_line_bytes {
                // One line longer than allowed: keep its start, skip to its end.
                let prefix = buf[..RAW_PREFIX.min(buf.len())].to_vec();
                let mut total = buf.len() as u64;
                buf.clear();
                let mut block = vec![0u8; 1 << 20];
                loop {
                    let n = read_full(&mut reader, &mut block).map_err(io_err)?;
                    if n == 0 {
                        eof = true;
                        break;
                    }
                    if let Some(p) = memchr::memchr(b'\n', &block[..n]) {
                        total += p as u64;
                        buf.extend_from_slice(&block[p + 1..n]);
                        break;
                    }
                    total += n as u64;
                }
                send(Work::LongLine {
                    seq,
                    input: index,
                    line: line_no,
                    prefix,
                    total_len: total,
                })?;
                seq += 1;
                line_no += 1;
            }
        }
    }
    Ok(())
}

/// Reads until the buffer is full or the input ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The format of the first records that tell.
fn detect_in(buf: &[u8]) -> Option<SourceFormat> {
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .take(100)
        .find_map(SourceFormat::detect)
}

/// Sends a whole JSON document: an object is one record, an array one record per element.
/// Elements are re-cut as lines (JSON strings cannot hold raw newlines, so replacing the
/// layout's newlines with spaces changes nothing inside them).
fn send_document(
    seq: &mut u64,
    input: usize,
    format: Option<SourceFormat>,
    doc: &[u8],
    opts: &IngestOptions,
    tx: &SyncSender<Work>,
) -> Result<(), IngestError> {
    let send = |w: Work| {
        tx.send(w)
            .map_err(|_| IngestError::Pipeline("the decoders stopped".into()))
    };
    if doc.len() > opts.max_document_bytes {
        let prefix = doc[..RAW_PREFIX.min(doc.len())].to_vec();
        send(Work::LongLine {
            seq: *seq,
            input,
            line: 1,
            prefix,
            total_len: doc.len() as u64,
        })?;
        *seq += 1;
        return Ok(());
    }
    let data = sources::document_lines(doc);
    let format = format.or_else(|| detect_in(&data));
    send(Work::Lines {
        seq: *seq,
        input,
        format,
        first_line: 1,
        data,
    })?;
    *seq += 1;
    Ok(())
}
