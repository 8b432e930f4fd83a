//! Reports for people: an aligned table of changes (address, action, attribute,
//! actual -> expected), colour only on a terminal. Every text from a plan, an error or a
//! rule is shown through [`crate::text::visible`]: a bidi or escape character in a value is
//! printed as `\u202e`, never sent to the terminal.

use std::fmt::Write;

use serde_json::Value;

use crate::plan::redact::{KNOWN_AFTER_APPLY, SENSITIVE};
use crate::report::{Report, Status};
use crate::text::visible;

/// Longest value shown in a table cell; the JSON report has the whole value.
const MAX_VALUE: usize = 60;

/// Renders reports as text; `colour` adds ANSI colours to statuses.
pub fn render_text(reports: &[Report], colour: bool) -> String {
    let mut out = String::new();
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_one(&mut out, report, colour);
    }
    out
}

fn paint(text: &str, status: Status, colour: bool) -> String {
    if !colour {
        return text.to_owned();
    }
    let code = match status {
        Status::Conform => "32",
        Status::Drift => "33",
        Status::Error => "31",
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

fn render_one(out: &mut String, r: &Report, colour: bool) {
    let name = r.environment().unwrap_or("plan");
    let status = paint(&r.status.as_str().to_uppercase(), r.status, colour);
    let facts = facts_of(r);
    let _ = writeln!(
        out,
        "{name}: {status}{}",
        if facts.is_empty() {
            String::new()
        } else {
            format!("  ({})", facts.join("; "))
        }
    );

    if let Some(e) = &r.error {
        let _ = writeln!(out, "  reason: {}", e.reason);
        let _ = writeln!(
            out,
            "  error:  {}",
            visible(e.summary.lines().next().unwrap_or_default())
        );
        for line in e.detail.lines().filter(|l| !l.trim().is_empty()).take(12) {
            let _ = writeln!(out, "          {}", visible(line));
        }
    }
    table(out, &rows_of(r));
    checks(out, r);
    for ignored in &r.ignored {
        let _ = writeln!(
            out,
            "  ignored: {} {} ({})",
            visible(&ignored.address),
            ignored.action,
            visible(ignored.ignored_by.as_deref().unwrap_or("ignore rule"))
        );
    }
}

/// The counts, the tool and the duration on the status line.
fn facts_of(r: &Report) -> Vec<String> {
    let mut facts = Vec::new();
    let counts: Vec<String> = crate::report::Action::COUNTED
        .iter()
        .filter(|a| r.summary.count(**a) > 0)
        .map(|a| format!("{} to {a}", r.summary.count(*a)))
        .collect();
    if !counts.is_empty() {
        facts.push(counts.join(", "));
    }
    if r.summary.outside_terraform > 0 {
        facts.push(format!(
            "{} changed outside Terraform",
            r.summary.outside_terraform
        ));
    }
    if r.summary.ignored > 0 {
        facts.push(format!("{} ignored", r.summary.ignored));
    }
    if let Some(tool) = &r.tool
        && let Some(version) = &tool.version
    {
        facts.push(format!(
            "{} {version}",
            tool.binary.as_deref().unwrap_or("terraform")
        ));
    }
    if !r.checks.is_empty() {
        let counts: Vec<String> = crate::report::CheckStatus::ALL
            .into_iter()
            .zip(crate::report::count_checks(&r.checks))
            .filter(|(_, n)| *n > 0)
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        facts.push(format!("checks: {}", counts.join(", ")));
    }
    if let Some(d) = r.duration_seconds() {
        facts.push(format!("{d:.1}s"));
    }
    facts
}

/// The failing checks, one line per failing instance with its message.
fn checks(out: &mut String, r: &Report) {
    for check in r.checks.iter().filter(|c| c.status.failed()) {
        if check.problems.is_empty() {
            let _ = writeln!(
                out,
                "  check {}: {} (could not be evaluated: see the error)",
                check.status,
                visible(&check.address)
            );
        }
        for problem in &check.problems {
            let _ = writeln!(
                out,
                "  check {}: {}: {}",
                check.status,
                visible(&problem.instance),
                visible(&problem.message)
            );
        }
    }
}

/// The change rows in aligned columns (the first row is the heading).
fn table(out: &mut String, rows: &[[String; 5]]) {
    if rows.len() <= 1 {
        return;
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from(" ");
        for (c, cell) in row.iter().enumerate() {
            line.push(' ');
            line.push_str(cell);
            if c < 4 {
                line.push_str(&" ".repeat(widths[c].saturating_sub(cell.chars().count()) + 1));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn rows_of(r: &Report) -> Vec<[String; 5]> {
    let mut rows = vec![
        [
            "ADDRESS",
            "ACTION",
            "OUTSIDE",
            "ATTRIBUTE",
            "ACTUAL -> EXPECTED",
        ]
        .map(String::from),
    ];
    for change in &r.changes {
        let outside = if change.outside_terraform {
            "yes"
        } else {
            "no"
        };
        let action = match &change.reason {
            Some(reason) if reason.starts_with("deposed") => {
                format!("{} ({})", change.action, visible(reason))
            }
            _ => change.action.to_string(),
        };
        if change.attributes.is_empty() {
            rows.push([
                visible(&change.address).into_owned(),
                action,
                outside.into(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        for (i, a) in change.attributes.iter().enumerate() {
            let (address, action, outside) = if i == 0 {
                (
                    visible(&change.address).into_owned(),
                    action.clone(),
                    outside.to_owned(),
                )
            } else {
                Default::default()
            };
            rows.push([
                address,
                action,
                outside,
                visible(&a.path).into_owned(),
                format!("{} -> {}", cell(&a.actual), cell(&a.expected)),
            ]);
        }
    }
    rows
}

/// A value as a table cell: JSON, except the markers, shortened.
fn cell(value: &Value) -> String {
    let text = match value {
        Value::String(s) if s == SENSITIVE || s == KNOWN_AFTER_APPLY => s.clone(),
        other => other.to_string(),
    };
    crate::text::cut(&visible(&text), MAX_VALUE, "...").into_owned()
}
