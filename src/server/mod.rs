//! `supportlake serve`: webhook and event ingest acknowledged only when durable (the
//! write-ahead log of [`crate::lake::wal`]), and the read API over the lake.
//!
//! Routes (roles in brackets; `admin` may do everything):
//! - `GET /webhooks/whatsapp` — Meta's verification handshake (`hub.verify_token`).
//! - `POST /webhooks/whatsapp` — authenticated by `X-Hub-Signature-256` on the raw body.
//! - `POST /webhooks/chatwoot` — `X-Chatwoot-Signature` + `X-Chatwoot-Timestamp` (5-minute
//!   window), or `?token=` for Chatwoot versions that do not sign.
//! - `POST /ingest/events` [ingest] — agent-log JSON Lines; answers a receipt.
//! - `GET /api/v1/metrics/{name}` [read] — the JSON of `supportlake metrics --format json`.
//! - `GET /api/v1/charts/{name}.svg|.png` [read] — the same metric drawn ([`crate::charts`]).
//! - `POST /api/v1/sql` [read] — one read-only SQL statement, in the analyst sandbox
//!   ([`crate::query::analyst`]); JSON, CSV, Arrow IPC or Parquet.
//! - `GET /api/v1/reports` [read] — scheduled reports, their next time and last run.
//! - `DELETE /api/v1/customers/{key}` [admin] — erases one customer ([`crate::lake::erase`]);
//!   answers the audit record.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus text).
//!
//! Reports with a `cron` in the config are sent at their times ([`crate::report`]). With a
//! `[retention]` in the config, expired partitions are dropped at start and then daily.
//! Erasure and retention are maintenance: they hold [`AppState::maintenance`] (never two at
//! once) and run on the write-ahead log's flusher thread after a flush
//! ([`Wal::run_exclusive`]), so they neither race the flusher nor lose acknowledged events.
//! With `pg_listen` set, the same sandbox also answers the Postgres wire protocol.
//!
//! Every error answers `{"error": "<code>", "message": "<text>"}` ([`json_errors`] gives
//! axum's own answers that shape). A 2xx on an ingest route means the events are fsynced in
//! the write-ahead log; when the log cannot take them the answer is 503 with `Retry-After`.
//! What a connection may hold of the server (header timeout, connection cap) is in
//! [`listen`]; giving memory back after bursts in [`memory`].

pub use crate::auth;
pub mod pages;
mod carry;
pub mod listen;
pub mod memory;
mod results;
pub mod upkeep;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Mutex, RwLock};
use tracing::{info, warn};

use crate::charts;
use crate::config::Config;
use crate::lake::LakePaths;
use crate::lake::erase::{self, Actor, EraseOptions, ErasureRecord, Target};
use crate::lake::quarantine::Quarantine;
use crate::lake::wal::{RowRecord, Wal, WalError, WalOptions};
use crate::metrics::{Dimension, Filters, Metric, MetricRequest, parse_time};
use crate::pseudonym::{PseudonymKey, Pseudonymizer};
use crate::query::Engine;
use crate::query::analyst::encode::{ResultFormat, encode as encode_result};
use crate::query::analyst::{Analyst, EngineSource, SandboxError};
use crate::report::mail::SmtpSettings;
use crate::report::schedule::Scheduler;
use crate::sources::{Report, SourceFormat, decode_record};
use auth::{ChatwootAuth, Role, Tokens};

/// Everything `serve` needs, resolved from flags and environment by the CLI.
pub struct ServerOptions {
    pub lake: LakePaths,
    pub listen: SocketAddr,
    pub config: Arc<Config>,
    pub tokens: Tokens,
    pub whatsapp_app_secret: Option<Vec<u8>>,
    pub whatsapp_verify_token: Option<String>,
    pub chatwoot_secret: Option<Vec<u8>>,
    pub pseudonym_key: PseudonymKey,
    pub wal: WalOptions,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Longest a request may take, its body included (408 beyond).
    pub request_timeout: Duration,
    /// Deadlines and the cap of connections ([`listen`]).
    pub connections: listen::ConnectionLimits,
    /// Longest line of `POST /ingest/events` decoded; a longer one is a reject.
    pub max_line_bytes: usize,
    /// The analyst sandbox's bounds (`POST /api/v1/sql` and the Postgres protocol).
    pub analyst_limits: crate::query::analyst::Limits,
    /// Where to answer the Postgres wire protocol, if anywhere.
    pub pg_listen: Option<SocketAddr>,
    /// TLS certificate and key (PEM) for the Postgres listener.
    pub pg_tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Where scheduled reports are sent from (none: scheduled runs fail with a clear error).
    pub smtp: Option<SmtpSettings>,
    /// Rollup refresh and compaction in the background.
    pub upkeep: upkeep::UpkeepOptions,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors_4xx: AtomicU64,
    errors_5xx: AtomicU64,
    events_acked: AtomicU64,
    query_count: AtomicU64,
    query_micros: AtomicU64,
    /// Metric requests answered from [`results::ResultCache`].
    query_cache_hits: AtomicU64,
    /// Metric requests that reused rows of ended intervals kept from an earlier session
    /// ([`carry::Carried`]).
    query_kept_rows_reused: AtomicU64,
}

/// The lake generation (bumped by flushes) and the upkeep generation (bumped by rollup
/// refreshes and compactions) a query session was opened at.
type SessionKey = (u64, u64);

struct AppState {
    paths: LakePaths,
    config: Arc<Config>,
    tokens: Tokens,
    whatsapp_app_secret: Option<Vec<u8>>,
    whatsapp_verify_token: Option<String>,
    chatwoot_secret: Option<Vec<u8>>,
    key: PseudonymKey,
    wal: Wal,
    /// The query session and the lake and upkeep generations it was opened at.
    engine: Mutex<Option<(SessionKey, Arc<Engine>)>>,
    /// The runtime of every query session: Parquet footers and file statistics stay
    /// cached when a session is reopened.
    runtime: crate::query::SharedCaches,
    /// Metric answers for the current session.
    results: results::ResultCache<Arc<crate::metrics::MetricResult>>,
    /// Rows of ended intervals, kept across sessions while their partitions stay the same.
    carried: carry::Carried,
    /// Answers of `sla` with the span of "now" they hold for
    /// ([`crate::metrics::unchanged_until`]), by their key without "now".
    held: results::ResultCache<Held>,
    dashboards: Vec<(String, pages::Dashboard)>,
    counters: Counters,
    quarantine_seq: AtomicU64,
    analyst: Arc<Analyst>,
    /// The scheduled reports and their last runs.
    reports: Arc<Mutex<Scheduler>>,
    smtp: Option<SmtpSettings>,
    /// Held by whatever rewrites or drops lake files besides the flusher (compaction, rollup
    /// refresh, erasure, retention), so they run one at a time.
    maintenance: Arc<Mutex<()>>,
    upkeep: upkeep::UpkeepStats,
    /// Whether the query session reads the rollup tables.
    rollups: bool,
    /// Quarantine files are written under the read side; an erasure, which rewrites them,
    /// takes the write side.
    quarantine_gate: RwLock<()>,
    /// Longest record of JSON Lines decoded; a longer one is rejected as too long.
    max_line_bytes: usize,
    /// What the connections hold and were refused.
    connections: Arc<listen::ConnectionStats>,
    /// The bytes of request bodies held at once ([`listen::hold_body_budget`]).
    body_budget: Arc<listen::BodyBudget>,
}

/// The analyst sessions read the server's current engine.
struct StateEngine(std::sync::Weak<AppState>);

#[async_trait::async_trait]
impl EngineSource for StateEngine {
    async fn engine(&self) -> Result<Arc<Engine>, String> {
        let state = self.0.upgrade().ok_or("the server is stopping")?;
        state.engine().await.map_err(|e| e.message)
    }
}

/// An error answer: `{"error": code, "message": text}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "message": self.message});
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<WalError> for ApiError {
    fn from(e: WalError) -> Self {
        let mut a = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        );
        a.retry_after = Some(match e {
            WalError::Busy(_) => 1,
            // The log tries to write again every second; a client may too, soon.
            WalError::Failed(_) => 2,
            _ => 10,
        });
        a
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Checks `Authorization: Bearer <token>` against the tokens for `needed`. With no tokens
/// configured (loopback only) every caller is allowed.
fn authorize(state: &AppState, headers: &HeaderMap, needed: Role) -> ApiResult<()> {
    if state.tokens.is_empty() {
        return Ok(());
    }
    let Some(presented) = presented_token(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs a bearer token (Authorization: Bearer <token>)",
        ));
    };
    match state.tokens.role_of(presented.as_bytes()) {
        Some(role) if role.allows(needed) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token's role may not call this route (needs {needed:?})"),
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown token",
        )),
    }
}

/// The bearer token of a request, or the one its browser signed in with.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| session_cookie(headers))
}

