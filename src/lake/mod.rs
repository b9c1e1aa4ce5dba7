//! The lake: the only module that writes files under the lake root.
//!
//! - [`paths`]: every name in the lake (partitions, data files, quarantine, lock).
//! - [`writer`]: deduplicated, crash-safe Parquet partitions of the `events` table.
//! - [`compact`]: small files of a partition merged into right-sized ones.
//! - [`damage`]: data files that fail to read, found and moved aside.
//! - [`rollup_state`]: the manifest of the rollup tables.
//! - [`quarantine`]: rejected input kept for inspection under `_rejected/`.
//! - [`wal`]: the server's write-ahead log.
//! - [`erase`]: removing one customer from every file (LGPD art. 18), with an audit record.
//! - [`retention`]: dropping date partitions and quarantine files past their period.
//! - [`rewrite`]: replacing a file in place, crash-safely, under the same name.
//! - [`LakeLock`]: one writer per lake.

pub mod compact;
pub mod damage;
pub mod erase;
pub mod paths;
pub mod quarantine;
pub mod retention;
pub mod rewrite;
pub mod rollup_state;
pub mod writer;
pub mod wal;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use paths::{LakePaths, PartitionDate};
pub use writer::{AppendOutcome, LakeWriter, WriterOptions, WrittenFile};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: Parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("schema mismatch: {0}")]
    Schema(String),
    #[error(
        "{path}: wrote {expected} rows but the footer says {found}; the file was not committed"
    )]
    Verify {
        path: PathBuf,
        expected: u64,
        found: i64,
    },
    #[error("{path} is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
    #[error("{0} already exists; refusing to overwrite a committed data file")]
    Exists(PathBuf),
    #[error(
        "the lake {root} is in use by another supportlake process ({holder}); only one process \
         may write a lake. Stop it, or send the data to the running server (POST /ingest/events)"
    )]
    Locked { root: PathBuf, holder: String },
    #[error("invalid writer options: {0}")]
    Options(String),
}

impl LakeError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        LakeError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        LakeError::Parquet {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<parquet::errors::ParquetError> for LakeError {
    fn from(source: parquet::errors::ParquetError) -> Self {
        LakeError::Parquet {
            path: PathBuf::new(),
            source,
        }
    }
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;

/// Exclusive ownership of a lake for writing, held as an OS file lock on `<lake>/_lock`
/// (released by the OS when the process dies, so a crash never leaves a stale lock).
#[derive(Debug)]
pub struct LakeLock {
    _file: File,
}

impl LakeLock {
    /// Takes the lock or fails at once, naming the holder. `holder` describes this process
    /// (e.g. `ingest, pid 4711`) for the error another process would see.
    pub fn acquire(paths: &LakePaths, holder: &str) -> Result<Self> {
        writer::create_dir_durable(paths.root())?;
        let path = paths.lock();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LakeError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                return Err(LakeError::Locked {
                    root: paths.root().to_owned(),
                    holder: if who.trim().is_empty() {
                        "unknown process".into()
                    } else {
                        who.trim().to_owned()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(LakeError::io(&path, e)),
        }
        file.set_len(0).map_err(|e| LakeError::io(&path, e))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(holder.as_bytes()))
            .map_err(|e| LakeError::io(&path, e))?;
        Ok(LakeLock { _file: file })
    }
}
