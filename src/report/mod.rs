//! SLA reports: what `supportlake report` renders and `serve` sends on a schedule.
//!
//! A report is a period's headline numbers beside the period before (TME, TMA, service
//! level, SLA achievement, breaches, CSAT, open at the end), a per-team table, PNG charts and
//! a CSV of the breached SLA targets. Every number comes from the same metric queries as the
//! API (`metrics::run` with the same request), so a report and `/api/v1/metrics` agree.
//!
//! - [`spec`]: the `[[reports]]` entries of the config (and the built-in `sla`), periods.
//! - [`render`]: the numbers, the email's HTML and text, the charts and the CSV.
//! - [`mail`]: SMTP (lettre): URL, TLS modes, auth, timeouts, retries.
//! - [`schedule`]: cron times in a time zone, the state that prevents double sends.

pub mod mail;
pub mod render;
pub mod schedule;
pub mod spec;

pub use render::{Report, build};
pub use spec::{Language, Period, ReportSpec};

/// Why a report could not be made or sent.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Config(String),
    #[error("computing the report: {0}")]
    Metrics(#[from] crate::metrics::MetricError),
    #[error("drawing a chart: {0}")]
    Chart(#[from] crate::charts::ChartError),
    #[error("{0}")]
    Mail(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
