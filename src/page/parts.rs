//! The pieces every page shares: the change table and the note under a cut list.

use maud::{Markup, html};

use super::{Text, time};
use crate::report::{Change, shown};
use crate::state::KEPT_CHANGES;

/// The changes of a report as people read them, on every page: one row per resource
/// (address, action, why, each attribute actual -> expected, who and since when), at most
/// [`KEPT_CHANGES`]. Under 600 px each row is a block of labelled lines.
pub(super) fn changes(changes: &[Change]) -> Markup {
    html! {
        table.rows.changes {
            thead {
                tr {
                    th { "Resource" } th { "Action" } th { "Why" }
                    th { "Actual -> expected" } th { "Who, when" }
                }
            }
            tbody {
                @for c in changes.iter().take(KEPT_CHANGES) {
                    tr.change {
                        td data-label="Resource" { code { (Text(&c.address)) } }
                        td data-label="Action" { (c.action) }
                        td data-label="Why" {
                            @match (c.ignored_by.as_deref(), c.outside_terraform) {
                                (Some(rule), _) => { "ignored: " (Text(rule)) },
                                (None, true) => "changed outside Terraform",
                                (None, false) => "code not applied yet",
                            }
                        }
                        td data-label="Actual -> expected" {
                            @if !c.attributes.is_empty() {
                                ul.attrs {
                                    @for a in &c.attributes {
                                        li.attr {
                                            code { (Text(&a.path)) } ": "
                                            code.actual { (Text(&shown(&a.actual, 120))) }
                                            " -> "
                                            code.expected { (Text(&shown(&a.expected, 120))) }
                                        }
                                    }
                                }
                            }
                        }
                        td.who data-label="Who, when" { (who(c)) }
                    }
                }
            }
        }
    }
}

/// Who changed it (the newest attribution entry) and since when the change is there.
fn who(c: &Change) -> Markup {
    html! {
        @match c.changed_by.as_deref() {
            Some([newest, ..]) => {
                span.user { (Text(&newest.user)) }
                @if let Some(token) = &newest.token { " (token " (Text(token)) ")" }
                @if newest.by_terraform { ", Terraform's own token" }
                " at " (time(newest.time)) ": " code { (Text(&newest.message)) }
            },
            Some([]) => "nobody found in Proxmox's log",
            None => "unknown",
        }
        @if let Some(since) = c.since { br; "since " (time(Some(since))) }
    }
}

/// "and N more" under a list cut at [`KEPT_CHANGES`], with the link to the whole report.
pub(super) fn more(total: usize, env: &str, what: &str) -> Markup {
    html! {
        @if total > KEPT_CHANGES {
            p {
                "and " (total - KEPT_CHANGES) " more " (what) ": "
                a href={ "/detail/" (Text(env)) } { "the whole report (JSON)" }
            }
        }
    }
}
