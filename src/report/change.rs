//! One changed resource as a report lists it, and who changed it (interface §7).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, rfc3339_seconds};

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

#[cfg(test)]
impl Change {
    /// An `update` outside Terraform of `address` (a `terraform_data`), no attributes (tests).
    pub fn outside_update(address: &str) -> Change {
        Change {
            address: address.into(),
            module: None,
            resource_type: "terraform_data".into(),
            name: address.into(),
            index: None,
            action: Action::Update,
            outside_terraform: true,
            reason: None,
            attributes: Vec::new(),
            ignored_by: None,
            since: None,
            changed_by: None,
            vmid: None,
        }
    }
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

/// Where an attribution entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionSource {
    ClusterLog,
    Task,
}
