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
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus text).
//!
//! Every error answers `{"error": "<code>", "message": "<text>"}`. A 2xx on an ingest route
//! means the events are fsynced in the write-ahead log; when the log cannot take them the
//! answer is 503 with `Retry-After`.

pub mod auth;

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
use axum::routing::{get, post};
use chrono::Utc;
use serde::Serialize;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::charts;
use crate::config::Config;
use crate::event::EventBatchBuilder;
use crate::lake::LakePaths;
use crate::lake::quarantine::Quarantine;
use crate::lake::wal::{Wal, WalError, WalOptions, encode};
use crate::metrics::{Dimension, Filters, Metric, MetricRequest, parse_time};
use crate::pseudonym::{PseudonymKey, Pseudonymizer};
use crate::query::Engine;
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
    /// Longest a request may take (408 beyond).
    pub request_timeout: Duration,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors_4xx: AtomicU64,
    errors_5xx: AtomicU64,
    events_acked: AtomicU64,
    query_count: AtomicU64,
    query_micros: AtomicU64,
}

struct AppState {
    paths: LakePaths,
    config: Arc<Config>,
    tokens: Tokens,
    whatsapp_app_secret: Option<Vec<u8>>,
    whatsapp_verify_token: Option<String>,
    chatwoot_secret: Option<Vec<u8>>,
    key: PseudonymKey,
    wal: Wal,
    /// The query session and the lake generation it was opened at.
    engine: Mutex<Option<(u64, Arc<Engine>)>>,
    counters: Counters,
    quarantine_seq: AtomicU64,
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
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
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
        let mut builder = EventBatchBuilder::new(Utc::now());
        let mut total = Report::default();
        let mut rejected_raw: Vec<(u64, Vec<crate::sources::Reject>, &[u8])> = Vec::new();
        let mut n = 0u64;
        for (i, rec) in records.iter().enumerate() {
            if rec.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            n += 1;
            let mut report = Report::default();
            decode_record(
                format,
                rec,
                i as u64 + 1,
                &mut pseudonymizer,
                &mut builder,
                &mut report,
            );
            if !report.rejects.is_empty() {
                rejected_raw.push((i as u64 + 1, report.rejects.clone(), rec));
            }
            total.merge(report);
        }
        if !rejected_raw.is_empty() {
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
        let accepted = builder.len() as u64;
        if accepted > 0 {
            let batch = builder.finish();
            let payload = encode(&batch).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
            self.wal.append(payload).await?;
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
        let generation = self.wal.stats().lake_generation.load(Ordering::SeqCst);
        let mut slot = self.engine.lock().await;
        if let Some((g, e)) = slot.as_ref()
            && *g == generation
        {
            return Ok(Arc::clone(e));
        }
        let engine = Engine::open(&self.paths, Arc::clone(&self.config))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
        let engine = Arc::new(engine);
        *slot = Some((generation, Arc::clone(&engine)));
        Ok(engine)
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

async fn ingest_events(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<IngestReceipt>> {
    authorize(&s, &headers, Role::Ingest)?;
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    Ok(axum::Json(
        s.ingest(SourceFormat::AgentLog, lines, "POST /ingest/events")
            .await?,
    ))
}

fn bad_request(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
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
    /// Runs a metric, counting it for `/metrics`.
    async fn run_metric(&self, req: &MetricRequest) -> ApiResult<crate::metrics::MetricResult> {
        let engine = self.engine().await?;
        let started = Instant::now();
        let result = crate::metrics::run(&engine, req).await;
        self.counters.query_count.fetch_add(1, Ordering::Relaxed);
        self.counters
            .query_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        result.map_err(bad_request)
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

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let st = s.wal.stats();
    if st.failed.load(Ordering::Relaxed) {
        let why = st
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default();
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("write-ahead log: {why}"),
        )
        .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
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
         # HELP supportlake_queries_total Metric queries run.\n\
         # TYPE supportlake_queries_total counter\n\
         supportlake_queries_total {}\n\
         # HELP supportlake_query_seconds_total Time spent in metric queries.\n\
         # TYPE supportlake_query_seconds_total counter\n\
         supportlake_query_seconds_total {:.6}\n",
        l(&c.requests),
        l(&c.errors_4xx),
        l(&c.errors_5xx),
        l(&c.events_acked),
        l(&w.syncs),
        l(&w.appends),
        l(&w.bytes_unflushed),
        l(&w.flushes),
        l(&w.last_flush_micros) as f64 / 1e6,
        l(&c.query_count),
        l(&c.query_micros) as f64 / 1e6,
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

/// Turns the body-limit layer's plain 413 into the JSON error shape.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let r = next.run(req).await;
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !is_json => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is larger than the limit",
        )
        .into_response(),
        StatusCode::REQUEST_TIMEOUT if !is_json => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took too long",
        )
        .into_response(),
        _ => r,
    }
}

/// The routes, over a started write-ahead log.
fn router(state: Arc<AppState>, max_body: usize, timeout: Duration) -> Router {
    Router::new()
        .route(
            "/webhooks/whatsapp",
            get(whatsapp_verify).post(whatsapp_post),
        )
        .route("/webhooks/chatwoot", post(chatwoot_post))
        .route("/ingest/events", post(ingest_events))
        .route("/api/v1/metrics/{name}", get(metric))
        .route("/api/v1/charts/{file}", get(chart))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
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
        counters: Counters::default(),
        quarantine_seq: AtomicU64::new(0),
    });
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
    // Handlers are installed before the address is announced: a SIGTERM from then on
    // drains and flushes instead of killing.
    let shutdown = shutdown_signal()?;
    info!(%addr, lake = %opts.lake.root().display(), "serving");
    println!("listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    info!("draining done; flushing the write-ahead log into the lake");
    drop(state);
    tokio::task::spawn_blocking(move || threads.shutdown())
        .await
        .map_err(|e| WalError::Failed(e.to_string()))?;
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
