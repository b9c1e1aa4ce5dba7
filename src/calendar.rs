//! Business-hours calendars: how much *business* time lies between two instants, and when a
//! given amount of business time will have elapsed (SLA due times).
//!
//! # Model
//!
//! A [`Calendar`] is a weekly schedule in one IANA time zone plus a set of holiday dates. Each
//! weekday (Monday to Sunday) lists local time ranges ([`LocalRange`]), written `HH:MM-HH:MM`.
//! The set of instants that are "business time" is the union of all the ranges of all the
//! dates, turned into instants by the rules below. [`Calendar::business_micros`] measures that
//! union inside `[start, end)`; everything is integer microseconds, so results are exact.
//!
//! # Rules
//!
//! 1. **A range belongs to the date of the weekday it is listed under.** `"08:00-12:00"` under
//!    `mon` covers 08:00–12:00 of every Monday.
//! 2. **An end at or before the start means the range runs into the next day.** `"22:00-06:00"`
//!    under `mon` is Monday 22:00 → Tuesday 06:00. `"24:00"` is accepted as an end and means
//!    midnight at the end of the day, so `"08:00-24:00"` is Monday 08:00 → Tuesday 00:00 and
//!    `"00:00-24:00"` is the whole day. (A range whose start equals its end, such as
//!    `"09:00-09:00"`, therefore lasts 24 hours.)
//! 3. **A holiday suppresses every range that starts on that date.** A range that started the
//!    evening before (an overnight shift) still runs into the holiday; a holiday's own overnight
//!    range does not run into the next morning.
//! 4. **Local times become instants through the calendar's time zone.** Write `wall(t)` for the
//!    local clock reading at instant `t`. A local time `L` is read by *all* instants with
//!    `wall(t) == L`:
//!    - exactly one instant: that instant;
//!    - two instants (a fall-back overlap, where clocks repeat an hour): a range **start** takes
//!      the **earlier** one and a range **end** the **later** one, so a range that contains the
//!      repeated hour gets it twice (an 08:00–18:00 shift lasts 11 h if the repeat falls inside
//!      it), and a range that starts and ends inside the repeated hour spans both passes;
//!    - no instant (a spring-forward gap, where clocks skip ahead): both a start and an end map
//!      to the **first instant after the gap**, i.e. the transition itself. A range that starts
//!      in the gap begins when the clocks jump; a range lying wholly inside the gap is empty.
//! 5. **Overlaps are merged.** Ranges that overlap (two ranges on one day, an overnight range
//!    and the next morning's range, or two ranges that only overlap after rule 4) count once.
//!    Hence `0 <= business_micros(a, b) <= b - a`, and
//!    `business_micros(a, b) + business_micros(b, c) == business_micros(a, c)` exactly.
//!
//! Instants are microseconds since the Unix epoch (UTC). Values outside ±2^60 µs (roughly
//! ±36 000 years) are clamped to that window; nothing panics on any `i64`.
//!
//! # Cost
//!
//! Work is proportional to the number of *days* in the span, not its length in seconds, and
//! whole weeks are skipped in O(1) each when they hold no holiday and no UTC-offset change: a
//! week of such a stretch always contributes the same precomputed amount. A span of years
//! therefore costs about as much as its holidays and DST changes. Time-zone offsets come from
//! a table built once per zone (and shared between calendars) from `chrono-tz`; the table is
//! made by sampling the zone every day from 1800 to 2100 and pinning each change to the second.
//! That is exact as long as no zone changes its offset twice within one day: in the tz data
//! bundled with chrono-tz 0.10, scanned every ten minutes across all zones, the closest pair of
//! changes is almost seven days apart (America/Boa_Vista, October 2000), and the test
//! `offset_changes_are_days_apart_in_every_zone` re-checks every zone's table.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;

/// Microseconds in one day.
const DAY: i64 = 86_400_000_000;
/// Microseconds in one week.
const WEEK: i64 = 7 * DAY;
/// Instants are clamped to ±`LIMIT` µs so that day arithmetic never overflows.
const LIMIT: i64 = 1 << 60;

/// One daily opening range in local time, e.g. `08:00-12:00` or `22:00-06:00`.
///
/// `end <= start` means the range runs past midnight into the next day; `end == 00:00`
/// therefore means "until midnight" (written `24:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalRange {
    /// Local opening time on the range's own date.
    pub start: NaiveTime,
    /// Local closing time; at or before `start` means on the following date.
    pub end: NaiveTime,
}

impl LocalRange {
    /// A range from `start` to `end` (see the type docs for overnight ranges).
    pub fn new(start: NaiveTime, end: NaiveTime) -> Self {
        Self { start, end }
    }

    /// `true` when the range runs past midnight (including ranges that end at 24:00).
    pub fn is_overnight(&self) -> bool {
        self.end <= self.start
    }

    /// Offsets of start and end from the owning date's local midnight, in µs.
    /// The end offset lies in `(start, start + 1 day]`.
    fn offsets(&self) -> (i64, i64) {
        let start = time_micros(self.start);
        let mut end = time_micros(self.end);
        if end <= start {
            end += DAY;
        }
        (start, end)
    }
}

fn time_micros(t: NaiveTime) -> i64 {
    i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1_000)
}

/// Error from parsing a [`LocalRange`] out of `"HH:MM-HH:MM"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a time range (HH:MM-HH:MM)")]
pub struct ParseRangeError {
    /// The text that failed to parse.
    pub text: String,
}

impl FromStr for LocalRange {
    type Err = ParseRangeError;

    /// Parses `HH:MM-HH:MM` (two-digit hours and minutes, spaces around `-` tolerated).
    /// `24:00` is accepted only as the end.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || ParseRangeError {
            text: text.to_owned(),
        };
        let (a, b) = text.split_once('-').ok_or_else(fail)?;
        let start = parse_hhmm(a.trim(), false).ok_or_else(fail)?;
        let end = parse_hhmm(b.trim(), true).ok_or_else(fail)?;
        Ok(Self { start, end })
    }
}

/// Strict `HH:MM`; `24:00` (as midnight) only when `allow_24` is set.
fn parse_hhmm(s: &str, allow_24: bool) -> Option<NaiveTime> {
    let bytes = s.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let digits = [bytes[0], bytes[1], bytes[3], bytes[4]];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let hour = u32::from(digits[0] - b'0') * 10 + u32::from(digits[1] - b'0');
    let minute = u32::from(digits[2] - b'0') * 10 + u32::from(digits[3] - b'0');
    if allow_24 && hour == 24 && minute == 0 {
        return Some(NaiveTime::MIN);
    }
    NaiveTime::from_hms_opt(hour, minute, 0)
}

impl fmt::Display for LocalRange {
    /// Writes `HH:MM-HH:MM` (with seconds when present); a midnight end is written `24:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part(f: &mut fmt::Formatter<'_>, t: NaiveTime, midnight_as_24: bool) -> fmt::Result {
            if midnight_as_24 && t == NaiveTime::MIN {
                return f.write_str("24:00");
            }
            write!(f, "{:02}:{:02}", t.hour(), t.minute())?;
            if t.second() != 0 || t.nanosecond() != 0 {
                write!(f, ":{:02}", t.second())?;
            }
            Ok(())
        }
        part(f, self.start, false)?;
        f.write_str("-")?;
        part(f, self.end, true)
    }
}

