//! The HTTP interface (interface §6): hyper 1's accept loop (connection limit, TLS, header
//! timeout, basic authentication, configured headers) in front of an axum router
//! (`routes`: paths, percent-decoding, `HEAD`, `405` with `Allow`). Handlers only read the
//! state or the storage, or ask the scheduler or the supervisor; nothing here waits for a
//! scan.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::cancel::CancellationToken;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::changes::Changes;
use crate::scheduler::Scheduler;
use crate::state::State;
use crate::store::Storage;
use crate::webconfig::WebConfig;

mod body;
mod connections;
mod limit;
mod routes;

use body::{error, too_large};
use connections::Connections;

/// The largest request body read (POST bodies are not used).
const MAX_BODY: usize = 64 * 1024;
/// Time a client gets to send a request's headers (and to finish a TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `POST /scan/<env>`: a burst of this many, then one per `SCAN_REFILL`, per environment.
const SCAN_BURST: f64 = 5.0;
const SCAN_REFILL: Duration = Duration::from_secs(2);

/// The exporter-toolkit flags of the metrics endpoint.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// `--web.telemetry-path` (default `/metrics`).
    pub path: String,
    /// The `process_*` metrics (off with `--web.disable-exporter-metrics`).
    pub exporter_metrics: bool,
    /// `--web.max-requests`: concurrent metrics requests at most (0: no limit).
    pub max_requests: usize,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry {
            path: "/metrics".into(),
            exporter_metrics: true,
            max_requests: 40,
        }
    }
}

/// What the handlers need.
pub struct App {
    state: Arc<State>,
    storage: Storage,
    scheduler: Arc<Scheduler>,
    /// Reloads go to the supervisor, which answers when the new file is in force.
    changes: Changes,
    /// TLS and basic authentication; replaced by the supervisor on reload.
    web: Arc<RwLock<Arc<WebConfig>>>,
    /// The metrics path, the process metrics, the limit of concurrent metrics requests.
    telemetry: Telemetry,
    /// Permits of concurrent metrics requests (`--web.max-requests`).
    metrics_requests: limit::RequestLimit,
    /// Token buckets of `POST /scan/<env>`: (tokens, last refill). A std mutex: held for
    /// a few arithmetic operations, never across an await.
    scan_limits: Mutex<HashMap<String, (f64, Instant)>>,
}

impl App {
    pub fn new(
        state: Arc<State>,
        storage: Storage,
        scheduler: Arc<Scheduler>,
        changes: Changes,
        web: Arc<RwLock<Arc<WebConfig>>>,
        telemetry: Telemetry,
    ) -> App {
        let metrics_requests = limit::RequestLimit::new(telemetry.max_requests);
        App {
            state,
            storage,
            scheduler,
            changes,
            web,
            telemetry,
            metrics_requests,
            scan_limits: Mutex::new(HashMap::new()),
        }
    }

    pub fn web(&self) -> Arc<WebConfig> {
        self.web.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True when a trigger of `env` may go through now.
    fn scan_allowed(&self, env: &str) -> bool {
        let mut limits = self.scan_limits.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = limits.entry(env.to_owned()).or_insert((SCAN_BURST, now));
        let refill = now.duration_since(*last).as_secs_f64() / SCAN_REFILL.as_secs_f64();
        *tokens = (*tokens + refill).min(SCAN_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long a shutdown waits for the requests in flight to be answered (a scrape's
/// default timeout).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` is cancelled: at most `MAX_CONNECTIONS` open at once, the
/// longest-idle one closed to make room; TLS when the web configuration says so (read per
/// connection, so that a reload applies to new ones). At shutdown it stops accepting, lets
/// every connection finish the request it is answering (idle ones close at once) and waits
/// for them, at most [`DRAIN_TIMEOUT`].
pub async fn serve(listeners: Vec<TcpListener>, app: Arc<App>, shutdown: CancellationToken) {
    let connections = Arc::new(Connections::default());
    let router = routes::router(app.clone());
    let mut tasks = tokio::task::JoinSet::new();
    // Every listener accepts into one queue; one loop bounds the connections of them all.
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(16);
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        let accepted = accepted_tx.clone();
        accepting.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(a) => {
                        if accepted.send(a).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    drop(accepted_tx);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            next = accepted.recv() => match next {
                Some(a) => a,
                None => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let Some((id, close)) = connections.open() else {
            tracing::debug!(peer = %peer, "every connection is answering a request: refusing one more");
            continue;
        };
        let app = app.clone();
        let router = router.clone();
        let connections = connections.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = connection(app, router, stream, peer, connections.clone(), id, shutdown) => {}
                _ = close.cancelled() => {
                    tracing::debug!(peer = %peer, "closed an idle connection to make room");
                }
            }
            connections.close(id);
        });
    }
    // The listeners close: no new connection while the open ones drain.
    accepting.shutdown().await;
    drop(accepted);
    let open = tasks.len();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) if open > 0 => {
            tracing::debug!(connections = open, "answered the requests in flight")
        }
        Ok(()) => {}
        Err(_) => tracing::warn!(
            connections = tasks.len(),
            timeout = ?DRAIN_TIMEOUT,
            "requests still in flight at the end of the drain: cut"
        ),
    }
}

async fn connection(
    app: Arc<App>,
    router: axum::Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    connections: Arc<Connections>,
    id: u64,
    shutdown: CancellationToken,
) {
    let web = app.web();
    let slot = Slot {
        connections,
        id,
        shutdown,
    };
    match &web.tls {
        None => serve_connection(app, router, TokioIo::new(stream), peer, slot).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(app, router, TokioIo::new(stream), peer, slot).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
            }
        }
    }
}

/// A connection's place among the open ones, and the exporter's shutdown.
struct Slot {
    connections: Arc<Connections>,
    id: u64,
    shutdown: CancellationToken,
}

async fn serve_connection<I>(
    app: Arc<App>,
    router: axum::Router,
    io: I,
    peer: SocketAddr,
    slot: Slot,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let router = router.clone();
        let busy = slot.connections.busy(slot.id);
        async move {
            let response = guarded(&app, router, req, peer).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        // Shutting down: the request being answered is finished, then the connection closes.
        _ = slot.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Authentication and limits before any handler; the configured headers on every answer.
async fn guarded(
    app: &App,
    router: axum::Router,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<axum::body::Body> {
    let web = app.web();
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = if !web.authorize(authorization.as_deref()).await {
        tracing::debug!(peer = %peer, path = req.uri().path(), "refused: no valid basic authentication");
        let mut r = error(StatusCode::UNAUTHORIZED, "Unauthorized");
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic"),
        );
        r.map(axum::body::Body::new)
    } else if req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        too_large().map(axum::body::Body::new)
    } else {
        match router.oneshot(req.map(axum::body::Body::new)).await {
            Ok(response) => routes::explain_405(response),
            Err(never) => match never {},
        }
    };
    for (name, value) in &web.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
