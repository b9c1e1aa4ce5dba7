//! SQL functions supportlake adds to DataFusion. They are the product's own arithmetic —
//! business time, reporting buckets, SLA policy choice — so the views and metric queries
//! can state definitions in SQL while the exact calendar logic lives in Rust.
//!
//! | function | returns |
//! |---|---|
//! | `seconds_between(a, b)` | `b − a` in seconds (float), NULL if either is NULL |
//! | `business_seconds(a, b, calendar)` | seconds of `[a, b)` inside the calendar's business hours |
//! | `business_add(a, seconds, calendar)` | the instant at which `seconds` of business time have passed after `a` |
//! | `bucket_start(ts, interval, tz)` | start of the hour/day/week/month holding `ts`, in time zone `tz` |
//! | `bucket_end(ts, interval, tz)` | end of that bucket (start of the next) |
//! | `bucket_starts(from, to, interval, tz)` | list of the bucket starts covering `[from, to)` |
//! | `sample_buckets(start, end, from, to, interval, tz, now)` | the buckets of `[from, to)` whose sample instant (bucket end, or `to`/`now` if sooner) lies in `[start, end)` |
//! | `sla_policy(channel, team, priority, inbox)` | name of the first SLA policy that matches, or NULL |
//!
//! The calendar of the business-time functions is a calendar's name per row (a constant or a
//! column: targets of policies on different calendars in one query); NULL means `24x7`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, TimeUnit};
use chrono_tz::Tz;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::calendar::Calendar;
use crate::config::{ALWAYS_CALENDAR, Config};
use crate::event::UTC;
use crate::interval::Interval;

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
}

/// A list of instants: what `bucket_starts` and `sample_buckets` answer.
fn ts_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", ts_type(), true)))
}

/// An argument as an array of µs timestamps (whatever unit or zone it came in).
fn ts_arg(v: &ColumnarValue, rows: usize) -> Result<TimestampMicrosecondArray> {
    let arr = v.to_array(rows)?;
    let arr = cast(&arr, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    arr.as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("timestamp cast".into()))
}

fn f64_arg(v: &ColumnarValue, rows: usize) -> Result<Float64Array> {
    let arr = cast(&v.to_array(rows)?, &DataType::Float64)?;
    arr.as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("float cast".into()))
}

fn str_arg(v: &ColumnarValue, rows: usize) -> Result<StringArray> {
    let arr = cast(&v.to_array(rows)?, &DataType::Utf8)?;
    arr.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("string cast".into()))
}

/// A string argument that must be the same on every row (interval, zone).
fn const_str(v: &ColumnarValue, what: &str) -> Result<Option<String>> {
    match v {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(x) | ScalarValue::Utf8View(x) | ScalarValue::LargeUtf8(x) => {
                Ok(x.clone())
            }
            ScalarValue::Null => Ok(None),
            other => exec_err!("{what} must be a string, got {other}"),
        },
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::Utf8)?;
            let a = a
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Internal("string cast".into()))?;
            let first = (0..a.len()).find(|&i| !a.is_null(i)).map(|i| a.value(i));
            if (0..a.len()).any(|i| !a.is_null(i) && Some(a.value(i)) != first) {
                return exec_err!("{what} must be the same on every row");
            }
            Ok(first.map(str::to_owned))
        }
    }
}

fn parse_tz(name: &str) -> Result<Tz> {
    name.parse::<Tz>()
        .map_err(|_| DataFusionError::Execution(format!("unknown time zone {name:?}")))
}

fn parse_interval(name: &str) -> Result<Interval> {
    name.parse::<Interval>()
        .map_err(|e| DataFusionError::Execution(e.to_string()))
}

/// Shared plumbing of the UDF structs: a name and a signature.
macro_rules! udf_common {
    () => {
        fn name(&self) -> &str {
            &self.name
        }
        fn signature(&self) -> &Signature {
            &self.signature
        }
    };
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SecondsBetween {
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for SecondsBetween {
    udf_common!();
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let a = ts_arg(&args.args[0], n)?;
        let b = ts_arg(&args.args[1], n)?;
        let out: Float64Array = a
            .iter()
            .zip(b.iter())
            .map(|(a, b)| Some((b? - a?) as f64 / 1e6))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Functions that need the business rules: calendars and SLA policies.
#[derive(Debug)]
struct WithConfig {
    name: String,
    signature: Signature,
    config: Arc<Config>,
}

// Sessions hold one configuration; comparing by name is what DataFusion needs to tell
// functions apart.
impl PartialEq for WithConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.config, &other.config)
    }
}
impl Eq for WithConfig {}
impl Hash for WithConfig {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl WithConfig {
    /// The calendar called `name`; NULL means the around-the-clock `24x7`.
    fn lookup(&self, name: Option<&str>) -> Result<&Calendar> {
        let name = name.unwrap_or(ALWAYS_CALENDAR);
        self.config.calendar(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.calendars.keys().map(String::as_str).collect();
            DataFusionError::Execution(format!(
                "no calendar named {name:?} in the configuration (known: {})",
                known.join(", ")
            ))
        })
    }

