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
    /// The rows kept for `key` that still hold on `session`, whose engine reads `files`, up
    /// to `cut` at most (a question that ends earlier than the one kept). An entry of
    /// another session is cut back to the buckets that end before the first changed
    /// partition (and dropped when nothing of it is left, or when either session computes
    /// from the events), and not used at a "now" it does not hold for. `[from, cut)` is
    /// the question's span of ended buckets, which follow `interval` in `tz`.
    pub(super) fn get(
        &self,
        key: &str,
        (session, now): (SessionKey, i64),
        files: Option<&Arc<RollupFiles>>,
        (from, cut, interval, tz): (i64, i64, Interval, Tz),
    ) -> Option<Kept> {
        let kept = self.get_whole(key, (session, now), files, (from, interval, tz))?;
        if kept.through <= cut {
            return Some(kept);
        }
        Some(Kept {
            rows: Arc::new(rows_before(&kept.rows, cut)?),
            through: cut,
            ..kept
        })
    }

    /// [`Self::get`] without the cut at the question's end.
    fn get_whole(
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
fn rows_before(batches: &[RecordBatch], through: i64) -> Option<Vec<RecordBatch>> {
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

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    const DAY: i64 = 86_400_000_000;

    /// One row per day from `first` for `days` days: bucket_start and a value.
    fn days(first: i64, days: i64) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "bucket_start",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("value", DataType::Int64, false),
        ]));
        let starts: Vec<i64> = (0..days).map(|d| first + d * DAY).collect();
        vec![
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(TimestampMicrosecondArray::from(starts).with_timezone("UTC")),
                    Arc::new(Int64Array::from_iter_values(0..days)),
                ],
            )
            .unwrap(),
        ]
    }

    fn files(days: &[&str]) -> Arc<RollupFiles> {
        let metas: Vec<object_store::ObjectMeta> = days
            .iter()
            .map(|d| object_store::ObjectMeta {
                location: format!("l/conversations/date={d}/1.parquet").into(),
                last_modified: chrono::DateTime::from_timestamp_micros(1).unwrap(),
                size: 10,
                e_tag: None,
                version: None,
            })
            .collect();
        let mut f = RollupFiles::default();
        f.add(&metas);
        Arc::new(f)
    }

    #[test]
    fn kept_rows_are_cut_at_the_question_end_and_at_the_first_changed_day() {
        // Days 2026-11-01 .. 2026-11-05 (UTC), kept through 11-06 00:00.
        let first = chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        let tz = chrono_tz::UTC;
        let carried = Carried::default();
        let before = files(&["2026-11-01", "2026-11-02", "2026-11-03"]);
        let kept = Kept {
            rows: Arc::new(days(first, 5)),
            through: first + 5 * DAY,
            since: i64::MIN,
            until: None,
        };
        carried.put("k".into(), (1, 1), Some(&before), kept);
        let rows = |k: &Kept| k.rows.iter().map(|b| b.num_rows()).sum::<usize>();
        let span = |cut| (first, cut, Interval::Day, tz);

        // The same session, a question ending at 11-03: the first two days only.
        let k = carried
            .get("k", ((1, 1), 0), Some(&before), span(first + 2 * DAY))
            .unwrap();
        assert_eq!((k.through, rows(&k)), (first + 2 * DAY, 2));
        // Still whole for the longer question.
        let k = carried
            .get("k", ((1, 1), 0), Some(&before), span(first + 5 * DAY))
            .unwrap();
        assert_eq!((k.through, rows(&k)), (first + 5 * DAY, 5));

        // A new session whose files differ from 11-03 00:00 on: 11-02 ends at that instant
        // (a backlog is sampled there), so only 11-01 stays.
        let after = files(&["2026-11-01", "2026-11-02", "2026-11-04"]);
        let k = carried
            .get("k", ((2, 1), 0), Some(&after), span(first + 5 * DAY))
            .unwrap();
        assert_eq!((k.through, rows(&k)), (first + DAY, 1));

        // A session that computes from the events keeps nothing.
        assert!(
            carried
                .get("k", ((3, 1), 0), None, span(first + 5 * DAY))
                .is_none()
        );
        assert!(
            carried
                .get("k", ((2, 1), 0), Some(&after), span(first + 5 * DAY))
                .is_none()
        );
    }
}
