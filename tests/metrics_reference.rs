//! `sla` and `service_level` over random configurations, against a plain reference written
//! here, one conversation and one target at a time.
//!
//! Each case draws a configuration — one to five ordered policies that match on any of
//! channel, team, priority and inbox, each on its own calendar or on calendar time, with
//! calendars in zones that change their clocks (New York, London, Santiago at midnight,
//! Lord Howe by half an hour), split shifts, overnight ranges (`22:00-06:00`, `…-24:00`,
//! `09:00-09:00` = 24 h) and holidays — and a few dozen conversations written as agent-log
//! lines: queued with or without a team, transferred, assigned, answered or not, customer
//! turns awaiting a reply, resolved or left open, bot-only ones beside them. The lines go
//! through the real ingest into a lake; the metrics come from `metrics::run` over it.
//!
//! The reference knows nothing of `src/calendar.rs` or the SQL: business time is found by
//! listing the calendar's open stretches day by day (local ranges turned into instants with
//! chrono-tz: a start in a repeated hour takes the earlier instant, an end the later one, a
//! time the clocks skip becomes the instant they jump; holidays drop the ranges that start
//! on them; overlaps merged) and walking them. Policies are matched first-match-wins on the
//! conversation's channel, team at queue time, priority and inbox. States at "now" and the
//! instant each is counted follow docs/metrics.md; the team and agent of a target are those
//! in force at that instant (DESIGN §6: a target breached or cancelled without an answer
//! belongs to the team whose queue held it then, never to no team; nobody → `unassigned`).
//!
//! `SUPPORTLAKE_REFERENCE_CASES` sets the number of cases (default 32).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;
use proptest::prelude::*;
use supportlake::config::Config;
use supportlake::ingest::{self, IngestOptions, Input, NoProgress};
use supportlake::interval::Interval;
use supportlake::lake::LakePaths;
use supportlake::metrics::{self, Dimension, Filters, Metric, MetricRequest, MetricResult};
use supportlake::pseudonym::PseudonymKey;
use supportlake::query::Engine;

const CHANNELS: &[&str] = &["whatsapp", "webchat", "email"];
const TEAMS: &[&str] = &["billing", "support", "sales"];
const PRIORITIES: &[&str] = &["high", "low"];
const INBOXES: &[&str] = &["in-1", "in-2"];
const AGENTS: &[&str] = &["ana", "bruno", "carla"];
/// Zones with clock changes of every kind, and two without.
const ZONES: &[&str] = &[
    "UTC",
    "America/Sao_Paulo",
    "America/New_York",
    "Europe/London",
    "America/Santiago",
    "Australia/Lord_Howe",
];
/// Calendar names: the first is `default`, which `metrics.calendar` falls back to.
const CALENDARS: &[&str] = &["default", "office", "night"];
/// Days near clock changes of the zones above (the data starts three days before one).
const BASES: &[&str] = &[
    "2026-03-08", // New York springs forward
    "2026-03-29", // London springs forward
    "2026-04-05", // Santiago falls back at midnight; Lord Howe falls back half an hour
    "2026-09-06", // Santiago springs forward at midnight
    "2026-10-04", // Lord Howe springs forward half an hour
    "2026-10-25", // London falls back
    "2026-11-01", // New York falls back
];
/// Targets and the service-level threshold, in seconds.
const TARGETS: &[u32] = &[60, 300, 900, 1800, 3600, 5400, 14_400, 28_800, 86_400];
const SL_TARGETS: &[u32] = &[30, 60, 300, 1800];

const MICROS: i64 = 1_000_000;

