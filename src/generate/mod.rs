//! Synthetic source data: a seeded discrete-event simulation of a WhatsApp and web-chat
//! contact center that writes the files supportlake ingests (agent event log, WhatsApp
//! Cloud API webhooks, Chatwoot webhooks) together with the simulation's own truth.
//!
//! Output layout under `GenerateOptions::out`:
//!
//! ```text
//! agent-log/YYYY-MM-DD.jsonl   agent event log lines (docs/agent-log.md)
//! whatsapp/YYYY-MM-DD.jsonl    one WhatsApp webhook POST body per line
//! chatwoot/YYYY-MM-DD.jsonl    one Chatwoot webhook POST body per line
//! truth/conversations.csv      one row per conversation
//! truth/agent_status.csv       agent status intervals (agent-log agents only)
//! manifest.json                options and counts
//! ```
//!
//! Dates are the UTC dates of the lines' timestamps; each file is in timestamp order.
//! The same options always give byte-identical files.

mod agent_log;
mod chatwoot;
mod clock;
mod fake;
mod model;
mod output;
mod rng;
mod sim;
mod truth;
mod whatsapp;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use chrono_tz::Tz;

use self::output::FileStat;

/// What to simulate and where to write it.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Output directory; created if missing. It may only hold files of an earlier run.
    pub out: PathBuf,
    /// First simulated day, a local date in `timezone`.
    pub start: NaiveDate,
    /// Number of simulated days, at least 1.
    pub days: u32,
    /// Mean conversations per day over a week (the weekday and hour profile shapes
    /// them), at least 1.
    pub conversations_per_day: u32,
    pub seed: u64,
    /// The contact center's local time zone: it drives arrivals and shifts.
    pub timezone: Tz,
    /// Conversation numbers (and Chatwoot message ids) start this far up, so that several
    /// runs over consecutive periods make one history without reusing an id.
    pub id_offset: u32,
}

/// Reported once per simulated day and at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Days simulated so far.
    pub day: u32,
    pub days: u32,
    /// Events written so far.
    pub events: u64,
}

/// Aggregate figures of a run, from the truth; they make calibration visible without
/// reading the CSV.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Calibration {
    pub conversations: u64,
    pub bot_resolved: u64,
    /// Conversations handed to a human queue.
    pub queued: u64,
    pub answered: u64,
    pub lost: u64,
    pub abandoned_after_assignment: u64,
    pub open: u64,
    pub transferred: u64,
    pub reopened: u64,
    /// Sum and count of queued_at → first_response_at, in seconds.
    pub first_response_wait_s: u64,
    pub first_responses: u64,
    /// Sum and count of queued_at → assigned_at, in seconds.
    pub assignment_wait_s: u64,
    pub assignments: u64,
    pub csat_sum: u64,
    pub csat_count: u64,
}

impl Calibration {
    fn add(&mut self, row: &truth::ConvRow<'_>) {
        self.conversations += 1;
        match row.outcome {
            "bot_resolved" => self.bot_resolved += 1,
            "answered" => self.answered += 1,
            "lost" => self.lost += 1,
            "abandoned_after_assignment" => self.abandoned_after_assignment += 1,
            _ => self.open += 1,
        }
        if let Some(q) = row.queued_at {
            self.queued += 1;
            if let Some(f) = row.first_response_at {
                self.first_response_wait_s += (f - q).max(0) as u64;
                self.first_responses += 1;
            }
            if let Some(a) = row.assigned_at {
                self.assignment_wait_s += (a - q).max(0) as u64;
                self.assignments += 1;
            }
        }
        self.transferred += u64::from(row.transfers > 0);
        self.reopened += u64::from(row.reopens > 0);
        if let Some((score, _)) = row.csat {
            self.csat_sum += u64::from(score);
            self.csat_count += 1;
        }
    }

    /// Mean queued → first agent reply, in seconds.
    pub fn mean_wait_s(&self) -> f64 {
        ratio(self.first_response_wait_s, self.first_responses)
    }

