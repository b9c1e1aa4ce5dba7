//! `supportlake metrics`: one metric over a range, as a table, JSON or CSV.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use chrono::{Duration, Utc};

use super::{ConfigArg, EXIT_OK, LakeArg};
use crate::interval::Interval;
use crate::lake::LakePaths;
use crate::metrics::{self, Dimension, Filters, Metric, MetricRequest, MetricResult, parse_time};
use crate::query::Engine;

/// Compute a metric: TME, TMA, backlog, service level, abandonment, CSAT, SLA, …
///
/// Values belong to the interval in which they became known (a wait to the interval of
/// the first reply, a handle time to the interval of the resolution), in the time zone of
/// --tz (default: the configuration's). Every duration comes with its count, mean, p50,
/// p90, p95 and max. `--list` shows every metric; docs/metrics.md defines each precisely.
///
/// Times (--from, --to, --now) are RFC 3339 instants (2026-11-02T09:00:00-03:00) or dates
/// (2026-11-02 = the start of that day in the time zone). --to is exclusive: --from
/// 2026-11-01 --to 2026-11-08 is the first week of November.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
supportlake metrics --list\n  \
supportlake metrics wait --lake ./lake --from 2026-11-01 --to 2026-11-08 --group-by team\n  \
supportlake metrics handle --lake ./lake --from 2026-11-01 --to 2026-12-01 --interval week --business-hours --config supportlake.toml\n  \
supportlake metrics sla --lake ./lake --config supportlake.toml --from 2026-11-01 --to 2026-11-08 --format json\n  \
supportlake metrics open_conversations --lake ./lake --interval hour --from 2026-11-02 --to 2026-11-03")]
pub struct Args {
    /// The metric (see --list).
    #[arg(value_name = "NAME", required_unless_present = "list")]
    name: Option<String>,

    /// List every metric with its one-line definition.
    #[arg(long)]
    list: bool,

    #[command(flatten)]
    lake: LakeArg,

    #[command(flatten)]
    config: ConfigArg,

    /// Start of the range, inclusive (default: 7 days before --to).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,

    /// End of the range, exclusive (default: the start of tomorrow).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,

    /// Bucket size.
    #[arg(long, default_value = "day", value_parser = ["hour", "day", "week", "month"])]
    interval: String,

    /// Split into one series per value of this dimension, as in force at the stop event
    /// (an unanswered SLA target: its queue's team at the due time). Group `bot`: only a
    /// bot had the conversation; agent `unassigned`: in the queue with nobody.
    #[arg(long, value_name = "DIMENSION", value_parser = ["team", "agent", "channel", "inbox", "priority"])]
    group_by: Option<String>,

    /// Time zone of the buckets and of dates in --from/--to (default: the configuration's).
    #[arg(long, value_name = "ZONE")]
    tz: Option<chrono_tz::Tz>,

    /// Count only time inside business hours (the calendar of `metrics.calendar`).
    #[arg(long)]
    business_hours: bool,

    /// Compute the derived tables (conversations, sla_targets, …) from the events even when
    /// the rollups are current: slower, and a check that they agree.
    #[arg(long)]
    from_events: bool,

    /// Only this team (as in force at the stop event).
    #[arg(long)]
    team: Option<String>,
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only this channel.
    #[arg(long)]
    channel: Option<String>,
    /// Only this inbox.
    #[arg(long)]
    inbox: Option<String>,
    /// Only this priority.
    #[arg(long)]
    priority: Option<String>,

    /// For `sla`: only first_response, next_response or resolution targets.
    #[arg(long, value_name = "TARGET", value_parser = ["first_response", "next_response", "resolution"])]
    sla_metric: Option<String>,

    /// For `sla`: list the breached targets, one row each, instead of the series.
    #[arg(long)]
    breaches: bool,

    /// The instant taken as "now" for open targets and the current backlog (default: now).
    #[arg(long, value_name = "TIME")]
    now: Option<String>,

