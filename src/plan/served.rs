//! The last plan as `GET /detail/<env>/plan` serves it (interface §6): the `show -json`
//! document cut down to the keys tools use, with every sensitive value replaced as in the
//! report. `variables`, `prior_state`, `planned_values` and `configuration` never leave.

use serde_json::{Map, Value};

use super::PlanError;
use super::redact::{Mask, SecretCollector, render};

/// The keys kept, in this order.
const KEPT: [&str; 9] = [
    "format_version",
    "terraform_version",
    "timestamp",
    "errored",
    "resource_drift",
    "resource_changes",
    "output_changes",
    "relevant_attributes",
    "checks",
];

/// The served form of a `show -json` document; `secrets` holds values known to be secret
/// beforehand (`env_files`).
pub fn served_plan(json: &[u8], mut secrets: SecretCollector) -> Result<Vec<u8>, PlanError> {
    let mut doc: Value =
        serde_json::from_slice(json).map_err(|e| PlanError::Malformed(e.to_string()))?;
    // Variables declared sensitive: their values are hunted everywhere.
    let declared = doc["configuration"]["root_module"]["variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, config) in declared {
        if config["sensitive"] == Value::Bool(true)
            && let Some(value) = doc["variables"][&name].get("value")
        {
            secrets.collect_masked(value, Mask::NONE, true);
        }
    }
    let mut out = Map::new();
    for key in KEPT {
        if let Some(value) = doc.get_mut(key).map(Value::take) {
            out.insert(key.to_owned(), value);
        }
    }
    for list in ["resource_drift", "resource_changes"] {
        for item in out
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            // A malformed entry (not an object, no change) has nothing to mask.
            if let Some(change) = item.get_mut("change") {
                mask_change(change, &mut secrets);
            }
        }
    }
    for output in out
        .get_mut("output_changes")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        mask_change(output, &mut secrets);
    }
    let redactor = secrets.finish();
    let mut out = Value::Object(out);
    redactor.redact_value(&mut out);
    serde_json::to_vec(&out).map_err(|e| PlanError::Malformed(e.to_string()))
}

/// Replaces the sensitive parts of `before`/`after` by their masks, recording the secrets.
fn mask_change(change: &mut Value, secrets: &mut SecretCollector) {
    if !change.is_object() {
        return;
    }
    for (side, mask) in [("before", "before_sensitive"), ("after", "after_sensitive")] {
        let mask = change.get(mask).cloned();
        if let Some(value) = change.get(side).filter(|v| !v.is_null()).cloned() {
            secrets.collect_masked(&value, Mask(mask.as_ref()), false);
            change[side] = render(Some(&value), Mask(mask.as_ref()), false, Mask::NONE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tool_keys_leave_and_sensitive_values_are_replaced() {
        let plan = serde_json::json!({
            "format_version": "1.2",
            "variables": {"pw": {"value": "hunter2-long"}},
            "configuration": {"root_module": {"variables": {"pw": {"sensitive": true}}}},
            "prior_state": {"values": {}},
            "resource_changes": [{"address": "a.b", "change": {
                "actions": ["update"],
                "before": {"password": "old-secret", "echo": "hunter2-long"},
                "after": {"password": "new-secret", "echo": "x"},
                "before_sensitive": {"password": true}, "after_sensitive": {"password": true}
            }}]
        });
        let served: Value = serde_json::from_slice(
            &served_plan(plan.to_string().as_bytes(), SecretCollector::default()).unwrap(),
        )
        .unwrap();
        let text = served.to_string();
        for secret in ["hunter2-long", "old-secret", "new-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            served.get("variables").is_none()
                && served.get("prior_state").is_none()
                && served.get("configuration").is_none()
        );
        assert_eq!(
            served["resource_changes"][0]["change"]["after"]["echo"],
            "x"
        );
    }
}
