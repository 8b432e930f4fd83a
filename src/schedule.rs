//! When an environment is scanned: a fixed interval or a cron expression (local time,
//! like cron itself).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Local};
use croner::Cron;

/// An environment's schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Interval(Duration),
    Cron { expr: String, cron: Box<Cron> },
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Interval(a), Schedule::Interval(b)) => a == b,
            (Schedule::Cron { expr: a, .. }, Schedule::Cron { expr: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Schedule {
    /// Parses a 5-field (or 6-field, with seconds) cron expression.
    pub fn cron(expr: &str) -> Result<Schedule, String> {
        let cron = Cron::from_str(expr.trim())
            .map_err(|e| format!("{expr:?} is not a cron expression like \"0 3 * * *\" ({e})"))?;
        // An expression that never fires ("0 0 30 2 *") would leave the environment unscanned.
        cron.find_next_occurrence(&Local::now(), false)
            .map_err(|e| format!("{expr:?} never fires ({e})"))?;
        Ok(Schedule::Cron {
            expr: expr.trim().to_owned(),
            cron: Box::new(cron),
        })
    }

    /// The first run strictly after `after` (jitter not included).
    pub fn next_after(&self, after: DateTime<Local>) -> Option<DateTime<Local>> {
        match self {
            Schedule::Interval(d) => chrono::Duration::from_std(*d).ok().map(|d| after + d),
            Schedule::Cron { cron, .. } => cron.find_next_occurrence(&after, false).ok(),
        }
    }

    /// The next `n` runs after `after`.
    pub fn upcoming(&self, after: DateTime<Local>, n: usize) -> Vec<DateTime<Local>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The time between two runs; for a cron schedule the longest gap over the next 400 runs
    /// (what staleness alerts and the default Proxmox check interval go by).
    pub fn period(&self) -> Duration {
        match self {
            Schedule::Interval(d) => *d,
            Schedule::Cron { .. } => self
                .upcoming(Local::now(), 400)
                .windows(2)
                .filter_map(|w| (w[1] - w[0]).to_std().ok())
                .max()
                .unwrap_or(Duration::from_secs(86_400)),
        }
    }

    /// How the schedule is written in the configuration.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Interval(d) => format!("every {}", human(*d)),
            Schedule::Cron { expr, .. } => format!("cron \"{expr}\""),
        }
    }
}

/// A duration the way the configuration writes it: `90d`, `6h`, `1m30s`, `500ms` (humantime's
/// own formatting counts months of 30.44 days, which nobody configures).
pub fn human(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d.as_secs() == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_configured() {
        assert_eq!(human(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::ZERO), "0s");
    }

    #[test]
    fn cron_runs_are_listed_in_order() {
        let s = Schedule::cron("0 3 * * *").unwrap();
        let runs = s.upcoming(Local::now(), 3);
        assert_eq!(runs.len(), 3);
        assert!(
            runs.windows(2)
                .all(|w| w[1] - w[0] == chrono::Duration::days(1))
        );
        assert!(Schedule::cron("0 0 30 2 *").is_err(), "never fires");
    }
}
