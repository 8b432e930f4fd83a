//! Who changed a Proxmox guest, and when (docs/proxmox.md, "Who changed a guest").
//! The poller ([`crate::watcher`]) reads the cluster log (a ring of 128 KiB: read every
//! `proxmox.attribution_interval`, and a turn-over between two reads is said) and the nodes'
//! task lists, and keeps what it read under `storage.path`. A scan then [`attach`]es to each
//! change outside Terraform of a guest the entries for its vmid since the environment's last
//! conform scan, newest first. Attribution never fails a scan: without the permission
//! (`Sys.Syslog`) or after an API failure, `changed_by` is `null`.

use std::fmt;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::report::{Attribution, AttributionError, AttributionSource, Report};

/// Entries attached to one change, at most (the newest).
const MAX_PER_CHANGE: usize = 20;

/// One entry read from the cluster log or a task list, about one guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub vmid: u32,
    pub node: String,
    #[serde(with = "crate::report::rfc3339_seconds")]
    pub time: Option<DateTime<Utc>>,
    pub user: String,
    pub token: Option<String>,
    pub via: AttributionSource,
    /// The log line (`update VM 100: -memory 3072`), or the task's type (`qmcreate`).
    pub message: String,
    pub by_terraform: bool,
    /// `log:<node>:<uid>` or `task:<upid>`: an entry read twice is kept once.
    pub key: String,
}

impl Entry {
    /// A task that made the guest (`qmcreate`, `vzcreate`, a clone or a restore).
    pub fn creates(&self) -> bool {
        self.via == AttributionSource::Task
            && matches!(
                self.message.as_str(),
                "qmcreate" | "vzcreate" | "qmclone" | "vzclone" | "qmrestore" | "vzrestore"
            )
    }

    pub fn attribution(&self) -> Attribution {
        Attribution {
            user: self.user.clone(),
            token: self.token.clone(),
            time: self.time,
            via: self.via,
            message: self.message.clone(),
            by_terraform: self.by_terraform,
        }
    }
}

/// Why the poller could not read who changed what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollReason {
    /// The token lacks `Sys.Syslog` (or `Sys.Audit`) on `/`.
    Permission,
    Auth,
    Connectivity,
    Api,
    Config,
}

impl PollReason {
    pub const ALL: [PollReason; 5] = [
        PollReason::Permission,
        PollReason::Auth,
        PollReason::Connectivity,
        PollReason::Api,
        PollReason::Config,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PollReason::Permission => "permission",
            PollReason::Auth => "auth",
            PollReason::Connectivity => "connectivity",
            PollReason::Api => "api",
            PollReason::Config => "config",
        }
    }
}

impl fmt::Display for PollReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollError {
    pub reason: PollReason,
    pub summary: String,
}

/// The poller's last word, stored for the scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollStatus {
    #[serde(with = "crate::report::rfc3339_seconds")]
    pub polled_at: Option<DateTime<Utc>>,
    /// When the read began, to the nanosecond: a scan takes its entries only when this is
    /// after its plan started (an earlier read cannot have seen the change the plan found).
    #[serde(default)]
    pub read_started_at: Option<DateTime<Utc>>,
    pub interval_seconds: u64,
    pub error: Option<PollError>,
    /// Times the cluster log turned over between two reads (entries may be lost), since
    /// the poller started.
    #[serde(default)]
    pub gaps: u64,
}

impl PollStatus {
    /// Why the entries cannot say who made a change that a plan started at `plan_started`
    /// found: the read failed, or it began before the plan did (what the change did may not
    /// be in it, and `[]` would be a false statement). `None`: they can.
    pub fn unavailable(&self, plan_started: DateTime<Utc>) -> Option<AttributionError> {
        if let Some(e) = &self.error {
            return Some(e.reason.into());
        }
        self.read_before(plan_started)
            .then_some(AttributionError::Stale)
    }

    /// True when this read began before `t` (or says not when).
    pub fn read_before(&self, t: DateTime<Utc>) -> bool {
        self.read_started_at.is_none_or(|r| r < t)
    }
}

impl From<PollReason> for AttributionError {
    fn from(reason: PollReason) -> AttributionError {
        match reason {
            PollReason::Permission => AttributionError::Permission,
            PollReason::Auth => AttributionError::Auth,
            PollReason::Connectivity => AttributionError::Connectivity,
            PollReason::Api => AttributionError::Api,
            PollReason::Config => AttributionError::Config,
        }
    }
}

