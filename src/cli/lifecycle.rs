//! `supportlake compact` and `supportlake rollup`: the lake's upkeep, for cron when no
//! server runs (the server does both in the background).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ConfigArg, EXIT_OK, LakeArg};
use crate::config::Config;
use crate::lake::compact::{self, CompactOptions, CompactReport};
use crate::lake::{LakeLock, LakePaths};
use crate::query::rollup::{self, RefreshOptions, RefreshReport};

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 90s, 10m, 1h)"))
}

/// Merge the small files of each events partition into right-sized ones.
///
/// A server that writes all day leaves many small files per day (one per flush); queries
/// slow down with the number of files. compact merges runs of neighbouring small files of a
/// partition into files of up to --target-rows rows, sorted by ts.
///
/// Safe at any time: a merged file appears by one rename and hides its inputs from every
/// supportlake reader at that instant; the inputs are deleted by a later run, once the
/// merged file is older than --grace (queries that listed them first can finish). A crash
/// leaves either the inputs or the merged file visible, never both. Another program that
/// globs the files (DuckDB, Spark) may see both during the grace period: point it at the
/// lake when compaction is not running, or dedupe on event_id.
///
/// Takes the lake lock: with `supportlake serve` running, it compacts by itself (see
/// --compact-interval) and this command refuses.
///
/// Examples:
///   supportlake compact --lake ./lake
///   supportlake compact --lake ./lake --grace 0s     # nobody else reads: delete inputs now
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct CompactArgs {
    #[command(flatten)]
    lake: LakeArg,
    /// Files smaller than this (MiB) are merged with their neighbours.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    small_file_mib: u64,
    /// Rows per merged file at most.
    #[arg(long, default_value_t = 2_000_000, value_name = "N")]
    target_rows: u64,
    /// How long replaced files stay for readers that listed them before the merge.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    grace: Duration,
    /// No summary.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run_compact(args: CompactArgs) -> anyhow::Result<u8> {
    let paths = LakePaths::new(&args.lake.lake);
    anyhow::ensure!(
        paths.events().is_dir(),
        "{} has no events table (nothing to compact)",
        paths.root().display()
    );
    let _lock = LakeLock::acquire(&paths, &format!("compact, pid {}", std::process::id()))?;
    let opts = CompactOptions {
        small_file_bytes: args.small_file_mib << 20,
        target_file_rows: args.target_rows,
        grace: args.grace,
        sweep_temps: true,
        partitions: Vec::new(),
    };
    let report = compact::compact_lake(&paths, &opts, SystemTime::now())
        .with_context(|| format!("compaction of {} failed", paths.root().display()))?;
    if !args.quiet {
        print!("{}", render_compact(&report));
    }
    Ok(EXIT_OK)
}

pub fn render_compact(r: &CompactReport) -> String {
    let rows: u64 = r.merges.iter().map(|m| m.rows).sum();
    let inputs: usize = r.merges.iter().map(|m| m.inputs.len()).sum();
    let bytes_in: u64 = r.merges.iter().map(|m| m.bytes_in).sum();
    let bytes_out: u64 = r.merges.iter().map(|m| m.bytes_out).sum();
    let mut s = format!(
        "partitions: {}\nfiles: {} → {}\nmerged: {} files into {} ({} rows, {:.1} MB → {:.1} MB)\n",
        r.partitions_seen,
        r.files_before,
        r.files_after,
        inputs,
        r.merges.len(),
        rows,
        bytes_in as f64 / 1e6,
        bytes_out as f64 / 1e6,
    );
    s.push_str(&format!(
        "replaced files deleted: {}; kept for readers (grace period): {}\n",
        r.deleted.len(),
        r.waiting
    ));
    if r.temps_removed > 0 {
        s.push_str(&format!(
            "temp files of interrupted writes removed: {}\n",
            r.temps_removed
        ));
    }
    s
}

