//! `supportlake generate`: synthetic source files from a simulated contact center.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::EXIT_OK;
use crate::generate::{self, GenerateOptions};

/// Simulate a WhatsApp contact center and write its source files.
///
/// A seeded discrete-event simulation: arrivals by weekday and hour, bot triage (some
/// conversations solved by the bot), three teams of agents on shifts with pauses, queues
/// that grow at peaks, lognormal handle times, transfers, reopenings, customers who give up
/// when their patience runs out, priorities, and CSAT that falls with the wait.
///
/// It writes what real sources send — WhatsApp Cloud API webhook bodies, agent event log
/// lines and Chatwoot webhook bodies (one inbox) — plus the simulation's own truth
/// (truth/conversations.csv) to check every metric against. The same options always write
/// the same bytes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
supportlake generate --out ./gen --days 7 --conversations-per-day 300\n  \
supportlake generate --out ./big --days 30 --conversations-per-day 16000   # ~10 M events\n  \
supportlake ingest --lake ./lake ./gen/*/*.jsonl")]
pub struct Args {
    /// Output folder (created; refused if it holds anything but an earlier run's files).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Number of days to simulate.
    #[arg(long, default_value_t = 7)]
    days: u32,

    /// Mean conversations per day (shaped by weekday and hour of day).
    #[arg(long, default_value_t = 300, value_name = "M")]
    conversations_per_day: u32,

    /// Random seed: the same seed and options give the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// First simulated day (local date); default: so that the last day is yesterday.
    #[arg(long, value_name = "YYYY-MM-DD")]
    start: Option<NaiveDate>,

    /// The contact center's time zone (drives arrivals and shifts).
    #[arg(long, default_value = "America/Sao_Paulo", value_name = "ZONE")]
    tz: chrono_tz::Tz,

    /// Do not draw a progress bar.
    /// Number conversations from N+1 (Chatwoot message ids move up with them), so that runs
    /// over consecutive periods, each with its own seed, make one history without reusing
    /// an id: e.g. --id-offset 1000000 for the second month, 2000000 for the third.
    #[arg(long, default_value_t = 0, value_name = "N")]
    id_offset: u32,

    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let start = args
        .start
        .unwrap_or_else(|| default_start(args.days, args.tz));
    let opts = GenerateOptions {
        out: args.out.clone(),
        start,
        days: args.days,
        conversations_per_day: args.conversations_per_day,
        seed: args.seed,
        timezone: args.tz,
        id_offset: args.id_offset,
    };
    let draw = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(u64::from(args.days)), draw);
    bar.set_style(
        ProgressStyle::with_template("{spinner} simulating day {pos}/{len} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let summary = generate::generate(&opts, &mut |p| {
        bar.set_position(u64::from(p.day));
        bar.set_message(format!("{} events", p.events));
    })
    .with_context(|| format!("generating into {} failed", args.out.display()))?;
    bar.finish_and_clear();
    println!(
        "generated {} conversations, {} events ({:.1} MB) from {} for {} day(s) into {}",
        summary.conversations,
        summary.events,
        summary.bytes as f64 / 1e6,
        start,
        args.days,
        args.out.display()
    );
    Ok(EXIT_OK)
}

/// The first day such that the simulation ends yesterday (local time): dashboards opened
/// today then show the whole range.
pub(crate) fn default_start(days: u32, tz: chrono_tz::Tz) -> NaiveDate {
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    today - chrono::Duration::days(i64::from(days.max(1)))
}
