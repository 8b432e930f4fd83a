//! The last plan as `GET /detail/<env>/plan` serves it (interface §6): the `show -json`
//! document cut down to the keys tools use, with every sensitive value replaced as in the
//! report. `variables`, `prior_state`, `planned_values` and `configuration` never leave.

use std::io::{Read, Write};

use serde_json::Value;

use super::redact::{Mask, Redactor, SecretCollector, render};
use super::show::understand_plan_redacting;
use super::split::{Piece, SplitError, Want, split};
use super::{ExplainOptions, PlanError};

/// The keys kept.
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

/// The served form of a `show -json` document held in memory; `secrets` holds values known
/// to be secret beforehand (`env_files`). Scans use [`write_served_plan`], which streams.
pub fn served_plan(json: &[u8], secrets: SecretCollector) -> Result<Vec<u8>, PlanError> {
    let (_, redactor) = understand_plan_redacting(json, ExplainOptions::default(), secrets)?;
    let mut out = Vec::new();
    write_served_plan(json, &redactor, &mut out)?;
    Ok(out)
}

/// Writes the served form of the document `input` to `out`, one top-level member or one
/// change at a time (a plan of 100 MB is never held, neither as text nor as values).
/// `redactor` knows every secret of the plan: the one [`understand_plan_redacting`] returned
/// for the same document.
pub fn write_served_plan(
    input: impl Read,
    redactor: &Redactor,
    out: &mut impl Write,
) -> Result<(), PlanError> {
    let want = |key: &str| match key {
        "resource_drift" | "resource_changes" => Want::Elements,
        k if KEPT.contains(&k) => Want::Whole,
        _ => Want::Skip,
    };
    let mut writer = Writer {
        out,
        redactor,
        members: 0,
        open_list: None,
    };
    let mut failure: Option<PlanError> = None;
    let result = split(input, want, |piece| {
        writer.take(piece).map_err(|e| {
            let text = e.to_string();
            failure = Some(e);
            text
        })
    });
    match result {
        Ok(()) => writer.finish(),
        Err(SplitError::Piece(_)) => {
            Err(failure.unwrap_or(PlanError::Malformed("unwritable piece".into())))
        }
        Err(SplitError::Io(e)) => Err(PlanError::Io(e)),
        Err(e @ SplitError::Syntax { .. }) => Err(PlanError::Malformed(e.to_string())),
    }
}

/// Writes the served object as its pieces stream by.
struct Writer<'a, W: Write> {
    out: &'a mut W,
    redactor: &'a Redactor,
    /// Members written so far.
    members: usize,
    /// The list member being written and how many elements it has so far.
    open_list: Option<usize>,
}

impl<W: Write> Writer<'_, W> {
    fn begin_member(&mut self, key: &str) -> Result<(), PlanError> {
        self.close_list()?;
        let separator = if self.members == 0 { "{" } else { "," };
        self.members += 1;
        write!(self.out, "{separator}")?;
        serde_json::to_writer(&mut *self.out, key).map_err(json_error)?;
        write!(self.out, ":")?;
        Ok(())
    }

    fn close_list(&mut self) -> Result<(), PlanError> {
        if self.open_list.take().is_some() {
            write!(self.out, "]")?;
        }
        Ok(())
    }

    fn value(&mut self, mut value: Value) -> Result<(), PlanError> {
        self.redactor.redact_value(&mut value);
        serde_json::to_writer(&mut *self.out, &value).map_err(json_error)
    }

    fn take(&mut self, piece: Piece<'_>) -> Result<(), PlanError> {
        match piece {
            Piece::Member { key, value } => {
                let mut value: Value = parse(key, value)?;
                if key == "output_changes" {
                    for output in value
                        .as_object_mut()
                        .into_iter()
                        .flat_map(|m| m.values_mut())
                    {
                        mask_change(output, &mut SecretCollector::default());
                    }
                }
                self.begin_member(key)?;
                self.value(value)
            }
            Piece::Present { key } => {
                self.begin_member(key)?;
                write!(self.out, "[")?;
                self.open_list = Some(0);
                Ok(())
            }
            Piece::Element { key, index, value } => {
                let mut item: Value = parse(&format!("{key}[{index}]"), value)?;
                // A malformed entry (not an object, no change) has nothing to mask.
                if let Some(change) = item.get_mut("change") {
                    mask_change(change, &mut SecretCollector::default());
                }
                let n = self.open_list.get_or_insert(0);
                if *n > 0 {
                    write!(self.out, ",")?;
                }
                *n += 1;
                self.value(item)
            }
        }
    }

    fn finish(mut self) -> Result<(), PlanError> {
        self.close_list()?;
        let text = if self.members == 0 { "{}" } else { "}" };
        write!(self.out, "{text}")?;
        self.out.flush()?;
        Ok(())
    }
}

fn parse(what: &str, value: &[u8]) -> Result<Value, PlanError> {
    serde_json::from_slice(value).map_err(|e| PlanError::Malformed(format!("{what}: {e}")))
}

fn json_error(e: serde_json::Error) -> PlanError {
    PlanError::Io(std::io::Error::other(e))
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
