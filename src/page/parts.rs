//! The pieces every page shares: the change table and the note under a cut list.

use maud::{Markup, html};

use super::{Text, time};
use crate::report::{Change, CheckResult, CheckStatus, count_checks, shown};
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

/// The plan's checks (continuous validation): the count per status, and each failing or
/// errored object with its instance and message, at most [`KEPT_CHANGES`] rows.
pub(super) fn checks(checks: &[CheckResult]) -> Markup {
    let counts: Vec<String> = CheckStatus::ALL
        .into_iter()
        .zip(count_checks(checks))
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    let failed: Vec<(&CheckResult, &str, &str)> = checks
        .iter()
        .filter(|c| c.status.failed())
        .flat_map(|c| {
            let rows: Vec<(&CheckResult, &str, &str)> = if c.problems.is_empty() {
                vec![(
                    c,
                    c.address.as_str(),
                    "could not be evaluated: see the error",
                )]
            } else {
                c.problems
                    .iter()
                    .map(|p| (c, p.instance.as_str(), p.message.as_str()))
                    .collect()
            };
            rows
        })
        .take(KEPT_CHANGES)
        .collect();
    html! {
        @if !checks.is_empty() {
            h2 { "Checks" }
            p.checks { (counts.join(", ")) }
            @if !failed.is_empty() {
                table.rows.checks {
                    thead { tr { th { "Check" } th { "Kind" } th { "Status" } th { "Message" } } }
                    tbody {
                        @for (c, instance, message) in &failed {
                            tr.check {
                                td data-label="Check" { code { (Text(instance)) } }
                                td data-label="Kind" { (c.kind.as_str()) }
                                td data-label="Status" { span class="error" { (c.status) } }
                                td data-label="Message" { (Text(message)) }
                            }
                        }
                    }
                }
            }
        }
    }
}
