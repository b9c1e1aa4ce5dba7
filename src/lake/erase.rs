//! Erasure of one customer (LGPD art. 18: the data subject's right to have their data
//! deleted), with an audit record of what was done.
//!
//! # Vocabulary
//!
//! - **customer key** `K`: the pseudonym the lake knows the customer by
//!   ([`crate::pseudonym`]). An erasure is asked for by phone number, contact id or `K`.
//! - **the customer's conversations** `C`: every `conversation_id` (events) or `conv`
//!   (derived tables) of a row whose `customer_key` is `K`, in any Parquet file of the lake.
//! - **the customer's rows**: rows with `customer_key = K`, rows whose `conversation_id` or
//!   `conv` is in `C` (agent assignments, resolutions and other events of those
//!   conversations that carry no customer), and rows whose `conv` starts with `session:K:`
//!   (sessions of loose WhatsApp messages).
//!
//! # What is rewritten
//!
//! 1. Leftovers that might hold old copies: partitions a crashed retention run left under
//!    `_expired/`, temp files of interrupted writes.
//! 2. The write-ahead log segments (only when no server is running: the server flushes its
//!    log into Parquet and trims it before erasing, see [`super::wal::Wal::run_exclusive`]).
//! 3. The quarantine (`_rejected/*.jsonl`): every line that names the customer — `K`, the
//!    phone number in any notation, the contact id, or any value in the raw record that
//!    pseudonymizes to `K` — is dropped.
//! 4. Every `*.parquet` file under every table directory (events, derived tables, files a
//!    compacted file covers): the customer's rows are dropped; the file keeps its name, and
//!    becomes an empty file of the same schema if nothing is left ([`super::rewrite`]).
//!
//! 5. Damaged files kept for inspection (`_damaged/`, `_wal/damaged/`): removed unless
//!    they can be shown to hold none of the customer's data.
//!
//! A data file that turns out damaged on the way is moved aside first (to `_damaged/`),
//! then dealt with as in 5.
//!
//! Files without the customer's data are not touched, so a second erasure of the same
//! customer changes nothing (it still writes an audit record saying it found nothing).
//!
//! # Crash safety
//!
//! Each file is replaced atomically. Before the first one, the plan — `K` and `C` — is
//! written to `_audit/pending-erasure.json`, and it is updated after each file with the
//! counts so far: a rerun (of any erasure, or `serve` at start) finishes an interrupted
//! erasure from there even though the files already rewritten no longer name `C`. The plan
//! is deleted once the audit record is written. While an erasure is unfinished, that plan is
//! the one place in the lake that holds `K` on purpose.
//!
//! # The audit record
//!
//! One JSON line per erasure in `_audit/erasures.jsonl`, fsynced: id, when, who (`cli` and
//! the OS user, or `http` and which admin token by its position), rows removed per table,
//! files rewritten (relative paths), counts from the log and the quarantine. It never holds
//! the phone number, the contact id, `K` or anything derived from them.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::paths::{DATA_EXT, LakePaths};
use super::retention::{self, relative, table_dirs};
use super::rewrite::{self, is_temp_name};
use super::wal;
use super::writer::{create_dir_durable, file_name, list_dir, sync_dir};
use super::{LakeError, Result as LakeResult};
use crate::event::col;
use crate::pseudonym::{Identity, PseudonymKey, Pseudonymizer, normalize_identity};

/// The audit log, under `_audit/`.
pub const AUDIT_FILE: &str = "erasures.jsonl";
/// The plan of an unfinished erasure, under `_audit/`.
pub const PENDING_FILE: &str = "pending-erasure.json";
/// The column derived tables name their conversation by.
pub const CONV: &str = "conv";

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(
        "a customer key is 64 hexadecimal characters (hex of an HMAC-SHA256); this one has {0} characters"
    )]
    BadKey(usize),
    #[error("the customer to erase is empty")]
    EmptyIdentity,
    #[error("{path}: the plan of an interrupted erasure cannot be read: {reason}")]
    Pending { path: PathBuf, reason: String },
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = EraseError> = std::result::Result<T, E>;

/// Whom to erase. `Debug` shows neither the identity nor the key.
#[derive(Clone)]
pub struct Target {
    key: String,
    identity: Option<Identity>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target(<{}, redacted>)", self.identified_by())
    }
}

