//! Metrics: the numbers support teams run on, each defined once in `queries/metrics/<name>.sql`
//! and computed here into typed series.
//!
//! One name through every layer: `queries/metrics/wait.sql` ↔ [`Metric::Wait`] ↔
//! `supportlake metrics wait` ↔ `/api/v1/metrics/wait` ↔ the `wait` chart.
//!
//! Vocabulary (docs/metrics.md has the full definitions and worked examples):
//! - **stop event**: the moment a value becomes known — the first reply for a wait, the
//!   resolution for a handle time. A value belongs to the interval its stop event falls in.
//! - **bucket**: one reporting interval `[start, end)` (hour, day, week, month) in the
//!   request's time zone.
//! - **group**: the value of the `--group-by` dimension (team, agent, channel, inbox,
//!   priority) in force at the stop event; `all` when not grouped. Where no value was in
//!   force the group says why: [`BOT_GROUP`] while only a bot had the conversation (it had
//!   not reached the human queue), [`UNASSIGNED_GROUP`] (agents) while it sat in the queue
//!   with nobody; `null` only when no event named a value at all (shown [`NOT_NAMED`]).
//!   An SLA target breached or cancelled without an answer belongs to the team in force
//!   when it is counted (its queue's team at the due time), never to no team.
//! - **business seconds**: only time inside the business-hours calendar counts.

pub mod rows;
pub mod summary;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use arrow::array::RecordBatch;
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::common::{ParamValues, ScalarValue};
use serde::Serialize;

use crate::event::UTC;
use crate::interval::{Interval, day_start};
use crate::query::{Engine, QueryError, catalog};

pub use rows::Point;

#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    #[error("unknown metric {0:?}; `supportlake metrics --list` shows them all")]
    Unknown(String),
    #[error("unknown dimension {0:?}: group by team, agent, channel, inbox or priority")]
    Dimension(String),
    #[error(
        "{0:?} is neither an RFC 3339 instant (2026-11-02T12:00:00-03:00) nor a date (2026-11-02)"
    )]
    Time(String),
    #[error("the range is empty: --from {from} is not before --to {to}")]
    EmptyRange { from: String, to: String },
    #[error(
        "the range {from} … {to} has more than {max} {interval} buckets; use a coarser --interval"
    )]
    TooManyBuckets {
        from: String,
        to: String,
        interval: Interval,
        max: usize,
    },
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("the {metric} query returned an unexpected column layout: {reason}")]
    Shape {
        metric: &'static str,
        reason: String,
    },
}

pub type Result<T, E = MetricError> = std::result::Result<T, E>;

/// The group of conversations while only a bot had them (never queued, or not yet).
pub const BOT_GROUP: &str = "bot";

/// The agent group of conversations in the human queue that no agent had at the stop event.
pub const UNASSIGNED_GROUP: &str = "unassigned";

/// How tables and charts show the `null` group: no event named a value for the dimension.
pub const NOT_NAMED: &str = "(not named)";

macro_rules! metrics {
    ($($variant:ident => $name:literal, $unit:literal, $kind:ident, $doc:literal;)*) => {
        /// Every metric, by its API name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Metric { $(#[doc = $doc] $variant,)* }

        impl Metric {
            pub const ALL: &'static [Metric] = &[$(Metric::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Metric::$variant => $name,)* }
            }

            /// The unit of `value`.
            pub fn unit(self) -> &'static str {
                match self { $(Metric::$variant => $unit,)* }
            }

            /// One line, for `--list` and the API.
            pub fn summary(self) -> &'static str {
                match self { $(Metric::$variant => $doc,)* }
            }

            fn kind(self) -> rows::Kind {
                match self { $(Metric::$variant => rows::Kind::$kind,)* }
            }
        }
    };
}