/// A scan's way to the attribution poller: asks for a read now and hears when one has been
/// stored (the start of the last read whose status is stored, failed or not).
#[derive(Debug, Clone)]
pub struct Reads {
    request: Arc<Notify>,
    stored: watch::Receiver<Option<DateTime<Utc>>>,
}

/// The poller's side of [`Reads`].
#[derive(Debug)]
pub struct ReadRequests {
    pub request: Arc<Notify>,
    pub stored: watch::Sender<Option<DateTime<Utc>>>,
}

impl Reads {
    /// The two sides.
    pub fn pair() -> (Reads, ReadRequests) {
        let request = Arc::new(Notify::new());
        let (stored, seen) = watch::channel(None);
        (
            Reads {
                request: request.clone(),
                stored: seen,
            },
            ReadRequests { request, stored },
        )
    }

    /// Asks for a read and waits, at most `bound`, until one that began at or after `t`
    /// is stored; false when none was (attribution off, the poller busy or stopped).
    pub async fn after(&self, t: DateTime<Utc>, bound: std::time::Duration) -> bool {
        self.request.notify_one();
        let mut stored = self.stored.clone();
        let read = stored.wait_for(|s| s.is_some_and(|s| s >= t));
        matches!(tokio::time::timeout(bound, read).await, Ok(Ok(_)))
    }
}

/// The vmid a log line is about: `update VM 100: ...`, `resize ... VM 100`, `CT 101 ...`.
pub fn vmid_of_message(message: &str) -> Option<u32> {
    let words: Vec<&str> = message.split_whitespace().collect();
    words.windows(2).find_map(|w| match w[0] {
        "VM" | "CT" => w[1].trim_end_matches([':', ',']).parse().ok(),
        _ => None,
    })
}

/// `root@pam!admin` -> (`root@pam`, `Some("admin")`).
pub fn split_actor(actor: &str) -> (String, Option<String>) {
    match actor.split_once('!') {
        Some((user, token)) => (user.to_owned(), Some(token.to_owned())),
        None => (actor.to_owned(), None),
    }
}