    /// Lost plus abandoned-after-assignment, over conversations handed to humans.
    pub fn abandonment_rate(&self) -> f64 {
        ratio(self.lost + self.abandoned_after_assignment, self.queued)
    }

    /// Bot-resolved over all conversations.
    pub fn containment_rate(&self) -> f64 {
        ratio(self.bot_resolved, self.conversations)
    }

    pub fn mean_csat(&self) -> f64 {
        ratio(self.csat_sum, self.csat_count)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Clone, Debug)]
pub struct Summary {
    pub conversations: u64,
    /// Canonical events in the source files: an agent-log line, a Chatwoot body, a
    /// WhatsApp message or status (a WhatsApp body may hold several).
    pub events: u64,
    /// Bytes of all files in `files`.
    pub bytes: u64,
    /// Every file written, the manifest last.
    pub files: Vec<PathBuf>,
    /// Bytes of the three event sources only (no truth, no manifest).
    pub source_bytes: u64,
    pub calibration: Calibration,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error(
        "refusing to write into {}: {} is not something generate writes",
        dir.display(),
        path.display()
    )]
    ForeignFile { dir: PathBuf, path: PathBuf },
    #[error(
        "refusing to overwrite {}: it looks like generator output but {} has no manifest.json",
        path.display(),
        dir.display()
    )]
    NotGeneratorOutput { dir: PathBuf, path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot render an event as JSON: {0}")]
    Render(#[source] serde_json::Error),
}

impl GenerateError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        GenerateError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

const SOURCE_DIRS: [&str; 3] = ["agent-log", "whatsapp", "chatwoot"];
const TRUTH_FILES: [&str; 2] = ["conversations.csv", "agent_status.csv"];
const MANIFEST: &str = "manifest.json";

/// Instants the agent-log format accepts: 2000-01-01 to the end of 2099.
const MIN_TS: i64 = 946_684_800;
const MAX_TS: i64 = 4_102_444_800;

/// Runs the simulation and writes the files. `progress` is called once per simulated
/// day and once at the end.
pub fn generate(
    opts: &GenerateOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary, GenerateError> {
    let window = validate(opts)?;
    prepare_out_dir(&opts.out)?;

    let mut sim = sim::Sim::new(opts, window)?;
    sim.run(progress)?;
    let conversations = sim.conversations();
    let events = sim.out.events;

    let mut stats: Vec<FileStat> = Vec::new();
    stats.extend(sim.out.agent_log.files.iter().cloned());
    stats.extend(sim.out.whatsapp.files.iter().cloned());
    stats.extend(sim.out.chatwoot.files.iter().cloned());
    let source_bytes: u64 = stats.iter().map(|f| f.bytes).sum();
    stats.push(FileStat {
        rel: "truth/conversations.csv".into(),
        lines: sim.truth.rows + 1,
        events: 0,
        bytes: sim.truth.bytes,
    });
    stats.push(FileStat {
        rel: "truth/agent_status.csv".into(),
        lines: sim.truth.status_rows.len() as u64 + 1,
        events: 0,
        bytes: sim.truth.status_bytes,
    });

    let manifest = manifest_json(opts, &sim, conversations, events, &stats)?;
    let manifest_path = opts.out.join(MANIFEST);
    fs::write(&manifest_path, manifest.as_bytes())
        .map_err(|e| GenerateError::io("write", &manifest_path, e))?;

    let mut files: Vec<PathBuf> = stats.iter().map(|f| opts.out.join(&f.rel)).collect();
    files.push(manifest_path);
    let bytes = stats.iter().map(|f| f.bytes).sum::<u64>() + manifest.len() as u64;
    Ok(Summary {
        conversations,
        events,
        bytes,
        files,
        source_bytes,
        calibration: sim.truth.calibration.clone(),
    })
}

fn validate(opts: &GenerateOptions) -> Result<sim::Window, GenerateError> {
    let invalid =
        |option: &'static str, reason: String| GenerateError::InvalidOption { option, reason };
    if opts.days == 0 {
        return Err(invalid("days", "must be at least 1".into()));
    }
    if opts.days > 3660 {
        return Err(invalid(
            "days",
            format!("{} is more than ten years (3660 days)", opts.days),
        ));
    }
    if opts.conversations_per_day == 0 {
        return Err(invalid(
            "conversations_per_day",
            "must be at least 1".into(),
        ));
    }
    if opts.conversations_per_day > 10_000_000 {
        return Err(invalid(
            "conversations_per_day",
            format!(
                "{} is over the supported 10,000,000",
                opts.conversations_per_day
            ),
        ));
    }
    let window = sim::Window::new(opts.timezone, opts.start, opts.days).ok_or_else(|| {
        invalid(
            "start",
            format!(
                "{} + {} days has a day whose local midnight cannot be placed in {}",
                opts.start,
                opts.days,
                opts.timezone.name()
            ),
        )
    })?;
    if window.start_utc < MIN_TS || window.end_utc > MAX_TS {
        return Err(invalid(
            "start",
            format!(
                "{} + {} days leaves 2000-01-01..2099-12-31, the range the agent log accepts",
                opts.start, opts.days
            ),
        ));
    }
    Ok(window)
}

fn is_day_file(name: &str) -> bool {
    let b = name.as_bytes();
    name.len() == 16
        && name.ends_with(".jsonl")
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// Makes `out` ready: it must be empty, missing, or hold only an earlier run's files
/// (with its manifest, so that real data that happens to share the layout is never
/// deleted). The earlier run's files are removed so no stale day file survives.
fn prepare_out_dir(out: &Path) -> Result<(), GenerateError> {
    match fs::symlink_metadata(out) {
        Ok(m) if !m.is_dir() => {
            return Err(GenerateError::InvalidOption {
                option: "out",
                reason: format!("{} exists and is not a directory", out.display()),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(GenerateError::io("inspect", out, e)),
    }
    fs::create_dir_all(out).map_err(|e| GenerateError::io("create", out, e))?;

    let foreign = |path: PathBuf| GenerateError::ForeignFile {
        dir: out.to_path_buf(),
        path,
    };
    let mut ours: Vec<PathBuf> = Vec::new();
    let mut has_manifest = false;
    for entry in read_dir(out)? {
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(foreign(path));
        };
        let meta =
            fs::symlink_metadata(&path).map_err(|e| GenerateError::io("inspect", &path, e))?;
        let allowed: &dyn Fn(&str) -> bool = match name {
            MANIFEST if meta.is_file() => {
                has_manifest = true;
                ours.push(path);
                continue;
            }
            "agent-log" | "whatsapp" | "chatwoot" if meta.is_dir() => &is_day_file,
            "truth" if meta.is_dir() => &|n: &str| TRUTH_FILES.contains(&n),
            _ => return Err(foreign(path)),
        };
        for inner in read_dir(&path)? {
            let p = inner.path();
            let m = fs::symlink_metadata(&p).map_err(|e| GenerateError::io("inspect", &p, e))?;
            let ok = m.is_file() && inner.file_name().to_str().is_some_and(allowed);
            if !ok {
                return Err(foreign(p));
            }
            ours.push(p);
        }
    }
    if !has_manifest && let Some(p) = ours.first() {
        return Err(GenerateError::NotGeneratorOutput {
            dir: out.to_path_buf(),
            path: p.clone(),
        });
    }
    for p in ours {
        fs::remove_file(&p).map_err(|e| GenerateError::io("remove", &p, e))?;
    }
    for sub in SOURCE_DIRS.iter().chain(std::iter::once(&"truth")) {
        let p = out.join(sub);
        fs::create_dir_all(&p).map_err(|e| GenerateError::io("create", &p, e))?;
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, GenerateError> {
    let rd = fs::read_dir(dir).map_err(|e| GenerateError::io("read", dir, e))?;
    let mut entries = Vec::new();
    for e in rd {
        entries.push(e.map_err(|e| GenerateError::io("read", dir, e))?);
    }
    Ok(entries)
}

#[derive(serde::Serialize)]
struct Manifest<'a> {
    generator: &'static str,
    format_version: u32,
    options: ManifestOptions<'a>,
    window: ManifestWindow,
    conversations: u64,
    events: u64,
    kinds: ManifestKinds,
    outcomes: ManifestOutcomes,
    files: Vec<ManifestFile<'a>>,
}

#[derive(serde::Serialize)]
struct ManifestOptions<'a> {
    start: String,
    days: u32,
    conversations_per_day: u32,
    seed: u64,
    timezone: &'a str,
}

#[derive(serde::Serialize)]
struct ManifestWindow {
    from: String,
    to: String,
}

#[derive(serde::Serialize, Default)]
struct KindCounts {
    files: u64,
    lines: u64,
    events: u64,
    bytes: u64,
}

#[derive(serde::Serialize)]
struct TruthCounts {
    conversations: u64,
    agent_status_intervals: u64,
    bytes: u64,
}

#[derive(serde::Serialize)]
struct ManifestKinds {
    #[serde(rename = "agent-log")]
    agent_log: KindCounts,
    whatsapp: KindCounts,
    chatwoot: KindCounts,
    truth: TruthCounts,
}

#[derive(serde::Serialize)]
struct ManifestOutcomes {
    answered: u64,
    bot_resolved: u64,
    lost: u64,
    abandoned_after_assignment: u64,
    open: u64,
}

#[derive(serde::Serialize)]
struct ManifestFile<'a> {
    path: &'a str,
    lines: u64,
    events: u64,
    bytes: u64,
}

/// The manifest does not name the output directory, so that two runs with the same
/// options are byte-identical wherever they are written.
fn manifest_json(
    opts: &GenerateOptions,
    sim: &sim::Sim,
    conversations: u64,
    events: u64,
    stats: &[FileStat],
) -> Result<String, GenerateError> {
    let kind = |prefix: &str| {
        stats
            .iter()
            .filter(|f| f.rel.starts_with(prefix))
            .fold(KindCounts::default(), |k, f| KindCounts {
                files: k.files + 1,
                lines: k.lines + f.lines,
                events: k.events + f.events,
                bytes: k.bytes + f.bytes,
            })
    };
    let c = &sim.truth.calibration;
    let (from, to) = sim.window_bounds();
    let m = Manifest {
        generator: "supportlake generate",
        format_version: 1,
        options: ManifestOptions {
            start: opts.start.to_string(),
            days: opts.days,
            conversations_per_day: opts.conversations_per_day,
            seed: opts.seed,
            timezone: opts.timezone.name(),
        },
        window: ManifestWindow {
            from: clock::rfc3339(from),
            to: clock::rfc3339(to),
        },
        conversations,
        events,
        kinds: ManifestKinds {
            agent_log: kind("agent-log/"),
            whatsapp: kind("whatsapp/"),
            chatwoot: kind("chatwoot/"),
            truth: TruthCounts {
                conversations: sim.truth.rows,
                agent_status_intervals: sim.truth.status_rows.len() as u64,
                bytes: sim.truth.bytes + sim.truth.status_bytes,
            },
        },
        outcomes: ManifestOutcomes {
            answered: c.answered,
            bot_resolved: c.bot_resolved,
            lost: c.lost,
            abandoned_after_assignment: c.abandoned_after_assignment,
            open: c.open,
        },
        files: stats
            .iter()
            .map(|f| ManifestFile {
                path: &f.rel,
                lines: f.lines,
                events: f.events,
                bytes: f.bytes,
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&m).map_err(GenerateError::Render)?;
    s.push('\n');
    Ok(s)
}
