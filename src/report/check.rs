//! Continuous validation: the plan's check results (`checks` of `show -json`: `check`
//! blocks, resource and output conditions, variable validations), a dimension of their own
//! beside drift (interface §7 `checks`, §8 `tfdrift_checks`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a checkable object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A resource's (or data source's) preconditions and postconditions.
    Resource,
    /// An output's preconditions.
    OutputValue,
    /// A `check` block's assertions.
    Check,
    /// A variable's validations.
    Var,
    /// A kind this build does not know (a later Terraform's).
    #[serde(other)]
    Other,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Resource => "resource",
            CheckKind::OutputValue => "output_value",
            CheckKind::Check => "check",
            CheckKind::Var => "var",
            CheckKind::Other => "other",
        }
    }
}

/// A check's result, as Terraform and HCP Terraform count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// The condition could not be evaluated (its error is one of the plan's diagnostics).
    Error,
    /// The condition depends on a value known only after apply (or a status this build
    /// does not know).
    #[serde(other)]
    Unknown,
}

impl CheckStatus {
    /// Every status, in the order the metrics list them.
    pub const ALL: [CheckStatus; 4] = [
        CheckStatus::Pass,
        CheckStatus::Fail,
        CheckStatus::Error,
        CheckStatus::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Error => "error",
            CheckStatus::Unknown => "unknown",
        }
    }

    /// A result that asks for attention: the condition is false or could not be evaluated.
    pub fn failed(self) -> bool {
        matches!(self, CheckStatus::Fail | CheckStatus::Error)
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failing instance's message (the author's `error_message`, redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The instance's address (`terraform_data.disk["big"]`, `check.api_up`).
    pub instance: String,
    pub message: String,
}

/// One checkable object of the configuration and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `check.api_up`, `output.url`, `terraform_data.web`, `var.replicas`, with the module
    /// path in front.
    pub address: String,
    pub kind: CheckKind,
    pub status: CheckStatus,
    #[serde(default)]
    pub problems: Vec<Problem>,
}

impl CheckResult {
    /// The first message, for a one-line view (a metric label, an alert); empty when the
    /// condition could not be evaluated.
    pub fn first_message(&self) -> &str {
        self.problems.first().map_or("", |p| p.message.as_str())
    }
}

/// Check objects per status, in [`CheckStatus::ALL`]'s order.
pub fn count(checks: &[CheckResult]) -> [u64; 4] {
    let mut counts = [0; 4];
    for check in checks {
        if let Some(i) = CheckStatus::ALL.iter().position(|s| *s == check.status) {
            counts[i] += 1;
        }
    }
    counts
}