impl Target {
    /// A customer by phone number (any notation) or source contact id.
    pub fn from_identity(raw: &str, key: &PseudonymKey) -> Result<Target> {
        let identity = normalize_identity(raw).ok_or(EraseError::EmptyIdentity)?;
        let k = Pseudonymizer::new(key).key_of(&identity);
        Ok(Target {
            key: k,
            identity: Some(identity),
        })
    }

    /// A customer by their customer key (64 hex characters).
    pub fn from_key(hex: &str) -> Result<Target> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EraseError::BadKey(hex.chars().count()));
        }
        Ok(Target {
            key: hex.to_ascii_lowercase(),
            identity: None,
        })
    }

    /// A customer key when `s` looks like one (64 hex characters), else a phone number or
    /// contact id.
    pub fn parse(s: &str, key: &PseudonymKey) -> Result<Target> {
        let t = s.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Target::from_key(t)
        } else {
            Target::from_identity(t, key)
        }
    }

    /// The customer key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How the customer was named: `phone`, `contact_id` or `customer_key`.
    pub fn identified_by(&self) -> &'static str {
        match &self.identity {
            Some(Identity::Phone(_)) => "phone",
            Some(Identity::ContactId(_)) => "contact_id",
            None => "customer_key",
        }
    }
}

/// Who asked for an erasure: `via` is `cli` or `http`; `who` names the OS user or the admin
/// token by its position in `SUPPORTLAKE_TOKENS` — never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub via: String,
    pub who: String,
}

/// What happened to the write-ahead log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalCounts {
    /// The server flushed the log into Parquet and trimmed it first, so the rows were
    /// erased from Parquet instead.
    pub flushed_first: bool,
    pub segments_rewritten: u64,
    pub events_removed: u64,
}

/// What happened to the quarantine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineCounts {
    pub files_rewritten: u64,
    /// Files every line of which named the customer.
    pub files_removed: u64,
    pub lines_removed: u64,
}

/// The audit record of one erasure (one line of `_audit/erasures.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRecord {
    pub erasure_id: String,
    pub requested_at: DateTime<Utc>,
    pub actor: Actor,
    /// `phone`, `contact_id` or `customer_key`: how the customer was named (not the value).
    pub identified_by: String,
    /// How many conversations of the customer were found.
    pub conversations: u64,
    /// Rows removed, by table (top directory under the lake).
    pub rows_removed: BTreeMap<String, u64>,
    /// Data files rewritten, relative to the lake.
    pub files_rewritten: Vec<String>,
    pub wal: WalCounts,
    pub quarantine: QuarantineCounts,
    /// Leftovers of interrupted writes and retention runs removed on the way.
    pub leftovers_removed: u64,
    /// Damaged files (moved aside data files, kept log bytes) removed because they could
    /// not be shown to be free of the customer's data.
    #[serde(default)]
    pub damaged_removed: Vec<String>,
    /// Times the erasure was interrupted and taken up again.
    pub resumed: u32,
    pub duration_ms: u64,
}

impl ErasureRecord {
    pub fn total_rows(&self) -> u64 {
        self.rows_removed.values().sum()
    }
}

/// How an erasure runs.
#[derive(Debug, Clone, Default)]
pub struct EraseOptions {
    /// Rewrite the write-ahead log segments too. Only with no server running (the CLI, under
    /// the lake lock); the server flushes its log first instead.
    pub rewrite_wal: bool,
    /// Test hook: abort the process after this many files were replaced, to prove a rerun
    /// finishes the job.
    pub abort_after_files: Option<u64>,
}

/// An erasure done, and any interrupted one finished before it.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub record: ErasureRecord,
    pub finished_before: Option<ErasureRecord>,
}

/// The plan on disk while an erasure runs.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    customer_key: String,
    conversations: BTreeSet<String>,
    record: ErasureRecord,
}