const SESSION_COOKIE: &str = "supportlake_session";

/// The token a browser signed in with (see `/signin`).
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim())
}

/// An answer and the span of "now" it holds for: from `since` until `until` (for ever
/// when `None`), while the lake stays as it is.
#[derive(Clone)]
struct Held {
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    answer: Arc<crate::metrics::MetricResult>,
}

/// What an ingest route answers once the events are durable.
#[derive(Debug, Serialize)]
struct IngestReceipt {
    /// Records (webhook bodies or lines) read.
    records: u64,
    /// Events now durable; duplicates among them are dropped when they reach the lake.
    accepted: u64,
    /// Records with a reject, kept in `<lake>/_rejected/`.
    rejected_records: u64,
    rejects: Vec<String>,
    skipped: BTreeMap<String, u64>,
}

impl AppState {
    /// Decodes records, keeps rejected ones in quarantine, appends the events to the WAL and
    /// waits until they are durable.
    async fn ingest(
        &self,
        format: SourceFormat,
        records: Vec<&[u8]>,
        input: &str,
    ) -> ApiResult<IngestReceipt> {
        let mut pseudonymizer = Pseudonymizer::new(&self.key);
        let capacity = records.iter().map(|r| r.len()).sum::<usize>();
        let mut rows = RowRecord::new(Utc::now(), capacity);
        let mut total = Report::default();
        let mut rejected_raw: Vec<(u64, Vec<crate::sources::Reject>, &[u8])> = Vec::new();
        let mut n = 0u64;
        for (i, rec) in records.iter().enumerate() {
            if rec.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            n += 1;
            let mut report = Report::default();
            let len = rec.strip_suffix(b"\r").unwrap_or(rec).len();
            if format == SourceFormat::AgentLog && len > self.max_line_bytes {
                // As `supportlake ingest` does: rejected undecoded; the quarantine keeps
                // its start.
                report.rejects.push(crate::ingest::too_long(
                    i as u64 + 1,
                    len as u64,
                    self.max_line_bytes,
                ));
            } else {
                decode_record(
                    format,
                    rec,
                    i as u64 + 1,
                    &mut pseudonymizer,
                    &mut rows,
                    &mut report,
                );
            }
            if !report.rejects.is_empty() {
                rejected_raw.push((i as u64 + 1, report.rejects.clone(), rec));
            }
            total.merge(report);
        }
        if !rejected_raw.is_empty() {
            let _gate = self.quarantine_gate.read().await;
            let run = format!(
                "http-{}-{}",
                Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                self.quarantine_seq.fetch_add(1, Ordering::Relaxed)
            );
            let mut q = Quarantine::new(&self.paths, &run);
            for (rec, rejects, raw) in &rejected_raw {
                q.keep(input, *rec, rejects, raw, raw.len() as u64)
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            e.to_string(),
                        )
                    })?;
            }
            q.finish().map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            })?;
        }
        let accepted = rows.len() as u64;
        if accepted > 0 {
            self.wal.append(rows.finish()).await?;
            self.counters
                .events_acked
                .fetch_add(accepted, Ordering::Relaxed);
        }
        Ok(IngestReceipt {
            records: n,
            accepted,
            rejected_records: rejected_raw.len() as u64,
            rejects: total
                .rejects
                .iter()
                .take(20)
                .map(|r| r.to_string())
                .collect(),
            skipped: total
                .skipped
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        })
    }

    /// The query session, reopened when the flusher has added files since.
    async fn engine(&self) -> ApiResult<Arc<Engine>> {
        Ok(self.session().await?.1)
    }

    /// The query session and the generations it was opened at.
    async fn session(&self) -> ApiResult<(SessionKey, Arc<Engine>)> {
        let generation = (
            self.wal.stats().lake_generation.load(Ordering::SeqCst),
            self.upkeep.generation.load(Ordering::SeqCst),
        );
        let mut slot = self.engine.lock().await;
        if let Some((g, e)) = slot.as_ref()
            && *g == generation
        {
            return Ok((*g, Arc::clone(e)));
        }
        // The upkeep refreshes the rollups right after each flush; reading them meanwhile
        // keeps pages fast at the cost of trailing ingest by that refresh.
        let rollups = if self.rollups {
            crate::query::Rollups::IfConfigMatches
        } else {
            crate::query::Rollups::Never
        };
        let engine = Engine::open_in(
            &self.paths,
            Arc::clone(&self.config),
            rollups,
            Some(self.runtime.clone()),
        )
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        let engine = Arc::new(engine);
        *slot = Some((generation, Arc::clone(&engine)));
        Ok((generation, engine))
    }
}

async fn whatsapp_verify(
    State(s): State<Arc<AppState>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(expected) = s.whatsapp_verify_token.as_deref() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "SUPPORTLAKE_WHATSAPP_VERIFY_TOKEN is not set",
        )
        .into_response();
    };
    let ok = q.get("hub.mode").map(String::as_str) == Some("subscribe")
        && q.get("hub.verify_token").is_some_and(|t| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                t.as_bytes(),
                expected.as_bytes(),
            ))
        });
    match (ok, q.get("hub.challenge")) {
        (true, Some(c)) => (StatusCode::OK, c.clone()).into_response(),
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "hub.mode must be subscribe and hub.verify_token must match",
        )
        .into_response(),
    }
}

async fn whatsapp_post(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<IngestReceipt>> {
    let Some(secret) = s.whatsapp_app_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "SUPPORTLAKE_WHATSAPP_APP_SECRET is not set: WhatsApp deliveries cannot be authenticated",
        ));
    };
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !auth::whatsapp_signature_ok(secret, sig, &body) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            if sig.is_none() {
                "missing X-Hub-Signature-256"
            } else {
                "X-Hub-Signature-256 does not match the body"
            },
        ));
    }
    Ok(axum::Json(
        s.ingest(
            SourceFormat::WhatsApp,
            vec![&body[..]],
            "POST /webhooks/whatsapp",
        )
        .await?,
    ))
}

async fn chatwoot_post(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> ApiResult<axum::Json<IngestReceipt>> {
    let Some(secret) = s.chatwoot_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "SUPPORTLAKE_CHATWOOT_SECRET is not set: Chatwoot deliveries cannot be authenticated",
        ));
    };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let verdict = auth::chatwoot_auth(
        secret,
        h("x-chatwoot-signature"),
        h("x-chatwoot-timestamp"),
        q.get("token").map(String::as_str),
        &body,
        Utc::now().timestamp(),
    );
    let message = match verdict {
        ChatwootAuth::Ok => None,
        ChatwootAuth::Missing => {
            Some("missing X-Chatwoot-Signature/X-Chatwoot-Timestamp (or ?token=)")
        }
        ChatwootAuth::BadSignature => Some("the Chatwoot signature (or token) does not match"),
        ChatwootAuth::Stale => Some("X-Chatwoot-Timestamp is more than 5 minutes from now"),
    };
    if let Some(m) = message {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", m));
    }
    Ok(axum::Json(
        s.ingest(
            SourceFormat::Chatwoot,
            vec![&body[..]],
            "POST /webhooks/chatwoot",
        )
        .await?,
    ))
}

/// `POST /ingest/events` [ingest]: agent-log JSON Lines; a line longer than
/// `--max-line-bytes` is a reject like any other. The token was checked before the body was
/// read ([`require_ingest`]).
async fn ingest_events(
    State(s): State<Arc<AppState>>,
    body: Bytes,
) -> ApiResult<axum::Json<IngestReceipt>> {
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    Ok(axum::Json(
        s.ingest(SourceFormat::AgentLog, lines, "POST /ingest/events")
            .await?,
    ))
}

/// Checks the ingest token before the body is read, so a caller without one cannot make
/// the server hold a body of up to `--max-body`.
async fn require_ingest(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&s, req.headers(), Role::Ingest) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn bad_request(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
}

/// A metric that could not be computed: 503 with `damaged_file` when damaged lake files
/// are the cause (named in the message; the server moves them aside, so a retry reads the
/// rest), 400 otherwise.
fn metric_error(e: crate::metrics::MetricError) -> ApiError {
    match e {
        crate::metrics::MetricError::Query(q @ crate::query::QueryError::Damaged { .. }) => {
            let mut a = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "damaged_file",
                q.to_string(),
            );
            a.retry_after = Some(1);
            a
        }
        other => bad_request(other),
    }
}

