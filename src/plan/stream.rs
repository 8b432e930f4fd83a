//! The `plan -json` stream: one JSON object per line. It gives the tool and its version
//! (first line) and the diagnostics; attribute values only come from `show -json`.

use serde::Deserialize;

pub use crate::classify::Diagnostic;
use crate::classify::{Phase, classify};
use crate::report::ScanError;

/// What the exporter keeps of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// `terraform` or `tofu`, from the `version` line.
    pub tool: Option<String>,
    pub version: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// The stream says terraform was interrupted (SIGINT/SIGTERM).
    pub interrupted: bool,
    /// Lines that were not JSON messages, kept (bounded) for classification.
    pub stray: String,
    /// The stream ended in the middle of a line (terraform killed, or a pipe cut).
    pub cut: bool,
    /// A `change_summary` line was read: the plan ran to its end.
    pub change_summary: bool,
    /// A `planned_change` or `resource_drift` line was read: the plan has something to
    /// show, whatever its exit code says (OpenTofu exits 0 for a refresh-only plan with
    /// drift).
    pub reported_changes: bool,
}

/// Upper bound of stray text kept from a stream: enough for any error message, and a
/// misbehaving binary cannot fill memory.
pub const MAX_STRAY: usize = 64 * 1024;

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "@message", default)]
    message: String,
    #[serde(default)]
    terraform: Option<String>,
    #[serde(default)]
    tofu: Option<String>,
    #[serde(default)]
    diagnostic: Option<Diagnostic>,
}

impl StreamSummary {
    /// Takes one line of the stream.
    pub fn push_line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        match serde_json::from_str::<Line>(line) {
            Ok(msg) => self.push_message(msg),
            Err(_) => push_bounded(&mut self.stray, line),
        }
    }

    fn push_message(&mut self, msg: Line) {
        match msg.kind.as_str() {
            "version" => {
                if let Some(v) = msg.terraform {
                    self.tool = Some("terraform".to_owned());
                    self.version = Some(v);
                } else if let Some(v) = msg.tofu {
                    self.tool = Some("tofu".to_owned());
                    self.version = Some(v);
                }
            }
            "diagnostic" => {
                if let Some(d) = msg.diagnostic {
                    self.diagnostics.push(d);
                }
            }
            "change_summary" => self.change_summary = true,
            "planned_change" | "resource_drift" => self.reported_changes = true,
            "log" if msg.message.contains("Interrupt received") => self.interrupted = true,
            _ => {}
        }
    }

    /// Reads a whole recorded stream.
    pub fn parse(text: &str) -> StreamSummary {
        let mut summary = StreamSummary::default();
        text.lines().for_each(|l| summary.push_line(l));
        summary
    }

    /// What is missing for this stream to be a complete plan, `None` when it is one: a
    /// `version` line and a `change_summary`.
    pub fn incomplete(&self) -> Option<&'static str> {
        match (self.version.is_some(), self.change_summary) {
            (true, true) => None,
            (false, _) => Some("no version line"),
            (true, false) => Some("no change summary"),
        }
    }

    /// A diagnostic about a check or a condition was read: the plan's `checks` have
    /// something to say.
    pub fn mentions_checks(&self) -> bool {
        self.diagnostics
            .iter()
            .any(crate::classify::is_check_diagnostic)
    }

    /// The error diagnostics, in order.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// Appends a line to a bounded buffer; past the bound the rest is dropped.
pub fn push_bounded(buffer: &mut String, line: &str) {
    if buffer.len() >= MAX_STRAY {
        return;
    }
    let room = MAX_STRAY - buffer.len();
    let mut end = line.len().min(room);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    buffer.push_str(&line[..end]);
    buffer.push('\n');
}

/// Splits plain (`-no-color`) terraform output into its `Error: ...` blocks, for commands
/// run without `-json` (init) and for crashes that never reached the stream.
pub fn errors_from_text(text: &str) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut current: Option<Diagnostic> = None;
    for raw in text.lines() {
        // `state pull` has no -no-color: its diagnostics come coloured.
        let plain = strip_ansi(raw);
        // Human output frames diagnostics with box characters.
        let line = plain.trim_start_matches(['│', '╷', '╵', ' ']).trim_end();
        if let Some(summary) = line.strip_prefix("Error: ") {
            out.extend(current.take());
            current = Some(Diagnostic {
                severity: "error".to_owned(),
                summary: summary.to_owned(),
                detail: String::new(),
                address: None,
            });
        } else if line.starts_with("Warning: ") {
            out.extend(current.take());
        } else if let Some(d) = current.as_mut()
            && (!d.detail.is_empty() || !line.is_empty())
        {
            d.detail.push_str(line);
            d.detail.push('\n');
        }
    }
    out.extend(current);
    for d in &mut out {
        d.detail = d.detail.trim().to_owned();
    }
    out
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Classifies recorded output of a failed plan: a `-json` stream, or plain text when it
/// holds no diagnostic. `None` when it shows no error at all.
pub fn classify_recorded(text: &str) -> Option<ScanError> {
    let stream = StreamSummary::parse(text);
    let mut diagnostics: Vec<Diagnostic> = stream.errors().cloned().collect();
    if diagnostics.is_empty() {
        diagnostics = errors_from_text(text);
    }
    (!diagnostics.is_empty()).then(|| classify(&diagnostics, Phase::Plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coloured_errors_are_read_too() {
        let text = "\u{1b}[31m\u{1b}[31m╷\u{1b}[0m\u{1b}[0m\n\u{1b}[31m│\u{1b}[0m \u{1b}[0m\u{1b}[1m\u{1b}[31mError: \u{1b}[0m\u{1b}[0m\u{1b}[1mBackend initialization required, please run \"terraform init\"\u{1b}[0m\n\u{1b}[31m│\u{1b}[0m \u{1b}[0m\u{1b}[0mReason: Initial configuration\n";
        let errors = errors_from_text(text);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].summary,
            "Backend initialization required, please run \"terraform init\""
        );
        assert_eq!(errors[0].detail, "Reason: Initial configuration");
    }

    #[test]
    fn plain_text_errors_are_split_from_warnings() {
        let text = "╷\n│ Warning: Unable to open CLI configuration file\n│\n│ The CLI configuration file at \"/x\" does not exist.\n╵\n╷\n│ Error: Failed to get existing workspaces: dial tcp: connection refused\n│\n│ more\n╵\n";
        let errors = errors_from_text(text);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].summary,
            "Failed to get existing workspaces: dial tcp: connection refused"
        );
        assert_eq!(errors[0].detail, "more");
    }

    #[test]
    fn garbage_lines_are_kept_bounded() {
        let mut s = StreamSummary::default();
        for _ in 0..10_000 {
            s.push_line(&"x".repeat(100));
        }
        assert!(s.stray.len() <= MAX_STRAY + 101);
    }
}
