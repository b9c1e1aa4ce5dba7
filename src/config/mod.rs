//! The business-rules file: reporting time zone, metric settings, business-hours calendars and
//! SLA policies, written in TOML.
//!
//! # Reference
//!
//! Every key is optional unless marked *required*; a file with nothing in it gives the
//! defaults. Keys not listed here are errors (a typo should not silently turn a rule off),
//! except inside `[[reports]]` and `[[dashboards]]`, which are kept as written.
//!
//! ```toml
//! timezone = "America/Sao_Paulo"          # reporting time zone (intervals); default "UTC"
//!
//! [metrics]
//! service_level_target = "60s"            # service level threshold T; default 60s
//! session_gap = "24h"                     # inactivity that ends a customer session; default 24h
//! link_grace = "2m"                       # a message this long before a conversation opens
//!                                         # still belongs to it; default 2m
//! calendar = "default"                    # for business-time metrics; default "default"
//!                                         # if that calendar exists, else "24x7"
//!
//! [calendars.default]
//! timezone = "America/Sao_Paulo"          # default: the top-level timezone
//! mon = ["08:00-12:00", "13:00-18:00"]
//! tue = ["08:00-18:00"]                   # wed thu fri sat sun likewise; missing day = closed
//! sat = ["22:00-06:00"]                   # overnight: Saturday 22:00 → Sunday 06:00
//! holidays = ["2026-12-25", 2027-01-01]   # quoted or bare TOML dates
//!
//! [[sla.policies]]                        # ordered; the first matching policy applies
//! name = "whatsapp-high"                  # required, unique
//! match = { channel = "whatsapp", priority = ["high", "urgent"] }
//! first_response = "5m"
//! next_response = "15m"
//! resolution = "4h"
//! calendar = "default"                    # omit for calendar (24x7) time
//!
//! [[reports]]                             # kept as-is for the report scheduler
//! name = "daily-sla"
//!
//! [retention]                             # days to keep; omitted: kept for good
//! events = "730d"
//! rejected = "90d"
//! ```
//!
//! ## Top level
//! - `timezone` — IANA name (`"America/Sao_Paulo"`, `"UTC"`) used to cut hour/day/week/month
//!   intervals. Default `"UTC"`.
//!
//! ## `[metrics]`
//! Durations are strings in the `humantime` syntax: `"90s"`, `"5m"`, `"1h 30m"`, `"2days"`.
//! Each must be greater than zero and at most 100 years.
//! - `service_level_target` — the service-level threshold T: a conversation counts as
//!   answered in time if its first response came within T. Default `"60s"`.
//! - `session_gap` — a customer message arriving after this much inactivity starts a new
//!   conversation instead of joining the last one. Default `"24h"`.
//! - `link_grace` — a message up to this long *before* a conversation was opened still belongs
//!   to it (webhooks from different systems disagree slightly on clocks). Default `"2m"`.
//! - `calendar` — the calendar in which the business-time variants of duration metrics
//!   (wait, handle time, … in business hours) are measured. Must name a calendar defined
//!   under `[calendars]`, or `24x7`. Default: `default` when a calendar of that name is
//!   defined, else `24x7`.
//!
//! ## `[calendars.<name>]`
//! Business hours, used to measure SLA targets in business time. See
//! [`crate::calendar`] for exactly how ranges, overnight ranges, holidays and DST changes are
//! counted.
//! - `timezone` — IANA name the local times are read in. Default: the top-level `timezone`.
//! - `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun` — lists of `"HH:MM-HH:MM"` ranges. An end
//!   at or before the start runs into the next day (`"22:00-06:00"`); `"24:00"` is allowed as
//!   an end (`"08:00-24:00"`, `"00:00-24:00"`). A missing or empty day is closed. At least one
//!   day must have a range.
//! - `holidays` — dates (`"YYYY-MM-DD"` strings or bare TOML dates) on which no range starts.
//!
//! A calendar named `24x7` always exists: it is open around the clock in UTC, so business
//! time equals calendar time. That name cannot be redefined.
//!
//! ## `[[sla.policies]]`
//! Checked in file order; a conversation gets the first policy whose `match` fits it.
//! - `name` — *required*, non-empty, unique among policies.
//! - `match` — a table with any of `channel`, `team`, `priority`, `inbox`; each a string or a
//!   non-empty list of strings (any of them matches, compared exactly, case included). A
//!   conversation fits when it fits every key given; a missing key, or a missing `match`,
//!   accepts anything. A conversation with no value for a dimension does not fit a key that
//!   names values for it.
//! - `first_response`, `next_response`, `resolution` — targets as durations; at least one is
//!   required. `next_response` applies to every customer turn awaiting a reply.
//! - `calendar` — name of a calendar (including `24x7`) in which the targets are measured in
//!   business time. Omitted: calendar time. Each policy may name a different calendar;
//!   every target is measured in its own policy's.
//!
//! ## `[[reports]]`, `[[dashboards]]`
//! Arrays of tables kept verbatim ([`Config::reports`], [`Config::dashboards`]) for the report
//! scheduler and dashboard renderer, which check their own keys.
//!
//! ## `[retention]`
//! Keys: the tables of [`RETENTION_TABLES`] and `rejected` (the quarantine), each a duration
//! of whole days. A partition `date=D` expires when `D < today (UTC) − period`. `wal` and
//! `audit` are refused with the reason (neither is ever expired). See
//! [`crate::lake::retention`].
//!
//! # Errors
//!
//! Loading checks everything at once and reports every problem, one per line, each as
//! `file:line:column: field.path: message` (TOML syntax errors have no field path). This
//! `config.toml`
//!
//! ```toml
//! [calendars.default]
//! mon = ["08:00-12:00", "13:00-25:00"]
//!
//! [[sla.policies]]
//! name = "vip"
//! resolution = "4h"
//! calendar = "weekdays"
//! ```
//!
//! is rejected with
//!
//! ```text
//! config.toml:2:23: calendars.default.mon[1]: "13:00-25:00" is not a time range (HH:MM-HH:MM)
//! config.toml:7:12: sla.policies[0].calendar: no calendar named "weekdays" (known: default, 24x7)
//! ```
//!
//! Lines and columns are 1-based; columns count characters. Array indexes in paths are
//! 0-based. A message points at the offending value, at the key for unknown keys, and at the
//! table header for something missing from a table.

