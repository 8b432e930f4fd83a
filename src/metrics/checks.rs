//! Continuous validation's families: the last plan's check objects per status
//! (`tfdrift_checks`, HCP Terraform's passed/failed/errored/unknown) and one series per
//! failing object with its message (`tfdrift_check_failed_info`, for the alert's text).

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{CheckFailed, EnvCheckStatus};
use crate::report::{CheckStatus, Report, Status, count_checks};
use crate::text::label;

/// A check's address in a label, at most (a `for_each` key can be long).
const ADDRESS_MAX: usize = 512;
/// A check's message in a label, at most.
const MESSAGE_MAX: usize = 200;

#[derive(Debug, Default)]
pub(super) struct CheckMetrics {
    checks: Family<EnvCheckStatus, Gauge>,
    failed: Family<CheckFailed, Gauge>,
    /// The `tfdrift_check_failed_info` series of each environment, to replace them whole.
    failed_series: Mutex<HashMap<String, Vec<CheckFailed>>>,
}

impl CheckMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "checks",
            "Check objects of the last plan (check blocks, conditions, validations) per status: pass, fail, error, unknown",
            self.checks.clone(),
        );
        r.register(
            "check_failed_info",
            "One series per failing or errored check object of the last plan, with its first message (bounded per environment)",
            self.failed.clone(),
        );
    }

    /// Shows the checks of `name`'s latest report. A scan that failed before it had a plan
    /// says nothing of them: the last plan's results stay. A plan without checks removes
    /// them.
    pub(super) fn show(&self, name: &str, report: &Report, max_series: usize) {
        if report.checks.is_empty() {
            if report.status != Status::Error {
                self.forget(name);
            }
            return;
        }
        for (status, count) in CheckStatus::ALL
            .into_iter()
            .zip(count_checks(&report.checks))
        {
            self.checks
                .get_or_create(&EnvCheckStatus {
                    environment: name.to_owned(),
                    status,
                })
                .set(count as i64);
        }
        let series: Vec<CheckFailed> = report
            .checks
            .iter()
            .filter(|c| c.status.failed())
            .take(max_series)
            .map(|c| CheckFailed {
                environment: name.to_owned(),
                address: label(&c.address, ADDRESS_MAX),
                kind: c.kind,
                message: label(
                    c.first_message().lines().next().unwrap_or_default().trim(),
                    MESSAGE_MAX,
                ),
            })
            .collect();
        self.replace_failed(name, series);
    }

    fn replace_failed(&self, name: &str, series: Vec<CheckFailed>) {
        let mut known = self.failed_series.lock().unwrap_or_else(|p| p.into_inner());
        for old in known.remove(name).unwrap_or_default() {
            self.failed.remove(&old);
        }
        for s in &series {
            self.failed.get_or_create(s).set(1);
        }
        if !series.is_empty() {
            known.insert(name.to_owned(), series);
        }
    }

    /// Removes every series of `name`.
    pub(super) fn forget(&self, name: &str) {
        for status in CheckStatus::ALL {
            self.checks.remove(&EnvCheckStatus {
                environment: name.to_owned(),
                status,
            });
        }
        self.replace_failed(name, Vec::new());
    }
}
