//! One scan of one environment: init when needed, plan, show when the plan has changes,
//! understand the result and make the report. Never anything that writes infrastructure.

use std::path::Path;

use chrono::Utc;
use tokio::time::Instant;

use crate::attribution::{Entry, PollStatus};
use crate::cancel::CancellationToken;
use crate::config::Environment;
use crate::report::{ErrorReason, Report, ScanError};
use crate::store::LockWait;
pub use crate::store::Stored;

mod files;
mod steps;

use steps::{Scan, Step};

/// Scans `env` under its scan lock (a CLI scan and the exporter never scan one environment
/// at once), stores the report in the history and returns it. A storage failure is logged;
/// the report is still returned.
pub async fn scan_and_store(
    env: &Environment,
    storage: &Path,
    cancel: &CancellationToken,
) -> Option<Stored> {
    let store = match crate::store::open_env(storage, &env.name).await {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::error!(environment = %env.name, error = %e, "cannot open the environment's storage");
            None
        }
    };
    // The wait for another process's scan of this environment counts against the timeout
    // and ends with the exporter (a SIGTERM does not wait for the CLI's scan).
    let started_at = Utc::now();
    let deadline = Instant::now() + env.timeout;
    let lock = match &store {
        Some(store) => match store.lock(deadline, cancel).await {
            Ok(lock) => lock,
            Err(LockWait::Cancelled(_)) => {
                tracing::warn!(environment = %env.name, "scan cancelled while waiting for the scan lock");
                return None;
            }
            Err(LockWait::TimedOut) => {
                let mut report = Report::failed(lock_timed_out(env));
                report.environment = Some(env.name.clone());
                report.started_at = Some(started_at);
                report.finished_at = Some(Utc::now());
                return Some(store.keep(report, None).await);
            }
        },
        None => None,
    };
    tracing::info!(environment = %env.name, dir = %env.dir.display(), "scan started");
    let Ok((report, plan)) = scan(env, storage, cancel, deadline).await else {
        tracing::warn!(environment = %env.name, "scan cancelled: terraform was interrupted, nothing is stored");
        return None;
    };
    let stored = match &store {
        Some(store) => store.keep(report, plan).await,
        None => Stored {
            report,
            stored: false,
        },
    };
    drop(lock);
    let report = &stored.report;
    let s = &report.summary;
    tracing::info!(
        environment = %env.name,
        status = %report.status,
        reason = report.error.as_ref().map(|e| e.reason.as_str()).unwrap_or(""),
        duration_seconds = report.duration_seconds.unwrap_or_default(),
        create = s.create,
        update = s.update,
        delete = s.delete,
        replace = s.replace,
        outside_terraform = s.outside_terraform,
        "scan finished"
    );
    Some(stored)
}

pub use crate::cancel::Cancelled;

/// Scans `env` now and returns its report (not stored yet; see [`crate::store::EnvStore::keep`]).
/// `deadline` ends the whole scan (the environment's timeout, from before any wait for its
/// lock).
pub async fn scan(
    env: &Environment,
    storage: &Path,
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<(Report, Option<tempfile::NamedTempFile>), Cancelled> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let mut scan = Scan::new(env, cancel);
    let mut report = match scan.run(storage, deadline).await {
        Ok(mut outcome) => {
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
    attribute(&mut report, storage, &env.name).await;
    for entry in report
        .changes
        .iter_mut()
        .filter_map(|c| c.changed_by.as_mut())
        .flatten()
    {
        entry.message = scan.secrets.redact_text(&entry.message);
    }
    if scan.tool.version.is_none() {
        scan.tool.version = report.tool.as_ref().and_then(|t| t.version.clone());
    }
    report.environment = Some(env.name.clone());
    report.tool = Some(scan.tool);
    report.started_at = Some(started_at);
    report.finished_at = Some(Utc::now());
    report.duration_seconds = Some((clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
    Ok((report, scan.served_plan))
}

/// Says who changed the report's guests, from what the attribution poller stored (read off
/// the runtime, and only when a change outside Terraform is a Proxmox guest).
async fn attribute(report: &mut Report, storage: &Path, env: &str) {
    let wanted = report
        .changes
        .iter()
        .any(|c| c.vmid.is_some() && c.outside_terraform);
    if !wanted {
        return;
    }
    let (root, name) = (storage.to_owned(), env.to_owned());
    let started = report.started_at.unwrap_or_else(Utc::now);
    let read = tokio::task::spawn_blocking(move || {
        crate::store::attribution_files::<PollStatus, Entry>(&root, &name, started)
    })
    .await;
    match read {
        Ok(files) => crate::attribution::attach(
            report,
            files.status.as_ref(),
            &files.entries,
            files.last_conform,
            Utc::now(),
        ),
        Err(e) => {
            tracing::warn!(environment = %env, error = %e, "cannot read the attribution journal")
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
