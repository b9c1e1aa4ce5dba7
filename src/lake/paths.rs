//! Names of things in the lake. Every path the lake reads or writes is built here.
//!
//! ```text
//! <lake>/events/date=2026-11-02/00000000000000000001-00000000000000052311.parquet
//! <lake>/events/date=2026-11-02/.00000000000000052312-00000000000000061000.parquet.tmp   (being written; readers ignore it)
//! <lake>/_rejected/20261102T120000Z-4711.jsonl                                       (quarantined input)
//! <lake>/_lock                                                                        (held by the one writer)
//! <lake>/_audit/erasures.jsonl                                                        (one line per erasure; no personal data)
//! <lake>/_damaged/events/date=2026-11-02/….parquet (+ .why)                           (a data file that could not be read, moved aside)
//! <lake>/_wal/damaged/0000000000000007.wal.1234-5678                                 (bytes of a log segment that failed their checksum)
//! ```
//! Partition directories are Hive style (`date=YYYY-MM-DD`, the UTC date of the event's
//! `ts`), so DuckDB, pyarrow, Spark and DataFusion prune on `date`. Data files are named by
//! the range of lake sequence numbers of their rows, zero-padded so that name order is write
//! order.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

/// The `events` table directory under the lake root.
pub const EVENTS: &str = "events";
/// Quarantined input.
pub const REJECTED: &str = "_rejected";
/// The writer lock file.
pub const LOCK: &str = "_lock";
/// The server's write-ahead log.
pub const WAL: &str = "_wal";
/// The erasure audit log (`erasures.jsonl`) and the plan of an erasure in progress.
pub const AUDIT: &str = "_audit";
/// Partitions retention is dropping: moved here (out of every table) before deletion.
pub const EXPIRED: &str = "_expired";
/// Data files found damaged, moved out of their table (same path below this folder).
pub const DAMAGED: &str = "_damaged";
/// Extension of committed data files; readers list only these.
pub const DATA_EXT: &str = "parquet";

/// A UTC calendar day, as days since 1970-01-01 (the Arrow `Date32` representation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionDate(pub i32);

impl PartitionDate {
    pub fn naive(self) -> NaiveDate {
        NaiveDate::from_num_days_from_ce_opt(self.0 + 719_163).unwrap_or(NaiveDate::MIN)
    }

    pub fn from_naive(d: NaiveDate) -> Self {
        use chrono::Datelike;
        PartitionDate(d.num_days_from_ce() - 719_163)
    }

    /// The directory name, `date=YYYY-MM-DD`.
    pub fn dir_name(self) -> String {
        format!("date={}", self.naive().format("%Y-%m-%d"))
    }

    /// Parses a directory name made by [`Self::dir_name`].
    pub fn parse_dir_name(name: &str) -> Option<Self> {
        let d = name.strip_prefix("date=")?;
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .map(Self::from_naive)
    }
}

impl fmt::Display for PartitionDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.naive().format("%Y-%m-%d"))
    }
}

/// The name of a committed data file: the first and last lake sequence number of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataFileName {
    pub first_seq: u64,
    pub last_seq: u64,
}

impl DataFileName {
    pub fn file_name(self) -> String {
        format!("{:020}-{:020}.{DATA_EXT}", self.first_seq, self.last_seq)
    }

    /// The name the file has while it is written: hidden, and without the data extension,
    /// so no reader lists it.
    pub fn temp_name(self) -> String {
        format!(".{}.tmp", self.file_name())
    }

    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".parquet")?;
        let (a, b) = stem.split_once('-')?;
        if a.len() != 20 || b.len() != 20 {
            return None;
        }
        let first_seq = a.parse().ok()?;
        let last_seq = b.parse().ok()?;
        (first_seq <= last_seq).then_some(DataFileName {
            first_seq,
            last_seq,
        })
    }
}

/// Splits the data files of one partition into the files readers see (`live`) and the files
/// a compacted file has replaced (`covered`: its sequence range lies inside another file's
/// range). Both lists are in sequence order.
pub fn live_and_covered(names: &[DataFileName]) -> (Vec<DataFileName>, Vec<DataFileName>) {
    let mut sorted = names.to_vec();
    // By first seq, and the widest range first among equal starts: a file is covered iff an
    // earlier file in this order reaches at least as far.
    sorted.sort_by(|a, b| {
        a.first_seq
            .cmp(&b.first_seq)
            .then(b.last_seq.cmp(&a.last_seq))
    });
    sorted.dedup();
    let mut live: Vec<DataFileName> = Vec::with_capacity(sorted.len());
    let mut covered = Vec::new();
    let mut reach: Option<u64> = None;
    for n in sorted {
        if reach.is_some_and(|r| n.last_seq <= r) {
            covered.push(n);
        } else {
            reach = Some(n.last_seq);
            live.push(n);
        }
    }
    (live, covered)
}

/// Paths of one lake on the local file system.
#[derive(Debug, Clone)]
pub struct LakePaths {
    root: PathBuf,
}

impl LakePaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LakePaths { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn table(&self, table: &str) -> PathBuf {
        self.root.join(table)
    }

    pub fn events(&self) -> PathBuf {
        self.table(EVENTS)
    }

    pub fn partition(&self, table: &str, date: PartitionDate) -> PathBuf {
        self.table(table).join(date.dir_name())
    }

    pub fn rejected(&self) -> PathBuf {
        self.root.join(REJECTED)
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join(LOCK)
    }

    pub fn wal(&self) -> PathBuf {
        self.root.join(WAL)
    }

    pub fn audit(&self) -> PathBuf {
        self.root.join(AUDIT)
    }

    pub fn expired(&self) -> PathBuf {
        self.root.join(EXPIRED)
    }

    pub fn damaged(&self) -> PathBuf {
        self.root.join(DAMAGED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let d = PartitionDate::from_naive(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
        assert_eq!(d.0, 20_759);
        assert_eq!(d.dir_name(), "date=2026-11-02");
        assert_eq!(PartitionDate::parse_dir_name("date=2026-11-02"), Some(d));
        assert_eq!(PartitionDate::parse_dir_name("date=2026-02-30"), None);
        assert_eq!(PartitionDate(0).to_string(), "1970-01-01");
    }

    #[test]
    fn file_names_sort_in_write_order_and_hide_while_written() {
        let a = DataFileName {
            first_seq: 9,
            last_seq: 10,
        };
        let b = DataFileName {
            first_seq: 11,
            last_seq: 100,
        };
        assert!(a.file_name() < b.file_name());
        assert_eq!(DataFileName::parse(&b.file_name()), Some(b));
        assert!(a.temp_name().starts_with('.'));
        assert!(!a.temp_name().ends_with(".parquet"));
        assert_eq!(DataFileName::parse("1-2.parquet"), None);
        assert_eq!(DataFileName::parse(&a.temp_name()), None);
    }

    #[test]
    fn a_file_inside_another_files_range_is_covered() {
        let n = |first_seq, last_seq| DataFileName {
            first_seq,
            last_seq,
        };
        let (live, covered) =
            live_and_covered(&[n(11, 20), n(1, 5), n(6, 10), n(1, 10), n(30, 40)]);
        assert_eq!(live, vec![n(1, 10), n(11, 20), n(30, 40)]);
        assert_eq!(covered, vec![n(1, 5), n(6, 10)]);
        // A merge of merges covers everything inside it.
        let (live, covered) = live_and_covered(&[n(1, 5), n(1, 10), n(1, 40), n(30, 40)]);
        assert_eq!(live, vec![n(1, 40)]);
        assert_eq!(covered.len(), 3);
    }
}
