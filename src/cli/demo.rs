//! `supportlake demo`: the whole flow on a local folder, nothing to install or configure.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;

use super::output::{Format, write_batches};
use super::{EXIT_OK, generate::default_start};
use crate::generate::{self, GenerateOptions};
use crate::ingest::{self, IngestOptions, Input, NoProgress};
use crate::lake::LakePaths;
use crate::pseudonym::{KEY_ENV, KEY_FILE_ENV, PseudonymKey, generate_key_hex};
use crate::query::Engine;

/// Generate sample data, ingest it into a local lake, show what is in it, and serve it.
///
/// Everything lives under one folder (./demo by default): a pseudonymization key made for
/// the demo (pseudonym.key, outside the lake), the business rules (config.toml, a copy of
/// sample-data/config.toml to edit), the simulated source files (sample/) and the lake
/// (lake/). Running it again reuses them: the ingest finds every event already stored.
///
/// Then `supportlake serve` runs on http://127.0.0.1:8080 (loopback, no tokens) until
/// Ctrl-C: try http://127.0.0.1:8080/api/v1/metrics/wait?group_by=team&from=<a date>.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the demo's key, source files and lake.
    #[arg(long, default_value = "demo", value_name = "DIR")]
    dir: PathBuf,

    /// Days of simulated history (ending yesterday).
    #[arg(long, default_value_t = 14)]
    days: u32,

    /// Mean conversations per day.
    #[arg(long, default_value_t = 400, value_name = "M")]
    conversations_per_day: u32,

    /// Where to serve the lake afterwards (a loopback address: the demo has no tokens).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: std::net::SocketAddr,

    /// Also answer the Postgres protocol here, e.g. 127.0.0.1:5433 (then:
    /// psql "host=127.0.0.1 port=5433 dbname=supportlake user=demo").
    #[arg(long, value_name = "ADDR")]
    pg_listen: Option<std::net::SocketAddr>,

    /// Stop after the summary instead of serving.
    #[arg(long)]
    no_serve: bool,
}

/// The demo's business rules: the sample contact center's, written once so they can be
/// edited.
fn demo_config(dir: &Path) -> anyhow::Result<(PathBuf, crate::config::Config)> {
    let path = dir.join("config.toml");
    if !path.is_file() {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, include_str!("../../sample-data/config.toml"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let config = crate::config::Config::load(&path)?;
    Ok((path, config))
}

fn demo_key(dir: &Path) -> anyhow::Result<PseudonymKey> {
    if let Ok(k) = PseudonymKey::from_sources(
        std::env::var(KEY_ENV).ok().as_deref(),
        std::env::var(KEY_FILE_ENV).ok().as_deref(),
    ) {
        return Ok(k);
    }
    let path = dir.join("pseudonym.key");
    if !path.is_file() {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, generate_key_hex() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        eprintln!(
            "made a pseudonymization key for the demo: {}",
            path.display()
        );
    }
    Ok(PseudonymKey::from_sources(None, path.to_str())?)
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    // Before any thread starts: the demo ends in `serve`.
    crate::server::memory::tune();
    let key = demo_key(&args.dir)?;
    let sample = args.dir.join("sample");
    if !sample.join("manifest.json").is_file() {
        let tz = chrono_tz::America::Sao_Paulo;
        let opts = GenerateOptions {
            out: sample.clone(),
            start: default_start(args.days, tz),
            days: args.days,
            conversations_per_day: args.conversations_per_day,
            seed: 1,
            timezone: tz,
            id_offset: 0,
        };
        eprintln!(
            "simulating {} days of a contact center into {} …",
            args.days,
            sample.display()
        );
        let s = generate::generate(&opts, &mut |_| {})?;
        eprintln!("  {} conversations, {} events", s.conversations, s.events);
    }
    let mut inputs = Vec::new();
    for sub in ["agent-log", "whatsapp", "chatwoot"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(sample.join(sub))
            .with_context(|| format!("reading {}", sample.join(sub).display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        inputs.extend(files.into_iter().map(Input::Path));
    }
    let paths = LakePaths::new(args.dir.join("lake"));
    let run_id = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    );
    let receipt = ingest::ingest(
        &paths,
        &inputs,
        &IngestOptions::default(),
        &key,
        Arc::new(Utc::now),
        &run_id,
        &NoProgress,
    )?;
    eprintln!(
        "ingested into {}: {} new events, {} already stored",
        paths.root().display(),
        receipt.accepted,
        receipt.duplicates
    );
    let (config_path, config) = demo_config(&args.dir)?;
    let config = Arc::new(config);
    let rt = super::runtime()?;
    let (schema, batches) = rt.block_on(async {
        let engine = Engine::open(&paths, Arc::clone(&config)).await?;
        engine
            .sql(
                "SELECT source, kind, count(*) AS events, min(ts) AS first, max(ts) AS last \
                 FROM events GROUP BY source, kind ORDER BY source, kind",
            )
            .await
    })?;
    let mut out = std::io::stdout().lock();
    write_batches(&mut out, Format::Table, &schema, &batches)?;
    if std::io::stdout().is_terminal() {
        println!(
            "\nTry: supportlake metrics wait --lake {} --config {} --interval day --group-by team",
            paths.root().display(),
            config_path.display()
        );
    }
    if args.no_serve {
        return Ok(EXIT_OK);
    }
    anyhow::ensure!(
        args.listen.ip().is_loopback() && args.pg_listen.is_none_or(|a| a.ip().is_loopback()),
        "the demo serves without tokens, so only on a loopback address (not {})",
        args.listen
    );
    let opts = crate::server::ServerOptions {
        lake: paths,
        listen: args.listen,
        config,
        tokens: crate::server::auth::Tokens::default(),
        whatsapp_app_secret: None,
        whatsapp_verify_token: None,
        chatwoot_secret: None,
        pseudonym_key: key,
        wal: crate::lake::wal::WalOptions::default(),
        max_body_bytes: 16 << 20,
        request_timeout: std::time::Duration::from_secs(60),
        connections: crate::server::listen::ConnectionLimits::default(),
        max_line_bytes: crate::ingest::MAX_LINE_BYTES,
        analyst_limits: crate::query::analyst::Limits::default(),
        pg_listen: args.pg_listen,
        pg_tls: None,
        smtp: None,
        upkeep: crate::server::upkeep::UpkeepOptions::default(),
    };
    eprintln!("serving the demo lake; Ctrl-C to stop");
    rt.block_on(crate::server::serve(opts))?;
    Ok(EXIT_OK)
}