/// A metric question from query parameters (the same for the metrics and chart routes).
fn metric_request(
    s: &AppState,
    name: &str,
    q: &BTreeMap<String, String>,
) -> ApiResult<MetricRequest> {
    let metric: Metric = name
        .parse()
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "unknown_metric", format!("{e}")))?;
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let tz = match get("tz") {
        Some(z) => z
            .parse()
            .map_err(|_| bad_request(format!("tz: unknown time zone {z:?}")))?,
        None => s.config.timezone,
    };
    let now = match get("now") {
        Some(t) => parse_time(t, tz).map_err(bad_request)?,
        None => Utc::now(),
    };
    let to = match get("to") {
        Some(t) => parse_time(t, tz).map_err(bad_request)?,
        None => now,
    };
    let from = match get("from") {
        Some(t) => parse_time(t, tz).map_err(bad_request)?,
        None => to - chrono::Duration::days(7),
    };
    if from >= to {
        return Err(bad_request("from must be before to"));
    }
    Ok(MetricRequest {
        metric,
        from,
        to,
        interval: get("interval")
            .unwrap_or("day")
            .parse()
            .map_err(bad_request)?,
        group_by: get("group_by")
            .map(str::parse::<Dimension>)
            .transpose()
            .map_err(bad_request)?,
        tz,
        business_hours: matches!(get("business_hours"), Some("true" | "1")),
        filters: Filters {
            team: get("team").map(str::to_owned),
            agent: get("agent").map(str::to_owned),
            channel: get("channel").map(str::to_owned),
            inbox: get("inbox").map(str::to_owned),
            priority: get("priority").map(str::to_owned),
        },
        now,
        sla_metric: get("sla_metric").map(str::to_owned),
    })
}

impl AppState {
    /// The drill-down rows behind a request.
    async fn conversation_rows(
        &self,
        req: &MetricRequest,
        outcome: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> ApiResult<(arrow::datatypes::SchemaRef, Vec<arrow::array::RecordBatch>)> {
        let engine = self.engine().await?;
        crate::metrics::conversations(&engine, req, outcome, limit, offset)
            .await
            .map_err(metric_error)
    }

    /// Runs a metric, counting it for `/metrics`.
    /// Answers that cannot have changed since they were computed (same session, same
    /// question, and "now" part of the question when the metric reads it) come from the
    /// result cache.
    async fn run_metric(&self, req: &MetricRequest) -> ApiResult<crate::metrics::MetricResult> {
        let (session, engine) = self.session().await?;
        if req.metric == crate::metrics::Metric::Sla {
            return self.run_held(session, &engine, req).await;
        }
        let key = req.cache_key();
        if let Some(hit) = self.results.get(session, &key) {
            self.counters
                .query_cache_hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok((*hit).clone());
        }
        let started = Instant::now();
        let result = self.compute_metric(session, &engine, req).await;
        self.counters.query_count.fetch_add(1, Ordering::Relaxed);
        self.counters
            .query_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let result = result.map_err(metric_error)?;
        self.results.put(session, key, Arc::new(result.clone()));
        Ok(result)
    }

    /// An `sla` answer, kept with the span of "now" it holds for: a page's previous period
    /// (every target in it satisfied, closed or past due) holds until the lake changes, the
    /// current one until the next due time of an open target.
    async fn run_held(
        &self,
        session: SessionKey,
        engine: &Engine,
        req: &MetricRequest,
    ) -> ApiResult<crate::metrics::MetricResult> {
        let key = req.cache_key_without_now();
        if let Some(h) = self.held.get(session, &key)
            && h.since <= req.now
            && h.until.is_none_or(|u| req.now < u)
        {
            self.counters
                .query_cache_hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok((*h.answer).clone());
        }
        let started = Instant::now();
        let computed = async {
            let answer = self.compute_metric(session, engine, req).await?;
            let until = crate::metrics::unchanged_until(engine, req).await?;
            Ok::<_, crate::metrics::MetricError>((answer, until))
        }
        .await;
        self.counters.query_count.fetch_add(1, Ordering::Relaxed);
        self.counters
            .query_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let (answer, until) = computed.map_err(metric_error)?;
        let held = Held {
            since: req.now,
            until,
            answer: Arc::new(answer.clone()),
        };
        self.held.put(session, key, held);
        Ok(answer)
    }

    /// A metric's answer. The rows of the intervals that ended
    /// ([`crate::metrics::MetricRequest::split_for_carry`]) are kept across sessions (see
    /// [`carry`]): only the intervals the lake's last changes can reach, and the rest of
    /// the range, are queried.
    async fn compute_metric(
        &self,
        session: SessionKey,
        engine: &Engine,
        req: &MetricRequest,
    ) -> Result<crate::metrics::MetricResult, crate::metrics::MetricError> {
        crate::metrics::check(req)?;
        let Some((ended, rest)) = req.split_for_carry() else {
            return crate::metrics::run(engine, req).await;
        };
        let key = ended.carry_key();
        let files = engine.rollup_files();
        let (from, cut) = (ended.from.timestamp_micros(), ended.to.timestamp_micros());
        let now = req.now.timestamp_micros();
        let kept = self.carried.get(
            &key,
            (session, now),
            files,
            (from, cut, req.interval, req.tz),
        );
        tracing::debug!(
            metric = req.metric.as_str(),
            ?session,
            kept_through = kept.as_ref().map(|k| k.through),
            cut,
            "metric rows kept from earlier sessions"
        );
        if kept.is_some() {
            self.counters
                .query_kept_rows_reused
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut kept = kept.unwrap_or(carry::Kept {
            rows: Arc::default(),
            through: from,
            since: i64::MIN,
            until: None,
        });
        let mut rows = (*kept.rows).clone();
        if kept.through < cut {
            let since = chrono::DateTime::from_timestamp_micros(kept.through).unwrap_or(ended.from);
            if let Some(part) = ended.span(since, ended.to) {
                rows.extend(crate::metrics::query_rows(engine, &part).await?);
                if req.ended_reads_now() {
                    // These rows hold from this "now" until the next due time in them.
                    let until = crate::metrics::unchanged_until(engine, &part)
                        .await?
                        .map(|u| u.timestamp_micros());
                    kept.since = kept.since.max(now);
                    kept.until = match (kept.until, until) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            kept.rows = Arc::new(rows.clone());
            kept.through = cut;
            self.carried.put(key, session, files, kept);
        }
        if let Some(rest) = rest {
            rows.extend(crate::metrics::query_rows(engine, &rest).await?);
        }
        crate::metrics::shape(req, &rows)
    }
}

async fn metric(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    authorize(&s, &headers, Role::Read)?;
    let req = metric_request(&s, &name, &q)?;
    Ok(axum::Json(s.run_metric(&req).await?).into_response())
}

/// `/api/v1/charts/{name}.svg|.png`: the metric's chart. Besides the metric parameters:
/// `kind` (line, bar, stacked), `target` (a target line, in the metric's unit: seconds or
/// percent), `width`, `height`.
async fn chart(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    authorize(&s, &headers, Role::Read)?;
    let (name, format, mime) = if let Some(n) = file.strip_suffix(".svg") {
        (n, charts::ImageFormat::Svg, "image/svg+xml")
    } else if let Some(n) = file.strip_suffix(".png") {
        (n, charts::ImageFormat::Png, "image/png")
    } else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "charts are /api/v1/charts/<metric>.svg or .png",
        ));
    };
    let req = metric_request(&s, name, &q)?;
    let num = |k: &str| -> ApiResult<Option<f64>> {
        q.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| bad_request(format!("{k}: not a number: {v:?}")))
            })
            .transpose()
    };
    let kind = match q.get("kind").filter(|v| !v.is_empty()) {
        Some(k) => k.parse().map_err(bad_request)?,
        None => charts::ChartKind::Line,
    };
    let result = s.run_metric(&req).await?;
    let title = match req.group_by {
        Some(d) => format!("{} by {} ({})", req.metric, d.as_str(), req.interval),
        None => format!("{} ({})", req.metric, req.interval),
    };
    let opts = charts::ChartOptions {
        kind,
        width: num("width")?.map_or(800, |w| w as u32),
        height: num("height")?.map_or(360, |h| h as u32),
        target: num("target")?,
        title,
    };
    let bytes = tokio::task::spawn_blocking(move || charts::render(&result, &opts, format))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(bad_request)?;
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

