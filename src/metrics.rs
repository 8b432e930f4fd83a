//! The Prometheus metrics of interface §8, set from reports and from the scheduler, and
//! encoded as Prometheus text 0.0.4 or OpenMetrics. Scrapes only read atomics: they never
//! wait for a scan.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::{Action, ErrorReason, Report, Status};
use crate::unmanaged::api::GuestKind;
use crate::unmanaged::{CheckReason, Unmanaged};

mod labels;

use labels::{Build, Env, EnvAction, EnvReason, EnvStatus, GuestLabels, Kind, Reason, Resource};

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric family of the exporter.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    status: Family<Env, Gauge>,
    changed: Family<EnvAction, Gauge>,
    outside: Family<Env, Gauge>,
    ignored: Family<Env, Gauge>,
    resources: Family<Resource, Gauge>,
    scan_error: Family<EnvReason, Gauge>,
    duration: Family<Env, FloatGauge>,
    last_scan: Family<Env, FloatGauge>,
    last_success: Family<Env, FloatGauge>,
    next_scan: Family<Env, FloatGauge>,
    interval: Family<Env, FloatGauge>,
    in_progress: Family<Env, Gauge>,
    scans: Family<EnvStatus, Counter>,
    storage_errors: Family<Env, Counter>,
    expired_rules: Family<Env, Gauge>,
    unmanaged: Family<Kind, Gauge>,
    unmanaged_info: Family<GuestLabels, Gauge>,
    unmanaged_error: Family<Reason, Gauge>,
    unmanaged_checked: Family<Vec<(String, String)>, FloatGauge>,
    /// The `tfdrift_unmanaged_resource_info` series shown now.
    unmanaged_series: Mutex<Vec<GuestLabels>>,
    /// The `tfdrift_resource_change_info` series of each environment, to replace them whole.
    resource_series: Mutex<HashMap<String, Vec<Resource>>>,
    /// Bumped by every change, so that scrapes between two changes share one encoding.
    generation: AtomicU64,
    /// The last encodings: (generation, body) for text 0.0.4 and for OpenMetrics.
    cache: Mutex<[Option<(u64, Bytes)>; 2]>,
}

