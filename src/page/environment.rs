//! `GET /environments/<env>`: one environment for people, where alert links lead. Its
//! status and since when, each change with actual -> expected, why and who, a timeline of
//! every scan of the last 90 days, and the last 50 scans linking to their pages.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::parts::{changes, checks, more};
use super::{Text, page, time};
use crate::report::Status;
use crate::state::EnvView;

/// The days the timeline shows.
pub const TIMELINE_DAYS: i64 = 90;
/// The scans listed under the timeline.
const RECENT: usize = 50;

/// The page of `env`, from its state and its stored scans (id, end, status) of the
/// timeline's window, oldest first.
pub fn render(
    env: &str,
    view: &EnvView,
    marks: &[(String, DateTime<Utc>, Status)],
    now: DateTime<Utc>,
) -> String {
    let from = now - chrono::Duration::days(TIMELINE_DAYS);
    let body = html! {
        p { a href="/" { "All environments" } }
        (status(env, view))
        @if let Some(report) = &view.latest {
            @if !report.changes.is_empty() {
                h2 { "Changes" }
                (changes(&report.changes))
                (more(view.changes_total, env, "changes"))
            }
            @if !report.ignored.is_empty() {
                h2 { "Ignored" }
                (changes(&report.ignored))
                (more(view.ignored_total, env, "ignored changes"))
            }
            (checks(&report.checks))
        }
        h2 { "The last " (TIMELINE_DAYS) " days" }
        (super::timeline::render(env, marks, from, now))
        (recent(env, marks))
        p {
            a href={ "/detail/" (Text(env)) } { "The latest report (JSON)" } " · "
            a href={ "/history?environment=" (Text(env)) } { "History (JSON)" }
        }
    };
    page(&format!("{env} · tfdrift-exporter"), body)
}

/// The heading: the status, since when, the last and the next scan.
fn status(env: &str, view: &EnvView) -> Markup {
    let Some(r) = &view.latest else {
        return html! {
            h1 { (Text(env)) }
            p { "Not scanned yet; the next scan is due " (time(view.next_scan)) "." }
        };
    };
    let since = match (r.status, r.drift_since) {
        (Status::Drift, Some(t)) => format!("Drifting since {}.", time(Some(t))),
        (Status::Error, Some(t)) => format!(
            "The last scan failed; it was drifting since {} before.",
            time(Some(t))
        ),
        (Status::Error, None) => "The last scan failed.".to_owned(),
        (Status::Conform, _) => match r.resolved_drift_since {
            Some(t) => format!(
                "Conform: this scan ended the drift that began {}.",
                time(Some(t))
            ),
            None => "Conform: the infrastructure matches the code.".to_owned(),
        },
        (Status::Drift, None) => "Drifting.".to_owned(),
    };
    html! {
        h1 { (Text(env)) " " span class={ "badge " (r.status) } { (r.status) } }
        p.since { (since) }
        @if let Some(e) = &r.error {
            p.error { b { (e.reason) } ": " (Text(&e.summary)) }
        }
        p {
            "Last scan " (time(r.finished_at())) @if view.running { " (scanning now)" }
            "; next scan " (time(view.next_scan)) "."
        }
    }
}

/// The newest scans, each linking to its page.
fn recent(env: &str, marks: &[(String, DateTime<Utc>, Status)]) -> Markup {
    html! {
        @if !marks.is_empty() {
            h2 { "Recent scans" }
            ol.scans {
                @for (id, at, status) in marks.iter().rev().take(RECENT) {
                    li {
                        a href={ "/history/" (Text(env)) "/" (Text(id)) } { (time(Some(*at))) }
                        " " span class=(status) { (status) }
                    }
                }
            }
        }
    }
}