fn cases() -> u32 {
    std::env::var("SUPPORTLAKE_REFERENCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

// ---------------------------------------------------------------------------------------
// What a case is made of.

#[derive(Debug, Clone)]
struct CalendarSpec {
    zone: usize,
    /// Monday first; (start, end) in minutes of the day, end 1440 = "24:00".
    week: [Vec<(u32, u32)>; 7],
    /// Days after the data's first day.
    holidays: Vec<u32>,
}

#[derive(Debug, Clone)]
struct PolicySpec {
    channel: Vec<usize>,
    team: Vec<usize>,
    priority: Vec<usize>,
    inbox: Vec<usize>,
    first_response: Option<u32>,
    next_response: Option<u32>,
    resolution: Option<u32>,
    /// Index into the calendars, one past them = `24x7`; `None`: calendar time.
    calendar: Option<usize>,
}

#[derive(Debug, Clone)]
struct ConfigSpec {
    report_zone: usize,
    base: usize,
    calendars: Vec<CalendarSpec>,
    policies: Vec<PolicySpec>,
    /// `metrics.calendar`: index into the calendars, one past them = `24x7`; `None`: unset.
    metrics_calendar: Option<usize>,
    service_level_target: u32,
}

/// What happens to a conversation after it reached the queue, seconds after that.
#[derive(Debug, Clone)]
enum Step {
    /// `conversation.transferred` to a team, no agent: back in that team's queue.
    Transfer(usize),
    /// `conversation.assigned`, perhaps naming a team.
    Assign(usize, Option<usize>),
    /// An agent's public message.
    Reply(usize),
    /// A customer's message.
    Customer,
    /// `conversation.queued` again, perhaps for another team.
    Requeue(Option<usize>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bot {
    None,
    /// A bot talks first, then hands over to the queue.
    First,
    /// Only a bot: never queued.
    Only,
}

#[derive(Debug, Clone)]
struct ConversationSpec {
    start_min: u32,
    channel: Option<usize>,
    inbox: Option<usize>,
    priority: Option<usize>,
    /// A priority given again when queued (the latest counts).
    queue_priority: Option<usize>,
    open_team: Option<usize>,
    bot: Bot,
    queue_delay_s: u32,
    queue_team: Option<usize>,
    steps: Vec<(u32, Step)>,
    /// Seconds after the last step, and the agent the resolution names.
    resolve: Option<(u32, Option<usize>)>,
}

#[derive(Debug, Clone)]
struct Ask {
    group_by: Option<Dimension>,
    week: bool,
    business: bool,
    sla_metric: Option<&'static str>,
    /// Minutes after the data's first day.
    now_min: u32,
}

// ---------------------------------------------------------------------------------------
// Strategies.

fn range() -> impl Strategy<Value = (u32, u32)> {
    // Starts on the half hour; ends anywhere up to 24:00, at or before the start = overnight.
    (0u32..48, 0u32..=48).prop_map(|(s, e)| (s * 30, e * 30))
}

fn calendar() -> impl Strategy<Value = CalendarSpec> {
    (
        0..ZONES.len(),
        prop::array::uniform7(prop::collection::vec(range(), 0..3)),
        prop::collection::vec(0u32..10, 0..3),
    )
        .prop_map(|(zone, mut week, holidays)| {
            if week.iter().all(Vec::is_empty) {
                week[0].push((8 * 60, 18 * 60));
            }
            CalendarSpec {
                zone,
                week,
                holidays,
            }
        })
}

fn some_of(n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::btree_set(0..n, 0..=2).prop_map(|s| s.into_iter().collect())
}

fn target() -> impl Strategy<Value = Option<u32>> {
    prop::option::weighted(0.7, prop::sample::select(TARGETS))
}

fn policy(calendars: usize) -> impl Strategy<Value = PolicySpec> {
    (
        (
            prop::bool::weighted(0.4),
            some_of(CHANNELS.len()),
            some_of(TEAMS.len()),
            some_of(PRIORITIES.len()),
            some_of(INBOXES.len()),
        ),
        (target(), target(), target()),
        prop::option::of(0..=calendars),
    )
        .prop_map(
            |((catch_all, channel, team, priority, inbox), (fr, nr, res), calendar)| {
                let keep = |v: Vec<usize>| if catch_all { Vec::new() } else { v };
                PolicySpec {
                    channel: keep(channel),
                    team: keep(team),
                    priority: keep(priority),
                    inbox: keep(inbox),
                    first_response: fr.or(if nr.is_none() && res.is_none() {
                        Some(300)
                    } else {
                        None
                    }),
                    next_response: nr,
                    resolution: res,
                    calendar,
                }
            },
        )
}

fn config() -> impl Strategy<Value = ConfigSpec> {
    prop::collection::vec(calendar(), 0..=3).prop_flat_map(|calendars| {
        let n = calendars.len();
        (
            0..ZONES.len(),
            0..BASES.len(),
            Just(calendars),
            prop::collection::vec(policy(n), 1..=5),
            prop::bool::weighted(0.7),
            prop::option::of(0..=n),
            prop::sample::select(SL_TARGETS),
        )
            .prop_map(
                |(
                    report_zone,
                    base,
                    calendars,
                    mut policies,
                    last_catches_all,
                    metrics_calendar,
                    sl,
                )| {
                    // Most real configurations end with a policy for everything else.
                    if let Some(last) = policies.last_mut().filter(|_| last_catches_all) {
                        last.channel.clear();
                        last.team.clear();
                        last.priority.clear();
                        last.inbox.clear();
                    }
                    ConfigSpec {
                        report_zone,
                        base,
                        calendars,
                        policies,
                        metrics_calendar,
                        service_level_target: sl,
                    }
                },
            )
    })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..TEAMS.len()).prop_map(Step::Transfer),
        1 => (0..AGENTS.len(), prop::option::of(0..TEAMS.len()))
            .prop_map(|(a, t)| Step::Assign(a, t)),
        3 => (0..AGENTS.len()).prop_map(Step::Reply),
        3 => Just(Step::Customer),
        1 => prop::option::of(0..TEAMS.len()).prop_map(Step::Requeue),
    ]
}

/// Seconds: mostly short, sometimes across a night or a weekend.
fn delay() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 1u32..600, 3 => 600u32..5400, 2 => 5400u32..54_000, 1 => 54_000u32..240_000]
}

