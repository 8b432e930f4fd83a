//! The landing page `/`, in the spirit of blackbox_exporter's: every environment with its
//! status, last and next scan, the reason of an error, the changed resources with
//! actual -> expected, and links to the JSON.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::report::{Change, Report, Status};
use crate::state::{EnvView, KEPT_CHANGES, State};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
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
        "<table><tr><th>VMID</th><th>Kind</th><th>Name</th><th>Node</th><th>Status</th></tr>\n",
    );
    for g in &u.guests {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
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
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tfdrift-exporter</title>\n<style>\
body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\
.conform{{color:#1a7f37}}.drift{{color:#9a6700}}.error{{color:#cf222e}}code{{font-size:90%}}\
</style></head><body>\n<h1>tfdrift-exporter</h1>\n<p><a href=\"/metrics\">Metrics</a> · <a href=\"/detail\">Details (JSON)</a> · \
<a href=\"/history\">History (JSON)</a> · version {}</p>\n",
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
    let last = view.latest.as_ref().and_then(|r| r.finished_at);
    let duration = view
        .latest
        .as_ref()
        .and_then(|r| r.duration_seconds)
        .map(|d| format!("{d:.1}s"))
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        h,
        "<tr><td><a href=\"#env-{n}\">{n}</a></td><td class=\"{class}\">{}{running}</td><td>{}</td><td>{duration}</td><td>{}</td><td>{}</td>\
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
