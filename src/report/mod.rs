//! The report of one scan: what `scan`, `explain`, the history and `/detail` all share
//! (interface §7). Everything here is already redacted: a `Report` may be printed, stored
//! and served as it is.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod change;
mod check;
mod trigger;
mod wire;

pub use change::{
    AttributeChange, Attribution, AttributionError, AttributionSource, Change, shown,
};
pub use check::{CheckKind, CheckResult, CheckStatus, Problem, count as count_checks};
pub use trigger::{Signal, SignalSource, Trigger, TriggerKind};

/// The outcome of a scan. The numbers are the `tfdrift_status` gauge values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Conform,
    Drift,
    Error,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Conform, Status::Drift, Status::Error];

    /// The `tfdrift_status` value.
    pub fn gauge(self) -> i64 {
        self.rank().into()
    }

    /// Exit code of `scan`/`explain`, like `terraform plan -detailed-exitcode`.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Conform => 0,
            Status::Drift => 2,
            Status::Error => 1,
        }
    }

    /// Severity order used to pick the worst status over several environments.
    fn rank(self) -> u8 {
        match self {
            Status::Conform => 0,
            Status::Drift => 1,
            Status::Error => 2,
        }
    }

    /// The worse of two statuses (error > drift > conform).
    pub fn worst(self, other: Status) -> Status {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Conform => "conform",
            Status::Drift => "drift",
            Status::Error => "error",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a scan could not produce a plan (interface §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorReason {
    Auth,
    Connectivity,
    StateBackend,
    StateLock,
    Timeout,
    Init,
    Config,
    /// The plan stopped because a resource or output precondition/postcondition is false.
    Check,
    Terraform,
}

impl ErrorReason {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [ErrorReason; 9] = [
        ErrorReason::Auth,
        ErrorReason::Connectivity,
        ErrorReason::StateBackend,
        ErrorReason::StateLock,
        ErrorReason::Timeout,
        ErrorReason::Init,
        ErrorReason::Config,
        ErrorReason::Check,
        ErrorReason::Terraform,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Auth => "auth",
            ErrorReason::Connectivity => "connectivity",
            ErrorReason::StateBackend => "state_backend",
            ErrorReason::StateLock => "state_lock",
            ErrorReason::Timeout => "timeout",
            ErrorReason::Init => "init",
            ErrorReason::Config => "config",
            ErrorReason::Check => "check",
            ErrorReason::Terraform => "terraform",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plan would do to one resource instance. The first four are counted as drift;
/// the others are listed for information only (interface §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    Replace,
    /// Only the address changes (`moved` block).
    Move,
    /// Only an import into state, no change to the object.
    Import,
    /// The object leaves the state but is not destroyed (`removed` with `destroy = false`).
    Forget,
}

impl Action {
    /// The actions that make a scan `drift`, in the order the summary lists them.
    pub const COUNTED: [Action; 4] = [
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Replace,
    ];

    pub fn is_counted(self) -> bool {
        Action::COUNTED.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Replace => "replace",
            Action::Move => "move",
            Action::Import => "import",
            Action::Forget => "forget",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of the changes that remain after ignore rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: u64,
    pub update: u64,
    pub delete: u64,
    pub replace: u64,
    pub outside_terraform: u64,
    pub ignored: u64,
}

impl Summary {
    /// Count the changes of a report.
    pub fn of(changes: &[Change], ignored: &[Change]) -> Summary {
        let mut summary = Summary {
            ignored: ignored.len() as u64,
            ..Summary::default()
        };
        for change in changes {
            let slot = match change.action {
                Action::Create => &mut summary.create,
                Action::Update => &mut summary.update,
                Action::Delete => &mut summary.delete,
                Action::Replace => &mut summary.replace,
                Action::Move | Action::Import | Action::Forget => continue,
            };
            *slot += 1;
            if change.outside_terraform {
                summary.outside_terraform += 1;
            }
        }
        summary
    }

    /// The count of one counted action.
    pub fn count(&self, action: Action) -> u64 {
        match action {
            Action::Create => self.create,
            Action::Update => self.update,
            Action::Delete => self.delete,
            Action::Replace => self.replace,
            Action::Move | Action::Import | Action::Forget => 0,
        }
    }

    /// Resources that make the scan `drift`.
    pub fn counted(&self) -> u64 {
        self.create + self.update + self.delete + self.replace
    }
}

/// Why a scan failed, with Terraform's words (secrets scrubbed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanError {
    pub reason: ErrorReason,
    pub summary: String,
    pub detail: String,
}

/// The tool that produced the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `terraform`, `tofu`, or the configured path; unknown for `explain`.
    pub binary: Option<String>,
    pub version: Option<String>,
}

/// When a stored scan ran, and its id: what every report of a scan has (`explain` has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub id: String,
    pub environment: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
}

#[cfg(test)]
impl Stamp {
    /// A scan of `environment` stored as `id` that started and ended at `t` (tests).
    pub fn at(id: &str, environment: &str, t: DateTime<Utc>) -> Stamp {
        Stamp {
            id: id.to_owned(),
            environment: environment.to_owned(),
            started_at: t,
            finished_at: t,
            duration_seconds: 0.0,
        }
    }
}

/// The report of one scan or `explain` (interface §7; its JSON is written and read by
/// [`wire`], field for field).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `None` for `explain` (its JSON then says `null` for each of these fields).
    pub stamp: Option<Stamp>,
    pub status: Status,
    /// The tool that made the plan (for `explain`, only the plan's `terraform_version`).
    pub tool: Option<Tool>,
    pub summary: Summary,
    /// Start of the current unbroken run of drift scans (failed scans do not break it);
    /// `None` when conform.
    pub drift_since: Option<DateTime<Utc>>,
    /// Only on the first conform scan after a drift run: when that drift began (the history
    /// shows when it was resolved).
    pub resolved_drift_since: Option<DateTime<Utc>>,
    pub changes: Vec<Change>,
    pub ignored: Vec<Change>,
    pub error: Option<ScanError>,
    /// Why the changes of guests have `changed_by: null` though attribution is on.
    pub attribution_error: Option<AttributionError>,
    /// What started the scan (`None` for `explain`, and reports stored before triggers).
    pub trigger: Option<Trigger>,
    /// The plan's check results (empty when it had none, or was not read).
    pub checks: Vec<CheckResult>,
}

