//! `supportlake sql`: one query over the lake.

use std::io::Read;

use super::output::{Format, write_batches};
use super::{ConfigArg, EXIT_OK, LakeArg};
use crate::lake::LakePaths;
use crate::query::Engine;

/// Run one SQL query over the lake and print the result.
///
/// Tables: `events` (every stored event; `date` is the UTC day of `ts` and the partition
/// column, so `WHERE date BETWEEN DATE '2026-11-01' AND DATE '2026-11-07'` reads only those
/// days); the views `conversation_events`, `conversations`, `conversation_intervals`,
/// `sla_targets`, `agent_status_intervals`; `settings` and `sla_policies` from --config.
/// Functions: business_seconds, business_add, bucket_start, bucket_end, bucket_starts,
/// seconds_between, sla_policy. Columns are documented in docs/lake.md and
/// docs/metrics.md.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
supportlake sql --lake ./lake \"SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC\"\n  \
supportlake sql --lake ./lake --format csv \"SELECT * FROM events WHERE date = DATE '2026-11-02'\" > day.csv\n  \
echo \"SELECT count(*) FROM events\" | supportlake sql --lake ./lake -")]
pub struct Args {
    #[command(flatten)]
    lake: LakeArg,

    #[command(flatten)]
    config: ConfigArg,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,

    /// Compute the derived tables (conversations, sla_targets, …) from the events even when
    /// the rollups are current: slower, and a check that they agree.
    #[arg(long)]
    from_events: bool,

    /// The SQL query; `-` reads it from standard input.
    #[arg(value_name = "QUERY")]
    query: String,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let query = if args.query == "-" {
        let mut q = String::new();
        std::io::stdin().read_to_string(&mut q)?;
        q
    } else {
        args.query
    };
    let paths = LakePaths::new(&args.lake.lake);
    let config = std::sync::Arc::new(args.config.load()?);
    let rollups = if args.from_events {
        crate::query::Rollups::Never
    } else {
        crate::query::Rollups::IfCurrent
    };
    let rt = super::runtime()?;
    let (schema, batches) = rt.block_on(async {
        let engine = Engine::open_with(&paths, config, rollups).await?;
        engine.sql(&query).await
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_batches(&mut out, args.format, &schema, &batches)?;
    Ok(EXIT_OK)
}
