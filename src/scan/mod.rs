//! One scan of one environment: init when needed, plan, show when the plan has changes,
//! understand the result and hand back a complete [`Scanned`] for the store to commit.
//! Never anything that writes infrastructure.

use std::path::Path;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::attribution::{Entry, PollStatus, Reads};
use crate::cancel::CancellationToken;
use crate::config::Environment;
use crate::report::{
    AttributionError, ErrorReason, Report, ScanError, Scanned, Trigger, TriggerKind,
};
pub use crate::store::Stored;
use crate::store::{LockWait, ScanLock, Storage};

mod files;
mod steps;

use steps::{Scan, Step};

/// A finished scan, with the scan lock of its environment: held until the scan is
/// committed ([`Storage::commit`]), so that no other scan (of the CLI, of another exporter)
/// runs or commits in between.
#[derive(Debug)]
pub struct Finished {
    pub scanned: Scanned,
    pub lock: Option<ScanLock>,
}

/// Scans `env` under its scan lock and commits the scan (the CLI; the exporter's
/// supervisor commits what [`scan_locked`] returns). `None`: cancelled, nothing stored.
pub async fn scan_and_commit(
    env: &Environment,
    storage: &Storage,
    cancel: &CancellationToken,
) -> Option<Stored> {
    let manual = Trigger::of(TriggerKind::Manual);
    let finished = scan_locked(env, storage, None, manual, cancel).await?;
    let stored = storage.commit(finished.scanned).await;
    drop(finished.lock);
    committed(&stored);
    Some(stored)
}

/// Says in the log how a committed scan ended.
pub fn committed(stored: &Stored) {
    let report = &stored.report;
    let s = &report.summary;
    tracing::info!(
        environment = %report.environment().unwrap_or_default(),
        status = %report.status,
        reason = report.error.as_ref().map(|e| e.reason.as_str()).unwrap_or(""),
        duration_seconds = report.stamp.as_ref().map(|t| t.duration_seconds).unwrap_or_default(),
        create = s.create,
        update = s.update,
        delete = s.delete,
        replace = s.replace,
        outside_terraform = s.outside_terraform,
        id = %report.id().unwrap_or_default(),
        stored = stored.stored,
        "scan finished"
    );
}

/// Scans `env` under its scan lock (a CLI scan and the exporter never scan one environment
/// at once) and returns the finished scan with the lock; `None` when cancelled.
pub async fn scan_locked(
    env: &Environment,
    storage: &Storage,
    reads: Option<&Reads>,
    trigger: Trigger,
    cancel: &CancellationToken,
) -> Option<Finished> {
    let store = match crate::store::open_env(storage.path(), &env.name).await {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::error!(environment = %env.name, error = %e, "cannot open the environment's storage");
            None
        }
    };
    // The wait for another process's scan of this environment counts against the timeout
    // and ends with the exporter (a SIGTERM does not wait for the CLI's scan).
    let started_at = Utc::now();
    let clock = Instant::now();
    let deadline = clock + env.timeout;
    let lock = match &store {
        Some(store) => match store.lock(deadline, cancel).await {
            Ok(lock) => lock,
            Err(LockWait::Cancelled(_)) => {
                tracing::warn!(environment = %env.name, "scan cancelled while waiting for the scan lock");
                return None;
            }
            Err(LockWait::TimedOut) => {
                let tool = Scan::new(env, cancel).tool;
                let scanned = Scanned {
                    environment: env.name.clone(),
                    started_at,
                    finished_at: Utc::now(),
                    duration_seconds: seconds(clock),
                    tool,
                    trigger,
                    findings: Report::failed(lock_timed_out(env)),
                    plan: None,
                    guests: None,
                };
                return Some(Finished {
                    scanned,
                    lock: None,
                });
            }
        },
        None => None,
    };
    tracing::info!(environment = %env.name, dir = %env.dir.display(), "scan started");
    match scan(env, storage, reads, trigger, cancel, deadline).await {
        Ok(scanned) => Some(Finished { scanned, lock }),
        Err(Cancelled) => {
            tracing::warn!(environment = %env.name, "scan cancelled: terraform was interrupted, nothing is stored");
            None
        }
    }
}

pub use crate::cancel::Cancelled;