metrics! {
    Wait => "wait", "seconds", Duration,
        "TME: wait in the human queue until an agent's first reply (first_response_at − queued_at)";
    WaitToAssign => "wait_to_assign", "seconds", Duration,
        "wait in the human queue until an agent took the conversation (assigned_at − queued_at)";
    FirstResponse => "first_response", "seconds", Duration,
        "customer's wait for the first human reply, bot time included (first_response_at − started_at)";
    Handle => "handle", "seconds", Duration,
        "TMA: handle time from first assignment to resolution (resolved_at − assigned_at)";
    Resolution => "resolution", "seconds", Duration,
        "time to resolution from the customer's first message (resolved_at − started_at)";
    OpenConversations => "open_conversations", "conversations", Open,
        "backlog at each interval's end: open, waiting for a first reply, unassigned, longest wait";
    Messages => "messages", "messages", Messages,
        "messages exchanged: customer → business and business → customer (private notes excluded)";
    ServiceLevel => "service_level", "percent", ServiceLevel,
        "share of queued conversations answered within the target (default 60 s)";
    Abandonment => "abandonment", "percent", Abandonment,
        "share of queued conversations that ended without an agent reply (lost / after assignment); bot_resolved beside";
    Csat => "csat", "percent", Csat,
        "CSAT: ratings of 4–5 ÷ all ratings; mean score, rating count, response rate";
    Sla => "sla", "percent", Sla,
        "SLA targets achieved ÷ (achieved + breached); breached, active, active_breached counts";
    AgentActivity => "agent_activity", "conversations", AgentActivity,
        "per agent: conversations handled, TMA, messages sent, time available / paused (by reason) / offline";
}

impl Metric {
    /// The full definition: the header of the metric's SQL file.
    pub fn definition(self) -> String {
        catalog::metric_sql(self.as_str())
            .map(catalog::header)
            .unwrap_or_default()
    }

    /// Whether the answer depends on "now" besides the lake and the range: the query reads
    /// the `$now` parameter (SLA states, the current backlog, agents' current status).
    pub fn reads_now(self) -> bool {
        catalog::metric_sql(self.as_str()).is_none_or(|sql| {
            sql.lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .any(|code| code.contains("$now"))
        })
    }

    /// Whether an interval that ended by "now" has an answer no later "now" changes (while
    /// the lake stays the same): the backlog sampled at its end, agents' time clipped to
    /// it. Not so for `sla`, where a target counted in a past interval as `active` moves
    /// to its due time once that passes.
    pub fn settles(self) -> bool {
        matches!(self, Metric::OpenConversations | Metric::AgentActivity)
    }

    /// Whether `--business-hours` changes the numbers.
    pub fn has_business_form(self) -> bool {
        matches!(
            self,
            Metric::Wait
                | Metric::WaitToAssign
                | Metric::FirstResponse
                | Metric::Handle
                | Metric::Resolution
                | Metric::ServiceLevel
        )
    }
}

impl FromStr for Metric {
    type Err = MetricError;
    fn from_str(s: &str) -> Result<Self> {
        Metric::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| MetricError::Unknown(s.to_owned()))
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a metric can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Team,
    Agent,
    Channel,
    Inbox,
    Priority,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Team => "team",
            Dimension::Agent => "agent",
            Dimension::Channel => "channel",
            Dimension::Inbox => "inbox",
            Dimension::Priority => "priority",
        }
    }
}

impl FromStr for Dimension {
    type Err = MetricError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "team" => Ok(Dimension::Team),
            "agent" => Ok(Dimension::Agent),
            "channel" => Ok(Dimension::Channel),
            "inbox" => Ok(Dimension::Inbox),
            "priority" => Ok(Dimension::Priority),
            other => Err(MetricError::Dimension(other.to_owned())),
        }
    }
}

/// Only conversations with these values count (each `None` = any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub team: Option<String>,
    pub agent: Option<String>,
    pub channel: Option<String>,
    pub inbox: Option<String>,
    pub priority: Option<String>,
}

/// One metric question.
#[derive(Debug, Clone)]
pub struct MetricRequest {
    pub metric: Metric,
    /// Start of the range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    pub interval: Interval,
    pub group_by: Option<Dimension>,
    /// The time zone of the buckets.
    pub tz: Tz,
    pub business_hours: bool,
    pub filters: Filters,
    /// "Now", for states that depend on it (SLA targets, the current backlog).
    pub now: DateTime<Utc>,
    /// For `sla`: only this target metric (`first_response`, `next_response`, `resolution`).
    pub sla_metric: Option<String>,
}