/// Why a [`Calendar`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The calendar needs a name to be referred to.
    #[error("calendar name is empty")]
    EmptyName,
    /// A range uses a time the calendar cannot represent exactly.
    #[error("calendar {calendar:?}: {weekday} range {index} ({range}): {reason}")]
    InvalidRange {
        /// Calendar name.
        calendar: String,
        /// Weekday the range is listed under.
        weekday: Weekday,
        /// Position of the range in that weekday's list (0-based).
        index: usize,
        /// The offending range.
        range: LocalRange,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A business-hours calendar; see the [module docs](self) for the exact rules.
#[derive(Clone)]
pub struct Calendar {
    name: String,
    tz: Tz,
    week: [Vec<LocalRange>; 7],
    holidays: BTreeSet<NaiveDate>,
    /// Per weekday (Monday first): the day's ranges as µs offsets from its local midnight,
    /// sorted and with overlaps inside the day already merged. Merging within one day is safe
    /// in local time because the local→instant mapping of rule 4 is monotone.
    days: [Vec<(i64, i64)>; 7],
    /// Holidays as day numbers (days since 1970-01-01), sorted.
    holiday_days: Vec<i64>,
    /// Business µs in one week of a stretch without holidays or offset changes.
    week_total: i64,
    /// Every instant is business time: the schedule covers the whole week and there are no
    /// holidays. Such a calendar needs no per-day work at all.
    full_time: bool,
    zone: Arc<Zone>,
}

impl fmt::Debug for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calendar")
            .field("name", &self.name)
            .field("tz", &self.tz)
            .field("week", &self.week)
            .field("holidays", &self.holidays)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.tz == other.tz
            && self.week == other.week
            && self.holidays == other.holidays
    }
}

impl Eq for Calendar {}

/// The outcome of walking business time from an instant.
enum Walk {
    /// The wanted amount was reached at this instant.
    Reached(i64),
    /// The window ended first, after this much business time.
    Exhausted(i64),
}

impl Calendar {
    /// Builds a calendar. `week` lists the ranges of Monday first, Sunday last; an empty list
    /// is a closed day. Ranges are kept as given (order and overlaps included) for display;
    /// overlaps are merged for counting.
    pub fn new(
        name: impl Into<String>,
        tz: Tz,
        week: [Vec<LocalRange>; 7],
        holidays: BTreeSet<NaiveDate>,
    ) -> Result<Self, CalendarError> {
        let name = name.into();
        if name.is_empty() {
            return Err(CalendarError::EmptyName);
        }
        let mut days: [Vec<(i64, i64)>; 7] = Default::default();
        for (weekday_index, ranges) in week.iter().enumerate() {
            for (index, range) in ranges.iter().enumerate() {
                let reason = if range.start.nanosecond() >= 1_000_000_000
                    || range.end.nanosecond() >= 1_000_000_000
                {
                    Some("leap seconds are not supported")
                } else if range.start.nanosecond() % 1_000 != 0
                    || range.end.nanosecond() % 1_000 != 0
                {
                    Some("times must be whole microseconds")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(CalendarError::InvalidRange {
                        calendar: name,
                        weekday: weekday_from_index(weekday_index),
                        index,
                        range: *range,
                        reason,
                    });
                }
            }
            days[weekday_index] = merge_sorted(ranges.iter().map(LocalRange::offsets).collect());
        }
        let week_total = periodic_week_total(&days);
        let holiday_days: Vec<i64> = holidays.iter().map(|d| day_number(*d)).collect();
        Ok(Self {
            full_time: week_total == WEEK && holiday_days.is_empty(),
            name,
            tz,
            week,
            holidays,
            days,
            holiday_days,
            week_total,
            zone: zone_for(tz),
        })
    }

    /// A calendar that is open around the clock, every day, in UTC: its business time equals
    /// calendar time.
    pub fn always(name: impl Into<String>) -> Self {
        let full_day = LocalRange::new(NaiveTime::MIN, NaiveTime::MIN);
        let week: [Vec<LocalRange>; 7] = std::array::from_fn(|_| vec![full_day]);
        let days: [Vec<(i64, i64)>; 7] = std::array::from_fn(|_| vec![(0, DAY)]);
        Self {
            name: name.into(),
            tz: Tz::UTC,
            week,
            holidays: BTreeSet::new(),
            days,
            holiday_days: Vec::new(),
            week_total: WEEK,
            full_time: true,
            zone: Arc::new(Zone::fixed(0)),
        }
    }

    /// The calendar's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time zone its local times are read in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The ranges listed under `weekday`, as given.
    pub fn ranges(&self, weekday: Weekday) -> &[LocalRange] {
        &self.week[weekday.num_days_from_monday() as usize]
    }

    /// The holiday dates.
    pub fn holidays(&self) -> &BTreeSet<NaiveDate> {
        &self.holidays
    }

    /// Business µs in a week without holidays or UTC-offset changes.
    pub fn weekly_business_micros(&self) -> i64 {
        self.week_total
    }

    /// Microseconds of business time in `[start, end)` (UTC µs since the epoch);
    /// 0 if `end <= start`.
    pub fn business_micros(&self, start: i64, end: i64) -> i64 {
        let (start, end) = (clamp(start), clamp(end));
        if end <= start || self.week_total == 0 {
            return 0;
        }
        if self.full_time {
            return end - start;
        }
        match self.walk(start, end, i64::MAX) {
            Walk::Exhausted(n) => n,
            // Unreachable: no window holds i64::MAX µs. The bound is the honest fallback.
            Walk::Reached(_) => end - start,
        }
    }

    /// The earliest instant `t` at which `micros` of business time have elapsed after `start`,
    /// so that `business_micros(start, t) == micros`. Returns `start` when `micros <= 0`, and
    /// `i64::MAX` when that much business time never comes (a calendar with no opening hours,
    /// or a due time beyond the supported range).
    pub fn add_business(&self, start: i64, micros: i64) -> i64 {
        let start = clamp(start);
        if micros <= 0 {
            return start;
        }
        if self.week_total == 0 {
            return i64::MAX;
        }
        if self.full_time {
            return match start.checked_add(micros) {
                Some(t) if t <= LIMIT => t,
                _ => i64::MAX,
            };
        }
        match self.walk(start, LIMIT, micros) {
            Walk::Reached(t) => t,
            Walk::Exhausted(_) => i64::MAX,
        }
    }

    /// Whether instant `t` is business time.
    pub fn is_open(&self, t: i64) -> bool {
        let t = clamp(t);
        // Business time is a union of half-open intervals, so `t` is inside one exactly when
        // the microsecond starting at `t` is counted.
        t < LIMIT && self.business_micros(t, t + 1) == 1
    }

