//! Retention: date partitions and quarantined input older than their configured period are
//! dropped (`[retention]` in the config, see [`crate::config::RetentionSettings`]).
//!
//! **What expires.** A partition `<table>/date=D/` expires when `D < today − period`, with
//! `today` the UTC date of the clock the caller passes (so a 7-day period on 2026-11-20
//! keeps 2026-11-13 and later). A quarantine file `_rejected/<run>.jsonl` expires by the UTC
//! date in its name (the time of the run that wrote it), or its modification time when the
//! name holds none. The write-ahead log and the audit log never expire.
//!
//! **How a partition goes.** Moved to `<lake>/_expired/<table>-D` — one atomic rename after
//! which no reader of the table lists it (it is outside the table's folder, so neither our
//! listing tables, nor the writer, nor a DuckDB or Spark glob over `<table>/*/*.parquet`
//! see it) — both folders fsynced, then removed recursively. A crash after the rename
//! leaves it under `_expired/`; [`sweep`] removes it on the next run of retention or
//! erasure. A partition is never half-dropped for a reader.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::Serialize;
use tracing::{info, warn};

use super::paths::{DATA_EXT, LakePaths, PartitionDate};
use super::writer::{create_dir_durable, file_name, list_dir, sync_dir};
use super::{LakeError, Result};
use crate::config::RetentionSettings;

/// The name retention uses for quarantined input in its plans and reports.
pub const REJECTED_TABLE: &str = "rejected";

/// The oldest date a table keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cutoff {
    pub table: String,
    pub days: u32,
    /// Partitions (or quarantine files) dated before this expire.
    pub keep_from: NaiveDate,
}

/// One expired partition or quarantine file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub table: String,
    /// The partition's date, or the quarantine file's.
    pub date: NaiveDate,
    /// Relative to the lake root.
    pub path: String,
    pub files: u64,
    /// Rows (Parquet footers) or lines (quarantine).
    pub rows: u64,
    pub bytes: u64,
}

/// What retention would drop at a given date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    pub today: NaiveDate,
    pub cutoffs: Vec<Cutoff>,
    pub expired: Vec<Expired>,
}

impl RetentionPlan {
    pub fn total_files(&self) -> u64 {
        self.expired.iter().map(|e| e.files).sum()
    }
    pub fn total_rows(&self) -> u64 {
        self.expired.iter().map(|e| e.rows).sum()
    }
    pub fn total_bytes(&self) -> u64 {
        self.expired.iter().map(|e| e.bytes).sum()
    }
}

/// Finds what has expired at `today`; reads directory listings and Parquet footers only.
pub fn plan(
    paths: &LakePaths,
    rules: &RetentionSettings,
    today: NaiveDate,
) -> Result<RetentionPlan> {
    let keep_from = |days: u32| today - chrono::Days::new(u64::from(days));
    let mut cutoffs = Vec::new();
    let mut expired = Vec::new();
    for (table, days) in &rules.tables {
        let from = keep_from(*days);
        cutoffs.push(Cutoff {
            table: table.clone(),
            days: *days,
            keep_from: from,
        });
        for dir in list_dir(&paths.table(table))? {
            let Some(date) = PartitionDate::parse_dir_name(&file_name(&dir)) else {
                continue;
            };
            if date.naive() >= from || !dir.is_dir() {
                continue;
            }
            let (files, rows, bytes) = partition_size(&dir)?;
            expired.push(Expired {
                table: table.clone(),
                date: date.naive(),
                path: relative(paths, &dir),
                files,
                rows,
                bytes,
            });
        }
    }
    if let Some(days) = rules.rejected {
        let from = keep_from(days);
        cutoffs.push(Cutoff {
            table: REJECTED_TABLE.into(),
            days,
            keep_from: from,
        });
        for file in list_dir(&paths.rejected())? {
            let name = file_name(&file);
            if name.starts_with('.') || !name.ends_with(".jsonl") || !file.is_file() {
                continue;
            }
            let Some(date) = quarantine_date(&file) else {
                continue;
            };
            if date >= from {
                continue;
            }
            let bytes = fs::read(&file).map_err(|e| LakeError::io(&file, e))?;
            expired.push(Expired {
                table: REJECTED_TABLE.into(),
                date,
                path: relative(paths, &file),
                files: 1,
                rows: bytecount_lines(&bytes),
                bytes: bytes.len() as u64,
            });
        }
    }
    Ok(RetentionPlan {
        today,
        cutoffs,
        expired,
    })
}

/// Drops what `plan` found. Returns what was dropped (an entry gone meanwhile is skipped).
pub fn apply(paths: &LakePaths, plan: &RetentionPlan) -> Result<Vec<Expired>> {
    sweep(paths)?;
    let mut done = Vec::new();
    for e in &plan.expired {
        let path = paths.root().join(&e.path);
        if !path.exists() {
            continue;
        }
        if e.table == REJECTED_TABLE {
            fs::remove_file(&path).map_err(|err| LakeError::io(&path, err))?;
            sync_dir(&paths.rejected())?;
        } else {
            let out = paths.expired();
            create_dir_durable(&out)?;
            let moved = out.join(format!("{}-{}", e.table, e.date));
            fs::rename(&path, &moved).map_err(|err| LakeError::io(&path, err))?;
            sync_dir(&paths.table(&e.table))?;
            sync_dir(&out)?;
            fs::remove_dir_all(&moved).map_err(|err| LakeError::io(&moved, err))?;
            sync_dir(&out)?;
        }
        info!(table = %e.table, date = %e.date, files = e.files, rows = e.rows, bytes = e.bytes, "retention dropped");
        done.push(e.clone());
    }
    Ok(done)
}