/// Erases a customer; see the module docs. An erasure a crash interrupted is finished first
/// — continued, when it was this customer's.
pub fn erase(
    paths: &LakePaths,
    target: &Target,
    key: &PseudonymKey,
    actor: Actor,
    now: DateTime<Utc>,
    opts: &EraseOptions,
) -> Result<Erasure> {
    let mut finished_before = None;
    let pending = match read_pending(paths)? {
        Some(mut p) if p.customer_key == target.key => {
            p.record.resumed += 1;
            info!(erasure = %p.record.erasure_id, "continuing an interrupted erasure of the same customer");
            p
        }
        other => {
            if let Some(mut p) = other {
                p.record.resumed += 1;
                info!(erasure = %p.record.erasure_id, "finishing an interrupted erasure first");
                finished_before = Some(run(paths, p, None, key, opts)?);
            }
            Pending {
                customer_key: target.key.clone(),
                conversations: BTreeSet::new(),
                record: ErasureRecord {
                    erasure_id: format!(
                        "erasure-{}-{:08x}",
                        now.format("%Y%m%dT%H%M%SZ"),
                        rand::random::<u32>()
                    ),
                    requested_at: now,
                    actor,
                    identified_by: target.identified_by().into(),
                    conversations: 0,
                    rows_removed: BTreeMap::new(),
                    files_rewritten: Vec::new(),
                    wal: WalCounts::default(),
                    quarantine: QuarantineCounts::default(),
                    leftovers_removed: 0,
                    damaged_removed: Vec::new(),
                    resumed: 0,
                    duration_ms: 0,
                },
            }
        }
    };
    let record = run(paths, pending, target.identity.as_ref(), key, opts)?;
    Ok(Erasure {
        record,
        finished_before,
    })
}

/// Finishes an erasure a crash interrupted, if there is one (the server calls it at start).
pub fn finish_interrupted(
    paths: &LakePaths,
    key: &PseudonymKey,
    opts: &EraseOptions,
) -> Result<Option<ErasureRecord>> {
    match read_pending(paths)? {
        Some(mut p) => {
            p.record.resumed += 1;
            Ok(Some(run(paths, p, None, key, opts)?))
        }
        None => Ok(None),
    }
}

/// Whether an erasure is unfinished.
pub fn is_pending(paths: &LakePaths) -> bool {
    paths.audit().join(PENDING_FILE).exists()
}

fn read_pending(paths: &LakePaths) -> Result<Option<Pending>> {
    let path = paths.audit().join(PENDING_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| EraseError::Pending {
                path,
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LakeError::io(&path, e).into()),
    }
}

struct Run<'a> {
    paths: &'a LakePaths,
    pending: Pending,
    opts: &'a EraseOptions,
    replaced: u64,
}

impl Run<'_> {
    fn save(&self) -> Result<()> {
        let dir = self.paths.audit();
        create_dir_durable(&dir)?;
        let json = serde_json::to_vec_pretty(&self.pending).map_err(|e| EraseError::Pending {
            path: dir.join(PENDING_FILE),
            reason: e.to_string(),
        })?;
        rewrite::replace_bytes(&dir.join(PENDING_FILE), &json)?;
        Ok(())
    }

    /// Records progress after a file was replaced; the abort hook fires here.
    fn file_done(&mut self) -> Result<()> {
        self.save()?;
        self.replaced += 1;
        if self.opts.abort_after_files == Some(self.replaced) {
            warn!(
                files = self.replaced,
                "aborting the erasure on purpose (test hook)"
            );
            std::process::abort();
        }
        Ok(())
    }
}

fn run(
    paths: &LakePaths,
    pending: Pending,
    identity: Option<&Identity>,
    key: &PseudonymKey,
    opts: &EraseOptions,
) -> Result<ErasureRecord> {
    let started = Instant::now();
    let mut r = Run {
        paths,
        pending,
        opts,
        replaced: 0,
    };
    let k = r.pending.customer_key.clone();

    r.pending.record.leftovers_removed += retention::sweep(paths)? + remove_leftovers(paths, opts)?;
    let found = conversations_of(paths, &k, opts.rewrite_wal)?;
    r.pending.conversations.extend(found);
    r.pending.record.conversations = r.pending.conversations.len() as u64;
    r.save()?;

    let conversations: HashSet<String> = r.pending.conversations.iter().cloned().collect();
    let rows = RowFilter {
        key: &k,
        session_prefix: format!("session:{k}:"),
        conversations: &conversations,
    };

    if opts.rewrite_wal {
        erase_wal(&mut r, &rows)?;
    } else {
        r.pending.record.wal.flushed_first = true;
    }
    let mut matcher = LineMatcher {
        key: &k,
        identity,
        pseudonymizer: Pseudonymizer::new(key),
    };
    erase_quarantine(&mut r, &mut matcher)?;
    erase_parquet(&mut r, &rows)?;
    erase_damaged(&mut r, &rows)?;

    r.pending.record.duration_ms += started.elapsed().as_millis() as u64;
    let record = r.pending.record.clone();
    append_audit(paths, &record)?;
    rewrite::remove_durably(&paths.audit().join(PENDING_FILE))?;
    info!(
        erasure = %record.erasure_id,
        rows = record.total_rows(),
        files = record.files_rewritten.len(),
        quarantine_lines = record.quarantine.lines_removed,
        wal_events = record.wal.events_removed,
        "erasure done"
    );
    Ok(record)
}

