//! Reporting intervals: hours, days, weeks (Monday first) and months in a time zone.
//!
//! A **bucket** is one interval `[start, end)`; its start is the local start of the hour,
//! day, week or month, as an instant. Days in a time zone with daylight saving are 23 or 25
//! hours long on the change days, and a bucket follows the local clock, not a fixed 86 400
//! seconds. When a local midnight does not exist (some zones move clocks at 00:00), the day
//! starts at the first instant after the gap.
//!
//! Partitions in the lake stay UTC days; only reporting uses local time.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown interval {0:?}: use hour, day, week or month")]
pub struct IntervalError(pub String);

impl FromStr for Interval {
    type Err = IntervalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" => Ok(Interval::Hour),
            "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            "month" => Ok(Interval::Month),
            other => Err(IntervalError(other.to_owned())),
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        })
    }
}

const MICROS: i64 = 1_000_000;

fn to_utc(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The first instant at or after a local time: local times in a DST gap do not exist and
/// map to the end of the gap; repeated local times take their first occurrence.
pub fn local_to_instant(tz: Tz, local: NaiveDateTime) -> i64 {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.timestamp_micros(),
        chrono::LocalResult::Ambiguous(a, _) => a.timestamp_micros(),
        chrono::LocalResult::None => {
            // Inside a DST gap. Find the first valid local minute after it, then the exact
            // instant the offset changed (gaps last at most a few hours).
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    let t = t.timestamp_micros();
                    return transition_between(tz, t - 6 * 3600 * MICROS, t);
                }
            }
            local.and_utc().timestamp_micros()
        }
    }
}

use chrono::Offset;

/// The exact instant in `(lo, hi]` where the zone's offset changes (binary search on
/// seconds); `hi` if it does not change.
fn transition_between(tz: Tz, lo: i64, hi: i64) -> i64 {
    let offset = |m: i64| {
        tz.offset_from_utc_datetime(&to_utc(m).naive_utc())
            .fix()
            .local_minus_utc()
    };
    let target = offset(hi);
    let (mut lo, mut hi) = (lo.div_euclid(MICROS), hi.div_euclid(MICROS));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset(mid * MICROS) == target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi * MICROS
}

impl Interval {
    /// The start of the bucket that holds `micros`.
    pub fn start_of(self, micros: i64, tz: Tz) -> i64 {
        let local = to_utc(micros).with_timezone(&tz);
        match self {
            Interval::Hour => {
                // Truncate in local time with the offset in force at `micros`: offsets change
                // on whole hours almost everywhere, so the local hour maps back unambiguously.
                let offset = i64::from(local.offset().fix().local_minus_utc()) * MICROS;
                let hour = 3600 * MICROS;
                (micros + offset).div_euclid(hour) * hour - offset
            }
            Interval::Day => day_start(tz, local.date_naive()),
            Interval::Week => {
                let d = local.date_naive();
                let monday = d - Duration::days(i64::from(d.weekday().num_days_from_monday()));
                day_start(tz, monday)
            }
            Interval::Month => {
                let d = local.date_naive();
                day_start(tz, d.with_day(1).unwrap_or(d))
            }
        }
    }

    /// The start of the bucket after the one that starts at `start`.
    pub fn next(self, start: i64, tz: Tz) -> i64 {
        match self {
            Interval::Hour => {
                let candidate = start + 3600 * MICROS;
                // A 30-minute DST shift can put the next local hour boundary elsewhere.
                self.start_of(candidate, tz).max(start + 1)
            }
            Interval::Day => {
                let d = to_utc(start).with_timezone(&tz).date_naive();
                day_start(tz, d + Duration::days(1))
            }
            Interval::Week => {
                let d = to_utc(start).with_timezone(&tz).date_naive();
                day_start(tz, d + Duration::days(7))
            }
            Interval::Month => {
                let d = to_utc(start).with_timezone(&tz).date_naive();
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                day_start(tz, NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d))
            }
        }
    }

    /// Bucket starts covering `[from, to)`: the bucket holding `from`, then each next one
    /// that starts before `to`. Bounded to 100 000 buckets.
    pub fn starts(self, from: i64, to: i64, tz: Tz) -> Vec<i64> {
        let mut out = Vec::new();
        if to <= from {
            return out;
        }
        let mut s = self.start_of(from, tz);
        while s < to && out.len() < 100_000 {
            out.push(s);
            s = self.next(s, tz);
        }
        out
    }
}