/// A scan as it ended, complete: when, with what, what the plan said, and the plan to serve.
/// No id and no lifecycle yet: the store gives both when it commits the scan
/// ([`crate::store::Storage::commit`]).
#[derive(Debug)]
pub struct Scanned {
    pub environment: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub tool: Tool,
    pub trigger: Trigger,
    /// What the plan (or the failure) said; its `stamp` is `None`.
    pub findings: Report,
    /// The plan as `/detail/<env>/plan` serves it, in a temporary file of the environment's
    /// directory (0600), when the plan had changes.
    pub plan: Option<tempfile::NamedTempFile>,
    /// The vmids of the guests the environment manages, when the plan was read.
    pub guests: Option<std::collections::BTreeSet<u32>>,
}

impl Scanned {
    /// The report as committed under `id`.
    pub fn into_report(self, id: String) -> (Report, Option<tempfile::NamedTempFile>) {
        let mut report = self.findings;
        report.stamp = Some(Stamp {
            id,
            environment: self.environment,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_seconds: self.duration_seconds,
        });
        report.tool = Some(self.tool);
        report.trigger = Some(self.trigger);
        (report, self.plan)
    }
}

/// What understanding a plan yields, before it is placed in a scan's report.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    pub changes: Vec<Change>,
    pub ignored: Vec<Change>,
    /// Set when the plan itself says it errored (`errored: true`).
    pub error: Option<ScanError>,
    /// `terraform_version` of the plan document, when present.
    pub tool_version: Option<String>,
    /// The vmids of the Proxmox guests the plan's resources hold (`None`: the plan was
    /// not read, as when it changed nothing).
    pub guests: Option<std::collections::BTreeSet<u32>>,
    /// The plan's check results, redacted.
    pub checks: Vec<CheckResult>,
}

impl PlanOutcome {
    /// A plan that was really made and changes nothing.
    pub fn no_changes() -> PlanOutcome {
        PlanOutcome {
            changes: Vec::new(),
            ignored: Vec::new(),
            error: None,
            tool_version: None,
            guests: None,
            checks: Vec::new(),
        }
    }
}

impl Report {
    /// A report built from an understood plan; status follows from the changes (the plan's
    /// `terraform_version` is the scan's to keep: see [`PlanOutcome::tool_version`]).
    pub fn from_outcome(outcome: PlanOutcome) -> Report {
        let summary = Summary::of(&outcome.changes, &outcome.ignored);
        let status = if outcome.error.is_some() {
            Status::Error
        } else if summary.counted() > 0 {
            Status::Drift
        } else {
            Status::Conform
        };
        Report {
            stamp: None,
            status,
            tool: outcome.tool_version.map(|version| Tool {
                binary: None,
                version: Some(version),
            }),
            summary,
            drift_since: None,
            resolved_drift_since: None,
            changes: outcome.changes,
            ignored: outcome.ignored,
            error: outcome.error,
            attribution_error: None,
            trigger: None,
            checks: outcome.checks,
        }
    }

    /// A report of a scan that produced no plan.
    pub fn failed(error: ScanError) -> Report {
        Report {
            stamp: None,
            status: Status::Error,
            tool: None,
            summary: Summary::default(),
            drift_since: None,
            resolved_drift_since: None,
            changes: Vec::new(),
            ignored: Vec::new(),
            error: Some(error),
            attribution_error: None,
            trigger: None,
            checks: Vec::new(),
        }
    }

    pub fn id(&self) -> Option<&str> {
        self.stamp.as_ref().map(|s| s.id.as_str())
    }

    pub fn environment(&self) -> Option<&str> {
        self.stamp.as_ref().map(|s| s.environment.as_str())
    }

    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.stamp.as_ref().map(|s| s.started_at)
    }

    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.stamp.as_ref().map(|s| s.finished_at)
    }

    pub fn duration_seconds(&self) -> Option<f64> {
        self.stamp.as_ref().map(|s| s.duration_seconds)
    }
}

/// Times are written to the second (`2026-11-25T03:15:02Z`), as in the interface; the
/// duration carries the precision.
pub(crate) mod rfc3339_seconds {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)
    }
}
