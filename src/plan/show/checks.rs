//! The plan's `checks` (Terraform 1.3 and later, OpenTofu alike): one entry per checkable
//! object with its aggregate status, and per instance the problems (the author's
//! `error_message`, rendered). Read into [`CheckResult`]s; redacted once every secret of
//! the plan is known.

use serde::Deserialize;

use super::super::redact::Redactor;
use crate::report::{CheckKind, CheckResult, CheckStatus, Problem};

#[derive(Deserialize)]
struct Object {
    address: ObjectAddress,
    status: CheckStatus,
    #[serde(default)]
    instances: Vec<Instance>,
}

#[derive(Deserialize)]
struct ObjectAddress {
    #[serde(default = "other")]
    kind: CheckKind,
    to_display: String,
}

fn other() -> CheckKind {
    CheckKind::Other
}

#[derive(Deserialize)]
struct Instance {
    address: InstanceAddress,
    #[serde(default)]
    problems: Vec<Message>,
}

#[derive(Deserialize)]
struct InstanceAddress {
    to_display: String,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

/// The `checks` member (`null` or absent: none).
pub(super) fn parse(value: &[u8]) -> Result<Vec<CheckResult>, serde_json::Error> {
    let objects: Option<Vec<Object>> = serde_json::from_slice(value)?;
    Ok(objects
        .into_iter()
        .flatten()
        .map(|object| CheckResult {
            address: object.address.to_display,
            kind: object.address.kind,
            status: object.status,
            problems: object
                .instances
                .into_iter()
                .flat_map(|instance| {
                    let at = instance.address.to_display;
                    instance.problems.into_iter().map(move |p| Problem {
                        instance: at.clone(),
                        message: p.message,
                    })
                })
                .collect(),
        })
        .collect())
}

/// Messages interpolate values (`nonsensitive(var.token)` renders a secret in clear):
/// every secret of the plan is written `(sensitive)` in them, as everywhere.
pub(super) fn redact(checks: &mut [CheckResult], redactor: &Redactor) {
    for check in checks {
        check.address = redactor.redact_text(&check.address);
        for problem in &mut check.problems {
            problem.instance = redactor.redact_text(&problem.instance);
            problem.message = redactor.redact_text(&problem.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_status_and_the_problems_of_each_instance() {
        let value = br#"[
          {"address": {"kind": "resource", "mode": "managed", "type": "terraform_data",
                       "name": "disk", "to_display": "terraform_data.disk"},
           "status": "fail",
           "instances": [
             {"address": {"to_display": "terraform_data.disk[\"big\"]", "instance_key": "big"},
              "status": "fail", "problems": [{"message": "disk big is 64 GB."}]},
             {"address": {"to_display": "terraform_data.disk[\"small\"]", "instance_key": "small"},
              "status": "pass"}]},
          {"address": {"kind": "check", "name": "up", "to_display": "module.m.check.up",
                       "module": "module.m"}, "status": "error"},
          {"address": {"kind": "output_value", "name": "o", "to_display": "output.o"},
           "status": "unknown"},
          {"address": {"kind": "var", "name": "v", "to_display": "var.v"}, "status": "pass"},
          {"address": {"kind": "ephemeral_thing", "to_display": "x.y"}, "status": "skipped"}
        ]"#;
        let checks = parse(value).unwrap();
        let seen: Vec<(&str, CheckKind, CheckStatus, usize)> = checks
            .iter()
            .map(|c| (c.address.as_str(), c.kind, c.status, c.problems.len()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "terraform_data.disk",
                    CheckKind::Resource,
                    CheckStatus::Fail,
                    1
                ),
                ("module.m.check.up", CheckKind::Check, CheckStatus::Error, 0),
                ("output.o", CheckKind::OutputValue, CheckStatus::Unknown, 0),
                ("var.v", CheckKind::Var, CheckStatus::Pass, 0),
                ("x.y", CheckKind::Other, CheckStatus::Unknown, 0),
            ]
        );
        assert_eq!(
            checks[0].problems[0].instance,
            "terraform_data.disk[\"big\"]"
        );
        assert_eq!(checks[0].first_message(), "disk big is 64 GB.");
        assert!(parse(b"null").unwrap().is_empty());
        assert!(parse(br#"[{"status": "pass"}]"#).is_err());
    }
}
