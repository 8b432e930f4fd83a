//! The `show -json PLANFILE` document (format versions 0.1 to 1.2, Terraform and OpenTofu)
//! and how it becomes report changes.
//!
//! Only the keys the report needs are read; `variables` and `configuration` are looked at
//! for one thing (which values are sensitive) and never leave this module, `prior_state` and
//! `planned_values` are skipped unparsed. Values are kept as borrowed raw JSON and parsed one
//! resource at a time, so a plan of tens of MB needs little more memory than its own text.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::diff::{Sides, diff};
use super::redact::{Mask, Redactor, SecretCollector};
use super::stream::Diagnostic;
use crate::classify::{Phase, classify};
use crate::report::{Action, Change, ErrorReason, PlanOutcome, ScanError};

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
    Syntax(#[from] serde_json::Error),
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
}

#[derive(Deserialize)]
struct Document<'a> {
    format_version: Option<String>,
    terraform_version: Option<String>,
    #[serde(borrow, default)]
    variables: Option<BTreeMap<String, Variable<'a>>>,
    #[serde(borrow, default)]
    resource_drift: Option<Vec<ResourceChange<'a>>>,
    #[serde(borrow, default)]
    resource_changes: Option<Vec<ResourceChange<'a>>>,
    #[serde(borrow, default)]
    output_changes: Option<BTreeMap<String, ChangeBody<'a>>>,
    #[serde(default)]
    configuration: Option<Configuration>,
    #[serde(default)]
    errored: Option<bool>,
    /// Only in `validate -json` output, which `explain` also accepts.
    #[serde(default)]
    diagnostics: Option<Vec<Diagnostic>>,
}

#[derive(Deserialize)]
struct Variable<'a> {
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
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

/// The parsed values of one change body.
struct Values {
    before: Option<Value>,
    after: Option<Value>,
    after_unknown: Option<Value>,
    before_sensitive: Option<Value>,
    after_sensitive: Option<Value>,
}

impl ChangeBody<'_> {
    fn values(&self, address: &str, with_unknown: bool) -> Result<Values, PlanError> {
        let parse =
            |raw: Option<&RawValue>, field: &'static str| -> Result<Option<Value>, PlanError> {
                raw.map(|r| serde_json::from_str(r.get()))
                    .transpose()
                    .map_err(|source| PlanError::Value {
                        address: address.to_owned(),
                        field,
                        source,
                    })
            };
        Ok(Values {
            before: parse(self.before, "before")?,
            after: parse(self.after, "after")?,
            after_unknown: if with_unknown {
                parse(self.after_unknown, "after_unknown")?
            } else {
                None
            },
            before_sensitive: parse(self.before_sensitive, "before_sensitive")?,
            after_sensitive: parse(self.after_sensitive, "after_sensitive")?,
        })
    }

    /// True when either side has a sensitive mark (a mask other than `false`/`{}`/`[]`).
    fn has_sensitive(&self) -> bool {
        let marked = |raw: Option<&RawValue>| raw.is_some_and(|r| r.get().contains("true"));
        marked(self.before_sensitive) || marked(self.after_sensitive)
    }

    fn collect_secrets(
        &self,
        address: &str,
        secrets: &mut SecretCollector,
    ) -> Result<(), PlanError> {
        if !self.has_sensitive() {
            return Ok(());
        }
        let v = self.values(address, false)?;
        if let Some(before) = &v.before {
            secrets.collect_masked(before, Mask(v.before_sensitive.as_ref()), false);
        }
        if let Some(after) = &v.after {
            secrets.collect_masked(after, Mask(v.after_sensitive.as_ref()), false);
        }
        Ok(())
    }
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
        attributes: Vec<crate::report::AttributeChange>,
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
        }
    }
}

/// Reads a `show -json` plan document and lists its changes (interface §3 and §7), every
/// sensitive value already redacted.
pub fn understand_plan(json: &[u8], options: ExplainOptions) -> Result<PlanOutcome, PlanError> {
    understand_plan_with(json, options, SecretCollector::default())
}