/// Pages answer a sign-in redirect instead of a JSON 401: `Some(redirect)` when the
/// browser has no read session.
fn page_auth(s: &AppState, headers: &HeaderMap, here: &str) -> Option<Response> {
    authorize(s, headers, Role::Read).err().map(|_| {
        let to = format!("/signin?next={}", pages::enc(here));
        (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
    })
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn nav(s: &AppState) -> Vec<(String, String)> {
    s.dashboards
        .iter()
        .map(|(n, d)| (n.clone(), d.title.clone()))
        .collect()
}

async fn index_page(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = page_auth(&s, &headers, "/") {
        return r;
    }
    let mut body = String::from("<h1>Dashboards</h1><ul>");
    for (n, d) in &s.dashboards {
        body.push_str(&format!(
            "<li><a href=\"/dashboards/{}\">{}</a> — {}</li>",
            pages::enc(n),
            pages::esc(&d.title),
            pages::esc(&d.description)
        ));
    }
    body.push_str("</ul><p><a href=\"/conversations\">Conversations</a></p>");
    html(pages::frame("Dashboards", &nav(&s), 0, &body))
}

/// The page's filters with the range filled in from the dashboard's default.
fn page_filters(
    q: &BTreeMap<String, String>,
    range_days: u32,
    tz: chrono_tz::Tz,
) -> BTreeMap<String, String> {
    let mut f: BTreeMap<String, String> = q
        .iter()
        .filter(|(k, v)| {
            ["from", "to", "team", "agent", "channel", "business_hours"].contains(&k.as_str())
                && !v.is_empty()
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let today = Utc::now().with_timezone(&tz).date_naive();
    f.entry("to".into())
        .or_insert_with(|| (today + chrono::Duration::days(1)).to_string());
    let to = f["to"].clone();
    f.entry("from".into()).or_insert_with(|| {
        chrono::NaiveDate::parse_from_str(&to, "%Y-%m-%d")
            .map(|d| (d - chrono::Duration::days(i64::from(range_days))).to_string())
            .unwrap_or_default()
    });
    f
}

fn filter_form(action: &str, f: &BTreeMap<String, String>) -> String {
    let v = |k: &str| pages::esc(f.get(k).map_or("", String::as_str));
    format!(
        "<form class=\"filters\" method=\"get\" action=\"{}\">\
         <label>From <input name=\"from\" value=\"{}\" size=\"12\"></label>\
         <label>To <input name=\"to\" value=\"{}\" size=\"12\"></label>\
         <label>Team <input name=\"team\" value=\"{}\" size=\"10\"></label>\
         <label>Agent <input name=\"agent\" value=\"{}\" size=\"12\"></label>\
         <label>Channel <input name=\"channel\" value=\"{}\" size=\"10\"></label>\
         <label><input type=\"checkbox\" name=\"business_hours\" value=\"true\"{}> business hours</label>\
         <button type=\"submit\">Apply</button></form>",
        pages::esc(action),
        v("from"),
        v("to"),
        v("team"),
        v("agent"),
        v("channel"),
        if f.get("business_hours").is_some_and(|b| b == "true") {
            " checked"
        } else {
            ""
        },
    )
}

fn filter_query(f: &BTreeMap<String, String>, extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend_from_slice(extra);
    pages::query(&pairs)
}

async fn dashboard_page(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let here = format!("/dashboards/{}", pages::enc(&name));
    if let Some(r) = page_auth(&s, &headers, &here) {
        return r;
    }
    let Some((_, d)) = s.dashboards.iter().find(|(n, _)| *n == name) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dashboard named {name:?}"),
        )
        .into_response();
    };
    let f = page_filters(&q, d.range_days, s.config.timezone);
    let mut body = format!(
        "<h1>{}</h1><p>{}</p>",
        pages::esc(&d.title),
        pages::esc(&d.description)
    );
    body.push_str(&filter_form(&here, &f));
    let base = metric_request(&s, "wait", &f);
    let base = match base {
        Ok(b) => b,
        Err(e) => {
            body.push_str(&format!(
                "<p class=\"error\">{}</p>",
                pages::esc(&e.message)
            ));
            return html(pages::frame(&d.title, &nav(&s), 0, &body));
        }
    };
    // Headline numbers, each beside the same-length period before.
    let span = base.to - base.from;
    // Every question of the page, asked at once: headlines (each beside the same-length
    // period before) and panels.
    let headlines = [
        ("TME", Metric::Wait, "answered"),
        ("TMA", Metric::Handle, ""),
        ("Open now", Metric::OpenConversations, "waiting"),
        ("SLA", Metric::Sla, ""),
        ("CSAT", Metric::Csat, ""),
    ];
    let mut asked: Vec<MetricRequest> = Vec::new();
    for (_, metric, _) in headlines {
        let mut req = base.clone();
        req.metric = metric;
        req.group_by = None;
        let mut prev = req.clone();
        prev.from = req.from - span;
        prev.to = req.from;
        prev.now = req.from;
        asked.push(req);
        asked.push(prev);
    }
    let panels: Vec<(BTreeMap<String, String>, ApiResult<MetricRequest>)> = d
        .panels
        .iter()
        .map(|p| {
            let mut pq = f.clone();
            pq.insert("interval".into(), p.interval.clone());
            if let Some(g) = &p.group_by {
                pq.insert("group_by".into(), g.clone());
            }
            // One "now" for the whole page.
            let req = metric_request(&s, &p.metric, &pq).map(|mut r| {
                r.now = base.now;
                r
            });
            (pq, req)
        })
        .collect();
    // A headline of a period a panel already charts (the same question but for the
    // grouping) is read off that panel's answer: its totals are the same.
    let panel_keys: Vec<Option<String>> = panels
        .iter()
        .map(|(_, r)| {
            r.as_ref().ok().map(|r| {
                let mut ungrouped = r.clone();
                ungrouped.group_by = None;
                ungrouped.cache_key()
            })
        })
        .collect();
    let from_panel: Vec<Option<usize>> = asked
        .iter()
        .map(|r| {
            let key = r.cache_key();
            panel_keys
                .iter()
                .position(|k| k.as_deref() == Some(key.as_str()))
        })
        .collect();
    let mut answers: Vec<Option<ApiResult<crate::metrics::MetricResult>>> =
        futures::future::join_all(
            asked
                .iter()
                .zip(&from_panel)
                .filter(|(_, p)| p.is_none())
                .map(|(r, _)| r)
                .chain(panels.iter().filter_map(|(_, r)| r.as_ref().ok()))
                .map(|r| s.run_metric(r)),
        )
        .await
        .into_iter()
        .map(Some)
        .collect();
    // Answers in page order: each headline (its own, or its panel's), then each panel.
    let own = from_panel.iter().filter(|p| p.is_none()).count();
    let panel_answer = |i: usize, answers: &[Option<ApiResult<crate::metrics::MetricResult>>]| {
        let n = panels[..i].iter().filter(|(_, r)| r.is_ok()).count();
        answers
            .get(own + n)
            .and_then(|a| a.as_ref())
            .and_then(|a| a.as_ref().ok())
            .cloned()
    };
    let mut headline_answers = Vec::new();
    let mut next_own = 0;
    for p in &from_panel {
        headline_answers.push(match p {
            Some(i) => panel_answer(*i, &answers),
            None => {
                let a = answers[next_own].take().and_then(|a| a.ok());
                next_own += 1;
                a
            }
        });
    }
    let mut answers = answers.into_iter().skip(own).flatten();
    let mut headline_answers = headline_answers.into_iter();

    body.push_str("<div class=\"headlines\">");
    for (label, metric, outcome) in headlines {
        let mut value = || {
            headline_answers
                .next()
                .flatten()
                .as_ref()
                .and_then(pages::headline)
        };
        let now_v = value();
        let before = value();
        let link = format!(
            "/conversations?{}",
            filter_query(&f, &[("outcome", outcome)])
        );
        body.push_str(&format!(
            "<a class=\"headline\" href=\"{}\"><div>{label}</div><div class=\"v\">{}</div><div class=\"c\">{}</div></a>",
            pages::esc(&link),
            pages::show_value(now_v, metric.unit()),
            pages::esc(&pages::show_change(now_v, before, metric.unit())),
        ));
    }
    body.push_str("</div>");
    for (p, (pq, req)) in d.panels.iter().zip(&panels) {
        let chart_html = match req {
            Ok(_) => match answers.next() {
                Some(Ok(r)) => pages::inline_chart(&r, p),
                Some(Err(e)) => format!("<p>{}</p>", pages::esc(&e.message)),
                None => String::new(),
            },
            Err(e) => format!("<p>{}</p>", pages::esc(&e.message)),
        };
        let drill = format!("/conversations?{}", filter_query(&f, &[]));
        let csv = format!(
            "/api/v1/conversations?{}",
            filter_query(&f, &[("format", "csv")])
        );
        let json = format!(
            "/api/v1/metrics/{}?{}",
            pages::enc(&p.metric),
            filter_query(pq, &[])
        );
        body.push_str(&format!(
            "<section class=\"panel\"><h2>{}</h2><a href=\"{}\" title=\"the conversations behind this chart\">{}</a>\
             <div class=\"links\"><a href=\"{}\">conversations</a><a href=\"{}\">CSV</a><a href=\"{}\">JSON</a></div></section>",
            pages::esc(&p.title),
            pages::esc(&drill),
            chart_html,
            pages::esc(&drill),
            pages::esc(&csv),
            pages::esc(&json),
        ));
    }
    html(pages::frame(&d.title, &nav(&s), d.refresh_seconds, &body))
}

const PAGE_ROWS: u64 = 200;

async fn conversations_page(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = page_auth(&s, &headers, "/conversations") {
        return r;
    }
    let f = page_filters(&q, 7, s.config.timezone);
    let offset: u64 = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let outcome = q.get("outcome").filter(|o| !o.is_empty()).cloned();
    let mut body = String::from("<h1>Conversations</h1>");
    body.push_str(&filter_form("/conversations", &f));
    let rows = match metric_request(&s, "wait", &f) {
        Ok(req) => {
            s.conversation_rows(&req, outcome.as_deref(), PAGE_ROWS, offset)
                .await
        }
        Err(e) => Err(e),
    };
    match rows {
        Ok((schema, batches)) => {
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            body.push_str("<table><tr>");
            for field in schema.fields() {
                body.push_str(&format!("<th>{}</th>", pages::esc(field.name())));
            }
            body.push_str("</tr>");
            let fmt = arrow::util::display::FormatOptions::default().with_null("");
            for b in &batches {
                let cols: Vec<_> = b
                    .columns()
                    .iter()
                    .filter_map(|c| {
                        arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &fmt).ok()
                    })
                    .collect();
                for r in 0..b.num_rows() {
                    body.push_str("<tr>");
                    for c in &cols {
                        body.push_str(&format!("<td>{}</td>", pages::esc(&c.value(r).to_string())));
                    }
                    body.push_str("</tr>");
                }
            }
            body.push_str("</table>");
            let outcome = outcome.unwrap_or_default();
            let next = (offset + PAGE_ROWS).to_string();
            body.push_str(&format!(
                "<p>{n} rows from {offset}. {}<a href=\"{}\">CSV of all</a></p>",
                if n as u64 == PAGE_ROWS {
                    format!(
                        "<a href=\"{}\">next {PAGE_ROWS}</a> · ",
                        pages::esc(&format!(
                            "/conversations?{}",
                            filter_query(&f, &[("outcome", &outcome), ("offset", &next)])
                        ))
                    )
                } else {
                    String::new()
                },
                pages::esc(&format!(
                    "/api/v1/conversations?{}",
                    filter_query(&f, &[("outcome", &outcome), ("format", "csv")])
                )),
            ));
        }
        Err(e) => body.push_str(&format!("<p>{}</p>", pages::esc(&e.message))),
    }
    html(pages::frame("Conversations", &nav(&s), 0, &body))
}

/// `/api/v1/conversations`: the drill-down rows as JSON (`limit` ≤ 10 000, `offset`) or,
/// with `format=csv`, as CSV (up to 1 000 000 rows).
async fn conversations_api(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    authorize(&s, &headers, Role::Read)?;
    let req = metric_request(&s, "wait", &q)?;
    let csv = q.get("format").is_some_and(|f| f == "csv");
    let num = |k: &str, d: u64| -> ApiResult<u64> {
        q.get(k).filter(|v| !v.is_empty()).map_or(Ok(d), |v| {
            v.parse()
                .map_err(|_| bad_request(format!("{k}: not a number: {v:?}")))
        })
    };
    let limit =
        num("limit", if csv { 1_000_000 } else { 1000 })?.min(if csv { 1_000_000 } else { 10_000 });
    let offset = num("offset", 0)?;
    let outcome = q
        .get("outcome")
        .filter(|o| !o.is_empty())
        .map(String::as_str);
    let (_, batches) = s.conversation_rows(&req, outcome, limit, offset).await?;
    let internal = |e: arrow::error::ArrowError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    if csv {
        let mut out = Vec::new();
        {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in &batches {
                w.write(b).map_err(internal)?;
            }
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"conversations.csv\"",
                ),
            ],
            out,
        )
            .into_response());
    }
    let mut out = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut out);
        for b in &batches {
            w.write(b).map_err(internal)?;
        }
        w.finish().map_err(internal)?;
    }
    if out.is_empty() {
        out = b"[]".to_vec();
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// `/api/v1/live`: the backlog now, per team — open, waiting for a first reply, unassigned,
/// and the longest current wait.
async fn live(State(s): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&s, &headers, Role::Read)?;
    let now = Utc::now();
    let mut q = BTreeMap::new();
    // One bucket, sampled now.
    q.insert("from".to_owned(), now.to_rfc3339());
    q.insert(
        "to".to_owned(),
        (now + chrono::Duration::seconds(1)).to_rfc3339(),
    );
    q.insert("now".to_owned(), now.to_rfc3339());
    q.insert("interval".to_owned(), "hour".to_owned());
    q.insert("group_by".to_owned(), "team".to_owned());
    let req = metric_request(&s, "open_conversations", &q)?;
    let r = s.run_metric(&req).await?;
    let mut teams = Vec::new();
    let (mut open, mut waiting, mut unassigned) = (0u64, 0u64, 0u64);
    let mut longest: Option<f64> = None;
    for series in &r.series {
        // The last bucket is the one sampled now.
        let Some(p) = series.points.last() else {
            continue;
        };
        if let crate::metrics::rows::Detail::Open {
            waiting: w,
            unassigned: u,
            longest_wait_s,
        } = &p.detail
        {
            let o = p.value.unwrap_or(0.0) as u64;
            open += o;
            waiting += w;
            unassigned += u;
            longest = match (longest, longest_wait_s) {
                (Some(a), Some(b)) => Some(a.max(*b)),
                (a, b) => a.or(*b),
            };
            teams.push(serde_json::json!({
                "team": series.group, "open": o, "waiting": w, "unassigned": u,
                "longest_wait_s": longest_wait_s,
            }));
        }
    }
    Ok(axum::Json(serde_json::json!({
        "at": now.to_rfc3339(),
        "open": open, "waiting": waiting, "unassigned": unassigned, "longest_wait_s": longest,
        "teams": teams,
    }))
    .into_response())
}

