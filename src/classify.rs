//! Why a scan failed: the one table that turns terraform's error texts into an
//! [`ErrorReason`] (interface §3, facts in terraform.md).

use serde::Deserialize;

use crate::report::{CheckKind, CheckResult, CheckStatus, ErrorReason, ScanError};

/// One `diagnostic` of the stream (or one `Error:` block of plain stderr).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Diagnostic {
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub address: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == "error"
    }
}

/// Which command was running when the scan failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Init,
    Plan,
    Show,
    StatePull,
}

/// Texts that a held lock shows; the lock summary alone may wrap a network error instead.
const HELD_LOCK: &[&str] = &[
    "Lock Info:",
    "PreconditionFailed",
    "StatusCode: 412",
    "ConditionalCheckFailed",
];

/// The summaries of a false precondition or postcondition (Terraform and OpenTofu; an
/// output's reads "Module output value precondition failed", the root module's too).
const CONDITION_FAILED: &[&str] = &[
    "resource precondition failed",
    "resource postcondition failed",
    "output value precondition failed",
];

/// True for the diagnostics of checks and conditions ("Check block assertion failed",
/// "Resource postcondition failed", ...), warnings and errors alike.
pub fn is_check_diagnostic(d: &Diagnostic) -> bool {
    let summary = d.summary.to_lowercase();
    summary.contains("check block") || CONDITION_FAILED.iter().any(|c| summary.contains(c))
}

/// What init says before listing configuration errors.
const INIT_UMBRELLA: &str = "encountered problems during initiali";

/// The rules, most specific first. Each matches a lower-cased substring of summary+detail.
const RULES: &[(ErrorReason, &[&str])] = &[
    (
        ErrorReason::Auth,
        &[
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "authentication failure",
            "401 no ticket",
            "no such token",
            "permission check failed",
            "are not sufficient",
            "401 unauthorized",
            "403 forbidden",
            "accessdenied",
            "invalidtoken",
            "expiredtoken",
        ],
    ),
    (
        ErrorReason::StateBackend,
        &[
            "error loading state",
            "failed to get existing workspaces",
            "nosuchbucket",
            "failed to save state",
            "failed to persist state",
            "error refreshing state",
            "failed to load state",
            "unable to list objects in s3 bucket",
            // Reached only without Lock Info: the lock store itself failed.
            "error acquiring the state lock",
            "error releasing the state lock",
        ],
    ),
    (
        ErrorReason::Connectivity,
        &[
            "connection refused",
            "no such host",
            "i/o timeout",
            "context deadline exceeded",
            "x509:",
            "tls: failed to verify",
            "tls: handshake failure",
            " 596 ",
            "status 596",
            "network is unreachable",
            "connection reset by peer",
            "no route to host",
        ],
    ),
    (
        ErrorReason::Init,
        &[
            "backend initialization required",
            "required plugins are not installed",
            "inconsistent dependency lock file",
            "failed to query available provider packages",
            "failed to install provider",
            "could not load plugin",
            "provider registry",
            "module not installed",
            "please run \"terraform init\"",
            "please run \"tofu init\"",
        ],
    ),
    (
        ErrorReason::Config,
        &[
            "unsupported argument",
            "unsupported block type",
            "reference to undeclared",
            "invalid reference",
            "no value for required variable",
            "missing required argument",
            "argument or block definition required",
            "invalid expression",
            "unclosed configuration block",
            "invalid block definition",
            "duplicate resource",
            "invalid value for input variable",
            "failed to read variables file",
            "failed to read file",
            "value for undeclared variable",
            "no configuration files",
            "invalid character",
            "missing newline after argument",
            "unsupported attribute",
            "invalid function argument",
            "call to unknown function",
            "invalid for_each argument",
            "invalid count argument",
            "invalid escape sequence",
            "invalid multi-line string",
            "unterminated template string",
            "invalid template",
            "invalid value for variable",
            "variable validation",
        ],
    ),
];

