//! `supportlake serve`: the long-running service (webhooks, agent events, metrics API).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{ConfigArg, EXIT_OK, LakeArg};
use crate::lake::LakePaths;
use crate::lake::wal::WalOptions;
use crate::pseudonym::PseudonymKey;
use crate::server::auth::Tokens;
use crate::server::listen::ConnectionLimits;
use crate::server::{ServerOptions, serve};

/// Serve webhooks, agent events, the metrics API, dashboards and analyst SQL.
///
/// Deliveries are acknowledged (2xx) only once fsynced in a write-ahead log under
/// <lake>/_wal; a background flusher turns the log into Parquet every few seconds. When the
/// log cannot take more (a full disk, say) the answer is 503 with Retry-After, and the
/// server takes events again by itself once it can write. SIGTERM or Ctrl-C drains
/// in-flight requests and flushes before exit (exit code 1 if acknowledged events could
/// not be flushed: they stay in the log for the next start).
///
/// A data file that cannot be read is moved aside to <lake>/_damaged/ and named in the log,
/// in query errors and in /readyz; everything else goes on. /readyz answers ready,
/// degraded (with each problem) or 503 not ready. See docs/reliability.md.
///
/// Connections: a client has --header-timeout (10s) to send a request's line and headers,
/// and an idle keep-alive connection is closed after the same wait; --request-timeout (60s)
/// bounds the rest of a request, its body included (408). At most --max-connections (1024)
/// are open at once; one more is answered 503 with Retry-After and closed.
///
/// Secrets come from the environment, each also as NAME_FILE (a file holding the value):
///   SUPPORTLAKE_PSEUDONYM_KEY          customer pseudonymization key (required)
///   SUPPORTLAKE_WHATSAPP_APP_SECRET    checks X-Hub-Signature-256 on POST /webhooks/whatsapp
///   SUPPORTLAKE_WHATSAPP_VERIFY_TOKEN  answers Meta's GET /webhooks/whatsapp handshake
///   SUPPORTLAKE_CHATWOOT_SECRET        checks X-Chatwoot-Signature (or ?token=) on /webhooks/chatwoot
///   SUPPORTLAKE_TOKENS                 "read:TOKEN,ingest:TOKEN,admin:TOKEN" (any number)
///
/// With no tokens the server refuses to listen anywhere but loopback.
///
/// Routes: GET|POST /webhooks/whatsapp, POST /webhooks/chatwoot, POST /ingest/events
/// [ingest], GET /api/v1/metrics/{name}, /api/v1/charts/{name}.svg|png,
/// /api/v1/conversations, /api/v1/live, POST /api/v1/sql [read], DELETE
/// /api/v1/customers/{key} [admin] (erases a customer, docs/privacy.md), the dashboards at
/// /, /healthz, /readyz, /metrics; /api/v1/openapi.json describes them all.
///
/// With [retention] in --config, expired partitions are dropped at start and then daily.
///
/// Upkeep, in the background: after every flush the rollup tables (conversations,
/// sla_targets, …) are refreshed for what changed, so pages stay fast over years of data
/// and trail ingest by that refresh (seconds); every --compact-interval the small files of
/// each day are merged. See `supportlake rollup --help` and `supportlake compact --help`.
///
/// Analysts: POST /api/v1/sql takes one read-only SQL statement; --pg-listen also answers
/// the Postgres protocol (database "supportlake", a read token as password). Both run in
/// the analyst sandbox (--sql-* flags); see docs/sql.md.
///
/// Example:
///   SUPPORTLAKE_TOKENS="read:$(openssl rand -hex 16),ingest:$(openssl rand -hex 16)" \
///   supportlake serve --lake ./lake --listen 0.0.0.0:8080 --config config.toml
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub lake: LakeArg,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub max_body: usize,
    /// Lines of POST /ingest/events longer than this many bytes are rejected (reported
    /// with their line number and quarantined cut to their start); the other lines are kept.
    #[arg(long, default_value_t = crate::ingest::MAX_LINE_BYTES, value_name = "BYTES")]
    pub max_line_bytes: usize,
    /// How long a client may take to send a request's line and headers. The same wait
    /// applies to an idle keep-alive connection before its next request. Beyond it the
    /// connection is closed.
    #[arg(long, default_value = "10s", value_parser = super::lifecycle::parse_duration, value_name = "DURATION")]
    pub header_timeout: Duration,
    /// Longest a request may take once its headers are in, receiving its body included;
    /// beyond it the answer is 408 and the connection is closed.
    #[arg(long, default_value = "60s", value_parser = super::lifecycle::parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Most client connections open at once. One more is answered 503 with Retry-After
    /// and closed at once, never queued.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_connections: usize,
    /// Most bytes of request bodies held at once by all requests together. A request whose
    /// body (its Content-Length, or --max-body when not announced) does not fit is answered
    /// 503 with Retry-After before its body is read.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub max_body_memory: usize,
    /// How long an answer may wait for a client that takes none of it (a client that stops
    /// reading a large result). Beyond it the connection is closed.
    #[arg(long, default_value = "30s", value_parser = super::lifecycle::parse_duration, value_name = "DURATION")]
    pub send_timeout: Duration,
    /// How often the write-ahead log is flushed into Parquet, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub flush_interval: f64,
    /// Also answer the Postgres wire protocol here (e.g. 127.0.0.1:5433).
    #[arg(long, value_name = "ADDR")]
    pub pg_listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for the Postgres listener.
    #[arg(long, value_name = "FILE", requires = "pg_tls_key")]
    pub pg_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the Postgres listener.
    #[arg(long, value_name = "FILE", requires = "pg_tls_cert")]
    pub pg_tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub sandbox: super::pg::SandboxArgs,
    /// Do not keep the rollup tables up to date (pages then compute from every event).
    #[arg(long)]
    pub no_rollups: bool,
    /// How often small events files are merged (0s: never).
    #[arg(long, default_value = "10m", value_parser = super::lifecycle::parse_duration, value_name = "DURATION")]
    pub compact_interval: Duration,
    /// How long files replaced by compaction or a rollup refresh stay for readers that
    /// listed them before (other programs reading the folder included).
    #[arg(long, default_value = "10m", value_parser = super::lifecycle::parse_duration, value_name = "DURATION")]
    pub grace: Duration,
    /// fsync every request on its own instead of in groups (only to measure what group
    /// commit gains; never in production).
    #[arg(long, hide = true)]
    pub wal_sync_each: bool,
}

