//! When each environment is scanned: one task per environment (so never two scans of one
//! environment at once), a shared limit of concurrent scans, triggers that start a scan now
//! or join the running one, and cancellation for reload and shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use rand::Rng;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::changes::Changes;
use crate::config::{Config, Environment};
use crate::scan::Stored;
use crate::schedule::Schedule;
use crate::state::State;

/// Runs one scan; the real one is [`crate::scan::scan_and_store`], tests give their own.
pub trait Scanner: Send + Sync + 'static {
    fn scan(
        &self,
        env: Environment,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Option<Stored>> + Send>>;
}

/// Scans with terraform, storing reports under `storage`.
#[derive(Debug, Clone)]
pub struct TerraformScanner {
    pub storage: std::path::PathBuf,
}

impl Scanner for TerraformScanner {
    fn scan(
        &self,
        env: Environment,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Option<Stored>> + Send>> {
        let storage = self.storage.clone();
        Box::pin(async move { crate::scan::scan_and_store(&env, &storage, &cancel).await })
    }
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// A scan starts now (or as soon as the concurrency limit allows).
    Started,
    /// A scan of the environment is already queued or running: the trigger joins it.
    Joined,
    UnknownEnvironment,
}

struct EnvTask {
    settings: watch::Sender<Environment>,
    trigger: Arc<Notify>,
    /// Set from the moment a scan is decided until it ends.
    busy: Arc<Mutex<bool>>,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// The per-environment tasks.
pub struct Scheduler {
    state: Arc<State>,
    /// Where finished scans go (the supervisor).
    changes: Changes,
    scanner: Arc<dyn Scanner>,
    limit: Arc<Semaphore>,
    limit_size: usize,
    tasks: Mutex<BTreeMap<String, EnvTask>>,
    shutdown: CancellationToken,
}

/// A random delay in `[0, jitter]` that spreads scans.
fn jitter_sample(jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=jitter.as_millis() as u64))
}