mod error;
mod parse;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;

use crate::calendar::Calendar;

pub use error::{ConfigError, Diagnostic};

/// Name of the built-in around-the-clock calendar.
pub const ALWAYS_CALENDAR: &str = "24x7";

/// The calendar that business-time metrics use when `metrics.calendar` is not set.
pub const DEFAULT_CALENDAR: &str = "default";

/// Durations beyond this are rejected: they are typos, and they would overflow the
/// microsecond arithmetic downstream.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The loaded business rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Reporting time zone for hour/day/week/month intervals.
    pub timezone: Tz,
    /// Metric settings.
    pub metrics: MetricsSettings,
    /// Calendars by name, always including [`ALWAYS_CALENDAR`].
    pub calendars: BTreeMap<String, Calendar>,
    /// SLA policies in file order (first match wins).
    pub sla: Vec<SlaPolicy>,
    /// `[[reports]]` entries, untouched.
    pub reports: Vec<toml::Table>,
    /// `[[dashboards]]` entries, untouched.
    pub dashboards: Vec<toml::Table>,
    /// The `[smtp]` table (`url`, `from`), untouched.
    pub smtp: Option<toml::Table>,
    /// How long date partitions and quarantined input are kept (`[retention]`).
    pub retention: RetentionSettings,
}

/// The tables whose date partitions `[retention]` may expire: the events and the derived
/// tables beside them. The write-ahead log and the audit log are never expired.
pub const RETENTION_TABLES: &[&str] = &[
    "events",
    "conversations",
    "sla_targets",
    "conversation_intervals",
    "conversation_links",
    "conversation_owners",
    "conversation_messages",
    "agent_status_intervals",
];

/// The `[retention]` section. A table (or the quarantine) not named here is kept for good.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSettings {
    /// (table, days to keep), in file order. A partition `date=D` expires once
    /// `D < today (UTC) - days`.
    pub tables: Vec<(String, u32)>,
    /// Days to keep quarantined input (`_rejected/`), by the time in each file's name.
    pub rejected: Option<u32>,
}

impl RetentionSettings {
    /// `true` when nothing ever expires.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.rejected.is_none()
    }
}

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Service-level threshold T (answered within T counts as in time). Default 60 s.
    pub service_level_target: Duration,
    /// Inactivity that ends a customer session. Default 24 h.
    pub session_gap: Duration,
    /// How long before a conversation opens a message may arrive and still belong to it.
    /// Default 2 min.
    pub link_grace: Duration,
    /// Calendar for the business-time variants of duration metrics, as written in the file;
    /// [`Config::metrics_calendar`] resolves the default.
    pub calendar: Option<String>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            service_level_target: Duration::from_secs(60),
            session_gap: Duration::from_secs(24 * 3600),
            link_grace: Duration::from_secs(120),
            calendar: None,
        }
    }
}