/// Temp files of interrupted writes (they may hold copies of the customer's rows): under
/// the tables, the quarantine, the audit folder and, when no server runs, the log.
fn remove_leftovers(paths: &LakePaths, opts: &EraseOptions) -> Result<u64> {
    let mut dirs = vec![paths.rejected(), paths.audit()];
    if opts.rewrite_wal {
        dirs.push(paths.wal());
    }
    let mut removed = 0;
    for table in table_dirs(paths)? {
        let mut stack = vec![table];
        while let Some(d) = stack.pop() {
            for p in list_dir(&d)? {
                let name = file_name(&p);
                if p.is_dir() {
                    if !name.starts_with('.') {
                        stack.push(p);
                    }
                } else if is_temp_name(&name) {
                    rewrite::remove_durably(&p)?;
                    removed += 1;
                }
            }
        }
    }
    for d in dirs {
        for p in list_dir(&d)? {
            if p.is_file() && is_temp_name(&file_name(&p)) {
                rewrite::remove_durably(&p)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Every Parquet data file of the lake, by table; `events` last.
fn parquet_files(paths: &LakePaths) -> Result<Vec<(String, PathBuf)>> {
    let mut tables = table_dirs(paths)?;
    tables.sort_by_key(|t| (file_name(t) == crate::lake::paths::EVENTS, file_name(t)));
    let mut out = Vec::new();
    for table in tables {
        let name = file_name(&table);
        let mut stack = vec![table];
        let mut files = Vec::new();
        while let Some(d) = stack.pop() {
            for p in list_dir(&d)? {
                let n = file_name(&p);
                if n.starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == DATA_EXT) {
                    files.push(p);
                }
            }
        }
        files.sort();
        out.extend(files.into_iter().map(|f| (name.clone(), f)));
    }
    Ok(out)
}

/// A column as strings (derived tables may store ids as views or dictionaries).
fn strings(batch: &RecordBatch, name: &str) -> LakeResult<Option<ArrayRef>> {
    let Some(c) = batch.column_by_name(name) else {
        return Ok(None);
    };
    Ok(Some(if c.data_type() == &DataType::Utf8 {
        c.clone()
    } else {
        cast(c, &DataType::Utf8)?
    }))
}

fn as_str(a: &ArrayRef) -> &StringArray {
    a.as_any()
        .downcast_ref::<StringArray>()
        .unwrap_or_else(|| unreachable!("cast to Utf8 gives a StringArray"))
}

/// The conversation ids of the customer's rows, from every Parquet file (and the log's
/// segments when asked).
fn conversations_of(paths: &LakePaths, k: &str, with_wal: bool) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut collect = |batch: &RecordBatch| -> Result<()> {
        let Some(keys) = strings(batch, col::CUSTOMER_KEY)? else {
            return Ok(());
        };
        let keys = as_str(&keys);
        for name in [col::CONVERSATION_ID, CONV] {
            let Some(ids) = strings(batch, name)? else {
                continue;
            };
            let ids = as_str(&ids);
            for i in 0..batch.num_rows() {
                if keys.is_valid(i) && keys.value(i) == k && ids.is_valid(i) {
                    out.insert(ids.value(i).to_owned());
                }
            }
        }
        Ok(())
    };
    for (_, path) in parquet_files(paths)? {
        each_matching(paths, &path, &mut collect)?;
    }
    if with_wal {
        for (_, seg) in wal::segments(&paths.wal())? {
            for b in wal::read_segment(&seg)?.batches {
                collect(&b)?;
            }
        }
    }
    Ok(out)
}

const MATCH_COLUMNS: [&str; 3] = [col::CUSTOMER_KEY, col::CONVERSATION_ID, CONV];

/// Calls `f` with each batch of the columns an erasure looks at. A file found damaged on
/// the way is moved aside (erasure then deals with it among the damaged files) and
/// `false` is answered; `true` when the file was read whole.
fn each_matching(
    paths: &LakePaths,
    path: &Path,
    f: &mut dyn FnMut(&RecordBatch) -> Result<()>,
) -> Result<bool> {
    let damaged = |e: &LakeError| match e {
        LakeError::Parquet { source, .. } if super::damage::is_damage(source) => {
            Some(source.to_string())
        }
        _ => None,
    };
    let reader = match projected(path) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(true),
        Err(EraseError::Lake(e)) => match damaged(&e) {
            Some(why) => {
                super::damage::quarantine(paths, path, &why, std::time::SystemTime::now())?;
                return Ok(false);
            }
            None => return Err(e.into()),
        },
        Err(e) => return Err(e),
    };
    for b in reader {
        match b.map_err(|e| LakeError::parquet(path, e.into())) {
            Ok(b) => f(&b)?,
            Err(e) => match damaged(&e) {
                Some(why) => {
                    super::damage::quarantine(paths, path, &why, std::time::SystemTime::now())?;
                    return Ok(false);
                }
                None => return Err(e.into()),
            },
        }
    }
    Ok(true)
}

/// A reader of only the columns an erasure looks at; `None` when the file has none of them.
fn projected(
    path: &Path,
) -> Result<Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>> {
    let file = File::open(path).map_err(|e| LakeError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| LakeError::parquet(path, e))?;
    let idx: Vec<usize> = MATCH_COLUMNS
        .iter()
        .filter_map(|n| builder.schema().index_of(n).ok())
        .collect();
    if idx.is_empty() {
        return Ok(None);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
    Ok(Some(
        builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| LakeError::parquet(path, e))?,
    ))
}

/// Which rows are the customer's.
struct RowFilter<'a> {
    key: &'a str,
    session_prefix: String,
    conversations: &'a HashSet<String>,
}

