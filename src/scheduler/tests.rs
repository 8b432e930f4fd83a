//! The scheduler on paused tokio time, with scanners that imitate scans.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Local;

use super::*;
use crate::report::{PlanOutcome, Report, Scanned, Tool, Trigger, TriggerKind};

/// Imitates a scan: takes `duration` of (paused) tokio time, records concurrency.
struct FakeScanner {
    duration: Duration,
    calls: Mutex<Vec<String>>,
    triggers: Mutex<Vec<TriggerKind>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl FakeScanner {
    fn new(duration: Duration) -> Arc<FakeScanner> {
        Arc::new(FakeScanner {
            duration,
            calls: Mutex::new(Vec::new()),
            triggers: Mutex::new(Vec::new()),
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
        trigger: Trigger,
        _cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Option<Finished>> + Send>> {
        let me = self.clone();
        Box::pin(async move {
            let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
            me.max_running.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(me.duration).await;
            me.running.fetch_sub(1, Ordering::SeqCst);
            me.calls.lock().unwrap().push(env.name.clone());
            me.triggers.lock().unwrap().push(trigger.kind);
            let findings = Report::from_outcome(PlanOutcome::no_changes());
            Some(Finished {
                scanned: Scanned {
                    environment: env.name.clone(),
                    started_at: Utc::now(),
                    finished_at: Utc::now(),
                    duration_seconds: 0.0,
                    tool: Tool {
                        binary: None,
                        version: None,
                    },
                    trigger,
                    findings,
                    plan: None,
                    guests: None,
                },
                lock: None,
            })
        })
    }
}

/// A queue whose changes reach `state` as the supervisor's would (running, next scan);
/// finished scans are only acknowledged.
fn applying(state: Arc<State>) -> Changes {
    use crate::changes::Change;
    let (changes, mut queue) = Changes::channel();
    tokio::spawn(async move {
        while let Some(change) = queue.recv().await {
            match change {
                Change::Running {
                    environment,
                    started,
                } => state.set_running(&environment, started.is_some()),
                Change::NextScan {
                    environment,
                    due,
                    period_seconds,
                } => state.set_next_scan(&environment, due, period_seconds),
                Change::Reload(answer) => drop(answer.send(Ok(()))),
                Change::ScanFinished(_, applied)
                | Change::UnmanagedFinished(_, applied)
                | Change::Managed(_, applied) => {
                    let _ = applied.send(());
                }
                Change::Attribution { .. } | Change::Signals { .. } | Change::Rediscover => {}
            }
        }
    });
    changes
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
        _trigger: Trigger,
        _cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Option<Finished>> + Send>> {
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
        applying(state.clone()),
        Arc::new(scanner.clone()),
        1,
    );
    for planned in scheduler.apply(&config) {
        planned.show(&state);
    }
    assert!(
        state.view("lab").unwrap().next_scan.is_some(),
        "the first scan is known as soon as the environment is"
    );
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
    assert_eq!(scheduler.trigger("lab"), Triggered::Started);
    advance(Duration::from_secs(6)).await;
    assert_eq!(
        *fake.triggers.lock().unwrap(),
        [
            TriggerKind::Start,
            TriggerKind::Schedule,
            TriggerKind::Manual
        ],
        "each report says what started its scan"
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

fn batch(n: usize) -> crate::signals::Batch {
    let signal = crate::report::Signal {
        source: crate::report::SignalSource::ClusterLog,
        vmid: 100,
        node: "pve1".into(),
        user: Some("root@pam".into()),
        token: None,
        by_terraform: false,
        changed_at: Some(Utc::now()),
        seen_at: Some(Utc::now()),
        message: "update VM 100: -memory 3072".into(),
    };
    crate::signals::Batch {
        signals: vec![signal; n],
        total: n,
    }
}

/// Signals never make two scans of one environment at once: a queued scan takes them, a
/// running one is followed by exactly one more (its plan may have read the guest before).
#[tokio::test(start_paused = true)]
async fn signals_start_a_scan_join_a_queued_one_and_follow_a_running_one_once() {
    let toml = "[scheduler]\nmax_concurrent_scans = 1\n\
                [environments.lab]\ndir = \".\"\ninterval = \"1h\"\nrun_on_start = false\n\
                [environments.prod]\ndir = \".\"\ninterval = \"1h\"\nrun_on_start = false\n";
    let (_dir, fake, scheduler) = setup(toml, Duration::from_secs(10));
    settle().await;
    assert_eq!(scheduler.signal("lab", batch(1)), Triggered::Started);
    settle().await;
    // prod waits for the only permit: its signals join the queued scan.
    assert_eq!(scheduler.signal("prod", batch(2)), Triggered::Started);
    settle().await;
    assert_eq!(scheduler.signal("prod", batch(3)), Triggered::Joined);
    // lab runs: new signals make one scan after it, however many come.
    assert_eq!(scheduler.signal("lab", batch(4)), Triggered::Follows);
    assert_eq!(scheduler.signal("lab", batch(5)), Triggered::Follows);
    advance(Duration::from_secs(45)).await;
    assert_eq!(fake.calls("lab"), 2, "one scan and one that follows it");
    assert_eq!(
        fake.calls("prod"),
        1,
        "the joined signals started nothing more"
    );
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 1);
    let kinds = fake.triggers.lock().unwrap().clone();
    assert!(
        kinds.iter().all(|k| *k == TriggerKind::Proxmox),
        "{kinds:?}"
    );
    assert_eq!(
        scheduler.signal("nope", batch(1)),
        Triggered::UnknownEnvironment
    );
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
fn after_a_restart_the_environment_due_longest_goes_first() {
    let env = env_of("[environments.lab]\ndir = \".\"\ninterval = \"1h\"\njitter = \"0s\"\n");
    let now = Utc::now();
    let since = |last: Option<DateTime<Utc>>| {
        first_due_since(&env, last, now, first_delay(&env, last, now))
    };
    let never = since(None);
    let long_ago = since(Some(now - chrono::Duration::hours(5)));
    let recently = since(Some(now - chrono::Duration::minutes(10)));
    assert_eq!(
        long_ago,
        now - chrono::Duration::hours(4),
        "due one interval after it"
    );
    assert_eq!(recently, now, "run on start: due now at the latest");
    assert!(never < long_ago && long_ago < recently);
    let later = env_of(
        "[environments.lab]\ndir = \".\"\ninterval = \"1h\"\njitter = \"0s\"\nrun_on_start = false\n",
    );
    let last = Some(now - chrono::Duration::minutes(10));
    assert_eq!(
        first_due_since(&later, last, now, first_delay(&later, last, now)),
        now + chrono::Duration::minutes(50),
        "not due yet: its place is when it comes due"
    );
}

#[test]
fn cron_waits_for_its_next_occurrence() {
    let env = env_of("[environments.lab]\ndir = \".\"\ncron = \"0 3 * * *\"\njitter = \"0s\"\n");
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
