//! When an environment's scans are due: the first one (at once with `run_on_start`, else
//! one period after the last stored scan), each next one (a period, or cron's next
//! occurrence, plus jitter), and since when a scan is due, its place at the gate.

use std::time::Duration;

use chrono::{DateTime, Local, Utc};
use rand::Rng;

use crate::config::Environment;
use crate::schedule::Schedule;

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

/// Since when the first scan of an environment is due, for its place at the gate: one
/// period after its last scan (at most now), or ever when it was never scanned.
pub fn first_due_since(
    env: &Environment,
    last_finished: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    delay: Duration,
) -> DateTime<Utc> {
    if !env.run_on_start && !delay.is_zero() {
        return at(now, delay);
    }
    match last_finished {
        Some(t) => at(t.min(now), env.schedule.period()).min(now),
        None => DateTime::<Utc>::MIN_UTC,
    }
}

/// `now` plus `delay`, the latest time there is when it overflows.
fn at(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
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

/// The timer of an environment's next scheduled scan.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timer {
    /// When it fires.
    pub(super) deadline: tokio::time::Instant,
    /// The same, as the state shows it.
    pub(super) due: DateTime<Utc>,
    /// Its place at the gate: since when the scan is due.
    pub(super) since: DateTime<Utc>,
}

impl Timer {
    pub(super) fn after(delay: Duration) -> Timer {
        let due = at(Utc::now(), delay);
        Timer {
            deadline: tokio::time::Instant::now() + delay,
            due,
            since: due,
        }
    }
}
