//! Compaction: the small files of an `events` partition merged into right-sized ones.
//!
//! ```text
//! date=D/ 1-10.parquet 11-40.parquet 95-97.parquet      (small files, in sequence order)
//!   ─► read, sort by ts ─► .1-97.parquet.tmp ─► fsync ─► footer check ─► rename 1-97.parquet
//!   ─► the three inputs are now *covered*: readers skip them
//!   ─► a later run deletes them once 1-97.parquet is older than the grace period
//! ```
//!
//! **Atomic for readers.** A merged file is named by the sequence range of its inputs. Within
//! a partition the writer's files have disjoint ranges, and a merge takes a run of files that
//! are next to each other in sequence order, so the merged range contains exactly its
//! inputs. Readers treat a file whose range lies inside another file's range as covered
//! ([`super::paths::live_and_covered`]). The rename is the one instant the partition changes:
//! before it a listing sees the inputs, after it the merged file; never both, never neither.
//!
//! **Crash safety.** The merged file is written like every data file (temp name, fsync,
//! footer check, rename, fsync of the directory). A crash before the rename leaves a temp
//! file that the next writer or compaction removes; after it, covered inputs that the next
//! run deletes. No instant exposes a torn file or a row twice.
//!
//! **Grace period.** A query that listed the partition just before the rename still reads
//! the inputs, so they stay on disk for a while (ten minutes by default) after the merge.
//! A query engine's file listing is cached per session; the server reopens its session when
//! compaction changes the lake.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use tracing::info;

use super::paths::{DataFileName, LakePaths, PartitionDate, live_and_covered};
use super::writer::{self, SortedSlices, file_name, list_dir, sync_dir, write_file};
use super::{LakeError, Result};
use crate::event;

/// Tunables of compaction.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Files smaller than this are merged with their neighbours.
    pub small_file_bytes: u64,
    /// A merged file holds at most this many rows.
    pub target_file_rows: u64,
    /// Covered files are deleted once the file covering them is this old.
    pub grace: Duration,
    /// Remove leftover temp files (only when no writer can be running: the lake lock is held
    /// and no writer is open).
    pub sweep_temps: bool,
    /// Only these partitions (all when empty).
    pub partitions: Vec<PartitionDate>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            small_file_bytes: 64 << 20,
            target_file_rows: 2_000_000,
            grace: Duration::from_secs(600),
            sweep_temps: false,
            partitions: Vec::new(),
        }
    }
}

/// One merge: `inputs` of `partition` replaced by `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub partition: PartitionDate,
    pub inputs: Vec<DataFileName>,
    pub output: DataFileName,
    pub rows: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What a compaction run did.
#[derive(Debug, Default, Clone)]
pub struct CompactReport {
    pub partitions_seen: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub merges: Vec<Merge>,
    /// Covered files deleted (their grace period was over).
    pub deleted: Vec<PathBuf>,
    /// Covered files kept for readers that may still be reading them.
    pub waiting: usize,
    pub temps_removed: usize,
    /// Files found damaged and moved aside; their partitions are compacted next time.
    pub damaged: Vec<super::damage::Damaged>,
    /// Partitions that could not be compacted this time, and why (the others were).
    pub failed: Vec<(PartitionDate, String)>,
}

/// The partition directories of the `events` table, oldest first.
pub fn event_partitions(paths: &LakePaths) -> Result<Vec<(PartitionDate, PathBuf)>> {
    let mut out = Vec::new();
    for dir in list_dir(&paths.events())? {
        if let Some(d) = PartitionDate::parse_dir_name(&file_name(&dir))
            && dir.is_dir()
        {
            out.push((d, dir));
        }
    }
    Ok(out)
}

struct FileInfo {
    name: DataFileName,
    path: PathBuf,
    bytes: u64,
    rows: u64,
}

