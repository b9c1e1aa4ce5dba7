//! Turns the spanned TOML tree into a [`Config`], checking every value and remembering where
//! it came from.
//!
//! `toml::de::DeTable::parse` keeps a byte span for every key and value (it is the tree that
//! `toml::Spanned` is read from). Walking that tree by hand, rather than deriving
//! `Deserialize`, lets every message carry the field's full path as well as its line and
//! column, lets checks that need other parts of the file (a policy naming a calendar) point at
//! the right place, and lets one run report every problem instead of the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{Diagnostic, line_column};
use super::{
    ALWAYS_CALENDAR, Config, MAX_DURATION, MetricsSettings, PolicyMatch, RETENTION_TABLES,
    RetentionSettings, SlaPolicy,
};
use crate::calendar::{Calendar, LocalRange};

type Node<'a> = Spanned<DeValue<'a>>;
type Key<'a> = Spanned<std::borrow::Cow<'a, str>>;

/// Parses `text` into a configuration or every problem found in it.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Config, Vec<Diagnostic>> {
    let mut ctx = Ctx {
        text,
        origin,
        problems: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => {
            let offset = error.span().map_or(0, |span| span.start);
            ctx.report_at(offset, None, one_line(error.message()));
            return Err(ctx.problems);
        }
    };
    let config = ctx.root(root.get_ref());
    if ctx.problems.is_empty() {
        Ok(config)
    } else {
        // File order reads best; the walk itself is grouped by section.
        ctx.problems.sort_by_key(|d| (d.line, d.column));
        Err(ctx.problems)
    }
}

/// A field's location, written the way a user would address it: `sla.policies[1].calendar`.
#[derive(Clone)]
struct FieldPath(String);

impl FieldPath {
    fn root() -> Self {
        Self(String::new())
    }

    fn key(&self, key: &str) -> Self {
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let key = if bare {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        if self.0.is_empty() {
            Self(key)
        } else {
            Self(format!("{}.{key}", self.0))
        }
    }

    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }
}

