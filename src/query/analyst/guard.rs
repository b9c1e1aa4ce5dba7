//! Guards on the functions that build large values from small inputs.
//!
//! DataFusion's memory pool accounts for what operators hold (hash tables, sorts, buffered
//! batches), not for the arrays a scalar function returns. A handful of functions can turn
//! a few bytes of SQL into gigabytes — `repeat('x', 2000000000)`, `range(1, 1e10)`,
//! `lpad('', 1e9)` — so in the analyst session each of them is wrapped: before the real
//! function runs, the wrapper works out from the arguments how large the result would be,
//! and refuses if that is beyond the caps. The same wrapper runs when the optimizer folds
//! constants, so a literal bomb fails while planning.

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::compute::kernels::length::length;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};
use datafusion::prelude::SessionContext;

use crate::query::udf::{Interceptor, wrap};

/// Largest value (string bytes or list elements) one row may produce.
pub const MAX_VALUE: i64 = 16 << 20;
/// Largest total over one batch.
pub const MAX_BATCH: i64 = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    /// `repeat(text, n)`: n × bytes of text.
    Repeat,
    /// `lpad/rpad(text, n [, fill])`: n characters (up to 4 bytes each).
    Pad,
    /// `array_repeat(x, n)`: n elements.
    ArrayRepeat,
    /// `replace(text, from, to)` and `regexp_replace(text, pattern, to …)`: at most
    /// bytes of text × bytes of `to`.
    Replace,
    /// `range` / `generate_series` as scalar functions returning a list.
    Series,
    /// `format(template, args…)` (Postgres): every specifier of the template may copy an
    /// argument (twice its length when `%L`/`%I` doubles its quotes), so at most bytes of
    /// template × (1 + 2 × bytes of all arguments).
    Format,
}

const GUARDED: &[(&str, Rule)] = &[
    ("repeat", Rule::Repeat),
    ("lpad", Rule::Pad),
    ("rpad", Rule::Pad),
    ("array_repeat", Rule::ArrayRepeat),
    ("replace", Rule::Replace),
    ("regexp_replace", Rule::Replace),
    ("range", Rule::Series),
    ("generate_series", Rule::Series),
    ("format", Rule::Format),
];

/// Replaces each guarded function of `ctx` with its wrapped form.
pub fn install(ctx: &SessionContext) {
    for (name, rule) in GUARDED {
        wrap(ctx, name, Guard(*rule));
    }
}

/// Checks the size a guarded function would build before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guard(Rule);

impl Interceptor for Guard {
    fn invoke(&self, inner: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let per_row = match self.0 {
            Rule::Repeat => product(ints(&args.args, 1, n)?, byte_lengths(&args.args, 0, n)?),
            Rule::Pad => ints(&args.args, 1, n)?.map(|a| scale(&a, 4)),
            Rule::ArrayRepeat => ints(&args.args, 1, n)?,
            Rule::Replace => product(
                byte_lengths(&args.args, 0, n)?,
                byte_lengths(&args.args, 2, n)?.map(|a| floor_one(&a)),
            ),
            Rule::Series => series_lengths(&args.args, n)?,
            Rule::Format => format_lengths(&args.args, n)?,
        };
        if let Some(sizes) = per_row {
            let mut total: i64 = 0;
            for v in sizes.iter().flatten() {
                if v > MAX_VALUE {
                    return exec_err!(
                        "{}() would build a value of about {v} bytes or elements; the analyst sandbox allows {MAX_VALUE}",
                        inner.name()
                    );
                }
                total = total.saturating_add(v.max(0));
            }
            if total > MAX_BATCH {
                return exec_err!(
                    "{}() would build about {total} bytes or elements in one batch; the analyst sandbox allows {MAX_BATCH}",
                    inner.name()
                );
            }
        }
        inner.invoke_with_args(args)
    }
}

/// The bound of [`Rule::Format`], per row.
fn format_lengths(args: &[ColumnarValue], n: usize) -> Result<Option<Int64Array>> {
    let Some(template) = byte_lengths(args, 0, n)? else {
        return Ok(None);
    };
    let mut sum: Vec<i64> = vec![0; n];
    for i in 1..args.len() {
        let Some(a) = array(args, i, n)? else {
            continue;
        };
        let text = cast_with_options(&a, &DataType::Utf8, &CastOptions::default())
            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?;
        let l = length(&text).map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?;
        if let Some(l) = to_i64(&l) {
            for (s, v) in sum.iter_mut().zip(l.iter()) {
                *s = s.saturating_add(v.unwrap_or(0));
            }
        }
    }
    Ok(Some(
        template
            .iter()
            .zip(sum)
            .map(|(t, s)| {
                Some(
                    t?.max(0)
                        .saturating_mul(s.saturating_mul(2).saturating_add(1)),
                )
            })
            .collect(),
    ))
}

