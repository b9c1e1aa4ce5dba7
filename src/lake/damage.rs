//! Damaged data files: found, named, moved aside, never contagious.
//!
//! A data file is **damaged** when its bytes can be read but are not the Parquet file they
//! should be: a footer that does not parse, a page that fails to decompress or decode, fewer
//! or more rows than the footer promises, a reader that panics on it. An error that says
//! nothing about the bytes — a file that vanished, too many open files, an I/O error, a full
//! disk — is *not* damage: the operation that met it fails and is retried later, and the
//! file stays where it is.
//!
//! A damaged file is **moved aside** (by [`quarantine`], only under the lake lock) to
//! `<lake>/_damaged/<its path under the lake>`, with `<name>.why` beside it saying when and
//! why. From then on no reader lists it, so one bad file stops nothing else: flushes,
//! compaction, rollups and queries of every other file go on. `/readyz` reports the lake as
//! degraded while anything is under `_damaged/` ([`list`]); an operator inspects, repairs or
//! deletes it. The rows of a moved file are gone from the `events` table: a source that
//! delivers them again (Meta retries for days) is accepted again, since the dedupe sets are
//! read from the files that remain.
//!
//! [`Checker`] finds damaged files among a table's files by reading every row of each (the
//! verdicts of intact files are remembered by name, size and modification time, so a second
//! search only reads what changed). Queries use it when they fail with an error that could
//! come from a file's bytes, to say which file they could not read.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tracing::error;

use super::paths::LakePaths;
use super::writer::{create_dir_durable, sync_dir};
use super::{LakeError, Result};

/// Suffix of the note beside each moved file.
const WHY: &str = ".why";

/// Data files moved aside by this process (for `/metrics`).
pub static FILES_MOVED: AtomicU64 = AtomicU64::new(0);

/// Whether an error from reading a file's content says the content is wrong, rather than
/// that the file could not be read at all.
pub fn is_damage(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<std::io::Error>() {
            return false;
        }
        if let Some(arrow::error::ArrowError::IoError(..)) =
            err.downcast_ref::<arrow::error::ArrowError>()
        {
            return false;
        }
        // Wrappers that hide their cause from `source()`.
        if let Some(parquet::errors::ParquetError::External(inner)) =
            err.downcast_ref::<parquet::errors::ParquetError>()
        {
            return is_damage(inner.as_ref());
        }
        if let Some(arrow::error::ArrowError::ExternalError(inner)) =
            err.downcast_ref::<arrow::error::ArrowError>()
        {
            return is_damage(inner.as_ref());
        }
        cur = err.source();
    }
    true
}

/// Reads every row of a Parquet file. `Ok(None)`: intact; `Ok(Some(reason))`: damaged;
/// `Err`: the file could not be read (not a verdict on its content).
pub fn check_file(path: &Path) -> Result<Option<String>> {
    let file = File::open(path).map_err(|e| LakeError::io(path, e))?;
    let run =
        || -> std::result::Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
            let expected = builder.metadata().file_metadata().num_rows();
            let reader = builder.with_batch_size(64 * 1024).build()?;
            let mut rows = 0i64;
            for b in reader {
                rows += b?.num_rows() as i64;
            }
            Ok((rows != expected)
                .then(|| format!("the footer promises {expected} rows but {rows} were read")))
        };
    match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(verdict)) => Ok(verdict),
        Ok(Err(e)) if is_damage(e.as_ref()) => Ok(Some(e.to_string())),
        Ok(Err(e)) => Err(LakeError::io(path, std::io::Error::other(e.to_string()))),
        Err(panic) => Ok(Some(format!(
            "the Parquet reader gave up on it: {}",
            panic_text(&panic)
        ))),
    }
}

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// A damaged file moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// Where it was, relative to the lake root (`events/date=…/….parquet`).
    pub was: String,
    /// Where it is now.
    pub path: PathBuf,
    /// What was wrong with it.
    pub why: String,
}

