//! `GROUP BY` one string view column of few values, grouped by view.
//!
//! DataFusion groups a string view column by hashing and comparing the bytes of every row
//! (about two thirds of `SELECT kind, count(*) FROM events GROUP BY kind`). A column
//! decoded from a Parquet dictionary repeats the same 16-byte view for every row of one
//! value, so [`ViewGroupExec`] looks each row's view up in a small direct-mapped cache of
//! the batch's views and reads the bytes (to find the group by value) only on a miss:
//! about once per distinct view and batch. The aggregate functions are DataFusion's own
//! accumulators, fed the group of each row, and the output is what the aggregation it
//! replaces gives (the partial states, or the final values).
//!
//! It only takes the aggregation over when the first rows show few distinct views (at
//! most one in [`FEW`]); otherwise — a column of mostly distinct values such as an
//! identifier — it hands the rows it read, and the rest, to DataFusion's aggregation
//! unchanged (whose metrics `EXPLAIN ANALYZE` then does not show). Its group table draws
//! on the session's memory pool; past the limit a partial aggregation emits its groups
//! early (the final one merges them), as DataFusion's does, and a single-step one fails.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringViewArray, StringViewBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, InputOrderMode,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

/// At most one distinct view in this many rows of the first batches, or DataFusion's
/// aggregation runs instead.
pub const FEW: usize = 8;

/// The metric of the rows grouped by view (in `EXPLAIN ANALYZE`).
pub const ROWS_BY_VIEW: &str = "rows_grouped_by_view";

/// Rows read before choosing.
const PROBE_ROWS: usize = 4096;

/// Whether `agg` is an aggregation [`ViewGroupExec`] can run: one string view group
/// column, no grouping sets, every aggregate with a group accumulator and without
/// `DISTINCT` or `ORDER BY`, input in no particular order, no limit.
pub fn applies(agg: &AggregateExec) -> bool {
    let group = agg.group_expr();
    let input = agg.input().schema();
    matches!(
        agg.mode(),
        AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
    ) && group.is_single()
        && group.expr().len() == 1
        && group.null_expr().is_empty()
        && group.expr()[0].0.data_type(&input).ok() == Some(DataType::Utf8View)
        && agg.aggr_expr().iter().all(|a| {
            a.groups_accumulator_supported() && !a.is_distinct() && a.order_bys().is_empty()
        })
        && agg.limit_options().is_none()
        && agg.dynamic_expressions_produced().is_empty()
        && *agg.input_order_mode() == InputOrderMode::Linear
}

/// Runs an [`AggregateExec`] that [`applies`] by view (see the module documentation).
#[derive(Debug)]
pub struct ViewGroupExec {
    aggregate: Arc<AggregateExec>,
    metrics: ExecutionPlanMetricsSet,
}

