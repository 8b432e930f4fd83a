//! The report of one scan: what `scan`, `explain`, the history and `/detail` all share
//! (interface §7). Everything here is already redacted: a `Report` may be printed, stored
//! and served as it is.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod wire;

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
    Terraform,
}

impl ErrorReason {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [ErrorReason; 8] = [
        ErrorReason::Auth,
        ErrorReason::Connectivity,
        ErrorReason::StateBackend,
        ErrorReason::StateLock,
        ErrorReason::Timeout,
        ErrorReason::Init,
        ErrorReason::Config,
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

/// One differing attribute of an `update` or `replace`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeChange {
    /// `disk[0].size`, `tags.env`, `labels["app.io/name"]`.
    pub path: String,
    /// What the plan saw in the real infrastructure.
    pub actual: Value,
    /// What the code declares.
    pub expected: Value,
}

/// One changed resource instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub address: String,
    pub module: Option<String>,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    /// `count` index (number) or `for_each` key (string).
    pub index: Option<Value>,
    pub action: Action,
    /// True when the change comes from a modification made outside Terraform.
    pub outside_terraform: bool,
    /// Terraform's `action_reason`, or the deposed object's key.
    pub reason: Option<String>,
    pub attributes: Vec<AttributeChange>,
    /// Only on entries of `Report::ignored`: the reason of the rule that hid the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_by: Option<String>,
    /// The first scan of the current drift run in which this address had a counted change
    /// (its start), kept across failed scans and restarts.
    #[serde(default, with = "rfc3339_seconds")]
    pub since: Option<DateTime<Utc>>,
    /// Who changed the guest behind this change, newest first, from the Proxmox cluster log
    /// and task lists; `[]` when nothing was found; `None` when attribution is off or not
    /// possible (no permission, not a guest).
    #[serde(default)]
    pub changed_by: Option<Vec<Attribution>>,
    /// The Proxmox guest behind the change (bpg `vm_id`, Telmate `vmid`), when it is one:
    /// what attribution looks up. Not part of the report's JSON.
    #[serde(skip)]
    pub vmid: Option<u32>,
}

/// A value as people read it, at most `max` UTF-16 units (`...` when cut; see
/// [`crate::text::cut`]): JSON, except the markers `(sensitive)` and `(known after apply)`,
/// written bare.
pub fn shown(v: &Value, max: usize) -> String {
    let text = match v {
        Value::String(s) if s.starts_with('(') && s.ends_with(')') => s.clone(),
        other => other.to_string(),
    };
    crate::text::cut(&text, max, "...").into_owned()
}

impl Change {
    /// `path: actual -> expected` of each attribute joined by `; `, each value cut at
    /// `value_max` UTF-16 units and the whole at `max` (then ending `; ...`); paths cut at
    /// `value_max` too.
    pub fn attributes_line(&self, value_max: usize, max: usize) -> String {
        use crate::text::{cut, units};
        let mut line = String::new();
        for (i, a) in self.attributes.iter().enumerate() {
            let item = format!(
                "{}: {} -> {}",
                cut(&a.path, value_max, "..."),
                shown(&a.actual, value_max),
                shown(&a.expected, value_max)
            );
            let sep = if i == 0 { "" } else { "; " };
            // Room for this item and, unless it is the last, for "; ...".
            let tail = if i + 1 < self.attributes.len() { 5 } else { 0 };
            if units(&line) + sep.len() + units(&item) + tail > max {
                line.push_str(if i == 0 { "..." } else { "; ..." });
                break;
            }
            line.push_str(sep);
            line.push_str(&item);
        }
        line
    }
}

/// One entry of the Proxmox cluster log or task list about a changed guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// `root@pam`, or the token's user.
    pub user: String,
    /// The API token's id (`apply` of `terraform@pve!apply`), when a token acted.
    pub token: Option<String>,
    #[serde(with = "rfc3339_seconds")]
    pub time: Option<DateTime<Utc>>,
    pub via: AttributionSource,
    /// `update VM 100: -memory 3072`, or the task's type.
    pub message: String,
    /// The token is one of `proxmox.terraform_token_ids`: Terraform's own apply.
    pub by_terraform: bool,
}

/// Why `changed_by` is `null` on the changes of guests though attribution is on
/// (interface §7, the report's `attribution_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionError {
    /// The token lacks `Sys.Syslog` or `Sys.Audit` on `/`.
    Permission,
    Auth,
    Connectivity,
    Api,
    Config,
    /// No read of the log and tasks began after the scan's plan started.
    Stale,
    /// The attribution journal under `storage.path` cannot be read.
    Journal,
}

/// What started a scan (interface §7, the report's `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// The first scan of an environment with `run_on_start`.
    Start,
    /// Its schedule came due.
    Schedule,
    /// `POST /scan/<env>`, or the CLI's `scan`.
    Manual,
}

/// What started a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub kind: TriggerKind,
}

impl Trigger {
    pub fn of(kind: TriggerKind) -> Trigger {
        Trigger { kind }
    }
}

/// Where an attribution entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionSource {
    ClusterLog,
    Task,
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
}

impl Scanned {
    /// The guests (vmids) the scan found changed outside Terraform: what attribution asks about.
    pub fn guests(&self) -> impl Iterator<Item = u32> + '_ {
        self.findings
            .changes
            .iter()
            .filter(|c| c.outside_terraform)
            .filter_map(|c| c.vmid)
    }

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
}

impl PlanOutcome {
    /// A plan that was really made and changes nothing.
    pub fn no_changes() -> PlanOutcome {
        PlanOutcome {
            changes: Vec::new(),
            ignored: Vec::new(),
            error: None,
            tool_version: None,
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
