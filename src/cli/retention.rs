//! `supportlake retention`: drop date partitions and quarantine files past their period.

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};

use super::{ConfigArg, EXIT_OK, LakeArg};
use crate::lake::retention::{self, Expired, RetentionPlan};
use crate::lake::{LakeError, LakeLock, LakePaths};

/// Drop date partitions and quarantined input older than the config's [retention].
///
/// Tables: events and the derived tables (conversations, sla_targets,
/// conversation_intervals); `rejected` is the quarantine. A partition date=D of a table with period P is dropped when D is before today (UTC)
/// minus P: with events = "730d", on 2026-11-20 everything before 2024-11-21 goes. A
/// quarantine file goes by the date in its name. The write-ahead log and the erasure audit
/// log are never dropped.
///
/// Each partition disappears for readers in one step (a rename out of its table, to
/// <lake>/_expired) and is then deleted; an interrupted run is finished by the next one.
///
/// `supportlake serve` runs this itself at start and then daily, with the [retention] of its
/// --config; this command is for a lake no server runs on, and for --dry-run (which reads
/// only, and works while a server runs).
#[derive(Debug, clap::Args)]
#[command(after_help = "Config:\n  \
[retention]\n  \
events = \"730d\"\n  \
conversations = \"730d\"\n  \
sla_targets = \"730d\"\n  \
conversation_intervals = \"730d\"\n  \
rejected = \"90d\"\n\n\
Examples:\n  \
supportlake retention --lake ./lake --config config.toml --dry-run\n  \
supportlake retention --lake ./lake --config config.toml\n  \
supportlake retention --lake ./lake --config config.toml --dry-run --now 2027-01-01T00:00:00Z")]
pub struct Args {
    #[command(flatten)]
    lake: LakeArg,

    #[command(flatten)]
    config: ConfigArg,

    /// Only list what would be dropped.
    #[arg(long)]
    dry_run: bool,

    /// Act as if it were this time (RFC 3339, or a date: YYYY-MM-DD) instead of now: to see
    /// what a date will drop, or to test.
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    now: Option<DateTime<Utc>>,

    /// How to print the outcome: for people, or one JSON object for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{s:?} is neither an RFC 3339 time nor a date (YYYY-MM-DD)"))
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let config = args.config.load()?;
    let rules = &config.retention;
    let paths = LakePaths::new(&args.lake.lake);
    if rules.is_empty() {
        let msg = match &args.config.config {
            Some(p) => format!("{} has no [retention] section", p.display()),
            None => "no --config given".to_owned(),
        };
        anyhow::bail!(
            "{msg}: nothing has a retention period, so nothing expires (see docs/config.md)"
        );
    }
    let today = args.now.unwrap_or_else(Utc::now).date_naive();
    let _lock = if args.dry_run {
        None
    } else {
        match LakeLock::acquire(&paths, &format!("retention, pid {}", std::process::id())) {
            Ok(l) => Some(l),
            Err(LakeError::Locked { root, holder }) => anyhow::bail!(
                "the lake {} is in use by {holder}; a running server applies [retention] itself, \
                 at start and daily (--dry-run works meanwhile)",
                root.display()
            ),
            Err(e) => return Err(e.into()),
        }
    };
    let plan = retention::plan(&paths, rules, today)
        .with_context(|| format!("reading {}", paths.root().display()))?;
    let dropped = if args.dry_run {
        Vec::new()
    } else {
        retention::apply(&paths, &plan).context("dropping expired partitions")?
    };
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "today": plan.today,
                "dry_run": args.dry_run,
                "cutoffs": plan.cutoffs,
                "expired": plan.expired,
                "dropped": dropped,
            }))?
        ),
        Format::Text => print!("{}", render(&plan, args.dry_run, &dropped)),
    }
    Ok(EXIT_OK)
}

fn render(plan: &RetentionPlan, dry_run: bool, dropped: &[Expired]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "retention on {} (UTC)", plan.today);
    for c in &plan.cutoffs {
        let _ = writeln!(
            s,
            "  {:<24} keeps {} day(s): from {}",
            c.table, c.days, c.keep_from
        );
    }
    if plan.expired.is_empty() {
        let _ = writeln!(s, "nothing has expired");
        return s;
    }
    let _ = writeln!(
        s,
        "{}",
        if dry_run {
            "would drop (dry run, nothing changed):"
        } else {
            "dropped:"
        }
    );
    let _ = writeln!(
        s,
        "  {:<24} {:<10} {:>6} {:>10} {:>12}  path",
        "table", "date", "files", "rows", "bytes"
    );
    let shown: &[Expired] = if dry_run { &plan.expired } else { dropped };
    for e in shown {
        let _ = writeln!(
            s,
            "  {:<24} {:<10} {:>6} {:>10} {:>12}  {}",
            e.table, e.date, e.files, e.rows, e.bytes, e.path
        );
    }
    let (files, rows, bytes) = shown.iter().fold((0, 0, 0), |(f, r, b), e| {
        (f + e.files, r + e.rows, b + e.bytes)
    });
    let _ = writeln!(
        s,
        "total: {} partition(s) or file(s), {files} file(s), {rows} row(s), {bytes} byte(s)",
        shown.len()
    );
    s
}
