//! The HTTP interface (interface §6) on hyper 1. Handlers only read the shared state or
//! ask the scheduler; nothing here waits for a scan.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::ACCEPT;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::exporter::Exporter;
use crate::metrics::{OPENMETRICS_FORMAT, TEXT_FORMAT};
use crate::scheduler::{Scheduler, Triggered};
use crate::webconfig::WebConfig;

mod body;
mod connections;

use body::{
    Body, Part, error, full, json_response, method_not_allowed, prefers_openmetrics, respond,
    streamed, too_large,
};
use connections::Connections;

/// The largest request body read (POST bodies are not used).
const MAX_BODY: usize = 64 * 1024;
/// Time a client gets to send a request's headers (and to finish a TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `POST /scan/<env>`: a burst of this many, then one per `SCAN_REFILL`, per environment.
const SCAN_BURST: f64 = 5.0;
const SCAN_REFILL: Duration = Duration::from_secs(2);

/// What the handlers need.
pub struct App {
    pub exporter: Arc<Exporter>,
    pub scheduler: Arc<Scheduler>,
    /// Reloads the configuration; `Err` carries the message for a 400.
    pub reload: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
    /// TLS and basic authentication; replaced on reload.
    pub web: Arc<RwLock<Arc<WebConfig>>>,
    /// Token buckets of `POST /scan/<env>`: (tokens, last refill).
    pub scan_limits: Mutex<HashMap<String, (f64, Instant)>>,
}

impl App {
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

/// Serves until `shutdown` is cancelled: at most `MAX_CONNECTIONS` open at once, the
/// longest-idle one closed to make room; TLS when the web configuration says so (read per
/// connection, so that a reload applies to new ones).
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let connections = Arc::new(Connections::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Some((id, close)) = connections.open() else {
            tracing::debug!(peer = %peer, "every connection is answering a request: refusing one more");
            continue;
        };
        let app = app.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(app, stream, peer, connections.clone(), id) => {}
                _ = close.cancelled() => {
                    tracing::debug!(peer = %peer, "closed an idle connection to make room");
                }
            }
            connections.close(id);
        });
    }
}

async fn connection(
    app: Arc<App>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    connections: Arc<Connections>,
    id: u64,
) {
    let web = app.web();
    match &web.tls {
        None => serve_connection(app, TokioIo::new(stream), peer, connections, id).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(app, TokioIo::new(stream), peer, connections, id).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_connection<I>(
    app: Arc<App>,
    io: I,
    peer: SocketAddr,
    connections: Arc<Connections>,
    id: u64,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let busy = connections.busy(id);
        async move {
            let response = guarded(&app, req, peer).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Authentication and limits before any handler; the configured headers on every answer.
async fn guarded(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
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
        r
    } else if req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        too_large()
    } else {
        handle(app, req, peer).await
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

/// `HEAD` is answered on every `GET` path: the `GET` answer's status and headers (with its
/// length), without the body.
async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.method() != Method::HEAD {
        return route(app, req, peer).await;
    }
    let (mut parts, body) = req.into_parts();
    parts.method = Method::GET;
    let response = route(app, Request::from_parts(parts, body), peer).await;
    let (mut parts, body) = response.into_parts();
    // A streamed answer's length is not known without reading it: then none is given.
    if let Some(length) = hyper::body::Body::size_hint(&body).exact() {
        parts
            .headers
            .insert(hyper::header::CONTENT_LENGTH, length.into());
    }
    Response::from_parts(parts, full(Bytes::new()))
}

async fn route(app: &App, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (segments.as_slice(), &method) {
        ([""], &Method::GET) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::page::render(&app.exporter),
        ),
        (["metrics"], &Method::GET) => {
            let openmetrics = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(prefers_openmetrics);
            let content_type = if openmetrics {
                OPENMETRICS_FORMAT
            } else {
                TEXT_FORMAT
            };
            respond(
                StatusCode::OK,
                content_type,
                app.exporter.metrics.exposition(openmetrics),
            )
        }
        (["detail"], &Method::GET) => detail_all(app).await,
        (["detail", env], &Method::GET) => match app.exporter.view(env) {
            None => error(
                StatusCode::NOT_FOUND,
                format!("unknown environment {env:?}"),
            ),
            Some(view) => match detail_part(app, env, &view).await {
                Some(part) => streamed("application/json", vec![part]),
                None => error(StatusCode::NOT_FOUND, format!("no scan of {env:?} yet")),
            },
        },
        (["detail", env, "plan"], &Method::GET) => match app.exporter.view(env) {
            None => error(
                StatusCode::NOT_FOUND,
                format!("unknown environment {env:?}"),
            ),
            Some(_) => {
                let path = crate::store::plan_path(&app.exporter.config().storage.path, env);
                if let Some(part) = Part::file(&path).await {
                    streamed("application/json", vec![part])
                } else {
                    error(
                        StatusCode::NOT_FOUND,
                        format!("the last scan of {env:?} had no plan"),
                    )
                }
            }
        },
        (["history"], &Method::GET) => history(app, &query).await,
        (["history", env, id], &Method::GET) => match stored_report(app, env, id).await {
            Some(part) => streamed("application/json", vec![part]),
            None => error(
                StatusCode::NOT_FOUND,
                format!("no stored scan {id:?} of {env:?}"),
            ),
        },
        (["unmanaged"], &Method::GET) => match app.exporter.unmanaged() {
            Some(result) => json_response(StatusCode::OK, &*result),
            None if app.exporter.config().proxmox.is_none() => error(
                StatusCode::NOT_FOUND,
                "the unmanaged-guest check is not configured: add a [proxmox] section",
            ),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the first unmanaged-guest check has not finished yet",
            ),
        },
        (["scan", env], &Method::POST) => {
            // The body is not used; reading a bounded amount keeps the connection clean.
            if Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await
                .is_err()
            {
                return too_large();
            }
            if app.exporter.view(env).is_some() && !app.scan_allowed(env) {
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many scan requests for {env:?}: at most {SCAN_BURST} at once, then one per {}s",
                        SCAN_REFILL.as_secs()
                    ),
                );
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    hyper::header::HeaderValue::from_static("2"),
                );
                return r;
            }
            match app.scheduler.trigger(env) {
                Triggered::Started => json_response(
                    StatusCode::ACCEPTED,
                    &json!({"environment": env, "scan": "started"}),
                ),
                Triggered::Joined => json_response(
                    StatusCode::ACCEPTED,
                    &json!({"environment": env, "scan": "joined"}),
                ),
                Triggered::UnknownEnvironment => error(
                    StatusCode::NOT_FOUND,
                    format!("unknown environment {env:?}"),
                ),
            }
        }
        (["scan", _], _) => method_not_allowed("POST"),
        (["-", "healthy"], &Method::GET) => respond(StatusCode::OK, "text/plain", "OK\n"),
        (["-", "ready"], &Method::GET) => respond(StatusCode::OK, "text/plain", "Ready\n"),
        (["-", "reload"], &Method::POST) => {
            match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Err(_) => too_large(),
                Ok(_) => match (app.reload)() {
                    Ok(()) => json_response(StatusCode::OK, &json!({"status": "reloaded"})),
                    Err(message) => error(StatusCode::BAD_REQUEST, message),
                },
            }
        }
        (["-", "reload"], _) => method_not_allowed("POST"),
        (
            [""]
            | ["metrics"]
            | ["detail"]
            | ["detail", _]
            | ["detail", _, "plan"]
            | ["history"]
            | ["history", _, _]
            | ["unmanaged"]
            | ["-", "healthy"]
            | ["-", "ready"],
            _,
        ) => method_not_allowed("GET, HEAD"),
        _ => error(StatusCode::NOT_FOUND, format!("no such path {path:?}")),
    }
}