fn array(args: &[ColumnarValue], i: usize, n: usize) -> Result<Option<ArrayRef>> {
    match args.get(i) {
        Some(a) => Ok(Some(a.to_array(n)?)),
        None => Ok(None),
    }
}

fn to_i64(a: &ArrayRef) -> Option<Int64Array> {
    let opts = CastOptions {
        safe: true,
        ..Default::default()
    };
    cast_with_options(a, &DataType::Int64, &opts)
        .ok()
        .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

/// Argument `i` as integers (absent or not numeric: no estimate).
fn ints(args: &[ColumnarValue], i: usize, n: usize) -> Result<Option<Int64Array>> {
    Ok(array(args, i, n)?.and_then(|a| to_i64(&a)))
}

/// The byte length of each string of argument `i`.
fn byte_lengths(args: &[ColumnarValue], i: usize, n: usize) -> Result<Option<Int64Array>> {
    let Some(a) = array(args, i, n)? else {
        return Ok(None);
    };
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let l = length(&a).map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?;
            Ok(to_i64(&l))
        }
        _ => Ok(None),
    }
}

fn product(a: Option<Int64Array>, b: Option<Int64Array>) -> Option<Int64Array> {
    match (a, b) {
        (Some(a), Some(b)) => Some(
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| Some(x?.max(0).saturating_mul(y?.max(0))))
                .collect(),
        ),
        (Some(a), None) | (None, Some(a)) => Some(a),
        (None, None) => None,
    }
}

fn scale(a: &Int64Array, k: i64) -> Int64Array {
    a.iter().map(|v| v.map(|v| v.saturating_mul(k))).collect()
}

fn floor_one(a: &Int64Array) -> Int64Array {
    a.iter().map(|v| v.map(|v| v.max(1))).collect()
}

/// How many elements `range(…)` / `generate_series(…)` would return per row: integers, or
/// dates and timestamps stepped by an interval.
fn series_lengths(args: &[ColumnarValue], n: usize) -> Result<Option<Int64Array>> {
    let arrays: Vec<ArrayRef> = args.iter().map(|a| a.to_array(n)).collect::<Result<_>>()?;
    let temporal = arrays.first().is_some_and(|a| {
        matches!(
            a.data_type(),
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
        )
    });
    if !temporal {
        let ints: Vec<Int64Array> = match arrays.iter().map(to_i64).collect::<Option<_>>() {
            Some(v) => v,
            None => return Ok(None),
        };
        let out: Int64Array = (0..n)
            .map(|r| {
                let get = |k: usize| ints.get(k).and_then(|a| a.is_valid(r).then(|| a.value(r)));
                let (start, stop, step) = match ints.len() {
                    1 => (Some(0), get(0), Some(1)),
                    2 => (get(0), get(1), Some(1)),
                    _ => (get(0), get(1), get(2)),
                };
                let (start, stop, step) = (start?, stop?, step?);
                if step == 0 {
                    return Some(0);
                }
                Some(
                    (stop as i128 - start as i128).abs() as i64 / step.unsigned_abs().max(1) as i64
                        + 1,
                )
            })
            .collect();
        return Ok(Some(out));
    }
    if arrays.len() < 3 {
        return Ok(None);
    }
    let micros = |a: &ArrayRef| -> Option<Int64Array> {
        let ts = cast_with_options(
            a,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            &CastOptions::default(),
        )
        .ok()?;
        to_i64(&ts)
    };
    let (Some(start), Some(stop)) = (micros(&arrays[0]), micros(&arrays[1])) else {
        return Ok(None);
    };
    let step = match arrays[2].data_type() {
        DataType::Interval(_) => cast_with_options(
            &arrays[2],
            &DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
            &CastOptions::default(),
        )
        .ok(),
        _ => None,
    };
    let Some(step) = step else { return Ok(None) };
    let step = step.as_primitive::<IntervalMonthDayNanoType>();
    let out: Int64Array = (0..n)
        .map(|r| {
            if !(start.is_valid(r) && stop.is_valid(r) && step.is_valid(r)) {
                return None;
            }
            let s = step.value(r);
            let step_us = (s.months as i128 * 28 * 86_400_000_000)
                + (s.days as i128 * 86_400_000_000)
                + (s.nanoseconds as i128 / 1000);
            let span = (stop.value(r) as i128 - start.value(r) as i128).abs();
            Some((span / step_us.abs().max(1)).min(i64::MAX as i128) as i64 + 1)
        })
        .collect();
    Ok(Some(out))
}

/// The wrapped functions, for documentation and tests.
pub fn guarded_names() -> impl Iterator<Item = &'static str> {
    GUARDED.iter().map(|(n, _)| *n)
}
