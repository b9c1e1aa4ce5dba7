//! `supportlake ingest`: files or stdin into the lake.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ConfigArg, EXIT_OK, EXIT_REJECTS, LakeArg};
use crate::ingest::{self, IngestOptions, Input, Progress, Receipt};
use crate::lake::LakePaths;
use crate::pseudonym::{KEY_ENV, KEY_FILE_ENV, PseudonymKey};
use crate::sources::SourceFormat;

/// Decode source records and store them in the lake.
///
/// Reads WhatsApp Cloud API webhook bodies, Chatwoot webhook bodies or agent event log
/// lines (docs/agent-log.md) — as JSON Lines, one record per line, or as one pretty-printed
/// JSON document (an object, or an array of records) — decodes them into canonical events,
/// pseudonymizes customer identities and appends the new events to the lake. Events already
/// in the lake are skipped, so re-running an ingest, or ingesting overlapping files, adds
/// nothing twice.
///
/// Bad records never stop the run: each is reported with its line, field and reason, copied
/// to <lake>/_rejected/, and the rest is stored.
///
/// Exit status: 0 when every record was accepted, 2 when some were rejected (the others are
/// stored), 1 on a fatal error.
///
/// The pseudonymization key comes from SUPPORTLAKE_PSEUDONYM_KEY, or from the file named by
/// SUPPORTLAKE_PSEUDONYM_KEY_FILE (make one with `supportlake keygen`).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
supportlake ingest --lake ./lake events-2026-11-02.jsonl\n  \
supportlake ingest --lake ./lake --source whatsapp webhooks/*.jsonl\n  \
zcat agent-log.jsonl.gz | supportlake ingest --lake ./lake --source agent-log -")]
pub struct Args {
    #[command(flatten)]
    lake: LakeArg,

    /// The input format; `auto` tells each file's format from its first records.
    #[arg(long, value_enum, default_value_t = SourceArg::Auto)]
    source: SourceArg,

    /// Lines longer than this many bytes are rejected (without being held in memory).
    #[arg(long, default_value_t = ingest::MAX_LINE_BYTES, value_name = "BYTES")]
    max_line_bytes: usize,

    /// How to print the receipt: for people, or as one JSON object for scripts.
    #[arg(long, value_enum, default_value_t = ReceiptFormat::Text)]
    receipt: ReceiptFormat,

    /// Decoder threads (default: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,

    /// Do not draw a progress bar.
    #[arg(long, short)]
    quiet: bool,

    #[command(flatten)]
    config: ConfigArg,

    /// Do not refresh the rollup tables afterwards (run `supportlake rollup` later; until
    /// then metrics are computed from the events).
    #[arg(long)]
    no_rollup: bool,

    /// Input files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SourceArg {
    Auto,
    Whatsapp,
    Chatwoot,
    AgentLog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReceiptFormat {
    Text,
    Json,
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, total: Option<u64>) {
        if let Some(t) = total {
            self.0.set_length(t);
            self.0.set_style(
                ProgressStyle::with_template(
                    "{spinner} ingesting {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec}, eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        } else {
            self.0.set_style(
                ProgressStyle::with_template("{spinner} ingesting {bytes} ({bytes_per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
        }
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let key = PseudonymKey::from_sources(
        std::env::var(KEY_ENV).ok().as_deref(),
        std::env::var(KEY_FILE_ENV).ok().as_deref(),
    )?;
    let inputs: Vec<Input> = args
        .files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                Input::Stdin
            } else {
                Input::Path(f.clone())
            }
        })
        .collect();
    for i in &inputs {
        if let Input::Path(p) = i {
            anyhow::ensure!(p.is_file(), "{} is not a readable file", p.display());
        }
    }
    let mut opts = IngestOptions {
        format: match args.source {
            SourceArg::Auto => None,
            SourceArg::Whatsapp => Some(SourceFormat::WhatsApp),
            SourceArg::Chatwoot => Some(SourceFormat::Chatwoot),
            SourceArg::AgentLog => Some(SourceFormat::AgentLog),
        },
        max_line_bytes: args.max_line_bytes,
        ..IngestOptions::default()
    };
    if let Some(w) = args.workers {
        opts.workers = w.max(1);
    }
    let paths = LakePaths::new(&args.lake.lake);
    // Read before the work starts: a bad config file should not surface after the ingest.
    let config = if args.no_rollup {
        None
    } else {
        Some(Arc::new(args.config.load()?))
    };
    let now = Utc::now();
    let run_id = format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), std::process::id());
    let draw = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = Bar(ProgressBar::with_draw_target(None, draw));
    let receipt = ingest::ingest(
        &paths,
        &inputs,
        &opts,
        &key,
        Arc::new(Utc::now),
        &run_id,
        &bar,
    )
    .with_context(|| format!("ingest into {} failed", args.lake.lake.display()))?;
    match args.receipt {
        ReceiptFormat::Json => println!("{}", serde_json::to_string_pretty(&receipt)?),
        ReceiptFormat::Text => print!("{}", render_receipt(&receipt)),
    }
    if let Some(config) = config {
        let _lock = crate::lake::LakeLock::acquire(
            &paths,
            &format!("ingest (rollup), pid {}", std::process::id()),
        )?;
        let report = super::lifecycle::refresh_with_progress(
            &paths,
            config,
            &crate::query::rollup::RefreshOptions::default(),
            args.quiet,
        )?;
        if !args.quiet {
            eprint!("{}", super::lifecycle::render_refresh(&report));
        }
    }
    Ok(if receipt.total_rejects() > 0 {
        EXIT_REJECTS
    } else {
        EXIT_OK
    })
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn render_receipt(r: &Receipt) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let secs = r.elapsed_ms as f64 / 1000.0;
    let rate = if secs > 0.0 {
        r.events as f64 / secs
    } else {
        0.0
    };
    let _ = writeln!(
        s,
        "ingested {} input(s), {:.1} MB in {secs:.2} s ({} events/s)",
        r.inputs,
        r.bytes_read as f64 / 1e6,
        thousands(rate as u64)
    );
    let line = |s: &mut String, label: &str, n: u64, extra: &str| {
        let _ = writeln!(s, "  {label:<18}{:>12}{extra}", thousands(n));
    };
    line(&mut s, "records", r.records, "");
    line(&mut s, "events decoded", r.events, "");
    line(&mut s, "stored (new)", r.accepted, "");
    line(
        &mut s,
        "duplicates",
        r.duplicates,
        "  (already stored; kept once)",
    );
    let file = r
        .rejected_file
        .as_ref()
        .map(|p| format!("  -> {}", p.display()))
        .unwrap_or_default();
    line(&mut s, "rejected records", r.rejected_records, &file);
    if !r.rejected.is_empty() {
        let by: Vec<String> = r.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(s, "  {:<18}{}", "", by.join(", "));
    }
    let skipped: u64 = r.skipped.values().sum();
    let detail = if r.skipped.is_empty() {
        String::new()
    } else {
        let by: Vec<String> = r.skipped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("  ({})", by.join(", "))
    };
    line(&mut s, "skipped", skipped, &detail);
    let _ = writeln!(
        s,
        "  {:<18}{:>12}  in {} partition(s)",
        "files written",
        thousands(r.files_written),
        r.partitions.len()
    );
    if !r.examples.is_empty() {
        let _ = writeln!(s, "first rejects:");
        for e in &r.examples {
            let _ = writeln!(s, "  {e}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