fn conversation() -> impl Strategy<Value = ConversationSpec> {
    (
        (
            0u32..6 * 1440,
            prop::option::of(0..CHANNELS.len()),
            prop::option::of(0..INBOXES.len()),
            prop::option::of(0..PRIORITIES.len()),
            prop::option::weighted(0.2, 0..PRIORITIES.len()),
            prop::option::of(0..TEAMS.len()),
        ),
        (
            prop_oneof![6 => Just(Bot::None), 1 => Just(Bot::First), 1 => Just(Bot::Only)],
            2u32..900,
            prop::option::weighted(0.8, 0..TEAMS.len()),
            prop::collection::vec((delay(), step()), 0..6),
            prop::option::weighted(0.7, (delay(), prop::option::of(0..AGENTS.len()))),
        ),
    )
        .prop_map(
            |(
                (start_min, channel, inbox, priority, queue_priority, open_team),
                (bot, queue_delay_s, queue_team, steps, resolve),
            )| ConversationSpec {
                start_min,
                channel,
                inbox,
                priority,
                queue_priority,
                open_team,
                bot,
                queue_delay_s,
                queue_team,
                steps,
                resolve,
            },
        )
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        prop_oneof![
            Just(None),
            Just(Some(Dimension::Team)),
            Just(Some(Dimension::Agent)),
            Just(Some(Dimension::Channel)),
            Just(Some(Dimension::Inbox)),
            Just(Some(Dimension::Priority)),
        ],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            3 => Just(None),
            1 => Just(Some("first_response")),
            1 => Just(Some("next_response")),
            1 => Just(Some("resolution")),
        ],
        0u32..10 * 1440,
    )
        .prop_map(|(group_by, week, business, sla_metric, now_min)| Ask {
            group_by,
            week,
            business,
            sla_metric,
            now_min,
        })
}

// ---------------------------------------------------------------------------------------
// The configuration file and the agent log a case stands for.

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn first_day(c: &ConfigSpec) -> NaiveDate {
    NaiveDate::parse_from_str(BASES[c.base], "%Y-%m-%d").unwrap() - Duration::days(3)
}

fn calendar_name(c: &ConfigSpec, i: usize) -> &'static str {
    if i < c.calendars.len() {
        CALENDARS[i]
    } else {
        "24x7"
    }
}

fn toml_list(values: &[usize], names: &[&str]) -> String {
    let v: Vec<String> = values.iter().map(|&i| format!("{:?}", names[i])).collect();
    format!("[{}]", v.join(", "))
}

fn config_toml(c: &ConfigSpec) -> String {
    let mut t = format!("timezone = {:?}\n[metrics]\n", ZONES[c.report_zone]);
    t += &format!("service_level_target = \"{}s\"\n", c.service_level_target);
    if let Some(i) = c.metrics_calendar {
        t += &format!("calendar = {:?}\n", calendar_name(c, i));
    }
    let day0 = first_day(c);
    for (i, cal) in c.calendars.iter().enumerate() {
        t += &format!(
            "[calendars.{}]\ntimezone = {:?}\n",
            CALENDARS[i], ZONES[cal.zone]
        );
        for (d, name) in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .enumerate()
        {
            let ranges: Vec<String> = cal.week[d]
                .iter()
                .map(|&(s, e)| format!("\"{}-{}\"", hhmm(s), hhmm(e)))
                .collect();
            t += &format!("{name} = [{}]\n", ranges.join(", "));
        }
        let holidays: Vec<String> = cal
            .holidays
            .iter()
            .map(|&d| format!("\"{}\"", day0 + Duration::days(i64::from(d))))
            .collect();
        t += &format!("holidays = [{}]\n", holidays.join(", "));
    }
    for (i, p) in c.policies.iter().enumerate() {
        t += &format!("[[sla.policies]]\nname = \"p{i}\"\n");
        let mut keys = Vec::new();
        for (key, values, names) in [
            ("channel", &p.channel, CHANNELS),
            ("team", &p.team, TEAMS),
            ("priority", &p.priority, PRIORITIES),
            ("inbox", &p.inbox, INBOXES),
        ] {
            if !values.is_empty() {
                keys.push(format!("{key} = {}", toml_list(values, names)));
            }
        }
        if !keys.is_empty() {
            t += &format!("match = {{ {} }}\n", keys.join(", "));
        }
        for (key, v) in [
            ("first_response", p.first_response),
            ("next_response", p.next_response),
            ("resolution", p.resolution),
        ] {
            if let Some(s) = v {
                t += &format!("{key} = \"{s}s\"\n");
            }
        }
        if let Some(i) = p.calendar {
            t += &format!("calendar = {:?}\n", calendar_name(c, i));
        }
    }
    t
}

/// One agent-log event, as the reference reads it.
#[derive(Debug, Clone)]
struct Ev {
    ts: i64,
    kind: &'static str,
    team: Option<&'static str>,
    agent: Option<&'static str>,
    author: Option<&'static str>,
    channel: Option<&'static str>,
    inbox: Option<&'static str>,
    priority: Option<&'static str>,
}

impl Ev {
    fn new(ts: i64, kind: &'static str) -> Self {
        Ev {
            ts,
            kind,
            team: None,
            agent: None,
            author: None,
            channel: None,
            inbox: None,
            priority: None,
        }
    }

