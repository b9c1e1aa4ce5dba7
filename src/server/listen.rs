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
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
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
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Header timeouts, clients gone mid-request, malformed requests.
                debug!(error = %e, "connection ended with an error");
            }
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
