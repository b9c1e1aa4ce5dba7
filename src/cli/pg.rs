//! `supportlake pg`: the Postgres wire protocol over a lake, without the rest of the
//! service; and the analyst-sandbox flags `serve` shares.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::serve::secret;
use super::{ConfigArg, EXIT_OK, LakeArg};
use crate::lake::LakePaths;
use crate::query::analyst::{Analyst, Limits, WatchedLake};
use crate::server::auth::Tokens;

/// The bounds of analyst SQL (POST /api/v1/sql and the Postgres protocol).
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Wall-clock seconds one analyst query may run before it is cancelled.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub sql_timeout: f64,
    /// Memory, in MiB, all running analyst queries may hold together.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub sql_memory: usize,
    /// Most rows one analyst result may have.
    #[arg(long, default_value_t = 1_000_000, value_name = "ROWS")]
    pub sql_max_rows: usize,
    /// Analyst queries run at once (later ones wait up to 10 s, then get "busy").
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub sql_concurrency: usize,
}

impl SandboxArgs {
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let timeout = Duration::try_from_secs_f64(self.sql_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--sql-timeout must be a positive number of seconds")?;
        anyhow::ensure!(self.sql_memory > 0, "--sql-memory must be at least 1 MiB");
        anyhow::ensure!(
            self.sql_concurrency > 0,
            "--sql-concurrency must be at least 1"
        );
        Ok(Limits {
            timeout,
            memory_bytes: self.sql_memory << 20,
            max_rows: self.sql_max_rows,
            max_concurrent: self.sql_concurrency,
            ..Limits::default()
        })
    }
}

/// Answer the Postgres wire protocol over a lake (psql, DBeaver, Metabase, Grafana).
///
/// Clients connect with database "supportlake", any user name, and a read token as the
/// password.
///
/// Only read-only queries run (no DDL, DML, COPY or engine SET), within the analyst
/// sandbox's memory, time and row limits. The lake is re-read when its files change, so
/// this can run beside `supportlake ingest` from cron. `serve --pg-listen` does the same
/// inside the full service.
///
/// With no tokens (SUPPORTLAKE_TOKENS) any password is accepted and only a loopback
/// address may be used.
///
/// Example:
///   SUPPORTLAKE_TOKENS="read:$(cat read.token)" supportlake pg --lake ./lake
///   PGPASSWORD=$(cat read.token) psql "host=127.0.0.1 port=5433 dbname=supportlake user=me"
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub lake: LakeArg,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:5433", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); with --tls-key, clients may connect with sslmode=require.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM, PKCS#8 or RSA).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let tokens = match secret("SUPPORTLAKE_TOKENS")? {
        Some(t) => Tokens::parse(&t).context("SUPPORTLAKE_TOKENS")?,
        None => Tokens::default(),
    };
    anyhow::ensure!(
        !tokens.is_empty() || args.listen.ip().is_loopback(),
        "no tokens are configured (SUPPORTLAKE_TOKENS), so only a loopback address may be used; {} is not one",
        args.listen
    );
    let config = Arc::new(args.config.load()?);
    let paths = LakePaths::new(args.lake.lake.clone());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            Some(crate::query::analyst::pg::tls_acceptor(c, k).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let analyst = Analyst::new(args.sandbox.limits()?, Arc::clone(&config))?;
    analyst.set_source(Arc::new(WatchedLake::new(paths, config)));
    let rt = super::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!(
            "listening on postgres://{}/supportlake",
            listener.local_addr()?
        );
        if tokens.is_empty() {
            eprintln!(
                "warning: no tokens configured (SUPPORTLAKE_TOKENS): any password is accepted"
            );
        }
        tokio::select! {
            r = crate::query::analyst::pg::serve(listener, analyst, tokens, tls) => r?,
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    Ok(EXIT_OK)
}