impl ViewGroupExec {
    pub fn new(aggregate: Arc<AggregateExec>) -> Self {
        ViewGroupExec {
            aggregate,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for ViewGroupExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ViewGroupExec: by view, else ")?;
        self.aggregate.fmt_as(t, f)
    }
}

impl ExecutionPlan for ViewGroupExec {
    fn name(&self) -> &str {
        "ViewGroupExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.aggregate.input()]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.aggregate.input_distribution_requirements()
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.aggregate.benefits_from_input_partitioning()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.aggregate.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let aggregate = Arc::clone(&self.aggregate).replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?;
        match aggregate.downcast_ref::<AggregateExec>() {
            Some(a) if applies(a) => Ok(Arc::new(ViewGroupExec::new(Arc::new(a.clone())))),
            _ => Ok(aggregate),
        }
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self
            .aggregate
            .input()
            .execute(partition, Arc::clone(&context))?;
        let schema = self.aggregate.schema();
        let aggregate = Arc::clone(&self.aggregate);
        let stream = futures::stream::once(run(
            aggregate,
            input,
            partition,
            context,
            self.metrics.clone(),
        ))
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Reads the first rows, then either groups by view or hands everything to `aggregate`.
async fn run(
    aggregate: Arc<AggregateExec>,
    mut input: SendableRecordBatchStream,
    partition: usize,
    context: Arc<TaskContext>,
    metrics: ExecutionPlanMetricsSet,
) -> Result<SendableRecordBatchStream> {
    let baseline = BaselineMetrics::new(&metrics, partition);
    let group_expr = Arc::clone(&aggregate.group_expr().expr()[0].0);
    let mut read = Vec::new();
    let mut rows = 0;
    let mut views = std::collections::HashSet::<u128, foldhash::fast::RandomState>::default();
    while rows < PROBE_ROWS {
        let Some(batch) = input.next().await.transpose()? else {
            break;
        };
        let column = group_expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        let column = string_views(&column)?;
        views.extend(column.views().iter().copied());
        rows += batch.num_rows();
        read.push(batch);
    }
    if views.len() * FEW > rows.max(FEW) {
        let schema = input.schema();
        let properties = Arc::clone(aggregate.input().properties());
        let rest = futures::stream::iter(read.into_iter().map(Ok)).chain(input);
        let replay = Arc::new(ReplayExec {
            properties,
            stream: Mutex::new(Some(Box::pin(RecordBatchStreamAdapter::new(schema, rest)))),
        });
        return aggregate
            .replace_children(
                vec![replay],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
            )?
            .execute(partition, context);
    }

    let by_view: Count = MetricBuilder::new(&metrics).counter(ROWS_BY_VIEW, partition);
    let reservation =
        MemoryConsumer::new(format!("ViewGroupExec[{partition}]")).register(context.memory_pool());
    let schema = aggregate.schema();
    let state = Running {
        groups: Groups::new(&aggregate, reservation)?,
        read: read.into(),
        input: Some(input),
        out: VecDeque::new(),
        schema: Arc::clone(&schema),
        batch_size: context.session_config().batch_size().max(1),
        baseline,
        by_view,
    };
    let stream = futures::stream::try_unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.out.pop_front() {
                st.baseline.record_output(b.num_rows());
                return Ok(Some((b, st)));
            }
            let Some(input) = st.input.as_mut() else {
                st.baseline.done();
                return Ok(None);
            };
            let next = match st.read.pop_front() {
                Some(b) => Some(b),
                None => input.next().await.transpose()?,
            };
            let elapsed = st.baseline.elapsed_compute().clone();
            let _timer = elapsed.timer();
            match next {
                Some(batch) => {
                    st.groups.update(&batch)?;
                    st.by_view.add(batch.num_rows());
                    if let Err(e) = st.groups.reserve() {
                        // Partial states may be emitted at any time (the final
                        // aggregation merges them), as DataFusion's own partial
                        // aggregation does under memory pressure; final values may not.
                        if st.groups.finals {
                            return Err(e);
                        }
                        st.emit()?;
                        st.groups.reserve()?;
                    }
                }
                None => {
                    st.emit()?;
                    st.input = None;
                }
            }
        }
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
}

/// The state of a partition grouped by view.
struct Running {
    groups: Groups,
    /// The batches read to choose, not yet grouped.
    read: VecDeque<RecordBatch>,
    /// `None` once the input has ended and the last groups are out.
    input: Option<SendableRecordBatchStream>,
    out: VecDeque<RecordBatch>,
    schema: SchemaRef,
    batch_size: usize,
    baseline: BaselineMetrics,
    by_view: Count,
}

impl Running {
    /// Takes every group out, in batches of the session's size.
    fn emit(&mut self) -> Result<()> {
        if let Some(b) = self.groups.take(Arc::clone(&self.schema))? {
            for start in (0..b.num_rows()).step_by(self.batch_size) {
                let len = self.batch_size.min(b.num_rows() - start);
                self.out.push_back(b.slice(start, len));
            }
        }
        Ok(())
    }
}

fn string_views(column: &ArrayRef) -> Result<&StringViewArray> {
    column.as_string_view_opt().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "ViewGroupExec: the group column is {}, not Utf8View",
            column.data_type()
        ))
    })
}