    /// Business time in `[start, end)`, stopping early once `want` µs have been seen.
    /// Whole regular weeks are skipped; everything else goes through [`Self::window`].
    fn walk(&self, start: i64, end: i64, want: i64) -> Walk {
        let mut acc = 0i64;
        let mut pos = start;
        // Skippable weeks keep a few days' distance from both ends so that the pieces before
        // and after them are plain windows whose dates are all looked at.
        let last = self.local_day(end) - 3;
        let mut search = self.local_day(start) + 3;
        loop {
            let week_start = monday_on_or_after(search);
            if week_start + 7 > last {
                break;
            }
            search = week_start + 7;
            let Some((run_end, offset)) = self.regular_run(week_start, last) else {
                continue;
            };
            let run_start_t = week_start * DAY - offset;
            let run_end_t = run_end * DAY - offset;
            if run_start_t < pos || run_end_t > end {
                continue;
            }
            match self.window(pos, run_start_t, want - acc) {
                Walk::Reached(t) => return Walk::Reached(t),
                Walk::Exhausted(n) => acc += n,
            }
            let weeks = (run_end - week_start) / 7;
            let left = want - acc;
            // Skip only weeks that end strictly before the target is reached, so the target
            // itself is found by walking ranges and comes out as the earliest instant.
            let skip = weeks.min((left - 1) / self.week_total);
            acc += skip * self.week_total;
            pos = run_start_t + skip * WEEK;
            search = week_start + 7 * skip;
            if skip < weeks {
                // The target lies inside the next week of the run.
                match self.window(pos, pos + WEEK, want - acc) {
                    Walk::Reached(t) => return Walk::Reached(t),
                    Walk::Exhausted(n) => acc += n,
                }
                pos += WEEK;
                search += 7;
            }
        }
        match self.window(pos, end, want - acc) {
            Walk::Reached(t) => Walk::Reached(t),
            Walk::Exhausted(n) => Walk::Exhausted(acc + n),
        }
    }

    /// The longest run of whole weeks starting on Monday `week_start` (a day number) that ends
    /// by day `last` and in which every week contributes exactly `week_total`: no date from the
    /// Sunday before through the run's last Sunday is a holiday, and the UTC offset is constant
    /// from three days before to three days after the run. Returns the day after the run (a
    /// Monday) and that offset, or `None` if not even one week qualifies.
    fn regular_run(&self, week_start: i64, last: i64) -> Option<(i64, i64)> {
        let zone = &self.zone;
        let start_t = zone.to_instant(week_start * DAY, Edge::Start);
        let i = zone.index_at(start_t - 3 * DAY);
        let offset = zone.spans[i].offset;
        let mut end_day = last;
        if let Some(next) = zone.spans.get(i + 1) {
            // The run's end instant plus three days must come before the next change.
            end_day = end_day.min((next.from + offset - 3 * DAY - 1).div_euclid(DAY));
        }
        let first_holiday = self.holiday_days.partition_point(|&d| d < week_start - 1);
        if let Some(&holiday) = self.holiday_days.get(first_holiday) {
            end_day = end_day.min(holiday);
        }
        let weeks = (end_day - week_start).div_euclid(7);
        (weeks >= 1).then_some((week_start + 7 * weeks, offset))
    }

    /// Business time in `[x, y)`, found by converting and merging the ranges of every date
    /// that can reach into the window; stops as soon as `want` µs have been seen.
    fn window(&self, x: i64, y: i64, want: i64) -> Walk {
        let mut acc = 0i64;
        if y <= x {
            return Walk::Exhausted(0);
        }
        // A date's ranges lie within its own day and the next, and offset changes are under
        // two days, so these margins catch every date whose ranges can touch [x, y).
        let first = self.local_day(x) - 3;
        let last = self.local_day(y) + 1;
        let mut current: Option<(i64, i64)> = None;
        let mut holidays = self.holiday_days[self.holiday_days.partition_point(|&d| d < first)..]
            .iter()
            .peekable();
        let mut cursor = self.zone.cursor(first * DAY);
        'days: for day in first..=last {
            if holidays.next_if(|&&h| h <= day).is_some_and(|&h| h == day) {
                continue;
            }
            let ranges = &self.days[weekday_index(day)];
            if ranges.is_empty() {
                continue;
            }
            let base = day * DAY;
            // A date's ranges lie within two local days; when those are far from any offset
            // change, converting is a subtraction.
            let offset = cursor.steady_offset(base, base + 2 * DAY);
            for &(start_offset, end_offset) in ranges {
                let (s, e) = match offset {
                    Some(offset) => (base + start_offset - offset, base + end_offset - offset),
                    None => (
                        self.zone.to_instant(base + start_offset, Edge::Start),
                        self.zone.to_instant(base + end_offset, Edge::End),
                    ),
                };
                if s >= y {
                    // Starts only grow from here on.
                    break 'days;
                }
                if e <= s {
                    continue;
                }
                current = match current {
                    Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
                    Some(done) => {
                        if let Some(t) = take(done, x, y, want, &mut acc) {
                            return Walk::Reached(t);
                        }
                        Some((s, e))
                    }
                    None => Some((s, e)),
                };
            }
        }
        if let Some(done) = current
            && let Some(t) = take(done, x, y, want, &mut acc)
        {
            return Walk::Reached(t);
        }
        Walk::Exhausted(acc)
    }

    /// The local date (as a day number) of instant `t`.
    fn local_day(&self, t: i64) -> i64 {
        (t + self.zone.offset_at(t)).div_euclid(DAY)
    }
}

/// Adds the part of merged interval `iv` inside `[x, y)` to `acc`; if that reaches `want`,
/// returns the instant where it does.
fn take(iv: (i64, i64), x: i64, y: i64, want: i64, acc: &mut i64) -> Option<i64> {
    let lo = iv.0.max(x);
    let hi = iv.1.min(y);
    if hi <= lo {
        return None;
    }
    let len = hi - lo;
    let left = want - *acc;
    if left <= len {
        return Some(lo + left);
    }
    *acc += len;
    None
}

fn clamp(t: i64) -> i64 {
    t.clamp(-LIMIT, LIMIT)
}

