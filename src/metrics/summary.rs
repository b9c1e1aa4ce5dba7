//! One number for a whole range, and how people read it: the headline numbers of the
//! dashboards and of the report emails.

use super::MetricResult;
use super::rows::Detail;

/// One number for a whole range: the count-weighted mean of a duration, the share of a
/// percentage metric recomputed from its counts, the latest sample of the backlog.
pub fn headline(r: &MetricResult) -> Option<f64> {
    let points = r.series.iter().flat_map(|s| s.points.iter());
    let (mut num, mut den) = (0.0, 0.0);
    let mut last_open: Option<f64> = None;
    for p in points {
        match &p.detail {
            Detail::Duration { count, .. } => {
                if let Some(v) = p.value {
                    num += v * *count as f64;
                    den += *count as f64;
                }
            }
            Detail::Sla {
                achieved, breached, ..
            } => {
                num += *achieved as f64;
                den += (*achieved + *breached) as f64;
            }
            Detail::Csat {
                count, satisfied, ..
            } => {
                num += *satisfied as f64;
                den += *count as f64;
            }
            Detail::ServiceLevel {
                count,
                within_target,
                ..
            } => {
                num += *within_target as f64;
                den += *count as f64;
            }
            Detail::Open { .. } => {
                // Every group's last bucket is sampled at the same instant: add them up.
                last_open = Some(last_open.unwrap_or(0.0));
            }
            _ => {}
        }
    }
    if last_open.is_some() {
        let total: f64 = r
            .series
            .iter()
            .filter_map(|s| s.points.last().and_then(|p| p.value))
            .sum();
        return Some(total);
    }
    if den == 0.0 {
        return None;
    }
    Some(match r.unit {
        "percent" => 100.0 * num / den,
        _ => num / den,
    })
}

/// A headline value as people read it.
pub fn show_value(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else {
        return "—".into();
    };
    match unit {
        "seconds" if v >= 3600.0 => format!("{:.1} h", v / 3600.0),
        "seconds" if v >= 60.0 => format!("{:.1} min", v / 60.0),
        "seconds" => format!("{v:.0} s"),
        "percent" => format!("{v:.1}%"),
        _ => format!("{v:.0}"),
    }
}

/// "+12.0% vs previous period" (or the difference in points for percentages).
pub fn show_change(now: Option<f64>, before: Option<f64>, unit: &str) -> String {
    match (now, before) {
        (Some(a), Some(b)) if unit == "percent" => format!("{:+.1} pts vs previous period", a - b),
        (Some(a), Some(b)) if b != 0.0 => {
            format!("{:+.1}% vs previous period", 100.0 * (a - b) / b)
        }
        _ => "no previous period to compare".into(),
    }
}
