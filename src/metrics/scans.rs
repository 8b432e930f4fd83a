//! The scans' families: what the last report of each environment says, and the counters of
//! completed scans and failed writes.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{Env, EnvAction, EnvReason, EnvStatus, EnvTrigger, ErrorInfo, Resource};
use super::{FloatGauge, SeriesLimits, env, unix};
use crate::report::{Action, Change, ErrorReason, Report, Status, TriggerKind};
use crate::text::label;

/// Each value in the `attributes` label is cut at this many UTF-16 units ...
const ATTRIBUTE_VALUE_MAX: usize = 40;
/// ... and the label at this many.
const ATTRIBUTES_MAX: usize = 200;
/// The error's first line in `tfdrift_scan_error_info`, at most.
const ERROR_MAX: usize = 200;
/// A resource's address, at most (a `for_each` key can be kilobytes; the rule shows 80).
const ADDRESS_MAX: usize = 512;
/// A resource type, at most.
const TYPE_MAX: usize = 128;
/// Who changed it (a Proxmox `user@realm`), at most.
const USER_MAX: usize = 64;

/// The first line of `text` as a label: visible and at most `max` UTF-16 units.
fn first_line(text: &str, max: usize) -> String {
    crate::text::label(text.lines().next().unwrap_or_default().trim(), max)
}

#[derive(Debug, Default)]
pub(super) struct ScanMetrics {
    status: Family<Env, Gauge>,
    changed: Family<EnvAction, Gauge>,
    outside: Family<Env, Gauge>,
    ignored: Family<Env, Gauge>,
    resources: Family<Resource, Gauge>,
    dropped: Family<Env, Gauge>,
    scan_error: Family<EnvReason, Gauge>,
    error_info: Family<ErrorInfo, Gauge>,
    duration: Family<Env, FloatGauge>,
    last_scan: Family<Env, FloatGauge>,
    last_success: Family<Env, FloatGauge>,
    scans: Family<EnvStatus, Counter>,
    triggers: Family<EnvTrigger, Counter>,
    storage_errors: Family<Env, Counter>,
    expired_rules: Family<Env, Gauge>,
    drift_since: Family<Env, FloatGauge>,
    detection: Family<Env, FloatGauge>,
    /// The `tfdrift_scan_error_info` series of each environment.
    errors: Mutex<HashMap<String, ErrorInfo>>,
    /// The `tfdrift_resource_change_info` series of each environment, to replace them whole.
    resource_series: Mutex<HashMap<String, Vec<Resource>>>,
}

