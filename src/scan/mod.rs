//! One scan of one environment: init when needed, plan, show when the plan has changes,
//! understand the result and make the report. Never anything that writes infrastructure.

use std::path::Path;

use chrono::Utc;
use tokio::time::Instant;

use crate::config::Environment;
use crate::report::{ErrorReason, Report, ScanError};
use crate::store::EnvStore;
use tokio_util::sync::CancellationToken;

mod files;
mod steps;

use steps::Scan;

/// Scans `env` under its scan lock (a CLI scan and the exporter never scan one environment
/// at once), stores the report in the history and returns it. A storage failure is logged;
/// the report is still returned.
pub async fn scan_and_store(
    env: &Environment,
    storage: &Path,
    cancel: &CancellationToken,
) -> Option<Stored> {
    let opened = {
        let (storage, name) = (storage.to_owned(), env.name.clone());
        tokio::task::spawn_blocking(move || EnvStore::open(&storage, &name)).await
    };
    let opened = opened
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let store = match opened {
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
        Some(store) => match wait_for_lock(env, store, deadline, cancel).await {
            Ok(lock) => lock,
            Err(LockWait::Cancelled) => {
                tracing::warn!(environment = %env.name, "scan cancelled while waiting for the scan lock");
                return None;
            }
            Err(LockWait::TimedOut(error)) => {
                let mut report = Report::failed(error);
                report.environment = Some(env.name.clone());
                report.started_at = Some(started_at);
                report.finished_at = Some(Utc::now());
                return Some(store_report(env, store, report, None).await);
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
        Some(store) => store_report(env, store, report, plan).await,
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

/// Gives `report` its id and writes it (and the served plan) to the history, off the
/// runtime's threads. A storage failure is logged; the report is still returned.
async fn store_report(
    env: &Environment,
    store: &EnvStore,
    report: Report,
    plan: Option<tempfile::NamedTempFile>,
) -> Stored {
    let (name, store) = (env.name.clone(), store.clone());
    let id_only = report.id.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut report = report;
        report.id = Some(store.new_id(&name, &report));
        if let Err(e) = store.save_plan(plan) {
            tracing::error!(environment = %name, error = %e, "cannot store the plan for /detail/<env>/plan");
        }
        let stored = match store.save(&report) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(environment = %name, error = %e, "cannot store the report; it is still shown");
                false
            }
        };
        Stored { report, stored }
    })
    .await;
    match written {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(environment = %env.name, error = %e, "storing the report failed");
            let mut report = Report::failed(ScanError {
                reason: ErrorReason::Terraform,
                summary: format!("the report could not be stored: {e}"),
                detail: String::new(),
            });
            report.id = id_only;
            report.environment = Some(env.name.clone());
            Stored {
                report,
                stored: false,
            }
        }
    }
}

/// Why the wait for a scan lock ended without it.
enum LockWait {
    Cancelled,
    TimedOut(ScanError),
}

/// Waits for the environment's scan lock (held by another process's scan of it) until
/// `deadline`, polling so that `cancel` ends the wait. `Ok(None)`: the lock file cannot be
/// used, and the scan goes on without it (logged).
async fn wait_for_lock(
    env: &Environment,
    store: &EnvStore,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Option<crate::store::ScanLock>, LockWait> {
    let mut said = false;
    loop {
        let attempt = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.try_lock()).await
        };
        match attempt {
            Ok(Ok(Some(lock))) => return Ok(Some(lock)),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(environment = %env.name, error = %e, "cannot take the scan lock; going on without it");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(environment = %env.name, error = %e, "cannot take the scan lock; going on without it");
                return Ok(None);
            }
        }
        if !said {
            tracing::info!(environment = %env.name, "another scan of this environment is running: waiting for it");
            said = true;
        }
        if Instant::now() >= deadline {
            return Err(LockWait::TimedOut(ScanError {
                reason: ErrorReason::Timeout,
                summary: format!(
                    "another scan of {} held its lock for longer than the timeout of {}",
                    env.name,
                    crate::schedule::human(env.timeout)
                ),
                detail: String::new(),
            }));
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            _ = cancel.cancelled() => return Err(LockWait::Cancelled),
        }
    }
}

/// A finished scan and whether its report reached the history.
#[derive(Debug, Clone)]
pub struct Stored {
    pub report: Report,
    pub stored: bool,
}

/// A scan stopped by its cancellation token (shutdown, environment removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// Scans `env` now and returns its report (not stored yet; see [`EnvStore::save`]).
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
        Err(error) => Report::failed(error),
    };
    if scan.cancelled {
        return Err(Cancelled);
    }
    if let Some(error) = report.error.as_mut() {
        error.summary = scan.secrets.redact_text(&error.summary);
        error.detail = scan.secrets.redact_text(&error.detail);
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

/// Why the state of an environment could not be pulled.
#[derive(Debug, Clone, PartialEq)]
pub enum PullError {
    /// Stopped by its cancellation token (shutdown).
    Cancelled,
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
    let _lock = match EnvStore::open(storage, &env.name) {
        Ok(store) => match wait_for_lock(env, &store, deadline, cancel).await {
            Ok(lock) => lock,
            Err(LockWait::Cancelled) => return Err(PullError::Cancelled),
            Err(LockWait::TimedOut(error)) => return Err(PullError::Failed(error)),
        },
        // The pull reports the storage problem itself.
        Err(_) => None,
    };
    let mut pull = Scan::new(env, cancel);
    let result = pull.pull(storage, deadline).await;
    if pull.cancelled {
        return Err(PullError::Cancelled);
    }
    result.map_err(|mut error| {
        error.summary = pull.secrets.redact_text(&error.summary);
        error.detail = pull.secrets.redact_text(&error.detail);
        PullError::Failed(error)
    })
}
