//! The scheduler's families: when each environment is next scanned, how often, and
//! whether a scan runs now.

use chrono::{DateTime, Utc};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::Env;
use super::{FloatGauge, env, unix};

#[derive(Debug, Default)]
pub(super) struct ScheduleMetrics {
    next_scan: Family<Env, FloatGauge>,
    interval: Family<Env, FloatGauge>,
    in_progress: Family<Env, Gauge>,
}

impl ScheduleMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "next_scan_timestamp_seconds",
            "When the next scan is due (unix time)",
            self.next_scan.clone(),
        );
        r.register(
            "scan_interval_seconds",
            "Configured interval (for cron: the longest gap between two runs)",
            self.interval.clone(),
        );
        r.register(
            "scan_in_progress",
            "1 while a scan runs",
            self.in_progress.clone(),
        );
    }

    pub(super) fn set_schedule(
        &self,
        name: &str,
        next: Option<DateTime<Utc>>,
        interval_seconds: f64,
    ) {
        let e = env(name);
        match next {
            Some(t) => {
                self.next_scan.get_or_create(&e).set(unix(t));
            }
            None => {
                self.next_scan.remove(&e);
            }
        }
        self.interval.get_or_create(&e).set(interval_seconds);
    }

    pub(super) fn set_in_progress(&self, name: &str, running: bool) {
        self.in_progress
            .get_or_create(&env(name))
            .set(i64::from(running));
    }

    /// Removes every series of `name`.
    pub(super) fn forget(&self, name: &str) {
        let e = env(name);
        self.in_progress.remove(&e);
        self.next_scan.remove(&e);
        self.interval.remove(&e);
    }
}