/// As [`understand_plan`], with secrets known beforehand (values of `env_files`).
pub fn understand_plan_with(
    json: &[u8],
    options: ExplainOptions,
    mut secrets: SecretCollector,
) -> Result<PlanOutcome, PlanError> {
    let doc: Document<'_> = serde_json::from_slice(json)?;
    match doc.format_version.as_deref() {
        None => return Err(PlanError::NoFormatVersion),
        Some(v) if v.starts_with("0.") || v.starts_with("1.") => {}
        Some(v) => return Err(PlanError::UnsupportedVersion(v.to_owned())),
    }

    let drift = doc.resource_drift.as_deref().unwrap_or_default();
    let changes = doc.resource_changes.as_deref();
    let refresh_only = options.refresh_only || (changes.is_none() && !drift.is_empty());

    collect_plan_secrets(&doc, &mut secrets)?;
    let redactor = secrets.finish();

    let listed = if refresh_only {
        refresh_only_changes(drift, &redactor)?
    } else {
        let drifted: HashSet<&str> = drift
            .iter()
            .filter(|d| !d.is_data())
            .map(|d| d.address.as_str())
            .collect();
        planned_changes(changes.unwrap_or_default(), &drifted, &redactor)?
    };

    let diagnostics = doc.diagnostics.as_deref().unwrap_or_default();
    let error = if diagnostics.iter().any(Diagnostic::is_error) {
        let mut error = classify(diagnostics, Phase::Plan);
        error.summary = redactor.redact_text(&error.summary);
        error.detail = redactor.redact_text(&error.detail);
        Some(error)
    } else {
        doc.errored.unwrap_or(false).then(|| ScanError {
        reason: ErrorReason::Terraform,
        summary: "the plan is marked errored: terraform could not finish it".to_owned(),
        detail: "The plan document has \"errored\": true; the errors themselves are in the plan's diagnostics, not in this file.".to_owned(),
        })
    };
    Ok(PlanOutcome {
        changes: listed,
        ignored: Vec::new(),
        error,
        tool_version: doc.terraform_version.clone(),
    })
}

fn collect_plan_secrets(
    doc: &Document<'_>,
    secrets: &mut SecretCollector,
) -> Result<(), PlanError> {
    let all = doc
        .resource_changes
        .iter()
        .flatten()
        .chain(doc.resource_drift.iter().flatten());
    for rc in all {
        rc.change.collect_secrets(&rc.address, secrets)?;
    }
    for (name, output) in doc.output_changes.iter().flatten() {
        output.change_secrets(name, secrets)?;
    }
    let declared = doc
        .configuration
        .as_ref()
        .and_then(|c| c.root_module.as_ref())
        .and_then(|m| m.variables.as_ref());
    for (name, config) in declared.into_iter().flatten() {
        if config.sensitive != Some(true) {
            continue;
        }
        let value = doc
            .variables
            .as_ref()
            .and_then(|vars| vars.get(name))
            .and_then(|v| v.value);
        if let Some(raw) = value {
            let value: Value =
                serde_json::from_str(raw.get()).map_err(|source| PlanError::Value {
                    address: format!("var.{name}"),
                    field: "value",
                    source,
                })?;
            secrets.collect_masked(&value, Mask::NONE, true);
        }
    }
    Ok(())
}

impl ChangeBody<'_> {
    fn change_secrets(&self, name: &str, secrets: &mut SecretCollector) -> Result<(), PlanError> {
        self.collect_secrets(&format!("output.{name}"), secrets)
    }
}

fn planned_changes(
    entries: &[ResourceChange<'_>],
    drifted: &HashSet<&str>,
    redactor: &Redactor,
) -> Result<Vec<Change>, PlanError> {
    let mut out = Vec::new();
    for rc in entries.iter().filter(|rc| !rc.is_data()) {
        let Some(action) = rc.action()? else { continue };
        let attributes = if matches!(action, Action::Update | Action::Replace) {
            let v = rc.change.values(&rc.address, true)?;
            diff_attributes(
                Sides {
                    actual: v.before.as_ref(),
                    expected: v.after.as_ref(),
                    actual_sensitive: Mask(v.before_sensitive.as_ref()),
                    expected_sensitive: Mask(v.after_sensitive.as_ref()),
                    expected_unknown: Mask(v.after_unknown.as_ref()),
                },
                redactor,
            )
        } else {
            Vec::new()
        };
        let outside = drifted.contains(rc.address.as_str());
        out.push(rc.to_change(action, outside, attributes));
    }
    Ok(out)
}

/// A refresh-only plan: the changes are what refresh found (`after`) against the recorded
/// state (`before`), all made outside Terraform.
fn refresh_only_changes(
    entries: &[ResourceChange<'_>],
    redactor: &Redactor,
) -> Result<Vec<Change>, PlanError> {
    let mut out = Vec::new();
    for rc in entries.iter().filter(|rc| !rc.is_data()) {
        let Some(action) = rc.action()? else { continue };
        let attributes = if matches!(action, Action::Update | Action::Replace) {
            let v = rc.change.values(&rc.address, false)?;
            diff_attributes(
                Sides {
                    actual: v.after.as_ref(),
                    expected: v.before.as_ref(),
                    actual_sensitive: Mask(v.after_sensitive.as_ref()),
                    expected_sensitive: Mask(v.before_sensitive.as_ref()),
                    expected_unknown: Mask::NONE,
                },
                redactor,
            )
        } else {
            Vec::new()
        };
        out.push(rc.to_change(action, true, attributes));
    }
    Ok(out)
}

fn diff_attributes(sides: Sides<'_>, redactor: &Redactor) -> Vec<crate::report::AttributeChange> {
    let mut attributes = diff(sides);
    for attribute in &mut attributes {
        if redactor.finds(&attribute.path) {
            attribute.path = redactor.redact_text(&attribute.path);
        }
        redactor.redact_value(&mut attribute.actual);
        redactor.redact_value(&mut attribute.expected);
    }
    attributes
}