impl RowFilter<'_> {
    /// `true` for each of the customer's rows (no nulls); `None` when the batch has none of
    /// the columns that can say.
    fn erased(&self, batch: &RecordBatch) -> LakeResult<Option<BooleanArray>> {
        let keys = strings(batch, col::CUSTOMER_KEY)?;
        let ids = strings(batch, col::CONVERSATION_ID)?;
        let conv = strings(batch, CONV)?;
        if keys.is_none() && ids.is_none() && conv.is_none() {
            return Ok(None);
        }
        let keys = keys.as_ref().map(as_str);
        let ids = ids.as_ref().map(as_str);
        let conv = conv.as_ref().map(as_str);
        let hit = |a: Option<&StringArray>, i: usize, f: &dyn Fn(&str) -> bool| {
            a.is_some_and(|a| a.is_valid(i) && f(a.value(i)))
        };
        let mask: Vec<bool> = (0..batch.num_rows())
            .map(|i| {
                hit(keys, i, &|v| v == self.key)
                    || hit(ids, i, &|v| self.conversations.contains(v))
                    || hit(conv, i, &|v| {
                        self.conversations.contains(v) || v.starts_with(&self.session_prefix)
                    })
            })
            .collect();
        Ok(Some(BooleanArray::from(mask)))
    }

    /// The batch without the customer's rows, and how many were dropped.
    fn keep(&self, batch: RecordBatch) -> LakeResult<(RecordBatch, u64)> {
        match self.erased(&batch)? {
            Some(m) if m.true_count() > 0 => {
                let keep = arrow::compute::not(&m)?;
                Ok((filter_record_batch(&batch, &keep)?, m.true_count() as u64))
            }
            _ => Ok((batch, 0)),
        }
    }
}