/// One aggregate function: its accumulator, arguments and `FILTER (WHERE …)`.
struct Function {
    accumulator: Box<dyn GroupsAccumulator>,
    arguments: Vec<Arc<dyn PhysicalExpr>>,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

/// The groups seen so far and the aggregate state of each.
struct Groups {
    group_expr: Arc<dyn PhysicalExpr>,
    functions: Vec<Function>,
    /// Whether to emit final values (`Single`) rather than partial states.
    finals: bool,
    by_value: HashMap<String, usize, foldhash::fast::RandomState>,
    /// The value of each group, in group order (`None`: the `NULL` group).
    values: Vec<Option<String>>,
    null_group: Option<usize>,
    /// A direct-mapped cache of the current batch's views and their groups.
    cache: Vec<(u128, u32)>,
    indices: Vec<usize>,
    value_bytes: usize,
    reservation: MemoryReservation,
}

impl Groups {
    fn new(aggregate: &AggregateExec, reservation: MemoryReservation) -> Result<Self> {
        let functions = aggregate
            .aggr_expr()
            .iter()
            .zip(aggregate.filter_expr())
            .map(|(a, filter)| {
                Ok(Function {
                    accumulator: a.create_groups_accumulator()?,
                    arguments: a.expressions(),
                    filter: filter.clone(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Groups {
            group_expr: Arc::clone(&aggregate.group_expr().expr()[0].0),
            functions,
            finals: *aggregate.mode() != AggregateMode::Partial,
            by_value: HashMap::default(),
            values: Vec::new(),
            null_group: None,
            cache: vec![(0, EMPTY); SLOTS],
            indices: Vec::new(),
            value_bytes: 0,
            reservation,
        })
    }

    /// The group of `NULL`.
    fn null_group(&mut self) -> usize {
        match self.null_group {
            Some(g) => g,
            None => {
                self.values.push(None);
                *self.null_group.insert(self.values.len() - 1)
            }
        }
    }

    /// The group of a value, a new one if it is new.
    #[inline(never)]
    fn group_of(&mut self, value: &str) -> usize {
        if let Some(g) = self.by_value.get(value) {
            return *g;
        }
        let g = self.values.len();
        self.values.push(Some(value.to_string()));
        self.by_value.insert(value.to_string(), g);
        self.value_bytes += 2 * value.len();
        g
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        let column = self.group_expr.evaluate(batch)?.into_array(rows)?;
        let column = string_views(&column)?;
        // Locals, so the loop keeps them in registers rather than reading them from `self`.
        let mut indices = std::mem::take(&mut self.indices);
        indices.clear();
        indices.reserve(rows);
        // The group of each view seen in this batch, by slot: the views of one batch
        // point into its own buffers, so the cache starts empty for each.
        let mut cache = std::mem::take(&mut self.cache);
        cache.fill((0, EMPTY));
        let nulls = column.nulls().filter(|n| n.null_count() > 0);
        for (i, &view) in column.views().iter().enumerate() {
            if nulls.is_some_and(|n| n.is_null(i)) {
                indices.push(self.null_group());
                continue;
            }
            let slot = &mut cache[slot_of(view)];
            let g = if slot.1 != EMPTY && slot.0 == view {
                slot.1 as usize
            } else {
                let g = self.group_of(column.value(i));
                if let Ok(small) = u32::try_from(g)
                    && small != EMPTY
                {
                    *slot = (view, small);
                }
                g
            };
            indices.push(g);
        }
        self.indices = indices;
        self.cache = cache;
        let total = self.values.len();
        for f in &mut self.functions {
            let arguments = f
                .arguments
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(rows))
                .collect::<Result<Vec<_>>>()?;
            let filter = f
                .filter
                .as_ref()
                .map(|e| e.evaluate(batch)?.into_array(rows))
                .transpose()?;
            f.accumulator.update_batch(
                &arguments,
                &self.indices,
                filter.as_ref().map(|f| f.as_boolean()),
                total,
            )?;
        }
        Ok(())
    }

    /// Accounts for the memory the groups hold; fails past the pool's limit.
    fn reserve(&mut self) -> Result<()> {
        self.reservation.try_resize(self.size())
    }

    fn size(&self) -> usize {
        self.value_bytes
            + self.values.capacity() * size_of::<Option<String>>()
            + self.by_value.capacity() * (size_of::<String>() + size_of::<usize>() + 1)
            + self.cache.capacity() * size_of::<(u128, u32)>()
            + self.indices.capacity() * size_of::<usize>()
            + self
                .functions
                .iter()
                .map(|f| f.accumulator.size())
                .sum::<usize>()
    }

    /// Every group and its state (or final value), and the groups emptied: the
    /// accumulators start afresh after emitting all.
    fn take(&mut self, schema: SchemaRef) -> Result<Option<RecordBatch>> {
        if self.values.is_empty() {
            return Ok(None);
        }
        let mut keys = StringViewBuilder::with_capacity(self.values.len());
        for v in &self.values {
            keys.append_option(v.as_deref());
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(keys.finish())];
        for f in &mut self.functions {
            if self.finals {
                columns.push(f.accumulator.evaluate(EmitTo::All)?);
            } else {
                columns.extend(f.accumulator.state(EmitTo::All)?);
            }
        }
        self.values = Vec::new();
        self.by_value = HashMap::default();
        self.null_group = None;
        self.value_bytes = 0;
        Ok(Some(RecordBatch::try_new(schema, columns)?))
    }
}

/// Slots of the view cache (a power of two); a column of a few dozen values rarely has
/// two in one slot, and a miss only costs a lookup by value. (Four under test, so that
/// views share slots all the time.)
const SLOTS: usize = if cfg!(test) { 4 } else { 256 };

/// An empty cache slot.
const EMPTY: u32 = u32::MAX;

/// The cache slot of a view.
#[inline(always)]
fn slot_of(view: u128) -> usize {
    let mixed =
        (view as u64 ^ ((view >> 64) as u64).rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> (64 - SLOTS.trailing_zeros())) as usize & (SLOTS - 1)
}

/// Hands the stream it holds to the one `execute` call (the rows [`ViewGroupExec`] read
/// before choosing, then the rest of its input).
struct ReplayExec {
    properties: Arc<PlanProperties>,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl fmt::Debug for ReplayExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplayExec")
    }
}

impl DisplayAs for ReplayExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("ReplayExec")
    }
}

impl ExecutionPlan for ReplayExec {
    fn name(&self) -> &str {
        "ReplayExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "ReplayExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.stream
            .lock()
            .map_err(|_| DataFusionError::Internal("ReplayExec: a poisoned lock".into()))?
            .take()
            .ok_or_else(|| DataFusionError::Internal("ReplayExec runs once".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::{Field, Schema};
    use datafusion::common::tree_node::TreeNode;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use proptest::prelude::*;

    /// A session over `t` (string view `s`, `x` Int64, `y` Float64) split into
    /// `partitions`, with or without the rule.
    fn session(
        rows: &[(Option<String>, Option<i64>, f64)],
        partitions: usize,
        batch: usize,
        rule: bool,
    ) -> SessionContext {
        session_in(rows, partitions, batch, rule, None)
    }

    /// [`session`] with a memory pool of `memory` bytes.
    fn session_in(
        rows: &[(Option<String>, Option<i64>, f64)],
        partitions: usize,
        batch: usize,
        rule: bool,
        memory: Option<usize>,
    ) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new("x", DataType::Int64, true),
            Field::new("y", DataType::Float64, false),
        ]));
        let mut parts = vec![Vec::new(); partitions];
        for (n, chunk) in rows.chunks(batch.max(1)).enumerate() {
            // Each batch repeats one view per distinct value, as a dictionary page does.
            let mut s = StringViewBuilder::new()
                .with_fixed_block_size(64)
                .with_deduplicate_strings();
            for r in chunk {
                s.append_option(r.0.as_deref());
            }
            let x: Int64Array = chunk.iter().map(|r| r.1).collect();
            let y: Float64Array = chunk.iter().map(|r| Some(r.2)).collect();
            let b = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(s.finish()), Arc::new(x), Arc::new(y)],
            )
            .unwrap();
            parts[n % partitions].push(b);
        }
        let config = SessionConfig::new().with_target_partitions(partitions);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if let Some(bytes) = memory {
            let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_limit(bytes, 1.0)
                .build_arc()
                .unwrap();
            state = state.with_runtime_env(runtime);
        }
        if rule {
            state = state.with_physical_optimizer_rule(Arc::new(super::super::StringViewPaths));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, parts).unwrap()))
            .unwrap();
        ctx
    }

    /// Runs `sql`; the rows as text, and the rows the plan grouped by view.
    async fn run(ctx: &SessionContext, sql: &str) -> (String, usize) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
        let mut by_view = 0;
        plan.apply(|node| {
            if let Some(m) = node.metrics() {
                by_view += m
                    .sum_by_name(ROWS_BY_VIEW)
                    .map(|v| v.as_usize())
                    .unwrap_or(0);
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        (text, by_view)
    }

    const QUERIES: [&str; 4] = [
        "SELECT s, count(*) AS n, count(x) AS nx, sum(x) AS sx, avg(y) AS ay, min(x) AS lo, max(y) AS hi \
         FROM t GROUP BY s ORDER BY s NULLS FIRST",
        "SELECT s, count(*) FILTER (WHERE x > 3) AS big, sum(x) FILTER (WHERE y < 0.5) AS low \
         FROM t GROUP BY s ORDER BY s NULLS FIRST",
        "SELECT lower(s) AS l, count(*) AS n FROM t WHERE s <> 'delivery_status_failed' GROUP BY lower(s) ORDER BY l NULLS FIRST",
        "SELECT s, count(*) AS n FROM t WHERE s IN ('delivery_status_failed', 'in', 'x') OR x = 1 GROUP BY s ORDER BY s NULLS FIRST",
    ];

    fn rows_from(
        picks: &[(Option<usize>, Option<i64>, u8)],
        words: &[String],
    ) -> Vec<(Option<String>, Option<i64>, f64)> {
        picks
            .iter()
            .map(|(w, x, y)| {
                (
                    w.map(|i| words[i % words.len()].clone()),
                    *x,
                    f64::from(*y) / 10.0,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn few_values_are_grouped_by_view_and_many_are_left_to_datafusion() {
        // 9000 rows over 5 values and NULL: by view; 9000 distinct values, or values
        // computed row by row: DataFusion's.
        let few: Vec<String> = [
            "in",
            "out",
            "delivery_status_failed",
            "csat_submitted_by_customer",
            "x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let picks: Vec<_> = (0..9000usize)
            .map(|i| {
                (
                    (i % 7 != 6).then_some(i % 5),
                    (i % 3 != 0).then_some(i as i64 % 11),
                    (i % 10) as u8,
                )
            })
            .collect();
        let many: Vec<String> = (0..9000)
            .map(|i| format!("customer-{i:05}-with-a-long-key"))
            .collect();
        let distinct: Vec<_> = (0..9000usize).map(|i| (Some(i), Some(1), 1)).collect();
        for (rows, grouped_by_view) in [
            (rows_from(&picks, &few), true),
            (rows_from(&distinct, &many), false),
        ] {
            for partitions in [1, 2] {
                let plain = session(&rows, partitions, 1024, false);
                let fast = session(&rows, partitions, 1024, true);
                for sql in QUERIES {
                    let (want, none) = run(&plain, sql).await;
                    let (got, by_view) = run(&fast, sql).await;
                    assert_eq!(none, 0);
                    assert_eq!(got, want, "{sql} over {partitions} partitions");
                    // `lower(s)` makes a new value, so a view of its own, for each row.
                    let expected = grouped_by_view && !sql.contains("lower(s)");
                    assert_eq!(by_view > 0, expected, "{sql}: {by_view} rows by view");
                }
            }
        }
    }

    #[tokio::test]
    async fn past_the_memory_limit_partial_groups_are_emitted_early() {
        // 8192 rows of three values (each partition's first 4096: grouped by view), then
        // three values and 12 000 distinct long ones in turn: the group table outgrows a
        // 256 KiB pool many times, and each emission holds the three values again.
        const COMMON: [&str; 3] = ["in", "out", "delivery_status_failed"];
        let mut rows: Vec<(Option<String>, Option<i64>, f64)> = (0..8192)
            .map(|i| (Some(COMMON[i % 3].to_string()), Some(1), 0.0))
            .collect();
        for i in 0..12_000 {
            rows.push((Some(COMMON[i % 3].to_string()), Some(1), 0.0));
            rows.push((
                Some(format!("customer-{i:05}-with-a-long-key")),
                Some(1),
                0.0,
            ));
        }
        let ctx = session_in(&rows, 2, 1024, true, Some(256 << 10));
        let plan = ctx
            .sql("SELECT s, count(*) AS n FROM t GROUP BY s")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let mut partial = None;
        plan.apply(|node| {
            if node.name() == "ViewGroupExec" {
                partial = Some(Arc::clone(node));
                return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        let partial = partial.expect("the partial aggregation runs by view");
        let mut counts = HashMap::<String, i64>::new();
        let mut emitted = 0;
        for p in 0..partial.properties().output_partitioning().partition_count() {
            let stream = partial.execute(p, ctx.task_ctx()).unwrap();
            for b in datafusion::physical_plan::common::collect(stream)
                .await
                .unwrap()
            {
                let keys = b.column(0).as_string_view();
                let n = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
                for i in 0..b.num_rows() {
                    *counts.entry(keys.value(i).to_string()).or_default() += n.value(i);
                }
                emitted += b.num_rows();
            }
        }
        let mut want = HashMap::<String, i64>::new();
        for r in &rows {
            *want.entry(r.0.clone().unwrap()).or_default() += 1;
        }
        assert_eq!(counts, want);
        let by_view = partial
            .metrics()
            .and_then(|m| m.sum_by_name(ROWS_BY_VIEW))
            .map(|v| v.as_usize());
        assert_eq!(by_view, Some(rows.len()));
        assert!(
            emitted >= want.len() + 3 * 4,
            "{emitted} partial rows for {} groups: not emitted early",
            want.len()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Random columns of few or many values, nulls, batch sizes and partitions: the
        /// same rows as without the rule.
        #[test]
        fn the_same_rows_as_datafusion_alone(
            picks in proptest::collection::vec(
                (proptest::option::weighted(0.9, 0usize..40), proptest::option::of(-5i64..20), 0u8..10),
                0..3000),
            distinct in 1usize..40,
            batch in 1usize..700,
            partitions in 1usize..4,
        ) {
            let words: Vec<String> = (0..distinct)
                .map(|i| if i % 2 == 0 { format!("v{i}") } else { format!("a-value-longer-than-twelve-{i}") })
                .collect();
            let rows = rows_from(&picks, &words);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let plain = session(&rows, partitions, batch, false);
                let fast = session(&rows, partitions, batch, true);
                for sql in QUERIES {
                    let (want, _) = run(&plain, sql).await;
                    let (got, _) = run(&fast, sql).await;
                    assert_eq!(got, want, "{}", sql);
                }
            });
        }
    }
}