impl ScanMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "status",
            "Result of the last completed scan: 0 conform, 1 drift, 2 error",
            self.status.clone(),
        );
        r.register(
            "changed_resources",
            "Resources the last plan would change, per action (after ignore rules)",
            self.changed.clone(),
        );
        r.register(
            "outside_changes",
            "Resources changed outside Terraform (after ignore rules)",
            self.outside.clone(),
        );
        r.register(
            "ignored_changes",
            "Changes suppressed by ignore rules",
            self.ignored.clone(),
        );
        r.register(
            "resource_change_info",
            "One series per changed resource of the last plan (metrics.max_resource_series per environment, metrics.max_resource_series_total in all)",
            self.resources.clone(),
        );
        r.register(
            "resource_series_dropped",
            "Changed resources of the last plan without a resource_change_info series (over a series limit); absent when none",
            self.dropped.clone(),
        );
        r.register(
            "scan_error",
            "1 for the reason of the last scan when it failed, 0 for every other reason",
            self.scan_error.clone(),
        );
        r.register(
            "scan_error_info",
            "The last scan's error when it failed: its reason and first line (for alert texts)",
            self.error_info.clone(),
        );
        r.register(
            "scan_duration_seconds",
            "Duration of the last scan",
            self.duration.clone(),
        );
        r.register(
            "last_scan_timestamp_seconds",
            "End of the last scan (unix time)",
            self.last_scan.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "End of the last scan that did not error (unix time)",
            self.last_success.clone(),
        );
        r.register("scans", "Completed scans by status", self.scans.clone());
        r.register(
            "scan_triggers",
            "Scans started, by what started them (start, schedule, manual, proxmox)",
            self.triggers.clone(),
        );
        r.register(
            "storage_errors",
            "Reports that could not be written to the history",
            self.storage_errors.clone(),
        );
        r.register(
            "drift_since_timestamp_seconds",
            "Start of the current drift (unix time); present only while the environment drifts",
            self.drift_since.clone(),
        );
        r.register(
            "detection_delay_seconds",
            "For the last drift a scan started by a Proxmox change signal found: seconds from the change to the end of that scan; present only while the environment drifts",
            self.detection.clone(),
        );
        r.register(
            "ignore_rules_expired",
            "Ignore rules past their expiry date, no longer applied",
            self.expired_rules.clone(),
        );
    }

    /// Sets the gauges of `name` from its latest report.
    pub(super) fn show(
        &self,
        name: &str,
        report: &Report,
        last_success: Option<DateTime<Utc>>,
        limits: SeriesLimits,
    ) {
        let e = env(name);
        self.status.get_or_create(&e).set(report.status.gauge());
        for action in Action::COUNTED {
            let labels = EnvAction {
                environment: name.to_owned(),
                action,
            };
            self.changed
                .get_or_create(&labels)
                .set(report.summary.count(action) as i64);
        }
        self.outside
            .get_or_create(&e)
            .set(report.summary.outside_terraform as i64);
        self.ignored
            .get_or_create(&e)
            .set(report.summary.ignored as i64);
        let failed = report.error.as_ref().map(|err| err.reason);
        for reason in ErrorReason::ALL {
            let labels = EnvReason {
                environment: name.to_owned(),
                reason,
            };
            self.scan_error
                .get_or_create(&labels)
                .set(i64::from(failed == Some(reason)));
        }
        self.forget_error_info(name);
        if let Some(err) = &report.error {
            let labels = ErrorInfo {
                environment: name.to_owned(),
                reason: err.reason,
                summary: first_line(&err.summary, ERROR_MAX),
            };
            self.error_info.get_or_create(&labels).set(1);
            self.errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_owned(), labels);
        }
        if let Some(d) = report.duration_seconds() {
            self.duration.get_or_create(&e).set(d);
        }
        if let Some(t) = report.finished_at() {
            self.last_scan.get_or_create(&e).set(unix(t));
        }
        if let Some(t) = last_success {
            self.last_success.get_or_create(&e).set(unix(t));
        }
        let latency = report
            .trigger
            .as_ref()
            .zip(report.finished_at())
            .and_then(|(trigger, found)| trigger.latency_to(found));
        match (report.status, latency) {
            (Status::Drift, Some(seconds)) => {
                self.detection.get_or_create(&e).set(seconds);
            }
            // A drift found by the schedule keeps the signal's figure; an error says nothing.
            (Status::Drift | Status::Error, _) => {}
            (Status::Conform, _) => {
                self.detection.remove(&e);
            }
        }
        match report.drift_since {
            Some(t) => {
                self.drift_since.get_or_create(&e).set(unix(t));
            }
            None => {
                self.drift_since.remove(&e);
            }
        }
        self.show_resources(name, report, limits);
    }

    /// Replaces the environment's `tfdrift_resource_change_info` series whole: at most
    /// `limits.per_environment`, and no more than the total leaves after the other
    /// environments' series; how many changes got none is `tfdrift_resource_series_dropped`.
    fn show_resources(&self, name: &str, report: &Report, limits: SeriesLimits) {
        let mut known = self
            .resource_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let others: usize = known
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(_, s)| s.len())
            .sum();
        let room = limits
            .per_environment
            .min(limits.total.saturating_sub(others));
        let counted: Vec<&Change> = report
            .changes
            .iter()
            .filter(|c| c.action.is_counted())
            .collect();
        let e = env(name);
        match counted.len().saturating_sub(room) {
            0 => {
                self.dropped.remove(&e);
            }
            dropped => {
                self.dropped.get_or_create(&e).set(dropped as i64);
            }
        }
        let series: Vec<Resource> = counted
            .into_iter()
            .take(room)
            .map(|c| Resource {
                environment: name.to_owned(),
                address: label(&c.address, ADDRESS_MAX),
                r#type: label(&c.resource_type, TYPE_MAX),
                action: c.action,
                outside_terraform: c.outside_terraform,
                attributes: label(
                    &c.attributes_line(ATTRIBUTE_VALUE_MAX, ATTRIBUTES_MAX),
                    ATTRIBUTES_MAX,
                ),
                changed_by: c
                    .changed_by
                    .as_ref()
                    .and_then(|by| by.first())
                    .map(|a| label(&a.user, USER_MAX))
                    .unwrap_or_default(),
            })
            .collect();
        for old in known.remove(name).unwrap_or_default() {
            self.resources.remove(&old);
        }
        for s in &series {
            self.resources.get_or_create(s).set(1);
        }
        known.insert(name.to_owned(), series);
    }

    /// Removes the environment's `tfdrift_scan_error_info` series.
    fn forget_error_info(&self, name: &str) {
        let old = self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(old) = old {
            self.error_info.remove(&old);
        }
    }

    pub(super) fn count_trigger(&self, name: &str, trigger: TriggerKind) {
        self.triggers
            .get_or_create(&EnvTrigger {
                environment: name.to_owned(),
                trigger,
            })
            .inc();
    }

    pub(super) fn count_scan(&self, name: &str, status: Status) {
        self.scans
            .get_or_create(&EnvStatus {
                environment: name.to_owned(),
                status,
            })
            .inc();
    }

    pub(super) fn count_storage_error(&self, name: &str) {
        self.storage_errors.get_or_create(&env(name)).inc();
    }

    pub(super) fn set_expired_rules(&self, name: &str, count: usize) {
        self.expired_rules
            .get_or_create(&env(name))
            .set(count as i64);
    }

    /// Removes every series of `name`.
    pub(super) fn forget(&self, name: &str) {
        let e = env(name);
        for family in [
            &self.status,
            &self.outside,
            &self.ignored,
            &self.expired_rules,
        ] {
            family.remove(&e);
        }
        for family in [
            &self.duration,
            &self.last_scan,
            &self.last_success,
            &self.drift_since,
            &self.detection,
        ] {
            family.remove(&e);
        }
        self.storage_errors.remove(&e);
        for trigger in TriggerKind::ALL {
            self.triggers.remove(&EnvTrigger {
                environment: name.to_owned(),
                trigger,
            });
        }
        for action in Action::COUNTED {
            self.changed.remove(&EnvAction {
                environment: name.to_owned(),
                action,
            });
        }
        for reason in ErrorReason::ALL {
            self.scan_error.remove(&EnvReason {
                environment: name.to_owned(),
                reason,
            });
        }
        for status in Status::ALL {
            self.scans.remove(&EnvStatus {
                environment: name.to_owned(),
                status,
            });
        }
        let mut known = self
            .resource_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for old in known.remove(name).unwrap_or_default() {
            self.resources.remove(&old);
        }
        drop(known);
        self.dropped.remove(&env(name));
        self.forget_error_info(name);
    }
}
