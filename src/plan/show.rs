//! The `show -json PLANFILE` document (format versions 0.1 to 1.2, Terraform and OpenTofu)
//! and how it becomes report changes.
//!
//! The document is read as a stream ([`super::split`]): the change lists one resource at a
//! time, `variables` and `configuration` only for which values are sensitive (they never
//! leave this module), `prior_state` and `planned_values` skipped unparsed. So a plan of tens
//! of MB needs little more memory than the report made from it. Redaction by sensitive
//! strings runs last, once every secret of the plan is known, whatever the key order.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::diff::{Sides, diff};
use super::redact::{Mask, Redactor, SecretCollector};
use super::split::{Piece, SplitError, Want, split};
use super::stream::Diagnostic;
use crate::guest::guest_vmid;
use crate::report::{Action, AttributeChange, Change, CheckResult, PlanOutcome};

mod body;
mod checks;
mod guests;

/// How to read a plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExplainOptions {
    /// Read the plan as `plan -refresh-only` output even if it has `resource_changes`.
    pub refresh_only: bool,
}

/// A plan document that cannot be understood.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("not a terraform plan JSON document: {0}")]
    Malformed(String),
    #[error("not a terraform plan JSON document: it has no \"format_version\"")]
    NoFormatVersion,
    #[error("unsupported plan format_version {0:?} (this build reads 0.x and 1.x)")]
    UnsupportedVersion(String),
    #[error("{address}: unknown change actions {actions:?}")]
    UnknownActions {
        address: String,
        actions: Vec<String>,
    },
    #[error("{address}: {field} is not valid JSON: {source}")]
    Value {
        address: String,
        field: &'static str,
        source: serde_json::Error,
    },
    #[error("reading the plan: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Deserialize)]
struct Variable {
    #[serde(default)]
    value: Option<Box<RawValue>>,
}
#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    root_module: Option<RootModule>,
}

#[derive(Deserialize)]
struct RootModule {
    #[serde(default)]
    variables: Option<BTreeMap<String, VariableConfig>>,
}

#[derive(Deserialize)]
struct VariableConfig {
    #[serde(default)]
    sensitive: Option<bool>,
}

#[derive(Deserialize)]
struct ResourceChange<'a> {
    /// Empty in the `resource_drift` entries of Terraform 0.15.4 to 1.0.0, which had none.
    #[serde(default)]
    address: String,
    #[serde(default)]
    previous_address: Option<String>,
    #[serde(default)]
    module_address: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(rename = "type", default)]
    resource_type: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    index: Option<Value>,
    #[serde(default)]
    deposed: Option<String>,
    #[serde(default)]
    action_reason: Option<String>,
    #[serde(borrow)]
    change: ChangeBody<'a>,
}

#[derive(Deserialize)]
struct ChangeBody<'a> {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after_unknown: Option<&'a RawValue>,
    #[serde(borrow, default)]
    before_sensitive: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after_sensitive: Option<&'a RawValue>,
    #[serde(borrow, default)]
    importing: Option<&'a RawValue>,
}

impl ResourceChange<'_> {
    fn is_data(&self) -> bool {
        match self.mode.as_deref() {
            Some(mode) => mode == "data",
            None => self.address.starts_with("data.") || self.address.contains(".data."),
        }
    }

    /// The report action of a `resource_changes` entry; `None` for entries that say nothing
    /// (no-op, read).
    fn action(&self) -> Result<Option<Action>, PlanError> {
        let actions: Vec<&str> = self.change.actions.iter().map(String::as_str).collect();
        let action = match actions.as_slice() {
            ["no-op"] | [] => {
                if self
                    .previous_address
                    .as_deref()
                    .is_some_and(|p| p != self.address)
                {
                    Some(Action::Move)
                } else if self.change.importing.is_some_and(|r| r.get() != "null") {
                    Some(Action::Import)
                } else {
                    None
                }
            }
            ["read"] => None,
            ["create"] | ["create", "forget"] | ["forget", "create"] => Some(Action::Create),
            ["update"] => Some(Action::Update),
            ["delete"] => Some(Action::Delete),
            ["delete", "create"] | ["create", "delete"] => Some(Action::Replace),
            ["forget"] => Some(Action::Forget),
            _ => {
                return Err(PlanError::UnknownActions {
                    address: self.address.clone(),
                    actions: self.change.actions.clone(),
                });
            }
        };
        Ok(action)
    }

    fn to_change(
        &self,
        action: Action,
        outside_terraform: bool,
        attributes: Vec<AttributeChange>,
    ) -> Change {
        let reason = match (&self.action_reason, &self.deposed) {
            (Some(reason), _) => Some(reason.clone()),
            (None, Some(key)) => Some(format!("deposed object {key}")),
            (None, None) => None,
        };
        Change {
            address: self.address.clone(),
            module: self.module_address.clone(),
            resource_type: self.resource_type.clone(),
            name: self.name.clone(),
            index: self.index.clone(),
            action,
            outside_terraform,
            reason,
            attributes,
            ignored_by: None,
            since: None,
            changed_by: None,
            vmid: None,
        }
    }
}