/// Bring the rollup tables up to date with the events (or rebuild them).
///
/// The derived tables conversations, conversation_links, conversation_intervals,
/// conversation_owners, conversation_messages and sla_targets are kept as Parquet under
/// <lake>/<table>/date=YYYY-MM-DD/ (the UTC day each conversation started), and
/// agent_status_intervals the same way by the day each status began; all seven are listed
/// by <lake>/_rollup/state.json. Dashboards, the metrics API
/// and `supportlake metrics` read them: a row per conversation or target instead of every
/// event (over a year of events, metric queries ran 63-337x faster than DuckDB computing
/// them from the raw events; docs/benchmarks.md).
///
/// A refresh recomputes only the conversations that events new since the last refresh can
/// change (late and out-of-order ones included), with the same SQL as the raw path. It
/// runs by itself after `supportlake ingest` and, in `serve`, after every flush; run it by
/// hand after changing business hours or SLA policies (a new configuration rebuilds), or
/// with --rebuild to recompute everything from the events.
///
/// Numbers never depend on rollups being present: when they are missing, behind the events
/// or computed with another configuration, the command line computes from the events.
///
/// Examples:
///   supportlake rollup --lake ./lake --config supportlake.toml
///   supportlake rollup --lake ./lake --config supportlake.toml --rebuild
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct RollupArgs {
    #[command(flatten)]
    lake: LakeArg,
    #[command(flatten)]
    config: ConfigArg,
    /// Recompute every table from the events.
    #[arg(long)]
    rebuild: bool,
    /// How long replaced rollup files stay for readers that opened them.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    grace: Duration,
    /// New events handled per step (bounds memory: steps of 8 M peaked at 4.1 GB on a 51 M-event lake).
    #[arg(long, default_value_t = 8_000_000, value_name = "N")]
    step_events: u64,
    /// No progress bar or summary.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run_rollup(args: RollupArgs) -> anyhow::Result<u8> {
    let paths = LakePaths::new(&args.lake.lake);
    let config = Arc::new(args.config.load()?);
    let _lock = LakeLock::acquire(&paths, &format!("rollup, pid {}", std::process::id()))?;
    let opts = RefreshOptions {
        rebuild: args.rebuild,
        grace: args.grace,
        step_events: args.step_events,
    };
    let report = refresh_with_progress(&paths, config, &opts, args.quiet)?;
    if !args.quiet {
        print!("{}", render_refresh(&report));
    }
    Ok(EXIT_OK)
}

/// Runs a refresh with a progress bar on a terminal.
pub fn refresh_with_progress(
    paths: &LakePaths,
    config: Arc<Config>,
    opts: &RefreshOptions,
    quiet: bool,
) -> anyhow::Result<RefreshReport> {
    let draw = if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(None, draw);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rollup: {pos}/{len} new events [{bar:30}] {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let rt = super::runtime()?;
    let result = rt.block_on(rollup::refresh(
        paths,
        config,
        opts,
        SystemTime::now(),
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    ));
    bar.finish_and_clear();
    result.with_context(|| format!("rollup of {} failed", paths.root().display()))
}

pub fn render_refresh(r: &RefreshReport) -> String {
    if r.new_files == 0 && !r.rebuilt {
        return format!(
            "rollups are up to date ({} replaced files deleted, {:.2} s)\n",
            r.files_deleted,
            r.elapsed.as_secs_f64()
        );
    }
    format!(
        "{}: {} new events in {} files, {} step(s)\n\
         recomputed {} conversations from {} events; {} partitions rewritten ({} files)\n\
         replaced files deleted: {}; took {:.2} s\n",
        if r.rebuilt { "rebuilt" } else { "refreshed" },
        r.new_events,
        r.new_files,
        r.steps,
        r.conversations_recomputed,
        r.events_recomputed,
        r.partitions_rewritten,
        r.files_written,
        r.files_deleted,
        r.elapsed.as_secs_f64()
    )
}
