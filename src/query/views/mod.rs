//! Faster paths for string view columns, chosen by a physical optimizer rule.
//!
//! The lake's strings are read as string views (16 bytes per row: length, prefix, and the
//! value itself or where it lies), and a column decoded from a Parquet dictionary gives
//! every row of one value the same view. DataFusion compares and groups such columns byte
//! by byte on every row; the low-cardinality columns analysts filter and group by (`kind`,
//! `channel`, `status`, `team`) repeat a handful of values over millions of rows. So:
//! - [`filter::ViewEquals`] answers `=`, `<>` and `[NOT] IN` against literals in a filter
//!   from the views, comparing bytes once per distinct view, and [`filter::ViewAll`] an
//!   `AND` of such comparisons over whole batches;
//! - [`group::ViewGroupExec`] runs a `GROUP BY` of one such column by view.
//!
//! Each gives exactly what the plan it replaces gives; the tests compare them with
//! DataFusion's own operators.

pub mod filter;
pub mod group;

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};

/// The rule: filters' string view comparisons (and `AND`s of them) become
/// [`filter::ViewEquals`] ([`filter::ViewAll`]), and
/// aggregations [`group::applies`] to run in a [`group::ViewGroupExec`].
#[derive(Debug, Default)]
pub struct StringViewPaths;

impl PhysicalOptimizerRule for StringViewPaths {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(f) = node.downcast_ref::<FilterExec>() {
                let schema = f.input().schema();
                let predicate = filter::rewrite(Arc::clone(f.predicate()), &schema)?;
                if predicate.transformed {
                    let rebuilt = FilterExecBuilder::from(f)
                        .with_predicate(predicate.data)
                        .build()?;
                    return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
                }
            }
            if let Some(a) = node.downcast_ref::<AggregateExec>()
                && group::applies(a)
            {
                let exec = group::ViewGroupExec::new(Arc::new(a.clone()));
                return Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "string_view_paths"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
