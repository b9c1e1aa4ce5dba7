//! Metric rows: one typed point per metric family, read from the query's columns by name.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use serde::Serialize;

use super::{Metric, MetricError, MetricRequest, Result, Series, show_time};

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Duration,
    Open,
    Messages,
    ServiceLevel,
    Abandonment,
    Csat,
    Sla,
    AgentActivity,
}

/// One bucket of one series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    pub start: String,
    pub end: String,
    /// The headline number (mean, percentage or count, per the metric's unit); `null` when
    /// there is nothing to measure.
    pub value: Option<f64>,
    #[serde(flatten)]
    pub detail: Detail,
}

/// The numbers beside `value`, per metric family.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Detail {
    /// wait, wait_to_assign, first_response, handle, resolution (seconds).
    Duration {
        count: u64,
        p50: Option<f64>,
        p90: Option<f64>,
        p95: Option<f64>,
        max: Option<f64>,
    },
    Open {
        waiting: u64,
        unassigned: u64,
        longest_wait_s: Option<f64>,
    },
    Messages {
        messages_in: u64,
        messages_out: u64,
        from_agents: u64,
        from_bots: u64,
    },
    ServiceLevel {
        count: u64,
        within_target: u64,
        answered: u64,
        abandoned: u64,
        target_s: f64,
    },
    Abandonment {
        count: u64,
        abandoned: u64,
        lost: u64,
        abandoned_after_assignment: u64,
        answered: u64,
        bot_resolved: u64,
    },
    Csat {
        count: u64,
        mean: Option<f64>,
        satisfied: u64,
        resolved: u64,
        response_rate: Option<f64>,
    },
    Sla {
        count: u64,
        achieved: u64,
        breached: u64,
        active: u64,
        active_breached: u64,
        cancelled: u64,
    },
    AgentActivity {
        handled: u64,
        handle_mean_s: Option<f64>,
        messages_sent: u64,
        available_s: f64,
        paused_s: f64,
        offline_s: f64,
        paused_by_reason: BTreeMap<String, f64>,
    },
}

impl Detail {
    /// The detail of a bucket without data.
    fn empty(kind: Kind, target_s: f64) -> Detail {
        match kind {
            Kind::Duration => Detail::Duration {
                count: 0,
                p50: None,
                p90: None,
                p95: None,
                max: None,
            },
            Kind::Open => Detail::Open {
                waiting: 0,
                unassigned: 0,
                longest_wait_s: None,
            },
            Kind::Messages => Detail::Messages {
                messages_in: 0,
                messages_out: 0,
                from_agents: 0,
                from_bots: 0,
            },
            Kind::ServiceLevel => Detail::ServiceLevel {
                count: 0,
                within_target: 0,
                answered: 0,
                abandoned: 0,
                target_s,
            },
            Kind::Abandonment => Detail::Abandonment {
                count: 0,
                abandoned: 0,
                lost: 0,
                abandoned_after_assignment: 0,
                answered: 0,
                bot_resolved: 0,
            },
            Kind::Csat => Detail::Csat {
                count: 0,
                mean: None,
                satisfied: 0,
                resolved: 0,
                response_rate: None,
            },
            Kind::Sla => Detail::Sla {
                count: 0,
                achieved: 0,
                breached: 0,
                active: 0,
                active_breached: 0,
                cancelled: 0,
            },
            Kind::AgentActivity => Detail::AgentActivity {
                handled: 0,
                handle_mean_s: None,
                messages_sent: 0,
                available_s: 0.0,
                paused_s: 0.0,
                offline_s: 0.0,
                paused_by_reason: BTreeMap::new(),
            },
        }
    }

    /// The value of an empty bucket: counts are zero, means and rates do not exist.
    fn empty_value(kind: Kind) -> Option<f64> {
        match kind {
            Kind::Open | Kind::Messages | Kind::AgentActivity => Some(0.0),
            _ => None,
        }
    }
}

/// Typed access to one result batch's columns by name.
struct Columns {
    batch: RecordBatch,
    metric: &'static str,
}

impl Columns {
    fn col(&self, name: &str, to: &DataType) -> Result<ArrayRef> {
        let c = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| MetricError::Shape {
                metric: self.metric,
                reason: format!("no column {name}"),
            })?;
        cast(c, to).map_err(|e| MetricError::Shape {
            metric: self.metric,
            reason: format!("column {name}: {e}"),
        })
    }

    fn f64s(&self, name: &str) -> Result<Float64Array> {
        let a = self.col(name, &DataType::Float64)?;
        Ok(a.as_any()
            .downcast_ref::<Float64Array>()
            .cloned()
            .unwrap_or_else(|| Float64Array::from(vec![None; a.len()])))
    }

    fn i64s(&self, name: &str) -> Result<Int64Array> {
        let a = self.col(name, &DataType::Int64)?;
        Ok(a.as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .unwrap_or_else(|| Int64Array::from(vec![None; a.len()])))
    }

    fn times(&self, name: &str) -> Result<Int64Array> {
        let a = self.col(name, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let a = cast(&a, &DataType::Int64).map_err(|e| MetricError::Shape {
            metric: self.metric,
            reason: e.to_string(),
        })?;
        Ok(a.as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .unwrap_or_else(|| Int64Array::from(vec![None; a.len()])))
    }

    fn strs(&self, name: &str) -> Result<StringArray> {
        let a = self.col(name, &DataType::Utf8)?;
        Ok(a.as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .unwrap_or_else(|| StringArray::from(vec![None::<&str>; a.len()])))
    }
}

fn opt_f(a: &Float64Array, i: usize) -> Option<f64> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn count(a: &Int64Array, i: usize) -> u64 {
    if a.is_null(i) {
        0
    } else {
        a.value(i).max(0) as u64
    }
}

