//! The accept loop of `serve`: what one connection may hold of the server.
//!
//! - **Header timeout.** A client has [`ConnectionLimits::header_timeout`] to send a request
//!   head (request line and headers), counted from the connection's start or from the end
//!   of the previous answer; so a client trickling its head a byte at a time, and a
//!   keep-alive connection left idle, are closed after it. The rest of a request, its body
//!   included, is bounded by the router's request timeout (a 408, see `super::router`).
//! - **Connection cap.** At most [`ConnectionLimits::max_connections`] connections are served
//!   at once. One more is answered `503` (the JSON error shape, `Retry-After`) without
//!   reading its request and closed; when even those answers pile up, it is closed unanswered.
//!   Either way it never waits in a queue of ours.
//! - **Send timeout.** An answer must make progress: a write to a client that has not
//!   taken any of it for [`ConnectionLimits::send_timeout`] fails and the connection is
//!   closed ([`Stalled`]), so a client that never reads a large answer holds neither the
//!   connection nor the answer's memory for long.
//! - **Body budget.** Request bodies being received and handled at once may hold at most
//!   [`ConnectionLimits::max_body_memory`] bytes: a request reserves its `Content-Length`
//!   (or the body limit, when the length is not announced) before its body is read, and
//!   one that does not fit is answered `503` with `Retry-After` ([`hold_body_budget`]). So
//!   the connection cap times the body limit is never what memory must hold.
//! - **Graceful stop.** When `shutdown` completes, the listener is closed, idle connections
//!   are closed, and requests in flight are answered before [`run`] returns.
//!
//! Connections are HTTP/1.1 (the server has never spoken HTTP/2), given to hyper's HTTP/1
//! connection straight away: hyper-util's `auto` builder would first read the opening bytes
//! to look for an HTTP/2 preface, with no deadline, and its graceful shutdown needs HTTP/2
//! compiled in.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// What one connection may hold of the server.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request head (request line and headers),
    /// counted from the connection's start or from the end of the previous answer; an idle
    /// keep-alive connection is closed after it too.
    pub header_timeout: Duration,
    /// Most connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Most bytes of request bodies held at once, by all requests together.
    pub max_body_memory: usize,
    /// Longest a write to the client may wait without the client taking any of it.
    pub send_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_body_memory: 256 << 20,
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// What the connections hold and were refused, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    /// Connections over the cap (answered 503 or closed).
    pub refused: AtomicU64,
    /// Requests answered 503 because their bodies did not fit the body budget.
    pub bodies_refused: AtomicU64,
}

/// The body budget (see the module docs), counted in KiB.
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
    max_body: usize,
    stats: Arc<ConnectionStats>,
}

impl BodyBudget {
    pub fn new(limits: &ConnectionLimits, max_body: usize, stats: Arc<ConnectionStats>) -> Self {
        let total_kib = u32::try_from(limits.max_body_memory.div_ceil(1024))
            .unwrap_or(u32::MAX >> 3)
            .clamp(1, u32::MAX >> 3);
        BodyBudget {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            max_body,
            stats,
        }
    }
}

/// Reserves the request's body in the budget for as long as the request is handled; a
/// body that does not fit is answered 503 (the JSON error shape) without being read.
pub async fn hold_body_budget(
    axum::extract::State(budget): axum::extract::State<Arc<BodyBudget>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let hint = axum::body::HttpBody::size_hint(req.body());
    let bytes = match hint.exact() {
        Some(n) => (n as usize).min(budget.max_body),
        None => budget.max_body,
    };
    if bytes == 0 {
        return next.run(req).await;
    }
    let kib = u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .min(budget.total_kib);
    let Ok(held) = Arc::clone(&budget.kib).try_acquire_many_owned(kib) else {
        budget.stats.bodies_refused.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({
            "error": "busy",
            "message": "the server is receiving as many request bodies as its memory budget allows (--max-body-memory); try again shortly",
        });
        let mut r = (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(body),
        )
            .into_response();
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(1),
        );
        return r;
    };
    let answer = next.run(req).await;
    drop(held);
    answer
}

/// Refusals (the 503 to a connection over the cap) being written at once; beyond, a
/// connection over the cap is closed without an answer.
const REFUSALS_AT_ONCE: usize = 64;

/// Longest a refusal may take: writing it, and reading what the client sends until it
/// closes (closing with unread bytes would reset the connection and lose the answer).
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// How often at most the log says that connections were refused.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

const REFUSAL_BODY: &str = r#"{"error":"too_many_connections","message":"the server has as many connections open as it allows (--max-connections); try again shortly"}"#;

/// Serves `app` on the connections of `listener` until `shutdown` completes, then stops
/// accepting and waits for the connections still open to finish their requests.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: &ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let mut refused = Refused::default();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            refused.note(limits.max_connections);
            match Arc::clone(&refusals).try_acquire_owned() {
                Ok(busy) => {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(busy);
                    });
                }
                Err(_) => drop(stream),
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let stream = Stalled::new(stream, limits.send_timeout);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Header timeouts, clients gone mid-request, malformed requests.
                debug!(error = %e, "connection ended with an error");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    debug!(
        connections = graceful.count(),
        "stopped accepting; draining the open connections"
    );
    graceful.shutdown().await;
}

/// Answers a connection over the cap with a 503 and closes it, within [`REFUSAL_TIME`].
async fn refuse(mut stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// An accept that failed: a connection that went away before it was taken is nothing; out
/// of file descriptors or memory, wait a little for some to be freed instead of spinning.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    ) {
        return;
    }
    warn!(error = %e, "cannot accept a connection; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Connections refused since the log last said so.
#[derive(Default)]
struct Refused {
    since_log: u64,
    logged: Option<Instant>,
}

impl Refused {
    fn note(&mut self, max: usize) {
        self.since_log += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
            warn!(
                refused = self.since_log,
                max_connections = max,
                "connections over --max-connections refused"
            );
            self.since_log = 0;
            self.logged = Some(Instant::now());
        }
    }
}

/// A client connection whose writes fail when the client takes nothing for a while (see
/// the module docs). Reads are untouched: the header and request timeouts bound them.
struct Stalled {
    inner: TcpStream,
    timeout: Duration,
    /// Started when a write found the client's window full; reset by any progress.
    waiting: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Stalled {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        Stalled {
            inner,
            timeout,
            waiting: None,
        }
    }

    /// After a write that could not proceed: fails once the wait is over.
    fn pending<T>(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<T>> {
        let timeout = self.timeout;
        let sleep = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took none of the answer for the send timeout",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl tokio::io::AsyncRead for Stalled {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Stalled {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            std::task::Poll::Pending => self.pending(cx),
            done => {
                self.waiting = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            std::task::Poll::Pending => self.pending(cx),
            done => {
                self.waiting = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match std::pin::Pin::new(&mut self.inner).poll_flush(cx) {
            std::task::Poll::Pending => self.pending(cx),
            done => {
                self.waiting = None;
                done
            }
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