    fn line(&self, id: &str, conv: &str) -> String {
        let mut o = serde_json::json!({
            "id": id,
            "ts": rfc3339(self.ts),
            "type": self.kind,
            "conversation_id": conv,
        });
        for (k, v) in [
            ("team", self.team),
            ("agent_id", self.agent),
            ("author", self.author),
            ("channel", self.channel),
            ("inbox", self.inbox),
            ("priority", self.priority),
        ] {
            if let Some(v) = v {
                o[k] = v.into();
            }
        }
        o.to_string()
    }

    /// The agent this event leaves in charge: `Some("")` = nobody (back in a queue).
    fn agent_in_force(&self) -> Option<&'static str> {
        match self.kind {
            "message.sent" if self.author != Some("agent") => None,
            _ if self.agent.is_some() => self.agent,
            "conversation.queued" | "conversation.transferred" => Some(""),
            _ => None,
        }
    }
}

fn rfc3339(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn micros_of(d: NaiveDate) -> i64 {
    d.and_time(NaiveTime::MIN).and_utc().timestamp_micros()
}

/// A conversation's events in time order (no two at one instant).
fn events(c: &ConfigSpec, s: &ConversationSpec) -> Vec<Ev> {
    let t0 = micros_of(first_day(c)) + i64::from(s.start_min) * 60 * MICROS;
    let mut out = Vec::new();
    let mut open = Ev::new(t0, "conversation.opened");
    open.channel = s.channel.map(|i| CHANNELS[i]);
    open.inbox = s.inbox.map(|i| INBOXES[i]);
    open.priority = s.priority.map(|i| PRIORITIES[i]);
    open.team = s.open_team.map(|i| TEAMS[i]);
    out.push(open);
    if s.bot != Bot::None {
        let mut bot = Ev::new(t0 + MICROS, "message.sent");
        bot.author = Some("bot");
        out.push(bot);
    }
    let mut last = t0 + MICROS;
    if s.bot != Bot::Only {
        let tq = t0 + i64::from(s.queue_delay_s) * MICROS;
        let mut q = Ev::new(tq, "conversation.queued");
        q.team = s.queue_team.map(|i| TEAMS[i]);
        q.priority = s.queue_priority.map(|i| PRIORITIES[i]);
        out.push(q);
        last = tq;
        let mut steps: Vec<(i64, &Step)> = s
            .steps
            .iter()
            .enumerate()
            .map(|(i, (d, st))| (tq + (i64::from(*d) * 10 + i as i64 + 1) * MICROS / 10, st))
            .collect();
        steps.sort_by_key(|(t, _)| *t);
        for (t, st) in steps {
            let e = match st {
                Step::Transfer(team) => {
                    let mut e = Ev::new(t, "conversation.transferred");
                    e.team = Some(TEAMS[*team]);
                    e
                }
                Step::Assign(a, team) => {
                    let mut e = Ev::new(t, "conversation.assigned");
                    e.agent = Some(AGENTS[*a]);
                    e.team = team.map(|i| TEAMS[i]);
                    e
                }
                Step::Reply(a) => {
                    let mut e = Ev::new(t, "message.sent");
                    e.author = Some("agent");
                    e.agent = Some(AGENTS[*a]);
                    e
                }
                Step::Customer => Ev::new(t, "message.received"),
                Step::Requeue(team) => {
                    let mut e = Ev::new(t, "conversation.queued");
                    e.team = team.map(|i| TEAMS[i]);
                    e
                }
            };
            last = t;
            out.push(e);
        }
    }
    if let Some((d, agent)) = s.resolve {
        let mut e = Ev::new(last + i64::from(d) * MICROS, "conversation.resolved");
        e.agent = agent.map(|i| AGENTS[i]);
        out.push(e);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The reference: business time by walking a calendar's open stretches.

struct RefCalendar {
    tz: Tz,
    week: [Vec<(u32, u32)>; 7],
    holidays: BTreeSet<NaiveDate>,
}

/// The first whole second whose local clock reads later than `local` (a time the clocks
/// skip: the instant they jump).
fn jump_after(tz: Tz, local: NaiveDateTime) -> i64 {
    let wall = |s: i64| tz.timestamp_opt(s, 0).unwrap().naive_local();
    let guess = local.and_utc().timestamp();
    let (mut lo, mut hi) = (guess - 16 * 3600, guess + 16 * 3600);
    assert!(wall(lo) <= local && wall(hi) > local);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if wall(mid) > local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi * MICROS
}

fn local_date(tz: Tz, us: i64) -> NaiveDate {
    tz.timestamp_micros(us).unwrap().date_naive()
}

impl RefCalendar {
    fn new(c: &ConfigSpec, spec: &CalendarSpec) -> Self {
        let day0 = first_day(c);
        RefCalendar {
            tz: ZONES[spec.zone].parse().unwrap(),
            week: spec.week.clone(),
            holidays: spec
                .holidays
                .iter()
                .map(|&d| day0 + Duration::days(i64::from(d)))
                .collect(),
        }
    }

    fn instant(&self, local: NaiveDateTime, is_start: bool) -> i64 {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => t.timestamp_micros(),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.timestamp_micros(), b.timestamp_micros());
                if is_start { a.min(b) } else { a.max(b) }
            }
            LocalResult::None => jump_after(self.tz, local),
        }
    }

    /// The open stretches of the ranges that start on the dates `first..=last`, merged.
    fn stretches(&self, first: NaiveDate, last: NaiveDate) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        let mut d = first;
        while d <= last {
            if !self.holidays.contains(&d) {
                let midnight = d.and_time(NaiveTime::MIN);
                for &(s, e) in &self.week[d.weekday().num_days_from_monday() as usize] {
                    let end = if e <= s { e + 1440 } else { e };
                    let a = self.instant(midnight + Duration::minutes(i64::from(s)), true);
                    let b = self.instant(midnight + Duration::minutes(i64::from(end)), false);
                    if a < b {
                        v.push((a, b));
                    }
                }
            }
            d += Duration::days(1);
        }
        v.sort();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (a, b) in v {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    fn business(&self, a: i64, b: i64) -> i64 {
        if b <= a {
            return 0;
        }
        let first = local_date(self.tz, a) - Duration::days(2);
        let last = local_date(self.tz, b) + Duration::days(1);
        self.stretches(first, last)
            .into_iter()
            .map(|(x, y)| (y.min(b) - x.max(a)).max(0))
            .sum()
    }

    /// The earliest instant by which `us` of business time have passed after `a`.
    fn add(&self, a: i64, us: i64) -> i64 {
        if us <= 0 {
            return a;
        }
        let first = local_date(self.tz, a) - Duration::days(2);
        let mut span = 40;
        loop {
            let last = local_date(self.tz, a) + Duration::days(span);
            // Stretches of later dates start after this instant: answers before it hold.
            let trusted = micros_of(last) - 2 * 86_400 * MICROS;
            let mut left = us;
            for (x, y) in self.stretches(first, last) {
                if y <= a {
                    continue;
                }
                let from = x.max(a);
                if left <= y - from {
                    let t = from + left;
                    if t < trusted {
                        return t;
                    }
                    break;
                }
                left -= y - from;
            }
            span *= 2;
            assert!(span < 40_000, "no business time found after {a}");
        }
    }
}

/// A policy's or the metrics' calendar: `None` = calendar time.
fn ref_calendar(c: &ConfigSpec, cals: &[RefCalendar], i: Option<usize>) -> Option<usize> {
    i.filter(|&i| i < c.calendars.len() && i < cals.len())
}

// ---------------------------------------------------------------------------------------
// The reference: conversations, targets, states.

struct Conv {
    events: Vec<Ev>,
    queued_at: Option<i64>,
    first_response: Option<(i64, &'static str)>,
    resolved_at: Option<i64>,
    channel: Option<&'static str>,
    inbox: Option<&'static str>,
    priority: Option<&'static str>,
}

impl Conv {
    fn new(events: Vec<Ev>) -> Self {
        let queued_at = events
            .iter()
            .find(|e| e.kind == "conversation.queued")
            .map(|e| e.ts);
        let first_response = queued_at.and_then(|q| {
            events
                .iter()
                .find(|e| e.kind == "message.sent" && e.author == Some("agent") && e.ts >= q)
                .map(|e| (e.ts, e.agent.unwrap()))
        });
        let resolved_at = events
            .iter()
            .rev()
            .find(|e| e.kind == "conversation.resolved")
            .map(|e| e.ts);
        let latest = |f: fn(&Ev) -> Option<&'static str>| events.iter().rev().find_map(f);
        Conv {
            channel: latest(|e| e.channel),
            inbox: latest(|e| e.inbox),
            priority: latest(|e| e.priority),
            queued_at,
            first_response,
            resolved_at,
            events,
        }
    }

    fn team_at(&self, t: i64) -> Option<&'static str> {
        self.events
            .iter()
            .rev()
            .filter(|e| e.ts <= t)
            .find_map(|e| e.team)
    }

    /// The agent in charge at `t`; `None` for nobody.
    fn agent_at(&self, t: i64) -> Option<&'static str> {
        self.events
            .iter()
            .rev()
            .filter(|e| e.ts <= t)
            .find_map(Ev::agent_in_force)
            .filter(|a| !a.is_empty())
    }

    /// The team the policy is chosen with: in force at the queue, else the first named.
    fn team_queued(&self) -> Option<&'static str> {
        self.queued_at
            .and_then(|q| self.team_at(q))
            .or_else(|| self.events.iter().find_map(|e| e.team))
    }

    fn group(&self, by: Option<Dimension>, team: Option<&str>, agent: Option<&str>) -> Group {
        let s = |v: Option<&str>| v.map(str::to_owned);
        match by {
            None => Some("all".into()),
            Some(Dimension::Team) => s(team),
            Some(Dimension::Agent) => Some(agent.unwrap_or("unassigned").to_owned()),
            Some(Dimension::Channel) => s(self.channel),
            Some(Dimension::Inbox) => s(self.inbox),
            Some(Dimension::Priority) => s(self.priority),
        }
    }
}

