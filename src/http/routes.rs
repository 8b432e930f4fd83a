//! The routes of interface §6 on an axum router: paths are matched and percent-decoded by
//! the router, `HEAD` is answered on every `GET` path (headers and length, no body), and a
//! known path asked with another method gets `405` with `Allow`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::http::header::{ACCEPT, ALLOW, VARY};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use super::body::{
    Body, Part, error, json_response, method_not_allowed, prefers_html, prefers_openmetrics,
    respond, streamed, too_large,
};
use super::{App, MAX_BODY, SCAN_BURST, SCAN_REFILL};
use crate::metrics::{OPENMETRICS_FORMAT, TEXT_FORMAT};
use crate::scheduler::Triggered;
use crate::state::EnvView;

type Answer = Response<Body>;
type AppState = State<Arc<App>>;

pub(super) fn router(app: Arc<App>) -> Router {
    let telemetry = app.telemetry.path.clone();
    Router::new()
        .route("/", get(landing))
        .route(&telemetry, get(metrics))
        .route("/detail", get(detail_all))
        .route("/detail/{env}", get(detail))
        .route("/detail/{env}/plan", get(detail_plan))
        .route("/history", get(history))
        .route("/history/{env}/{id}", get(stored))
        .route("/environments/{env}", get(environment))
        .route("/unmanaged", get(unmanaged))
        .route("/scan/{env}", post(scan))
        .route("/-/healthy", get(async || text("OK\n")))
        .route("/-/ready", get(async || text("Ready\n")))
        .route("/-/reload", post(reload))
        .fallback(not_found)
        .with_state(app)
}

fn text(body: &'static str) -> Answer {
    respond(StatusCode::OK, "text/plain", body)
}

async fn not_found(uri: axum::http::Uri) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        format!("no such path {:?}", uri.path()),
    )
}

/// The router's `405` with the project's JSON body and `Allow` written `GET, HEAD` (the
/// router adds `Allow` last, so this runs on its answer).
pub(super) fn explain_405(response: axum::response::Response) -> axum::response::Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow: Vec<&str> = response
        .headers()
        .get(ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    method_not_allowed(&allow.join(", ")).map(axum::body::Body::new)
}

fn unknown(env: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        format!("unknown environment {env:?}"),
    )
}

/// Reads a bounded request body (unused; reading it keeps the connection clean).
async fn drain(body: axum::body::Body) -> Result<(), Answer> {
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(drop)
        .map_err(|_| too_large())
}

async fn landing(State(app): AppState, Query(pairs): Query<Vec<(String, String)>>) -> Answer {
    match crate::page::Listing::parse(pairs) {
        Ok(listing) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::page::render(&app.state, &listing),
        ),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

async fn metrics(State(app): AppState, headers: HeaderMap) -> Answer {
    // `--web.max-requests`: held until the answer is built.
    let _permit = match app.metrics_requests.admit() {
        Ok(permit) => permit,
        Err(busy) => return busy.answer(),
    };
    let openmetrics = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(prefers_openmetrics);
    let content_type = if openmetrics {
        OPENMETRICS_FORMAT
    } else {
        TEXT_FORMAT
    };
    let body = app.state.metrics.exposition(openmetrics);
    let body = if app.telemetry.exporter_metrics {
        match tokio::task::spawn_blocking(move || crate::metrics::process::encode(openmetrics))
            .await
        {
            Ok(process) => {
                crate::metrics::process::with_process(&body, &process, openmetrics).into()
            }
            Err(_) => body,
        }
    } else {
        body
    };
    vary_accept(respond(StatusCode::OK, content_type, body))
}

/// Says that the answer depends on `Accept` (text 0.0.4 or OpenMetrics; HTML or JSON), so
/// that a cache between the reader and the exporter keeps one answer per kind.
fn vary_accept(mut answer: Answer) -> Answer {
    answer
        .headers_mut()
        .insert(VARY, HeaderValue::from_static("accept"));
    answer
}

async fn detail(State(app): AppState, Path(env): Path<String>) -> Answer {
    let Some(view) = app.state.view(&env) else {
        return unknown(&env);
    };
    match detail_part(&app, &env, &view).await {
        Ok(Some(part)) => streamed("application/json", vec![part]),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no scan of {env:?} yet")),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

async fn detail_plan(State(app): AppState, Path(env): Path<String>) -> Answer {
    if app.state.view(&env).is_none() {
        return unknown(&env);
    }
    match app.storage.open_plan(&env).await {
        Some((file, length)) => streamed("application/json", vec![Part::File(file, length)]),
        None => error(
            StatusCode::NOT_FOUND,
            format!("the last scan of {env:?} had no plan"),
        ),
    }
}

async fn environment(State(app): AppState, Path(env): Path<String>) -> Answer {
    let Some(view) = app.state.view(&env) else {
        return unknown(&env);
    };
    let now = Utc::now();
    let from = now - chrono::Duration::days(crate::page::TIMELINE_DAYS);
    let marks = app.storage.marks(&env, from);
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        crate::page::environment(&env, &view, &marks, now),
    )
}

async fn stored(
    State(app): AppState,
    Path((env, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    vary_accept(stored_as_negotiated(&app, &env, &id, &headers).await)
}

async fn stored_as_negotiated(app: &App, env: &str, id: &str, headers: &HeaderMap) -> Answer {
    let html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(prefers_html);
    if html {
        return match app.storage.read_report(env, id).await {
            Some(report) => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                crate::page::scan(env, &report),
            ),
            None => error(
                StatusCode::NOT_FOUND,
                format!("no stored scan {id:?} of {env:?}"),
            ),
        };
    }
    match app.storage.open_report(env, id).await {
        Some((file, length)) => streamed("application/json", vec![Part::File(file, length)]),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no stored scan {id:?} of {env:?}"),
        ),
    }
}

async fn unmanaged(State(app): AppState) -> Answer {
    match app.state.unmanaged() {
        Some(result) => json_response(StatusCode::OK, &*result),
        None if app.state.config().proxmox.is_none() => error(
            StatusCode::NOT_FOUND,
            "the unmanaged-guest check is not configured: add a [proxmox] section",
        ),
        None if !app.state.config().sharding.checks_unmanaged() => error(
            StatusCode::NOT_FOUND,
            format!(
                "the unmanaged-guest check runs on shard 0 only (this is shard {})",
                app.state.config().sharding.ordinal
            ),
        ),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the first unmanaged-guest check has not finished yet",
        ),
    }
}

async fn scan(State(app): AppState, Path(env): Path<String>, body: axum::body::Body) -> Answer {
    if let Err(answer) = drain(body).await {
        return answer;
    }
    if app.state.view(&env).is_some() && !app.scan_allowed(&env) {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many scan requests for {env:?}: at most {SCAN_BURST} at once, then one per {}s",
                SCAN_REFILL.as_secs()
            ),
        );
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("2"),
        );
        return r;
    }
    let scan = match app.scheduler.trigger(&env) {
        Triggered::Started => "started",
        Triggered::Joined | Triggered::Follows => "joined",
        Triggered::UnknownEnvironment => return unknown(&env),
    };
    json_response(
        StatusCode::ACCEPTED,
        &json!({"environment": env, "scan": scan}),
    )
}