/// The error a plan document carries: its error diagnostics, or `errored` (not redacted:
/// the plan's reader knows its secrets). A saved errored plan has no diagnostics; its
/// `checks` tell a false condition (reason `check`) or a check that could not be evaluated
/// (`config`, as the plan's own diagnostic would have said).
pub fn plan_error(
    diagnostics: &[Diagnostic],
    errored: Option<bool>,
    checks: &[CheckResult],
) -> Option<ScanError> {
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Some(classify(diagnostics, Phase::Plan));
    }
    if !errored.unwrap_or(false) {
        return None;
    }
    let condition = checks.iter().find(|c| {
        c.status == CheckStatus::Fail
            && matches!(c.kind, CheckKind::Resource | CheckKind::OutputValue)
    });
    if let Some(c) = condition {
        return Some(ScanError {
            reason: ErrorReason::Check,
            summary: format!("{}: a precondition or postcondition is false", c.address),
            detail: c.first_message().to_owned(),
        });
    }
    if let Some(c) = checks.iter().find(|c| c.status == CheckStatus::Error) {
        return Some(ScanError {
            reason: ErrorReason::Config,
            summary: format!("{}: the condition could not be evaluated", c.address),
            detail: "The plan document has \"errored\": true; the evaluation error is in the plan's diagnostics, not in this file.".to_owned(),
        });
    }
    Some(ScanError {
        reason: ErrorReason::Terraform,
        summary: "the plan is marked errored: terraform could not finish it".to_owned(),
        detail: "The plan document has \"errored\": true; the errors themselves are in the plan's diagnostics, not in this file.".to_owned(),
    })
}

/// The reason of a failed command, from its error diagnostics (stream first, then the
/// `Error:` blocks of stderr). `None` of either: terraform gave no reason at all.
pub fn classify(diagnostics: &[Diagnostic], phase: Phase) -> ScanError {
    let mut errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    // init's umbrella error ("... including problems with the configuration, described
    // below") says nothing itself: the errors after it are the real ones, and whatever they
    // are, the configuration is invalid.
    let umbrella = |d: &Diagnostic| {
        format!("{} {}", d.summary, d.detail)
            .to_lowercase()
            .contains(INIT_UMBRELLA)
    };
    let config_problem = errors.iter().any(|d| umbrella(d));
    if config_problem && errors.len() > 1 {
        errors.retain(|d| !umbrella(d));
    }
    let texts: Vec<String> = errors
        .iter()
        .map(|d| format!("{}\n{}", d.summary, d.detail).to_lowercase())
        .collect();

    // A plan stopped only by false conditions: the failing objects are in its `checks`.
    let condition = |d: &&Diagnostic| {
        let summary = d.summary.to_lowercase();
        CONDITION_FAILED.iter().any(|c| summary.contains(c))
    };
    if let Some(first) = errors.first()
        && errors.iter().all(condition)
    {
        // The author's message is the point: it goes into the one-line summary.
        let mut error = error_of(ErrorReason::Check, first);
        if let Some(message) = first.detail.lines().map(str::trim).find(|l| !l.is_empty()) {
            error.summary = format!("{}: {message}", error.summary);
        }
        if errors.len() > 1 {
            error.summary = format!("{} (and {} more)", error.summary, errors.len() - 1);
        }
        return error;
    }
    for (d, text) in errors.iter().zip(&texts) {
        if text.contains("error acquiring the state lock")
            && HELD_LOCK.iter().any(|t| text.contains(&t.to_lowercase()))
        {
            return error_of(ErrorReason::StateLock, d);
        }
    }
    for (reason, needles) in RULES {
        for (d, text) in errors.iter().zip(&texts) {
            if needles.iter().any(|n| text.contains(n)) {
                return error_of(*reason, d);
            }
        }
    }
    let fallback = match phase {
        _ if config_problem => ErrorReason::Config,
        Phase::Init => ErrorReason::Init,
        Phase::Plan | Phase::Show => ErrorReason::Terraform,
        Phase::StatePull => ErrorReason::StateBackend,
    };
    match errors.first() {
        Some(d) => error_of(fallback, d),
        None => ScanError {
            reason: fallback,
            summary: format!(
                "terraform {} failed without an error message",
                phase.command()
            ),
            detail: String::new(),
        },
    }
}

impl Phase {
    pub fn command(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Plan => "plan",
            Phase::Show => "show",
            Phase::StatePull => "state pull",
        }
    }
}

fn error_of(reason: ErrorReason, d: &Diagnostic) -> ScanError {
    let summary = match &d.address {
        Some(address) if !d.summary.contains(address.as_str()) => {
            format!("{address}: {}", d.summary)
        }
        _ => d.summary.clone(),
    };
    ScanError {
        reason,
        summary,
        detail: d.detail.clone(),
    }
}