fn file_info(dir: &Path, name: DataFileName) -> Result<FileInfo> {
    let path = dir.join(name.file_name());
    let meta = fs::metadata(&path).map_err(|e| LakeError::io(&path, e))?;
    let file = File::open(&path).map_err(|e| LakeError::io(&path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| LakeError::parquet(&path, e))?;
    let rows = reader.metadata().file_metadata().num_rows().max(0) as u64;
    Ok(FileInfo {
        name,
        path,
        bytes: meta.len(),
        rows,
    })
}

/// Compacts the `events` table. `on_merge` is called after each merged file is committed
/// (the rollup bookkeeping follows the rename). `now` decides which grace periods are over.
pub fn compact(
    paths: &LakePaths,
    opts: &CompactOptions,
    now: SystemTime,
    mut on_merge: impl FnMut(&Merge) -> Result<()>,
) -> Result<CompactReport> {
    if opts.target_file_rows == 0 {
        return Err(LakeError::Options(
            "target_file_rows must be positive".into(),
        ));
    }
    let props = Arc::new(writer::data_file_properties(
        &writer::WriterOptions::default(),
    )?);
    let mut report = CompactReport::default();
    for (date, dir) in event_partitions(paths)? {
        if !opts.partitions.is_empty() && !opts.partitions.contains(&date) {
            continue;
        }
        report.partitions_seen += 1;
        // Merges committed before an error in the partition stay (and stay reported).
        let Err(e) = compact_partition(date, &dir, opts, now, &props, &mut report, &mut on_merge)
        else {
            continue;
        };
        match damaged_input(&e) {
            Some((file, why)) => {
                // One bad file stops only its own partition, and only until it is moved.
                report
                    .damaged
                    .push(super::damage::quarantine(paths, &file, &why, now)?);
            }
            None => {
                tracing::warn!(partition = %date, error = %e, "cannot compact this partition now; the others go on");
                report.failed.push((date, e.to_string()));
            }
        }
    }
    Ok(report)
}

/// The input file a compaction error is about, when the error is damage in it.
fn damaged_input(e: &LakeError) -> Option<(PathBuf, String)> {
    match e {
        LakeError::Parquet { path, source }
            if path.extension().is_some_and(|x| x == "parquet")
                && super::damage::is_damage(source) =>
        {
            Some((path.clone(), source.to_string()))
        }
        LakeError::Damaged { path, why } => Some((path.clone(), why.clone())),
        _ => None,
    }
}

/// Compacts one partition (see [`compact`]), adding to `report`.
fn compact_partition(
    date: PartitionDate,
    dir: &Path,
    opts: &CompactOptions,
    now: SystemTime,
    props: &Arc<parquet::file::properties::WriterProperties>,
    report: &mut CompactReport,
    on_merge: &mut impl FnMut(&Merge) -> Result<()>,
) -> Result<()> {
    let mut names = Vec::new();
    for p in list_dir(dir)? {
        let n = file_name(&p);
        if let Some(f) = DataFileName::parse(&n) {
            names.push(f);
        } else if opts.sweep_temps && n.starts_with('.') && n.ends_with(".tmp") {
            fs::remove_file(&p).map_err(|e| LakeError::io(&p, e))?;
            report.temps_removed += 1;
        }
    }
    let (live, covered) = live_and_covered(&names);
    report.files_before += live.len();

    // Covered files go once the file covering them has been visible for the grace period.
    let mut deleted_any = false;
    for c in &covered {
        let cover = live
            .iter()
            .find(|l| l.first_seq <= c.first_seq && c.last_seq <= l.last_seq);
        let old_enough = match cover {
            Some(l) => {
                let p = dir.join(l.file_name());
                let m = fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .map_err(|e| LakeError::io(&p, e))?;
                now.duration_since(m).unwrap_or_default() >= opts.grace
            }
            None => false,
        };
        if old_enough {
            let p = dir.join(c.file_name());
            fs::remove_file(&p).map_err(|e| LakeError::io(&p, e))?;
            report.deleted.push(p);
            deleted_any = true;
        } else {
            report.waiting += 1;
        }
    }
    if deleted_any {
        sync_dir(dir)?;
    }

    // Runs of neighbouring small files, each run within the row target.
    let infos = live
        .iter()
        .map(|n| file_info(dir, *n))
        .collect::<Result<Vec<_>>>()?;
    let mut runs: Vec<Vec<&FileInfo>> = Vec::new();
    let mut run: Vec<&FileInfo> = Vec::new();
    let mut run_rows = 0;
    for f in &infos {
        let small = f.bytes < opts.small_file_bytes;
        if !small || run_rows + f.rows > opts.target_file_rows {
            runs.push(std::mem::take(&mut run));
            run_rows = 0;
        }
        if small {
            run_rows += f.rows;
            run.push(f);
        }
    }
    runs.push(run);
    let mut after = infos.len();
    for run in runs.into_iter().filter(|r| r.len() >= 2) {
        let merge = merge_run(dir, date, &run, Arc::clone(props))?;
        info!(partition = %date, inputs = merge.inputs.len(), rows = merge.rows,
              bytes = merge.bytes_out, output = %merge.output.file_name(), "compacted");
        after -= run.len() - 1;
        on_merge(&merge)?;
        if opts.grace.is_zero() {
            // Nobody needs the inputs: they go now rather than at the next run.
            for input in &merge.inputs {
                let p = dir.join(input.file_name());
                fs::remove_file(&p).map_err(|e| LakeError::io(&p, e))?;
                report.deleted.push(p);
            }
            sync_dir(dir)?;
        }
        report.merges.push(merge);
    }
    report.files_after += after;
    Ok(())
}

/// [`compact`], keeping the rollup manifest's record of processed files in step: a merge
/// of files the rollups already reflect is itself reflected.
pub fn compact_lake(
    paths: &LakePaths,
    opts: &CompactOptions,
    now: SystemTime,
) -> Result<CompactReport> {
    let mut state = super::rollup_state::RollupState::load(paths)?;
    compact(paths, opts, now, |m| {
        if let Some(s) = state.as_mut() {
            let inputs: Vec<String> = m.inputs.iter().map(|n| n.file_name()).collect();
            if s.on_compacted(&m.partition.dir_name(), &inputs, &m.output.file_name()) {
                s.save(paths)?;
            }
        }
        Ok(())
    })
}

fn merge_run(
    dir: &Path,
    partition: PartitionDate,
    run: &[&FileInfo],
    props: Arc<parquet::file::properties::WriterProperties>,
) -> Result<Merge> {
    let schema = event::schema();
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut rows = 0u64;
    for f in run {
        let file = File::open(&f.path).map_err(|e| LakeError::io(&f.path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| LakeError::parquet(&f.path, e))?
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|e| LakeError::parquet(&f.path, e))?;
        let mut file_rows = 0u64;
        for b in reader {
            let b = b.map_err(|e| LakeError::parquet(&f.path, e.into()))?;
            if b.num_columns() != schema.fields().len() {
                return Err(LakeError::Damaged {
                    path: f.path.clone(),
                    why: "it does not have the events columns".into(),
                });
            }
            file_rows += b.num_rows() as u64;
            batches.push(RecordBatch::try_new(
                Arc::clone(&schema),
                b.columns().to_vec(),
            )?);
        }
        if file_rows != f.rows {
            return Err(LakeError::Damaged {
                path: f.path.clone(),
                why: format!(
                    "its footer promises {} rows but {file_rows} were read",
                    f.rows
                ),
            });
        }
        rows += file_rows;
    }
    let output = DataFileName {
        first_seq: run.iter().map(|f| f.name.first_seq).min().unwrap_or(0),
        last_seq: run.iter().map(|f| f.name.last_seq).max().unwrap_or(0),
    };
    let mut slices = SortedSlices::new(&batches)?;
    let written = write_file(dir, output, rows as usize, props, || slices.next())?;
    Ok(Merge {
        partition,
        inputs: run.iter().map(|f| f.name).collect(),
        output,
        rows,
        bytes_in: run.iter().map(|f| f.bytes).sum(),
        bytes_out: written.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::{LakeWriter, WriterOptions};
    use arrow::array::{StringArray, TimestampMicrosecondArray};

    fn batch(ids: std::ops::Range<u32>, day: i64) -> RecordBatch {
        let schema = event::schema();
        let n = ids.len();
        let columns = schema
            .fields()
            .iter()
            .map(|f| -> arrow::array::ArrayRef {
                match f.name().as_str() {
                    "event_id" => Arc::new(StringArray::from_iter_values(
                        ids.clone().map(|i| format!("e{i}")),
                    )),
                    "ts" | "received_at" => Arc::new(
                        TimestampMicrosecondArray::from_iter_values(
                            // Descending within the batch, so the merge has to sort.
                            ids.clone()
                                .map(|i| day * 86_400_000_000 + 1_000_000 * (100_000 - i as i64)),
                        )
                        .with_timezone("UTC"),
                    ),
                    "source" => Arc::new(StringArray::from(vec!["agent_log"; n])),
                    "kind" => Arc::new(StringArray::from(vec!["message_in"; n])),
                    _ => arrow::array::new_null_array(f.data_type(), n),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn small_files(paths: &LakePaths) {
        let mut w = LakeWriter::open(paths.clone(), WriterOptions::default()).unwrap();
        for k in 0..5 {
            w.append(&batch(k * 10..k * 10 + 10, 20_000)).unwrap();
            w.flush().unwrap();
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        list_dir(dir)
            .unwrap()
            .iter()
            .map(|p| file_name(p))
            .collect()
    }

    #[test]
    fn merges_small_files_and_deletes_inputs_after_the_grace_period() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(tmp.path());
        small_files(&paths);
        let (_, dir) = event_partitions(&paths).unwrap().remove(0);
        assert_eq!(names(&dir).len(), 5);

        let opts = CompactOptions::default();
        let mut seen = Vec::new();
        let now = SystemTime::now();
        let r = compact(&paths, &opts, now, |m| {
            seen.push(m.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(r.merges.len(), 1);
        assert_eq!(seen, r.merges);
        assert_eq!(r.merges[0].rows, 50);
        assert_eq!(r.merges[0].output.first_seq, 1);
        assert_eq!(r.merges[0].output.last_seq, 50);
        assert_eq!((r.files_before, r.files_after), (5, 1));
        // Inputs stay (covered) during the grace period.
        assert_eq!(names(&dir).len(), 6);
        let parsed: Vec<_> = names(&dir)
            .iter()
            .filter_map(|n| DataFileName::parse(n))
            .collect();
        let (live, covered) = live_and_covered(&parsed);
        assert_eq!(live.len(), 1);
        assert_eq!(covered.len(), 5);

        // The merged file is sorted by ts and holds every row once.
        let file = File::open(dir.join(live[0].file_name())).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut ts = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for b in reader {
            let b = b.unwrap();
            let t = b
                .column_by_name("ts")
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            ts.extend(t.values().iter().copied());
            let e = b
                .column_by_name("event_id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            ids.extend(e.iter().flatten().map(str::to_owned));
        }
        assert!(ts.is_sorted());
        assert_eq!(ids.len(), 50);

        // A second run within the grace period changes nothing; after it, the inputs go.
        let r = compact(&paths, &opts, now, |_| Ok(())).unwrap();
        assert!(r.merges.is_empty());
        assert_eq!(r.waiting, 5);
        let later = now + opts.grace + Duration::from_secs(1);
        let r = compact(&paths, &opts, later, |_| Ok(())).unwrap();
        assert_eq!(r.deleted.len(), 5);
        assert_eq!(names(&dir), vec![live[0].file_name()]);

        // The writer continues after the merged range and still knows every id.
        let mut w = LakeWriter::open(paths.clone(), WriterOptions::default()).unwrap();
        let o = w.append(&batch(45..55, 20_000)).unwrap();
        assert_eq!((o.accepted, o.duplicates), (5, 5));
        w.flush().unwrap();
        assert_eq!(
            w.written()[0].path.file_name().unwrap(),
            "00000000000000000051-00000000000000000055.parquet"
        );
    }

    #[test]
    fn large_files_are_left_alone_and_runs_respect_the_row_target() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(tmp.path());
        small_files(&paths);
        let opts = CompactOptions {
            target_file_rows: 20,
            ..CompactOptions::default()
        };
        let r = compact(&paths, &opts, SystemTime::now(), |_| Ok(())).unwrap();
        // 5 files of 10 rows, at most 20 rows a file: [1,2] [3,4] and the fifth alone.
        assert_eq!(r.merges.len(), 2);
        assert_eq!(r.files_after, 3);
        let opts = CompactOptions {
            small_file_bytes: 1,
            ..CompactOptions::default()
        };
        let r = compact(&paths, &opts, SystemTime::now(), |_| Ok(())).unwrap();
        assert!(r.merges.is_empty());
    }

    /// Regression: one damaged file used to fail the whole compaction, every partition.
    #[test]
    fn a_damaged_file_is_moved_aside_and_stops_no_other_partition() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = LakePaths::new(tmp.path());
        let mut w = LakeWriter::open(paths.clone(), WriterOptions::default()).unwrap();
        for day in [20_000, 20_001] {
            for k in 0..3 {
                let base = (day as u32 - 20_000) * 100 + k * 10;
                w.append(&batch(base..base + 10, day)).unwrap();
                w.flush().unwrap();
            }
        }
        drop(w);
        let parts = event_partitions(&paths).unwrap();
        let (bad_day, bad_dir) = parts[0].clone();
        let victim = writer::data_files(&bad_dir).unwrap()[1].clone();
        for damage in ["footer", "pages"] {
            let bytes = fs::read(&victim).unwrap();
            let mut broken = bytes.clone();
            match damage {
                // Cut: the footer is gone.
                "footer" => broken.truncate(bytes.len() / 2),
                // The column chunks scrambled, the footer intact.
                _ => {
                    let footer = u32::from_le_bytes(
                        bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap(),
                    ) as usize;
                    for b in &mut broken[4..bytes.len() - 8 - footer] {
                        *b = b.wrapping_mul(31).wrapping_add(7);
                    }
                }
            }
            fs::write(&victim, &broken).unwrap();
            let r = compact(
                &paths,
                &CompactOptions {
                    grace: Duration::ZERO,
                    ..CompactOptions::default()
                },
                SystemTime::now(),
                |_| Ok(()),
            )
            .unwrap();
            assert_eq!(r.damaged.len(), 1, "{damage}: {r:?}");
            assert!(r.failed.is_empty(), "{damage}: {:?}", r.failed);
            assert!(!victim.exists());
            // The other partition was compacted all the same.
            assert!(
                r.merges.iter().any(|m| m.partition != bad_day),
                "{damage}: {:?}",
                r.merges
            );
            // And the damaged one is compacted without the file next time.
            let r = compact(
                &paths,
                &CompactOptions {
                    grace: Duration::ZERO,
                    ..CompactOptions::default()
                },
                SystemTime::now(),
                |_| Ok(()),
            )
            .unwrap();
            assert!(r.damaged.is_empty());
            assert!(
                r.merges
                    .iter()
                    .all(|m| m.partition == bad_day && m.rows == 20),
                "{damage}: {:?}",
                r.merges
            );
            // Put the partition back as it was for the next kind of damage.
            fs::remove_dir_all(paths.damaged()).unwrap();
            fs::remove_dir_all(&bad_dir).unwrap();
            fs::remove_dir_all(&parts[1].1).unwrap();
            let mut w = LakeWriter::open(paths.clone(), WriterOptions::default()).unwrap();
            for day in [20_000, 20_001] {
                for k in 0..3 {
                    let base = (day as u32 - 20_000) * 100 + k * 10;
                    w.append(&batch(base..base + 10, day)).unwrap();
                    w.flush().unwrap();
                }
            }
        }
    }
}
