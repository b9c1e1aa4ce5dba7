//! A deadline between every two operators of an analyst query's plan.
//!
//! Cancelling a query by dropping its task only works when the task yields; an operator
//! that pulls batch after batch from an in-memory source (`count(*)` over `range(1e12)`),
//! or a join that makes billions of rows from one input batch, may never give the runtime
//! the chance. So the analyst session adds one last physical optimizer rule: every node of
//! the plan is wrapped in a [`DeadlineExec`], whose stream fails once the query has run
//! longer than the timeout. Each operator reads its input through one, so the whole query
//! stops within one batch of the deadline, whichever protocol runs it. The check is one
//! clock read per batch.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;

/// The text every deadline error starts with (how callers recognize it).
pub const DEADLINE_MESSAGE: &str = "cancelled at the analyst query deadline";

/// Wraps every node of a plan in a [`DeadlineExec`].
#[derive(Debug)]
pub struct Deadlines {
    pub timeout: Duration,
}

impl PhysicalOptimizerRule for Deadlines {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let timeout = self.timeout;
        // Already wrapped (a plan optimized twice): leave it.
        if plan.exists(|n| Ok(n.name() == "DeadlineExec"))? {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            Ok(Transformed::yes(
                Arc::new(DeadlineExec::new(node, timeout)) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "deadlines"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input's batches through until the deadline, then fails.
#[derive(Debug)]
pub struct DeadlineExec {
    input: Arc<dyn ExecutionPlan>,
    timeout: Duration,
    properties: Arc<PlanProperties>,
}

impl DeadlineExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, timeout: Duration) -> Self {
        let properties = Arc::clone(input.properties());
        DeadlineExec {
            input,
            timeout,
            properties,
        }
    }
}

impl DisplayAs for DeadlineExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DeadlineExec: timeout={:?}", self.timeout)
    }
}

impl ExecutionPlan for DeadlineExec {
    fn name(&self) -> &str {
        "DeadlineExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(DeadlineExec::new(input, self.timeout))),
            _ => Err(DataFusionError::Internal(
                "DeadlineExec takes exactly one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(DeadlineStream {
            input,
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
        }))
    }
}

struct DeadlineStream {
    input: SendableRecordBatchStream,
    deadline: Instant,
    timeout: Duration,
}

impl Stream for DeadlineStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(Some(Err(DataFusionError::Execution(format!(
                "{DEADLINE_MESSAGE}: ran longer than {:?}",
                self.timeout
            )))));
        }
        self.input.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for DeadlineStream {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }
}
