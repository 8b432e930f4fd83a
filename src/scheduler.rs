//! When each environment is scanned: one task per environment (so never two scans of one
//! environment at once), the shared [`Gate`] of concurrent terraform (asked-for scans first,
//! then the longest due), triggers that start a scan now or join the running one, and
//! cancellation for reload and shutdown.
//!
//! At start-up every environment due at once (`run_on_start`, or overdue after a restart)
//! queues at the gate: never more than `max_concurrent_scans` terraform run, the environment
//! never scanned or scanned longest ago first. Each next scan is due one interval (plus
//! jitter) after the environment's own scan ended, so the first round's spread carries on
//! (the `timing` submodule computes when).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::cancel::CancellationToken;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::changes::Changes;
use crate::config::{Config, Environment};
use crate::gate::{Gate, Priority};
use crate::report::{Trigger, TriggerKind};
use crate::scan::Finished;
use crate::signals::Batch;
use crate::state::State;

/// Runs one scan; the real one is [`crate::scan::scan_locked`], tests give their own.
pub trait Scanner: Send + Sync + 'static {
    fn scan(
        &self,
        env: Environment,
        trigger: Trigger,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Option<Finished>> + Send>>;
}

/// Scans with terraform, in the environments' directories under `storage`, asking the
/// attribution poller for fresh reads through `reads`.
#[derive(Debug, Clone)]
pub struct TerraformScanner {
    pub storage: crate::store::Storage,
    pub reads: crate::attribution::Reads,
}

impl Scanner for TerraformScanner {
    fn scan(
        &self,
        env: Environment,
        trigger: Trigger,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Option<Finished>> + Send>> {
        let (storage, reads) = (self.storage.clone(), self.reads.clone());
        Box::pin(async move {
            crate::scan::scan_locked(&env, &storage, Some(&reads), trigger, &cancel).await
        })
    }
}

/// When a new environment's first scan is due, as the state shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub environment: String,
    pub due: DateTime<Utc>,
    pub period_seconds: f64,
}

impl Planned {
    /// Shows it in the state (by the supervisor, or at start before it runs).
    pub fn show(&self, state: &State) {
        state.set_next_scan(&self.environment, Some(self.due), self.period_seconds);
    }
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// A scan starts now (or as soon as the concurrency limit allows).
    Started,
    /// A scan of the environment is already queued or running: the trigger joins it.
    Joined,
    /// A scan is running: one more follows it (change signals it may have missed).
    Follows,
    UnknownEnvironment,
}

