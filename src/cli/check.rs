//! `supportlake check`: reads every data file and log segment of a lake and says what is
//! damaged.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{EXIT_OK, EXIT_REJECTS, LakeArg};
use crate::lake::damage::{self, Checker};
use crate::lake::{LakeLock, LakePaths, wal};

/// Read every file of a lake and list what is damaged.
///
/// Reads every row of every events data file and of every rollup table file, and every
/// frame of the server's write-ahead log (_wal/), and lists what cannot be read and why.
/// Files moved aside earlier (_damaged/) are listed too. Reads only; changes nothing
/// unless --move-damaged is given.
///
/// What to do with what it finds (docs/reliability.md):
///   events file    --move-damaged moves it to <lake>/_damaged/ (same path, with a .why
///                  note) so nothing else stumbles on it; its rows are gone from the
///                  table, and a source that delivers them again is accepted again.
///                  `supportlake serve` does this by itself when it meets one.
///   rollup file    `supportlake rollup --rebuild` recomputes the rollup tables.
///   log segment    the server reads around the damage at its next start and keeps the
///                  damaged bytes in _wal/damaged/.
///
/// --move-damaged takes the lake lock, so it refuses while `supportlake serve` runs.
///
/// Exit code: 0 nothing damaged, 2 something is damaged (listed), 1 the check could not
/// run.
///
/// Examples:
///   supportlake check --lake ./lake
///   supportlake check --lake ./lake --move-damaged
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub lake: LakeArg,
    /// Move damaged events files aside to <lake>/_damaged/.
    #[arg(long)]
    pub move_damaged: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let paths = LakePaths::new(&args.lake.lake);
    anyhow::ensure!(
        paths.root().is_dir(),
        "{} is not a lake folder",
        paths.root().display()
    );
    let lock = if args.move_damaged {
        Some(LakeLock::acquire(
            &paths,
            &format!("check, pid {}", std::process::id()),
        )?)
    } else {
        None
    };

    // Every file a reader of the lake reads.
    let mut events: Vec<PathBuf> = Vec::new();
    for (_, dir) in crate::lake::compact::event_partitions(&paths)? {
        events.extend(crate::lake::writer::data_files(&dir)?);
    }
    let derived: Vec<PathBuf> = match crate::lake::rollup_state::RollupState::load(&paths)? {
        Some(state) => state
            .live_files()
            .into_iter()
            .map(|f| paths.root().join(f))
            .filter(|p| p.is_file())
            .collect(),
        None => Vec::new(),
    };
    let files: Vec<PathBuf> = events.iter().chain(&derived).cloned().collect();

    let draw = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(files.len() as u64), draw);
    bar.set_style(
        ProgressStyle::with_template("{spinner} reading file {pos}/{len} [{bar:30}] {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let found = Checker::default().find_with_progress(&files, &|| bar.inc(1));
    bar.finish_and_clear();

    let rel = |p: &std::path::Path| {
        p.strip_prefix(paths.root())
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let mut damaged = 0usize;
    for (p, why) in &found {
        damaged += 1;
        let kind = if events.contains(p) {
            "events"
        } else {
            "rollup"
        };
        println!("damaged  {kind:<7} {}: {why}", rel(p));
        if args.move_damaged && kind == "events" {
            let moved = damage::quarantine(&paths, p, why, std::time::SystemTime::now())
                .with_context(|| format!("moving {} aside", p.display()))?;
            println!("         moved to {}", rel(&moved.path));
        }
    }

    // The log: what a replay would skip.
    let mut segments = 0usize;
    for (_, seg) in wal::segments(&paths.wal())? {
        segments += 1;
        let read = wal::read_segment(&seg)?;
        for d in &read.damage {
            if d.may_hold_acknowledged() {
                damaged += 1;
            }
            println!("log      {}: {d}", rel(&seg));
        }
    }
    let kept = paths.wal().join(wal::DAMAGED_DIR);
    if let Ok(rd) = std::fs::read_dir(&kept) {
        for e in rd.flatten() {
            println!(
                "kept     {} (damaged log bytes kept for inspection)",
                rel(&e.path())
            );
        }
    }
    for d in damage::list(&paths) {
        println!("aside    {} (was {}): {}", rel(&d.path), d.was, d.why);
    }
    drop(lock);
    println!(
        "read {} events files, {} rollup files, {} log segments: {}",
        events.len(),
        derived.len(),
        segments,
        if damaged == 0 {
            "nothing damaged".to_owned()
        } else {
            format!("{damaged} damaged")
        }
    );
    Ok(if damaged == 0 { EXIT_OK } else { EXIT_REJECTS })
}
