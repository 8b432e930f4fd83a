//! The pages people open: the landing page `/`, in the spirit of blackbox_exporter's (every
//! environment with its status, last and next scan, the reason of an error, the changed
//! resources with actual -> expected, links), each environment's page
//! ([`environment`], where alert links lead) and a stored scan's page ([`scan`]). Drawn
//! on the server: no JavaScript, no external asset, readable on a phone.

mod environment;
mod scan;
mod timeline;

pub use environment::{TIMELINE_DAYS, render as environment};
pub use scan::render as scan;

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::report::{Change, Report, Status};
use crate::state::{EnvView, KEPT_CHANGES, State};

/// Escapes text for HTML content and attribute values; hidden characters (bidi, controls)
/// are shown as `\u202e` ([`crate::text::visible_lines`]), so that they cannot reorder
/// what surrounds them.
pub fn escape(text: &str) -> String {
    let text = crate::text::visible_lines(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's head: title, phone viewport and the one style sheet.
fn head(h: &mut String, title: &str) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title>\n<style>{STYLE}</style></head><body>\n",
        escape(title)
    );
}

/// One style sheet for every page. Long addresses and values wrap anywhere; under 600 px
/// a table's rows become blocks, so that nothing scrolls sideways on a phone.
const STYLE: &str = "body{font-family:sans-serif;margin:1em auto;max-width:72em;padding:0 1em}\
h1,h2,p,li{overflow-wrap:anywhere}\
table{border-collapse:collapse;margin-bottom:1em;width:100%}\
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
code{font-size:90%;overflow-wrap:anywhere;white-space:pre-wrap}\
.conform{color:#1a7f37}.drift{color:#9a6700}.error{color:#cf222e}\
.badge{border-radius:4px;padding:0 .4em;color:#fff}.badge.conform{background:#1a7f37}\
.badge.drift{background:#9a6700}.badge.error{background:#cf222e}\
svg.timeline{width:100%;height:3em;background:#f6f8fa;display:block}\
rect.mark.conform{fill:#1a7f37}rect.mark.drift{fill:#d4a72c}rect.mark.error{fill:#cf222e}\
ul.attrs{margin:0;padding-left:1em}ol.scans{padding-left:1.5em}\
@media (max-width:600px){table.rows,table.rows tbody,table.rows tr,table.rows td{display:block;width:auto}\
table.rows thead{display:none}table.rows tr{margin-bottom:.8em;border:1px solid #ccc}\
table.rows td{border:none}table.rows td::before{content:attr(data-label) \": \";font-weight:bold}}";

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_owned())
}

fn value(v: &serde_json::Value) -> String {
    crate::report::shown(v, 120)
}

/// Guests created outside Terraform, when `[proxmox]` is configured.
fn unmanaged_section(h: &mut String, state: &State) {
    if state.config().proxmox.is_none() {
        return;
    }
    h.push_str("<h2 id=\"unmanaged\">Guests outside Terraform</h2>\n");
    let Some(u) = state.unmanaged() else {
        h.push_str("<p>The first check of the Proxmox inventory has not finished yet.</p>\n");
        return;
    };
    if let Some(e) = &u.error {
        let _ = writeln!(
            h,
            "<p class=\"error\"><b>check failed ({})</b> at {}: {}</p>",
            escape(e.reason.as_str()),
            time(u.checked_at),
            escape(&e.summary)
        );
        if !u.guests.is_empty() {
            let _ = writeln!(
                h,
                "<p>The last successful check ({}) found:</p>",
                time(u.guests_checked_at)
            );
        }
    } else if u.guests.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"conform\">None: every one of the {} guests is in a Terraform state{} (checked {}).</p>",
            u.inventory,
            if u.ignored > 0 {
                format!(" or ignored ({})", u.ignored)
            } else {
                String::new()
            },
            time(u.checked_at)
        );
        return;
    } else {
        let _ = writeln!(
            h,
            "<p class=\"drift\">{} guest(s) that no environment's state manages (checked {}; {} ignored). \
<code>tfdrift-exporter reconcile ENV</code> prints the import blocks that adopt them.</p>",
            u.guests.len(),
            time(u.checked_at),
            u.ignored
        );
    }
    if u.guests.is_empty() {
        return;
    }
    h.push_str(
        "<table><tr><th>VMID</th><th>Kind</th><th>Name</th><th>Node</th><th>Status</th><th>Created by</th></tr>\n",
    );
    for g in &u.guests {
        let created = match (&g.created_by, g.created_at) {
            (Some(a), at) => format!("{} at {}", escape(&a.user), time(at.or(a.time))),
            (None, Some(at)) => format!("at {}", time(Some(at))),
            (None, None) => "-".to_owned(),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{created}</td></tr>",
            g.vmid,
            g.kind.as_str(),
            escape(g.name.as_deref().unwrap_or("-")),
            escape(&g.node),
            escape(g.status.as_deref().unwrap_or("-"))
        );
    }
    h.push_str("</table>\n<p><a href=\"/unmanaged\">Unmanaged guests (JSON)</a></p>\n");
}

/// The whole page.
pub fn render(state: &State) -> String {
    let mut h = String::new();
    head(&mut h, "tfdrift-exporter");
    let _ = writeln!(
        h,
        "<h1>tfdrift-exporter</h1>\n<p><a href=\"/metrics\">Metrics</a> · <a href=\"/detail\">Details (JSON)</a> · \
<a href=\"/history\">History (JSON)</a> · version {}</p>",
        env!("CARGO_PKG_VERSION")
    );
    h.push_str("<h2>Environments</h2>\n<table><tr><th>Environment</th><th>Status</th><th>Last scan</th><th>Duration</th><th>Next scan</th><th>Changes</th><th>Links</th></tr>\n");
    let views = state.views();
    for (name, view) in &views {
        environment_row(&mut h, name, view);
    }
    h.push_str("</table>\n");
    unmanaged_section(&mut h, state);
    for (name, view) in &views {
        if let Some(report) = &view.latest {
            environment_section(&mut h, name, view, report);
        }
    }
    h.push_str("</body></html>\n");
    h
}

/// One environment's line in the landing page's table.
fn environment_row(h: &mut String, name: &str, view: &EnvView) {
    let n = escape(name);
    let (status, class, summary) = match &view.latest {
        None => ("not scanned yet".to_owned(), "", String::new()),
        Some(r) => {
            let s = &r.summary;
            let summary = match (&r.error, r.status) {
                (Some(e), _) => format!("{}: {}", e.reason, e.summary),
                (None, Status::Drift) => format!(
                    "{} create, {} update, {} delete, {} replace ({} outside Terraform)",
                    s.create, s.update, s.delete, s.replace, s.outside_terraform
                ),
                (None, _) => "no changes".to_owned(),
            };
            (r.status.as_str().to_owned(), r.status.as_str(), summary)
        }
    };
    let running = if view.running { " (scanning now)" } else { "" };
    let last = view.latest.as_ref().and_then(|r| r.finished_at());
    let duration = view
        .latest
        .as_ref()
        .and_then(|r| r.duration_seconds())
        .map(|d| format!("{d:.1}s"))
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        h,
        "<tr><td><a href=\"/environments/{n}\">{n}</a></td><td class=\"{class}\">{}{running}</td><td>{}</td><td>{duration}</td><td>{}</td><td>{}</td>\
<td><a href=\"/detail/{n}\">detail</a> · <a href=\"/history?environment={n}\">history</a></td></tr>",
        escape(&status),
        time(last),
        time(view.next_scan),
        escape(&summary)
    );
}

/// One environment's last report: its error, its changes and its ignored changes.
fn environment_section(h: &mut String, name: &str, view: &EnvView, report: &Report) {
    let n = escape(name);
    let _ = writeln!(
        h,
        "<h2 id=\"env-{n}\">{n}: <span class=\"{0}\">{0}</span></h2>",
        report.status.as_str()
    );
    if let Some(e) = &report.error {
        let _ = writeln!(
            h,
            "<p><b>{}</b>: {}</p><pre>{}</pre>",
            escape(e.reason.as_str()),
            escape(&e.summary),
            escape(&e.detail)
        );
    }
    if !report.changes.is_empty() {
        changes_table(h, &report.changes);
        more(h, view.changes_total, &n, "changes");
    }
    for c in report.ignored.iter().take(KEPT_CHANGES) {
        let _ = writeln!(
            h,
            "<p>ignored: <code>{}</code> {} ({})</p>",
            escape(&c.address),
            c.action,
            escape(c.ignored_by.as_deref().unwrap_or(""))
        );
    }
    more(h, view.ignored_total, &n, "ignored changes");
}

/// The changes, one row per attribute: actual -> expected.
fn changes_table(h: &mut String, changes: &[Change]) {
    h.push_str("<table><tr><th>Resource</th><th>Action</th><th>Outside Terraform</th><th>Attribute</th><th>Actual -&gt; expected</th></tr>\n");
    for c in changes.iter().take(KEPT_CHANGES) {
        let rows = c.attributes.len().max(1);
        let _ = write!(
            h,
            "<tr><td rowspan=\"{rows}\"><code>{}</code></td><td rowspan=\"{rows}\">{}</td><td rowspan=\"{rows}\">{}</td>",
            escape(&c.address),
            c.action,
            if c.outside_terraform { "yes" } else { "no" }
        );
        if c.attributes.is_empty() {
            h.push_str("<td></td><td></td></tr>\n");
        }
        for (i, a) in c.attributes.iter().enumerate() {
            if i > 0 {
                h.push_str("<tr>");
            }
            let _ = writeln!(
                h,
                "<td><code>{}</code></td><td><code>{}</code> -&gt; <code>{}</code></td></tr>",
                escape(&a.path),
                escape(&value(&a.actual)),
                escape(&value(&a.expected))
            );
        }
    }
    h.push_str("</table>\n");
}

/// "and N more" under a list cut at [`KEPT_CHANGES`], with the link to the whole report.
fn more(h: &mut String, total: usize, env: &str, what: &str) {
    if total > KEPT_CHANGES {
        let _ = writeln!(
            h,
            "<p>and {} more {what}: <a href=\"/detail/{env}\">the whole report (JSON)</a></p>",
            total - KEPT_CHANGES
        );
    }
}

/// The changes of a report as people read them on every page but the landing one: one row
/// per resource (address, action, why, each attribute actual -> expected, who and since
/// when), at most [`KEPT_CHANGES`].
fn change_rows(h: &mut String, changes: &[Change]) {
    h.push_str("<table class=\"rows changes\"><thead><tr><th>Resource</th><th>Action</th><th>Why</th><th>Actual -&gt; expected</th><th>Who, when</th></tr></thead><tbody>\n");
    for c in changes.iter().take(KEPT_CHANGES) {
        let why = match (c.ignored_by.as_deref(), c.outside_terraform) {
            (Some(rule), _) => format!("ignored: {}", escape(rule)),
            (None, true) => "changed outside Terraform".to_owned(),
            (None, false) => "code not applied yet".to_owned(),
        };
        let _ = write!(
            h,
            "<tr class=\"change\"><td data-label=\"Resource\"><code>{}</code></td><td data-label=\"Action\">{}</td><td data-label=\"Why\">{why}</td><td data-label=\"Actual -&gt; expected\">",
            escape(&c.address),
            c.action
        );
        if !c.attributes.is_empty() {
            h.push_str("<ul class=\"attrs\">");
            for a in &c.attributes {
                let _ = write!(
                    h,
                    "<li class=\"attr\"><code>{}</code>: <code class=\"actual\">{}</code> -&gt; <code class=\"expected\">{}</code></li>",
                    escape(&a.path),
                    escape(&value(&a.actual)),
                    escape(&value(&a.expected))
                );
            }
            h.push_str("</ul>");
        }
        h.push_str("</td><td data-label=\"Who, when\" class=\"who\">");
        who(h, c);
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody></table>\n");
}

/// Who changed it (the newest attribution entry) and since when the change is there.
fn who(h: &mut String, c: &Change) {
    match c.changed_by.as_deref() {
        Some([newest, ..]) => {
            let token = newest
                .token
                .as_deref()
                .map(|t| format!(" (token {})", escape(t)))
                .unwrap_or_default();
            let terraform = if newest.by_terraform {
                ", Terraform's own token"
            } else {
                ""
            };
            let _ = write!(
                h,
                "<span class=\"user\">{}</span>{token}{terraform} at {}: <code>{}</code>",
                escape(&newest.user),
                time(newest.time),
                escape(&newest.message)
            );
        }
        Some([]) => h.push_str("nobody found in Proxmox's log"),
        None => h.push_str("unknown"),
    }
    if let Some(since) = c.since {
        let _ = write!(h, "<br>since {}", time(Some(since)));
    }
}