/// The time since `clock`, in seconds to the millisecond.
fn seconds(clock: Instant) -> f64 {
    (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// Scans `env` now (not committed yet: see [`Storage::commit`]). `deadline` ends the whole
/// scan (the environment's timeout, from before any wait for its lock). With `reads` (the
/// running exporter's attribution poller), a scan that found a guest changed asks for a
/// read of Proxmox's log that begins after its plan did.
pub async fn scan(
    env: &Environment,
    storage: &Storage,
    reads: Option<&Reads>,
    trigger: Trigger,
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<Scanned, Cancelled> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let mut scan = Scan::new(env, cancel);
    let mut guests = None;
    let mut report = match scan.run(storage.path(), deadline).await {
        Ok(mut outcome) => {
            guests = outcome.guests.take();
            let today = chrono::Local::now().date_naive();
            for rule in env
                .ignore
                .iter()
                .filter(|r| !crate::ignore::in_force(r, today))
            {
                tracing::warn!(environment = %env.name, address = %rule.address, reason = %rule.reason, "ignore rule expired: it no longer applies");
            }
            crate::ignore::apply(&mut outcome, &env.ignore, today);
            Report::from_outcome(outcome)
        }
        Err(Step::Failed(error)) => Report::failed(error),
        Err(Step::Cancelled(cancelled)) => return Err(cancelled),
    };
    if let Some(error) = report.error.as_mut() {
        error.summary = scan.secrets.redact_text(&error.summary);
        error.detail = scan.secrets.redact_text(&error.detail);
    }
    let plan_started = scan.plan_started.unwrap_or(started_at);
    attribute(&mut report, storage, reads, &env.name, plan_started).await;
    for entry in report
        .changes
        .iter_mut()
        .filter_map(|c| c.changed_by.as_mut())
        .flatten()
    {
        entry.message = scan.secrets.redact_text(&entry.message);
    }
    if scan.tool.version.is_none() {
        scan.tool.version = report.tool.take().and_then(|t| t.version);
    }
    Ok(Scanned {
        environment: env.name.clone(),
        started_at,
        finished_at: Utc::now(),
        duration_seconds: seconds(clock),
        tool: scan.tool,
        trigger,
        findings: report,
        plan: scan.served_plan,
        guests,
    })
}

/// How long a scan waits for a fresh read of Proxmox's log (a read takes a few requests).
const FRESH_READ: std::time::Duration = std::time::Duration::from_secs(30);

/// Says who changed the report's guests, from what the attribution poller stored and, from
/// the history's memory, the last conform scan (only when a change outside Terraform is a
/// Proxmox guest). Only a read that began after the plan can say "nobody": when the stored
/// one is older, the poller is asked for a new one (at most [`FRESH_READ`]); without it,
/// `changed_by` is `null` and the report says `stale`.
async fn attribute(
    report: &mut Report,
    storage: &Storage,
    reads: Option<&Reads>,
    env: &str,
    plan_started: DateTime<Utc>,
) {
    let wanted = report
        .changes
        .iter()
        .any(|c| c.vmid.is_some() && c.outside_terraform);
    if !wanted {
        return;
    }
    let stale = storage
        .attribution_status::<PollStatus>()
        .await
        .is_some_and(|s| s.read_before(plan_started));
    if let (true, Some(reads)) = (stale, reads)
        && !reads.after(plan_started, FRESH_READ).await
    {
        tracing::warn!(environment = %env, "no read of Proxmox's log after the plan: changed_by is null (stale)");
    }
    let files = storage
        .attribution::<PollStatus, Entry>(env, plan_started)
        .await;
    match files {
        Some(files) => {
            let entries = files.entries.as_deref().map_err(|e| {
                tracing::error!(environment = %env, error = %e, "cannot read the attribution journal: changed_by is null");
                AttributionError::Journal
            });
            crate::attribution::attach(
                report,
                files.status.as_ref(),
                entries,
                files.last_conform,
                plan_started,
            )
        }
        None => {
            tracing::warn!(environment = %env, "cannot read the attribution journal")
        }
    }
}

/// Why the state of an environment could not be pulled.
#[derive(Debug, Clone, PartialEq)]
pub enum PullError {
    /// Stopped by its cancellation token (shutdown).
    Cancelled(Cancelled),
    Failed(ScanError),
}

/// The state of `env` as `terraform state pull` prints it (empty when there is no state),
/// after init when needed. Waits for a running scan of the environment to end (both use its
/// `TF_DATA_DIR`); the wait counts against the environment's timeout.
pub async fn pull_state(
    env: &Environment,
    storage: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, PullError> {
    let deadline = Instant::now() + env.timeout;
    let _lock = match crate::store::open_env(storage, &env.name).await {
        Ok(store) => match store.lock(deadline, cancel).await {
            Ok(lock) => lock,
            Err(LockWait::Cancelled(c)) => return Err(PullError::Cancelled(c)),
            Err(LockWait::TimedOut) => return Err(PullError::Failed(lock_timed_out(env))),
        },
        // The pull reports the storage problem itself.
        _ => None,
    };
    let mut pull = Scan::new(env, cancel);
    pull.pull(storage, deadline)
        .await
        .map_err(|step| match step {
            Step::Cancelled(cancelled) => PullError::Cancelled(cancelled),
            Step::Failed(mut error) => {
                error.summary = pull.secrets.redact_text(&error.summary);
                error.detail = pull.secrets.redact_text(&error.detail);
                PullError::Failed(error)
            }
        })
}

/// The error of a scan whose lock another process held past the environment's timeout.
fn lock_timed_out(env: &Environment) -> ScanError {
    ScanError {
        reason: ErrorReason::Timeout,
        summary: format!(
            "another scan of {} held its lock for longer than the timeout of {}",
            env.name,
            crate::schedule::human(env.timeout)
        ),
        detail: String::new(),
    }
}
