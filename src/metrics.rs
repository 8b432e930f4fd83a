//! The Prometheus metrics of interface §8, set from reports and from the scheduler, and
//! encoded as Prometheus text 0.0.4 or OpenMetrics. Scrapes only read atomics: they never
//! wait for a scan.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::{Report, Status};
use crate::unmanaged::Unmanaged;

mod attribution;
mod checks;
mod labels;
pub mod process;
mod scans;
mod schedule;
mod unmanaged;

use attribution::AttributionMetrics;
use checks::CheckMetrics;
use labels::{Build, Env, ShardLabels, WebLabels};
use scans::ScanMetrics;
use schedule::ScheduleMetrics;
use unmanaged::UnmanagedMetrics;

type FloatGauge = Gauge<f64, AtomicU64>;

/// How many `tfdrift_resource_change_info` series there may be: per environment
/// (`metrics.max_resource_series`) and across all of them
/// (`metrics.max_resource_series_total`), so that `/metrics` stays bounded however many
/// environments drift at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    pub per_environment: usize,
    pub total: usize,
}

/// Every metric family of the exporter, registered by the component that sets it, and the
/// encoding shared by the scrapes between two changes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    scans: ScanMetrics,
    checks: CheckMetrics,
    schedule: ScheduleMetrics,
    unmanaged: UnmanagedMetrics,
    attribution: AttributionMetrics,
    web: Family<WebLabels, Gauge>,
    /// `tfdrift_shard_ordinal{shard_ordinal}` and `tfdrift_total_shards` (kube-state-metrics' shape).
    shard_ordinal: Family<ShardLabels, Gauge>,
    total_shards: Gauge,
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
        let scans = ScanMetrics::default();
        let checks = CheckMetrics::default();
        let schedule = ScheduleMetrics::default();
        let unmanaged = UnmanagedMetrics::default();
        let attribution = AttributionMetrics::default();
        scans.register(&mut registry);
        checks.register(&mut registry);
        schedule.register(&mut registry);
        unmanaged.register(&mut registry);
        attribution.register(&mut registry);
        let build: Family<Build, Gauge> = Family::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("build_info", "The exporter build", build);
        let shard_ordinal: Family<ShardLabels, Gauge> = Family::default();
        registry.register(
            "shard_ordinal",
            "This replica's shard (from 0), also as the value",
            shard_ordinal.clone(),
        );
        let total_shards = Gauge::default();
        total_shards.set(1);
        registry.register(
            "total_shards",
            "Replicas sharing the environments (1: sharding off)",
            total_shards.clone(),
        );
        shard_ordinal
            .get_or_create(&ShardLabels {
                shard_ordinal: "0".into(),
            })
            .set(0);
        let web: Family<WebLabels, Gauge> = Family::default();
        registry.register(
            "web_info",
            "How people reach the exporter (web.external_url; scheme https when it serves TLS): the base of alert links",
            web.clone(),
        );
        Metrics {
            registry,
            scans,
            checks,
            schedule,
            unmanaged,
            attribution,
            web,
            shard_ordinal,
            total_shards,
            generation: AtomicU64::new(0),
            cache: Mutex::new([None, None]),
        }
    }

    // Every setter changes first and bumps the generation after: a scrape in between
    // re-encodes again later.

    /// Sets the gauges of `report`'s environment from it.
    pub fn show_report(
        &self,
        report: &Report,
        last_success: Option<DateTime<Utc>>,
        limits: SeriesLimits,
    ) {
        if let Some(name) = report.environment() {
            self.scans.show(name, report, last_success, limits);
            self.checks.show(name, report, limits.per_environment);
            self.touch();
        }
    }

    /// Counts a scan that started, by what started it.
    pub fn count_trigger(&self, name: &str, kind: crate::report::TriggerKind) {
        self.scans.count_trigger(name, kind);
        self.touch();
    }

    /// Counts a completed scan.
    pub fn count_scan(&self, name: &str, status: Status) {
        self.scans.count_scan(name, status);
        self.touch();
    }

    pub fn count_storage_error(&self, name: &str) {
        self.scans.count_storage_error(name);
        self.touch();
    }

    pub fn set_expired_rules(&self, name: &str, count: usize) {
        self.scans.set_expired_rules(name, count);
        self.touch();
    }

    pub fn set_schedule(&self, name: &str, next: Option<DateTime<Utc>>, interval_seconds: f64) {
        self.schedule.set_schedule(name, next, interval_seconds);
        self.touch();
    }

    pub fn set_in_progress(&self, name: &str, running: bool) {
        self.schedule.set_in_progress(name, running);
        self.touch();
    }

    /// Makes every series of a removed environment disappear.
    pub fn forget(&self, name: &str) {
        self.scans.forget(name);
        self.checks.forget(name);
        self.schedule.forget(name);
        self.touch();
    }

    /// Sets the unmanaged-guest gauges from a check (`None`: the check is not configured,
    /// every series disappears).
    pub fn show_unmanaged(&self, result: Option<&Unmanaged>, max_series: usize) {
        self.unmanaged.show(result, max_series);
        self.touch();
    }

    /// Shows an attribution poll and the cluster-log turn-overs it saw (`None`: attribution
    /// is off, its series disappear).
    pub fn show_attribution(&self, status: Option<&crate::attribution::PollStatus>, new_gaps: u64) {
        self.attribution.show(status, new_gaps);
        self.touch();
    }

    /// Counts the change signals one read of Proxmox found.
    pub fn count_signals(&self, found: &[crate::report::SignalSource]) {
        if found.is_empty() {
            return;
        }
        self.attribution.count_signals(found);
        self.touch();
    }

    /// Says how people reach the exporter.
    pub fn show_web(&self, external_url: Option<&str>, tls: bool) {
        self.web.clear();
        self.web
            .get_or_create(&WebLabels {
                external_url: external_url.unwrap_or_default().to_owned(),
                scheme: if tls { "https" } else { "http" }.to_owned(),
            })
            .set(1);
        self.touch();
    }

    /// Shows this replica's shard.
    pub fn show_shard(&self, shard: crate::shard::Shard) {
        self.shard_ordinal.clear();
        self.shard_ordinal
            .get_or_create(&ShardLabels {
                shard_ordinal: shard.ordinal.to_string(),
            })
            .set(i64::from(shard.ordinal));
        self.total_shards.set(i64::from(shard.total));
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