/// The OpenAPI description of every route (docs/openapi.json, embedded).
impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        let status = match &e {
            SandboxError::TooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            SandboxError::NotAllowed(_) => StatusCode::FORBIDDEN,
            SandboxError::TooDeep { .. }
            | SandboxError::Parse(_)
            | SandboxError::MultipleStatements(_)
            | SandboxError::Plan(_) => StatusCode::BAD_REQUEST,
            SandboxError::Memory(_)
            | SandboxError::TooManyRows(_)
            | SandboxError::TooManyBytes(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SandboxError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            SandboxError::Busy(_) | SandboxError::Damaged(_) => StatusCode::SERVICE_UNAVAILABLE,
            SandboxError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut a = ApiError::new(status, e.code(), e.to_string());
        if matches!(e, SandboxError::Busy(_) | SandboxError::Damaged(_)) {
            a.retry_after = Some(2);
        }
        a
    }
}

#[derive(serde::Deserialize)]
struct SqlBody {
    sql: String,
}

/// `POST /api/v1/sql` [read]: the body is one SQL statement (plain text, or JSON
/// `{"sql": "…"}`); the answer is JSON unless `format=` (json, csv, arrow, parquet) or the
/// `Accept` header asks for another.
async fn sql_api(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> ApiResult<Response> {
    authorize(&s, &headers, Role::Read)?;
    let format = match q.get("format") {
        Some(name) => ResultFormat::from_name(name).ok_or_else(|| {
            bad_request(format!(
                "format={name}: expected json, csv, arrow or parquet"
            ))
        })?,
        None => ResultFormat::from_accept(
            headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
        )
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "not_acceptable",
                "Accept: expected application/json, text/csv, application/vnd.apache.arrow.stream or application/vnd.apache.parquet",
            )
        })?,
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let sql = if is_json {
        serde_json::from_slice::<SqlBody>(&body)
            .map_err(|e| bad_request(format!("body: expected {{\"sql\": \"…\"}}: {e}")))?
            .sql
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|e| bad_request(format!("body: the SQL is not UTF-8: {e}")))?
    };
    let started = Instant::now();
    let out = s.analyst.query(&sql).await?;
    s.counters.query_count.fetch_add(1, Ordering::Relaxed);
    s.counters
        .query_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let rows = out.rows;
    let bytes = encode_result(&out, format)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r.headers_mut()
        .insert("x-supportlake-rows", HeaderValue::from(rows as u64));
    Ok(r)
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../docs/openapi.json"),
    )
        .into_response()
}

async fn signin_form(Query(q): Query<BTreeMap<String, String>>) -> Response {
    let next = q.get("next").cloned().unwrap_or_else(|| "/".into());
    let body = format!(
        "<h1>Sign in</h1><form method=\"post\" action=\"/signin\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>Read token <input type=\"password\" name=\"token\" autofocus></label> <button type=\"submit\">Sign in</button></form>",
        pages::esc(&next)
    );
    html(pages::frame("Sign in", &[], 0, &body))
}