struct EnvTask {
    settings: watch::Sender<Environment>,
    trigger: Arc<Notify>,
    slot: Arc<Mutex<Slot>>,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// What an environment's task is doing and what it was asked.
#[derive(Debug, Default)]
struct Slot {
    /// Set from the moment a scan is decided until it ends.
    busy: bool,
    /// Its terraform runs (the plan may already have read the guests).
    running: bool,
    /// A trigger asked for a scan that has not started yet.
    requested: bool,
    /// Change signals for the scan that starts next: a queued scan absorbs new ones; one
    /// that arrives while a scan runs is kept for one scan after it (the running plan may
    /// have read the guest before the change).
    signals: Option<Batch>,
}

/// The per-environment tasks.
pub struct Scheduler {
    state: Arc<State>,
    /// Where finished scans go (the supervisor).
    changes: Changes,
    scanner: Arc<dyn Scanner>,
    limit: Arc<Gate>,
    limit_size: usize,
    tasks: Mutex<BTreeMap<String, EnvTask>>,
    shutdown: CancellationToken,
}

impl Scheduler {
    pub fn new(
        state: Arc<State>,
        changes: Changes,
        scanner: Arc<dyn Scanner>,
        max_concurrent: usize,
    ) -> Scheduler {
        Scheduler {
            state,
            changes,
            scanner,
            limit: Gate::new(max_concurrent),
            limit_size: max_concurrent,
            tasks: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// A scheduler whose scans wait for [`Scheduler::resume`] (timers run meanwhile), so
    /// that the processes of a dead exporter are gone before a new scan starts.
    pub fn paused(
        state: Arc<State>,
        changes: Changes,
        scanner: Arc<dyn Scanner>,
        max_concurrent: usize,
    ) -> Scheduler {
        let mut scheduler = Scheduler::new(state, changes, scanner, max_concurrent);
        scheduler.limit = Gate::new(0);
        scheduler
    }

    /// The limit of terraform processes at once (`scheduler.max_concurrent_scans`): every
    /// other terraform the exporter starts (the unmanaged check's state pulls) takes a
    /// permit of it too.
    pub fn terraform_limit(&self) -> Arc<Gate> {
        self.limit.clone()
    }

    /// Lets the scans of a [`Scheduler::paused`] scheduler run.
    pub fn resume(&self) {
        self.limit.add(self.limit_size);
    }

    /// Starts, updates or stops environment tasks to match `config`. An unchanged
    /// environment keeps its timer; a changed one starts a new period; a removed one is
    /// cancelled (its running scan interrupted). Returns when each new environment is first
    /// scanned, for the state to show before the task's own word arrives.
    pub fn apply(&self, config: &Config) -> Vec<Planned> {
        if config.max_concurrent_scans != self.limit_size {
            tracing::warn!(
                running = self.limit_size,
                configured = config.max_concurrent_scans,
                "scheduler.max_concurrent_scans changes take effect at the next start"
            );
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let removed: Vec<String> = tasks
            .keys()
            .filter(|n| !config.environments.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            if let Some(task) = tasks.remove(&name) {
                task.cancel.cancel();
            }
        }
        let mut planned = Vec::new();
        let now = Utc::now();
        for (name, env) in &config.environments {
            match tasks.get(name) {
                Some(task) => {
                    let changed = *task.settings.borrow() != *env;
                    if changed {
                        let _ = task.settings.send(env.clone());
                    }
                }
                None => {
                    let last = self
                        .state
                        .view(name)
                        .and_then(|v| v.latest.as_ref().and_then(|r| r.finished_at()));
                    let delay = first_delay(env, last, now);
                    let first = Timer {
                        since: first_due_since(env, last, now, delay),
                        ..Timer::after(delay)
                    };
                    planned.push(Planned {
                        environment: name.clone(),
                        due: first.due,
                        period_seconds: env.schedule.period().as_secs_f64(),
                    });
                    let task = self.spawn(env.clone(), first);
                    tasks.insert(name.clone(), task);
                }
            }
        }
        planned
    }

    fn spawn(&self, env: Environment, first: Timer) -> EnvTask {
        let (settings, rx) = watch::channel(env.clone());
        let trigger = Arc::new(Notify::new());
        let slot = Arc::new(Mutex::new(Slot::default()));
        let cancel = self.shutdown.child_token();
        let handle = tokio::spawn(env_loop(Loop {
            changes: self.changes.clone(),
            scanner: self.scanner.clone(),
            limit: self.limit.clone(),
            name: env.name.clone(),
            first,
            settings: rx,
            trigger: trigger.clone(),
            slot: slot.clone(),
            cancel: cancel.clone(),
        }));
        EnvTask {
            settings,
            trigger,
            slot,
            cancel,
            handle,
        }
    }

    /// Asks for a scan of `name` now.
    pub fn trigger(&self, name: &str) -> Triggered {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(task) = tasks.get(name) else {
            return Triggered::UnknownEnvironment;
        };
        let mut slot = task.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.busy {
            return Triggered::Joined;
        }
        // Marked here, under the lock, so that a second trigger joins this one.
        slot.busy = true;
        slot.requested = true;
        task.trigger.notify_one();
        Triggered::Started
    }

    /// Asks for a scan of `name` for Proxmox's change signals: now when none is queued or
    /// running; a queued scan takes them; a running one is followed by one more.
    pub fn signal(&self, name: &str, batch: Batch) -> Triggered {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(task) = tasks.get(name) else {
            return Triggered::UnknownEnvironment;
        };
        let mut slot = task.slot.lock().unwrap_or_else(|p| p.into_inner());
        match slot.signals.as_mut() {
            Some(kept) => kept.absorb(batch),
            None => slot.signals = Some(batch),
        }
        let triggered = match (slot.busy, slot.running) {
            (false, _) => {
                slot.busy = true;
                slot.requested = true;
                task.trigger.notify_one();
                Triggered::Started
            }
            (true, false) => Triggered::Joined,
            (true, true) => Triggered::Follows,
        };
        tracing::info!(environment = %name, signals = slot.signals.as_ref().map_or(0, |b| b.total), outcome = ?triggered, "Proxmox recorded a change of a guest this environment manages");
        triggered
    }

    /// Stops scheduling and interrupts running scans; waits until every task has ended
    /// (each running terraform gets its interrupt sequence, bounded by its kill_grace).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let handles: Vec<JoinHandle<()>> = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *tasks)
                .into_values()
                .map(|t| t.handle)
                .collect()
        };
        for handle in handles {
            let _ = handle.await;
        }
    }
}

struct Loop {
    changes: Changes,
    scanner: Arc<dyn Scanner>,
    limit: Arc<Gate>,
    name: String,
    /// The first scan's timer, as the scheduler's apply showed it.
    first: Timer,
    settings: watch::Receiver<Environment>,
    trigger: Arc<Notify>,
    slot: Arc<Mutex<Slot>>,
    cancel: CancellationToken,
}

impl Loop {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The timer came due: a scan is decided (unless a trigger decided one first).
    fn decide(&self) {
        self.slot().busy = true;
    }