/// Reads a `show -json` plan document and lists its changes (interface §3 and §7), every
/// sensitive value already redacted.
pub fn understand_plan(
    input: impl Read,
    options: ExplainOptions,
) -> Result<PlanOutcome, PlanError> {
    understand_plan_with(input, options, SecretCollector::default())
}

/// What is gathered while the document streams by.
#[derive(Default)]
struct Gathered {
    format_version: Option<String>,
    terraform_version: Option<String>,
    errored: Option<bool>,
    diagnostics: Vec<Diagnostic>,
    variables: BTreeMap<String, Variable>,
    sensitive_variables: Vec<String>,
    has_resource_changes: bool,
    planned: Vec<Change>,
    drift_entries: usize,
    drifted: HashSet<String>,
    /// The drift read as a refresh-only plan; used when the plan is one.
    refresh_changes: Vec<Change>,
    /// The vmids of the Proxmox guests among `resource_changes`.
    guests: BTreeSet<u32>,
    /// `checks`: the check results, not yet redacted.
    checks: Vec<CheckResult>,
}

/// As [`understand_plan`], with secrets known beforehand (values of `env_files`).
pub fn understand_plan_with(
    input: impl Read,
    options: ExplainOptions,
    secrets: SecretCollector,
) -> Result<PlanOutcome, PlanError> {
    understand_plan_redacting(input, options, secrets).map(|(outcome, _)| outcome)
}

/// As [`understand_plan_with`], also returning every secret of the plan (what
/// [`crate::plan::served::write_served_plan`] redacts with).
pub fn understand_plan_redacting(
    input: impl Read,
    options: ExplainOptions,
    mut secrets: SecretCollector,
) -> Result<(PlanOutcome, Redactor), PlanError> {
    let g = gather(input, &mut secrets)?;
    for name in &g.sensitive_variables {
        if let Some(raw) = g.variables.get(name).and_then(|v| v.value.as_ref()) {
            let value: Value =
                serde_json::from_str(raw.get()).map_err(|source| PlanError::Value {
                    address: format!("var.{name}"),
                    field: "value",
                    source,
                })?;
            secrets.collect_masked(&value, Mask::NONE, true);
        }
    }
    let redactor = secrets.finish();
    let mut found_checks = g.checks;
    checks::redact(&mut found_checks, &redactor);

    let refresh_only = options.refresh_only || (!g.has_resource_changes && g.drift_entries > 0);
    let mut changes = if refresh_only {
        g.refresh_changes
    } else {
        let mut planned = g.planned;
        for change in &mut planned {
            change.outside_terraform = g.drifted.contains(&change.address);
        }
        planned
    };
    for attribute in changes.iter_mut().flat_map(|c| c.attributes.iter_mut()) {
        if redactor.finds(&attribute.path) {
            attribute.path = redactor.redact_text(&attribute.path);
        }
        redactor.redact_value(&mut attribute.actual);
        redactor.redact_value(&mut attribute.expected);
    }

    let error =
        crate::classify::plan_error(&g.diagnostics, g.errored, &found_checks).map(|mut error| {
            error.summary = redactor.redact_text(&error.summary);
            error.detail = redactor.redact_text(&error.detail);
            error
        });
    let outcome = PlanOutcome {
        changes,
        ignored: Vec::new(),
        error,
        tool_version: g.terraform_version,
        guests: Some(g.guests),
        checks: found_checks,
    };
    Ok((outcome, redactor))
}

/// The members of the plan document that matter, read in one pass; a format this code does
/// not know is refused.
fn gather(input: impl Read, secrets: &mut SecretCollector) -> Result<Gathered, PlanError> {
    let mut g = Gathered::default();
    let want = |key: &str| match key {
        "resource_changes" | "resource_drift" => Want::Elements,
        "format_version" | "terraform_version" | "errored" | "diagnostics" | "variables"
        | "configuration" | "output_changes" | "checks" => Want::Whole,
        _ => Want::Skip,
    };
    let mut failure: Option<PlanError> = None;
    let result = split(input, want, |piece| {
        g.take(piece, secrets).map_err(|e| {
            let text = e.to_string();
            failure = Some(e);
            text
        })
    });
    match result {
        Ok(()) => {}
        Err(SplitError::Piece(_)) => {
            return Err(failure.unwrap_or(PlanError::Malformed("unreadable piece".into())));
        }
        Err(SplitError::Io(e)) => return Err(PlanError::Io(e)),
        Err(e @ SplitError::Syntax { .. }) => return Err(PlanError::Malformed(e.to_string())),
    }

    match g.format_version.as_deref() {
        None => Err(PlanError::NoFormatVersion),
        Some(v) if v.starts_with("0.") || v.starts_with("1.") => Ok(g),
        Some(v) => Err(PlanError::UnsupportedVersion(v.to_owned())),
    }
}

