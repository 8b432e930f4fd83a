//! `GET /history/<env>/<id>` for a browser: one stored scan as a page.

use std::fmt::Write;

use super::{change_rows, escape, head, time};
use crate::report::Report;
use crate::state::KEPT_CHANGES;

/// The page of a stored report.
pub fn render(env: &str, report: &Report) -> String {
    let mut h = String::new();
    let n = escape(env);
    let id = report.id().unwrap_or("");
    head(&mut h, &format!("{env} {id} · tfdrift-exporter"));
    let duration = report
        .duration_seconds()
        .map(|d| format!(" ({d:.1} s)"))
        .unwrap_or_default();
    let _ = writeln!(
        h,
        "<p><a href=\"/environments/{n}\">{n}</a> · <a href=\"/\">All environments</a></p>\n\
<h1>{n}: scan {id} <span class=\"badge {status}\">{status}</span></h1>\n<p>From {from} to {to}{duration}.</p>",
        id = escape(id),
        status = report.status,
        from = time(report.started_at()),
        to = time(report.finished_at()),
    );
    if let Some(since) = report.drift_since {
        let _ = writeln!(
            h,
            "<p class=\"since\">Drifting since {}.</p>",
            time(Some(since))
        );
    }
    if let Some(since) = report.resolved_drift_since {
        let _ = writeln!(
            h,
            "<p class=\"since\">This scan ended the drift that began {}.</p>",
            time(Some(since))
        );
    }
    if let Some(e) = &report.error {
        let _ = writeln!(
            h,
            "<p class=\"error\"><b>{}</b>: {}</p><pre>{}</pre>",
            escape(e.reason.as_str()),
            escape(&e.summary),
            escape(&e.detail)
        );
    }
    if !report.changes.is_empty() {
        h.push_str("<h2>Changes</h2>\n");
        change_rows(&mut h, &report.changes);
    }
    if !report.ignored.is_empty() {
        h.push_str("<h2>Ignored</h2>\n");
        change_rows(&mut h, &report.ignored);
    }
    let total = report.changes.len() + report.ignored.len();
    if total > 2 * KEPT_CHANGES {
        let _ = writeln!(
            h,
            "<p>The page shows the first {KEPT_CHANGES} of each; all {total} are in the JSON of this address (<code>Accept: application/json</code>).</p>"
        );
    }
    h.push_str("</body></html>\n");
    h
}