impl MetricRequest {
    /// For answers kept across states of the lake (the server's carried rows): the same
    /// question over the whole intervals that ended by the earlier of "now" and the range's
    /// end, and over the rest, if any. Each interval's rows depend only on what happened in
    /// it, so the two answers shaped together are the answer to the whole question, and
    /// the first can be kept in parts: its intervals before an instant stay right while
    /// nothing before that instant changes.
    ///
    /// The ended intervals are asked with "now" at their end when "now" does not matter to
    /// them: for a metric that does not read it, or one that settles. A metric that reads
    /// it without settling (`sla`) keeps the request's "now"; its ended rows then hold
    /// until [`unchanged_until`] of that part. `None` when no whole interval has ended
    /// inside the range.
    pub fn split_for_carry(&self) -> Option<(MetricRequest, Option<MetricRequest>)> {
        let end = self.now.min(self.to).timestamp_micros();
        let cut = DateTime::<Utc>::from_timestamp_micros(self.interval.start_of(end, self.tz))?;
        let ended = self.span(self.from, cut)?;
        let rest = (cut < self.to).then(|| {
            let mut rest = self.clone();
            rest.from = cut;
            rest
        });
        Some((ended, rest))
    }

    /// Whether the ended intervals of [`Self::split_for_carry`] depend on "now".
    pub fn ended_reads_now(&self) -> bool {
        self.metric.reads_now() && !self.metric.settles()
    }

    /// The same question over `[from, to)` of whole intervals that ended, asked with "now"
    /// at `to` unless [`Self::ended_reads_now`]; `None` when the span is empty.
    pub fn span(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<MetricRequest> {
        (from < to).then(|| {
            let mut part = self.clone();
            part.from = from;
            part.to = to;
            if !self.ended_reads_now() {
                part.now = to;
            }
            part
        })
    }

    /// Names the question of [`Self::split_for_carry`]'s first part whatever its end: the
    /// metric, its start, interval, zone, grouping and filters.
    pub fn carry_key(&self) -> String {
        format!(
            "{}|{}|{:?}|{}|{:?}|{}|{:?}|{:?}",
            self.metric.as_str(),
            self.from.timestamp_micros(),
            self.interval,
            self.tz.name(),
            self.group_by,
            self.business_hours,
            self.filters,
            self.sla_metric,
        )
    }

    /// Names this question's answer for one state of the lake: two requests with the same
    /// key get the same answer from the same files. "Now" is part of it only for metrics
    /// that read it, and not for a metric that settles asked about a range that ended by
    /// now.
    pub fn cache_key(&self) -> String {
        let settled = self.metric.settles() && self.now >= self.to;
        self.key(self.metric.reads_now() && !settled)
    }

    /// [`Self::cache_key`] without "now", for answers kept with the span of "now" they hold
    /// for ([`unchanged_until`]).
    pub fn cache_key_without_now(&self) -> String {
        self.key(false)
    }

    fn key(&self, with_now: bool) -> String {
        let now = if with_now {
            self.now.timestamp_micros().to_string()
        } else {
            String::new()
        };
        format!(
            "{}|{}|{}|{}|{:?}|{}|{}|{:?}|{}|{:?}",
            self.metric.as_str(),
            self.from.timestamp_micros(),
            self.to.timestamp_micros(),
            self.interval,
            self.group_by,
            self.tz.name(),
            self.business_hours,
            self.filters,
            now,
            self.sla_metric,
        )
    }
}

/// The most buckets one request may ask for (an hourly series over a year is 8 760).
pub const MAX_BUCKETS: usize = 20_000;

/// Parses a range bound: an RFC 3339 instant, or a date meaning the start of that day in
/// `tz`.
pub fn parse_time(s: &str, tz: Tz) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let micros = day_start(tz, d);
        return DateTime::<Utc>::from_timestamp_micros(micros)
            .ok_or_else(|| MetricError::Time(s.to_owned()));
    }
    Err(MetricError::Time(s.to_owned()))
}

/// A metric's answer: the JSON shape of the API and of `supportlake metrics --format json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricResult {
    pub metric: &'static str,
    pub unit: &'static str,
    pub business_hours: bool,
    pub from: String,
    pub to: String,
    pub interval: String,
    pub group_by: Option<Dimension>,
    pub tz: String,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Series {
    /// The group's value; `all` when not grouped; `bot` / `unassigned` where a bot or
    /// nobody had the conversation; `null` when no event named a value.
    pub group: Option<String>,
    pub points: Vec<Point>,
}