/// Moves a damaged data file out of its table into `<lake>/_damaged/`, keeping its path
/// under the lake, with a note saying why. Call only with the lake lock held. Logs an
/// error line naming the file.
pub fn quarantine(paths: &LakePaths, file: &Path, why: &str, now: SystemTime) -> Result<Damaged> {
    let rel = file
        .strip_prefix(paths.root())
        .map_err(|_| LakeError::Options(format!("{} is not under the lake", file.display())))?;
    let mut dest = paths.damaged().join(rel);
    let dir = dest.parent().map(Path::to_owned).unwrap_or_default();
    create_dir_durable(&dir)?;
    // A file of the same name moved aside earlier is kept too.
    let mut n = 1;
    while dest.exists() {
        dest = dir.join(format!("{}.{n}", super::writer::file_name(file)));
        n += 1;
    }
    let note = format!(
        "moved aside at {}\nwas {}\n{why}\n",
        chrono::DateTime::<chrono::Utc>::from(now).to_rfc3339(),
        rel.display()
    );
    let note_path = PathBuf::from(format!("{}{WHY}", dest.display()));
    let mut f = File::create(&note_path).map_err(|e| LakeError::io(&note_path, e))?;
    f.write_all(note.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| LakeError::io(&note_path, e))?;
    fs::rename(file, &dest).map_err(|e| LakeError::io(file, e))?;
    sync_dir(&dir)?;
    if let Some(from) = file.parent() {
        sync_dir(from)?;
    }
    FILES_MOVED.fetch_add(1, Ordering::Relaxed);
    let was = rel.display().to_string();
    error!(file = %was, moved_to = %dest.display(), reason = %why, "damaged data file moved aside; the rest of the lake goes on without it");
    Ok(Damaged {
        was,
        path: dest,
        why: why.to_owned(),
    })
}

/// Everything under `<lake>/_damaged/`, oldest first by name: what `/readyz` reports.
pub fn list(paths: &LakePaths) -> Vec<Damaged> {
    let root = paths.damaged();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = super::writer::file_name(&p);
            if name.ends_with(WHY) {
                continue;
            }
            let note = fs::read_to_string(format!("{}{WHY}", p.display())).unwrap_or_default();
            let mut lines = note.lines().skip(1);
            let was = lines
                .next()
                .and_then(|l| l.strip_prefix("was "))
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    p.strip_prefix(&root)
                        .map(|r| r.display().to_string())
                        .unwrap_or_default()
                });
            out.push(Damaged {
                was,
                why: lines.collect::<Vec<_>>().join(" "),
                path: p,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Finds damaged files among a table's files, remembering which files were read whole
/// without fault (by path, size and modification time).
#[derive(Debug, Default)]
pub struct Checker {
    intact: Mutex<HashMap<PathBuf, (u64, SystemTime)>>,
}

impl Checker {
    /// Reads the given files (those not known intact), on the available cores; returns the
    /// damaged ones with the reason. Files that cannot be read at all are skipped.
    pub fn find(&self, files: &[PathBuf]) -> Vec<(PathBuf, String)> {
        self.find_with_progress(files, &|| {})
    }

    /// [`Checker::find`], calling `done` after each file.
    pub fn find_with_progress(
        &self,
        files: &[PathBuf],
        done: &(dyn Fn() + Sync),
    ) -> Vec<(PathBuf, String)> {
        let stamp = |p: &Path| {
            fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        };
        let todo: Vec<&PathBuf> = {
            let known = self.intact.lock().unwrap_or_else(|e| e.into_inner());
            files
                .iter()
                .filter(|p| stamp(p).is_none_or(|s| known.get(*p) != Some(&s)))
                .collect()
        };
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(todo.len().max(1));
        let next = AtomicU64::new(0);
        let found = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(p) = todo.get(i) else { break };
                        let before = stamp(p);
                        let _done = Finally(done);
                        match check_file(p) {
                            Ok(None) => {
                                if let Some(s) = before {
                                    self.intact
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .insert((*p).clone(), s);
                                }
                            }
                            Ok(Some(why)) => found
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(((*p).clone(), why)),
                            Err(_) => {}
                        }
                    }
                });
            }
        });
        let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
        found.sort();
        found
    }
}