fn parse<'a, T: Deserialize<'a>>(what: &str, value: &'a [u8]) -> Result<T, PlanError> {
    serde_json::from_slice(value).map_err(|e| PlanError::Malformed(format!("{what}: {e}")))
}

impl Gathered {
    fn take(&mut self, piece: Piece<'_>, secrets: &mut SecretCollector) -> Result<(), PlanError> {
        match piece {
            Piece::Present { key } => {
                if key == "resource_changes" {
                    self.has_resource_changes = true;
                }
            }
            Piece::Member { key, value } => match key {
                "format_version" => self.format_version = parse(key, value)?,
                "terraform_version" => self.terraform_version = parse(key, value)?,
                "errored" => self.errored = parse(key, value)?,
                "checks" => {
                    self.checks = checks::parse(value)
                        .map_err(|e| PlanError::Malformed(format!("checks: {e}")))?
                }
                "diagnostics" => {
                    self.diagnostics =
                        parse::<Option<Vec<Diagnostic>>>(key, value)?.unwrap_or_default()
                }
                "variables" => self.variables = parse::<Option<_>>(key, value)?.unwrap_or_default(),
                "configuration" => {
                    let config: Option<Configuration> = parse(key, value)?;
                    let declared = config.and_then(|c| c.root_module).and_then(|m| m.variables);
                    self.sensitive_variables = declared
                        .into_iter()
                        .flatten()
                        .filter(|(_, v)| v.sensitive == Some(true))
                        .map(|(name, _)| name)
                        .collect();
                }
                "output_changes" => {
                    let outputs: Option<BTreeMap<String, ChangeBody<'_>>> = parse(key, value)?;
                    for (name, output) in outputs.iter().flatten() {
                        output.collect_secrets(&format!("output.{name}"), secrets)?;
                    }
                }
                _ => {}
            },
            Piece::Element { key, index, value } => {
                let place = format!("{key}[{index}]");
                let rc: ResourceChange<'_> = parse(&place, value)?;
                if rc.address.is_empty() {
                    if key == "resource_changes" {
                        return Err(PlanError::Malformed(format!(
                            "{place}: missing field `address`"
                        )));
                    }
                    // Terraform 0.15.4 to 1.0.0: a drift entry that names no resource cannot
                    // be matched to a change; its secrets still count.
                    rc.change.collect_secrets(&place, secrets)?;
                    return Ok(());
                }
                rc.change.collect_secrets(&rc.address, secrets)?;
                if rc.is_data() {
                    return Ok(());
                }
                if key == "resource_drift" {
                    self.drift_entries += 1;
                    self.drifted.insert(rc.address.clone());
                    if let Some(change) = change_of(&rc, Source::Drift)? {
                        self.refresh_changes.push(change);
                    }
                } else {
                    self.guests.extend(rc.guest());
                    if let Some(change) = change_of(&rc, Source::Planned)? {
                        self.planned.push(change);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Which list an entry comes from, and so which side is reality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `resource_changes`: `before` is the real (refreshed) object, `after` the planned one.
    Planned,
    /// `resource_drift` read as a refresh-only plan: what refresh found (`after`) against the
    /// recorded state (`before`), made outside Terraform.
    Drift,
}

fn change_of(rc: &ResourceChange<'_>, source: Source) -> Result<Option<Change>, PlanError> {
    let Some(action) = rc.action()? else {
        return Ok(None);
    };
    let mut vmid = None;
    let attributes = if matches!(action, Action::Update | Action::Replace) {
        let v = rc.change.values(&rc.address, source == Source::Planned)?;
        vmid = v
            .before
            .as_ref()
            .and_then(|b| guest_vmid(&rc.resource_type, b));
        let (before, after) = (
            (v.before.as_ref(), Mask(v.before_sensitive.as_ref())),
            (v.after.as_ref(), Mask(v.after_sensitive.as_ref())),
        );
        let ((actual, actual_sensitive), (expected, expected_sensitive)) = match source {
            Source::Planned => (before, after),
            Source::Drift => (after, before),
        };
        diff(Sides {
            actual,
            expected,
            actual_sensitive,
            expected_sensitive,
            expected_unknown: Mask(v.after_unknown.as_ref()),
        })
    } else {
        Vec::new()
    };
    let change = rc.to_change(action, source == Source::Drift, attributes);
    Ok(Some(Change { vmid, ..change }))
}
