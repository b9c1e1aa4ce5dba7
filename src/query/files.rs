//! A table over a fixed list of Parquet files.
//!
//! The rollup tables are named file by file in the manifest (`_rollup/state.json`), and a
//! rollup file never changes once it is written (a refresh writes new files and a new
//! manifest). A `ListingTable` over such a list asks the object store for every file's
//! metadata on every query — a `head` per file, so a table over a year of daily partitions
//! paid ~370 of them per query. [`FilesTable`] asks once, when the table is made, and
//! hands the same file list to every scan; the Parquet scan itself (footer cache,
//! row-group pruning, filter pushdown, byte-range splitting) is DataFusion's own.
//!
//! A file that is gone when the table is made (retention moved it) is left out; one that
//! goes later fails the query that reads it, as it would under a listing.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::CachedFileMetadata;
use datafusion::execution::cache::{SchemaFingerprint, TableScopedPath};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStoreExt};
use tokio::sync::OnceCell;

use super::QueryError;

/// How many metadata requests run at once while a table is made.
const HEAD_CONCURRENCY: usize = 32;

/// A Parquet table over files named up front, their metadata read once.
#[derive(Debug)]
pub(crate) struct FilesTable {
    schema: SchemaRef,
    url: ObjectStoreUrl,
    files: Vec<ObjectMeta>,
    /// The files with their statistics (from the footers, through the session's footer
    /// cache), and the table's: made by the first scan. The planner uses them to prune
    /// whole files and to size joins, as it does a listing table's.
    with_stats: OnceCell<(Vec<PartitionedFile>, Statistics)>,
}