/// Reads NAME, or the file named by NAME_FILE (trailing newline dropped).
pub(crate) fn secret(name: &str) -> anyhow::Result<Option<String>> {
    if let Ok(v) = std::env::var(name) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    match std::env::var(&file_var) {
        Ok(path) => {
            let v = std::fs::read_to_string(&path)
                .with_context(|| format!("{file_var}: cannot read {path}"))?;
            Ok(Some(v.trim_end_matches(['\n', '\r']).to_owned()))
        }
        Err(_) => Ok(None),
    }
}

pub fn options(args: &Args) -> anyhow::Result<ServerOptions> {
    let key = PseudonymKey::from_sources(
        std::env::var("SUPPORTLAKE_PSEUDONYM_KEY").ok().as_deref(),
        std::env::var("SUPPORTLAKE_PSEUDONYM_KEY_FILE")
            .ok()
            .as_deref(),
    )?;
    let tokens = match secret("SUPPORTLAKE_TOKENS")? {
        Some(t) => Tokens::parse(&t).context("SUPPORTLAKE_TOKENS")?,
        None => Tokens::default(),
    };
    let flush = Duration::try_from_secs_f64(args.flush_interval)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--flush-interval must be a positive number of seconds")?;
    anyhow::ensure!(
        !args.header_timeout.is_zero(),
        "--header-timeout must be longer than 0s"
    );
    anyhow::ensure!(
        !args.send_timeout.is_zero(),
        "--send-timeout must be longer than 0s"
    );
    anyhow::ensure!(
        !args.request_timeout.is_zero(),
        "--request-timeout must be longer than 0s"
    );
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be at least 1"
    );
    anyhow::ensure!(
        args.max_line_bytes > 0,
        "--max-line-bytes must be at least 1"
    );
    let config = Arc::new(args.config.load()?);
    Ok(ServerOptions {
        lake: LakePaths::new(PathBuf::from(&args.lake.lake)),
        listen: args.listen,
        tokens,
        whatsapp_app_secret: secret("SUPPORTLAKE_WHATSAPP_APP_SECRET")?.map(String::into_bytes),
        whatsapp_verify_token: secret("SUPPORTLAKE_WHATSAPP_VERIFY_TOKEN")?,
        chatwoot_secret: secret("SUPPORTLAKE_CHATWOOT_SECRET")?.map(String::into_bytes),
        pseudonym_key: key,
        wal: WalOptions {
            flush_interval: flush,
            sync_each: args.wal_sync_each,
            ..WalOptions::default()
        },
        max_body_bytes: args.max_body,
        request_timeout: args.request_timeout,
        connections: ConnectionLimits {
            header_timeout: args.header_timeout,
            max_connections: args.max_connections,
            max_body_memory: args.max_body_memory,
            send_timeout: args.send_timeout,
        },
        max_line_bytes: args.max_line_bytes,
        analyst_limits: args.sandbox.limits()?,
        pg_listen: args.pg_listen,
        pg_tls: args.pg_tls_cert.clone().zip(args.pg_tls_key.clone()),
        smtp: super::report::smtp_settings(&config)?,
        config,
        upkeep: crate::server::upkeep::UpkeepOptions {
            rollups: !args.no_rollups,
            compact_interval: (!args.compact_interval.is_zero()).then_some(args.compact_interval),
            grace: args.grace,
        },
    })
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let opts = options(&args)?;
    crate::server::memory::tune();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve(opts))?;
    Ok(EXIT_OK)
}