/// One `[[sla.policies]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicy {
    /// Unique, non-empty name.
    pub name: String,
    /// Which conversations the policy applies to.
    pub matcher: PolicyMatch,
    /// Target for the first agent response.
    pub first_response: Option<Duration>,
    /// Target for each later reply to a waiting customer.
    pub next_response: Option<Duration>,
    /// Target for resolving the conversation.
    pub resolution: Option<Duration>,
    /// Calendar the targets are measured in; `None` means calendar (24x7) time.
    pub calendar: Option<String>,
}

/// The `match` table of a policy. An empty list accepts any value, including none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyMatch {
    /// Accepted channels.
    pub channel: Vec<String>,
    /// Accepted teams.
    pub team: Vec<String>,
    /// Accepted priorities.
    pub priority: Vec<String>,
    /// Accepted inboxes.
    pub inbox: Vec<String>,
}

impl PolicyMatch {
    /// Whether a conversation with these dimension values fits. Each non-empty list needs the
    /// value to be present and listed (exact, case-sensitive comparison).
    pub fn matches(
        &self,
        channel: Option<&str>,
        team: Option<&str>,
        priority: Option<&str>,
        inbox: Option<&str>,
    ) -> bool {
        fn fits(accepted: &[String], value: Option<&str>) -> bool {
            accepted.is_empty() || value.is_some_and(|v| accepted.iter().any(|a| a == v))
        }
        fits(&self.channel, channel)
            && fits(&self.team, team)
            && fits(&self.priority, priority)
            && fits(&self.inbox, inbox)
    }

    /// `true` when the matcher accepts every conversation.
    pub fn is_catch_all(&self) -> bool {
        self.channel.is_empty()
            && self.team.is_empty()
            && self.priority.is_empty()
            && self.inbox.is_empty()
    }
}

impl Default for Config {
    /// UTC, default metric settings, only the `24x7` calendar, no policies.
    fn default() -> Self {
        let mut calendars = BTreeMap::new();
        calendars.insert(
            ALWAYS_CALENDAR.to_owned(),
            Calendar::always(ALWAYS_CALENDAR),
        );
        Self {
            timezone: Tz::UTC,
            metrics: MetricsSettings::default(),
            calendars,
            sla: Vec::new(),
            reports: Vec::new(),
            dashboards: Vec::new(),
            smtp: None,
            retention: RetentionSettings::default(),
        }
    }
}

impl Config {
    /// Parses and checks a configuration. `origin` names the text in messages (usually the
    /// file name).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        parse::parse(text, origin).map_err(ConfigError::Invalid)
    }

    /// Reads and checks the configuration file at `path`; messages name the path as given.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let origin = path.display().to_string();
        match String::from_utf8(bytes) {
            Ok(text) => Self::from_toml_str(&text, &origin),
            Err(e) => {
                // Point at the first bad byte, counting position in the valid part before it.
                let valid_up_to = e.utf8_error().valid_up_to();
                let valid = String::from_utf8_lossy(&e.as_bytes()[..valid_up_to]);
                let (line, column) = error::line_column(&valid, valid.len());
                Err(ConfigError::Invalid(vec![Diagnostic {
                    origin,
                    line,
                    column,
                    field: None,
                    message: "the file is not valid UTF-8".to_owned(),
                }]))
            }
        }
    }

    /// The calendar called `name` (`"24x7"` always exists).
    pub fn calendar(&self, name: &str) -> Option<&Calendar> {
        self.calendars.get(name)
    }

    /// The first policy whose `match` fits these dimension values.
    pub fn policy_for(
        &self,
        channel: Option<&str>,
        team: Option<&str>,
        priority: Option<&str>,
        inbox: Option<&str>,
    ) -> Option<&SlaPolicy> {
        self.sla
            .iter()
            .find(|p| p.matcher.matches(channel, team, priority, inbox))
    }

    /// Name of the calendar for business-time metrics: `metrics.calendar` when set, else
    /// `"default"` when such a calendar is defined, else `"24x7"`. Always names an existing
    /// calendar.
    pub fn metrics_calendar(&self) -> &str {
        match &self.metrics.calendar {
            Some(name) => name,
            None if self.calendars.contains_key(DEFAULT_CALENDAR) => DEFAULT_CALENDAR,
            None => ALWAYS_CALENDAR,
        }
    }

    /// The calendar a policy's targets are measured in (`24x7` when it names none).
    pub fn policy_calendar(&self, policy: &SlaPolicy) -> Option<&Calendar> {
        self.calendar(policy.calendar.as_deref().unwrap_or(ALWAYS_CALENDAR))
    }
}

#[cfg(test)]
mod tests;
