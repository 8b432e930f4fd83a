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

    /// How the schedule is written in the configuration.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Interval(d) => format!("every {}", humantime::format_duration(*d)),
            Schedule::Cron { expr, .. } => format!("cron \"{expr}\""),
        }
    }
}