/// An instant as RFC 3339 in the request's time zone (what a person reading it expects).
pub fn show_time(t: i64, tz: Tz) -> String {
    DateTime::<Utc>::from_timestamp_micros(t)
        .map(|t| {
            tz.from_utc_datetime(&t.naive_utc())
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
        })
        .unwrap_or_default()
}

fn ts_param(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some(UTC.into()))
}

fn str_param(s: Option<&str>) -> ScalarValue {
    ScalarValue::Utf8(s.map(str::to_owned))
}

/// The named parameters every metric query may use.
fn params(req: &MetricRequest) -> ParamValues {
    let mut map = BTreeMap::new();
    map.insert("from", ts_param(req.from));
    map.insert("to", ts_param(req.to));
    map.insert("now", ts_param(req.now));
    map.insert("interval", str_param(Some(&req.interval.to_string())));
    map.insert("tz", str_param(Some(req.tz.name())));
    map.insert(
        "group_by",
        str_param(Some(req.group_by.map_or("", Dimension::as_str))),
    );
    map.insert("business", ScalarValue::Boolean(Some(req.business_hours)));
    map.insert("team", str_param(req.filters.team.as_deref()));
    map.insert("agent", str_param(req.filters.agent.as_deref()));
    map.insert("channel", str_param(req.filters.channel.as_deref()));
    map.insert("inbox", str_param(req.filters.inbox.as_deref()));
    map.insert("priority", str_param(req.filters.priority.as_deref()));
    map.insert("sla_metric", str_param(req.sla_metric.as_deref()));
    ParamValues::Map(
        map.into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect(),
    )
}

/// Runs a metric and shapes its rows into series, one point per bucket for every group
/// (buckets without data are present, with zero counts and no value).
pub async fn run(engine: &Engine, req: &MetricRequest) -> Result<MetricResult> {
    check(req)?;
    let batches = query_rows(engine, req).await?;
    shape(req, &batches)
}

/// [`run`] the way the server answers from rows it keeps ([`MetricRequest::split_for_carry`]):
/// the intervals that ended in two queries, split at the interval boundary at or before
/// `kept_until` (rows kept from an earlier state, then the intervals computed since), and
/// the rest in a third; shaped together. The same answer as [`run`].
pub async fn run_split(
    engine: &Engine,
    req: &MetricRequest,
    kept_until: DateTime<Utc>,
) -> Result<MetricResult> {
    check(req)?;
    let Some((ended, rest)) = req.split_for_carry() else {
        return run(engine, req).await;
    };
    let mid = req.interval.start_of(kept_until.timestamp_micros(), req.tz);
    let mid = DateTime::<Utc>::from_timestamp_micros(mid)
        .unwrap_or(ended.from)
        .clamp(ended.from, ended.to);
    let mut batches = Vec::new();
    for part in [ended.span(ended.from, mid), ended.span(mid, ended.to)]
        .into_iter()
        .flatten()
        .chain(rest)
    {
        batches.extend(query_rows(engine, &part).await?);
    }
    shape(req, &batches)
}

/// The earliest instant after the request's "now" at which its answer can change while the
/// lake stays as it is, or `None` when it cannot (then "now" does not matter to it).
/// Asked for `sla`: a target neither satisfied nor closed is `active` (counted when it
/// was applied) until its due time passes and `active_breached` (counted then) after, so
/// the answer holds until the next due time of such a target that the range can count.
/// The request's dimension filters are not applied, which can only make the instant
/// earlier. Other metrics answer the request's own "now" when they read it.
pub async fn unchanged_until(
    engine: &Engine,
    req: &MetricRequest,
) -> Result<Option<DateTime<Utc>>> {
    if !req.metric.reads_now() {
        return Ok(None);
    }
    if req.metric != Metric::Sla {
        return Ok(Some(req.now + chrono::Duration::microseconds(1)));
    }
    const NEXT_DUE: &str = "SELECT min(due_at) AS next_due FROM sla_targets \
        WHERE satisfied_at IS NULL AND closed_at IS NULL AND due_at > $now \
          AND ($sla_metric IS NULL OR metric = $sla_metric) \
          AND ((applied_at >= $from AND applied_at < $to) OR (due_at >= $from AND due_at < $to))";
    let (_, batches) = engine.sql_with_params(NEXT_DUE, params(req)).await?;
    let Some(col) = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0))
    else {
        return Ok(None);
    };
    // Whatever the timestamp's unit, as microseconds.
    let micros = arrow::compute::cast(
        col,
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
    )
    .and_then(|c| arrow::compute::cast(&c, &arrow::datatypes::DataType::Int64))
    .map_err(|e| MetricError::Query(QueryError::Arrow(e)))?;
    let micros = micros
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .filter(|a| arrow::array::Array::is_valid(*a, 0))
        .map(|a| a.value(0));
    Ok(micros.and_then(DateTime::<Utc>::from_timestamp_micros))
}