    /// The calendar of every row of a calendar argument: one lookup when the argument is a
    /// constant or names the same calendar on every row (the usual case: a view's setting,
    /// or a batch of one policy), else one per row — SLA targets of policies on different
    /// calendars meet in one batch.
    fn calendars(&self, v: &ColumnarValue, rows: usize) -> Result<Calendars<'_>> {
        let names = match v {
            ColumnarValue::Scalar(s) => {
                return match s {
                    ScalarValue::Utf8(x) | ScalarValue::Utf8View(x) | ScalarValue::LargeUtf8(x) => {
                        Ok(Calendars::One(self.lookup(x.as_deref())?))
                    }
                    ScalarValue::Null => Ok(Calendars::One(self.lookup(None)?)),
                    other => exec_err!("the calendar must be a calendar's name, got {other}"),
                };
            }
            ColumnarValue::Array(_) => str_arg(v, rows)?,
        };
        if names.is_empty() {
            return Ok(Calendars::One(self.lookup(None)?));
        }
        let name = |i: usize| names.is_valid(i).then(|| names.value(i));
        let first = name(0);
        if (1..names.len()).all(|i| name(i) == first) {
            return Ok(Calendars::One(self.lookup(first)?));
        }
        // Rows of one calendar mostly come in runs: look a name up only when it changes.
        let mut out = Vec::with_capacity(names.len());
        let mut last: Option<(Option<&str>, &Calendar)> = None;
        for i in 0..names.len() {
            let n = name(i);
            let cal = match last {
                Some((m, cal)) if m == n => cal,
                _ => self.lookup(n)?,
            };
            last = Some((n, cal));
            out.push(cal);
        }
        Ok(Calendars::PerRow(out))
    }
}