/// `lunch=1800,break=600` → {"break": 600, "lunch": 1800}.
fn reasons(text: Option<&str>) -> BTreeMap<String, f64> {
    text.unwrap_or_default()
        .split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn read_detail(kind: Kind, c: &Columns, i: usize) -> Result<Detail> {
    Ok(match kind {
        Kind::Duration => Detail::Duration {
            count: count(&c.i64s("count")?, i),
            p50: opt_f(&c.f64s("p50")?, i),
            p90: opt_f(&c.f64s("p90")?, i),
            p95: opt_f(&c.f64s("p95")?, i),
            max: opt_f(&c.f64s("max")?, i),
        },
        Kind::Open => Detail::Open {
            waiting: count(&c.i64s("waiting")?, i),
            unassigned: count(&c.i64s("unassigned")?, i),
            longest_wait_s: opt_f(&c.f64s("longest_wait_s")?, i),
        },
        Kind::Messages => Detail::Messages {
            messages_in: count(&c.i64s("messages_in")?, i),
            messages_out: count(&c.i64s("messages_out")?, i),
            from_agents: count(&c.i64s("from_agents")?, i),
            from_bots: count(&c.i64s("from_bots")?, i),
        },
        Kind::ServiceLevel => Detail::ServiceLevel {
            count: count(&c.i64s("count")?, i),
            within_target: count(&c.i64s("within_target")?, i),
            answered: count(&c.i64s("answered")?, i),
            abandoned: count(&c.i64s("abandoned")?, i),
            target_s: opt_f(&c.f64s("target_s")?, i).unwrap_or_default(),
        },
        Kind::Abandonment => Detail::Abandonment {
            count: count(&c.i64s("count")?, i),
            abandoned: count(&c.i64s("abandoned")?, i),
            lost: count(&c.i64s("lost")?, i),
            abandoned_after_assignment: count(&c.i64s("abandoned_after_assignment")?, i),
            answered: count(&c.i64s("answered")?, i),
            bot_resolved: count(&c.i64s("bot_resolved")?, i),
        },
        Kind::Csat => Detail::Csat {
            count: count(&c.i64s("count")?, i),
            mean: opt_f(&c.f64s("mean")?, i),
            satisfied: count(&c.i64s("satisfied")?, i),
            resolved: count(&c.i64s("resolved")?, i),
            response_rate: opt_f(&c.f64s("response_rate")?, i),
        },
        Kind::Sla => Detail::Sla {
            count: count(&c.i64s("count")?, i),
            achieved: count(&c.i64s("achieved")?, i),
            breached: count(&c.i64s("breached")?, i),
            active: count(&c.i64s("active")?, i),
            active_breached: count(&c.i64s("active_breached")?, i),
            cancelled: count(&c.i64s("cancelled")?, i),
        },
        Kind::AgentActivity => {
            let r = c.strs("paused_reasons")?;
            Detail::AgentActivity {
                handled: count(&c.i64s("handled")?, i),
                handle_mean_s: opt_f(&c.f64s("handle_mean_s")?, i),
                messages_sent: count(&c.i64s("messages_sent")?, i),
                available_s: opt_f(&c.f64s("available_s")?, i).unwrap_or_default(),
                paused_s: opt_f(&c.f64s("paused_s")?, i).unwrap_or_default(),
                offline_s: opt_f(&c.f64s("offline_s")?, i).unwrap_or_default(),
                paused_by_reason: reasons((!r.is_null(i)).then(|| r.value(i))),
            }
        }
    })
}

/// Shapes result rows (grp, bucket_start, bucket_end, value, …) into one series per group
/// with a point for every bucket of the range.
pub(super) fn series(
    metric: Metric,
    kind: Kind,
    batches: &[RecordBatch],
    buckets: &[i64],
    req: &MetricRequest,
) -> Result<Vec<Series>> {
    let name = metric.as_str();
    // group → bucket start → point
    let mut groups: BTreeMap<Option<String>, BTreeMap<i64, Point>> = BTreeMap::new();
    let mut target_s = 0.0;
    for batch in batches {
        let c = Columns {
            batch: batch.clone(),
            metric: name,
        };
        let grp = c.strs("grp")?;
        let starts = c.times("bucket_start")?;
        let ends = c.times("bucket_end")?;
        let values = c.f64s("value")?;
        for i in 0..batch.num_rows() {
            if starts.is_null(i) {
                continue;
            }
            let detail = read_detail(kind, &c, i)?;
            if let Detail::ServiceLevel { target_s: t, .. } = &detail {
                target_s = *t;
            }
            let point = Point {
                start: show_time(starts.value(i), req.tz),
                end: show_time(ends.value(i), req.tz),
                value: opt_f(&values, i),
                detail,
            };
            let g = (!grp.is_null(i)).then(|| grp.value(i).to_owned());
            groups.entry(g).or_default().insert(starts.value(i), point);
        }
    }
    if groups.is_empty() && req.group_by.is_none() && metric != Metric::AgentActivity {
        groups.insert(Some("all".to_owned()), BTreeMap::new());
    }
    let mut out = Vec::with_capacity(groups.len());
    for (group, mut points) in groups {
        let mut filled = Vec::with_capacity(buckets.len());
        for (k, &start) in buckets.iter().enumerate() {
            let end = buckets
                .get(k + 1)
                .copied()
                .unwrap_or_else(|| req.interval.next(start, req.tz));
            filled.push(points.remove(&start).unwrap_or_else(|| Point {
                start: show_time(start, req.tz),
                end: show_time(end, req.tz),
                value: Detail::empty_value(kind),
                detail: Detail::empty(kind, target_s),
            }));
        }
        out.push(Series {
            group,
            points: filled,
        });
    }
    Ok(out)
}