async fn reload(State(app): AppState, body: axum::body::Body) -> Answer {
    if let Err(answer) = drain(body).await {
        return answer;
    }
    match app.changes.reload().await {
        Ok(()) => json_response(StatusCode::OK, &json!({"status": "reloaded"})),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// The latest report of `env` as an answer's part: its stored file, or (when it could not
/// be stored) what the exporter keeps of it.
/// The latest report of `env`: its stored file, or the copy kept in memory when it could
/// not be stored (or its file is gone), which says so: `"stored": false`, and
/// `"changes_total"` when its changes were cut (interface §7). `Err` when it cannot be
/// written as JSON.
async fn detail_part(app: &App, env: &str, view: &EnvView) -> Result<Option<Part>, String> {
    let Some(report) = view.latest.as_ref() else {
        return Ok(None);
    };
    if view.stored
        && let Some(id) = report.id()
        && let Some((file, length)) = app.storage.open_report(env, id).await
    {
        return Ok(Some(Part::File(file, length)));
    }
    let unwritable =
        |e: serde_json::Error| format!("cannot write the latest report of {env:?} as JSON: {e}");
    let mut value = serde_json::to_value(&**report).map_err(unwritable)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("stored".into(), false.into());
        if view.changes_total > report.changes.len() {
            fields.insert("changes_total".into(), view.changes_total.into());
        }
    }
    let text = serde_json::to_vec_pretty(&value).map_err(unwritable)?;
    Ok(Some(Part::Text(Bytes::from(text))))
}

/// `{"environments": {"<env>": <report or null>, ...}}`, one report at a time.
async fn detail_all(State(app): AppState) -> Answer {
    let mut parts = vec![Part::Text(Bytes::from_static(b"{\"environments\": {"))];
    for (i, (name, view)) in app.state.views().into_iter().enumerate() {
        let key = serde_json::to_string(&name).unwrap_or_default();
        let separator = if i == 0 { "" } else { ", " };
        parts.push(Part::Text(Bytes::from(format!("{separator}{key}: "))));
        match detail_part(&app, &name, &view).await {
            Ok(Some(part)) => parts.push(part),
            Ok(None) => parts.push(Part::Text(Bytes::from_static(b"null"))),
            Err(message) => return error(StatusCode::INTERNAL_SERVER_ERROR, message),
        }
    }
    parts.push(Part::Text(Bytes::from_static(b"}}\n")));
    streamed("application/json", parts)
}

/// Most summaries one `/history` answer holds, and how many when `limit` is not given.
const HISTORY_MAX_LIMIT: usize = 5000;
const HISTORY_DEFAULT_LIMIT: usize = 500;

/// What `/history` was asked, decoded and checked.
struct HistoryQuery {
    environment: Option<String>,
    before: Option<String>,
    limit: usize,
    since: std::time::Duration,
}

fn history_query(pairs: Vec<(String, String)>) -> Result<HistoryQuery, String> {
    let mut q = HistoryQuery {
        environment: None,
        before: None,
        limit: HISTORY_DEFAULT_LIMIT,
        since: std::time::Duration::from_secs(30 * 86_400),
    };
    for (key, value) in pairs {
        match key.as_str() {
            "environment" => q.environment = Some(value),
            "before" => q.before = Some(value),
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=HISTORY_MAX_LIMIT).contains(&n) => q.limit = n,
                _ => {
                    return Err(format!(
                        "limit={value:?} must be a number from 1 to {HISTORY_MAX_LIMIT}"
                    ));
                }
            },
            "since" => match humantime::parse_duration(&value) {
                Ok(d) => q.since = d,
                Err(_) => return Err(format!("since={value:?} is not a duration like 30d")),
            },
            _ => {
                return Err(format!(
                    "unknown parameter {key:?} (use environment, since, limit, before)"
                ));
            }
        }
    }
    Ok(q)
}

async fn history(State(app): AppState, Query(pairs): Query<Vec<(String, String)>>) -> Answer {
    let q = match history_query(pairs) {
        Ok(q) => q,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let from = chrono::Duration::from_std(q.since)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    match app
        .storage
        .page(q.environment, from, q.before, q.limit)
        .await
    {
        Ok(page) => json_response(StatusCode::OK, &page),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}
