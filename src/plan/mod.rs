//! Understanding what terraform/tofu print: the `plan -json` stream ([`stream`]) and the
//! `show -json` plan document ([`show`]), turned into report changes with attribute
//! diffs ([`diff`]) that never carry a sensitive value ([`redact`]).

pub mod diff;
pub mod redact;
pub mod served;
pub mod show;
pub mod split;
pub mod stream;

pub use show::{ExplainOptions, PlanError, understand_plan};