type Group = Option<String>;
/// (group, local date of the bucket's start).
type Key = (Group, NaiveDate);

fn bucket(tz: Tz, at: i64, week: bool) -> NaiveDate {
    let d = local_date(tz, at);
    if week {
        d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
    } else {
        d
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
struct SlaCounts {
    achieved: u64,
    breached: u64,
    active: u64,
    active_breached: u64,
    cancelled: u64,
}

struct Target {
    metric: &'static str,
    applied: i64,
    satisfied: Option<i64>,
    closed: Option<i64>,
    due: i64,
    /// Who replied, for a first response.
    replied_by: Option<&'static str>,
}

struct Case<'a> {
    spec: &'a ConfigSpec,
    cals: Vec<RefCalendar>,
    convs: Vec<Conv>,
    from: i64,
    to: i64,
}

impl Case<'_> {
    fn add(&self, cal: Option<usize>, a: i64, secs: u32) -> i64 {
        let us = i64::from(secs) * MICROS;
        match ref_calendar(self.spec, &self.cals, cal) {
            Some(i) => self.cals[i].add(a, us),
            None => a + us,
        }
    }

    fn policy(&self, c: &Conv) -> Option<&PolicySpec> {
        let fits = |accepted: &[usize], names: &[&str], v: Option<&str>| {
            accepted.is_empty() || v.is_some_and(|v| accepted.iter().any(|&i| names[i] == v))
        };
        self.spec.policies.iter().find(|p| {
            fits(&p.channel, CHANNELS, c.channel)
                && fits(&p.team, TEAMS, c.team_queued())
                && fits(&p.priority, PRIORITIES, c.priority)
                && fits(&p.inbox, INBOXES, c.inbox)
        })
    }

    fn targets(&self, c: &Conv) -> Vec<Target> {
        let (Some(q), Some(p)) = (c.queued_at, self.policy(c)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(s) = p.first_response {
            out.push(Target {
                metric: "first_response",
                applied: q,
                satisfied: c.first_response.map(|f| f.0),
                closed: c.resolved_at,
                due: self.add(p.calendar, q, s),
                replied_by: c.first_response.map(|f| f.1),
            });
        }
        if let Some(s) = p.resolution {
            out.push(Target {
                metric: "resolution",
                applied: q,
                satisfied: c.resolved_at,
                closed: None,
                due: self.add(p.calendar, q, s),
                replied_by: None,
            });
        }
        if let (Some(s), Some((fr, _))) = (p.next_response, c.first_response) {
            // Public messages between customer and agents (bots' are not replies).
            let messages: Vec<&Ev> = c
                .events
                .iter()
                .filter(|e| {
                    e.kind == "message.received"
                        || (e.kind == "message.sent" && e.author == Some("agent"))
                })
                .collect();
            for (i, m) in messages.iter().enumerate() {
                let awaits = m.kind == "message.received"
                    && i > 0
                    && messages[i - 1].kind == "message.sent"
                    && m.ts > fr
                    && c.resolved_at.is_none_or(|r| m.ts < r);
                if awaits {
                    out.push(Target {
                        metric: "next_response",
                        applied: m.ts,
                        satisfied: messages[i..]
                            .iter()
                            .find(|r| r.kind == "message.sent")
                            .map(|r| r.ts),
                        closed: c.resolved_at,
                        due: self.add(p.calendar, m.ts, s),
                        replied_by: None,
                    });
                }
            }
        }
        out
    }

    fn sla(&self, ask: &Ask, now: i64, tz: Tz) -> BTreeMap<Key, SlaCounts> {
        let mut out: BTreeMap<Key, SlaCounts> = BTreeMap::new();
        for c in &self.convs {
            for t in self.targets(c) {
                if ask.sla_metric.is_some_and(|m| m != t.metric) {
                    continue;
                }
                // (state, counted at, the instant whose team and agent it belongs to)
                let (state, at) = match (t.satisfied, t.closed) {
                    (Some(s), _) if s <= t.due => ("achieved", s),
                    (Some(s), _) => ("breached", s),
                    (None, Some(x)) if x >= t.due => ("breached", t.due),
                    (None, Some(x)) => ("cancelled", x),
                    (None, None) if t.due <= now => ("active_breached", t.due),
                    (None, None) => ("active", t.applied),
                };
                if at < self.from || at >= self.to {
                    continue;
                }
                let team = c.team_at(at).or_else(|| c.team_queued());
                let agent = match (t.replied_by, t.satisfied) {
                    (Some(a), Some(_)) => Some(a),
                    _ => c.agent_at(at),
                };
                let key = (c.group(ask.group_by, team, agent), bucket(tz, at, ask.week));
                let n = out.entry(key).or_default();
                match state {
                    "achieved" => n.achieved += 1,
                    "breached" => n.breached += 1,
                    "cancelled" => n.cancelled += 1,
                    "active_breached" => n.active_breached += 1,
                    _ => n.active += 1,
                }
            }
        }
        out
    }

    /// (answered within the target, answered, abandoned) per group and bucket.
    fn service_level(&self, ask: &Ask, tz: Tz) -> BTreeMap<Key, (u64, u64, u64)> {
        let metrics_cal = match self.spec.metrics_calendar {
            Some(i) => Some(i),
            None if !self.spec.calendars.is_empty() => Some(0),
            None => None,
        };
        let target = i64::from(self.spec.service_level_target) * MICROS;
        let mut out: BTreeMap<Key, (u64, u64, u64)> = BTreeMap::new();
        for c in &self.convs {
            let Some(q) = c.queued_at else { continue };
            let (at, team, agent, answered) = match (c.first_response, c.resolved_at) {
                (Some((f, who)), _) => (f, c.team_at(f), Some(who), true),
                (None, Some(r)) => (r, c.team_at(r), c.agent_at(r), false),
                (None, None) => continue,
            };
            if at < self.from || at >= self.to {
                continue;
            }
            let key = (c.group(ask.group_by, team, agent), bucket(tz, at, ask.week));
            let n = out.entry(key).or_default();
            if answered {
                n.1 += 1;
                let wait = match ref_calendar(self.spec, &self.cals, metrics_cal) {
                    Some(i) if ask.business => self.cals[i].business(q, at),
                    _ => at - q,
                };
                if wait <= target {
                    n.0 += 1;
                }
            } else {
                n.2 += 1;
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The real path.

struct Lake {
    _dir: tempfile::TempDir,
    engine: Engine,
    rt: tokio::runtime::Runtime,
}

fn lake(lines: &str, config: Arc<Config>) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let input: PathBuf = dir.path().join("agent.jsonl");
    std::fs::write(&input, lines).unwrap();
    let paths = LakePaths::new(dir.path().join("lake"));
    let key = PseudonymKey::new(common::KEY.as_bytes().to_vec()).unwrap();
    let received: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
    let receipt = ingest::ingest(
        &paths,
        &[Input::Path(input)],
        &IngestOptions::default(),
        &key,
        Arc::new(move || received),
        "reference",
        &NoProgress,
    )
    .unwrap();
    assert_eq!(receipt.total_rejects(), 0, "{receipt:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt.block_on(Engine::open(&paths, config)).unwrap();
    Lake {
        _dir: dir,
        engine,
        rt,
    }
}

fn point_keys(r: &MetricResult, tz: Tz) -> Vec<(Key, serde_json::Value)> {
    let mut out = Vec::new();
    for s in &r.series {
        for p in &s.points {
            let v = serde_json::to_value(p).unwrap();
            if v["count"].as_u64() == Some(0) {
                continue;
            }
            let start = DateTime::parse_from_rfc3339(&p.start).unwrap();
            let day = start.with_timezone(&tz).date_naive();
            out.push(((s.group.clone(), day), v));
        }
    }
    out
}

fn check(config: &ConfigSpec, convs: &[ConversationSpec], ask: &Ask) -> Result<(), TestCaseError> {
    let toml = config_toml(config);
    let parsed = Arc::new(
        Config::from_toml_str(&toml, "reference.toml").unwrap_or_else(|e| panic!("{e}\n{toml}")),
    );
    let mut lines = Vec::new();
    let mut reference = Vec::new();
    for (i, s) in convs.iter().enumerate() {
        let evs = events(config, s);
        for (j, e) in evs.iter().enumerate() {
            lines.push(e.line(&format!("{i}-{j}"), &format!("c{i}")));
        }
        reference.push(Conv::new(evs));
    }
    let l = lake(&lines.join("\n"), Arc::clone(&parsed));
    let day0 = micros_of(first_day(config));
    let case = Case {
        spec: config,
        cals: config
            .calendars
            .iter()
            .map(|c| RefCalendar::new(config, c))
            .collect(),
        convs: reference,
        from: day0 - 86_400 * MICROS,
        to: day0 + 30 * 86_400 * MICROS,
    };
    let tz: Tz = ZONES[config.report_zone].parse().unwrap();
    let now = day0 + i64::from(ask.now_min) * 60 * MICROS;
    let request = |metric| MetricRequest {
        metric,
        from: DateTime::from_timestamp_micros(case.from).unwrap(),
        to: DateTime::from_timestamp_micros(case.to).unwrap(),
        interval: if ask.week {
            Interval::Week
        } else {
            Interval::Day
        },
        group_by: ask.group_by,
        tz,
        business_hours: ask.business,
        filters: Filters::default(),
        now: DateTime::from_timestamp_micros(now).unwrap(),
        sla_metric: ask.sla_metric.map(str::to_owned),
    };

    let sla =
        l.rt.block_on(metrics::run(&l.engine, &request(Metric::Sla)))
            .map_err(|e| TestCaseError::fail(format!("sla failed: {e}\n{toml}")))?;
    let want = case.sla(ask, now, tz);
    let mut got = BTreeMap::new();
    for (key, v) in point_keys(&sla, tz) {
        let n = |k: &str| v[k].as_u64().unwrap();
        let counts = SlaCounts {
            achieved: n("achieved"),
            breached: n("breached"),
            active: n("active"),
            active_breached: n("active_breached"),
            cancelled: n("cancelled"),
        };
        let rate = v["value"].as_f64();
        let settled = counts.achieved + counts.breached;
        let expected_rate = (settled > 0).then(|| 100.0 * counts.achieved as f64 / settled as f64);
        prop_assert!(
            match (rate, expected_rate) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                (a, b) => a == b,
            },
            "sla value {:?} for {:?}, expected {:?}",
            rate,
            counts,
            expected_rate
        );
        got.insert(key, counts);
    }
    prop_assert_eq!(&got, &want, "sla differs from the reference\n{}", toml);

    let sl =
        l.rt.block_on(metrics::run(&l.engine, &request(Metric::ServiceLevel)))
            .map_err(|e| TestCaseError::fail(format!("service_level failed: {e}\n{toml}")))?;
    let want = case.service_level(ask, tz);
    let mut got = BTreeMap::new();
    for (key, v) in point_keys(&sl, tz) {
        let n = |k: &str| v[k].as_u64().unwrap();
        let (within, answered, abandoned) = (n("within_target"), n("answered"), n("abandoned"));
        let value = v["value"].as_f64().unwrap();
        let expected = 100.0 * within as f64 / (answered + abandoned) as f64;
        prop_assert!((value - expected).abs() < 1e-9, "{} vs {}", value, expected);
        got.insert(key, (within, answered, abandoned));
    }
    prop_assert_eq!(
        &got,
        &want,
        "service_level differs from the reference\n{}",
        toml
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn sla_and_service_level_equal_a_per_row_reference(
        config in config(),
        convs in prop::collection::vec(conversation(), 4..30),
        ask in ask(),
    ) {
        check(&config, &convs, &ask)?;
    }
}

// ---------------------------------------------------------------------------------------
// The reference's own arithmetic, checked by hand, so that agreeing with it means something.

#[test]
fn the_reference_calendar_by_hand() {
    let spec = ConfigSpec {
        report_zone: 0,
        base: 6, // 2026-11-01: New York falls back at 02:00 EDT → 01:00 EST.
        calendars: Vec::new(),
        policies: Vec::new(),
        metrics_calendar: None,
        service_level_target: 60,
    };
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
    let mut week: [Vec<(u32, u32)>; 7] = Default::default();
    week[6] = vec![(0, 180)]; // Sunday 00:00-03:00
    week[0] = vec![(22 * 60, 6 * 60)]; // Monday 22:00-06:00
    week[1] = vec![(8 * 60, 12 * 60), (13 * 60, 18 * 60)]; // Tuesday, split
    let ny = RefCalendar::new(
        &spec,
        &CalendarSpec {
            zone: 2,
            week: week.clone(),
            holidays: vec![],
        },
    );
    // Sunday 00:00-03:00 on the fall-back day holds the repeated hour: 4 h.
    assert_eq!(
        ny.business(
            at("2026-11-01T00:00:00-04:00"),
            at("2026-11-01T12:00:00-05:00")
        ),
        4 * 3600 * MICROS
    );
    // Monday 22:00 → Tuesday 06:00 (8 h), then Tuesday 08:00-12:00, 13:00-18:00.
    // 10 h from Monday 21:00: 8 h overnight, then 2 h from 08:00 → Tuesday 10:00.
    assert_eq!(
        ny.add(at("2026-11-02T21:00:00-05:00"), 10 * 3600 * MICROS),
        at("2026-11-03T10:00:00-05:00")
    );
    // 13 h: 8 + 4 (to 12:00), then 1 h after lunch → 14:00.
    assert_eq!(
        ny.add(at("2026-11-02T21:00:00-05:00"), 13 * 3600 * MICROS),
        at("2026-11-03T14:00:00-05:00")
    );
    // Exactly the morning's end: the earliest instant, 12:00, not 13:00.
    assert_eq!(
        ny.add(at("2026-11-02T21:00:00-05:00"), 12 * 3600 * MICROS),
        at("2026-11-03T12:00:00-05:00")
    );
    // A holiday on Monday drops its overnight range (not Sunday's).
    let holiday = RefCalendar::new(
        &spec,
        &CalendarSpec {
            zone: 2,
            week,
            holidays: vec![4], // 2026-10-29 + 4 days = Monday 2026-11-02
        },
    );
    assert_eq!(
        holiday.business(
            at("2026-11-02T00:00:00-05:00"),
            at("2026-11-03T09:00:00-05:00")
        ),
        3600 * MICROS
    );
    // Spring forward in New York, 2026-03-08 02:00 EST → 03:00 EDT: a range 02:00-02:30
    // lies in the gap (empty), 01:30-03:30 lasts 1 h.
    let spring = ConfigSpec { base: 0, ..spec };
    let mut week: [Vec<(u32, u32)>; 7] = Default::default();
    week[6] = vec![(120, 150), (90, 210)];
    let ny = RefCalendar::new(
        &spring,
        &CalendarSpec {
            zone: 2,
            week,
            holidays: vec![],
        },
    );
    assert_eq!(
        ny.business(
            at("2026-03-08T00:00:00-05:00"),
            at("2026-03-08T12:00:00-04:00")
        ),
        3600 * MICROS
    );
}
