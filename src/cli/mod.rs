//! The command line: argument parsing, the edge where `anyhow`, the wall clock and the
//! terminal live. Each subcommand is a module with its `Args` and `run`.

mod check;
mod demo;
mod erase;
mod generate;
mod ingest;
mod lifecycle;
mod metrics;
pub mod output;
mod pg;
mod report;
mod retention;
mod serve;
mod sql;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Exit code when everything worked.
pub const EXIT_OK: u8 = 0;
/// Exit code for a fatal error (nothing or not everything was done).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of `ingest` when some input was rejected (the rest was stored).
pub const EXIT_REJECTS: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "supportlake",
    version,
    about = "Support metrics and SLAs from WhatsApp, Chatwoot and agent-log events, over a Parquet lake",
    long_about = "supportlake turns webhook deliveries and agent event logs into a lake of \
Parquet files and computes the numbers support teams run on: TME (average wait), TMA \
(average handle time), backlog, service level, abandonment, SLA breaches, CSAT.\n\n\
The lake is a plain folder (./lake by default) of Hive-partitioned Parquet that DuckDB, \
pandas and Spark read as well.\n\n\
Typical first steps:\n  \
supportlake keygen > pseudonym.key\n  \
export SUPPORTLAKE_PSEUDONYM_KEY_FILE=pseudonym.key\n  \
supportlake ingest --lake ./lake sample-data/agent-log/*.jsonl sample-data/whatsapp/*.jsonl\n  \
supportlake sql --lake ./lake \"SELECT kind, count(*) FROM events GROUP BY kind\"",
    after_help = "Environment: SUPPORTLAKE_LOG sets the log filter (e.g. info, supportlake=debug)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(demo::Args),
    Ingest(ingest::Args),
    Sql(sql::Args),
    Metrics(Box<metrics::Args>),
    Generate(generate::Args),
    Serve(serve::Args),
    Pg(pg::Args),
    Report(report::Args),
    Compact(lifecycle::CompactArgs),
    Rollup(lifecycle::RollupArgs),
    Erase(erase::Args),
    Retention(retention::Args),
    Check(check::Args),
    Keygen(KeygenArgs),
}

/// Print a new random pseudonymization key (64 hex characters).
///
/// Customer phone numbers are replaced by HMAC-SHA256(key, number) before anything is
/// stored. Keep the key secret (outside the lake) and stable: a new key splits every
/// customer's history in two.
#[derive(Debug, clap::Args)]
struct KeygenArgs {}

/// Where the lake lives, shared by every command that reads or writes one.
#[derive(Debug, Clone, clap::Args)]
pub struct LakeArg {
    /// The lake folder (created on first ingest).
    #[arg(
        long,
        env = "SUPPORTLAKE_LAKE",
        default_value = "lake",
        value_name = "DIR"
    )]
    pub lake: PathBuf,
}

/// The business-rules file, shared by every command that computes metrics.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Business rules: reporting time zone, business-hours calendars, SLA policies (TOML,
    /// see docs/config.md). Without one: UTC, 24x7, no SLA policies.
    #[arg(long, env = "SUPPORTLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn load(&self) -> anyhow::Result<crate::config::Config> {
        match &self.config {
            Some(path) => Ok(crate::config::Config::load(path)?),
            None => Ok(crate::config::Config::default()),
        }
    }
}

/// Parses arguments, runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn init_tracing() {
    let filter =
        EnvFilter::try_from_env("SUPPORTLAKE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Sql(args) => sql::run(args),
        Command::Metrics(args) => metrics::run(*args),
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Pg(args) => pg::run(args),
        Command::Report(args) => report::run(args),
        Command::Compact(args) => lifecycle::run_compact(args),
        Command::Rollup(args) => lifecycle::run_rollup(args),
        Command::Erase(args) => erase::run(args),
        Command::Retention(args) => retention::run(args),
        Command::Check(args) => check::run(args),
        Command::Keygen(_) => {
            println!("{}", crate::pseudonym::generate_key_hex());
            Ok(EXIT_OK)
        }
    }
}

/// A Tokio runtime for the commands that need one.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