/// Sets `changed_by` on each counted change outside Terraform of a Proxmox guest: the
/// entries for its vmid after `since` (the last conform scan), newest first, `[]` when none
/// (only from a read that began after the plan started at `plan_started`); `null` when
/// attribution is off (no status) or unavailable, the report's `attribution_error` then
/// saying why.
pub fn attach(
    report: &mut Report,
    status: Option<&PollStatus>,
    entries: Result<&[Entry], AttributionError>,
    since: Option<DateTime<Utc>>,
    plan_started: DateTime<Utc>,
) {
    let (entries, unreadable) = match entries {
        Ok(entries) => (entries, None),
        Err(e) => (&[][..], Some(e)),
    };
    let unavailable = status.and_then(|s| s.unavailable(plan_started).or(unreadable));
    let usable = status.is_some() && unavailable.is_none();
    let mut wanted = false;
    for change in report.changes.iter_mut() {
        let Some(vmid) = change.vmid else { continue };
        if !change.outside_terraform || !change.action.is_counted() {
            continue;
        }
        wanted = true;
        change.changed_by = usable.then(|| {
            // A creation task is no change of a guest that was there before (it can only
            // fall in the last conform scan's second). Newest first; ties: the later read.
            let mut found: Vec<&Entry> = entries
                .iter()
                .rev()
                .filter(|e| e.vmid == vmid && !e.creates())
                .collect();
            found.sort_by_key(|e| std::cmp::Reverse(e.time));
            found
                .into_iter()
                // The log counts in whole seconds: an entry of the conform scan's last
                // second is kept.
                .filter(|e| match (since, e.time) {
                    (Some(since), Some(t)) => t.timestamp() >= since.timestamp(),
                    _ => true,
                })
                .take(MAX_PER_CHANGE)
                .map(Entry::attribution)
                .collect()
        });
    }
    report.attribution_error = unavailable.filter(|_| wanted);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vmid_comes_from_the_log_line() {
        assert_eq!(vmid_of_message("update VM 100: -memory 3072"), Some(100));
        assert_eq!(
            vmid_of_message("update VM 100: resize --disk scsi0 --size +1G"),
            Some(100)
        );
        assert_eq!(
            vmid_of_message("move disk VM 120: move --disk scsi0"),
            Some(120)
        );
        assert_eq!(vmid_of_message("rollback snapshot VM 7: pre"), Some(7));
        assert_eq!(vmid_of_message("starting task UPID:pve1:..."), None);
    }

    fn entry(time: &str, via: AttributionSource, message: &str) -> Entry {
        Entry {
            vmid: 120,
            node: "pve1".into(),
            time: Some(time.parse().unwrap()),
            user: "root@pam".into(),
            token: None,
            via,
            message: message.into(),
            by_terraform: false,
            key: format!("{time}{message}"),
        }
    }

    /// Regression: the container Terraform had just created (its `vzcreate` task) was named
    /// as the change's author when the conform scan ended in the same second.
    #[test]
    fn a_change_lists_what_changed_the_guest_since_the_conform_scan_and_never_its_creation() {
        let mut outcome = crate::report::PlanOutcome::no_changes();
        outcome.changes.push(crate::report::Change {
            vmid: Some(120),
            ..crate::report::Change::outside_update("pvesim_vm.web")
        });
        let mut report = Report::from_outcome(outcome);
        let conform: DateTime<Utc> = "2026-12-02T10:00:00.700Z".parse().unwrap();
        let entries = [
            entry(
                "2026-12-02T09:59:59Z",
                AttributionSource::ClusterLog,
                "update VM 120: -cores 4",
            ),
            entry("2026-12-02T10:00:00Z", AttributionSource::Task, "qmcreate"),
            entry(
                "2026-12-02T10:00:00Z",
                AttributionSource::ClusterLog,
                "update VM 120: -memory 3072",
            ),
            entry("2026-12-02T10:05:00Z", AttributionSource::Task, "qmconfig"),
        ];
        let mut status = PollStatus {
            polled_at: Some("2026-12-02T10:06:00Z".parse().unwrap()),
            read_started_at: Some("2026-12-02T10:05:59.500Z".parse().unwrap()),
            interval_seconds: 60,
            error: None,
            gaps: 0,
        };
        let plan: DateTime<Utc> = "2026-12-02T10:05:30Z".parse().unwrap();
        attach(
            &mut report,
            Some(&status),
            Ok(&entries),
            Some(conform),
            plan,
        );
        let by: Vec<&str> = report.changes[0]
            .changed_by
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| a.message.as_str())
            .collect();
        assert_eq!(by, ["qmconfig", "update VM 120: -memory 3072"]);
        assert_eq!(report.attribution_error, None);

        // Regression: a read that began before the plan cannot have seen what the plan
        // found; its `[]` was a false statement. Null, and why.
        let later: DateTime<Utc> = "2026-12-02T10:06:00Z".parse().unwrap();
        attach(
            &mut report,
            Some(&status),
            Ok(&entries),
            Some(conform),
            later,
        );
        assert_eq!(report.changes[0].changed_by, None);
        assert_eq!(report.attribution_error, Some(AttributionError::Stale));

        status.error = Some(PollError {
            reason: PollReason::Permission,
            summary: "no Sys.Syslog".into(),
        });
        attach(
            &mut report,
            Some(&status),
            Ok(&entries),
            Some(conform),
            plan,
        );
        assert_eq!(report.changes[0].changed_by, None);
        assert_eq!(report.attribution_error, Some(AttributionError::Permission));

        // A journal that cannot be read (a directory in its place) is no "nobody".
        status.error = None;
        let unreadable = Err(AttributionError::Journal);
        attach(&mut report, Some(&status), unreadable, Some(conform), plan);
        assert_eq!(report.changes[0].changed_by, None);
        assert_eq!(report.attribution_error, Some(AttributionError::Journal));

        // Attribution off: null, and nothing to explain.
        attach(&mut report, None, Ok(&entries), Some(conform), plan);
        assert_eq!(report.attribution_error, None);
    }

    #[test]
    fn a_token_is_split_from_its_user() {
        assert_eq!(
            split_actor("terraform@pve!apply"),
            ("terraform@pve".into(), Some("apply".into()))
        );
        assert_eq!(split_actor("root@pam"), ("root@pam".into(), None));
    }
}
