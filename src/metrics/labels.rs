//! The label sets of the metric families.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use crate::attribution::PollReason;
use crate::report::SignalSource;
use crate::report::{Action, CheckKind, CheckStatus, ErrorReason, Status, TriggerKind};
use crate::unmanaged::CheckReason;
use crate::unmanaged::api::GuestKind;

/// The enums used as label values, written as their interface names (`as_str`).
macro_rules! label_value_by_name {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    )*};
}

label_value_by_name!(
    Action,
    ErrorReason,
    Status,
    GuestKind,
    CheckReason,
    PollReason,
    SignalSource,
    TriggerKind,
    CheckKind,
    CheckStatus
);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Env {
    pub(super) environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EnvAction {
    pub(super) environment: String,
    pub(super) action: Action,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EnvReason {
    pub(super) environment: String,
    pub(super) reason: ErrorReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EnvTrigger {
    pub(super) environment: String,
    pub(super) trigger: TriggerKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EnvCheckStatus {
    pub(super) environment: String,
    pub(super) status: CheckStatus,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CheckFailed {
    pub(super) environment: String,
    pub(super) address: String,
    pub(super) kind: CheckKind,
    pub(super) message: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EnvStatus {
    pub(super) environment: String,
    pub(super) status: Status,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Resource {
    pub(super) environment: String,
    pub(super) address: String,
    pub(super) r#type: String,
    pub(super) action: Action,
    pub(super) outside_terraform: bool,
    /// `path: actual -> expected; ...`, bounded (interface §8).
    pub(super) attributes: String,
    /// The user of the newest attribution entry, else empty.
    pub(super) changed_by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Kind {
    pub(super) kind: GuestKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct GuestLabels {
    pub(super) vmid: u32,
    pub(super) name: String,
    pub(super) node: String,
    pub(super) kind: GuestKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Reason {
    pub(super) reason: CheckReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SignalSourceLabel {
    pub(super) source: SignalSource,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PollReasonLabel {
    pub(super) reason: PollReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ErrorInfo {
    pub(super) environment: String,
    pub(super) reason: ErrorReason,
    /// The error's first line, cut (secrets already scrubbed by the scan).
    pub(super) summary: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WebLabels {
    /// `web.external_url`, or empty.
    pub(super) external_url: String,
    /// `https` when the exporter serves TLS.
    pub(super) scheme: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Build {
    pub(super) version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ShardLabels {
    pub(super) shard_ordinal: String,
}