/// Content types of the two encodings.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn env(name: &str) -> Env {
    Env {
        environment: name.to_owned(),
    }
}

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tfdrift");
        let m = Metrics {
            registry: Registry::default(),
            status: Family::default(),
            changed: Family::default(),
            outside: Family::default(),
            ignored: Family::default(),
            resources: Family::default(),
            scan_error: Family::default(),
            duration: Family::default(),
            last_scan: Family::default(),
            last_success: Family::default(),
            next_scan: Family::default(),
            interval: Family::default(),
            in_progress: Family::default(),
            scans: Family::default(),
            storage_errors: Family::default(),
            expired_rules: Family::default(),
            unmanaged: Family::default(),
            unmanaged_info: Family::default(),
            unmanaged_error: Family::default(),
            unmanaged_checked: Family::default(),
            unmanaged_series: Mutex::new(Vec::new()),
            resource_series: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            cache: Mutex::new([None, None]),
        };
        let r = &mut registry;
        r.register(
            "status",
            "Result of the last completed scan: 0 conform, 1 drift, 2 error",
            m.status.clone(),
        );
        r.register(
            "changed_resources",
            "Resources the last plan would change, per action (after ignore rules)",
            m.changed.clone(),
        );
        r.register(
            "outside_changes",
            "Resources changed outside Terraform (after ignore rules)",
            m.outside.clone(),
        );
        r.register(
            "ignored_changes",
            "Changes suppressed by ignore rules",
            m.ignored.clone(),
        );
        r.register(
            "resource_change_info",
            "One series per changed resource of the last plan (bounded per environment)",
            m.resources.clone(),
        );
        r.register(
            "scan_error",
            "1 for the reason of the last scan when it failed, 0 for every other reason",
            m.scan_error.clone(),
        );
        r.register(
            "scan_duration_seconds",
            "Duration of the last scan",
            m.duration.clone(),
        );
        r.register(
            "last_scan_timestamp_seconds",
            "End of the last scan (unix time)",
            m.last_scan.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "End of the last scan that did not error (unix time)",
            m.last_success.clone(),
        );
        r.register(
            "next_scan_timestamp_seconds",
            "When the next scan is due (unix time)",
            m.next_scan.clone(),
        );
        r.register(
            "scan_interval_seconds",
            "Configured interval (for cron: the longest gap between two runs)",
            m.interval.clone(),
        );
        r.register(
            "scan_in_progress",
            "1 while a scan runs",
            m.in_progress.clone(),
        );
        r.register("scans", "Completed scans by status", m.scans.clone());
        r.register(
            "storage_errors",
            "Reports that could not be written to the history",
            m.storage_errors.clone(),
        );
        r.register(
            "ignore_rules_expired",
            "Ignore rules past their expiry date, no longer applied",
            m.expired_rules.clone(),
        );
        r.register(
            "unmanaged_resources",
            "Proxmox VMs (qemu) and containers (lxc) that no environment's state manages",
            m.unmanaged.clone(),
        );
        r.register(
            "unmanaged_resource_info",
            "One series per unmanaged Proxmox guest (bounded by metrics.max_resource_series)",
            m.unmanaged_info.clone(),
        );
        r.register(
            "unmanaged_check_error",
            "1 for the reason of the last unmanaged-guest check when it failed, 0 for every other reason",
            m.unmanaged_error.clone(),
        );
        r.register(
            "unmanaged_last_check_timestamp_seconds",
            "End of the last unmanaged-guest check, failed or not (unix time)",
            m.unmanaged_checked.clone(),
        );
        let build: Family<Build, Gauge> = Family::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        r.register("build_info", "The exporter build", build);
        Metrics { registry, ..m }
    }

    /// Sets the gauges of `report`'s environment from it.
    pub fn show_report(
        &self,
        report: &Report,
        last_success: Option<DateTime<Utc>>,
        max_series: usize,
    ) {
        let Some(name) = report.environment.as_deref() else {
            return;
        };
        let e = env(name);
        let status = match report.status {
            Status::Conform => 0,
            Status::Drift => 1,
            Status::Error => 2,
        };
        self.status.get_or_create(&e).set(status);
        for action in Action::COUNTED {
            let labels = EnvAction {
                environment: name.to_owned(),
                action: action.as_str().to_owned(),
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
                reason: reason.as_str().to_owned(),
            };
            self.scan_error
                .get_or_create(&labels)
                .set(i64::from(failed == Some(reason)));
        }
        if let Some(d) = report.duration_seconds {
            self.duration.get_or_create(&e).set(d);
        }
        if let Some(t) = report.finished_at {
            self.last_scan.get_or_create(&e).set(unix(t));
        }
        if let Some(t) = last_success {
            self.last_success.get_or_create(&e).set(unix(t));
        }

        let series: Vec<Resource> = report
            .changes
            .iter()
            .filter(|c| c.action.is_counted())
            .take(max_series)
            .map(|c| Resource {
                environment: name.to_owned(),
                address: c.address.clone(),
                r#type: c.resource_type.clone(),
                action: c.action.as_str().to_owned(),
                outside_terraform: c.outside_terraform.to_string(),
            })
            .collect();
        let mut known = self
            .resource_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for old in known.remove(name).unwrap_or_default() {
            self.resources.remove(&old);
        }
        for s in &series {
            self.resources.get_or_create(s).set(1);
        }
        known.insert(name.to_owned(), series);
        // After the change: a scrape in between re-encodes again later.
        self.touch();
    }

    /// Counts a completed scan.
    pub fn count_scan(&self, name: &str, status: Status) {
        self.scans
            .get_or_create(&EnvStatus {
                environment: name.to_owned(),
                status: status.as_str().to_owned(),
            })
            .inc();
        // After the change: a scrape in between re-encodes again later.
        self.touch();
    }

    pub fn count_storage_error(&self, name: &str) {
        self.storage_errors.get_or_create(&env(name)).inc();
        // After the change: a scrape in between re-encodes again later.
        self.touch();
    }

    pub fn set_schedule(&self, name: &str, next: Option<DateTime<Utc>>, interval_seconds: f64) {
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
        // After the change: a scrape in between re-encodes again later.
        self.touch();
    }

    pub fn set_in_progress(&self, name: &str, running: bool) {
        self.in_progress
            .get_or_create(&env(name))
            .set(i64::from(running));
        // After the change: a scrape in between re-encodes again later.
        self.touch();
    }

    pub fn set_expired_rules(&self, name: &str, count: usize) {
        self.expired_rules
            .get_or_create(&env(name))
            .set(count as i64);
        // After the change: a scrape in between re-encodes again later.
        self.touch();
    }

    /// Makes every series of a removed environment disappear.
    pub fn forget(&self, name: &str) {
        let e = env(name);
        for family in [
            &self.status,
            &self.outside,
            &self.ignored,
            &self.in_progress,
        ] {
            family.remove(&e);
        }
        for family in [
            &self.duration,
            &self.last_scan,
            &self.last_success,
            &self.next_scan,
            &self.interval,
        ] {
            family.remove(&e);
        }
        self.storage_errors.remove(&e);
        self.expired_rules.remove(&e);
        for action in Action::COUNTED {
            self.changed.remove(&EnvAction {
                environment: name.to_owned(),
                action: action.as_str().to_owned(),
            });
        }
        for reason in ErrorReason::ALL {
            self.scan_error.remove(&EnvReason {
                environment: name.to_owned(),
                reason: reason.as_str().to_owned(),
            });
        }
        for status in [Status::Conform, Status::Drift, Status::Error] {
            self.scans.remove(&EnvStatus {
                environment: name.to_owned(),
                status: status.as_str().to_owned(),
            });
        }
        let mut known = self
            .resource_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for old in known.remove(name).unwrap_or_default() {
            self.resources.remove(&old);
        }
        // After the change: a scrape in between re-encodes again later.
        self.touch();
    }

    /// Sets the unmanaged-guest gauges from a check (`None`: the check is not configured,
    /// every series disappears).
    pub fn show_unmanaged(&self, result: Option<&Unmanaged>, max_series: usize) {
        let mut known = self
            .unmanaged_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for old in known.drain(..) {
            self.unmanaged_info.remove(&old);
        }
        let Some(result) = result else {
            for kind in GuestKind::ALL {
                self.unmanaged.remove(&Kind {
                    kind: kind.as_str().to_owned(),
                });
            }
            for reason in CheckReason::ALL {
                self.unmanaged_error.remove(&Reason {
                    reason: reason.as_str().to_owned(),
                });
            }
            self.unmanaged_checked.clear();
            self.touch();
            return;
        };
        for kind in GuestKind::ALL {
            let count = result.guests.iter().filter(|g| g.kind == kind).count();
            self.unmanaged
                .get_or_create(&Kind {
                    kind: kind.as_str().to_owned(),
                })
                .set(count as i64);
        }
        for guest in result.guests.iter().take(max_series) {
            let labels = GuestLabels {
                vmid: guest.vmid.to_string(),
                name: guest.name.clone().unwrap_or_default(),
                node: guest.node.clone(),
                kind: guest.kind.as_str().to_owned(),
            };
            self.unmanaged_info.get_or_create(&labels).set(1);
            known.push(labels);
        }
        let failed = result.error.as_ref().map(|e| e.reason);
        for reason in CheckReason::ALL {
            self.unmanaged_error
                .get_or_create(&Reason {
                    reason: reason.as_str().to_owned(),
                })
                .set(i64::from(failed == Some(reason)));
        }
        if let Some(t) = result.checked_at {
            self.unmanaged_checked
                .get_or_create(&Vec::new())
                .set(unix(t));
        }
        // After the change: a scrape in between re-encodes again later.
        self.touch();
    }

    fn touch(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The exposition, in OpenMetrics when `openmetrics`, else Prometheus text 0.0.4;
    /// encoded once per change of the metrics, however many scrapes come.
    pub fn exposition(&self, openmetrics: bool) -> Bytes {
        let slot = usize::from(openmetrics);
        // Read before encoding: a change during the encoding makes the next scrape re-encode.
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some((cached, body)) = &self.cache.lock().unwrap_or_else(|p| p.into_inner())[slot]
            && *cached == generation
        {
            return body.clone();
        }
        let body = Bytes::from(self.encode(openmetrics));
        self.cache.lock().unwrap_or_else(|p| p.into_inner())[slot] =
            Some((generation, body.clone()));
        body
    }

    /// The exposition, encoded now.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let result = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if result.is_err() {
            tracing::error!("encoding the metrics failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