/// Sorts and merges overlapping or touching intervals.
fn merge_sorted(mut intervals: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    intervals.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(intervals.len());
    for (s, e) in intervals {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Measure of one week of the schedule repeated forever, in a zone with a fixed offset:
/// lay the week's ranges out over three consecutive weeks (so overnight Sunday ranges wrap
/// into Monday), merge, and measure the middle week.
fn periodic_week_total(days: &[Vec<(i64, i64)>; 7]) -> i64 {
    let mut all = Vec::new();
    for shift in [-WEEK, 0, WEEK] {
        for (d, ranges) in days.iter().enumerate() {
            let base = shift + d as i64 * DAY;
            all.extend(ranges.iter().map(|&(s, e)| (base + s, base + e)));
        }
    }
    merge_sorted(all)
        .into_iter()
        .map(|(s, e)| (e.min(WEEK) - s.max(0)).max(0))
        .sum()
}

/// Days since 1970-01-01.
fn day_number(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce()) - 719_163
}

/// Monday = 0 … Sunday = 6 for a day number (1970-01-01 was a Thursday).
fn weekday_index(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

fn weekday_from_index(i: usize) -> Weekday {
    match i {
        0 => Weekday::Mon,
        1 => Weekday::Tue,
        2 => Weekday::Wed,
        3 => Weekday::Thu,
        4 => Weekday::Fri,
        5 => Weekday::Sat,
        _ => Weekday::Sun,
    }
}

fn monday_on_or_after(day: i64) -> i64 {
    day + (7 - weekday_index(day) as i64) % 7
}

// ---------------------------------------------------------------------------------------------
// Time-zone offsets as a table of our own, so that conversions follow rule 4 exactly and cost a
// binary search over a few hundred entries with no calendar arithmetic.

#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    /// First instant (µs) with this offset; `i64::MIN` for the first span.
    from: i64,
    /// UTC offset (µs) in force from `from` until the next span.
    offset: i64,
    /// `from + offset`: the first local reading of the span (saturating for the first span).
    local_from: i64,
}

#[derive(Debug)]
struct Zone {
    /// Offset changes in time order; consecutive spans have different offsets.
    spans: Vec<Span>,
}

/// Sampling window for building tables; chrono-tz has no changes outside it.
const SCAN_FROM_SECS: i64 = -5_364_662_400; // 1800-01-01T00:00:00Z
const SCAN_TO_SECS: i64 = 4_133_980_800; // 2101-01-01T00:00:00Z
const SCAN_STEP_SECS: i64 = 86_400;

impl Zone {
    fn fixed(offset: i64) -> Self {
        Self {
            spans: vec![Span {
                from: i64::MIN,
                offset,
                local_from: i64::MIN,
            }],
        }
    }

    /// Samples `tz` daily and pins every change to the second by bisection.
    fn build(tz: Tz) -> Self {
        let offset_secs = |secs: i64| -> Option<i64> {
            let utc = DateTime::from_timestamp(secs, 0)?.naive_utc();
            Some(i64::from(
                tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
            ))
        };
        let Some(mut previous) = offset_secs(SCAN_FROM_SECS) else {
            return Self::fixed(0);
        };
        let mut zone = Self::fixed(previous * 1_000_000);
        let mut before = SCAN_FROM_SECS;
        let mut t = SCAN_FROM_SECS + SCAN_STEP_SECS;
        while t <= SCAN_TO_SECS {
            let Some(now) = offset_secs(t) else { break };
            if now != previous {
                let (mut lo, mut hi) = (before, t);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if offset_secs(mid) == Some(previous) {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                let from = hi * 1_000_000;
                let offset = now * 1_000_000;
                zone.spans.push(Span {
                    from,
                    offset,
                    local_from: from + offset,
                });
                previous = now;
            }
            before = t;
            t += SCAN_STEP_SECS;
        }
        zone
    }

    /// Index of the span in force at instant `t`.
    fn index_at(&self, t: i64) -> usize {
        self.spans
            .partition_point(|s| s.from <= t)
            .saturating_sub(1)
    }

    fn offset_at(&self, t: i64) -> i64 {
        self.spans[self.index_at(t)].offset
    }

    /// Last local reading (exclusive) of span `i`.
    fn local_until(&self, i: usize) -> i64 {
        match self.spans.get(i + 1) {
            Some(next) => next.from + self.spans[i].offset,
            None => i64::MAX,
        }
    }

    /// A cursor for walking forward through local time from reading `local`.
    fn cursor(&self, local: i64) -> Cursor<'_> {
        let i = self
            .spans
            .partition_point(|s| s.local_from <= local)
            .saturating_sub(1);
        Cursor { zone: self, i }
    }

    /// The instant for local reading `local` under rule 4 of the module docs.
    fn to_instant(&self, local: i64, edge: Edge) -> i64 {
        // Spans last far longer than any offset change, so their first local readings are
        // increasing and the candidates for `local` are span `i` and the spans just before it.
        let i = self
            .spans
            .partition_point(|s| s.local_from <= local)
            .saturating_sub(1);
        if local >= self.local_until(i) {
            // Skipped by a spring-forward change: the first instant after the gap.
            return match self.spans.get(i + 1) {
                Some(next) => next.from,
                None => local - self.spans[i].offset,
            };
        }
        let mut j = i;
        if let Edge::Start = edge {
            // Earliest reading: walk back while an earlier span also shows this time.
            while j > 0 && local < self.local_until(j - 1) {
                j -= 1;
            }
        }
        local - self.spans[j].offset
    }
}

/// Walks a zone's spans forward in local time, for windows that only move forward.
struct Cursor<'z> {
    zone: &'z Zone,
    i: usize,
}

impl Cursor<'_> {
    /// The offset that applies to every local reading in `[lo, hi)` if that stretch lies
    /// inside one span's readings and no other span shows any of them (no gap, no repeat);
    /// `None` near an offset change. `lo` must not decrease between calls.
    fn steady_offset(&mut self, lo: i64, hi: i64) -> Option<i64> {
        let spans = &self.zone.spans;
        while spans
            .get(self.i + 1)
            .is_some_and(|next| next.local_from <= lo)
        {
            self.i += 1;
        }
        let i = self.i;
        let clear_before = i == 0 || lo >= self.zone.local_until(i - 1);
        let clear_after = hi <= self.zone.local_until(i)
            && spans.get(i + 1).is_none_or(|next| hi <= next.local_from);
        (clear_before && clear_after).then_some(spans[i].offset)
    }
}

