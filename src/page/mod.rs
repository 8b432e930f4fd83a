//! The pages people open: the landing page `/`, in the spirit of blackbox_exporter's (every
//! environment with its status, last and next scan, the reason of an error, the changed
//! resources with actual -> expected, links), each environment's page
//! ([`environment`], where alert links lead) and a stored scan's page ([`scan`]). Drawn
//! on the server with maud, which escapes every spliced value: untrusted text goes in as
//! [`Text`] (hidden characters shown too), and the one change table ([`parts::changes`])
//! serves all three pages. No JavaScript, no external asset, readable on a phone.

mod environment;
mod parts;
mod scan;
mod timeline;

pub use environment::{TIMELINE_DAYS, render as environment};
pub use scan::render as scan;

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, Render, html};

use crate::report::{Report, Status};
use crate::state::{EnvView, State};
use parts::{changes, more};

/// Untrusted text as a page shows it: escaped by maud like every splice, and its hidden
/// characters (bidi, controls) shown as `\u202e` ([`crate::text::visible_lines`]), so that
/// they cannot reorder what surrounds them.
pub struct Text<'a>(pub &'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        crate::text::visible_lines(self.0)
            .as_ref()
            .render_to(buffer);
    }
}

/// A whole page: head (title, phone viewport, the one style sheet) and `body`.
fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (Text(title)) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
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
table.changes td:nth-child(2),table.changes th:nth-child(2){overflow-wrap:normal;white-space:nowrap}\
@media (max-width:600px){table.rows,table.rows tbody,table.rows tr,table.rows td{display:block;width:auto}\
table.rows thead{display:none}table.rows tr{margin-bottom:.8em;border:1px solid #ccc}\
table.rows td{border:none}table.rows td::before{content:attr(data-label) \": \";font-weight:bold}}";

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_owned())
}

/// The landing page.
pub fn render(state: &State) -> String {
    let views = state.views();
    let body = html! {
        h1 { "tfdrift-exporter" }
        p {
            a href="/metrics" { "Metrics" } " · "
            a href="/detail" { "Details (JSON)" } " · "
            a href="/history" { "History (JSON)" } " · version " (env!("CARGO_PKG_VERSION"))
        }
        h2 { "Environments" }
        table {
            tr {
                th { "Environment" } th { "Status" } th { "Last scan" } th { "Duration" }
                th { "Next scan" } th { "Changes" } th { "Links" }
            }
            @for (name, view) in &views { (environment_row(name, view)) }
        }
        (unmanaged_section(state))
        @for (name, view) in &views {
            @if let Some(report) = &view.latest { (environment_section(name, view, report)) }
        }
    };
    page("tfdrift-exporter", body)
}

/// One environment's line in the landing page's table.
fn environment_row(name: &str, view: &EnvView) -> Markup {
    let (status, summary) = match &view.latest {
        None => (None, String::new()),
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
            (Some(r.status), summary)
        }
    };
    let latest = view.latest.as_deref();
    let duration = latest
        .and_then(Report::duration_seconds)
        .map_or_else(|| "-".to_owned(), |d| format!("{d:.1}s"));
    html! {
        tr {
            td { a href={ "/environments/" (Text(name)) } { (Text(name)) } }
            @match status {
                Some(status) => td class=(status) {
                    (status) @if view.running { " (scanning now)" }
                },
                None => td { "not scanned yet" @if view.running { " (scanning now)" } },
            }
            td { (time(latest.and_then(Report::finished_at))) }
            td { (duration) }
            td { (time(view.next_scan)) }
            td { (Text(&summary)) }
            td {
                a href={ "/detail/" (Text(name)) } { "detail" } " · "
                a href={ "/history?environment=" (Text(name)) } { "history" }
            }
        }
    }
}

/// One environment's last report on the landing page: its error, its changes and its
/// ignored changes.
fn environment_section(name: &str, view: &EnvView, report: &Report) -> Markup {
    html! {
        h2 id={ "env-" (Text(name)) } {
            (Text(name)) ": " span class=(report.status) { (report.status) }
        }
        @if let Some(e) = &report.error {
            p { b { (e.reason) } ": " (Text(&e.summary)) }
            pre { (Text(&e.detail)) }
        }
        @if !report.changes.is_empty() {
            (changes(&report.changes))
            (more(view.changes_total, name, "changes"))
        }
        @if !report.ignored.is_empty() {
            h3 { "Ignored" }
            (changes(&report.ignored))
            (more(view.ignored_total, name, "ignored changes"))
        }
    }
}

/// Guests created outside Terraform, when `[proxmox]` is configured.
fn unmanaged_section(state: &State) -> Markup {
    if state.config().proxmox.is_none() {
        return html! {};
    }
    let Some(u) = state.unmanaged() else {
        return html! {
            h2 #unmanaged { "Guests outside Terraform" }
            p { "The first check of the Proxmox inventory has not finished yet." }
        };
    };
    html! {
        h2 #unmanaged { "Guests outside Terraform" }
        @if let Some(e) = &u.error {
            p.error { b { "check failed (" (e.reason.as_str()) ")" } " at " (time(u.checked_at)) ": " (Text(&e.summary)) }
            @if !u.guests.is_empty() {
                p { "The last successful check (" (time(u.guests_checked_at)) ") found:" }
            }
        } @else if u.guests.is_empty() {
            p.conform {
                "None: every one of the " (u.inventory) " guests is in a Terraform state"
                @if u.ignored > 0 { " or ignored (" (u.ignored) ")" }
                " (checked " (time(u.checked_at)) ")."
            }
        } @else {
            p.drift {
                (u.guests.len()) " guest(s) that no environment's state manages (checked "
                (time(u.checked_at)) "; " (u.ignored) " ignored). "
                code { "tfdrift-exporter reconcile ENV" } " prints the import blocks that adopt them."
            }
        }
        @if !u.guests.is_empty() {
            table {
                tr { th { "VMID" } th { "Kind" } th { "Name" } th { "Node" } th { "Status" } th { "Created by" } }
                @for g in &u.guests {
                    tr {
                        td { (g.vmid) }
                        td { (g.kind.as_str()) }
                        td { (Text(g.name.as_deref().unwrap_or("-"))) }
                        td { (Text(&g.node)) }
                        td { (Text(g.status.as_deref().unwrap_or("-"))) }
                        td {
                            @match (&g.created_by, g.created_at) {
                                (Some(a), at) => { (Text(&a.user)) " at " (time(at.or(a.time))) },
                                (None, Some(at)) => { "at " (time(Some(at))) },
                                (None, None) => "-",
                            }
                        }
                    }
                }
            }
            p { a href="/unmanaged" { "Unmanaged guests (JSON)" } }
        }
    }
}