fn erase_parquet(r: &mut Run<'_>, rows: &RowFilter<'_>) -> Result<()> {
    for (table, path) in parquet_files(r.paths)? {
        let mut hits = 0u64;
        let whole = each_matching(r.paths, &path, &mut |b| {
            if let Some(m) = rows.erased(b)? {
                hits += m.true_count() as u64;
            }
            Ok(())
        })?;
        if hits == 0 || !whole {
            continue;
        }
        let file = File::open(&path).map_err(|e| LakeError::io(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| LakeError::parquet(&path, e))?;
        let schema = builder.schema().clone();
        let mut reader = builder
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| LakeError::parquet(&path, e))?;
        let mut removed = 0u64;
        let replaced = rewrite::replace_parquet(&path, schema, || {
            for b in reader.by_ref() {
                let (kept, n) = rows.keep(b?)?;
                removed += n;
                if kept.num_rows() > 0 {
                    return Ok(Some(kept));
                }
            }
            Ok(None)
        })?;
        let rel = relative(r.paths, &path);
        info!(file = %rel, removed, kept = replaced.rows, "rewrote a data file without the customer's rows");
        *r.pending.record.rows_removed.entry(table).or_default() += removed;
        r.pending.record.files_rewritten.push(rel);
        r.file_done()?;
    }
    Ok(())
}

fn erase_wal(r: &mut Run<'_>, rows: &RowFilter<'_>) -> Result<()> {
    for (_, seg) in wal::segments(&r.paths.wal())? {
        let raw = fs::read(&seg).map_err(|e| LakeError::io(&seg, e))?;
        let mut kept = Vec::new();
        let mut removed = 0u64;
        // Bytes that do not read are not kept: they may hold the key (see the tail check).
        for b in wal::read_segment(&seg)?.batches {
            let (b, n) = rows.keep(b)?;
            removed += n;
            if b.num_rows() > 0 {
                kept.push(b);
            }
        }
        // A torn tail (never acknowledged, ignored by replay) may still hold the key.
        let in_tail = memchr::memmem::find(&raw, rows.key.as_bytes()).is_some();
        if removed == 0 && !in_tail {
            continue;
        }
        rewrite::replace_bytes(&seg, &wal::encode_segment(&kept)?)?;
        info!(segment = %seg.display(), removed, "rewrote a write-ahead log segment without the customer's events");
        r.pending.record.wal.segments_rewritten += 1;
        r.pending.record.wal.events_removed += removed;
        r.file_done()?;
    }
    Ok(())
}

/// Damaged files kept for inspection: a moved-aside data file stays only when the columns
/// that name customers read whole and hold none of the customer's rows; a run of damaged
/// log bytes stays only when the key is not in it (the log's records are not compressed,
/// so the key would be there as text). Everything else is removed.
fn erase_damaged(r: &mut Run<'_>, rows: &RowFilter<'_>) -> Result<()> {
    let mut doomed = Vec::new();
    for d in super::damage::list(r.paths) {
        let clean = (|| -> Result<bool> {
            let Some(reader) = projected(&d.path)? else {
                return Ok(true);
            };
            for b in reader {
                let b = b.map_err(LakeError::Arrow)?;
                if rows.erased(&b)?.is_some_and(|m| m.true_count() > 0) {
                    return Ok(false);
                }
            }
            Ok(true)
        })();
        if !matches!(clean, Ok(true)) {
            doomed.push(d.path);
        }
    }
    for p in list_dir(&r.paths.wal().join(wal::DAMAGED_DIR))? {
        let bytes = fs::read(&p).map_err(|e| LakeError::io(&p, e))?;
        if memchr::memmem::find(&bytes, rows.key.as_bytes()).is_some() {
            doomed.push(p);
        }
    }
    for p in doomed {
        rewrite::remove_durably(&p)?;
        let note = PathBuf::from(format!("{}.why", p.display()));
        if note.exists() {
            rewrite::remove_durably(&note)?;
        }
        let rel = relative(r.paths, &p);
        warn!(file = %rel, "removed a damaged file that may hold the erased customer's data");
        r.pending.record.damaged_removed.push(rel);
        r.file_done()?;
    }
    Ok(())
}