/// Calls its function when dropped (whatever way a loop iteration ends).
struct Finally<'a>(&'a (dyn Fn() + Sync));

impl Drop for Finally<'_> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_events(dir: &Path) -> PathBuf {
        use crate::event::{EventBatchBuilder, EventRef, EventSink, Kind, Source};
        let received = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let mut b = EventBatchBuilder::new(received);
        for i in 0..2000 {
            let id = format!("event-{i}");
            let mut e = EventRef::new(
                &id,
                1_793_620_800_000_000 + i,
                Source::AgentLog,
                Kind::MessageIn,
            );
            e.conversation_id = Some("c-1");
            b.push(&e);
        }
        let path = dir.join("00000000000000000001-00000000000000002000.parquet");
        super::super::writer::write_batches_file(&path, crate::event::schema(), &[b.finish()])
            .unwrap();
        path
    }

    #[test]
    fn io_errors_are_not_damage_and_decode_errors_are() {
        let io = parquet::errors::ParquetError::from(std::io::Error::other("EIO"));
        assert!(!is_damage(&io));
        let arrow_io =
            arrow::error::ArrowError::IoError("read".into(), std::io::Error::other("EIO"));
        assert!(!is_damage(&arrow_io));
        let wrapped = arrow::error::ArrowError::ExternalError(Box::new(io));
        assert!(!is_damage(&wrapped));
        let eof = parquet::errors::ParquetError::EOF("footer".into());
        assert!(is_damage(&eof));
        let general = arrow::error::ArrowError::ExternalError(Box::new(
            parquet::errors::ParquetError::General("bad page".into()),
        ));
        assert!(is_damage(&general));
    }

    #[test]
    fn a_truncated_or_overwritten_file_is_damaged_and_an_intact_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_events(dir.path());
        assert_eq!(check_file(&path).unwrap(), None);
        let bytes = fs::read(&path).unwrap();

        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let why = check_file(&path).unwrap().expect("a cut file is damaged");
        assert!(!why.is_empty());

        // Every byte of the data pages overwritten (footer intact): decoding must fail or
        // give other rows; either way not intact. The first 4 bytes are the magic.
        let mut scrambled = bytes.clone();
        let footer_len =
            u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap())
                as usize;
        let data_end = bytes.len() - 8 - footer_len;
        for b in &mut scrambled[4..data_end] {
            *b ^= 0x5a;
        }
        fs::write(&path, &scrambled).unwrap();
        assert!(check_file(&path).unwrap().is_some(), "scrambled pages");

        // A file that is not there is not a verdict.
        assert!(check_file(&dir.path().join("absent.parquet")).is_err());
    }

    #[test]
    fn quarantine_moves_the_file_with_a_note_and_list_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(dir.path());
        let part = dir.path().join("events/date=2026-11-02");
        fs::create_dir_all(&part).unwrap();
        let file = write_events(&part);
        let d = quarantine(&paths, &file, "bad footer", SystemTime::now()).unwrap();
        assert!(!file.exists());
        assert!(d.path.exists());
        assert_eq!(
            d.was,
            "events/date=2026-11-02/00000000000000000001-00000000000000002000.parquet"
        );
        // A second file of the same name is kept beside the first.
        fs::write(&file, b"junk").unwrap();
        let d2 = quarantine(&paths, &file, "junk", SystemTime::now()).unwrap();
        assert_ne!(d.path, d2.path);
        let listed = list(&paths);
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.iter().all(|l| l.was == d.was));
        assert!(listed.iter().any(|l| l.why == "bad footer"));
    }

    #[test]
    fn the_checker_finds_the_damaged_file_and_remembers_intact_ones() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let good = write_events(&a);
        let bad = write_events(&b);
        let bytes = fs::read(&bad).unwrap();
        fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
        let c = Checker::default();
        let found = c.find(&[good.clone(), bad.clone()]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, bad);
        assert!(c.intact.lock().unwrap().contains_key(&good));
        assert!(!c.intact.lock().unwrap().contains_key(&bad));
    }
}
