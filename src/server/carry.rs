//! Rows of ended intervals kept across states of the lake.
//!
//! The answer cache ([`super::results`]) is emptied whenever the lake changes, and a live
//! lake changes after every flush: a page over a year would compute the whole year again
//! after each rollup refresh although the refresh touched only the last day or two. The
//! rows of a metric's intervals that ended are kept here instead with the rollup files they
//! were computed from ([`RollupFiles`]). When the session changes, an entry keeps the rows
//! of the intervals that ended before the earliest partition whose files differ
//! ([`RollupFiles::changed_from`]); only the intervals from there on are computed again.
//! Sessions that compute from the events (no rollups) keep nothing across changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampMicrosecondType;
use chrono_tz::Tz;

use super::SessionKey;
use crate::interval::Interval;
use crate::query::files::RollupFiles;

/// How many questions are kept (each a few kilobytes to a few hundred).
const CAPACITY: usize = 512;

/// The rows of `[from, through)` of one question, as of one session.
#[derive(Clone)]
pub(super) struct Kept {
    pub rows: Arc<Vec<RecordBatch>>,
    /// A bucket boundary: the rows are those of every bucket that ends by it.
    pub through: i64,
    /// The span of "now" the rows hold for, `[since, until)` (`until` `None`: no end) —
    /// all of time except for a metric whose ended intervals read "now" (`sla`).
    pub since: i64,
    pub until: Option<i64>,
}

impl Kept {
    fn holds_at(&self, now: i64) -> bool {
        self.since <= now && self.until.is_none_or(|u| now < u)
    }
}

struct Entry {
    used: u64,
    session: SessionKey,
    files: Arc<RollupFiles>,
    kept: Kept,
}

/// Kept rows by question ([`crate::metrics::MetricRequest::carry_key`]).
#[derive(Default)]
pub(super) struct Carried {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tick: u64,
    entries: HashMap<String, Entry>,
}

impl Carried {
    /// The rows kept for `key` that still hold on `session`, whose engine reads `files`.
    /// An entry of another session is cut back to the buckets that end before the first
    /// changed partition (and dropped when nothing of it is left, or when either session
    /// computes from the events), and not used at a "now" it does not hold for. `from` is
    /// the question's start; buckets follow `interval` in `tz`.
    pub(super) fn get(
        &self,
        key: &str,
        (session, now): (SessionKey, i64),
        files: Option<&Arc<RollupFiles>>,
        (from, interval, tz): (i64, Interval, Tz),
    ) -> Option<Kept> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.tick += 1;
        let tick = g.tick;
        let entry = g.entries.get_mut(key)?;
        entry.used = tick;
        if !entry.kept.holds_at(now) {
            return None;
        }
        if entry.session == session {
            return Some(entry.kept.clone());
        }
        let kept = files.and_then(|files| {
            let through = match entry.files.changed_from(files) {
                None => entry.kept.through,
                // A bucket that ends at or after the change can hold it (a backlog is
                // sampled at the end of its bucket), so the cut is the start of the bucket
                // holding the instant just before the change.
                Some(w) if w <= entry.kept.through => interval.start_of(w.saturating_sub(1), tz),
                Some(_) => entry.kept.through,
            };
            let rows = rows_before(&entry.kept.rows, through)?;
            (through > from).then(|| Kept {
                rows: Arc::new(rows),
                through,
                ..entry.kept.clone()
            })
        });
        match (kept, files) {
            (Some(kept), Some(files)) => {
                entry.session = session;
                entry.files = Arc::clone(files);
                entry.kept = kept.clone();
                Some(kept)
            }
            _ => {
                g.entries.remove(key);
                None
            }
        }
    }

    /// Keeps the rows of a question computed on `session` (whose engine reads `files`).
    pub(super) fn put(
        &self,
        key: String,
        session: SessionKey,
        files: Option<&Arc<RollupFiles>>,
        kept: Kept,
    ) {
        let Some(files) = files else {
            return;
        };
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.entries.len() >= CAPACITY && !g.entries.contains_key(&key) {
            // Least recently used out.
            if let Some(oldest) = g
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            {
                g.entries.remove(&oldest);
            }
        }
        g.tick += 1;
        let used = g.tick;
        g.entries.insert(
            key,
            Entry {
                used,
                session,
                files: Arc::clone(files),
                kept,
            },
        );
    }
}

/// The rows whose `bucket_start` is before `through`; `None` when a batch has no such
/// column (then nothing of it can be kept).
pub(super) fn rows_before(batches: &[RecordBatch], through: i64) -> Option<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let starts = b
            .column_by_name("bucket_start")?
            .as_primitive_opt::<TimestampMicrosecondType>()?;
        let keep: BooleanArray = starts
            .iter()
            .map(|s| Some(s.is_some_and(|s| s < through)))
            .collect();
        let kept = filter_record_batch(b, &keep).ok()?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    Some(out)
}
