//! The HTTP interface (interface §6) on hyper 1. Handlers only read the shared state or
//! ask the scheduler; nothing here waits for a scan.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::exporter::Exporter;
use crate::metrics::{OPENMETRICS_FORMAT, TEXT_FORMAT};
use crate::report::Report;
use crate::scheduler::{Scheduler, Triggered};

/// What the handlers need.
pub struct App {
    pub exporter: Arc<Exporter>,
    pub scheduler: Arc<Scheduler>,
    /// Reloads the configuration; `Err` carries the message for a 400.
    pub reload: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
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

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"));
    r.headers_mut()
        .insert(ALLOW, hyper::header::HeaderValue::from_static(allow));
    r
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
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
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(app: &App, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
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
                .is_some_and(|v| v.contains("application/openmetrics-text"));
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
        (["detail"], &Method::GET) => {
            #[derive(serde::Serialize)]
            struct Detail {
                environments: BTreeMap<String, Option<Arc<Report>>>,
            }
            let environments = app
                .exporter
                .views()
                .into_iter()
                .map(|(name, view)| (name, view.latest))
                .collect();
            json_response(StatusCode::OK, &Detail { environments })
        }
        (["detail", env], &Method::GET) => match app.exporter.view(env) {
            None => error(
                StatusCode::NOT_FOUND,
                format!("unknown environment {env:?}"),
            ),
            Some(view) => match view.latest {
                Some(report) => json_response(StatusCode::OK, &*report),
                None => error(StatusCode::NOT_FOUND, format!("no scan of {env:?} yet")),
            },
        },
        (["detail", env, "plan"], &Method::GET) => match app.exporter.view(env) {
            None => error(
                StatusCode::NOT_FOUND,
                format!("unknown environment {env:?}"),
            ),
            Some(_) => {
                match crate::store::EnvStore::read_plan(&app.exporter.config().storage.path, env) {
                    Some(plan) => respond(StatusCode::OK, "application/json", plan),
                    None => error(
                        StatusCode::NOT_FOUND,
                        format!("the last scan of {env:?} had no plan"),
                    ),
                }
            }
        },
        (["history"], &Method::GET) => history(app, &query),
        (["history", env, id], &Method::GET) => match app.exporter.history.read(env, id) {
            Some(report) => json_response(StatusCode::OK, &report),
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
            let _ = Limited::new(req.into_body(), 4096).collect().await;
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
        (["-", "reload"], &Method::POST) => match (app.reload)() {
            Ok(()) => json_response(StatusCode::OK, &json!({"status": "reloaded"})),
            Err(message) => error(StatusCode::BAD_REQUEST, message),
        },
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
        ) => method_not_allowed("GET"),
        _ => error(StatusCode::NOT_FOUND, format!("no such path {path:?}")),
    }
}

fn history(app: &App, query: &str) -> Response<Body> {
    let mut env: Option<String> = None;
    let mut since = std::time::Duration::from_secs(30 * 86_400);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "environment" => env = Some(value.to_owned()),
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
                    format!("unknown parameter {key:?} (use environment, since)"),
                );
            }
        }
    }
    let from = chrono::Duration::from_std(since)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    #[derive(serde::Serialize)]
    struct Scans {
        scans: Vec<crate::history::ScanSummary>,
    }
    let scans = app.exporter.history.list(env.as_deref(), from);
    json_response(StatusCode::OK, &Scans { scans })
}
