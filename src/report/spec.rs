//! Report definitions: `[[reports]]` entries of the config, the built-in `sla` report, and
//! report periods.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::ReportError;
use crate::config::Config;
use crate::interval::Interval;

/// The name of the report that exists without a `[[reports]]` entry.
pub const BUILTIN: &str = "sla";

/// The language of a report's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    En,
    Pt,
}

/// Which stretch of time a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Period {
    /// The whole previous day, in the report's time zone.
    Yesterday,
    /// The previous week, Monday to Monday.
    LastWeek,
    /// The previous calendar month.
    LastMonth,
    /// A fixed range `[from, to)`.
    Range(DateTime<Utc>, DateTime<Utc>),
}

impl Period {
    /// `yesterday`, `last-week`, `last-month` or `FROM/TO` (each an RFC 3339 instant or a
    /// `YYYY-MM-DD` date, the start of that day in `tz`).
    pub fn parse(text: &str, tz: Tz) -> Result<Period, String> {
        match text {
            "yesterday" => Ok(Period::Yesterday),
            "last-week" => Ok(Period::LastWeek),
            "last-month" => Ok(Period::LastMonth),
            other => {
                let (a, b) = other.split_once('/').ok_or_else(|| {
                    format!(
                        "period {other:?}: use yesterday, last-week, last-month or FROM/TO (e.g. 2026-11-01/2026-11-08)"
                    )
                })?;
                let from = crate::metrics::parse_time(a, tz).map_err(|e| e.to_string())?;
                let to = crate::metrics::parse_time(b, tz).map_err(|e| e.to_string())?;
                if to <= from {
                    return Err(format!("period {other:?}: the end is not after the start"));
                }
                Ok(Period::Range(from, to))
            }
        }
    }

    /// The range `[from, to)` this period means at `now`.
    pub fn resolve(&self, now: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let previous = |iv: Interval| {
            let current = iv.start_of(now.timestamp_micros(), tz);
            let start = iv.start_of(current - 1, tz);
            (micros(start), micros(current))
        };
        match self {
            Period::Yesterday => previous(Interval::Day),
            Period::LastWeek => previous(Interval::Week),
            Period::LastMonth => previous(Interval::Month),
            Period::Range(a, b) => (*a, *b),
        }
    }

    /// The interval the report's charts use for this period.
    pub fn chart_interval(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Interval {
        let days = (to - from).num_hours() as f64 / 24.0;
        if days <= 2.0 {
            Interval::Hour
        } else if days <= 93.0 {
            Interval::Day
        } else {
            Interval::Week
        }
    }
}

fn micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// One report as configured.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    pub name: String,
    /// The cron expression (`serve` runs the report at its times), if any.
    pub cron: Option<String>,
    /// The time zone of the cron times, the period and the text.
    pub tz: Tz,
    pub period: Period,
    pub recipients: Vec<String>,
    /// Only these teams in the per-team table (all when empty).
    pub teams: Vec<String>,
    pub language: Language,
}

impl ReportSpec {
    /// The built-in `sla` report: yesterday, every team, no schedule, English.
    pub fn builtin(config: &Config) -> ReportSpec {
        ReportSpec {
            name: BUILTIN.into(),
            cron: None,
            tz: config.timezone,
            period: Period::Yesterday,
            recipients: Vec::new(),
            teams: Vec::new(),
            language: Language::En,
        }
    }
}

const REPORT_KEYS: &[&str] = &[
    "name",
    "cron",
    "timezone",
    "period",
    "recipients",
    "teams",
    "language",
];

