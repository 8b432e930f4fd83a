//! `GET /history/<env>/<id>` for a browser: one stored scan as a page.

use maud::html;

use super::parts::{changes, checks};
use super::{Text, page, time};
use crate::report::Report;
use crate::state::KEPT_CHANGES;

/// The page of a stored report.
pub fn render(env: &str, report: &Report) -> String {
    let id = report.id().unwrap_or("");
    let total = report.changes.len() + report.ignored.len();
    let body = html! {
        p {
            a href={ "/environments/" (Text(env)) } { (Text(env)) } " · "
            a href="/" { "All environments" }
        }
        h1 {
            (Text(env)) ": scan " (Text(id)) " "
            span class={ "badge " (report.status) } { (report.status) }
        }
        p {
            "From " (time(report.started_at())) " to " (time(report.finished_at()))
            @if let Some(d) = report.duration_seconds() { " (" (format!("{d:.1}")) " s)" }
            "."
        }
        @if let Some(since) = report.drift_since {
            p.since { "Drifting since " (time(Some(since))) "." }
        }
        @if let Some(since) = report.resolved_drift_since {
            p.since { "This scan ended the drift that began " (time(Some(since))) "." }
        }
        @if let Some(e) = &report.error {
            p.error { b { (e.reason) } ": " (Text(&e.summary)) }
            pre { (Text(&e.detail)) }
        }
        @if !report.changes.is_empty() {
            h2 { "Changes" }
            (changes(&report.changes))
        }
        @if !report.ignored.is_empty() {
            h2 { "Ignored" }
            (changes(&report.ignored))
        }
        (checks(&report.checks))
        @if total > 2 * KEPT_CHANGES {
            p {
                "The page shows the first " (KEPT_CHANGES) " of each; all " (total)
                " are in the JSON of this address (" code { "Accept: application/json" } ")."
            }
        }
    };
    page(&format!("{env} {id} · tfdrift-exporter"), body)
}