    /// The scan starts: it takes the signals waiting so far, and the request is served.
    fn start(&self, kind: TriggerKind) -> Trigger {
        let mut slot = self.slot();
        slot.running = true;
        slot.requested = false;
        match slot.signals.take() {
            Some(batch) => Trigger::proxmox(batch.signals, batch.total),
            None => Trigger::of(kind),
        }
    }

    /// The scan ended: true when signals came while it ran (one more scan now).
    fn end(&self) -> bool {
        let mut slot = self.slot();
        slot.running = false;
        let again = slot.signals.is_some();
        slot.busy = again;
        again
    }
}

async fn env_loop(mut l: Loop) {
    let mut timer = l.first;
    // The first timer of an environment with run_on_start is its start scan.
    let mut on_start = l.settings.borrow().run_on_start;
    // Signals came during the last scan: the next one starts at once.
    let mut follow = false;
    // The scheduler's apply already told the state of the first timer.
    let mut told = true;
    loop {
        let env = l.settings.borrow_and_update().clone();
        if !told {
            let period = env.schedule.period().as_secs_f64();
            l.changes.next_scan(&l.name, Some(timer.due), period).await;
            told = true;
        }
        let kind = tokio::select! {
            _ = std::future::ready(()), if follow => TriggerKind::Proxmox,
            _ = tokio::time::sleep_until(timer.deadline) => {
                l.decide();
                if on_start { TriggerKind::Start } else { TriggerKind::Schedule }
            }
            _ = l.trigger.notified() => {
                // A permit left by a trigger that a timer's scan already served: the
                // timer goes on as it was.
                if !l.slot().requested {
                    continue;
                }
                TriggerKind::Manual
            }
            changed = l.settings.changed() => {
                if changed.is_err() {
                    return;
                }
                on_start = false;
                let env = l.settings.borrow().clone();
                timer = Timer::after(next_delay(&env, Utc::now()));
                told = false;
                tracing::info!(environment = %l.name, schedule = %env.schedule.describe(), "settings changed: new schedule");
                continue;
            }
            _ = l.cancel.cancelled() => return,
        };
        on_start = false;
        let priority = match kind {
            TriggerKind::Manual | TriggerKind::Proxmox => Priority::asked(),
            TriggerKind::Start | TriggerKind::Schedule => Priority::due(timer.since),
        };
        let permit = tokio::select! {
            permit = l.limit.acquire(priority) => permit,
            _ = l.cancel.cancelled() => return,
        };
        let trigger = l.start(kind);
        l.changes.running(&l.name, Some(trigger.kind)).await;
        // In a task of its own: a scan that panics ends as a logged error, and the
        // environment goes on being scheduled instead of staying "in progress" for ever.
        let scan = tokio::spawn(l.scanner.scan(env.clone(), trigger, l.cancel.child_token()));
        let result = scan.await.unwrap_or_else(|e| {
            tracing::error!(environment = %l.name, error = %e, "the scan task failed; the next scan runs as scheduled");
            None
        });
        drop(permit);
        // Committed and in the state before the environment stops showing as running.
        let cancelled = result.is_none() && l.cancel.is_cancelled();
        if let Some(finished) = result {
            l.changes.scan_finished(finished).await;
        }
        l.changes.running(&l.name, None).await;
        follow = l.end();
        if cancelled {
            return;
        }
        timer = Timer::after(next_delay(&env, Utc::now()));
        told = false;
    }
}

mod timing;

use timing::Timer;
pub use timing::{first_delay, first_due_since, next_delay};

#[cfg(test)]
mod tests;