fn erase_quarantine(r: &mut Run<'_>, m: &mut LineMatcher<'_>) -> Result<()> {
    for path in list_dir(&r.paths.rejected())? {
        let name = file_name(&path);
        if name.starts_with('.') || !name.ends_with(".jsonl") || !path.is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| LakeError::io(&path, e))?;
        let mut out = Vec::with_capacity(bytes.len());
        let mut removed = 0u64;
        let mut kept_any = false;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let content = line.strip_suffix(b"\n").unwrap_or(line);
            if m.matches(content) {
                removed += 1;
            } else {
                out.extend_from_slice(line);
                kept_any |= !content.iter().all(u8::is_ascii_whitespace);
            }
        }
        if removed == 0 {
            continue;
        }
        let q = &mut r.pending.record.quarantine;
        q.lines_removed += removed;
        if kept_any {
            rewrite::replace_bytes(&path, &out)?;
            q.files_rewritten += 1;
        } else {
            rewrite::remove_durably(&path)?;
            q.files_removed += 1;
        }
        info!(file = %name, removed, "removed the customer's lines from a quarantine file");
        r.file_done()?;
    }
    Ok(())
}

/// Decides whether a quarantined line names the customer.
struct LineMatcher<'a> {
    key: &'a str,
    identity: Option<&'a Identity>,
    pseudonymizer: Pseudonymizer,
}

/// JSON leaves looked at per line, at most (a hostile record cannot make this slow).
const MAX_LEAVES: usize = 20_000;

impl LineMatcher<'_> {
    fn matches(&mut self, line: &[u8]) -> bool {
        let mut texts: Vec<Cow<'_, str>> = vec![String::from_utf8_lossy(line)];
        let mut docs: Vec<serde_json::Value> = Vec::new();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            if let Some(raw) = v.get("raw").and_then(|r| r.as_str()) {
                texts.push(Cow::Owned(raw.to_owned()));
                if let Ok(d) = serde_json::from_str(raw) {
                    docs.push(d);
                }
            }
            if let Some(b64) = v.get("raw_base64").and_then(|r| r.as_str())
                && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64)
            {
                if let Ok(d) = serde_json::from_slice(&bytes) {
                    docs.push(d);
                }
                texts.push(Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()));
            }
            docs.push(v);
        }
        if texts.iter().any(|t| self.text_names(t)) {
            return true;
        }
        let mut budget = MAX_LEAVES;
        docs.iter().any(|d| self.leaf_names(d, &mut budget))
    }

    fn is_customer(&mut self, raw: &str) -> bool {
        self.pseudonymizer.customer_key(raw) == Some(self.key)
    }

    /// The key, the given identity's notations, or a phone-like run that is the customer.
    fn text_names(&mut self, t: &str) -> bool {
        if t.len() >= self.key.len() && t.to_ascii_lowercase().contains(self.key) {
            return true;
        }
        match self.identity {
            // As a bare substring only when long enough not to turn up by chance (in a
            // timestamp, an id); shorter numbers are found by the runs below.
            Some(Identity::Phone(e164)) if e164.len() > 10 => {
                let digits = e164.trim_start_matches('+');
                if t.contains(digits) {
                    return true;
                }
                // Brazilian mobiles as WhatsApp reports pre-2016 numbers: without the 9.
                if digits.len() == 13 && digits.starts_with("55") && &digits[4..5] == "9" {
                    let short = format!("{}{}", &digits[..4], &digits[5..]);
                    if t.contains(&short) {
                        return true;
                    }
                }
            }
            Some(Identity::ContactId(id)) if id.chars().count() >= 8 && t.contains(id.as_str()) => {
                return true;
            }
            _ => {}
        }
        for run in phone_runs(t) {
            if self.is_customer(run) || run.split_whitespace().any(|w| self.is_customer(w)) {
                return true;
            }
        }
        false
    }

    /// A string or number anywhere in a JSON document that pseudonymizes to the key, as is
    /// or as the Chatwoot contact id it would be (`chatwoot-contact:<id>`).
    fn leaf_names(&mut self, v: &serde_json::Value, budget: &mut usize) -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        let leaf = match v {
            serde_json::Value::String(s) if s.len() <= 256 => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Array(a) => return a.iter().any(|x| self.leaf_names(x, budget)),
            serde_json::Value::Object(o) => {
                return o.values().any(|x| self.leaf_names(x, budget));
            }
            _ => return false,
        };
        self.is_customer(&leaf) || self.is_customer(&format!("chatwoot-contact:{leaf}"))
    }
}

/// Maximal runs of the characters phone numbers are written with, holding 8 to 15 digits
/// (the E.164 range), or more (then split on spaces by the caller).
fn phone_runs(t: &str) -> impl Iterator<Item = &str> {
    t.split(|c: char| !(c.is_ascii_digit() || "+-.() ".contains(c)))
        .filter(|run| run.bytes().filter(u8::is_ascii_digit).count() >= 8)
}