/// Refuses requests that cannot be answered: an empty range, too many buckets.
pub fn check(req: &MetricRequest) -> Result<()> {
    if req.from >= req.to {
        return Err(MetricError::EmptyRange {
            from: req.from.to_rfc3339(),
            to: req.to.to_rfc3339(),
        });
    }
    let buckets = req.interval.starts(
        req.from.timestamp_micros(),
        req.to.timestamp_micros(),
        req.tz,
    );
    if buckets.len() >= MAX_BUCKETS {
        return Err(MetricError::TooManyBuckets {
            from: req.from.to_rfc3339(),
            to: req.to.to_rfc3339(),
            interval: req.interval,
            max: MAX_BUCKETS,
        });
    }
    Ok(())
}

/// The rows of the metric's query (one per group and bucket), unshaped.
pub async fn query_rows(engine: &Engine, req: &MetricRequest) -> Result<Vec<RecordBatch>> {
    let sql = catalog::metric_sql(req.metric.as_str())
        .ok_or_else(|| MetricError::Unknown(req.metric.as_str().to_owned()))?;
    Ok(engine.sql_with_params(sql, params(req)).await?.1)
}

/// Shapes a metric's rows into the answer of `req`: one series per group, one point per
/// bucket of the range. Rows may come in any order and from several queries over
/// disjoint buckets.
pub fn shape(req: &MetricRequest, batches: &[RecordBatch]) -> Result<MetricResult> {
    let (from, to) = (req.from.timestamp_micros(), req.to.timestamp_micros());
    let buckets = req.interval.starts(from, to, req.tz);
    let series = rows::series(req.metric, req.metric.kind(), batches, &buckets, req)?;
    Ok(MetricResult {
        metric: req.metric.as_str(),
        unit: req.metric.unit(),
        business_hours: req.business_hours && req.metric.has_business_form(),
        from: show_time(from, req.tz),
        to: show_time(to, req.tz),
        interval: req.interval.to_string(),
        group_by: if req.metric == Metric::AgentActivity {
            Some(Dimension::Agent)
        } else {
            req.group_by
        },
        tz: req.tz.name().to_owned(),
        series,
    })
}

/// The conversations that started in the request's range and match its filters (and
/// `outcome`, when given): `limit` rows from `offset`, oldest first.
pub async fn conversations(
    engine: &Engine,
    req: &MetricRequest,
    outcome: Option<&str>,
    limit: u64,
    offset: u64,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    let ParamValues::Map(mut map) = params(req) else {
        unreachable!("params() builds a map")
    };
    map.insert("outcome".into(), str_param(outcome).into());
    map.insert(
        "limit".into(),
        ScalarValue::Int64(Some(limit.min(i64::MAX as u64) as i64)).into(),
    );
    map.insert(
        "offset".into(),
        ScalarValue::Int64(Some(offset.min(i64::MAX as u64) as i64)).into(),
    );
    Ok(engine
        .sql_with_params(catalog::CONVERSATIONS_SQL, ParamValues::Map(map))
        .await?)
}

/// The breached SLA targets of a range, one row each (drill-down, report CSV).
pub async fn sla_breaches(engine: &Engine, req: &MetricRequest) -> Result<Vec<RecordBatch>> {
    let sql = catalog::metric_sql("sla_breaches")
        .ok_or_else(|| MetricError::Unknown("sla_breaches".into()))?;
    Ok(engine.sql_with_params(sql, params(req)).await?.1)
}