/// The file of a stored report, opened, when there is one.
async fn stored_report(app: &App, env: &str, id: &str) -> Option<Part> {
    let path = crate::store::report_path(&app.exporter.config().storage.path, env, id)?;
    Part::file(&path).await
}

/// The latest report of `env` as an answer's part: its stored file, or (when it could not
/// be stored) what the exporter keeps of it.
async fn detail_part(app: &App, env: &str, view: &crate::exporter::EnvView) -> Option<Part> {
    let report = view.latest.as_ref()?;
    if view.stored
        && let Some(id) = report.id.as_deref()
        && let Some(part) = stored_report(app, env, id).await
    {
        return Some(part);
    }
    let text = serde_json::to_vec_pretty(&**report).unwrap_or_default();
    Some(Part::Text(Bytes::from(text)))
}

/// `{"environments": {"<env>": <report or null>, ...}}`, one report at a time.
async fn detail_all(app: &App) -> Response<Body> {
    let mut parts = vec![Part::Text(Bytes::from_static(b"{\"environments\": {"))];
    for (i, (name, view)) in app.exporter.views().into_iter().enumerate() {
        let key = serde_json::to_string(&name).unwrap_or_default();
        let separator = if i == 0 { "" } else { ", " };
        parts.push(Part::Text(Bytes::from(format!("{separator}{key}: "))));
        match detail_part(app, &name, &view).await {
            Some(part) => parts.push(part),
            None => parts.push(Part::Text(Bytes::from_static(b"null"))),
        }
    }
    parts.push(Part::Text(Bytes::from_static(b"}}\n")));
    streamed("application/json", parts)
}

/// Most summaries one `/history` answer holds, and how many when `limit` is not given.
const HISTORY_MAX_LIMIT: usize = 5000;
const HISTORY_DEFAULT_LIMIT: usize = 500;

async fn history(app: &App, query: &str) -> Response<Body> {
    let mut env: Option<String> = None;
    let mut before: Option<String> = None;
    let mut limit = HISTORY_DEFAULT_LIMIT;
    let mut since = std::time::Duration::from_secs(30 * 86_400);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "environment" => env = Some(value.to_owned()),
            "before" => before = Some(value.to_owned()),
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=HISTORY_MAX_LIMIT).contains(&n) => limit = n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("limit={value:?} must be a number from 1 to {HISTORY_MAX_LIMIT}"),
                    );
                }
            },
            "since" => match humantime::parse_duration(value) {
                Ok(d) => since = d,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("since={value:?} is not a duration like 30d"),
                    );
                }
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {key:?} (use environment, since, limit, before)"),
                );
            }
        }
    }
    let from = chrono::Duration::from_std(since)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    // The summaries are read from their files: off the runtime's threads.
    let exporter = app.exporter.clone();
    let page = tokio::task::spawn_blocking(move || {
        exporter.history.page(&crate::history::Query {
            environment: env.as_deref(),
            since: from,
            before: before.as_deref(),
            limit,
        })
    })
    .await;
    match page {
        Ok(Ok(page)) => json_response(StatusCode::OK, &page),
        Ok(Err(message)) => error(StatusCode::BAD_REQUEST, message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
