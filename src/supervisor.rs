//! The one task that changes the running exporter: it takes [`Change`]s from a bounded
//! queue, one at a time, and applies each whole in a fixed order: a finished scan is
//! committed to the store, then shown in the state; a reload changes the state, then the
//! scheduler, then the unmanaged-guest watcher. It is the only writer of [`State`]. What it must read from disk (the
//! configuration, the latest report of a new environment) is read off the runtime before
//! anything is applied, so readers of the state never wait for a file.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::cancel::CancellationToken;
use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::changes::Change;
use crate::config::Config;
use crate::report::Status;
use crate::scan::Finished;
use crate::scheduler::Scheduler;
use crate::state::State;
use crate::store::Storage;
use crate::watcher::Watcher;
use crate::webconfig::WebConfig;

/// Reads the configuration and its web configuration (blocking: called off the runtime);
/// `Err` is the message for the log and the 400.
pub type Loader =
    Arc<dyn Fn(&std::path::Path) -> Result<(Config, WebConfig), String> + Send + Sync>;

/// What the supervisor changes, and how it reads a new configuration.
pub struct Supervisor {
    pub state: Arc<State>,
    pub storage: Storage,
    pub scheduler: Arc<Scheduler>,
    pub watcher: Arc<Watcher>,
    /// TLS and basic authentication, read per connection by the HTTP layer.
    pub web: Arc<RwLock<Arc<WebConfig>>>,
    pub config_path: PathBuf,
    pub load: Loader,
}

impl Supervisor {
    /// Applies changes until `stop` is cancelled or every sender is gone.
    pub async fn run(self, mut queue: mpsc::Receiver<Change>, stop: CancellationToken) {
        loop {
            let change = tokio::select! {
                change = queue.recv() => match change {
                    Some(change) => change,
                    None => return,
                },
                _ = stop.cancelled() => return,
            };
            match change {
                Change::Reload(answer) => {
                    let _ = answer.send(self.reload().await);
                }
                Change::Rediscover => self.rediscover().await,
                Change::ScanFinished(finished, applied) => {
                    self.scan_finished(*finished, applied).await;
                }
                Change::UnmanagedFinished(result, applied) => {
                    self.state.record_unmanaged(result);
                    let _ = applied.send(());
                }
                Change::Managed(managed, applied) => {
                    self.state.record_managed(managed);
                    let _ = applied.send(());
                }
                Change::Running {
                    environment,
                    started,
                } => {
                    if let Some(kind) = started {
                        self.state.metrics.count_trigger(&environment, kind);
                    }
                    self.state.set_running(&environment, started.is_some())
                }
                Change::NextScan {
                    environment,
                    due,
                    period_seconds,
                } => self.state.set_next_scan(&environment, due, period_seconds),
                Change::Attribution { status, new_gaps } => {
                    self.state.record_attribution(status.as_deref(), new_gaps)
                }
                Change::Signals { found, due } => {
                    self.state.metrics.count_signals(&found);
                    for (environment, batch) in due {
                        self.scheduler.signal(&environment, batch);
                    }
                }
            }
        }
    }

    /// Commits a finished scan, shows it, releases its environment's scan lock, answers, and
    /// then prunes the history.
    async fn scan_finished(&self, finished: Finished, applied: oneshot::Sender<()>) {
        let Finished { mut scanned, lock } = finished;
        let guests = scanned.guests.take();
        let environment = scanned.environment.clone();
        let stored = self.storage.commit(scanned).await;
        crate::scan::committed(&stored);
        if let Some(guests) = guests.filter(|_| stored.report.status != Status::Error) {
            self.state.set_managed(&environment, guests);
        }
        self.state.record(stored);
        drop(lock);
        let _ = applied.send(());
        let retention = self.state.config().storage.retention;
        self.storage.prune(retention, Utc::now()).await;
    }

    /// Reads the file again; applies it only when the whole of it is valid and it keeps the
    /// web protections in force.
    async fn reload(&self) -> Result<(), String> {
        let (config, web) = self.load_checked().await?;
        self.apply(config, web).await;
        tracing::info!(file = %self.config_path.display(), "configuration reloaded");
        Ok(())
    }

    /// Looks at `[discovery]`'s directories again: when the environments found (names and
    /// directories) differ from the running ones, the file is applied as by a reload.
    async fn rediscover(&self) {
        let Ok((config, web)) = self.load_checked().await else {
            return;
        };
        // The other shards' too: shard 0's unmanaged-guest check reads their states.
        let dirs = |c: &Config| -> Vec<(String, PathBuf)> {
            c.environments
                .values()
                .chain(c.elsewhere.values())
                .map(|e| (e.name.clone(), e.dir.clone()))
                .collect()
        };
        let (now, running) = (dirs(&config), dirs(&self.state.config()));
        if now == running {
            return;
        }
        let added: Vec<&str> = now
            .iter()
            .filter(|e| !running.contains(e))
            .map(|(name, _)| name.as_str())
            .collect();
        let removed: Vec<&str> = running
            .iter()
            .filter(|e| !now.contains(e))
            .map(|(name, _)| name.as_str())
            .collect();
        tracing::info!(added = %added.join(","), removed = %removed.join(","), "discovery: the environments changed; configuration reloaded");
        self.apply(config, web).await;
    }

    /// The file read again and checked, or why it cannot be applied (said in the log).
    async fn load_checked(&self) -> Result<(Config, WebConfig), String> {
        let loaded = {
            let (load, path) = (self.load.clone(), self.config_path.clone());
            tokio::task::spawn_blocking(move || load(&path))
                .await
                .map_err(|e| format!("reading the configuration failed: {e}"))
                .and_then(|r| r)
        };
        let running_web = self.web.read().unwrap_or_else(|p| p.into_inner()).clone();
        let checked = loaded.and_then(|(config, web)| match web.downgrade_from(&running_web) {
            Some(refused) => Err(refused),
            None => Ok((config, web)),
        });
        checked.map_err(|e| {
            tracing::error!(error = %e, "reload failed: the running configuration stays");
            e
        })
    }

    /// Puts a loaded configuration in force: the state, the web protections, the
    /// scheduler, the watcher.
    async fn apply(&self, mut config: Config, web: WebConfig) {
        let old = self.state.config();
        if config.web.listen_address != old.web.listen_address
            || config.storage.path != old.storage.path
        {
            tracing::warn!(
                "web.listen_address and storage.path changes take effect at the next start"
            );
            // Until then everything goes on with the running ones: never half.
            config.web.listen_address = old.web.listen_address;
            config.storage.path = old.storage.path.clone();
        }
        let mut added = Vec::new();
        for name in self.state.added_in(&config) {
            let latest = self.storage.latest(&name).await;
            added.push((name, latest));
        }
        self.state
            .show_web(config.web.external_url.as_deref(), web.tls.is_some());
        self.state.show_shard(config.sharding);
        *self.web.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(web);
        // The state first, so that the scheduler's first word on a new environment (its
        // next scan) has a place to land; then the watcher.
        self.state.set_config(config.clone(), added);
        for planned in self.scheduler.apply(&config) {
            planned.show(&self.state);
        }
        self.watcher.apply(&config);
    }
}