/// The calendars of a batch's rows ([`WithConfig::calendars`]).
enum Calendars<'a> {
    One(&'a Calendar),
    PerRow(Vec<&'a Calendar>),
}

impl Calendars<'_> {
    fn row(&self, i: usize) -> &Calendar {
        match self {
            Calendars::One(c) => c,
            Calendars::PerRow(v) => v[i],
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BusinessSeconds(WithConfig);

impl ScalarUDFImpl for BusinessSeconds {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn signature(&self) -> &Signature {
        &self.0.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let a = ts_arg(&args.args[0], n)?;
        let b = ts_arg(&args.args[1], n)?;
        let cals = self.0.calendars(&args.args[2], n)?;
        let mut out = Float64Builder::with_capacity(n);
        for (i, (a, b)) in a.iter().zip(b.iter()).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => {
                    out.append_value(cals.row(i).business_micros(a, b) as f64 / 1e6)
                }
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BusinessAdd(WithConfig);

impl ScalarUDFImpl for BusinessAdd {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn signature(&self) -> &Signature {
        &self.0.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(ts_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let a = ts_arg(&args.args[0], n)?;
        let secs = f64_arg(&args.args[1], n)?;
        let cals = self.0.calendars(&args.args[2], n)?;
        let mut out = TimestampMicrosecondBuilder::with_capacity(n);
        for (i, (a, s)) in a.iter().zip(secs.iter()).enumerate() {
            match (a, s) {
                (Some(a), Some(s)) if s.is_finite() && s >= 0.0 => {
                    out.append_value(cals.row(i).add_business(a, (s * 1e6).round() as i64))
                }
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(
            out.finish().with_timezone(UTC),
        )))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SlaPolicy(WithConfig);

impl ScalarUDFImpl for SlaPolicy {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn signature(&self) -> &Signature {
        &self.0.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let cols: Vec<StringArray> = args
            .args
            .iter()
            .map(|a| str_arg(a, n))
            .collect::<Result<_>>()?;
        let get = |c: &StringArray, i: usize| (!c.is_null(i)).then(|| c.value(i).to_owned());
        let mut out = StringBuilder::with_capacity(n, n * 8);
        for i in 0..n {
            let (ch, team, pri, inbox) = (
                get(&cols[0], i),
                get(&cols[1], i),
                get(&cols[2], i),
                get(&cols[3], i),
            );
            let policy = self.0.config.policy_for(
                ch.as_deref(),
                team.as_deref(),
                pri.as_deref(),
                inbox.as_deref(),
            );
            out.append_option(policy.map(|p| p.name.as_str()));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bucket {
    name: String,
    signature: Signature,
    /// `bucket_end` rather than `bucket_start`.
    end: bool,
}

impl ScalarUDFImpl for Bucket {
    udf_common!();
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(ts_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let ts = ts_arg(&args.args[0], n)?;
        let interval =
            parse_interval(&const_str(&args.args[1], "the interval")?.unwrap_or_default())?;
        let tz =
            parse_tz(&const_str(&args.args[2], "the time zone")?.unwrap_or_else(|| "UTC".into()))?;
        let mut out = TimestampMicrosecondBuilder::with_capacity(n);
        // Rows come mostly in runs of the same bucket: remember the last one.
        let mut last: Option<(i64, i64)> = None;
        for t in ts.iter() {
            match t {
                Some(t) => {
                    let (s, e) = match last {
                        Some((s, e)) if s <= t && t < e => (s, e),
                        _ => {
                            let s = interval.start_of(t, tz);
                            (s, interval.next(s, tz))
                        }
                    };
                    last = Some((s, e));
                    out.append_value(if self.end { e } else { s });
                }
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(
            out.finish().with_timezone(UTC),
        )))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BucketStarts {
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for BucketStarts {
    udf_common!();
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(ts_list_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let from = ts_arg(&args.args[0], n)?;
        let to = ts_arg(&args.args[1], n)?;
        let interval =
            parse_interval(&const_str(&args.args[2], "the interval")?.unwrap_or_default())?;
        let tz =
            parse_tz(&const_str(&args.args[3], "the time zone")?.unwrap_or_else(|| "UTC".into()))?;
        let mut out = ListBuilder::new(TimestampMicrosecondBuilder::new().with_timezone(UTC))
            .with_field(Arc::new(Field::new("item", ts_type(), true)));
        for (f, t) in from.iter().zip(to.iter()) {
            match (f, t) {
                (Some(f), Some(t)) => {
                    for s in interval.starts(f, t, tz) {
                        out.values().append_value(s);
                    }
                    out.append(true);
                }
                _ => out.append(false),
            }
        }
        let arr: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(arr))
    }
}

/// A timestamp argument that must be the same on every row (a range bound, "now").
fn const_ts(v: &ColumnarValue, what: &str) -> Result<Option<i64>> {
    let a = ts_arg(v, 1)?;
    let first = (0..a.len()).find(|&i| a.is_valid(i)).map(|i| a.value(i));
    if (0..a.len()).any(|i| a.is_valid(i) && Some(a.value(i)) != first) {
        return exec_err!("{what} must be the same on every row");
    }
    Ok(first)
}

/// The sample instants of a series: for each bucket of `[from, to)` that has begun by
/// `now`, its end, or `to` or `now` when those come first. This is the rule the
/// `open_conversations` query states in SQL (its `samples`); the query joins on the bucket
/// and checks the instant again, so this index can only narrow what SQL decides.
pub fn sample_instants(
    from: i64,
    to: i64,
    now: i64,
    interval: Interval,
    tz: Tz,
) -> Vec<(i64, i64)> {
    interval
        .starts(from, to, tz)
        .into_iter()
        .filter(|&s| s <= now)
        .map(|s| (s, interval.next(s, tz).min(to).min(now)))
        .collect()
}

/// `sample_buckets(start, end, from, to, interval, tz, now)`: the starts of the buckets
/// whose sample instant lies in `[start, end)` (`end` NULL: no end). Turns "which samples
/// fall in this stretch" from a join of every stretch with every sample into a lookup.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SampleBuckets {
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for SampleBuckets {
    udf_common!();
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(ts_list_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let start = ts_arg(&args.args[0], n)?;
        let end = ts_arg(&args.args[1], n)?;
        let from = const_ts(&args.args[2], "the range start")?;
        let to = const_ts(&args.args[3], "the range end")?;
        let interval =
            parse_interval(&const_str(&args.args[4], "the interval")?.unwrap_or_default())?;
        let tz =
            parse_tz(&const_str(&args.args[5], "the time zone")?.unwrap_or_else(|| "UTC".into()))?;
        let now = const_ts(&args.args[6], "now")?;
        let samples = match (from, to, now) {
            (Some(f), Some(t), Some(now)) => sample_instants(f, t, now, interval, tz),
            _ => Vec::new(),
        };
        // Sample instants never decrease with the bucket, so a binary search finds the
        // first at or after `start`.
        let mut out = ListBuilder::new(TimestampMicrosecondBuilder::new().with_timezone(UTC))
            .with_field(Arc::new(Field::new("item", ts_type(), true)));
        for i in 0..n {
            if start.is_null(i) {
                out.append(false);
                continue;
            }
            let (a, b) = (start.value(i), end.is_valid(i).then(|| end.value(i)));
            let first = samples.partition_point(|&(_, at)| at < a);
            for &(s, at) in &samples[first..] {
                if b.is_some_and(|b| at >= b) {
                    break;
                }
                out.values().append_value(s);
            }
            out.append(true);
        }
        let arr: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(arr))
    }
}

/// Every supportlake function, ready to register in a session.
pub fn all(config: Arc<Config>) -> Vec<ScalarUDF> {
    let sig = |n| Signature::any(n, Volatility::Immutable);
    let with = |name: &str, n| WithConfig {
        name: name.to_owned(),
        signature: sig(n),
        config: Arc::clone(&config),
    };
    vec![
        ScalarUDF::new_from_impl(SecondsBetween {
            name: "seconds_between".into(),
            signature: sig(2),
        }),
        ScalarUDF::new_from_impl(BusinessSeconds(with("business_seconds", 3))),
        ScalarUDF::new_from_impl(BusinessAdd(with("business_add", 3))),
        ScalarUDF::new_from_impl(SlaPolicy(with("sla_policy", 4))),
        ScalarUDF::new_from_impl(Bucket {
            name: "bucket_start".into(),
            signature: sig(3),
            end: false,
        }),
        ScalarUDF::new_from_impl(Bucket {
            name: "bucket_end".into(),
            signature: sig(3),
            end: true,
        }),
        ScalarUDF::new_from_impl(BucketStarts {
            name: "bucket_starts".into(),
            signature: sig(4),
        }),
        ScalarUDF::new_from_impl(SampleBuckets {
            name: "sample_buckets".into(),
            signature: sig(7),
        }),
    ]
}

/// What a [`Wrapped`] function does when evaluated, in place of the function it wraps
/// (which it may still call).
pub(crate) trait Interceptor:
    std::fmt::Debug + PartialEq + Eq + Hash + Send + Sync + 'static
{
    fn invoke(&self, inner: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue>;
}

/// A function of a session with everything but its evaluation — name, signature, types,
/// ordering, documentation — taken from the function it wraps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Wrapped<I> {
    inner: ScalarUDF,
    hook: I,
}

/// Replaces the session's function `name` (if it has one) with it wrapped in `hook`.
pub(crate) fn wrap(ctx: &datafusion::prelude::SessionContext, name: &str, hook: impl Interceptor) {
    use datafusion::execution::FunctionRegistry;
    if let Ok(inner) = ctx.udf(name) {
        let inner = inner.as_ref().clone();
        ctx.register_udf(ScalarUDF::new_from_impl(Wrapped { inner, hook }));
    }
}

impl<I: Interceptor> ScalarUDFImpl for Wrapped<I> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }
    fn output_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }
    fn preserves_lex_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }
    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.hook.invoke(&self.inner, args)
    }
}

/// Replaces the session's `date_trunc` with one that takes the [`UtcDateTrunc`] path.
pub fn install_utc_date_trunc(ctx: &datafusion::prelude::SessionContext) {
    wrap(ctx, "date_trunc", UtcDateTrunc);
}

/// DataFusion's `date_trunc`, with timestamps in UTC truncated as the timestamps without a
/// zone they equal. Every timestamp of the lake is in UTC; DataFusion takes its calendar
/// path for a zoned timestamp even when the zone is UTC, which converts each value through
/// the zone database (and in 55.x formats an error message per row whether or not it is
/// needed) — about a third of an analyst's `GROUP BY date_trunc('day', ts)`. In UTC both
/// paths give the same instants; other zones and types go to DataFusion's function as is.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UtcDateTrunc;

/// Whether a time zone name is UTC itself.
fn is_utc(tz: &str) -> bool {
    matches!(
        tz,
        "UTC" | "utc" | "Z" | "+00:00" | "+00" | "+0000" | "Etc/UTC"
    )
}

/// The same timestamps labelled with another zone (no values change, nothing is copied).
fn with_zone(a: &ArrayRef, tz: Option<Arc<str>>) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, _) = a.data_type() else {
        return exec_err!("date_trunc: {} is not a timestamp", a.data_type());
    };
    let data = a
        .to_data()
        .into_builder()
        .data_type(DataType::Timestamp(*unit, tz))
        .build()?;
    Ok(arrow::array::make_array(data))
}

/// A field of a zoned timestamp as the same field without the zone.
fn without_zone(f: &arrow::datatypes::FieldRef) -> arrow::datatypes::FieldRef {
    match f.data_type() {
        DataType::Timestamp(unit, Some(_)) => Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(*unit, None)),
        ),
        _ => Arc::clone(f),
    }
}

impl Interceptor for UtcDateTrunc {
    fn invoke(&self, inner: &ScalarUDF, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = match args.args.get(1) {
            Some(ColumnarValue::Array(a)) => match a.data_type() {
                DataType::Timestamp(_, Some(tz)) if is_utc(tz) => Some(Arc::clone(tz)),
                _ => None,
            },
            _ => None,
        };
        let Some(zone) = zone else {
            return inner.invoke_with_args(args);
        };
        if let ColumnarValue::Array(a) = &args.args[1] {
            args.args[1] = ColumnarValue::Array(with_zone(a, None)?);
        }
        if let Some(f) = args.arg_fields.get_mut(1) {
            *f = without_zone(f);
        }
        args.return_field = without_zone(&args.return_field);
        match inner.invoke_with_args(args)? {
            ColumnarValue::Array(out) => Ok(ColumnarValue::Array(with_zone(&out, Some(zone))?)),
            ColumnarValue::Scalar(s) => exec_err!(
                "date_trunc returned a scalar {} for an array",
                s.data_type()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{RecordBatch, TimestampMicrosecondArray};
    use arrow::datatypes::Schema;
    use datafusion::prelude::SessionContext;
    use proptest::prelude::*;

    /// `date_trunc(granularity, ts)` over the values, in a session with or without the
    /// UTC path, as (type, microseconds).
    fn truncated(
        values: &[Option<i64>],
        zone: Option<&str>,
        granularity: &str,
        utc_path: bool,
    ) -> (DataType, Vec<Option<i64>>) {
        let ctx = SessionContext::new();
        if utc_path {
            install_utc_date_trunc(&ctx);
        }
        let ts = TimestampMicrosecondArray::from(values.to_vec()).with_timezone_opt(zone);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            ts.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ts)]).unwrap();
        ctx.register_batch("t", batch).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batches = rt.block_on(async {
            ctx.sql(&format!("SELECT date_trunc('{granularity}', ts) FROM t"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
        });
        let col = batches[0].column(0);
        let ty = col.data_type().clone();
        let micros = cast(col, &DataType::Int64).unwrap();
        let micros = micros
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        (ty, micros.iter().collect())
    }

    const GRANULARITIES: &[&str] = &[
        "microsecond",
        "millisecond",
        "second",
        "minute",
        "hour",
        "day",
        "week",
        "month",
        "quarter",
        "year",
    ];

    #[test]
    fn utc_truncation_by_hand() {
        // 2026-03-08T07:45:30.250Z (a Sunday) = 1_772_955_930_250_000 µs.
        let v = [Some(1_772_955_930_250_000), None];
        let (ty, day) = truncated(&v, Some("UTC"), "day", true);
        assert_eq!(
            ty,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        // 2026-03-08T00:00:00Z: 1_772_928_000 s.
        assert_eq!(day, vec![Some(1_772_928_000_000_000), None]);
        // The Monday before, 2026-03-02T00:00:00Z: 6 days earlier.
        let (_, week) = truncated(&v, Some("UTC"), "week", true);
        assert_eq!(week[0], Some(1_772_928_000_000_000 - 6 * 86_400_000_000));
        // 07:00:00 the same day.
        let (_, hour) = truncated(&v, Some("UTC"), "hour", true);
        assert_eq!(hour[0], Some(1_772_928_000_000_000 + 7 * 3_600_000_000));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The UTC path gives DataFusion's answers, type included, for UTC, for other
        /// zones (passed through) and for timestamps without a zone.
        #[test]
        fn the_utc_path_agrees_with_datafusion(
            values in proptest::collection::vec(
                proptest::option::weighted(0.9, -2_000_000_000_000_000i64..4_000_000_000_000_000),
                1..40,
            ),
            g in 0..GRANULARITIES.len(),
            zone in prop_oneof![Just(Some("UTC")), Just(Some("+00:00")), Just(Some("America/Sao_Paulo")), Just(None)],
        ) {
            let granularity = GRANULARITIES[g];
            let ours = truncated(&values, zone, granularity, true);
            let theirs = truncated(&values, zone, granularity, false);
            prop_assert_eq!(ours, theirs);
        }
    }
}