/// The first instant of a local date.
pub fn day_start(tz: Tz, d: NaiveDate) -> i64 {
    local_to_instant(tz, d.and_time(NaiveTime::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<DateTime<Utc>>().unwrap().timestamp_micros()
    }

    fn show(m: i64) -> String {
        to_utc(m).format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    #[test]
    fn days_follow_the_local_clock() {
        let sp = chrono_tz::America::Sao_Paulo;
        // 2026-11-02 01:30 UTC is 2026-11-01 22:30 in São Paulo (UTC−3).
        let t = at("2026-11-02T01:30:00Z");
        assert_eq!(show(Interval::Day.start_of(t, sp)), "2026-11-01T03:00:00Z");
        assert_eq!(
            show(Interval::Day.next(Interval::Day.start_of(t, sp), sp)),
            "2026-11-02T03:00:00Z"
        );
        // Weeks start on Monday: Sunday 2026-11-01 belongs to the week of Monday 2026-10-26.
        assert_eq!(show(Interval::Week.start_of(t, sp)), "2026-10-26T03:00:00Z");
        assert_eq!(
            show(Interval::Month.start_of(t, sp)),
            "2026-11-01T03:00:00Z"
        );
        assert_eq!(
            show(Interval::Month.next(Interval::Month.start_of(t, sp), sp)),
            "2026-12-01T03:00:00Z"
        );
    }

    #[test]
    fn dst_days_are_23_and_25_hours_long() {
        let ny = chrono_tz::America::New_York;
        // 2026-03-08: clocks jump 02:00 → 03:00 (EST → EDT): a 23-hour day.
        let d = Interval::Day.start_of(at("2026-03-08T12:00:00Z"), ny);
        assert_eq!(show(d), "2026-03-08T05:00:00Z");
        assert_eq!(Interval::Day.next(d, ny) - d, 23 * 3600 * MICROS);
        // 2026-11-01: clocks fall back 02:00 → 01:00: a 25-hour day.
        let d = Interval::Day.start_of(at("2026-11-01T12:00:00Z"), ny);
        assert_eq!(Interval::Day.next(d, ny) - d, 25 * 3600 * MICROS);
        // The hours of that day: 25 of them.
        assert_eq!(
            Interval::Hour
                .starts(d, Interval::Day.next(d, ny), ny)
                .len(),
            25
        );
    }

    #[test]
    fn a_missing_midnight_starts_the_day_at_the_end_of_the_gap() {
        // São Paulo, 2018-11-04: clocks jumped from 00:00 to 01:00 (UTC−3 → UTC−2).
        let sp = chrono_tz::America::Sao_Paulo;
        let d = Interval::Day.start_of(at("2018-11-04T15:00:00Z"), sp);
        assert_eq!(show(d), "2018-11-04T03:00:00Z"); // 01:00 local, UTC−2
        assert_eq!(Interval::Day.next(d, sp) - d, 23 * 3600 * MICROS);
    }

    #[test]
    fn starts_cover_the_range() {
        let utc = chrono_tz::UTC;
        let s = Interval::Day.starts(at("2026-11-01T10:00:00Z"), at("2026-11-04T00:00:00Z"), utc);
        let shown: Vec<String> = s.into_iter().map(show).collect();
        assert_eq!(
            shown,
            [
                "2026-11-01T00:00:00Z",
                "2026-11-02T00:00:00Z",
                "2026-11-03T00:00:00Z"
            ]
        );
        assert!(Interval::Day.starts(5, 5, utc).is_empty());
        assert_eq!("week".parse::<Interval>(), Ok(Interval::Week));
        assert!("fortnight".parse::<Interval>().is_err());
    }
}