fn append_audit(paths: &LakePaths, record: &ErasureRecord) -> Result<()> {
    let dir = paths.audit();
    create_dir_durable(&dir)?;
    let path = dir.join(AUDIT_FILE);
    let existing = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(LakeError::io(&path, e).into()),
    };
    // A crash after the append but before the plan was deleted: recorded already.
    let marker = format!("\"erasure_id\":\"{}\"", record.erasure_id);
    if memchr::memmem::find(&existing, marker.as_bytes()).is_some() {
        return Ok(());
    }
    let mut line = Vec::new();
    if existing.last().is_some_and(|b| *b != b'\n') {
        // A line torn by a crash mid-append stays on its own line.
        line.push(b'\n');
    }
    line.extend(serde_json::to_vec(record).map_err(|e| EraseError::Pending {
        path: path.clone(),
        reason: e.to_string(),
    })?);
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| LakeError::io(&path, e))?;
    f.write_all(&line)
        .and_then(|()| f.sync_all())
        .map_err(|e| LakeError::io(&path, e))?;
    if existing.is_empty() {
        sync_dir(&dir)?;
    }
    Ok(())
}

/// The audit records so far, oldest first (lines that do not parse are skipped).
pub fn audit_records(paths: &LakePaths) -> LakeResult<Vec<ErasureRecord>> {
    let path = paths.audit().join(AUDIT_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LakeError::io(&path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PseudonymKey {
        PseudonymKey::new(b"erase-unit-test-key-0123456789".to_vec()).unwrap()
    }

    fn matcher<'a>(target: &'a Target, k: &PseudonymKey) -> LineMatcher<'a> {
        LineMatcher {
            key: &target.key,
            identity: target.identity.as_ref(),
            pseudonymizer: Pseudonymizer::new(k),
        }
    }

    #[test]
    fn a_phone_is_found_in_any_notation_even_by_key_alone() {
        let k = key();
        let by_phone = Target::from_identity("+55 (11) 98765-4321", &k).unwrap();
        let by_key = Target::from_key(&by_phone.key.to_ascii_uppercase()).unwrap();
        assert_eq!(by_key.key, by_phone.key);
        for line in [
            r#"{"raw":"{\"from\":\"5511987654321\"}"}"#,
            r#"{"raw":"{\"wa_id\":\"551187654321\"}"}"#,
            r#"{"raw":"{\"customer\":\"+55 11 98765-4321\",\"ts\":\"bad\"}"}"#,
            r#"{"raw":"not json at all: call +55.11.98765.4321 today"}"#,
        ] {
            assert!(matcher(&by_phone, &k).matches(line.as_bytes()), "{line}");
            assert!(matcher(&by_key, &k).matches(line.as_bytes()), "{line}");
        }
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(b"\xff{\"from\":\"5511987654321\"}");
        let line = format!(r#"{{"raw_base64":"{b64}"}}"#);
        assert!(matcher(&by_key, &k).matches(line.as_bytes()));
        for other in [
            r#"{"raw":"{\"from\":\"5511912345678\"}"}"#,
            r#"{"raw":"{\"ts\":1700000000987}"}"#,
        ] {
            assert!(!matcher(&by_phone, &k).matches(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn a_chatwoot_contact_is_found_by_its_numeric_id() {
        let k = key();
        let t = Target::from_identity("chatwoot-contact:4242", &k).unwrap();
        let line = r#"{"raw":"{\"meta\":{\"sender\":{\"id\":4242}}}"}"#;
        assert!(matcher(&t, &k).matches(line.as_bytes()));
        let other = r#"{"raw":"{\"meta\":{\"sender\":{\"id\":4243}}}"}"#;
        assert!(!matcher(&t, &k).matches(other.as_bytes()));
    }

    #[test]
    fn targets_never_show_themselves() {
        let t = Target::from_identity("+5511987654321", &key()).unwrap();
        assert_eq!(format!("{t:?}"), "Target(<phone, redacted>)");
        assert!(matches!(
            Target::from_key("abc"),
            Err(EraseError::BadKey(3))
        ));
        assert_eq!(
            Target::parse(&"a".repeat(64), &key())
                .unwrap()
                .identified_by(),
            "customer_key"
        );
    }
}