    /// Output format (json is the API's shape).
    #[arg(long, value_enum, default_value_t = super::output::Format::Table)]
    format: super::output::Format,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    if args.list {
        let width = Metric::ALL
            .iter()
            .map(|m| m.as_str().len())
            .max()
            .unwrap_or(0);
        for m in Metric::ALL {
            writeln!(out, "{:<width$}  {}", m.as_str(), m.summary())?;
        }
        return Ok(EXIT_OK);
    }
    let name = args.name.as_deref().unwrap_or_default();
    let metric: Metric = name.parse()?;
    let config = args.config.load()?;
    let tz = args.tz.unwrap_or(config.timezone);
    let now = match &args.now {
        Some(t) => parse_time(t, tz)?,
        None => Utc::now(),
    };
    let to = match &args.to {
        Some(t) => parse_time(t, tz)?,
        None => {
            let today = now.with_timezone(&tz).date_naive();
            parse_time(&(today + Duration::days(1)).to_string(), tz)?
        }
    };
    let from = match &args.from {
        Some(t) => parse_time(t, tz)?,
        None => {
            let end = to.with_timezone(&tz).date_naive();
            parse_time(&(end - Duration::days(7)).to_string(), tz)?
        }
    };
    let req = MetricRequest {
        metric,
        from,
        to,
        interval: args.interval.parse::<Interval>()?,
        group_by: args
            .group_by
            .as_deref()
            .map(str::parse::<Dimension>)
            .transpose()?,
        tz,
        business_hours: args.business_hours,
        filters: Filters {
            team: args.team,
            agent: args.agent,
            channel: args.channel,
            inbox: args.inbox,
            priority: args.priority,
        },
        now,
        sla_metric: args.sla_metric,
    };
    let paths = LakePaths::new(&args.lake.lake);
    let rollups = if args.from_events {
        crate::query::Rollups::Never
    } else {
        crate::query::Rollups::IfCurrent
    };
    let rt = super::runtime()?;
    if args.breaches {
        anyhow::ensure!(metric == Metric::Sla, "--breaches goes with the sla metric");
        let batches = rt.block_on(async {
            let engine = Engine::open_with(&paths, Arc::new(config), rollups).await?;
            metrics::sla_breaches(&engine, &req).await
        })?;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
        super::output::write_batches(&mut out, args.format, &schema, &batches)?;
        return Ok(EXIT_OK);
    }
    let result = rt
        .block_on(async {
            let engine = Engine::open_with(&paths, Arc::new(config), rollups).await?;
            metrics::run(&engine, &req).await
        })
        .with_context(|| format!("computing {metric}"))?;
    match args.format {
        super::output::Format::Json => {
            serde_json::to_writer_pretty(&mut out, &result)?;
            writeln!(out)?;
        }
        super::output::Format::Csv => write_rows(&mut out, &result, true)?,
        super::output::Format::Table => write_rows(&mut out, &result, false)?,
    }
    Ok(EXIT_OK)
}

/// The points as rows: group, start, end, value, then the metric's own fields.
fn rows(result: &MetricResult) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec![
        "group".to_owned(),
        "start".into(),
        "end".into(),
        "value".into(),
    ];
    let mut rows = Vec::new();
    for s in &result.series {
        for p in &s.points {
            let json = serde_json::to_value(p).unwrap_or_default();
            let serde_json::Value::Object(map) = json else {
                continue;
            };
            let mut row = vec![
                s.group
                    .clone()
                    .unwrap_or_else(|| crate::metrics::NOT_NAMED.into()),
                p.start.clone(),
                p.end.clone(),
                show(p.value.map(Into::into).unwrap_or(serde_json::Value::Null)),
            ];
            for (k, v) in map {
                if matches!(k.as_str(), "start" | "end" | "value") {
                    continue;
                }
                if !header.contains(&k) {
                    header.push(k.clone());
                }
                row.push(show(v));
            }
            rows.push(row);
        }
    }
    (header, rows)
}

fn show(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        serde_json::Value::String(s) => s,
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v.clone())))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

fn write_rows(out: &mut dyn Write, result: &MetricResult, csv: bool) -> anyhow::Result<()> {
    let (header, rows) = rows(result);
    if csv {
        let mut w = Vec::new();
        let line = |cells: &[String]| {
            cells
                .iter()
                .map(|c| {
                    if c.contains([',', '"', '\n']) {
                        format!("\"{}\"", c.replace('"', "\"\""))
                    } else {
                        c.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        w.push(line(&header));
        w.extend(rows.iter().map(|r| line(r)));
        writeln!(out, "{}", w.join("\n"))?;
        return Ok(());
    }
    writeln!(
        out,
        "{} ({}{}), {} … {}, by {}{}",
        result.metric,
        result.unit,
        if result.business_hours {
            ", business hours"
        } else {
            ""
        },
        result.from,
        result.to,
        result.interval,
        result
            .group_by
            .map(|g| format!(", per {}", g.as_str()))
            .unwrap_or_default()
    )?;
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let fmt = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:>w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", fmt(&header))?;
    for r in &rows {
        writeln!(out, "{}", fmt(r))?;
    }
    Ok(())
}