/// Every report of the config, plus the built-in `sla` when no entry is named so.
pub fn all(config: &Config) -> Result<Vec<ReportSpec>, ReportError> {
    let mut out: Vec<ReportSpec> = Vec::new();
    for (i, table) in config.reports.iter().enumerate() {
        let at = |field: &str| format!("reports[{i}].{field}");
        let err = |field: &str, msg: String| ReportError::Config(format!("{}: {msg}", at(field)));
        for key in table.keys() {
            if !REPORT_KEYS.contains(&key.as_str()) {
                return Err(err(
                    key,
                    format!("unknown key (known keys here: {})", REPORT_KEYS.join(", ")),
                ));
            }
        }
        let string = |field: &str| -> Result<Option<String>, ReportError> {
            match table.get(field) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(err(
                    field,
                    format!("expected a string, found {}", other.type_str()),
                )),
            }
        };
        let strings = |field: &str| -> Result<Vec<String>, ReportError> {
            match table.get(field) {
                None => Ok(Vec::new()),
                Some(toml::Value::String(s)) => Ok(vec![s.clone()]),
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| err(field, "expected a list of strings".into()))
                    })
                    .collect(),
                Some(other) => Err(err(
                    field,
                    format!("expected a list of strings, found {}", other.type_str()),
                )),
            }
        };
        let name = string("name")?
            .ok_or_else(|| err("name", "missing (every report needs a name)".into()))?;
        if out.iter().any(|r| r.name == name) {
            return Err(err("name", format!("{name:?} is defined twice")));
        }
        let tz = match string("timezone")? {
            None => config.timezone,
            Some(t) => Tz::from_str(&t).map_err(|_| {
                err(
                    "timezone",
                    format!("{t:?} is not an IANA time zone (e.g. America/Sao_Paulo)"),
                )
            })?,
        };
        let cron = string("cron")?;
        if let Some(c) = &cron {
            croner::Cron::from_str(c).map_err(|e| err("cron", format!("{c:?}: {e}")))?;
        }
        let period = match string("period")? {
            None => Period::Yesterday,
            Some(p) => Period::parse(&p, tz).map_err(|m| err("period", m))?,
        };
        let recipients = strings("recipients")?;
        for r in &recipients {
            r.parse::<lettre::Address>()
                .map_err(|e| err("recipients", format!("{r:?} is not an email address: {e}")))?;
        }
        if cron.is_some() && recipients.is_empty() {
            return Err(err(
                "recipients",
                "a scheduled report needs at least one recipient".into(),
            ));
        }
        let language = match string("language")?.as_deref() {
            None | Some("en") => Language::En,
            Some("pt") | Some("pt-BR") => Language::Pt,
            Some(other) => return Err(err("language", format!("{other:?}: use en or pt"))),
        };
        out.push(ReportSpec {
            name,
            cron,
            tz,
            period,
            recipients,
            teams: strings("teams")?,
            language,
        });
    }
    if !out.iter().any(|r| r.name == BUILTIN) {
        out.push(ReportSpec::builtin(config));
    }
    Ok(out)
}

/// The report called `name`.
pub fn find(config: &Config, name: &str) -> Result<ReportSpec, ReportError> {
    let all = all(config)?;
    let names: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
    all.into_iter().find(|r| r.name == name).ok_or_else(|| {
        ReportError::Config(format!(
            "no report named {name:?} (known: {})",
            names.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn periods_resolve_in_the_report_time_zone() {
        let tz: Tz = "America/Sao_Paulo".parse().unwrap();
        // 2026-11-25 01:30 in São Paulo (UTC−3) is 04:30 UTC.
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 4, 30, 0).unwrap();
        let (a, b) = Period::Yesterday.resolve(now, tz);
        assert_eq!(a, Utc.with_ymd_and_hms(2026, 11, 24, 3, 0, 0).unwrap());
        assert_eq!(b, Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap());
        // The week of Wed 2026-11-25 starts Mon 2026-11-23; last week is 16..23.
        let (a, b) = Period::LastWeek.resolve(now, tz);
        assert_eq!(a, Utc.with_ymd_and_hms(2026, 11, 16, 3, 0, 0).unwrap());
        assert_eq!(b, Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap());
        let (a, b) = Period::LastMonth.resolve(now, tz);
        assert_eq!(a, Utc.with_ymd_and_hms(2026, 10, 1, 3, 0, 0).unwrap());
        assert_eq!(b, Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap());
        let p = Period::parse("2026-11-01/2026-11-08", tz).unwrap();
        assert_eq!(
            p.resolve(now, tz).0,
            Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap()
        );
        assert!(Period::parse("2026-11-08/2026-11-01", tz).is_err());
        assert!(Period::parse("weekly", tz).is_err());
    }
}
