//! The landing page `/`, bounded however many environments there are: the count per status
//! (each a link to that status alone), a filter by name and status, then one page of
//! [`PAGE_SIZE`] environments, failing first, then drifting, never scanned, conform, each by
//! name; the error and the changed resources of the first [`SECTIONS`] of them that fail or
//! drift. Everything else about an environment is on its own page.

use maud::{Markup, html};

use super::parts::{changes, more};
use super::{Text, page, time};
use crate::report::{Report, Status};
use crate::state::{EnvView, State};

/// Environments per page.
pub const PAGE_SIZE: usize = 50;
/// Environments of a page whose changes and error are shown below the table.
pub const SECTIONS: usize = 10;

/// Where an environment stands, as the landing page sorts and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    Error,
    Drift,
    Unscanned,
    Conform,
}

impl Standing {
    const ALL: [Standing; 4] = [
        Standing::Error,
        Standing::Drift,
        Standing::Unscanned,
        Standing::Conform,
    ];

    fn of(view: &EnvView) -> Standing {
        match view.latest.as_ref().map(|r| r.status) {
            None => Standing::Unscanned,
            Some(Status::Error) => Standing::Error,
            Some(Status::Drift) => Standing::Drift,
            Some(Status::Conform) => Standing::Conform,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Standing::Error => "error",
            Standing::Drift => "drift",
            Standing::Unscanned => "unscanned",
            Standing::Conform => "conform",
        }
    }

    fn parse(text: &str) -> Option<Standing> {
        Standing::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What the landing page was asked: `?status=drift&name=web&page=2`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub status: Option<Standing>,
    /// Environments whose name contains it.
    pub name: Option<String>,
    /// From 1.
    pub page: usize,
}

impl Listing {
    /// The query's pairs, checked; `Err` says which one is wrong.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Listing, String> {
        let mut listing = Listing {
            page: 1,
            ..Listing::default()
        };
        for (key, value) in pairs {
            match key.as_str() {
                "status" if value.is_empty() => {}
                "status" => {
                    listing.status = Some(Standing::parse(&value).ok_or_else(|| {
                        format!("status={value:?} must be error, drift, unscanned or conform")
                    })?);
                }
                "name" => listing.name = Some(value).filter(|v| !v.is_empty()),
                "page" => match value.parse::<usize>() {
                    Ok(n) if n >= 1 => listing.page = n,
                    _ => return Err(format!("page={value:?} must be a number from 1")),
                },
                _ => {
                    return Err(format!(
                        "unknown parameter {key:?} (use status, name, page)"
                    ));
                }
            }
        }
        Ok(listing)
    }

    fn keeps(&self, name: &str, standing: Standing) -> bool {
        self.status.is_none_or(|s| s == standing)
            && self.name.as_deref().is_none_or(|n| name.contains(n))
    }

    /// The link to `page` of the same listing.
    fn link(&self, status: Option<Standing>, page: usize) -> String {
        let mut query = Vec::new();
        if let Some(s) = status {
            query.push(format!("status={}", s.as_str()));
        }
        if let Some(n) = &self.name {
            query.push(format!("name={}", encode(n)));
        }
        if page > 1 {
            query.push(format!("page={page}"));
        }
        match query.is_empty() {
            true => "/".to_owned(),
            false => format!("/?{}", query.join("&")),
        }
    }
}

/// Percent-encodes a query value (every byte but unreserved ones).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The landing page.
pub fn render(state: &State, listing: &Listing) -> String {
    let views = state.views();
    let mut counts = [0usize; 4];
    let mut running = 0;
    let mut kept: Vec<(Standing, &String, &EnvView)> = Vec::new();
    for (name, view) in &views {
        let standing = Standing::of(view);
        counts[standing as usize] += 1;
        running += usize::from(view.running);
        if listing.keeps(name, standing) {
            kept.push((standing, name, view));
        }
    }
    kept.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let pages = kept.len().div_ceil(PAGE_SIZE).max(1);
    let current = listing.page.min(pages);
    let shown = &kept[(current - 1) * PAGE_SIZE..kept.len().min(current * PAGE_SIZE)];
    let sections: Vec<_> = shown
        .iter()
        .filter(|(s, ..)| matches!(s, Standing::Error | Standing::Drift))
        .collect();
    let body = html! {
        h1 { "tfdrift-exporter" }
        p {
            a href="/metrics" { "Metrics" } " · "
            a href="/detail" { "Details (JSON)" } " · "
            a href="/history" { "History (JSON)" } " · version " (env!("CARGO_PKG_VERSION"))
        }
        h2 { "Environments" }
        p #summary {
            a href="/" { (views.len()) " environments" } ": "
            @for (i, standing) in Standing::ALL.into_iter().enumerate() {
                @if i > 0 { ", " }
                a class=(standing.as_str()) href=(listing.link(Some(standing), 1)) {
                    (counts[standing as usize]) " " (standing.as_str())
                }
            }
            @if running > 0 { " (" (running) " scanning now)" }
        }
        form method="get" action="/" {
            label { "Name contains " input type="text" name="name" value=(listing.name.as_deref().unwrap_or("")); }
            " "
            label { "status "
                select name="status" {
                    option value="" { "any" }
                    @for standing in Standing::ALL {
                        option value=(standing.as_str()) selected[listing.status == Some(standing)] { (standing.as_str()) }
                    }
                }
            }
            " " button type="submit" { "Filter" }
        }
        @if kept.is_empty() {
            p { "No environment matches." }
        } @else {
            table.rows {
                thead { tr {
                    th { "Environment" } th { "Status" } th { "Last scan" } th { "Duration" }
                    th { "Next scan" } th { "Changes" } th { "Links" }
                } }
                tbody { @for (_, name, view) in shown { (environment_row(name, view)) } }
            }
            (pager(listing, current, pages, kept.len()))
        }
        (unmanaged_section(state))
        @for (_, name, view) in sections.iter().take(SECTIONS) {
            @if let Some(report) = &view.latest { (environment_section(name, view, report)) }
        }
        @if sections.len() > SECTIONS {
            p { (sections.len() - SECTIONS) " more environments of this page fail or drift: open their pages from the table." }
        }
    };
    page("tfdrift-exporter", body)
}

/// "Environments 51-100 of 1000", with the previous and next pages.
fn pager(listing: &Listing, current: usize, pages: usize, total: usize) -> Markup {
    let first = (current - 1) * PAGE_SIZE + 1;
    let last = total.min(current * PAGE_SIZE);
    html! {
        p #pages {
            "Environments " (first) "-" (last) " of " (total)
            @if current > 1 { " · " a rel="prev" href=(listing.link(listing.status, current - 1)) { "previous page" } }
            @if current < pages { " · " a rel="next" href=(listing.link(listing.status, current + 1)) { "next page" } }
        }
    }
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
            td data-label="Environment" { a href={ "/environments/" (Text(name)) } { (Text(name)) } }
            @match status {
                Some(status) => td data-label="Status" class=(status) {
                    (status) @if view.running { " (scanning now)" }
                },
                None => td data-label="Status" { "not scanned yet" @if view.running { " (scanning now)" } },
            }
            td data-label="Last scan" { (time(latest.and_then(Report::finished_at))) }
            td data-label="Duration" { (duration) }
            td data-label="Next scan" { (time(view.next_scan)) }
            td data-label="Changes" { (Text(&summary)) }
            td data-label="Links" {
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