async fn signin(
    State(s): State<Arc<AppState>>,
    axum::Form(f): axum::Form<BTreeMap<String, String>>,
) -> Response {
    let token = f.get("token").map(String::as_str).unwrap_or_default();
    let next = f
        .get("next")
        .filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .cloned()
        .unwrap_or_else(|| "/".into());
    match s.tokens.role_of(token.as_bytes()) {
        Some(role) if role.allows(Role::Read) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, next),
                (
                    header::SET_COOKIE,
                    format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
                ),
            ],
        )
            .into_response(),
        _ => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "not a read token")
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready (200) when the server takes events; `degraded` (still 200) when it works around
/// a fault — flushes failing, damaged files moved aside, rollups not refreshing; not ready
/// (503, the error shape) when the write-ahead log cannot take events. Every problem is
/// named in `problems`.
async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let health = s.wal.stats().health();
    let mut problems: Vec<String> = health.not_ready.iter().cloned().collect();
    problems.extend(health.degraded);
    let damaged = {
        let paths = s.paths.clone();
        tokio::task::spawn_blocking(move || crate::lake::damage::list(&paths))
            .await
            .unwrap_or_default()
    };
    for d in damaged.iter().take(10) {
        problems.push(format!(
            "damaged data file {} moved aside to {} ({})",
            d.was,
            d.path
                .strip_prefix(s.paths.root())
                .unwrap_or(&d.path)
                .display(),
            d.why
        ));
    }
    if damaged.len() > 10 {
        problems.push(format!(
            "and {} more damaged files under _damaged/",
            damaged.len() - 10
        ));
    }
    if s.upkeep.refresh_failing.load(Ordering::Relaxed) {
        problems.push(
            "the rollup refresh fails (see the log); pages show the rollups of the last refresh"
                .into(),
        );
    }
    if let Some(why) = health.not_ready {
        let body = serde_json::json!({
            "error": "not_ready",
            "message": why,
            "status": "not_ready",
            "problems": problems,
        });
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        return r;
    }
    let status = if problems.is_empty() {
        "ready"
    } else {
        "degraded"
    };
    axum::Json(serde_json::json!({"status": status, "problems": problems})).into_response()
}

async fn prometheus(State(s): State<Arc<AppState>>) -> Response {
    let c = &s.counters;
    let w = s.wal.stats();
    let lag = w.ingest_lag().as_secs_f64();
    let l = |v: &AtomicU64| v.load(Ordering::Relaxed);
    let text = format!(
        "# HELP supportlake_http_requests_total HTTP requests answered.\n\
         # TYPE supportlake_http_requests_total counter\n\
         supportlake_http_requests_total {}\n\
         # HELP supportlake_http_errors_total HTTP answers with an error status, by class.\n\
         # TYPE supportlake_http_errors_total counter\n\
         supportlake_http_errors_total{{class=\"4xx\"}} {}\n\
         supportlake_http_errors_total{{class=\"5xx\"}} {}\n\
         # HELP supportlake_events_acknowledged_total Events made durable and acknowledged.\n\
         # TYPE supportlake_events_acknowledged_total counter\n\
         supportlake_events_acknowledged_total {}\n\
         # HELP supportlake_wal_syncs_total fsyncs of the write-ahead log (each covers a group of appends).\n\
         # TYPE supportlake_wal_syncs_total counter\n\
         supportlake_wal_syncs_total {}\n\
         # HELP supportlake_wal_appends_total Appends to the write-ahead log.\n\
         # TYPE supportlake_wal_appends_total counter\n\
         supportlake_wal_appends_total {}\n\
         # HELP supportlake_wal_unflushed_bytes Bytes in the write-ahead log not yet in the lake.\n\
         # TYPE supportlake_wal_unflushed_bytes gauge\n\
         supportlake_wal_unflushed_bytes {}\n\
         # HELP supportlake_ingest_lag_seconds Age of the oldest acknowledged event not yet in the lake.\n\
         # TYPE supportlake_ingest_lag_seconds gauge\n\
         supportlake_ingest_lag_seconds {lag:.3}\n\
         # HELP supportlake_flushes_total Flushes of the write-ahead log into Parquet.\n\
         # TYPE supportlake_flushes_total counter\n\
         supportlake_flushes_total {}\n\
         # HELP supportlake_last_flush_seconds Duration of the last flush.\n\
         # TYPE supportlake_last_flush_seconds gauge\n\
         supportlake_last_flush_seconds {:.6}\n\
         # HELP supportlake_rollup_refreshes_total Rollup refreshes (after flushes).\n\
         # TYPE supportlake_rollup_refreshes_total counter\n\
         supportlake_rollup_refreshes_total {}\n\
         # HELP supportlake_rollup_refresh_failures_total Rollup refreshes that failed.\n\
         # TYPE supportlake_rollup_refresh_failures_total counter\n\
         supportlake_rollup_refresh_failures_total {}\n\
         # HELP supportlake_last_rollup_refresh_seconds Duration of the last rollup refresh.\n\
         # TYPE supportlake_last_rollup_refresh_seconds gauge\n\
         supportlake_last_rollup_refresh_seconds {:.6}\n\
         # HELP supportlake_compaction_files_merged_total Small files merged by compaction.\n\
         # TYPE supportlake_compaction_files_merged_total counter\n\
         supportlake_compaction_files_merged_total {}\n\
         # HELP supportlake_wal_flush_failures_total Flushes of the write-ahead log that failed (the events stay in the log and are retried).\n\
         # TYPE supportlake_wal_flush_failures_total counter\n\
         supportlake_wal_flush_failures_total {}\n\
         # HELP supportlake_wal_recoveries_total Times the write-ahead log took appends again after a failed write.\n\
         # TYPE supportlake_wal_recoveries_total counter\n\
         supportlake_wal_recoveries_total {}\n\
         # HELP supportlake_wal_writable Whether the write-ahead log takes appends (0 while a failure lasts).\n\
         # TYPE supportlake_wal_writable gauge\n\
         supportlake_wal_writable {}\n\
         # HELP supportlake_wal_reserve_held Whether the write-ahead log's reserve of disk space is in place.\n\
         # TYPE supportlake_wal_reserve_held gauge\n\
         supportlake_wal_reserve_held {}\n\
         # HELP supportlake_wal_damaged_bytes_total Bytes of log segments that could not be read (torn writes included).\n\
         # TYPE supportlake_wal_damaged_bytes_total counter\n\
         supportlake_wal_damaged_bytes_total {}\n\
         # HELP supportlake_wal_damaged_runs_total Runs of damaged log bytes that may have held acknowledged events (kept in _wal/damaged/).\n\
         # TYPE supportlake_wal_damaged_runs_total counter\n\
         supportlake_wal_damaged_runs_total {}\n\
         # HELP supportlake_damaged_files_moved_total Damaged data files moved aside to _damaged/.\n\
         # TYPE supportlake_damaged_files_moved_total counter\n\
         supportlake_damaged_files_moved_total {}\n\
         # HELP supportlake_http_connections_open Client connections open now.\n\
         # TYPE supportlake_http_connections_open gauge\n\
         supportlake_http_connections_open {}\n\
         # HELP supportlake_http_connections_total Client connections accepted.\n\
         # TYPE supportlake_http_connections_total counter\n\
         supportlake_http_connections_total {}\n\
         # HELP supportlake_http_connections_refused_total Connections over --max-connections, refused.\n\
         # TYPE supportlake_http_connections_refused_total counter\n\
         supportlake_http_connections_refused_total {}\n\
         # HELP supportlake_http_bodies_refused_total Requests answered 503 because their bodies did not fit --max-body-memory.\n\
         # TYPE supportlake_http_bodies_refused_total counter\n\
         supportlake_http_bodies_refused_total {}\n\
         # HELP supportlake_queries_total Metric queries run.\n\
         # TYPE supportlake_queries_total counter\n\
         supportlake_queries_total {}\n\
         # HELP supportlake_query_seconds_total Time spent in metric queries.\n\
         # TYPE supportlake_query_seconds_total counter\n\
         supportlake_query_seconds_total {:.6}\n\
         # HELP supportlake_query_cache_hits_total Metric requests answered from the result cache.\n\
         # TYPE supportlake_query_cache_hits_total counter\n\
         supportlake_query_cache_hits_total {}\n\
         # HELP supportlake_query_kept_rows_reused_total Metric requests that reused the rows of ended intervals kept from an earlier state of the lake.\n\
         # TYPE supportlake_query_kept_rows_reused_total counter\n\
         supportlake_query_kept_rows_reused_total {}\n",
        l(&c.requests),
        l(&c.errors_4xx),
        l(&c.errors_5xx),
        l(&c.events_acked),
        l(&w.syncs),
        l(&w.appends),
        l(&w.bytes_unflushed),
        l(&w.flushes),
        l(&w.last_flush_micros) as f64 / 1e6,
        l(&s.upkeep.refreshes),
        l(&s.upkeep.refresh_failures),
        l(&s.upkeep.last_refresh_micros) as f64 / 1e6,
        l(&s.upkeep.files_merged),
        l(&w.flush_failures),
        l(&w.recoveries),
        u8::from(!w.failed.load(Ordering::Relaxed)),
        u8::from(w.reserve_held.load(Ordering::Relaxed)),
        l(&w.damaged_bytes),
        l(&w.damaged_runs),
        crate::lake::damage::FILES_MOVED.load(Ordering::Relaxed),
        l(&s.connections.open),
        l(&s.connections.accepted),
        l(&s.connections.refused),
        l(&s.connections.bodies_refused),
        l(&c.query_count),
        l(&c.query_micros) as f64 / 1e6,
        l(&c.query_cache_hits),
        l(&c.query_kept_rows_reused),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn count_requests(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let r = next.run(req).await;
    s.counters.requests.fetch_add(1, Ordering::Relaxed);
    if r.status().is_client_error() {
        s.counters.errors_4xx.fetch_add(1, Ordering::Relaxed);
    } else if r.status().is_server_error() {
        s.counters.errors_5xx.fetch_add(1, Ordering::Relaxed);
    }
    r
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Gives every error answer the JSON error shape. The routes' own errors have it already;
/// what axum and the layers answer by themselves — extractor rejections (a path parameter
/// that does not decode, a body that cannot be read, a form of another content type), 405,
/// the body limit's 413, the timeout's 408 — is plain text or empty, and is rewritten here
/// with its status and headers (`Allow`, `Retry-After`) kept and its text as the message.
/// A 408 also closes the connection: the rest of its body may still be on the way.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let r = next.run(req).await;
    let status = r.status();
    if !status.is_client_error() && !status.is_server_error() {
        return r;
    }
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let (mut parts, body) = r.into_parts();
    if status == StatusCode::REQUEST_TIMEOUT {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if is_json {
        return Response::from_parts(parts, body);
    }
    // Rejections are a line of text; anything longer is not worth a message.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", None),
        StatusCode::UNAUTHORIZED => ("unauthorized", None),
        StatusCode::FORBIDDEN => ("forbidden", None),
        StatusCode::NOT_FOUND => ("not_found", None),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            (
                "method_not_allowed",
                Some(format!(
                    "this route does not take {method} (it takes {allowed})"
                )),
            )
        }
        StatusCode::NOT_ACCEPTABLE => ("not_acceptable", None),
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            Some("the request took longer than allowed (--request-timeout)".to_owned()),
        ),
        StatusCode::LENGTH_REQUIRED => ("length_required", None),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            Some("the request body is larger than the limit (--max-body)".to_owned()),
        ),
        StatusCode::URI_TOO_LONG => ("uri_too_long", None),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", None),
        StatusCode::UNPROCESSABLE_ENTITY => ("unprocessable", None),
        StatusCode::TOO_MANY_REQUESTS => ("too_many_requests", None),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ("headers_too_large", None),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", None),
        StatusCode::GATEWAY_TIMEOUT => ("timeout", None),
        s if s.is_client_error() => ("client_error", None),
        _ => ("internal", None),
    };
    let message = if status.is_server_error() {
        // Whatever a layer said of its failure is for the log, not for the caller.
        warn!(%status, detail = text.as_deref().unwrap_or(""), "error answer from a layer");
        message.unwrap_or_else(|| "the server could not answer this request".to_owned())
    } else {
        message
            .or(text)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned())
    };
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The routes, over a started write-ahead log.
fn router(state: Arc<AppState>, max_body: usize, timeout: Duration) -> Router {
    Router::new()
        .route(
            "/webhooks/whatsapp",
            get(whatsapp_verify).post(whatsapp_post),
        )
        .route("/webhooks/chatwoot", post(chatwoot_post))
        .route(
            "/ingest/events",
            post(ingest_events).route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                require_ingest,
            )),
        )
        .route("/api/v1/metrics/{name}", get(metric))
        .route("/api/v1/charts/{file}", get(chart))
        .route("/api/v1/conversations", get(conversations_api))
        .route("/api/v1/live", get(live))
        .route("/api/v1/sql", post(sql_api))
        .route("/api/v1/reports", get(reports_api))
        .route("/api/v1/customers/{key}", delete(erase_customer))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/", get(index_page))
        .route("/dashboards/{name}", get(dashboard_page))
        .route("/conversations", get(conversations_page))
        .route("/signin", get(signin_form).post(signin))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.body_budget),
            listen::hold_body_budget,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "no tokens are configured, so the server only listens on loopback; {0} is not a loopback address (set SUPPORTLAKE_TOKENS)"
    )]
    OpenWithoutTokens(SocketAddr),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Dashboards(String),
    #[error("Postgres TLS: {0}")]
    Tls(String),
    #[error("reports: {0}")]
    Reports(String),
    #[error("query engine: {0}")]
    Query(String),
    #[error("stopped with acknowledged events still only in the write-ahead log: {0}")]
    Unflushed(String),
}

