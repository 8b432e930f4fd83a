//! The running exporter's state, in memory only: the configuration, what is known of each
//! environment (latest report, schedule), the last unmanaged-guest check and the metrics.
//! Readers (HTTP, the page, the scheduler's first delay) take cheap snapshots: an `Arc` or a
//! small clone, under a lock held for nothing else. It is written only by the
//! [`crate::supervisor`]: the configuration, committed scans, checks, and what the scheduler
//! and the attribution poller say (running, next scan, poll status) arrive there as
//! [`crate::changes::Change`]s. Nothing here touches a file: whatever must be read from disk
//! is read before a change is applied.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::report::{Report, Status};
use crate::store::{Restored, Stored};
use crate::unmanaged::Unmanaged;

/// Changes (and ignored changes) of the latest scan kept in memory per environment, at
/// least: what the HTML page shows. The whole report stays on disk and is served from
/// there, so that a plan of 200,000 changes does not live in the exporter between scans.
pub const KEPT_CHANGES: usize = 200;

/// What is known of one environment.
#[derive(Debug, Clone, Default)]
pub struct EnvView {
    /// The latest report, its `changes` and `ignored` cut to the first [`KEPT_CHANGES`]
    /// (or `metrics.max_resource_series`, when larger).
    pub latest: Option<Arc<Report>>,
    /// How many changes and ignored changes the latest report has in full.
    pub changes_total: usize,
    pub ignored_total: usize,
    /// The latest report is in the history (else only what is kept here exists).
    pub stored: bool,
    pub last_success: Option<DateTime<Utc>>,
    pub next_scan: Option<DateTime<Utc>>,
    /// A scan is running now.
    pub running: bool,
}

impl EnvView {
    /// Takes `report` as the latest, keeping only its first changes in memory.
    fn keep(&mut self, mut report: Report, stored: bool, max_series: usize) {
        let keep = KEPT_CHANGES.max(max_series);
        self.changes_total = report.changes.len();
        self.ignored_total = report.ignored.len();
        report.changes.truncate(keep);
        report.changes.shrink_to_fit();
        report.ignored.truncate(keep);
        report.ignored.shrink_to_fit();
        self.stored = stored;
        self.latest = Some(Arc::new(report));
    }
}

/// Written by the supervisor; read by the scheduler and the HTTP handlers.
#[derive(Debug)]
pub struct State {
    config: RwLock<Arc<Config>>,
    envs: RwLock<BTreeMap<String, EnvView>>,
    /// The last unmanaged-guest check, when `[proxmox]` is configured.
    unmanaged: RwLock<Option<Arc<Unmanaged>>>,
    /// The vmids each environment manages, from its last state pull or read plan: which
    /// environment a change signal is for.
    managed: RwLock<Arc<Managed>>,
    pub metrics: Metrics,
}

/// The vmids of the guests each environment manages.
pub type Managed = BTreeMap<String, std::collections::BTreeSet<u32>>;

