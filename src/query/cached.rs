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
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;
use tokio::sync::OnceCell;

/// A view whose result is computed on first use and then kept.
///
/// It keeps the view's logical plan, not a `DataFrame`: a data frame holds a copy of the
/// session state, whose catalog holds this view — a cycle of reference counts that kept
/// every session with a computed view (and its results) alive for ever. The plan is run
/// with the state of the session that scans it.
#[derive(Debug)]
pub struct CachedView {
    plan: LogicalPlan,
    schema: SchemaRef,
    partitions: usize,
    result: OnceCell<Arc<MemTable>>,
}

impl CachedView {
    /// `partitions`: how many in-memory partitions later scans read in parallel.
    pub fn new(plan: DataFrame, partitions: usize) -> Self {
        // Kept as plain strings: a string view keeps the whole decoded page it points into
        // alive, and a filtered view of the events would keep every page it read.
        let schema = super::without_string_views(plan.schema().as_arrow());
        CachedView {
            plan: plan.into_unoptimized_plan(),
            schema,
            partitions: partitions.max(1),
            result: OnceCell::new(),
        }
    }

    async fn table(&self, state: &dyn Session) -> Result<&Arc<MemTable>> {
        self.result
            .get_or_try_init(|| async {
                let plan = state.create_physical_plan(&self.plan).await?;
                let mut stream = datafusion::physical_plan::execute_stream(plan, state.task_ctx())?;
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
        self.table(state)
            .await?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A session that computed a cached view is freed with everything it kept once the
    /// last handle to it is dropped (no reference cycle through the view).
    #[tokio::test]
    async fn a_dropped_session_frees_its_cached_views() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..1000))],
        )
        .unwrap();
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        let df = ctx
            .sql("SELECT n * 2 AS m FROM t WHERE n % 2 = 0")
            .await
            .unwrap();
        let view = Arc::new(CachedView::new(df, 2));
        let weak = Arc::downgrade(&view);
        ctx.register_table("v", view).unwrap();
        let rows = ctx
            .sql("SELECT count(*) AS c, sum(m) AS s FROM v")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let c = rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let s = rows[0]
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        // 500 even numbers 0..998, doubled: 2 × (0 + 2 + … + 998) = 2 × 249 500.
        assert_eq!((c.value(0), s.value(0)), (500, 499_000));
        assert!(weak.upgrade().is_some(), "the session holds the view");
        drop(rows);
        drop(ctx);
        assert!(
            weak.upgrade().is_none(),
            "the view (and its kept result) outlived its session"
        );
    }
}