/// Runs the scheduled reports at their times until the server stops.
async fn run_reports(state: std::sync::Weak<AppState>) {
    loop {
        let Some(s) = state.upgrade() else { return };
        let now = Utc::now();
        let due = s.reports.lock().await.tick(now);
        match due {
            Ok(due) => {
                for d in due {
                    run_one_report(&s, &d).await;
                }
            }
            Err(e) => warn!(error = %e, "reports: cannot record a run"),
        }
        let wake = s.reports.lock().await.next_wake(Utc::now());
        drop(s);
        let wait = wake
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        tokio::time::sleep(wait + Duration::from_millis(200)).await;
    }
}

async fn run_one_report(s: &AppState, due: &crate::report::schedule::Due) {
    let spec = {
        let sched = s.reports.lock().await;
        sched.specs().iter().find(|r| r.name == due.name).cloned()
    };
    let Some(spec) = spec else { return };
    let (from, to) = spec.period.resolve(due.scheduled_for, spec.tz);
    let note = due.late.then(|| {
        crate::report::schedule::late_note(due, &spec, spec.language == crate::report::Language::Pt)
    });
    let result: Result<(), String> = async {
        let smtp = s.smtp.as_ref().ok_or(
            "no SMTP server configured (set SUPPORTLAKE_SMTP_URL or [smtp] url)".to_owned(),
        )?;
        let engine = s.engine().await.map_err(|e| e.message)?;
        let report = crate::report::build(&engine, &spec, from, to, Utc::now(), note.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let message = crate::report::mail::message(&report, &smtp.from, &spec.recipients)
            .map_err(|e| e.to_string())?;
        crate::report::mail::send(smtp, message)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match &result {
        Ok(()) => {
            info!(report = %spec.name, scheduled_for = %due.scheduled_for, late = due.late, recipients = spec.recipients.len(), "report sent")
        }
        Err(e) => {
            warn!(report = %spec.name, scheduled_for = %due.scheduled_for, error = %e, "report failed")
        }
    }
    if let Err(e) = s
        .reports
        .lock()
        .await
        .finish(&spec.name, Utc::now(), Some((from, to)), result)
    {
        warn!(error = %e, "reports: cannot record the end of a run");
    }
}

/// `GET /api/v1/reports` [read]: every report, its schedule, next time and last run.
async fn reports_api(State(s): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&s, &headers, Role::Read)?;
    let all = crate::report::spec::all(&s.config)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let sched = s.reports.lock().await;
    let now = Utc::now();
    let items: Vec<serde_json::Value> = all
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "cron": r.cron,
                "timezone": r.tz.name(),
                "period": match &r.period {
                    crate::report::Period::Yesterday => "yesterday".to_owned(),
                    crate::report::Period::LastWeek => "last-week".to_owned(),
                    crate::report::Period::LastMonth => "last-month".to_owned(),
                    crate::report::Period::Range(a, b) => format!("{}/{}", a.to_rfc3339(), b.to_rfc3339()),
                },
                "recipients": r.recipients,
                "next_run": crate::report::schedule::next_after(r, now),
                "last_run": sched.last_run(&r.name),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "reports": items })).into_response())
}

