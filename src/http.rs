//! The HTTP interface (interface §6) on hyper 1. Handlers only read the shared state or
//! ask the scheduler; nothing here waits for a scan.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::exporter::Exporter;
use crate::metrics::{OPENMETRICS_FORMAT, TEXT_FORMAT};
use crate::scheduler::{Scheduler, Triggered};
use crate::webconfig::WebConfig;

/// The largest request body read (POST bodies are not used).
const MAX_BODY: usize = 64 * 1024;
/// Connections open at once; past it the longest-idle one is closed for a new one.
const MAX_CONNECTIONS: usize = 256;
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

/// Answers are either whole (small) or streamed from files (reports, plans), so that no
/// answer holds a large report in memory.
type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A piece of a streamed answer.
enum Part {
    Text(Bytes),
    /// An open file and its length, read 64 KiB at a time. Opened when the answer is made,
    /// so that a file replaced meanwhile (a rename) is served whole, as it was.
    File(tokio::fs::File, u64),
}

impl Part {
    async fn file(path: &std::path::Path) -> Option<Part> {
        let file = tokio::fs::File::open(path).await.ok()?;
        let meta = file.metadata().await.ok()?;
        meta.is_file().then(|| Part::File(file, meta.len()))
    }

    fn len(&self) -> u64 {
        match self {
            Part::Text(t) => t.len() as u64,
            Part::File(_, n) => *n,
        }
    }
}

/// An answer made of `parts`, streamed with its length: at most one chunk of a file is in
/// memory.
fn streamed(content_type: &str, parts: Vec<Part>) -> Response<Body> {
    use tokio::io::AsyncReadExt;
    let length: u64 = parts.iter().map(Part::len).sum();
    let state = (
        std::collections::VecDeque::from(parts),
        None::<(tokio::fs::File, u64)>,
    );
    let stream = futures_util::stream::unfold(state, |(mut parts, mut file)| async move {
        loop {
            if let Some((f, left)) = file.as_mut() {
                if *left == 0 {
                    file = None;
                    continue;
                }
                let mut chunk = vec![0; (64 * 1024).min(*left as usize)];
                match f.read(&mut chunk).await {
                    Ok(0) => {
                        let e = std::io::Error::other("a served file got shorter");
                        return Some((Err(e), (Default::default(), None)));
                    }
                    Ok(n) => {
                        chunk.truncate(n);
                        *left -= n as u64;
                        return Some((Ok(Frame::data(Bytes::from(chunk))), (parts, file)));
                    }
                    Err(e) => return Some((Err(e), (Default::default(), None))),
                }
            }
            match parts.pop_front()? {
                Part::Text(text) => return Some((Ok(Frame::data(text)), (parts, None))),
                Part::File(f, n) => file = Some((f, n)),
            }
        }
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_LENGTH, length.into());
    response
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    response
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    respond(status, "application/json", body)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"error": message.into()}))
}

fn too_large() -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request bodies are limited to {MAX_BODY} bytes"),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"));
    r.headers_mut()
        .insert(ALLOW, hyper::header::HeaderValue::from_static(allow));
    r
}

/// The open connections. When all `MAX_CONNECTIONS` are taken, the connection idle the
/// longest (no request in flight: still sending its headers, in its TLS handshake, or kept
/// alive between requests) is closed to make room, so that idle or trickling connections
/// can never keep a scrape out; memory stays bounded by the cap.
#[derive(Default)]
struct Connections {
    table: Mutex<ConnTable>,
}

#[derive(Default)]
struct ConnTable {
    next: u64,
    open: HashMap<u64, Conn>,
}

struct Conn {
    /// Requests being answered now.
    busy: usize,
    idle_since: Instant,
    close: CancellationToken,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection, closing the longest-idle one when all are taken;
    /// `None` when every connection is answering a request (the new one is dropped).
    fn open(&self) -> Option<(u64, CancellationToken)> {
        let mut t = self.lock();
        if t.open.len() >= MAX_CONNECTIONS {
            let oldest = t
                .open
                .iter()
                .filter(|(_, c)| c.busy == 0)
                .min_by_key(|(_, c)| c.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(c) = t.open.remove(&oldest) {
                c.close.cancel();
            }
        }
        let id = t.next;
        t.next += 1;
        let close = CancellationToken::new();
        t.open.insert(
            id,
            Conn {
                busy: 0,
                idle_since: Instant::now(),
                close: close.clone(),
            },
        );
        Some((id, close))
    }

    fn close(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// Marks a request of connection `id` in flight until the guard drops.
    fn busy(self: &Arc<Self>, id: u64) -> Busy {
        if let Some(c) = self.lock().open.get_mut(&id) {
            c.busy += 1;
        }
        Busy {
            connections: self.clone(),
            id,
        }
    }
}

struct Busy {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = self.connections.lock().open.get_mut(&self.id) {
            c.busy = c.busy.saturating_sub(1);
            c.idle_since = Instant::now();
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

/// Content negotiation of `/metrics` as Prometheus' Go client does it: the media ranges of
/// `Accept` by quality (`q=0` means "not this"), media types compared without case; the
/// first one the exporter can serve wins, and text is the fallback.
fn prefers_openmetrics(accept: &str) -> bool {
    let mut ranges: Vec<(f32, String)> = accept
        .split(',')
        .filter_map(|range| {
            let mut params = range.split(';');
            let media = params.next()?.trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map(|(_, v)| v.trim().parse::<f32>().unwrap_or(0.0))
                .unwrap_or(1.0);
            (q > 0.0 && !media.is_empty()).then_some((q, media))
        })
        .collect();
    // Stable: among equal qualities the order of the header decides.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, media) in ranges {
        match media.as_str() {
            "application/openmetrics-text" => return true,
            "text/plain" | "text/*" | "*/*" => return false,
            _ => {}
        }
    }
    false
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

#[cfg(test)]
mod tests {
    use super::prefers_openmetrics;

    #[test]
    fn accept_is_negotiated_by_quality_like_the_go_client() {
        // Prometheus' own header.
        assert!(prefers_openmetrics(
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(!prefers_openmetrics("application/openmetrics-text;q=0"));
        assert!(!prefers_openmetrics(
            "text/plain;q=0.9, application/openmetrics-text;q=0.5"
        ));
        assert!(prefers_openmetrics("Application/OpenMetrics-Text; Q=1"));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics("application/json"));
        assert!(!prefers_openmetrics(""));
    }
}