impl FilesTable {
    /// The table over `files` (paths relative to `root`, a local folder) with `schema`.
    /// Files that do not exist are left out.
    pub(crate) async fn open(
        ctx: &SessionContext,
        root: &Path,
        files: &[String],
        schema: SchemaRef,
    ) -> Result<Self, QueryError> {
        let root = std::path::absolute(root)
            .map_err(|e| QueryError::Location(root.display().to_string(), e.to_string()))?;
        let url = ObjectStoreUrl::local_filesystem();
        let store = ctx.runtime_env().object_store(&url)?;
        let locations = files
            .iter()
            .map(|f| {
                let abs = root.join(f);
                ObjectPath::from_absolute_path(&abs)
                    .map_err(|e| QueryError::Location(abs.display().to_string(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metas: Vec<Option<ObjectMeta>> = futures::stream::iter(locations)
            .map(|location| {
                let store = Arc::clone(&store);
                async move {
                    match store.head(&location).await {
                        Ok(meta) => Ok(Some(meta)),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await
            .map_err(datafusion::error::DataFusionError::from)?;
        Ok(FilesTable {
            schema,
            url,
            files: metas.into_iter().flatten().collect(),
            with_stats: OnceCell::new(),
        })
    }

    /// How many files the table reads.
    pub(crate) fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The files the table reads, as found when it was made.
    pub(crate) fn files(&self) -> &[ObjectMeta] {
        &self.files
    }

    async fn files_with_stats(
        &self,
        state: &dyn Session,
        format: &ParquetFormat,
    ) -> Result<&(Vec<PartitionedFile>, Statistics)> {
        self.with_stats
            .get_or_try_init(|| async {
                let store = state.runtime_env().object_store(&self.url)?;
                // The runtime's statistics cache outlives sessions (the server opens one per
                // state of the lake), keyed by path and checked against size, modification
                // time and schema, as a listing table uses it.
                let cache = state.runtime_env().cache_manager.get_file_statistic_cache();
                let fingerprint = Arc::new(SchemaFingerprint::from_schema(&self.schema));
                let files: Vec<PartitionedFile> = futures::stream::iter(self.files.clone())
                    .map(|meta| {
                        let store = Arc::clone(&store);
                        let schema = Arc::clone(&self.schema);
                        let (cache, fingerprint) = (cache.clone(), Arc::clone(&fingerprint));
                        async move {
                            let key = TableScopedPath {
                                table: None,
                                path: meta.location.clone(),
                            };
                            let cached = cache
                                .as_ref()
                                .and_then(|c| c.get(&key))
                                .filter(|c| c.is_valid_for(&meta, &fingerprint));
                            let stats = match cached {
                                Some(c) => c.statistics,
                                None => {
                                    let stats = Arc::new(
                                        format.infer_stats(state, &store, schema, &meta).await?,
                                    );
                                    if let Some(c) = &cache {
                                        c.put(
                                            &key,
                                            CachedFileMetadata::new(
                                                meta.clone(),
                                                fingerprint,
                                                Arc::clone(&stats),
                                                None,
                                            ),
                                        );
                                    }
                                    stats
                                }
                            };
                            Ok::<_, datafusion::error::DataFusionError>(
                                PartitionedFile::from(meta).with_statistics(stats),
                            )
                        }
                    })
                    .buffered(HEAD_CONCURRENCY)
                    .try_collect()
                    .await?;
                let table = Statistics::try_merge_iter(
                    files.iter().filter_map(|f| f.statistics.as_deref()),
                    &self.schema,
                )?;
                Ok((files, table))
            })
            .await
    }
}

#[async_trait]
impl TableProvider for FilesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // Filters reach the Parquet scan through DataFusion's filter pushdown into the
        // plan (row-group statistics, and row filters when the session enables them),
        // the same way they reach a listing table's scan.
        let format = ParquetFormat::default();
        let (files, statistics) = self.files_with_stats(state, &format).await?;
        let source = format.file_source(Arc::clone(&self.schema).into());
        let groups =
            FileGroup::new(files.clone()).split_files(state.config().target_partitions().max(1));
        let config = FileScanConfigBuilder::new(self.url.clone(), source)
            .with_file_groups(groups)
            .with_statistics(statistics.clone())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// The files a session's rollup tables read, each with its size and modification time.
///
/// Every instant in a row of a rollup partition `date=D` lies on or after D 00:00 UTC (a
/// conversation's rows sit in the partition of the day of its first event, an agent status
/// interval in the day it began). So two sessions whose files differ only in partitions
/// from D on agree about everything before D, and an answer about earlier time computed
/// on one holds on the other. Files are compared by name, size and modification time: a
/// refresh writes new names, retention removes files, erasure rewrites them in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupFiles(std::collections::BTreeMap<String, (u64, i64)>);

impl RollupFiles {
    /// The files, as paths on the local file system.
    pub fn paths(&self) -> impl Iterator<Item = std::path::PathBuf> + '_ {
        self.0
            .keys()
            .map(|k| std::path::PathBuf::from(format!("/{k}")))
    }

    pub(crate) fn add(&mut self, files: &[ObjectMeta]) {
        for f in files {
            self.0.insert(
                f.location.to_string(),
                (f.size, f.last_modified.timestamp_micros()),
            );
        }
    }

    /// The earliest instant (UTC microseconds) whose answers can differ between the two
    /// sets: `None` when they are the same files, `i64::MIN` when a differing file is in no
    /// `date=` partition.
    pub fn changed_from(&self, other: &RollupFiles) -> Option<i64> {
        let differing = self
            .0
            .iter()
            .filter(|(k, v)| other.0.get(*k) != Some(*v))
            .chain(other.0.iter().filter(|(k, v)| self.0.get(*k) != Some(*v)))
            .map(|(k, _)| k);
        differing
            .map(|k| partition_start(k).unwrap_or(i64::MIN))
            .min()
    }
}

/// The first instant of the `date=YYYY-MM-DD` folder a file is in.
fn partition_start(location: &str) -> Option<i64> {
    let dir = location.rsplit('/').nth(1)?;
    let day = chrono::NaiveDate::parse_from_str(dir.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    Some(
        day.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;

    fn write(path: &Path, schema: &SchemaRef, values: Vec<i64>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let batch =
            RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(Int64Array::from(values))])
                .unwrap();
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(path).unwrap(),
            Arc::clone(schema),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    async fn query(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn reads_the_named_files_and_leaves_out_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        write(
            &dir.path().join("t/date=2026-01-01/1.parquet"),
            &schema,
            vec![1, 2, 3],
        );
        write(
            &dir.path().join("t/date=2026-01-02/2.parquet"),
            &schema,
            vec![10, 20],
        );
        // A file beside them that the list does not name is not read.
        write(
            &dir.path().join("t/date=2026-01-02/old.parquet"),
            &schema,
            vec![1000],
        );
        let files = [
            "t/date=2026-01-01/1.parquet".to_string(),
            "t/date=2026-01-02/2.parquet".to_string(),
            "t/date=2026-01-03/gone.parquet".to_string(),
        ];
        let ctx = SessionContext::new();
        let table = FilesTable::open(&ctx, dir.path(), &files, Arc::clone(&schema))
            .await
            .unwrap();
        assert_eq!(table.file_count(), 2);
        ctx.register_table("t", Arc::new(table)).unwrap();
        let row = query(&ctx, "SELECT count(*) AS n, sum(v) AS s FROM t WHERE v > 1").await;
        // v > 1 keeps 2, 3, 10, 20: four rows summing to 35.
        assert!(row.contains("| 4 | 35 |"), "{row}");

        let empty = FilesTable::open(&ctx, dir.path(), &files[2..], Arc::clone(&schema))
            .await
            .unwrap();
        ctx.register_table("e", Arc::new(empty)).unwrap();
        let out = query(&ctx, "SELECT count(*) AS n FROM e").await;
        assert!(out.contains("| 0 |"), "{out}");
    }

    fn files(list: &[(&str, u64, i64)]) -> RollupFiles {
        let metas: Vec<ObjectMeta> = list
            .iter()
            .map(|(path, size, mtime)| ObjectMeta {
                location: ObjectPath::from(*path),
                last_modified: chrono::DateTime::from_timestamp_micros(*mtime).unwrap(),
                size: *size,
                e_tag: None,
                version: None,
            })
            .collect();
        let mut f = RollupFiles::default();
        f.add(&metas);
        f
    }

    #[test]
    fn changed_from_is_the_first_day_whose_files_differ() {
        let day = |d: &str| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .unwrap()
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .timestamp_micros()
        };
        let a = files(&[
            ("l/conversations/date=2026-11-02/1.parquet", 10, 5),
            ("l/conversations/date=2026-11-03/1.parquet", 10, 5),
            ("l/conversations/date=2026-11-04/1.parquet", 10, 5),
        ]);
        assert_eq!(a.changed_from(&a.clone()), None);
        // A new file in 11-04 (and the old one gone): from 11-04.
        let b = files(&[
            ("l/conversations/date=2026-11-02/1.parquet", 10, 5),
            ("l/conversations/date=2026-11-03/1.parquet", 10, 5),
            ("l/conversations/date=2026-11-04/2.parquet", 12, 6),
        ]);
        assert_eq!(a.changed_from(&b), Some(day("2026-11-04")));
        assert_eq!(b.changed_from(&a), Some(day("2026-11-04")));
        // The same name rewritten in place (erasure): a new size or time counts.
        let c = files(&[
            ("l/conversations/date=2026-11-02/1.parquet", 10, 5),
            ("l/conversations/date=2026-11-03/1.parquet", 10, 9),
            ("l/conversations/date=2026-11-04/1.parquet", 10, 5),
        ]);
        assert_eq!(a.changed_from(&c), Some(day("2026-11-03")));
        // A partition dropped (retention): from its day.
        let d = files(&[
            ("l/conversations/date=2026-11-03/1.parquet", 10, 5),
            ("l/conversations/date=2026-11-04/1.parquet", 10, 5),
        ]);
        assert_eq!(a.changed_from(&d), Some(day("2026-11-02")));
        // A differing file outside any day: everything.
        let e = files(&[
            ("l/conversations/date=2026-11-02/1.parquet", 10, 5),
            ("l/conversations/date=2026-11-03/1.parquet", 10, 5),
            ("l/conversations/date=2026-11-04/1.parquet", 10, 5),
            ("l/conversations/stray.parquet", 1, 1),
        ]);
        assert_eq!(a.changed_from(&e), Some(i64::MIN));
    }
}