/// The offset table for `tz`, built on first use and shared afterwards (building samples about
/// 110 000 instants, which is worth doing once per zone, not once per calendar).
fn zone_for(tz: Tz) -> Arc<Zone> {
    static TABLES: OnceLock<Mutex<HashMap<Tz, Arc<Zone>>>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| Mutex::new(HashMap::new()));
    // A panic while building cannot leave a half-made entry behind, so a poisoned lock is
    // still sound to use.
    let mut tables = tables.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(
        tables
            .entry(tz)
            .or_insert_with(|| Arc::new(Zone::build(tz))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, LocalResult, NaiveDateTime};
    use chrono_tz::GapInfo;
    use proptest::prelude::*;

    const H: i64 = 3_600_000_000;
    const M: i64 = 60_000_000;

    fn sp() -> Tz {
        chrono_tz::America::Sao_Paulo
    }
    fn ny() -> Tz {
        chrono_tz::America::New_York
    }
    fn lisbon() -> Tz {
        chrono_tz::Europe::Lisbon
    }

    /// UTC instant from an RFC 3339 text.
    fn utc(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("test instant")
            .timestamp_micros()
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
    }

    /// Builds a calendar from `HH:MM-HH:MM` texts, Monday first.
    fn cal(tz: Tz, week: [&[&str]; 7], holidays: &[&str]) -> Calendar {
        let week = week.map(|day| {
            day.iter()
                .map(|r| r.parse::<LocalRange>().expect("test range"))
                .collect()
        });
        Calendar::new("test", tz, week, holidays.iter().map(|d| date(d)).collect())
            .expect("test calendar")
    }

    // ----- an independent reference: chrono-tz conversions, no tables, no week skipping ----

    fn oracle_instant(tz: Tz, local: NaiveDateTime, edge: Edge) -> i64 {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => t.timestamp_micros(),
            LocalResult::Ambiguous(early, late) => match edge {
                Edge::Start => early.timestamp_micros(),
                Edge::End => late.timestamp_micros(),
            },
            LocalResult::None => GapInfo::new(&local, &tz)
                .and_then(|gap| gap.end)
                .expect("gap end")
                .timestamp_micros(),
        }
    }

    fn oracle_intervals(c: &Calendar, a: i64, b: i64) -> Vec<(i64, i64)> {
        let to_date = |t: i64| {
            DateTime::from_timestamp_micros(t)
                .expect("in range")
                .with_timezone(&c.tz)
                .date_naive()
        };
        let mut day = to_date(a) - Duration::days(3);
        let last = to_date(b) + Duration::days(2);
        let mut out = Vec::new();
        while day <= last {
            if !c.holidays.contains(&day) {
                for r in c.ranges(day.weekday()) {
                    let start = day.and_time(r.start);
                    let end_day = if r.is_overnight() {
                        day + Duration::days(1)
                    } else {
                        day
                    };
                    let end = end_day.and_time(r.end);
                    let s = oracle_instant(c.tz, start, Edge::Start);
                    let e = oracle_instant(c.tz, end, Edge::End);
                    if e > s {
                        out.push((s, e));
                    }
                }
            }
            day += Duration::days(1);
        }
        merge_sorted(out)
    }

    fn oracle(c: &Calendar, a: i64, b: i64) -> i64 {
        if b <= a {
            return 0;
        }
        oracle_intervals(c, a, b)
            .into_iter()
            .map(|(s, e)| (e.min(b) - s.max(a)).max(0))
            .sum()
    }

    // ----- parsing and display -------------------------------------------------------------

    #[test]
    fn parses_and_displays_ranges() {
        let r: LocalRange = "08:00-24:00".parse().unwrap();
        assert_eq!(r.start, NaiveTime::from_hms_opt(8, 0, 0).unwrap());
        assert_eq!(r.end, NaiveTime::MIN);
        assert!(r.is_overnight());
        assert_eq!(r.to_string(), "08:00-24:00");
        assert_eq!(
            "22:00 - 06:00".parse::<LocalRange>().unwrap().to_string(),
            "22:00-06:00"
        );
        for bad in [
            "13:00-25:00",
            "24:00-08:00",
            "8:00-12:00",
            "08:00",
            "08:60-09:00",
            "",
            "aa:bb-cc:dd",
        ] {
            let err = bad.parse::<LocalRange>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("{bad:?} is not a time range (HH:MM-HH:MM)")
            );
        }
    }

    #[test]
    fn rejects_bad_calendars() {
        let week: [Vec<LocalRange>; 7] = Default::default();
        assert_eq!(
            Calendar::new("", Tz::UTC, week, BTreeSet::new()).unwrap_err(),
            CalendarError::EmptyName
        );
        let odd = LocalRange::new(
            NaiveTime::from_hms_nano_opt(8, 0, 0, 500).unwrap(),
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
        );
        let mut week: [Vec<LocalRange>; 7] = Default::default();
        week[2].push(odd);
        let err = Calendar::new("x", Tz::UTC, week, BTreeSet::new()).unwrap_err();
        assert!(matches!(
            err,
            CalendarError::InvalidRange {
                weekday: Weekday::Wed,
                index: 0,
                ..
            }
        ));
    }

    // ----- scenarios with hand-worked numbers ---------------------------------------------

    const SPLIT: [&[&str]; 7] = [
        &["08:00-12:00", "13:00-18:00"],
        &["08:00-12:00", "13:00-18:00"],
        &["08:00-12:00", "13:00-18:00"],
        &["08:00-12:00", "13:00-18:00"],
        &["08:00-12:00", "13:00-18:00"],
        &[],
        &[],
    ];

    #[test]
    fn split_shift_across_a_weekend() {
        // Sao Paulo has had no DST since 2019: local = UTC-3 all of 2026.
        let c = cal(sp(), SPLIT, &[]);
        // Fri 2026-03-06 17:00 → Mon 2026-03-09 09:00: Friday 17–18 (1 h), weekend closed,
        // Monday 08–09 (1 h) = 2 h.
        assert_eq!(
            c.business_micros(
                utc("2026-03-06T17:00:00-03:00"),
                utc("2026-03-09T09:00:00-03:00")
            ),
            2 * H
        );
        // Fri 11:30 → 13:30: 11:30–12 (30 min), lunch, 13–13:30 (30 min) = 1 h.
        assert_eq!(
            c.business_micros(
                utc("2026-03-06T11:30:00-03:00"),
                utc("2026-03-06T13:30:00-03:00")
            ),
            H
        );
        // One whole week Mon 00:00 → Mon 00:00: 5 days × 9 h = 45 h.
        assert_eq!(
            c.business_micros(
                utc("2026-03-02T00:00:00-03:00"),
                utc("2026-03-09T00:00:00-03:00")
            ),
            45 * H
        );
        assert_eq!(c.weekly_business_micros(), 45 * H);
        // A 5-minute target opened Friday 17:58 is due Monday 08:03 (2 min Friday + 3 min Monday).
        assert_eq!(
            c.add_business(utc("2026-03-06T17:58:00-03:00"), 5 * M),
            utc("2026-03-09T08:03:00-03:00")
        );
        // Exactly the morning's 4 h from 08:00 ends at 12:00, not at 13:00 after lunch.
        assert_eq!(
            c.add_business(utc("2026-03-09T08:00:00-03:00"), 4 * H),
            utc("2026-03-09T12:00:00-03:00")
        );
        assert!(c.is_open(utc("2026-03-09T08:00:00-03:00")));
        assert!(!c.is_open(utc("2026-03-09T12:00:00-03:00")));
        assert!(!c.is_open(utc("2026-03-07T10:00:00-03:00")));
    }

    #[test]
    fn overnight_across_midnight_and_into_a_holiday() {
        // Every night 22:00–06:00 in UTC; Friday 2026-12-25 is a holiday.
        let nights: [&[&str]; 7] = [&["22:00-06:00"]; 7];
        let c = cal(Tz::UTC, nights, &["2026-12-25"]);
        // Wed 23:00 → Thu 01:00 crosses midnight inside Wednesday's range: 2 h.
        assert_eq!(
            c.business_micros(utc("2026-12-23T23:00:00Z"), utc("2026-12-24T01:00:00Z")),
            2 * H
        );
        // Thu 2026-12-24 00:00 → Sun 2026-12-27 00:00:
        //   Wednesday's range, Thu 00–06        6 h
        //   Thursday's range, Thu 22 → Fri 06   8 h (starts the evening before the holiday)
        //   Friday's range is suppressed        0 h
        //   Saturday's range, Sat 22 → Sun 00   2 h (cut by the window)
        assert_eq!(
            c.business_micros(utc("2026-12-24T00:00:00Z"), utc("2026-12-27T00:00:00Z")),
            16 * H
        );
        // The holiday itself: only the 6 h that Thursday's shift carries into it.
        assert_eq!(
            c.business_micros(utc("2026-12-25T00:00:00Z"), utc("2026-12-26T00:00:00Z")),
            6 * H
        );
        assert!(c.is_open(utc("2026-12-25T05:59:59Z")));
        assert!(!c.is_open(utc("2026-12-25T23:00:00Z")));
        // 9 h from Thu 22:00: 8 h to Fri 06:00, then the next open time is Sat 22:00 → 23:00.
        assert_eq!(
            c.add_business(utc("2026-12-24T22:00:00Z"), 9 * H),
            utc("2026-12-26T23:00:00Z")
        );
    }

    #[test]
    fn overlapping_ranges_count_once() {
        // Monday 22:00–06:00 overlaps Tuesday 05:00–09:00, and Tuesday has two overlapping
        // ranges 08:00–10:00 and 09:00–11:00.
        let week: [&[&str]; 7] = [
            &["22:00-06:00"],
            &["05:00-09:00", "08:00-10:00", "09:00-11:00"],
            &[],
            &[],
            &[],
            &[],
            &[],
        ];
        let c = cal(Tz::UTC, week, &[]);
        // Mon 2026-03-02 22:00 → Tue 11:00 continuously = 13 h, not 8 + 4 + 2 + 2.
        assert_eq!(
            c.business_micros(utc("2026-03-02T00:00:00Z"), utc("2026-03-04T00:00:00Z")),
            13 * H
        );
        assert_eq!(c.weekly_business_micros(), 13 * H);
    }

    #[test]
    fn range_ending_at_24_00() {
        let week: [&[&str]; 7] = [&["08:00-24:00"], &[], &[], &[], &[], &[], &["00:00-24:00"]];
        let c = cal(Tz::UTC, week, &[]);
        // Monday 08:00 → midnight = 16 h; Sunday is a full 24 h day: 40 h a week.
        assert_eq!(c.weekly_business_micros(), 40 * H);
        // Mon 2026-03-02 23:00 → Tue 01:00: only the hour up to midnight.
        assert_eq!(
            c.business_micros(utc("2026-03-02T23:00:00Z"), utc("2026-03-03T01:00:00Z")),
            H
        );
        // Sun 2026-03-01 12:00 → Mon 2026-03-02 09:00: Sunday 12 h + Monday 1 h.
        assert_eq!(
            c.business_micros(utc("2026-03-01T12:00:00Z"), utc("2026-03-02T09:00:00Z")),
            13 * H
        );
    }

    #[test]
    fn sao_paulo_spring_forward_2018() {
        // 2018-11-04 (Sunday) 00:00 -03 jumped to 01:00 -02; the change is 03:00Z.
        let week: [&[&str]; 7] = [&[], &[], &[], &[], &[], &["22:00-02:00"], &["00:00-06:00"]];
        let c = cal(sp(), week, &[]);
        // Saturday 22:00 -03 = 01:00Z → Sunday 02:00 -02 = 04:00Z: 3 h (the clock lost one).
        // Sunday 00:00 does not exist → the change, 03:00Z; 06:00 -02 = 08:00Z: 5 h, merged
        // with Saturday's range into 01:00Z–08:00Z = 7 h.
        let sat = utc("2018-11-03T00:00:00-03:00");
        let mon = utc("2018-11-05T00:00:00-02:00");
        assert_eq!(c.business_micros(sat, mon), 7 * H);
        assert_eq!(c.business_micros(sat, utc("2018-11-04T03:00:00Z")), 2 * H);
        assert!(c.is_open(utc("2018-11-04T03:00:00Z")));
        // Sunday's own range alone (Saturday closed): 5 h.
        let sunday_only = cal(sp(), [&[], &[], &[], &[], &[], &[], &["00:00-06:00"]], &[]);
        assert_eq!(sunday_only.business_micros(sat, mon), 5 * H);
        // A range wholly inside the skipped hour is empty.
        let in_gap = cal(sp(), [&[], &[], &[], &[], &[], &[], &["00:15-00:45"]], &[]);
        assert_eq!(in_gap.business_micros(sat, mon), 0);
        // The same week without DST (2019 onward) for contrast: 4 h + 6 h, merged = 8 h.
        assert_eq!(
            c.business_micros(
                utc("2019-11-02T00:00:00-03:00"),
                utc("2019-11-04T00:00:00-03:00")
            ),
            8 * H
        );
    }

    #[test]
    fn sao_paulo_fall_back_2019() {
        // 2019-02-17 (Sunday) 00:00 -02 went back to 2019-02-16 23:00 -03: Saturday's
        // 23:00–24:00 happened twice; the change is 02:00Z.
        let sat_start = utc("2019-02-16T00:00:00-02:00");
        let sun_end = utc("2019-02-18T00:00:00-03:00");
        // 22:00–02:00 on Saturday: 22:00 -02 = 00:00Z → 02:00 -03 = 05:00Z: 5 h.
        let c = cal(sp(), [&[], &[], &[], &[], &[], &["22:00-02:00"], &[]], &[]);
        assert_eq!(c.business_micros(sat_start, sun_end), 5 * H);
        // 23:00–23:30 on Saturday: start on the first pass (23:00 -02 = 01:00Z), end on the
        // second (23:30 -03 = 02:30Z): 1 h 30 min.
        let c = cal(sp(), [&[], &[], &[], &[], &[], &["23:00-23:30"], &[]], &[]);
        assert_eq!(c.business_micros(sat_start, sun_end), 90 * M);
        // 08:00–24:00 on Saturday: 08:00 -02 = 10:00Z; Sunday 00:00 exists once, after the
        // repeat, at 03:00Z: 17 h.
        let c = cal(sp(), [&[], &[], &[], &[], &[], &["08:00-24:00"], &[]], &[]);
        assert_eq!(c.business_micros(sat_start, sun_end), 17 * H);
        // A 16 h target from Saturday 08:00 lands on the second pass of 23:00 (= 02:00Z).
        assert_eq!(
            c.add_business(utc("2019-02-16T10:00:00Z"), 16 * H),
            utc("2019-02-17T02:00:00Z")
        );
    }

    #[test]
    fn new_york_2026() {
        // 2026-03-08 (Sunday): 02:00 EST → 03:00 EDT at 07:00Z.
        let c = cal(ny(), [&[], &[], &[], &[], &[], &[], &["00:00-06:00"]], &[]);
        // 00:00 EST = 05:00Z → 06:00 EDT = 10:00Z: 5 h.
        assert_eq!(
            c.business_micros(utc("2026-03-07T00:00:00Z"), utc("2026-03-10T00:00:00Z")),
            5 * H
        );
        // 02:30 does not exist: the range starts at the change (07:00Z) and ends at
        // 04:00 EDT = 08:00Z: 1 h.
        let c = cal(ny(), [&[], &[], &[], &[], &[], &[], &["02:30-04:00"]], &[]);
        assert_eq!(
            c.business_micros(utc("2026-03-07T00:00:00Z"), utc("2026-03-10T00:00:00Z")),
            H
        );

        // 2026-11-01 (Sunday): 02:00 EDT → 01:00 EST at 06:00Z, 01:00–02:00 repeats.
        let week_of = |a: &str, b: &str| (utc(a), utc(b));
        let (a, b) = week_of("2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z");
        // 00:00–06:00: 00:00 EDT = 04:00Z → 06:00 EST = 11:00Z: 7 h.
        let c = cal(ny(), [&[], &[], &[], &[], &[], &[], &["00:00-06:00"]], &[]);
        assert_eq!(c.business_micros(a, b), 7 * H);
        // 01:30–01:45: first pass 01:30 EDT = 05:30Z → second pass 01:45 EST = 06:45Z: 1 h 15.
        let c = cal(ny(), [&[], &[], &[], &[], &[], &[], &["01:30-01:45"]], &[]);
        assert_eq!(c.business_micros(a, b), 75 * M);
        // 00:00–01:30 and 01:45–03:00 are apart in local time but overlap as instants:
        // [04:00Z, 06:30Z) ∪ [05:45Z, 08:00Z) = [04:00Z, 08:00Z) = 4 h, not 2.5 h + 2.25 h.
        let c = cal(
            ny(),
            [
                &[],
                &[],
                &[],
                &[],
                &[],
                &[],
                &["00:00-01:30", "01:45-03:00"],
            ],
            &[],
        );
        assert_eq!(c.business_micros(a, b), 4 * H);
        // An ordinary weekday shift the same week is unaffected: Mon 08–18 EST = 10 h.
        let c = cal(ny(), [&["08:00-18:00"], &[], &[], &[], &[], &[], &[]], &[]);
        assert_eq!(c.business_micros(a, utc("2026-11-03T00:00:00Z")), 10 * H);
    }

    #[test]
    fn lisbon_2026() {
        let full = cal(lisbon(), [&["00:00-24:00"]; 7], &[]);
        // 2026-03-29: 01:00 WET → 02:00 WEST, a 23 h day.
        let c = cal(
            lisbon(),
            [&[], &[], &[], &[], &[], &[], &["00:00-24:00"]],
            &[],
        );
        assert_eq!(
            c.business_micros(utc("2026-03-28T00:00:00Z"), utc("2026-03-31T00:00:00Z")),
            23 * H
        );
        // 2026-10-25: 02:00 WEST → 01:00 WET, a 25 h day.
        assert_eq!(
            c.business_micros(utc("2026-10-24T00:00:00Z"), utc("2026-10-27T00:00:00Z")),
            25 * H
        );
        // A 24x7 schedule in Lisbon is still just calendar time.
        assert_eq!(
            full.business_micros(utc("2026-03-01T00:00:00Z"), utc("2026-11-01T00:00:00Z")),
            utc("2026-11-01T00:00:00Z") - utc("2026-03-01T00:00:00Z")
        );
        // 08:00-18:00 on the fall-back Sunday is 10 h (the repeat is at 01:00, outside it).
        let c = cal(
            lisbon(),
            [&[], &[], &[], &[], &[], &[], &["08:00-18:00"]],
            &[],
        );
        assert_eq!(
            c.business_micros(utc("2026-10-24T00:00:00Z"), utc("2026-10-27T00:00:00Z")),
            10 * H
        );
    }

    #[test]
    fn repeated_hour_starting_at_midnight() {
        // Havana, 2024-11-03 (Sunday): 01:00 CDT → 00:00 CST at 05:00Z; 00:00–01:00 repeats.
        let havana = chrono_tz::America::Havana;
        let (a, b) = (utc("2024-11-02T00:00:00Z"), utc("2024-11-05T00:00:00Z"));
        // 00:00–00:30: first pass 00:00 CDT = 04:00Z → second pass 00:30 CST = 05:30Z: 1 h 30.
        let c = cal(
            havana,
            [&[], &[], &[], &[], &[], &[], &["00:00-00:30"]],
            &[],
        );
        assert_eq!(c.business_micros(a, b), 90 * M);
        // Saturday 22:00–24:00 ends at the later midnight (05:00Z): 22:00 CDT = 02:00Z → 3 h.
        let c = cal(
            havana,
            [&[], &[], &[], &[], &[], &["22:00-24:00"], &[]],
            &[],
        );
        assert_eq!(c.business_micros(a, b), 3 * H);
    }

    #[test]
    fn shift_containing_the_repeated_hour_lasts_eleven_hours() {
        // A 00:30–10:30 shift in New York on 2026-11-01 contains 01:00–02:00 twice: 11 h.
        let c = cal(ny(), [&[], &[], &[], &[], &[], &[], &["00:30-10:30"]], &[]);
        assert_eq!(
            c.business_micros(utc("2026-10-31T00:00:00Z"), utc("2026-11-03T00:00:00Z")),
            11 * H
        );
    }

    #[test]
    fn always_is_calendar_time() {
        let c = Calendar::always("24x7");
        let (a, b) = (utc("2020-01-01T00:00:00Z"), utc("2026-06-01T12:34:56.789Z"));
        assert_eq!(c.business_micros(a, b), b - a);
        assert_eq!(c.add_business(a, b - a), b);
        assert!(c.is_open(a));
    }

    #[test]
    fn closed_calendar_never_reaches_a_target() {
        let c = cal(Tz::UTC, [&[]; 7], &[]);
        assert_eq!(c.business_micros(0, WEEK), 0);
        assert_eq!(c.add_business(0, 1), i64::MAX);
        assert_eq!(c.add_business(0, 0), 0);
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let c = cal(sp(), SPLIT, &["2026-12-25"]);
        for (a, b) in [
            (i64::MIN, i64::MAX),
            (i64::MAX - 1, i64::MAX),
            (i64::MIN, i64::MIN + 1),
            (0, i64::MAX),
        ] {
            let n = c.business_micros(a, b);
            assert!(n >= 0);
        }
        assert_eq!(c.add_business(i64::MAX, 1), i64::MAX);
        assert!(c.add_business(i64::MIN, H) > i64::MIN);
        let _ = c.is_open(i64::MAX);
        let _ = c.is_open(i64::MIN);
    }

    #[test]
    fn multi_year_spans_match_the_reference() {
        // Week skipping must not change a single microsecond over long spans with holidays
        // and DST changes.
        let holidays = [
            "2017-12-25",
            "2018-01-01",
            "2018-11-02",
            "2018-11-15",
            "2019-01-01",
            "2019-03-04",
            "2019-12-25",
        ];
        for tz in [sp(), ny(), lisbon(), Tz::UTC] {
            let c = cal(tz, SPLIT, &holidays);
            let (a, b) = (
                utc("2017-06-01T10:17:00Z"),
                utc("2020-02-03T15:00:00.000123Z"),
            );
            assert_eq!(c.business_micros(a, b), oracle(&c, a, b), "{tz}");
            let d = c.business_micros(a, b) - 7;
            let t = c.add_business(a, d);
            assert_eq!(c.business_micros(a, t), d);
            assert_eq!(c.business_micros(a, t - 1), d - 1);
        }
    }

    #[test]
    fn offset_table_matches_chrono_tz() {
        // Every six hours over 1960–2040 and right around each change we found.
        for tz in [
            sp(),
            ny(),
            lisbon(),
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Pacific::Apia,
        ] {
            let zone = zone_for(tz);
            let chrono_offset = |t: i64| {
                let utc = DateTime::from_timestamp_micros(t).unwrap().naive_utc();
                i64::from(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()) * 1_000_000
            };
            let mut t = utc("1960-01-01T00:00:00Z");
            while t < utc("2040-01-01T00:00:00Z") {
                assert_eq!(zone.offset_at(t), chrono_offset(t), "{tz} at {t}");
                t += 6 * H;
            }
            for span in &zone.spans[1..] {
                assert_eq!(
                    zone.offset_at(span.from - 1_000_000),
                    chrono_offset(span.from - 1_000_000)
                );
                assert_eq!(zone.offset_at(span.from), chrono_offset(span.from));
            }
        }
    }

    #[test]
    fn offset_changes_are_days_apart_in_every_zone() {
        // Builds the table of every zone (a few seconds in a debug build), so that a chrono-tz
        // upgrade with closer changes fails here rather than miscounting quietly.
        // Daily sampling can only miss changes that come in pairs within a day; pairs that
        // close would almost certainly show up here as changes less than two days apart.
        for tz in chrono_tz::TZ_VARIANTS {
            let zone = Zone::build(tz);
            for pair in zone.spans[1..].windows(2) {
                assert!(pair[1].from - pair[0].from >= 2 * DAY, "{tz}: {pair:?}");
            }
        }
    }

    // ----- properties ------------------------------------------------------------------------

    fn zones() -> impl Strategy<Value = Tz> {
        prop_oneof![
            Just(Tz::UTC),
            Just(sp()),
            Just(ny()),
            Just(lisbon()),
            Just(chrono_tz::Australia::Lord_Howe),
            Just(chrono_tz::Pacific::Apia),
            Just(chrono_tz::America::Havana),
        ]
    }

    /// A zone and an instant: mostly within days of one of that zone's offset changes (where
    /// the interesting things happen), otherwise anywhere in 2010–2030.
    fn zone_and_instant() -> impl Strategy<Value = (Tz, i64)> {
        let changes: Vec<(Tz, i64)> = vec![
            (sp(), utc("2018-11-04T03:00:00Z")),
            (sp(), utc("2019-02-17T02:00:00Z")),
            (ny(), utc("2026-03-08T07:00:00Z")),
            (ny(), utc("2026-11-01T06:00:00Z")),
            (lisbon(), utc("2026-03-29T01:00:00Z")),
            (lisbon(), utc("2026-10-25T01:00:00Z")),
            // Samoa skipped 2011-12-30 entirely (UTC-10 → UTC+14).
            (chrono_tz::Pacific::Apia, utc("2011-12-30T10:00:00Z")),
            // Cuba falls back from 01:00 to 00:00, so the repeated hour starts at midnight.
            (chrono_tz::America::Havana, utc("2024-11-03T05:00:00Z")),
            (chrono_tz::America::Havana, utc("2024-03-10T05:00:00Z")),
            // Lord Howe moves its clocks by half an hour.
            (chrono_tz::Australia::Lord_Howe, utc("2026-04-04T15:00:00Z")),
            (chrono_tz::Australia::Lord_Howe, utc("2026-10-03T15:30:00Z")),
        ];
        prop_oneof![
            3 => (proptest::sample::select(changes), -4 * DAY..DAY).prop_map(|((tz, t), d)| (tz, t + d)),
            1 => (zones(), utc("2010-01-01T00:00:00Z")..utc("2030-01-01T00:00:00Z")),
        ]
    }

    fn local_range() -> impl Strategy<Value = LocalRange> {
        // Quarter hours make overlaps and exact hits on range edges likely; half the starts
        // fall between 00:00 and 03:00, where clocks change.
        let quarter = |q: u32| NaiveTime::from_hms_opt(q / 4, (q % 4) * 15, 0).unwrap();
        (prop_oneof![0u32..12, 0u32..96], 0u32..96)
            .prop_map(move |(s, e)| LocalRange::new(quarter(s), quarter(e)))
    }

    fn week() -> impl Strategy<Value = [Vec<LocalRange>; 7]> {
        proptest::array::uniform7(proptest::collection::vec(local_range(), 0..3))
    }

    /// A calendar whose holidays sit near `base`, plus `base` itself.
    fn calendar_near() -> impl Strategy<Value = (Calendar, i64)> {
        (
            zone_and_instant(),
            week(),
            proptest::collection::vec(-3i64..40, 0..5),
        )
            .prop_map(|((tz, base), week, holiday_offsets)| {
                let base_day = DateTime::from_timestamp_micros(base)
                    .unwrap()
                    .with_timezone(&tz)
                    .date_naive();
                let holidays = holiday_offsets
                    .iter()
                    .map(|&d| base_day + Duration::days(d))
                    .collect();
                (Calendar::new("p", tz, week, holidays).unwrap(), base)
            })
    }

    /// An offset from four days before to 40 days after, sometimes in whole quarter hours
    /// (hitting range edges).
    fn span_offset() -> impl Strategy<Value = i64> {
        prop_oneof![
            -4 * DAY..40 * DAY,
            (-4 * 96i64..40 * 96).prop_map(|q| q * 15 * M)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn matches_reference((c, base) in calendar_near(), x in span_offset(), y in span_offset()) {
            let (a, b) = (base + x.min(y), base + x.max(y));
            prop_assert_eq!(c.business_micros(a, b), oracle(&c, a, b));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn additive((c, base) in calendar_near(), x in span_offset(), y in span_offset(), z in span_offset()) {
            let mut v = [base + x, base + y, base + z];
            v.sort_unstable();
            let [a, b, d] = v;
            prop_assert_eq!(c.business_micros(a, b) + c.business_micros(b, d), c.business_micros(a, d));
        }

        #[test]
        fn bounded((c, base) in calendar_near(), x in span_offset(), y in span_offset()) {
            let (a, b) = (base + x, base + y);
            let n = c.business_micros(a, b);
            prop_assert!(n >= 0);
            prop_assert!(n <= (b - a).max(0));
            if b <= a {
                prop_assert_eq!(n, 0);
            }
        }

        #[test]
        fn monotone_in_end((c, base) in calendar_near(), x in span_offset(), y in span_offset()) {
            let (e1, e2) = (base + x.min(y), base + x.max(y));
            prop_assert!(c.business_micros(base, e1) <= c.business_micros(base, e2));
        }

        #[test]
        fn add_business_inverts(
            (c, base) in calendar_near(),
            raw in prop_oneof![0..3 * DAY, 0..60 * DAY, (0i64..200).prop_map(|q| q * 15 * M)],
            weeks in 0i64..8,
            nudge in -1i64..=1,
            whole_weeks in any::<bool>(),
        ) {
            // Whole multiples of the weekly amount (±1 µs) probe the week-skipping edge, where
            // the earliest instant is the end of a range and not the following Monday.
            let d = if whole_weeks { (weeks * c.weekly_business_micros() + nudge).max(0) } else { raw };
            let t = c.add_business(base, d);
            if c.weekly_business_micros() == 0 && d > 0 {
                prop_assert_eq!(t, i64::MAX);
            } else {
                prop_assert_eq!(c.business_micros(base, t), d);
                if d > 0 {
                    // Earliest: one microsecond less is not enough.
                    prop_assert_eq!(c.business_micros(base, t - 1), d - 1);
                } else {
                    prop_assert_eq!(t, base);
                }
            }
        }

        #[test]
        fn holiday_span_is_closed((tz, base) in zone_and_instant(), week in week()) {
            let local = DateTime::from_timestamp_micros(base).unwrap().with_timezone(&tz).date_naive();
            let holiday = local;
            let c = Calendar::new("h", tz, week, BTreeSet::from([holiday])).unwrap();
            let from = oracle_instant(tz, holiday.and_time(NaiveTime::MIN), Edge::Start);
            let to = oracle_instant(tz, (holiday + Duration::days(1)).and_time(NaiveTime::MIN), Edge::Start);
            let eve = holiday - Duration::days(1);
            let reaches_in = c.ranges(eve.weekday()).iter().any(LocalRange::is_overnight);
            let n = c.business_micros(from, to);
            if reaches_in {
                // Only the eve's overnight ranges can count, and only up to their end.
                let carried = c.ranges(eve.weekday()).iter().filter(|r| r.is_overnight())
                    .map(|r| oracle_instant(tz, holiday.and_time(r.end), Edge::End) - from)
                    .max().unwrap_or(0);
                prop_assert!(n <= carried.max(0));
            } else {
                prop_assert_eq!(n, 0);
            }
        }

        #[test]
        fn always_equals_calendar_time(a in -LIMIT..LIMIT, len in 0..LIMIT) {
            let c = Calendar::always("24x7");
            let b = a.saturating_add(len).min(LIMIT);
            prop_assert_eq!(c.business_micros(a, b), b - a);
            prop_assert_eq!(c.add_business(a, b - a), b);
        }

        #[test]
        fn is_open_matches_reference((c, base) in calendar_near(), x in span_offset()) {
            let t = base + x;
            let inside = oracle_intervals(&c, t, t + 1).iter().any(|&(s, e)| s <= t && t < e);
            prop_assert_eq!(c.is_open(t), inside);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn long_spans_match_reference((c, base) in calendar_near(), len in 0..3 * 366 * DAY) {
            prop_assert_eq!(c.business_micros(base, base + len), oracle(&c, base, base + len));
        }
    }
}
