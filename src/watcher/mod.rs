//! The periodic unmanaged-guest check of the running exporter (on shard 0 alone, over
//! every shard's states): every `proxmox.interval` (counted from the end of the last check,
//! also across a restart), stored under `storage.path` and handed to the supervisor for the
//! exporter's state. A reload that changes `[proxmox]` checks again at once; one that
//! removes it stops the checks. The other shards read only their own environments' states,
//! as often, for the guests each manages. The attribution poller (the `poller` submodule)
//! runs beside it on the same settings, on every shard, routing change signals to that
//! shard's environments.

mod entries;
mod poller;
mod signals;

use std::sync::Arc;
use std::time::Duration;

use crate::cancel::CancellationToken;
use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::changes::Changes;
use crate::config::Config;
use crate::gate::Gate;
use crate::state::State;
use crate::store::Storage;
use crate::unmanaged::{Unmanaged, check};

/// The running check and attribution tasks.
pub struct Watcher {
    settings: watch::Sender<Arc<Config>>,
    cancel: CancellationToken,
    handles: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Watcher {
    /// Starts the check and the poller; the check's state pulls take permits of `limit`;
    /// scans ask the poller for fresh reads through `reads`.
    pub fn start(
        state: Arc<State>,
        storage: Storage,
        changes: Changes,
        limit: Arc<Gate>,
        reads: crate::attribution::ReadRequests,
    ) -> Watcher {
        let (settings, rx) = watch::channel(state.config());
        let cancel = CancellationToken::new();
        let check_now = Arc::new(Notify::new());
        let attribution = tokio::spawn(poller::run(
            poller::Poller {
                changes: changes.clone(),
                storage: storage.clone(),
                reads,
                state: state.clone(),
                check_now: check_now.clone(),
            },
            rx.clone(),
            cancel.clone(),
        ));
        let check = tokio::spawn(watch_loop(
            Checker {
                state,
                storage,
                changes,
                limit,
                check_now,
            },
            rx,
            cancel.clone(),
        ));
        Watcher {
            settings,
            cancel,
            handles: std::sync::Mutex::new(vec![check, attribution]),
        }
    }

    /// Takes a reloaded configuration.
    pub fn apply(&self, config: &Config) {
        let _ = self.settings.send(Arc::new(config.clone()));
    }

    /// Stops the tasks, interrupting a running `state pull`.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            let _ = handle.await;
        }
    }
}

/// When the first check is due: one interval after the stored one, at once when there is none.
fn first_due(state: &State, interval: Duration) -> Instant {
    let age = state
        .unmanaged()
        .and_then(|u| u.checked_at)
        .and_then(|t| (Utc::now() - t).to_std().ok());
    match age {
        Some(age) if age < interval => Instant::now() + (interval - age),
        _ => Instant::now(),
    }
}

/// What the loop reads, where it stores, whom it tells.
struct Checker {
    state: Arc<State>,
    storage: Storage,
    changes: Changes,
    /// Terraform processes at once, shared with the scans.
    limit: Arc<Gate>,
    /// A guest no state manages was created or destroyed: check now.
    check_now: Arc<Notify>,
}

async fn watch_loop(
    checker: Checker,
    mut settings: watch::Receiver<Arc<Config>>,
    cancel: CancellationToken,
) {
    let initial = settings.borrow_and_update().clone();
    let mut due = initial
        .proxmox
        .as_ref()
        .map(|p| first_due(&checker.state, p.interval))
        .unwrap_or_else(Instant::now);
    let mut current = initial.proxmox.clone();
    loop {
        let config = settings.borrow_and_update().clone();
        if config.proxmox != current {
            // New settings (or [proxmox] added): check with them at once.
            current = config.proxmox.clone();
            due = Instant::now();
        }
        // Shard 0 alone checks, over every shard's states.
        let checking = config.sharding.checks_unmanaged();
        let Some(proxmox) = config.proxmox.clone() else {
            tokio::select! {
                changed = settings.changed() => if changed.is_err() { return },
                _ = cancel.cancelled() => return,
            }
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = checker.check_now.notified(), if checking => {
                tracing::info!("a guest was created or destroyed outside the states: checking now");
            }
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            _ = cancel.cancelled() => return,
        }
        if !checking {
            // Another shard checks; this one reads its own states for the signals' routing.
            let Ok(read) = crate::unmanaged::managed(&config, &checker.limit, &cancel).await else {
                return;
            };
            match read {
                Ok(managed) => checker.changes.managed(managed).await,
                Err(error) => {
                    tracing::warn!(reason = %error.reason, error = %error.summary, "cannot read which guests the states manage; change signals use what was known");
                }
            }
            due = Instant::now() + proxmox.interval;
            continue;
        }
        tracing::debug!("unmanaged-guest check started");
        let fleet = config.with_every_shard();
        let Ok(result) = check(&fleet, &proxmox, &checker.limit, &cancel).await else {
            return;
        };
        let previous = checker.state.unmanaged();
        let result = match result {
            Ok(mut result) => {
                crate::unmanaged::name_creators(&mut result, &proxmox, &config.storage.path).await;
                log_found(previous.as_deref(), &result);
                result
            }
            Err(error) => {
                tracing::warn!(reason = %error.reason, error = %error.summary, "unmanaged-guest check failed");
                Unmanaged::failed(error, previous.as_deref())
            }
        };
        let result = Arc::new(result);
        if let Err(e) = checker.storage.save_unmanaged(result.clone()).await {
            tracing::error!(error = %e, "cannot store the unmanaged-guest check; it is still shown");
        }
        let result = Arc::try_unwrap(result).unwrap_or_else(|shared| (*shared).clone());
        checker.changes.unmanaged_finished(result).await;
        due = Instant::now() + proxmox.interval;
    }
}

/// Logs the check, and each guest that was not unmanaged at the last check.
fn log_found(previous: Option<&Unmanaged>, result: &Unmanaged) {
    let known: Vec<u32> = previous
        .map(|p| p.guests.iter().map(|g| g.vmid).collect())
        .unwrap_or_default();
    for g in result.guests.iter().filter(|g| !known.contains(&g.vmid)) {
        tracing::warn!(
            vmid = g.vmid,
            name = g.name.as_deref().unwrap_or(""),
            node = %g.node,
            kind = g.kind.as_str(),
            "guest created outside Terraform: no environment's state manages it"
        );
    }
    tracing::info!(
        inventory = result.inventory,
        unmanaged = result.guests.len(),
        ignored = result.ignored,
        "unmanaged-guest check finished"
    );
}