/// `DELETE /api/v1/customers/{key}` [admin]: erases one customer — `key` is the customer
/// key (64 hex characters) or, URL-encoded, a phone number or contact id — and answers the
/// audit record. Events acknowledged before the request are flushed into Parquet first and
/// erased there; the erasure continues to its end even if the client goes away.
async fn erase_customer(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<ErasureRecord>> {
    authorize(&s, &headers, Role::Admin)?;
    let actor = Actor {
        via: "http".into(),
        who: match presented_token(&headers).and_then(|t| s.tokens.position_of(t.as_bytes())) {
            Some(n) => format!("admin token #{n} of SUPPORTLAKE_TOKENS"),
            None => "no token (none configured, loopback only)".into(),
        },
    };
    let target = Target::parse(&key, &s.key).map_err(bad_request)?;
    let state = Arc::clone(&s);
    // A task of its own: the locks stay held until the work on the flusher thread is done,
    // even if this request is dropped (client gone, timeout).
    let task = tokio::spawn(async move {
        let _maintenance = state.maintenance.lock().await;
        let _quarantine = state.quarantine_gate.write().await;
        let paths = state.paths.clone();
        let pkey = state.key.clone();
        state
            .wal
            .run_exclusive(move || {
                erase::erase(
                    &paths,
                    &target,
                    &pkey,
                    actor,
                    Utc::now(),
                    &EraseOptions::default(),
                )
            })
            .await
    });
    let internal = |e: String| {
        warn!(error = %e, "erasure failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "erasure_failed",
            format!("the erasure did not finish ({e}); send the request again to finish it"),
        )
    };
    let done = task
        .await
        .map_err(|e| internal(e.to_string()))??
        .map_err(|e| internal(e.to_string()))?;
    Ok(axum::Json(done.record))
}

/// What the server does with damaged `events` files a query finds: moves them aside
/// (under the maintenance lock, on the flusher thread after a flush, so no flush or
/// compaction reads them meanwhile), after checking once more that they are still damaged,
/// and reopens the query session.
fn damage_watch(
    slot: Arc<std::sync::OnceLock<std::sync::Weak<AppState>>>,
) -> crate::query::DamageWatch {
    crate::query::DamageWatch::with_hook(move |files| {
        let Some(state) = slot.get().cloned() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let Some(s) = state.upgrade() else { return };
            let _maintenance = s.maintenance.lock().await;
            let paths = s.paths.clone();
            let moved = s
                .wal
                .run_exclusive(move || {
                    let mut moved = 0;
                    for (p, _) in files {
                        if let Ok(Some(why)) = crate::lake::damage::check_file(&p)
                            && crate::lake::damage::quarantine(&paths, &p, &why, std::time::SystemTime::now()).is_ok()
                        {
                            moved += 1;
                        }
                    }
                    moved
                })
                .await;
            match moved {
                Ok(n) if n > 0 => {
                    s.upkeep.generation.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot move damaged files aside now; the next query that meets them tries again"),
            }
        });
    })
}

/// Maintenance in the background: an erasure a crash interrupted is finished at start;
/// with `[retention]` configured, expired partitions are dropped at start and then daily.
async fn run_maintenance(state: std::sync::Weak<AppState>) {
    if let Some(s) = state.upgrade()
        && erase::is_pending(&s.paths)
    {
        let _maintenance = s.maintenance.lock().await;
        let _quarantine = s.quarantine_gate.write().await;
        let (paths, pkey) = (s.paths.clone(), s.key.clone());
        match s
            .wal
            .run_exclusive(move || {
                erase::finish_interrupted(&paths, &pkey, &EraseOptions::default())
            })
            .await
        {
            Ok(Ok(Some(r))) => {
                info!(erasure = %r.erasure_id, rows = r.total_rows(), "finished an interrupted erasure")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot finish an interrupted erasure"),
            Err(e) => warn!(error = %e, "cannot finish an interrupted erasure"),
        }
    }
    loop {
        let Some(s) = state.upgrade() else { return };
        if s.config.retention.is_empty() {
            return;
        }
        let rules = s.config.retention.clone();
        let today = Utc::now().date_naive();
        let paths = s.paths.clone();
        let result = {
            let _maintenance = s.maintenance.lock().await;
            s.wal
                .run_exclusive(move || {
                    let plan = crate::lake::retention::plan(&paths, &rules, today)?;
                    crate::lake::retention::apply(&paths, &plan)
                })
                .await
        };
        match result {
            Ok(Ok(dropped)) => info!(dropped = dropped.len(), %today, "retention done"),
            Ok(Err(e)) => warn!(error = %e, "retention failed; retrying tomorrow"),
            Err(e) => warn!(error = %e, "retention failed; retrying tomorrow"),
        }
        drop(s);
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    }
}

/// Runs the server until SIGTERM or Ctrl-C; then drains in-flight requests and flushes the
/// write-ahead log into the lake before returning.
pub async fn serve(opts: ServerOptions) -> Result<(), ServeError> {
    if opts.tokens.is_empty() && !opts.listen.ip().is_loopback() {
        return Err(ServeError::OpenWithoutTokens(opts.listen));
    }
    let (wal, threads) = {
        let paths = opts.lake.clone();
        let w = opts.wal.clone();
        tokio::task::spawn_blocking(move || Wal::start(paths, w))
            .await
            .map_err(|e| WalError::Failed(e.to_string()))??
    };
    let analyst = Analyst::new(opts.analyst_limits.clone(), Arc::clone(&opts.config))?;
    let specs =
        crate::report::spec::all(&opts.config).map_err(|e| ServeError::Reports(e.to_string()))?;
    let scheduler =
        Scheduler::open(opts.lake.root(), specs).map_err(|e| ServeError::Reports(e.to_string()))?;
    if !scheduler.specs().is_empty() && opts.smtp.is_none() {
        warn!(
            "reports are scheduled but no SMTP server is configured (SUPPORTLAKE_SMTP_URL): their runs will fail"
        );
    }
    // The damaged files queries find are moved aside by the server, which needs its state.
    let state_slot: Arc<std::sync::OnceLock<std::sync::Weak<AppState>>> = Arc::default();
    let connection_stats = Arc::new(listen::ConnectionStats::default());
    let state = Arc::new(AppState {
        paths: opts.lake.clone(),
        config: opts.config,
        tokens: opts.tokens,
        whatsapp_app_secret: opts.whatsapp_app_secret,
        whatsapp_verify_token: opts.whatsapp_verify_token,
        chatwoot_secret: opts.chatwoot_secret,
        key: opts.pseudonym_key,
        wal,
        engine: Mutex::new(None),
        runtime: crate::query::SharedCaches::new()
            .map_err(|e| ServeError::Query(e.to_string()))?
            .with_damage_watch(damage_watch(Arc::clone(&state_slot))),
        results: results::ResultCache::default(),
        carried: carry::Carried::default(),
        held: results::ResultCache::default(),
        dashboards: pages::builtin().map_err(ServeError::Dashboards)?,
        counters: Counters::default(),
        quarantine_seq: AtomicU64::new(0),
        analyst: Arc::clone(&analyst),
        reports: Arc::new(Mutex::new(scheduler)),
        smtp: opts.smtp.clone(),
        maintenance: Arc::new(Mutex::new(())),
        upkeep: upkeep::UpkeepStats::default(),
        rollups: opts.upkeep.rollups,
        quarantine_gate: RwLock::new(()),
        connections: Arc::clone(&connection_stats),
        body_budget: Arc::new(listen::BodyBudget::new(
            &opts.connections,
            opts.max_body_bytes,
            Arc::clone(&connection_stats),
        )),
        max_line_bytes: opts.max_line_bytes,
    });
    let _ = state_slot.set(Arc::downgrade(&state));
    tokio::spawn(run_reports(Arc::downgrade(&state)));
    tokio::spawn(run_maintenance(Arc::downgrade(&state)));
    upkeep::start(Arc::downgrade(&state), opts.upkeep.clone())?;
    analyst.set_source(Arc::new(StateEngine(Arc::downgrade(&state))));
    if let Some(pg_addr) = opts.pg_listen {
        if state.tokens.is_empty() && !pg_addr.ip().is_loopback() {
            return Err(ServeError::OpenWithoutTokens(pg_addr));
        }
        let tls = match &opts.pg_tls {
            Some((cert, key)) => {
                Some(crate::query::analyst::pg::tls_acceptor(cert, key).map_err(ServeError::Tls)?)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(pg_addr)
            .await
            .map_err(|e| ServeError::Listen(pg_addr, e))?;
        let bound = listener.local_addr()?;
        println!("listening on postgres://{bound}/supportlake");
        let tokens = state.tokens.clone();
        let analyst = Arc::clone(&analyst);
        tokio::spawn(async move {
            if let Err(e) = crate::query::analyst::pg::serve(listener, analyst, tokens, tls).await {
                warn!(error = %e, "the Postgres listener stopped");
            }
        });
    }
    if state.tokens.is_empty() {
        warn!(
            "no tokens configured (SUPPORTLAKE_TOKENS): listening on loopback only, every route open"
        );
    }
    let app = router(
        Arc::clone(&state),
        opts.max_body_bytes,
        opts.request_timeout,
    );
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| ServeError::Listen(opts.listen, e))?;
    let addr = listener.local_addr()?;
    let _trimmer = memory::start()?;
    // Handlers are installed before the address is announced: a SIGTERM from then on
    // drains and flushes instead of killing.
    let shutdown = shutdown_signal()?;
    info!(%addr, lake = %opts.lake.root().display(), "serving");
    println!("listening on http://{addr}");
    listen::run(listener, app, &opts.connections, connection_stats, shutdown).await;
    info!("draining done; flushing the write-ahead log into the lake");
    drop(state);
    tokio::task::spawn_blocking(move || threads.shutdown())
        .await
        .map_err(|e| WalError::Failed(e.to_string()))?
        .map_err(ServeError::Unflushed)?;
    Ok(())
}

/// A future that completes on SIGTERM or Ctrl-C; the handlers are installed now.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