/// Delay before the first scan: at once with `run_on_start`, else one period after the last
/// stored scan (or from now when there is none).
pub fn first_delay(
    env: &Environment,
    last_finished: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Duration {
    if env.run_on_start {
        return Duration::ZERO;
    }
    // A scan stamped in the future (a clock that was wrong) counts as ending now: the next
    // one is never pushed past one interval.
    match (&env.schedule, last_finished.map(|t| t.min(now))) {
        (Schedule::Interval(i), Some(t)) => {
            let due = chrono::Duration::from_std(*i)
                .ok()
                .and_then(|i| t.checked_add_signed(i));
            due.and_then(|due| (due - now).to_std().ok())
                .unwrap_or(Duration::ZERO)
        }
        _ => next_delay(env, now),
    }
}

/// Delay before the next scheduled scan, counted from `now` (the end of the last scan).
pub fn next_delay(env: &Environment, now: DateTime<Utc>) -> Duration {
    let base = match &env.schedule {
        Schedule::Interval(i) => *i,
        Schedule::Cron { .. } => env
            .schedule
            .next_after(now.with_timezone(&Local))
            .and_then(|t| (t.with_timezone(&Utc) - now).to_std().ok())
            .unwrap_or(Duration::from_secs(86_400)),
    };
    base + jitter_sample(env.jitter)
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
            limit: Arc::new(Semaphore::new(max_concurrent)),
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
        let scheduler = Scheduler::new(state, changes, scanner, max_concurrent);
        scheduler.limit.forget_permits(max_concurrent);
        scheduler
    }

    /// Lets the scans of a [`Scheduler::paused`] scheduler run.
    pub fn resume(&self) {
        self.limit.add_permits(self.limit_size);
    }

    /// Starts, updates or stops environment tasks to match `config`. An unchanged
    /// environment keeps its timer; a changed one starts a new period; a removed one is
    /// cancelled (its running scan interrupted).
    pub fn apply(&self, config: &Config) {
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
        for (name, env) in &config.environments {
            match tasks.get(name) {
                Some(task) => {
                    let changed = *task.settings.borrow() != *env;
                    if changed {
                        let _ = task.settings.send(env.clone());
                    }
                }
                None => {
                    let task = self.spawn(env.clone());
                    tasks.insert(name.clone(), task);
                }
            }
        }
    }

    fn spawn(&self, env: Environment) -> EnvTask {
        let (settings, rx) = watch::channel(env.clone());
        let trigger = Arc::new(Notify::new());
        let busy = Arc::new(Mutex::new(false));
        let cancel = self.shutdown.child_token();
        let handle = tokio::spawn(env_loop(Loop {
            state: self.state.clone(),
            changes: self.changes.clone(),
            scanner: self.scanner.clone(),
            limit: self.limit.clone(),
            name: env.name.clone(),
            settings: rx,
            trigger: trigger.clone(),
            busy: busy.clone(),
            cancel: cancel.clone(),
        }));
        EnvTask {
            settings,
            trigger,
            busy,
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
        let mut busy = task.busy.lock().unwrap_or_else(|p| p.into_inner());
        if *busy {
            return Triggered::Joined;
        }
        // Marked here, under the lock, so that a second trigger joins this one.
        *busy = true;
        task.trigger.notify_one();
        Triggered::Started
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
    state: Arc<State>,
    changes: Changes,
    scanner: Arc<dyn Scanner>,
    limit: Arc<Semaphore>,
    name: String,
    settings: watch::Receiver<Environment>,
    trigger: Arc<Notify>,
    busy: Arc<Mutex<bool>>,
    cancel: CancellationToken,
}

impl Loop {
    fn set_busy(&self, value: bool) {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

async fn env_loop(mut l: Loop) {
    let first = l.settings.borrow().clone();
    let last = l
        .state
        .view(&l.name)
        .and_then(|v| v.latest.as_ref().and_then(|r| r.finished_at));
    let mut delay = first_delay(&first, last, Utc::now());
    loop {
        let env = l.settings.borrow_and_update().clone();
        let due = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d));
        l.state
            .set_next_scan(&l.name, due, env.schedule.period().as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(delay) => l.set_busy(true),
            _ = l.trigger.notified() => {}
            changed = l.settings.changed() => {
                if changed.is_err() {
                    return;
                }
                let env = l.settings.borrow().clone();
                delay = next_delay(&env, Utc::now());
                tracing::info!(environment = %l.name, schedule = %env.schedule.describe(), "settings changed: new schedule");
                continue;
            }
            _ = l.cancel.cancelled() => return,
        }
        let permit = tokio::select! {
            permit = l.limit.clone().acquire_owned() => permit,
            _ = l.cancel.cancelled() => return,
        };
        l.state.set_running(&l.name, true);
        // In a task of its own: a scan that panics ends as a logged error, and the
        // environment goes on being scheduled instead of staying "in progress" for ever.
        let scan = tokio::spawn(l.scanner.scan(env.clone(), l.cancel.child_token()));
        let result = scan.await.unwrap_or_else(|e| {
            tracing::error!(environment = %l.name, error = %e, "the scan task failed; the next scan runs as scheduled");
            None
        });
        drop(permit);
        // In the state before the environment stops showing as running.
        let cancelled = result.is_none() && l.cancel.is_cancelled();
        if let Some(stored) = result {
            l.changes.scan_finished(stored).await;
        }
        l.state.set_running(&l.name, false);
        l.set_busy(false);
        if cancelled {
            return;
        }
        delay = next_delay(&env, Utc::now());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::report::{PlanOutcome, Report};

    /// Imitates a scan: takes `duration` of (paused) tokio time, records concurrency.
    struct FakeScanner {
        duration: Duration,
        calls: Mutex<Vec<String>>,
        running: AtomicUsize,
        max_running: AtomicUsize,
    }

    impl FakeScanner {
        fn new(duration: Duration) -> Arc<FakeScanner> {
            Arc::new(FakeScanner {
                duration,
                calls: Mutex::new(Vec::new()),
                running: AtomicUsize::new(0),
                max_running: AtomicUsize::new(0),
            })
        }

        fn calls(&self, env: &str) -> usize {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| *c == env)
                .count()
        }
    }

    impl Scanner for Arc<FakeScanner> {
        fn scan(
            &self,
            env: Environment,
            _cancel: CancellationToken,
        ) -> Pin<Box<dyn Future<Output = Option<Stored>> + Send>> {
            let me = self.clone();
            Box::pin(async move {
                let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
                me.max_running.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(me.duration).await;
                me.running.fetch_sub(1, Ordering::SeqCst);
                me.calls.lock().unwrap().push(env.name.clone());
                let mut report = Report::from_outcome(PlanOutcome {
                    changes: vec![],
                    ignored: vec![],
                    error: None,
                    tool_version: None,
                });
                report.environment = Some(env.name.clone());
                report.finished_at = Some(Utc::now());
                Some(Stored {
                    report,
                    stored: false,
                })
            })
        }
    }

    fn setup(toml: &str, scan: Duration) -> (tempfile::TempDir, Arc<FakeScanner>, Scheduler) {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[storage]\npath = \"{}\"\n{toml}", dir.path().display());
        let config = Config::from_toml(&dir.path().join("config.toml"), &text).unwrap();
        let state = Arc::new(State::new(config.clone(), Default::default(), None));
        let fake = FakeScanner::new(scan);
        let scheduler = Scheduler::new(
            state,
            Changes::discarding(),
            Arc::new(fake.clone()),
            config.max_concurrent_scans,
        );
        scheduler.apply(&config);
        (dir, fake, scheduler)
    }

    /// Lets every task run until it waits on (paused) time again.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    async fn advance(d: Duration) {
        // In small steps, so that sleeps ending in between are seen in order.
        let step = Duration::from_secs(1);
        let mut left = d;
        while !left.is_zero() {
            let s = left.min(step);
            tokio::time::advance(s).await;
            settle().await;
            left -= s;
        }
    }

    /// A scanner with a bug: every scan panics.
    struct Panicking(AtomicUsize);

    impl Scanner for Arc<Panicking> {
        fn scan(
            &self,
            _env: Environment,
            _cancel: CancellationToken,
        ) -> Pin<Box<dyn Future<Output = Option<Stored>> + Send>> {
            let me = self.clone();
            Box::pin(async move {
                me.0.fetch_add(1, Ordering::SeqCst);
                panic!("a scan with a bug");
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_that_panics_does_not_leave_its_environment_stuck_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[storage]\npath = \"{}\"\n[environments.lab]\ndir = \".\"\ninterval = \"10m\"\njitter = \"0s\"\n",
            dir.path().display()
        );
        let config = Config::from_toml(&dir.path().join("config.toml"), &text).unwrap();
        let state = Arc::new(State::new(config.clone(), Default::default(), None));
        let scanner = Arc::new(Panicking(AtomicUsize::new(0)));
        let scheduler = Scheduler::new(
            state.clone(),
            Changes::discarding(),
            Arc::new(scanner.clone()),
            1,
        );
        scheduler.apply(&config);
        settle().await;
        advance(Duration::from_secs(2)).await;
        assert_eq!(scanner.0.load(Ordering::SeqCst), 1);
        assert!(
            !state.view("lab").unwrap().running,
            "not in progress after the panic"
        );
        assert_eq!(
            scheduler.trigger("lab"),
            Triggered::Started,
            "a new scan starts, not joins"
        );
        advance(Duration::from_secs(2)).await;
        assert_eq!(scanner.0.load(Ordering::SeqCst), 2);
        scheduler.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_runs_at_start_then_once_per_interval() {
        let (_dir, fake, scheduler) = setup(
            "[environments.lab]\ndir = \".\"\ninterval = \"10m\"\njitter = \"0s\"\n",
            Duration::from_secs(5),
        );
        settle().await;
        advance(Duration::from_secs(6)).await;
        assert_eq!(fake.calls("lab"), 1, "run_on_start");
        advance(Duration::from_secs(9 * 60)).await;
        assert_eq!(fake.calls("lab"), 1, "not before the interval has passed");
        advance(Duration::from_secs(60 + 6)).await;
        assert_eq!(
            fake.calls("lab"),
            2,
            "one interval after the end of the first scan"
        );
        scheduler.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_limit_holds_across_environments() {
        let toml = "[defaults]\ninterval = \"1h\"\njitter = \"0s\"\n[scheduler]\nmax_concurrent_scans = 1\n\
                    [environments.a]\ndir = \".\"\n[environments.b]\ndir = \".\"\n[environments.c]\ndir = \".\"\n";
        let (_dir, fake, scheduler) = setup(toml, Duration::from_secs(10));
        advance(Duration::from_secs(35)).await;
        assert_eq!(
            fake.calls("a") + fake.calls("b") + fake.calls("c"),
            3,
            "all three ran, one after another"
        );
        assert_eq!(fake.max_running.load(Ordering::SeqCst), 1);
        scheduler.shutdown().await;

        let toml = toml.replace("max_concurrent_scans = 1", "max_concurrent_scans = 2");
        let (_dir, fake, scheduler) = setup(&toml, Duration::from_secs(10));
        advance(Duration::from_secs(25)).await;
        assert_eq!(fake.max_running.load(Ordering::SeqCst), 2);
        scheduler.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_during_a_run_joins_it() {
        let toml = "[environments.lab]\ndir = \".\"\ninterval = \"1h\"\nrun_on_start = false\n";
        let (_dir, fake, scheduler) = setup(toml, Duration::from_secs(10));
        settle().await;
        assert_eq!(scheduler.trigger("lab"), Triggered::Started);
        settle().await;
        assert_eq!(scheduler.trigger("lab"), Triggered::Joined);
        advance(Duration::from_secs(3)).await;
        assert_eq!(scheduler.trigger("lab"), Triggered::Joined, "still running");
        advance(Duration::from_secs(10)).await;
        assert_eq!(
            fake.calls("lab"),
            1,
            "the joined triggers started nothing more"
        );
        assert_eq!(scheduler.trigger("lab"), Triggered::Started);
        advance(Duration::from_secs(11)).await;
        assert_eq!(fake.calls("lab"), 2);
        assert_eq!(scheduler.trigger("nope"), Triggered::UnknownEnvironment);
        scheduler.shutdown().await;
    }

    fn env_of(toml: &str) -> Environment {
        let config = Config::from_toml(Path::new("/c/config.toml"), toml).unwrap();
        config.environments.into_values().next().unwrap()
    }

    use std::path::Path;

    #[test]
    fn jitter_stays_within_its_bound() {
        let env = env_of("[environments.lab]\ndir = \".\"\ninterval = \"1h\"\njitter = \"5m\"\n");
        let now = Utc::now();
        let delays: Vec<Duration> = (0..1000).map(|_| next_delay(&env, now)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(3600) && *d <= Duration::from_secs(3900))
        );
        assert!(delays.iter().any(|d| *d != delays[0]), "the delay varies");
    }

    #[test]
    fn the_first_scan_follows_the_last_stored_one_without_run_on_start() {
        let env = env_of(
            "[environments.lab]\ndir = \".\"\ninterval = \"1h\"\njitter = \"0s\"\nrun_on_start = false\n",
        );
        let now = Utc::now();
        let last = now - chrono::Duration::minutes(20);
        assert_eq!(
            first_delay(&env, Some(last), now),
            Duration::from_secs(40 * 60)
        );
        assert_eq!(
            first_delay(&env, Some(now - chrono::Duration::hours(3)), now),
            Duration::ZERO,
            "overdue: now"
        );
        assert_eq!(first_delay(&env, None, now), Duration::from_secs(3600));
        let year_2099 = "2099-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            first_delay(&env, Some(year_2099), now),
            Duration::from_secs(3600),
            "a report from a wrong clock never pushes the next scan past one interval"
        );
    }

    #[test]
    fn cron_waits_for_its_next_occurrence() {
        let env =
            env_of("[environments.lab]\ndir = \".\"\ncron = \"0 3 * * *\"\njitter = \"0s\"\n");
        let now = Utc::now();
        let delay = next_delay(&env, now);
        // A local day is 23, 24 or 25 hours long where daylight saving time changes.
        let (day, long_day) = (Duration::from_secs(86_400), Duration::from_secs(25 * 3600));
        assert!(delay <= long_day, "{delay:?}");
        let at = (now + chrono::Duration::from_std(delay).unwrap()).with_timezone(&Local);
        assert_eq!(at.format("%H:%M").to_string(), "03:00");
        let period = env.schedule.period();
        assert!(period == day || period == long_day, "{period:?}");
    }
}
