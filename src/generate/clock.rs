//! Time arithmetic on whole Unix seconds.
//!
//! The simulation keeps its clock as `i64` seconds so that every timestamp it writes is
//! exact. Formatting millions of instants through chrono's format machinery would be a
//! large share of the run time, so the civil-date conversion is done by hand here and
//! chrono is only used where a time zone is involved.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use chrono_tz::Tz;

pub(crate) const DAY: i64 = 86_400;
pub(crate) const HOUR: i64 = 3_600;
pub(crate) const MINUTE: i64 = 60;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// UTC day number of an instant; output files are cut on it.
pub(crate) fn utc_day(ts: i64) -> i64 {
    ts.div_euclid(DAY)
}

fn push_2(buf: &mut String, v: u32) {
    buf.push(char::from(b'0' + (v / 10 % 10) as u8));
    buf.push(char::from(b'0' + (v % 10) as u8));
}

fn push_date(buf: &mut String, day: i64) {
    let (y, m, d) = civil_from_days(day);
    // Years are validated to 2000..2099 before a run starts.
    let y = y.clamp(0, 9999) as u32;
    push_2(buf, y / 100);
    push_2(buf, y % 100);
    buf.push('-');
    push_2(buf, m);
    buf.push('-');
    push_2(buf, d);
}

/// "YYYY-MM-DD" of a UTC day number.
pub(crate) fn date_string(day: i64) -> String {
    let mut s = String::with_capacity(10);
    push_date(&mut s, day);
    s
}

fn push_time(buf: &mut String, ts: i64) {
    push_date(buf, utc_day(ts));
    let sod = ts.rem_euclid(DAY);
    buf.push('T');
    push_2(buf, (sod / HOUR) as u32);
    buf.push(':');
    push_2(buf, (sod % HOUR / MINUTE) as u32);
    buf.push(':');
    push_2(buf, (sod % MINUTE) as u32);
}

/// "2026-11-02T12:00:00Z": the agent log's and the truth files' form.
pub(crate) fn rfc3339(ts: i64) -> String {
    let mut s = String::with_capacity(20);
    push_time(&mut s, ts);
    s.push('Z');
    s
}

/// "2026-11-02T12:00:00.000Z": the form Chatwoot uses for message times.
pub(crate) fn rfc3339_millis(ts: i64) -> String {
    let mut s = String::with_capacity(24);
    push_time(&mut s, ts);
    s.push_str(".000Z");
    s
}

/// Seconds east of UTC that `tz` observes at instant `ts`.
pub(crate) fn utc_offset(tz: Tz, ts: i64) -> i64 {
    match chrono::DateTime::from_timestamp(ts, 0) {
        Some(dt) => i64::from(
            tz.offset_from_utc_datetime(&dt.naive_utc())
                .fix()
                .local_minus_utc(),
        ),
        None => 0,
    }
}

/// Local weekday (0 = Monday) and hour at instant `ts`.
pub(crate) fn local_weekday_hour(tz: Tz, ts: i64) -> (u32, u32) {
    let local = ts + utc_offset(tz, ts);
    // 1970-01-01 was a Thursday, weekday 3 when Monday is 0.
    let wd = (utc_day(local) + 3).rem_euclid(7) as u32;
    let hour = (local.rem_euclid(DAY) / HOUR) as u32;
    (wd, hour)
}

/// The UTC instant of a local wall-clock time. A time skipped by a DST jump is moved
/// forward past the gap (as a person's alarm would ring); a repeated one takes the first.
pub(crate) fn local_to_utc(tz: Tz, date: NaiveDate, secs_of_day: u32) -> Option<i64> {
    let mut secs = secs_of_day;
    // Gaps are at most a few hours; try a bounded number of steps.
    for _ in 0..6 {
        let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)?;
        if let Some(dt) = tz
            .from_local_datetime(&NaiveDateTime::new(date, time))
            .earliest()
        {
            return Some(dt.timestamp());
        }
        secs = secs.checked_add(1800).filter(|s| *s < 86_400)?;
    }
    None
}

/// Monday = 0 weekday of a calendar date.
pub(crate) fn weekday_of(date: NaiveDate) -> u32 {
    use chrono::Datelike;
    date.weekday().num_days_from_monday()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_chrono() {
        for ts in [
            0i64,
            951_782_400,
            1_762_084_800,
            1_762_084_799,
            4_102_444_799,
            1_709_164_800,
        ] {
            let dt = chrono::DateTime::from_timestamp(ts, 0)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            assert_eq!(Some(rfc3339(ts)), dt);
        }
        assert_eq!(rfc3339_millis(1_762_084_800), "2025-11-02T12:00:00.000Z");
        assert_eq!(date_string(utc_day(1_762_084_800)), "2025-11-02");
    }

    #[test]
    fn local_clock_in_sao_paulo() {
        let tz: Tz = chrono_tz::America::Sao_Paulo;
        let date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap_or_default();
        let t = local_to_utc(tz, date, 9 * 3600);
        assert_eq!(t.map(rfc3339).as_deref(), Some("2026-11-02T12:00:00Z"));
        let t = t.unwrap_or_default();
        assert_eq!(local_weekday_hour(tz, t), (0, 9));
        assert_eq!(weekday_of(date), 0);
    }

    #[test]
    fn dst_gap_moves_forward() {
        // New York skips 02:00-03:00 on 2026-03-08.
        let tz: Tz = chrono_tz::America::New_York;
        let date = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap_or_default();
        let t = local_to_utc(tz, date, 2 * 3600 + 15 * 60);
        assert!(t.is_some());
    }
}
