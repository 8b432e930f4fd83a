//! The answers: whole (small JSON, text, HTML) or streamed from files (stored reports and
//! plans) with their length, so that no answer holds a large report in memory.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::MAX_BODY;

/// Answers are either whole (small) or streamed from files (reports, plans), so that no
/// answer holds a large report in memory.
pub(super) type Body = BoxBody<Bytes, std::io::Error>;

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A piece of a streamed answer.
pub(super) enum Part {
    Text(Bytes),
    /// An open file and its length, read 64 KiB at a time. Opened when the answer is made,
    /// so that a file replaced meanwhile (a rename) is served whole, as it was.
    File(tokio::fs::File, u64),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Text(t) => t.len() as u64,
            Part::File(_, n) => *n,
        }
    }
}

/// An answer made of `parts`, streamed with its length: at most one chunk of a file is in
/// memory.
pub(super) fn streamed(content_type: &str, parts: Vec<Part>) -> Response<Body> {
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

pub(super) fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    response
}

pub(super) fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    respond(status, "application/json", body)
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"error": message.into()}))
}

pub(super) fn too_large() -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request bodies are limited to {MAX_BODY} bytes"),
    )
}

/// A `405` that says which methods the path takes, in its body and its `Allow` header.
pub(super) fn method_not_allowed(allow: &str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"));
    if let Ok(value) = hyper::header::HeaderValue::from_str(allow) {
        r.headers_mut().insert(ALLOW, value);
    }
    r
}

/// Content negotiation of `/metrics` as Prometheus' Go client does it: the media ranges of
/// `Accept` by quality (`q=0` means "not this"), media types compared without case; the
/// first one the exporter can serve wins, and text is the fallback.
pub(super) fn prefers_openmetrics(accept: &str) -> bool {
    for media in by_quality(accept) {
        match media.as_str() {
            "application/openmetrics-text" => return true,
            "text/plain" | "text/*" | "*/*" => return false,
            _ => {}
        }
    }
    false
}

/// True when `Accept` prefers an HTML page to JSON (a browser's header; `curl`'s `*/*`
/// and a missing header get JSON).
pub(super) fn prefers_html(accept: &str) -> bool {
    for media in by_quality(accept) {
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => return true,
            "application/json" | "*/*" | "application/*" => return false,
            _ => {}
        }
    }
    false
}

/// The media ranges of `Accept`, best quality first (`q=0` left out; among equal
/// qualities the header's order), lower-cased.
fn by_quality(accept: &str) -> Vec<String> {
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
    ranges.into_iter().map(|(_, media)| media).collect()
}

#[cfg(test)]
mod tests {
    use super::{prefers_html, prefers_openmetrics};

    #[test]
    fn a_browser_gets_html_and_curl_gets_json() {
        assert!(prefers_html(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        ));
        assert!(!prefers_html("*/*"));
        assert!(!prefers_html("application/json, text/html;q=0.5"));
        assert!(!prefers_html(""));
    }

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
