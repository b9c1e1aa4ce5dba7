//! `supportlake report`: render an SLA report, write it to a file or send it by email.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use chrono::Utc;

use super::serve::secret;
use super::{ConfigArg, EXIT_OK, LakeArg};
use crate::lake::LakePaths;
use crate::query::Engine;
use crate::report::mail::{self, SmtpSettings};
use crate::report::{Period, Report, spec};

/// Render an SLA report and send it by email, or write it to a file.
///
/// The report: headline numbers (TME, TMA, service level, SLA achievement, breaches, CSAT,
/// open at period end) against the previous period, a per-team table, charts, and a CSV of
/// the breached SLA targets.
///
/// NAME is a [[reports]] entry of the config, or the built-in "sla" report (yesterday, every
/// team). Numbers are the same as /api/v1/metrics for the same period.
///
/// SMTP (for --send): SUPPORTLAKE_SMTP_URL or [smtp] url in the config —
///   smtp://127.0.0.1:2525            plain (a local relay)
///   smtp://mail.example.com?tls=required    STARTTLS
///   smtps://user:pass@mail.example.com      implicit TLS with authentication
/// SUPPORTLAKE_SMTP_USER / SUPPORTLAKE_SMTP_PASSWORD (or _FILE) keep credentials out of the
/// URL. The sender is SUPPORTLAKE_SMTP_FROM, [smtp] from, or supportlake@localhost.
///
/// Exit status: 0 when rendered (and sent); 1 when anything failed — cron can rely on it.
///
/// Examples:
///   supportlake report sla --lake ./lake --period yesterday --out report.html
///   SUPPORTLAKE_SMTP_URL=smtp://127.0.0.1:2525 \
///     supportlake report sla --lake ./lake --period last-week --send --to ops@example.com
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The report: a [[reports]] name, or "sla".
    pub name: String,
    #[command(flatten)]
    pub lake: LakeArg,
    #[command(flatten)]
    pub config: ConfigArg,
    /// yesterday, last-week, last-month or FROM/TO (dates or RFC 3339 instants); default:
    /// the report's own period.
    #[arg(long, value_name = "PERIOD")]
    pub period: Option<String>,
    /// Write the report as one HTML file (charts embedded) instead of printing its text.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Send it by email (see SMTP above).
    #[arg(long)]
    pub send: bool,
    /// A recipient (repeatable); default: the report's recipients.
    #[arg(long = "to", value_name = "ADDR")]
    pub to: Vec<String>,
    /// Compute as if it were this instant (RFC 3339); for re-running a past report.
    #[arg(long, value_name = "INSTANT")]
    pub now: Option<String>,
}

pub fn smtp_settings(config: &crate::config::Config) -> anyhow::Result<Option<SmtpSettings>> {
    let table = config.smtp.as_ref();
    let from_table = |k: &str| {
        table
            .and_then(|t| t.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let url = match secret("SUPPORTLAKE_SMTP_URL")? {
        Some(u) => u,
        None => match from_table("url") {
            Some(u) => u,
            None => return Ok(None),
        },
    };
    let from = std::env::var("SUPPORTLAKE_SMTP_FROM")
        .ok()
        .or_else(|| from_table("from"))
        .unwrap_or_else(|| "supportlake <supportlake@localhost>".into());
    let mut s = SmtpSettings::new(&url, &from)?;
    if let (Some(u), Some(p)) = (
        secret("SUPPORTLAKE_SMTP_USER")?,
        secret("SUPPORTLAKE_SMTP_PASSWORD")?,
    ) {
        s.credentials = Some((u, p));
    }
    Ok(Some(s))
}

/// The report as one self-contained HTML file: the inline images become data: URIs.
pub fn standalone_html(report: &Report) -> String {
    let mut html = report.html.clone();
    for c in &report.charts {
        let uri = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&c.png)
        );
        html = html.replace(&format!("cid:{}", c.cid), &uri);
    }
    html
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let config = Arc::new(args.config.load()?);
    let mut spec = spec::find(&config, &args.name)?;
    if let Some(p) = &args.period {
        spec.period = Period::parse(p, spec.tz).map_err(anyhow::Error::msg)?;
    }
    let smtp = if args.send {
        Some(smtp_settings(&config)?.context(
            "--send needs an SMTP server: set SUPPORTLAKE_SMTP_URL (e.g. smtp://127.0.0.1:2525) or [smtp] url in the config",
        )?)
    } else {
        None
    };
    let recipients = if args.to.is_empty() {
        spec.recipients.clone()
    } else {
        args.to.clone()
    };
    if args.send && recipients.is_empty() {
        anyhow::bail!(
            "--send needs recipients: --to ADDR, or recipients in the report's [[reports]] entry"
        );
    }
    let now = match &args.now {
        Some(t) => crate::metrics::parse_time(t, spec.tz)?,
        None => Utc::now(),
    };
    let (from, to) = spec.period.resolve(now, spec.tz);
    let paths = LakePaths::new(args.lake.lake.clone());
    let rt = super::runtime()?;
    rt.block_on(async {
        let engine = Engine::open(&paths, Arc::clone(&config)).await?;
        let report = crate::report::build(&engine, &spec, from, to, now, None).await?;
        if let Some(out) = &args.out {
            std::fs::write(out, standalone_html(&report))
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("wrote {}", out.display());
        }
        if let Some(smtp) = &smtp {
            let message = mail::message(&report, &smtp.from, &recipients)?;
            mail::send(smtp, message).await?;
            eprintln!(
                "sent \"{}\" to {} ({} breached targets in the CSV)",
                report.subject,
                recipients.join(", "),
                report.breached_rows
            );
        }
        if args.out.is_none() && smtp.is_none() {
            println!("{}\n\n{}", report.subject, report.text);
        }
        anyhow::Ok(())
    })?;
    Ok(EXIT_OK)
}