/// Reads through a lock that a panicking writer may have poisoned (the data stays whole:
/// every write replaces a value).
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// The state at start: every configured environment restored from its latest stored
    /// scan (read by [`crate::store::Storage::load`]), before any new scan ends.
    pub fn new(
        config: Config,
        mut restored: BTreeMap<String, Restored>,
        unmanaged: Option<Unmanaged>,
    ) -> State {
        let metrics = Metrics::new();
        let mut envs = BTreeMap::new();
        let today = chrono::Local::now().date_naive();
        for (name, env) in &config.environments {
            metrics.set_expired_rules(name, crate::ignore::expired(&env.ignore, today));
            let Restored {
                latest,
                last_success,
            } = restored.remove(name).unwrap_or_default();
            let mut view = EnvView {
                last_success,
                ..EnvView::default()
            };
            if let Some(report) = latest {
                metrics.show_report(&report, last_success, series_limits(&config));
                tracing::info!(environment = %name, status = %report.status, id = report.id().unwrap_or(""), "restored the latest stored scan");
                view.keep(report, true, config.max_resource_series);
            }
            envs.insert(name.clone(), view);
        }
        let unmanaged = unmanaged
            .filter(|_| config.proxmox.is_some())
            .map(|stored| {
                metrics.show_unmanaged(Some(&stored), config.max_resource_series);
                tracing::info!(
                    guests = stored.guests.len(),
                    failed = stored.error.is_some(),
                    "restored the last unmanaged-guest check"
                );
                Arc::new(stored)
            });
        let managed = unmanaged
            .as_ref()
            .map(|u| u.managed.clone())
            .unwrap_or_default();
        State {
            config: RwLock::new(Arc::new(config)),
            envs: RwLock::new(envs),
            unmanaged: RwLock::new(unmanaged),
            managed: RwLock::new(Arc::new(managed)),
            metrics,
        }
    }

    pub fn config(&self) -> Arc<Config> {
        read(&self.config).clone()
    }

    /// Every environment's view, in name order.
    pub fn views(&self) -> BTreeMap<String, EnvView> {
        read(&self.envs).clone()
    }

    pub fn view(&self, name: &str) -> Option<EnvView> {
        read(&self.envs).get(name).cloned()
    }

    /// The last unmanaged-guest check, if one ran (or was restored).
    pub fn unmanaged(&self) -> Option<Arc<Unmanaged>> {
        read(&self.unmanaged).clone()
    }

    /// The environments of `config` that the state does not know yet.
    pub fn added_in(&self, config: &Config) -> Vec<String> {
        let envs = read(&self.envs);
        config
            .environments
            .keys()
            .filter(|n| !envs.contains_key(*n))
            .cloned()
            .collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut EnvView)) {
        if let Some(view) = write(&self.envs).get_mut(name) {
            f(view);
        }
    }

    /// Takes a new configuration: removed environments and their series disappear, new
    /// ones appear with their latest stored report from `added` (read beforehand).
    pub fn set_config(&self, config: Config, added: Vec<(String, Option<Report>)>) {
        {
            let mut envs = write(&self.envs);
            envs.retain(|name, _| {
                let kept = config.environments.contains_key(name);
                if !kept {
                    self.metrics.forget(name);
                    tracing::info!(environment = %name, "environment removed from the configuration");
                }
                kept
            });
            let today = chrono::Local::now().date_naive();
            for (name, env) in &config.environments {
                self.metrics
                    .set_expired_rules(name, crate::ignore::expired(&env.ignore, today));
            }
            for (name, latest) in added {
                if !config.environments.contains_key(&name) || envs.contains_key(&name) {
                    continue;
                }
                let mut view = EnvView::default();
                if let Some(report) = latest {
                    self.metrics
                        .show_report(&report, None, series_limits(&config));
                    view.keep(report, true, config.max_resource_series);
                }
                envs.insert(name, view);
            }
        }
        if config.proxmox.is_none() && write(&self.unmanaged).take().is_some() {
            self.metrics.show_unmanaged(None, 0);
            tracing::info!(
                "[proxmox] removed from the configuration: no more unmanaged-guest checks"
            );
        }
        *write(&self.config) = Arc::new(config);
    }

    /// Takes a finished unmanaged-guest check: state and metrics.
    pub fn record_unmanaged(&self, result: Unmanaged) {
        let config = self.config();
        if config.proxmox.is_none() {
            // A check that ended after a reload removed [proxmox].
            return;
        }
        if result.error.is_none() {
            self.record_managed(result.managed.clone());
        }
        let mut current = write(&self.unmanaged);
        self.metrics
            .show_unmanaged(Some(&result), config.max_resource_series);
        *current = Some(Arc::new(result));
    }

    /// Takes the guests the states of environments manage (this replica's only).
    pub fn record_managed(&self, found: Managed) {
        let config = self.config();
        let mut managed = write(&self.managed);
        let mut map = (**managed).clone();
        map.extend(found);
        map.retain(|e, _| config.environments.contains_key(e));
        *managed = Arc::new(map);
    }

    /// The vmids each environment manages, as last known.
    pub fn managed(&self) -> Arc<Managed> {
        read(&self.managed).clone()
    }

    /// Takes the guests a scan's plan of `environment` holds.
    pub fn set_managed(&self, environment: &str, vmids: std::collections::BTreeSet<u32>) {
        let mut managed = write(&self.managed);
        if managed.get(environment) == Some(&vmids) {
            return;
        }
        let mut map = (**managed).clone();
        map.insert(environment.to_owned(), vmids);
        *managed = Arc::new(map);
    }

    /// Shows this replica's shard.
    pub fn show_shard(&self, shard: crate::shard::Shard) {
        self.metrics.show_shard(shard);
    }

    /// Says how people reach the exporter (the base of alert links).
    pub fn show_web(&self, external_url: Option<&str>, tls: bool) {
        self.metrics.show_web(external_url, tls);
    }

    /// Takes an attribution poll (`None`: attribution is off): metrics only, the scans read
    /// the stored status.
    pub fn record_attribution(
        &self,
        status: Option<&crate::attribution::PollStatus>,
        new_gaps: u64,
    ) {
        self.metrics.show_attribution(status, new_gaps);
    }

    pub fn set_next_scan(&self, name: &str, next: Option<DateTime<Utc>>, interval_seconds: f64) {
        self.update(name, |v| {
            v.next_scan = next;
            self.metrics.set_schedule(name, next, interval_seconds);
        });
    }

    pub fn set_running(&self, name: &str, running: bool) {
        self.update(name, |v| {
            v.running = running;
            self.metrics.set_in_progress(name, running);
        });
    }

    /// Takes a finished scan: state and metrics (the history's index is the storage's).
    pub fn record(&self, stored: Stored) {
        let Stored { report, stored } = stored;
        let Some(name) = report.environment().map(str::to_owned) else {
            return;
        };
        if !stored {
            self.metrics.count_storage_error(&name);
        }
        let config = self.config();
        let max_series = config.max_resource_series;
        let expired = config
            .environments
            .get(&name)
            .map(|e| crate::ignore::expired(&e.ignore, chrono::Local::now().date_naive()))
            .unwrap_or_default();
        self.update(&name, |v| {
            if report.status != Status::Error {
                v.last_success = report.finished_at();
            }
            self.metrics
                .show_report(&report, v.last_success, series_limits(&config));
            self.metrics.count_scan(&name, report.status);
            self.metrics.set_expired_rules(&name, expired);
            v.keep(report, stored, max_series);
        });
    }
}

/// The series limits of `config`.
fn series_limits(config: &Config) -> crate::metrics::SeriesLimits {
    crate::metrics::SeriesLimits {
        per_environment: config.max_resource_series,
        total: config.max_resource_series_total,
    }
}
