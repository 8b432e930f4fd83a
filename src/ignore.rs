//! Ignore rules: provider false positives and accepted differences, hidden from the status
//! but kept in the report's `ignored` list with the rule's reason.

use chrono::NaiveDate;
use serde_json::Value;

use crate::glob::Glob;
use crate::plan::redact::KNOWN_AFTER_APPLY;
use crate::report::{Change, PlanOutcome};

/// An ignore rule, as the configuration gives it (`[[environments.<env>.ignore]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreRule {
    /// Glob on the resource address.
    pub address: Glob,
    /// Glob on the attribute path; `None` hides the whole resource.
    pub attribute: Option<Glob>,
    pub reason: String,
    pub expires: Option<NaiveDate>,
}

/// Why an address glob can never match a Terraform resource address (`type.name`,
/// `module.m.type.name[0]`, `data.type.name["k"]`), if it cannot.
pub fn impossible_address(glob: &str) -> Option<&'static str> {
    // Index keys in brackets may hold anything (for_each keys): judge the rest.
    let mut outside = String::new();
    let mut depth = 0;
    for c in glob.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            c if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    let glob = outside.as_str();
    if glob.chars().any(char::is_whitespace) {
        return Some("addresses have no white space");
    }
    if !glob.contains('.') && !glob.contains('*') {
        return Some("an address has at least a type and a name: type.name");
    }
    let first = glob.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '*' || first == '?') {
        return Some("an address starts with a letter (a resource type, module. or data.)");
    }
    if glob
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || "_-.*?".contains(c)))
    {
        return Some("it has characters no address has outside an index key in brackets");
    }
    None
}

/// Rules of `rules` past their expiry on `today`.
pub fn expired(rules: &[IgnoreRule], today: NaiveDate) -> usize {
    rules.iter().filter(|r| !in_force(r, today)).count()
}

/// True while the rule applies on `today`.
pub fn in_force(rule: &IgnoreRule, today: NaiveDate) -> bool {
    rule.expires.is_none_or(|expires| today < expires)
}

/// Applies the rules in force on `today` to an understood plan.
pub fn apply(outcome: &mut PlanOutcome, rules: &[IgnoreRule], today: NaiveDate) {
    let rules: Vec<&IgnoreRule> = rules.iter().filter(|r| in_force(r, today)).collect();
    if rules.is_empty() {
        return;
    }
    let mut kept = Vec::with_capacity(outcome.changes.len());
    for mut change in std::mem::take(&mut outcome.changes) {
        let matching: Vec<&IgnoreRule> = rules
            .iter()
            .copied()
            .filter(|r| r.address.matches(&change.address))
            .collect();
        if let Some(rule) = matching.iter().find(|r| r.attribute.is_none()) {
            outcome.ignored.push(ignored(change, &rule.reason));
            continue;
        }
        if matching.is_empty() || change.attributes.is_empty() {
            kept.push(change);
            continue;
        }
        let mut reasons: Vec<&str> = Vec::new();
        change.attributes.retain(|a| {
            let rule = matching
                .iter()
                .find(|r| r.attribute.as_ref().is_some_and(|g| g.matches(&a.path)));
            if let Some(rule) = rule
                && !reasons.contains(&rule.reason.as_str())
            {
                reasons.push(&rule.reason);
            }
            rule.is_none()
        });
        // What remains only because of ignored causes ("known after apply") is no cause.
        let has_cause = change
            .attributes
            .iter()
            .any(|a| a.expected != Value::String(KNOWN_AFTER_APPLY.to_owned()));
        if has_cause || reasons.is_empty() {
            kept.push(change);
        } else {
            let reason = reasons.join("; ");
            outcome.ignored.push(ignored(change, &reason));
        }
    }
    outcome.changes = kept;
}

fn ignored(mut change: Change, reason: &str) -> Change {
    change.ignored_by = Some(reason.to_owned());
    change
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Action, AttributeChange};
    use serde_json::json;

    #[test]
    fn address_globs_that_cannot_match_are_flagged() {
        assert_eq!(impossible_address("proxmox_vm_qemu.*"), None);
        assert_eq!(
            impossible_address("module.*.proxmox_lxc.ct[\"a b\"]"),
            None,
            "keys may hold anything"
        );
        assert_eq!(impossible_address("*"), None);
        assert!(impossible_address("tags").is_some());
        assert!(impossible_address("proxmox vm.web").is_some());
        assert!(impossible_address("9vm.web").is_some());
        assert!(impossible_address("vm.web{1}").is_some());
    }

    fn change(attrs: &[(&str, Value)]) -> Change {
        Change {
            address: "proxmox_vm_qemu.web".into(),
            module: None,
            resource_type: "proxmox_vm_qemu".into(),
            name: "web".into(),
            index: None,
            action: Action::Update,
            outside_terraform: true,
            reason: None,
            attributes: attrs
                .iter()
                .map(|(p, e)| AttributeChange {
                    path: p.to_string(),
                    actual: json!(1),
                    expected: e.clone(),
                })
                .collect(),
            ignored_by: None,
            since: None,
            changed_by: None,
            vmid: None,
        }
    }

    fn rule(attribute: Option<&str>, expires: Option<&str>) -> IgnoreRule {
        IgnoreRule {
            address: Glob::new("proxmox_vm_qemu.*"),
            attribute: attribute.map(Glob::new),
            reason: "provider reorders tags".into(),
            expires: expires.map(|e| e.parse().unwrap()),
        }
    }

    #[test]
    fn a_change_whose_every_cause_is_ignored_moves_to_ignored() {
        let today: NaiveDate = "2026-11-25".parse().unwrap();
        let mut o = PlanOutcome {
            changes: vec![change(&[
                ("tags", json!(2)),
                ("id", json!(KNOWN_AFTER_APPLY)),
            ])],
            ignored: vec![],
            error: None,
            tool_version: None,
            guests: None,
            checks: vec![],
        };
        apply(&mut o, &[rule(Some("tags"), None)], today);
        assert!(o.changes.is_empty());
        assert_eq!(
            o.ignored[0].ignored_by.as_deref(),
            Some("provider reorders tags")
        );

        let mut o = PlanOutcome {
            changes: vec![change(&[("tags", json!(2)), ("memory", json!(2048))])],
            ignored: vec![],
            error: None,
            tool_version: None,
            guests: None,
            checks: vec![],
        };
        apply(&mut o, &[rule(Some("tags"), None)], today);
        assert_eq!(
            o.changes[0].attributes.len(),
            1,
            "the ignored attribute is left out"
        );
        assert_eq!(o.changes[0].attributes[0].path, "memory");

        let mut o = PlanOutcome {
            changes: vec![change(&[("tags", json!(2))])],
            ignored: vec![],
            error: None,
            tool_version: None,
            guests: None,
            checks: vec![],
        };
        apply(&mut o, &[rule(None, Some("2026-11-25"))], today);
        assert_eq!(o.changes.len(), 1, "an expired rule stops applying");
    }
}
