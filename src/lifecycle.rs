//! The drift lifecycle: since when an environment drifts, since when each change is there,
//! and which scan resolved a drift. Each scan carries it on from the environment's previous
//! scan that did not fail (a failed scan does not break a run), read from the history, so
//! it survives restarts.

use std::collections::HashMap;

use chrono::{DateTime, Timelike, Utc};
use serde::Deserialize;

use crate::report::{Action, Report, Status};

/// What the previous scan that did not fail says about the run, read from its stored file
/// (only these fields: a report of 200,000 changes is not held whole).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Run {
    status: Option<Status>,
    #[serde(default, with = "crate::report::rfc3339_seconds")]
    drift_since: Option<DateTime<Utc>>,
    #[serde(default)]
    changes: Vec<Mark>,
}

/// One change of that scan: its address and since when it is there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Mark {
    address: String,
    action: Action,
    #[serde(default, with = "crate::report::rfc3339_seconds")]
    since: Option<DateTime<Utc>>,
}

impl Run {
    /// The run as `report` leaves it, as its stored file says it (times to the second):
    /// the same whether the next scan reads it from memory or, after a restart, from disk.
    pub fn of(report: &Report) -> Run {
        let second = |t: Option<DateTime<Utc>>| t.and_then(|t| t.with_nanosecond(0));
        Run {
            status: Some(report.status),
            drift_since: second(report.drift_since),
            changes: report
                .changes
                .iter()
                .map(|c| Mark {
                    address: c.address.clone(),
                    action: c.action,
                    since: second(c.since),
                })
                .collect(),
        }
    }

    /// A run ended by a conform scan (known from the index, whatever its file).
    pub fn conform() -> Run {
        Run {
            status: Some(Status::Conform),
            ..Run::default()
        }
    }

    /// The start of the drift this run is in, when it is one.
    fn drifting_since(&self) -> Option<DateTime<Utc>> {
        (self.status == Some(Status::Drift))
            .then_some(self.drift_since)
            .flatten()
    }
}

/// Sets `drift_since`, each counted change's `since` and `resolved_drift_since` of a new
/// report from the environment's previous scan that did not fail (`None`: there is none).
///
/// Nothing carried is ever after this scan's own start: a scan stamped by a clock that ran
/// ahead must not leave the run starting in the future once the clock is right again.
pub fn carry(report: &mut Report, previous: Option<&Run>) {
    let at = report.started_at().or(report.finished_at());
    let not_after = |t: DateTime<Utc>| at.map_or(t, |at| t.min(at));
    let ongoing = previous.and_then(Run::drifting_since).map(not_after);
    match report.status {
        Status::Drift => {
            report.drift_since = ongoing.or(at);
            let before: HashMap<&str, DateTime<Utc>> = match (ongoing, previous) {
                (Some(_), Some(run)) => run
                    .changes
                    .iter()
                    .filter(|m| m.action.is_counted())
                    .filter_map(|m| Some((m.address.as_str(), not_after(m.since?))))
                    .collect(),
                _ => HashMap::new(),
            };
            for change in report.changes.iter_mut().filter(|c| c.action.is_counted()) {
                change.since = before.get(change.address.as_str()).copied().or(at);
            }
        }
        // The run goes on through a failed scan: nothing is known of the changes meanwhile.
        Status::Error => report.drift_since = ongoing,
        Status::Conform => report.resolved_drift_since = ongoing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Change, ErrorReason, PlanOutcome, ScanError, Stamp};

    fn at(minute: u32) -> DateTime<Utc> {
        format!("2026-11-25T03:{minute:02}:00Z").parse().unwrap()
    }

    fn change(address: &str) -> Change {
        Change::outside_update(address)
    }

    fn scan(minute: u32, addresses: &[&str]) -> Report {
        let mut outcome = PlanOutcome::no_changes();
        outcome.changes = addresses.iter().map(|a| change(a)).collect();
        let mut r = Report::from_outcome(outcome);
        r.stamp = Some(Stamp::at("lab-x", "lab", at(minute)));
        r
    }

    fn failed(minute: u32) -> Report {
        let mut r = Report::failed(ScanError {
            reason: ErrorReason::Connectivity,
            summary: "unreachable".into(),
            detail: String::new(),
        });
        r.stamp = Some(Stamp::at("lab-x", "lab", at(minute)));
        r
    }

    /// Regression: a drift scan stamped a year ahead (a clock that ran ahead) left the run,
    /// and tfdrift_drift_since_timestamp_seconds, a year in the future for as long as it
    /// lasted. Nothing carried is after the carrying scan's own start.
    #[test]
    fn a_run_started_by_a_clock_that_ran_ahead_never_starts_after_the_next_scan() {
        let mut ahead = scan(0, &["a"]);
        let year = chrono::Duration::days(365);
        ahead.stamp = Some(Stamp::at("lab-x", "lab", at(0) + year));
        carry(&mut ahead, None);
        assert_eq!(ahead.drift_since, Some(at(0) + year));
        let mut next = scan(5, &["a", "b"]);
        carry(&mut next, Some(&Run::of(&ahead)));
        assert_eq!(next.drift_since, Some(at(5)), "not after its own start");
        assert!(next.changes.iter().all(|c| c.since == Some(at(5))));
        let mut resolved = scan(9, &[]);
        carry(&mut resolved, Some(&Run::of(&next)));
        assert_eq!(resolved.resolved_drift_since, Some(at(5)));
    }

    #[test]
    fn a_drift_run_keeps_its_start_through_a_failed_scan_and_each_change_its_own() {
        let mut first = scan(0, &["a"]);
        carry(&mut first, None);
        assert_eq!(first.drift_since, Some(at(0)));
        assert_eq!(first.changes[0].since, Some(at(0)));

        let mut broken = failed(10);
        carry(&mut broken, Some(&Run::of(&first)));
        assert_eq!(
            broken.drift_since,
            Some(at(0)),
            "a failed scan does not break the run"
        );

        // The next scan carries on from the last scan that did not fail.
        let mut second = scan(20, &["a", "b"]);
        carry(&mut second, Some(&Run::of(&first)));
        assert_eq!(second.drift_since, Some(at(0)));
        assert_eq!(second.changes[0].since, Some(at(0)));
        assert_eq!(
            second.changes[1].since,
            Some(at(20)),
            "b is new in this scan"
        );

        let mut resolved = scan(30, &[]);
        carry(&mut resolved, Some(&Run::of(&second)));
        assert_eq!(resolved.status, Status::Conform);
        assert_eq!(resolved.drift_since, None);
        assert_eq!(resolved.resolved_drift_since, Some(at(0)));

        // After a conform scan a new drift is a new run.
        let mut again = scan(40, &["a"]);
        carry(&mut again, Some(&Run::of(&resolved)));
        assert_eq!(again.drift_since, Some(at(40)));
        assert_eq!(again.changes[0].since, Some(at(40)));
    }

    #[test]
    fn a_run_reads_from_a_stored_report_without_holding_its_values() {
        let mut r = scan(5, &["web"]);
        carry(&mut r, None);
        let text = serde_json::to_string(&r).unwrap();
        let run: Run = serde_json::from_str(&text).unwrap();
        assert_eq!(run, Run::of(&r));
        // A report from before the lifecycle has neither field: a new run starts.
        let old: Run = serde_json::from_str(
            r#"{"status":"drift","changes":[{"address":"web","action":"update"}]}"#,
        )
        .unwrap();
        let mut next = scan(9, &["web"]);
        carry(&mut next, Some(&old));
        assert_eq!(next.drift_since, Some(at(9)));
    }
}