struct Ctx<'t> {
    text: &'t str,
    origin: &'t str,
    problems: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn report_at(&mut self, offset: usize, field: Option<&FieldPath>, message: String) {
        let (line, column) = line_column(self.text, offset);
        self.problems.push(Diagnostic {
            origin: self.origin.to_owned(),
            line,
            column,
            field: field.map(|p| p.0.clone()),
            message,
        });
    }

    fn report(&mut self, span: Range<usize>, path: &FieldPath, message: impl Into<String>) {
        self.report_at(span.start, Some(path), message.into());
    }

    fn wrong_type(&mut self, node: &Node<'_>, path: &FieldPath, expected: &str) {
        let found = node.get_ref().type_str();
        self.report(
            node.span(),
            path,
            format!("expected {expected}, found {} {found}", article(found)),
        );
    }

    fn unknown_key(&mut self, key: &Key<'_>, path: &FieldPath, known: &[&str]) {
        let message = format!("unknown key (known keys here: {})", known.join(", "));
        self.report(key.span(), &path.key(key.get_ref()), message);
    }

    // ----- typed readers: each reports its own problem and returns None ------------------

    fn string<'v>(&mut self, node: &'v Node<'_>, path: &FieldPath) -> Option<&'v str> {
        let found = node.get_ref().as_str();
        if found.is_none() {
            self.wrong_type(node, path, "a string");
        }
        found
    }

    fn table<'v, 'a>(&mut self, node: &'v Node<'a>, path: &FieldPath) -> Option<&'v DeTable<'a>> {
        let found = node.get_ref().as_table();
        if found.is_none() {
            self.wrong_type(node, path, "a table");
        }
        found
    }

    fn array<'v, 'a>(&mut self, node: &'v Node<'a>, path: &FieldPath) -> Option<&'v [Node<'a>]> {
        let found = node.get_ref().as_array().map(|a| &a[..]);
        if found.is_none() {
            self.wrong_type(node, path, "an array");
        }
        found
    }

    fn time_zone(&mut self, node: &Node<'_>, path: &FieldPath) -> Option<Tz> {
        let name = self.string(node, path)?;
        match Tz::from_str(name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.report(
                    node.span(),
                    path,
                    format!(
                        "{name:?} is not an IANA time zone name (e.g. \"America/Sao_Paulo\", \"UTC\")"
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node<'_>, path: &FieldPath) -> Option<Duration> {
        let Some(text) = node.get_ref().as_str() else {
            self.wrong_type(
                node,
                path,
                "a duration string such as \"90s\", \"5m\" or \"4h\"",
            );
            return None;
        };
        let problem = match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => "must be greater than zero".to_owned(),
            Ok(d) if d > MAX_DURATION => "is longer than 100 years".to_owned(),
            Ok(d) => return Some(d),
            Err(e) => format!("is not a duration (e.g. \"90s\", \"5m\", \"1h 30m\"): {e}"),
        };
        self.report(node.span(), path, format!("{text:?} {problem}"));
        None
    }

    fn holiday(&mut self, node: &Node<'_>, path: &FieldPath) -> Option<NaiveDate> {
        let date = match node.get_ref() {
            DeValue::String(text) => parse_date(text),
            // A bare TOML date (`2026-12-25`, unquoted) is the natural way to write one.
            DeValue::Datetime(dt) => match (dt.date, dt.time, dt.offset) {
                (Some(d), None, None) => {
                    NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
                }
                _ => None,
            },
            _ => {
                self.wrong_type(node, path, "a date (YYYY-MM-DD)");
                return None;
            }
        };
        if date.is_none() {
            let shown = self.text.get(node.span()).unwrap_or_default();
            self.report(
                node.span(),
                path,
                format!("{shown} is not a date (YYYY-MM-DD)"),
            );
        }
        date
    }

    // ----- sections -----------------------------------------------------------------------

    fn root(&mut self, root: &DeTable<'_>) -> Config {
        let mut config = Config::default();
        let path = FieldPath::root();
        let mut metrics = None;
        let mut calendars = None;
        let mut sla = None;
        for (key, node) in in_file_order(root) {
            match key.get_ref().as_ref() {
                "timezone" => {
                    if let Some(tz) = self.time_zone(node, &path.key("timezone")) {
                        config.timezone = tz;
                    }
                }
                "metrics" => metrics = Some(node),
                "calendars" => calendars = Some(node),
                "sla" => sla = Some(node),
                "retention" => config.retention = self.retention(node, &path.key("retention")),
                "reports" => config.reports = self.free_tables(node, &path.key("reports")),
                "dashboards" => {
                    config.dashboards = self.free_tables(node, &path.key("dashboards"));
                }
                "smtp" => {
                    if node.get_ref().as_table().is_none() {
                        self.wrong_type(node, &path.key("smtp"), "a table");
                    } else {
                        match toml::Table::deserialize(toml::de::ValueDeserializer::from(
                            node.clone(),
                        )) {
                            Ok(t) => config.smtp = Some(t),
                            Err(e) => {
                                let span = e.span().unwrap_or(node.span());
                                self.report(span, &path.key("smtp"), one_line(e.message()));
                            }
                        }
                    }
                }
                _ => self.unknown_key(key, &path, ROOT_KEYS),
            }
        }
        // Names declared in the file, valid or not, so that a reference to a calendar with a
        // typo inside is not also told that the calendar does not exist.
        let mut declared = BTreeSet::new();
        if let Some(node) = calendars {
            self.calendars(
                node,
                &path.key("calendars"),
                config.timezone,
                &mut config.calendars,
                &mut declared,
            );
        }
        if let Some(node) = metrics {
            config.metrics = self.metrics(node, &path.key("metrics"), &declared);
        }
        if let Some(node) = sla {
            config.sla = self.sla(node, &path.key("sla"), &declared);
        }
        config
    }

    /// `[retention]`: table name (or `rejected`) = a whole number of days.
    fn retention(&mut self, node: &Node<'_>, path: &FieldPath) -> RetentionSettings {
        let mut out = RetentionSettings::default();
        let Some(table) = self.table(node, path) else {
            return out;
        };
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            let field = path.key(name);
            let refused = match name {
                "wal" => Some(
                    "the write-ahead log has no retention: it is emptied as soon as its events \
                     are in Parquet",
                ),
                "audit" => Some(
                    "the erasure audit log has no retention: it holds no personal data and is \
                     kept for good",
                ),
                _ => None,
            };
            if let Some(why) = refused {
                self.report(key.span(), &field, why);
                continue;
            }
            if name != "rejected" && !RETENTION_TABLES.contains(&name) {
                let known: Vec<&str> = RETENTION_TABLES
                    .iter()
                    .copied()
                    .chain(["rejected"])
                    .collect();
                self.unknown_key(key, path, &known);
                continue;
            }
            let Some(d) = self.duration(value, &field) else {
                continue;
            };
            let secs = d.as_secs();
            if d.subsec_nanos() != 0 || secs % 86_400 != 0 {
                let shown = self.text.get(value.span()).unwrap_or_default();
                self.report(
                    value.span(),
                    &field,
                    format!(
                        "{shown} is not a whole number of days (write e.g. \"730d\" or \"90d\")"
                    ),
                );
                continue;
            }
            let days = u32::try_from(secs / 86_400).unwrap_or(u32::MAX);
            if name == "rejected" {
                out.rejected = Some(days);
            } else {
                out.tables.push((name.to_owned(), days));
            }
        }
        out
    }

    fn metrics(
        &mut self,
        node: &Node<'_>,
        path: &FieldPath,
        declared: &BTreeSet<String>,
    ) -> MetricsSettings {
        let mut settings = MetricsSettings::default();
        let Some(table) = self.table(node, path) else {
            return settings;
        };
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            let slot = match name {
                "service_level_target" => &mut settings.service_level_target,
                "session_gap" => &mut settings.session_gap,
                "link_grace" => &mut settings.link_grace,
                "calendar" => {
                    settings.calendar = self.calendar_ref(value, &path.key(name), declared);
                    continue;
                }
                _ => {
                    self.unknown_key(key, path, METRICS_KEYS);
                    continue;
                }
            };
            if let Some(d) = self.duration(value, &path.key(name)) {
                *slot = d;
            }
        }
        settings
    }

    /// A string naming a calendar declared in the file, or the built-in one.
    fn calendar_ref(
        &mut self,
        node: &Node<'_>,
        path: &FieldPath,
        declared: &BTreeSet<String>,
    ) -> Option<String> {
        let text = self.string(node, path)?;
        if text == ALWAYS_CALENDAR || declared.contains(text) {
            return Some(text.to_owned());
        }
        let known: Vec<&str> = declared
            .iter()
            .map(String::as_str)
            .chain([ALWAYS_CALENDAR])
            .collect();
        self.report(
            node.span(),
            path,
            format!("no calendar named {text:?} (known: {})", known.join(", ")),
        );
        None
    }

    fn calendars(
        &mut self,
        node: &Node<'_>,
        path: &FieldPath,
        default_tz: Tz,
        out: &mut BTreeMap<String, Calendar>,
        declared: &mut BTreeSet<String>,
    ) {
        let Some(table) = self.table(node, path) else {
            return;
        };
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            let cal_path = path.key(name);
            if name == ALWAYS_CALENDAR {
                self.report(
                    key.span(),
                    &cal_path,
                    format!("the name {ALWAYS_CALENDAR:?} is reserved for the built-in around-the-clock calendar"),
                );
                continue;
            }
            if name.trim().is_empty() {
                self.report(key.span(), &cal_path, "a calendar name must not be empty");
                continue;
            }
            declared.insert(name.to_owned());
            if let Some(calendar) = self.calendar(name, value, &cal_path, default_tz) {
                out.insert(name.to_owned(), calendar);
            }
        }
    }

    fn calendar(
        &mut self,
        name: &str,
        node: &Node<'_>,
        path: &FieldPath,
        default_tz: Tz,
    ) -> Option<Calendar> {
        let table = self.table(node, path)?;
        let mut ok = true;
        let mut tz = default_tz;
        let mut week: [Vec<LocalRange>; 7] = Default::default();
        let mut holidays = BTreeSet::new();
        for (key, value) in in_file_order(table) {
            let key_name = key.get_ref().as_ref();
            let field = path.key(key_name);
            if let Some(day) = DAY_KEYS.iter().position(|d| *d == key_name) {
                let Some(items) = self.array(value, &field) else {
                    ok = false;
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    let item_path = field.index(i);
                    let Some(text) = self.string(item, &item_path) else {
                        ok = false;
                        continue;
                    };
                    match text.parse::<LocalRange>() {
                        Ok(range) => week[day].push(range),
                        Err(e) => {
                            self.report(item.span(), &item_path, e.to_string());
                            ok = false;
                        }
                    }
                }
                continue;
            }
            match key_name {
                "timezone" => match self.time_zone(value, &field) {
                    Some(found) => tz = found,
                    None => ok = false,
                },
                "holidays" => {
                    let Some(items) = self.array(value, &field) else {
                        ok = false;
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        match self.holiday(item, &field.index(i)) {
                            Some(date) => {
                                holidays.insert(date);
                            }
                            None => ok = false,
                        }
                    }
                }
                _ => {
                    self.unknown_key(key, path, CALENDAR_KEYS);
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        if week.iter().all(Vec::is_empty) {
            self.report(
                node.span(),
                path,
                "no opening hours on any day (list ranges under mon … sun); business time would never pass",
            );
            return None;
        }
        match Calendar::new(name, tz, week, holidays) {
            Ok(calendar) => Some(calendar),
            Err(e) => {
                self.report(node.span(), path, e.to_string());
                None
            }
        }
    }

    fn sla(
        &mut self,
        node: &Node<'_>,
        path: &FieldPath,
        declared: &BTreeSet<String>,
    ) -> Vec<SlaPolicy> {
        let mut policies = Vec::new();
        let Some(table) = self.table(node, path) else {
            return policies;
        };
        for (key, value) in in_file_order(table) {
            if key.get_ref() != "policies" {
                self.unknown_key(key, path, &["policies"]);
                continue;
            }
            let list_path = path.key("policies");
            let Some(items) = self.array(value, &list_path) else {
                continue;
            };
            // Where each name was first used, to point a duplicate back at it.
            let mut names: HashMap<String, (String, usize)> = HashMap::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(policy) = self.policy(item, &list_path.index(i), declared, &mut names) {
                    policies.push(policy);
                }
            }
        }
        policies
    }

    fn policy(
        &mut self,
        node: &Node<'_>,
        path: &FieldPath,
        declared: &BTreeSet<String>,
        names: &mut HashMap<String, (String, usize)>,
    ) -> Option<SlaPolicy> {
        let table = self.table(node, path)?;
        let mut ok = true;
        let mut name = None;
        let mut matcher = PolicyMatch::default();
        let mut targets: [Option<Duration>; 3] = [None; 3];
        let mut calendar = None;
        for (key, value) in in_file_order(table) {
            let key_name = key.get_ref().as_ref();
            let field = path.key(key_name);
            match key_name {
                "name" => {
                    let Some(text) = self.string(value, &field) else {
                        ok = false;
                        continue;
                    };
                    if text.trim().is_empty() {
                        self.report(value.span(), &field, "a policy name must not be empty");
                        ok = false;
                    } else if let Some((first, line)) = names.get(text) {
                        let message = format!(
                            "duplicate policy name {text:?} (already used by {first} on line {line})"
                        );
                        self.report(value.span(), &field, message);
                        ok = false;
                    } else {
                        let (line, _) = line_column(self.text, value.span().start);
                        names.insert(text.to_owned(), (path.0.clone(), line));
                        name = Some(text.to_owned());
                    }
                }
                "match" => match self.matcher(value, &field) {
                    Some(m) => matcher = m,
                    None => ok = false,
                },
                "first_response" | "next_response" | "resolution" => {
                    let slot = match key_name {
                        "first_response" => 0,
                        "next_response" => 1,
                        _ => 2,
                    };
                    match self.duration(value, &field) {
                        Some(d) => targets[slot] = Some(d),
                        None => ok = false,
                    }
                }
                "calendar" => match self.calendar_ref(value, &field, declared) {
                    Some(name) => calendar = Some(name),
                    None => ok = false,
                },
                _ => {
                    self.unknown_key(key, path, POLICY_KEYS);
                    ok = false;
                }
            }
        }
        if name.is_none() && !table.contains_key("name") {
            self.report(
                node.span(),
                &path.key("name"),
                "missing; every policy needs a unique name",
            );
            ok = false;
        }
        if targets.iter().all(Option::is_none)
            && !POLICY_TARGETS.iter().any(|k| table.contains_key(*k))
        {
            self.report(
                node.span(),
                path,
                "no target; set at least one of first_response, next_response, resolution",
            );
            ok = false;
        }
        let [first_response, next_response, resolution] = targets;
        match (ok, name) {
            (true, Some(name)) => Some(SlaPolicy {
                name,
                matcher,
                first_response,
                next_response,
                resolution,
                calendar,
            }),
            _ => None,
        }
    }

    fn matcher(&mut self, node: &Node<'_>, path: &FieldPath) -> Option<PolicyMatch> {
        let table = self.table(node, path)?;
        let mut matcher = PolicyMatch::default();
        let mut ok = true;
        for (key, value) in in_file_order(table) {
            let key_name = key.get_ref().as_ref();
            let slot = match key_name {
                "channel" => &mut matcher.channel,
                "team" => &mut matcher.team,
                "priority" => &mut matcher.priority,
                "inbox" => &mut matcher.inbox,
                _ => {
                    self.unknown_key(key, path, MATCH_KEYS);
                    ok = false;
                    continue;
                }
            };
            match self.match_values(value, &path.key(key_name)) {
                Some(values) => *slot = values,
                None => ok = false,
            }
        }
        ok.then_some(matcher)
    }

    /// A string, or a non-empty list of strings; no string may be blank.
    fn match_values(&mut self, node: &Node<'_>, path: &FieldPath) -> Option<Vec<String>> {
        match node.get_ref() {
            DeValue::String(text) => self
                .non_blank(node, path, text)
                .then(|| vec![text.to_string()]),
            DeValue::Array(items) => {
                if items.is_empty() {
                    self.report(
                        node.span(),
                        path,
                        "an empty list matches nothing; leave the key out to match any value",
                    );
                    return None;
                }
                let mut values = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    let item_path = path.index(i);
                    match self.string(item, &item_path) {
                        Some(text) if self.non_blank(item, &item_path, text) => {
                            values.push(text.to_owned());
                        }
                        _ => ok = false,
                    }
                }
                ok.then_some(values)
            }
            _ => {
                self.wrong_type(node, path, "a string or a list of strings");
                None
            }
        }
    }

    fn non_blank(&mut self, node: &Node<'_>, path: &FieldPath, text: &str) -> bool {
        let blank = text.trim().is_empty();
        if blank {
            self.report(node.span(), path, "must not be empty");
        }
        !blank
    }

    /// `[[reports]]` / `[[dashboards]]`: kept as plain tables for the features that read them.
    fn free_tables(&mut self, node: &Node<'_>, path: &FieldPath) -> Vec<toml::Table> {
        let Some(items) = self.array(node, path) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = path.index(i);
            if item.get_ref().as_table().is_none() {
                self.wrong_type(item, &item_path, "a table");
                continue;
            }
            match toml::Table::deserialize(toml::de::ValueDeserializer::from(item.clone())) {
                Ok(table) => out.push(table),
                Err(e) => {
                    let span = e.span().unwrap_or(item.span());
                    self.report(span, &item_path, one_line(e.message()));
                }
            }
        }
        out
    }
}

const ROOT_KEYS: &[&str] = &[
    "timezone",
    "metrics",
    "calendars",
    "sla",
    "reports",
    "dashboards",
    "smtp",
    "retention",
];
const METRICS_KEYS: &[&str] = &[
    "service_level_target",
    "session_gap",
    "link_grace",
    "calendar",
];
const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const CALENDAR_KEYS: &[&str] = &[
    "timezone", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "holidays",
];
const POLICY_TARGETS: [&str; 3] = ["first_response", "next_response", "resolution"];
const POLICY_KEYS: &[&str] = &[
    "name",
    "match",
    "first_response",
    "next_response",
    "resolution",
    "calendar",
];
const MATCH_KEYS: &[&str] = &["channel", "team", "priority", "inbox"];

/// A table's entries in the order they appear in the file (the map itself is sorted by key).
fn in_file_order<'v, 'a>(table: &'v DeTable<'a>) -> Vec<(&'v Key<'a>, &'v Node<'a>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// Strict `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// Messages go on one line after `file:line:col:`.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
