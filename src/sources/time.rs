//! Timestamps as sources write them, to microseconds since the Unix epoch (UTC).
//!
//! Parsing is hand-written because it sits on the bulk-ingest hot path (one or two per
//! event); it is checked against chrono by a property test.

/// Earliest instant accepted from a source: 2000-01-01T00:00:00Z. Anything before is a
/// clock or unit error (a timestamp in milliseconds read as seconds lands in 1970 or 55 000).
pub const MIN_MICROS: i64 = 946_684_800_000_000;
/// First instant no longer accepted: 2100-01-01T00:00:00Z.
pub const MAX_MICROS: i64 = 4_102_444_800_000_000;

const MICROS_PER_SECOND: i64 = 1_000_000;

fn check_range(micros: i64, shown: &str) -> Result<i64, String> {
    if (MIN_MICROS..MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(format!(
            "timestamp {shown} is outside 2000-01-01 … 2099-12-31"
        ))
    }
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(b: &[u8], from: usize, n: usize) -> Option<u32> {
    let part = b.get(from..from + n)?;
    part.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Parses an RFC 3339 instant (`2026-11-02T12:00:00Z`, `2026-11-02T09:00:00.250-03:00`;
/// `t`/space for `T` and `z` for `Z` accepted). Fractions beyond microseconds are truncated.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let bad = || {
        let shown: String = s.chars().take(40).collect();
        format!("{shown:?} is not an RFC 3339 timestamp (like 2026-11-02T12:00:00Z)")
    };
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(bad());
    }
    let year = digits(b, 0, 4).ok_or_else(bad)?;
    let month = digits(b, 5, 2).ok_or_else(bad)?;
    let day = digits(b, 8, 2).ok_or_else(bad)?;
    let hour = digits(b, 11, 2).ok_or_else(bad)?;
    let minute = digits(b, 14, 2).ok_or_else(bad)?;
    let second = digits(b, 17, 2).ok_or_else(bad)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let year = i64::from(year);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("{s:?} is not a date on the calendar"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!("{s:?} is not a time of day"));
    }
    let mut i = 19;
    let mut micros_frac: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros_frac = micros_frac * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return Err(bad());
        }
        for _ in n..6 {
            micros_frac *= 10;
        }
    }
    let offset_seconds: i64 = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2).ok_or_else(bad)?;
            let om = digits(b, i + 4, 2).ok_or_else(bad)?;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' { off } else { -off }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset_seconds;
    check_range(secs * MICROS_PER_SECOND + micros_frac, s)
}

/// Converts Unix seconds (possibly fractional, as Chatwoot's `updated_at`) to microseconds.
pub fn from_unix_seconds(seconds: f64) -> Result<i64, String> {
    let micros = (seconds * 1e6).round();
    if !micros.is_finite() || micros < MIN_MICROS as f64 || micros >= MAX_MICROS as f64 {
        return Err(format!(
            "Unix time {seconds} is outside 2000-01-01 … 2099-12-31 (seconds expected)"
        ));
    }
    Ok(micros as i64)
}

/// The UTC civil date of an instant, as days since 1970-01-01.
pub fn utc_day(micros: i64) -> i32 {
    // Within MIN..MAX the result fits an i32 with room to spare.
    micros.div_euclid(86_400 * MICROS_PER_SECOND) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDate};
    use proptest::prelude::*;

    #[test]
    fn parses_common_forms() {
        let t = |s: &str| parse_rfc3339(s).unwrap();
        assert_eq!(t("2026-11-02T12:00:00Z"), 1_793_620_800_000_000);
        assert_eq!(t("2026-11-02T09:00:00-03:00"), 1_793_620_800_000_000);
        assert_eq!(t("2026-11-02 12:00:00.5z"), 1_793_620_800_500_000);
        assert_eq!(
            t("2026-11-02T12:00:00.123456789+00:00"),
            1_793_620_800_123_456
        );
    }

    #[test]
    fn rejects_impossible_and_out_of_range_instants() {
        for s in [
            "2026-02-30T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-11-02T24:00:00Z",
            "2026-11-02T12:00:00",
            "2026-11-02T12:00:00+0300",
            "2026-11-02T12:00:00.Z",
            "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            "yesterday",
            "",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s} should be rejected");
        }
        assert!(
            from_unix_seconds(1_793_620_800_000.0).is_err(),
            "milliseconds"
        );
        assert!(from_unix_seconds(-5.0).is_err());
        assert_eq!(
            from_unix_seconds(1_793_620_800.25).unwrap(),
            1_793_620_800_250_000
        );
    }

    #[test]
    fn leap_day_exists_only_in_leap_years() {
        assert!(parse_rfc3339("2028-02-29T00:00:00Z").is_ok());
        assert!(parse_rfc3339("2027-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_ok());
    }

    proptest! {
        #[test]
        fn agrees_with_chrono(secs in MIN_MICROS / 1_000_000..MAX_MICROS / 1_000_000 - 86_400,
                              micros in 0i64..1_000_000,
                              offset_min in -(23 * 60 + 59)..(23 * 60 + 59)) {
            let utc = DateTime::from_timestamp(secs, (micros * 1000) as u32).unwrap();
            let tz = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
            let text = utc.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
            prop_assert_eq!(parse_rfc3339(&text).unwrap(), utc.timestamp_micros(), "{}", text);
        }

        #[test]
        fn civil_days_agree_with_chrono(days in -100_000i64..100_000) {
            let d = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(days);
            use chrono::Datelike;
            prop_assert_eq!(days_from_civil(i64::from(d.year()), d.month(), d.day()), days);
        }
    }
}