/// Removes partitions whose drop a crash interrupted (what is left under `_expired/`).
/// Returns how many were removed.
pub fn sweep(paths: &LakePaths) -> Result<u64> {
    let out = paths.expired();
    let mut removed = 0;
    for entry in list_dir(&out)? {
        if entry.is_dir() {
            fs::remove_dir_all(&entry).map_err(|e| LakeError::io(&entry, e))?;
        } else {
            fs::remove_file(&entry).map_err(|e| LakeError::io(&entry, e))?;
        }
        info!(path = %entry.display(), "removed a partition left half-dropped by an interrupted retention run");
        removed += 1;
    }
    if removed > 0 {
        sync_dir(&out)?;
    }
    Ok(removed)
}

/// The table directories of a lake: every directory at the root whose name starts with
/// neither `_` (the log, quarantine, audit, …) nor `.`.
pub fn table_dirs(paths: &LakePaths) -> Result<Vec<PathBuf>> {
    Ok(list_dir(paths.root())?
        .into_iter()
        .filter(|p| {
            let n = file_name(p);
            !n.starts_with('_') && !n.starts_with('.') && p.is_dir()
        })
        .collect())
}

pub(crate) fn relative(paths: &LakePaths, p: &Path) -> String {
    p.strip_prefix(paths.root())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

fn partition_size(dir: &Path) -> Result<(u64, u64, u64)> {
    let (mut files, mut rows, mut bytes) = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in list_dir(&d)? {
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            if p.extension().is_some_and(|x| x == DATA_EXT) && !file_name(&p).starts_with('.') {
                match File::open(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|f| SerializedFileReader::new(f).map_err(|e| e.to_string()))
                {
                    Ok(r) => rows += r.metadata().file_metadata().num_rows().max(0) as u64,
                    Err(e) => {
                        warn!(path = %p.display(), error = %e, "cannot read a Parquet footer; its rows are not counted")
                    }
                }
            }
        }
    }
    Ok((files, rows, bytes))
}

/// The UTC date a quarantine file was written: from its name (`20261102T120000Z-4711.jsonl`
/// from `ingest`, `http-20261102T120000.123456-7.jsonl` from the server), else its
/// modification time.
fn quarantine_date(path: &Path) -> Option<NaiveDate> {
    let name = file_name(path);
    let stamp = name.strip_prefix("http-").unwrap_or(&name);
    if stamp.as_bytes().get(8) == Some(&b'T')
        && let Some(d) = stamp
            .get(..8)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
    {
        return Some(d);
    }
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(DateTime::<Utc>::from(modified).date_naive())
}

fn bytecount_lines(bytes: &[u8]) -> u64 {
    let n = memchr::memchr_iter(b'\n', bytes).count() as u64;
    if bytes.last().is_some_and(|b| *b != b'\n') {
        n + 1
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn partitions_before_the_cutoff_expire_and_drop_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(dir.path());
        for d in ["2026-11-01", "2026-11-12", "2026-11-13", "2026-11-20"] {
            let p = paths.table("events").join(format!("date={d}"));
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("x.txt"), b"not parquet").unwrap();
        }
        fs::create_dir_all(paths.rejected()).unwrap();
        fs::write(paths.rejected().join("20261101T100000Z-1.jsonl"), b"a\nb\n").unwrap();
        fs::write(
            paths.rejected().join("http-20261119T100000.000001-0.jsonl"),
            b"c\n",
        )
        .unwrap();
        let rules = RetentionSettings {
            tables: vec![("events".into(), 7), ("conversations".into(), 7)],
            rejected: Some(7),
        };
        let plan = plan(&paths, &rules, day("2026-11-20")).unwrap();
        assert_eq!(plan.cutoffs[0].keep_from, day("2026-11-13"));
        let gone: Vec<(&str, String)> = plan
            .expired
            .iter()
            .map(|e| (e.table.as_str(), e.date.to_string()))
            .collect();
        assert_eq!(
            gone,
            vec![
                ("events", "2026-11-01".into()),
                ("events", "2026-11-12".into()),
                ("rejected", "2026-11-01".into()),
            ]
        );
        assert_eq!(plan.expired[2].rows, 2);
        // A crash between rename and removal leaves a directory under _expired; the next run
        // sweeps it.
        fs::create_dir_all(paths.expired().join("events-2026-10-01")).unwrap();
        let done = apply(&paths, &plan).unwrap();
        assert_eq!(done.len(), 3);
        let left: Vec<String> = list_dir(&paths.events())
            .unwrap()
            .iter()
            .map(|p| file_name(p))
            .collect();
        assert_eq!(left, vec!["date=2026-11-13", "date=2026-11-20"]);
        assert_eq!(list_dir(&paths.rejected()).unwrap().len(), 1);
        assert!(list_dir(&paths.expired()).unwrap().is_empty());
    }
}
