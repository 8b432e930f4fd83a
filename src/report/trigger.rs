//! What started a scan: its kind, and for a scan Proxmox's change signals started, the
//! signals (the watcher finds them, the signals module bundles them per environment).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What started a scan (interface §7, the report's `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// The first scan of an environment with `run_on_start`.
    Start,
    /// Its schedule came due.
    Schedule,
    /// `POST /scan/<env>`, or the CLI's `scan`.
    Manual,
    /// Proxmox recorded a change of a guest the environment manages.
    Proxmox,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 4] = [
        TriggerKind::Start,
        TriggerKind::Schedule,
        TriggerKind::Manual,
        TriggerKind::Proxmox,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Start => "start",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Manual => "manual",
            TriggerKind::Proxmox => "proxmox",
        }
    }
}

/// What started a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// For `proxmox`: the newest signals (at most 20), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<Signal>,
    /// For `proxmox`: how many signals there were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub signals_total: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Trigger {
    pub fn of(kind: TriggerKind) -> Trigger {
        Trigger {
            kind,
            signals: Vec::new(),
            signals_total: 0,
        }
    }

    /// A scan started by Proxmox's change signals: the newest `signals` of `total`.
    pub fn proxmox(signals: Vec<Signal>, total: usize) -> Trigger {
        Trigger {
            kind: TriggerKind::Proxmox,
            signals,
            signals_total: total,
        }
    }

    /// Seconds from the earliest signalled change to `found_at` (the detection latency).
    pub fn latency_to(&self, found_at: DateTime<Utc>) -> Option<f64> {
        let changed = self.signals.iter().filter_map(|s| s.changed_at).min()?;
        Some(((found_at - changed).num_milliseconds() as f64 / 1000.0).max(0.0))
    }
}

/// Where a signal was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalSource {
    /// A cluster log line (`update VM 100: -memory 3072`).
    ClusterLog,
    /// A node's task (`qmconfig`, `qmcreate`, `vzdestroy`, ...).
    Task,
    /// A guest's config digest changed between two reads (author unknown).
    Digest,
}

impl SignalSource {
    pub const ALL: [SignalSource; 3] = [
        SignalSource::ClusterLog,
        SignalSource::Task,
        SignalSource::Digest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalSource::ClusterLog => "cluster_log",
            SignalSource::Task => "task",
            SignalSource::Digest => "digest",
        }
    }
}

impl fmt::Display for SignalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sign that a guest changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub source: SignalSource,
    pub vmid: u32,
    pub node: String,
    /// Who, when Proxmox says it (not for a digest).
    pub user: Option<String>,
    pub token: Option<String>,
    /// The actor is one of `proxmox.terraform_token_ids`.
    pub by_terraform: bool,
    /// When the change was made: the line's or the task's time; for a digest, the last
    /// read that still saw the old digest (the change came after it).
    #[serde(rename = "time", with = "super::rfc3339_seconds")]
    pub changed_at: Option<DateTime<Utc>>,
    /// When the exporter read it.
    #[serde(with = "super::rfc3339_seconds")]
    pub seen_at: Option<DateTime<Utc>>,
    /// The log line, the task's type, or `config digest changed`.
    pub message: String,
}
