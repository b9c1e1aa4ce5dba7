//! Views computed once per session.
//!
//! DataFusion inlines a view wherever it is used, so a view read by several others (and by
//! several parts of one query) is recomputed each time. The views that are expensive and read
//! often — the linking of loose messages and the `conversations` facts — are instead
//! registered as a [`CachedView`]: the first scan runs the view's plan to completion and keeps
//! the result in memory; every later scan, in that query or the next, reads the kept batches.
//!
//! A session therefore sees the lake as it was when each cached view was first read. The
//! server opens a new session when the lake changes.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;
use tokio::sync::OnceCell;

/// A view whose result is computed on first use and then kept.
#[derive(Debug)]
pub struct CachedView {
    plan: DataFrame,
    schema: SchemaRef,
    partitions: usize,
    result: OnceCell<Arc<MemTable>>,
}

impl CachedView {
    /// `partitions`: how many in-memory partitions later scans read in parallel.
    pub fn new(plan: DataFrame, partitions: usize) -> Self {
        // Kept as plain strings: a string view keeps the whole decoded page it points into
        // alive, and a filtered view of the events would keep every page it read.
        let arrow = plan.schema().as_arrow();
        let schema: SchemaRef = Arc::new(Schema::new_with_metadata(
            arrow
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
            arrow.metadata().clone(),
        ));
        CachedView {
            plan,
            schema,
            partitions: partitions.max(1),
            result: OnceCell::new(),
        }
    }

    async fn table(&self) -> Result<&Arc<MemTable>> {
        self.result
            .get_or_try_init(|| async {
                let mut stream = self.plan.clone().execute_stream().await?;
                // Spread the batches over the partitions, round robin, so readers run in
                // parallel; each is converted as it arrives, so the pages that string
                // views point into are freed as the plan runs.
                let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); self.partitions];
                let mut i = 0;
                while let Some(b) = futures::StreamExt::next(&mut stream).await {
                    let b = b?;
                    if b.num_rows() == 0 {
                        continue;
                    }
                    // The executed plan may describe its columns slightly differently
                    // (field metadata, nullability) from the logical schema that planners
                    // of later queries see; the data is the same.
                    // Casting string views to plain strings also copies them out of the
                    // (much larger) buffers they were read into, so those can be freed.
                    let columns = b
                        .columns()
                        .iter()
                        .zip(self.schema.fields())
                        .map(|(c, f)| {
                            if c.data_type() == f.data_type() {
                                Ok(Arc::clone(c))
                            } else {
                                arrow::compute::cast(c, f.data_type())
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let b = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
                    parts[i % self.partitions].push(b);
                    i += 1;
                }
                Ok(Arc::new(MemTable::try_new(
                    Arc::clone(&self.schema),
                    parts,
                )?))
            })
            .await
    }
}

#[async_trait]
impl TableProvider for CachedView {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.table()
            .await?
            .scan(state, projection, filters, limit)
            .await
    }
}
