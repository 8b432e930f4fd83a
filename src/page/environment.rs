//! `GET /environments/<env>`: one environment for people, where alert links lead. Its
//! status and since when, each change with actual -> expected, why and who, a timeline of
//! every scan of the last 90 days, and the last 50 scans linking to their pages.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::{change_rows, escape, head, more, time};
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
    let mut h = String::new();
    let n = escape(env);
    head(&mut h, &format!("{env} · tfdrift-exporter"));
    let _ = writeln!(h, "<p><a href=\"/\">All environments</a></p>");
    status(&mut h, &n, view);
    if let Some(report) = &view.latest {
        if !report.changes.is_empty() {
            h.push_str("<h2>Changes</h2>\n");
            change_rows(&mut h, &report.changes);
            more(&mut h, view.changes_total, &n, "changes");
        }
        if !report.ignored.is_empty() {
            let _ = writeln!(h, "<h2>Ignored</h2>");
            change_rows(&mut h, &report.ignored);
            more(&mut h, view.ignored_total, &n, "ignored changes");
        }
    }
    let _ = writeln!(h, "<h2>The last {TIMELINE_DAYS} days</h2>");
    super::timeline::render(
        &mut h,
        env,
        marks,
        now - chrono::Duration::days(TIMELINE_DAYS),
        now,
    );
    recent(&mut h, &n, marks);
    let _ = writeln!(
        h,
        "<p><a href=\"/detail/{n}\">The latest report (JSON)</a> · <a href=\"/history?environment={n}\">History (JSON)</a></p>\n</body></html>"
    );
    h
}

/// The heading: the status, since when, the last and the next scan.
fn status(h: &mut String, n: &str, view: &EnvView) {
    let Some(r) = &view.latest else {
        let _ = writeln!(
            h,
            "<h1>{n}</h1>\n<p>Not scanned yet; the next scan is due {}.</p>",
            time(view.next_scan)
        );
        return;
    };
    let _ = writeln!(
        h,
        "<h1>{n} <span class=\"badge {0}\">{0}</span></h1>",
        r.status
    );
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
    let _ = writeln!(h, "<p class=\"since\">{since}</p>");
    if let Some(e) = &r.error {
        let _ = writeln!(
            h,
            "<p class=\"error\"><b>{}</b>: {}</p>",
            escape(e.reason.as_str()),
            escape(&e.summary)
        );
    }
    let running = if view.running { " (scanning now)" } else { "" };
    let _ = writeln!(
        h,
        "<p>Last scan {}{running}; next scan {}.</p>",
        time(r.finished_at()),
        time(view.next_scan)
    );
}

/// The newest scans, each linking to its page.
fn recent(h: &mut String, n: &str, marks: &[(String, DateTime<Utc>, Status)]) {
    if marks.is_empty() {
        return;
    }
    let _ = writeln!(h, "<h2>Recent scans</h2>\n<ol class=\"scans\">");
    for (id, at, status) in marks.iter().rev().take(RECENT) {
        let _ = writeln!(
            h,
            "<li><a href=\"/history/{n}/{}\">{}</a> <span class=\"{status}\">{status}</span></li>",
            escape(id),
            time(Some(*at))
        );
    }
    h.push_str("</ol>\n");
}
