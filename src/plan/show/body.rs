//! One change body of the plan (`before`, `after` and their masks): its values parsed
//! when a change needs them, and its sensitive values gathered as secrets.

use serde_json::Value;
use serde_json::value::RawValue;

use super::super::redact::{Mask, SecretCollector};
use super::{ChangeBody, PlanError};

/// The parsed values of one change body.
pub(super) struct Values {
    pub(super) before: Option<Value>,
    pub(super) after: Option<Value>,
    pub(super) after_unknown: Option<Value>,
    pub(super) before_sensitive: Option<Value>,
    pub(super) after_sensitive: Option<Value>,
}

impl ChangeBody<'_> {
    pub(super) fn values(&self, address: &str, with_unknown: bool) -> Result<Values, PlanError> {
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

    pub(super) fn collect_secrets(
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
