//! The history of scans kept on disk (see [`crate::store`] for the layout): an in-memory
//! index of every stored report's summary, loaded at start, appended after each scan and
//! pruned after `retention`. Full reports are read from disk when asked for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::report::{Report, ScanError, Status, Summary, Tool};

/// A stored scan without its changes (what `/history` lists).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanSummary {
    pub id: Option<String>,
    pub environment: Option<String>,
    pub status: Status,
    #[serde(serialize_with = "seconds")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "seconds")]
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub tool: Option<Tool>,
    pub summary: Summary,
    pub error: Option<ScanError>,
}

fn seconds<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

impl From<&Report> for ScanSummary {
    fn from(r: &Report) -> Self {
        ScanSummary {
            id: r.id.clone(),
            environment: r.environment.clone(),
            status: r.status,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_seconds: r.duration_seconds,
            tool: r.tool.clone(),
            summary: r.summary,
            error: r.error.clone(),
        }
    }
}

/// The index of stored scans, per environment, oldest first.
#[derive(Debug)]
pub struct History {
    storage: PathBuf,
    index: Mutex<BTreeMap<String, Vec<ScanSummary>>>,
}

/// What loading found for one environment.
#[derive(Debug, Default)]
pub struct Restored {
    /// The newest stored report.
    pub latest: Option<Report>,
    /// End of the newest scan that did not error.
    pub last_success: Option<DateTime<Utc>>,
}

fn is_report_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
        && !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

impl History {
    /// Reads every stored report under `storage` (a corrupt or partial file is skipped with
    /// a warning) and returns the index with, per environment, what to restore.
    pub fn load(storage: &Path) -> (History, BTreeMap<String, Restored>) {
        let mut index: BTreeMap<String, Vec<ScanSummary>> = BTreeMap::new();
        let mut restored: BTreeMap<String, Restored> = BTreeMap::new();
        let envs = std::fs::read_dir(storage.join("envs"))
            .into_iter()
            .flatten()
            .flatten();
        for env_dir in envs {
            let env = env_dir.file_name().to_string_lossy().into_owned();
            // Times are stored to the second: within one second, the file written last is
            // the newer scan.
            let mut reports: Vec<(Report, std::time::SystemTime)> = Vec::new();
            let files = std::fs::read_dir(env_dir.path().join("history"))
                .into_iter()
                .flatten()
                .flatten();
            for file in files.map(|f| f.path()).filter(|p| is_report_file(p)) {
                let written = std::fs::metadata(&file)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                match std::fs::read(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice::<Report>(&b).map_err(|e| e.to_string()))
                {
                    Ok(report) => reports.push((report, written)),
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "skipping an unreadable stored report")
                    }
                }
            }
            reports.sort_by_key(|(r, written)| (r.finished_at, *written));
            let mut reports: Vec<Report> = reports.into_iter().map(|(r, _)| r).collect();
            let entry = restored.entry(env.clone()).or_default();
            entry.last_success = reports
                .iter()
                .rev()
                .find(|r| r.status != Status::Error)
                .and_then(|r| r.finished_at);
            index.insert(env, reports.iter().map(ScanSummary::from).collect());
            entry.latest = reports.pop();
        }
        let history = History {
            storage: storage.to_owned(),
            index: Mutex::new(index),
        };
        (history, restored)
    }

    /// Adds a stored report to the index.
    pub fn record(&self, report: &Report) {
        let Some(env) = report.environment.clone() else {
            return;
        };
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index
            .entry(env)
            .or_default()
            .push(ScanSummary::from(report));
    }

    /// Summaries newest first, of one environment or all, finished at or after `since`.
    pub fn list(&self, env: Option<&str>, since: DateTime<Utc>) -> Vec<ScanSummary> {
        let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ScanSummary> = index
            .iter()
            .filter(|(name, _)| env.is_none_or(|e| e == name.as_str()))
            // Newest first, also among scans that ended in the same second (the index is in
            // the order they were stored, and the sort is stable).
            .flat_map(|(_, scans)| scans.iter().rev())
            .filter(|s| s.finished_at.is_some_and(|t| t >= since))
            .cloned()
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.finished_at));
        out
    }

    /// The full stored report `id` of `env`, if there is one.
    pub fn read(&self, env: &str, id: &str) -> Option<Report> {
        let safe = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !safe(env) || !safe(id) {
            return None;
        }
        let path = self
            .storage
            .join("envs")
            .join(env)
            .join("history")
            .join(format!("{id}.json"));
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Deletes reports that finished more than `retention` before `now`.
    pub fn prune(&self, retention: Duration, now: DateTime<Utc>) {
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            return;
        };
        let cutoff = now - retention;
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        for (env, scans) in index.iter_mut() {
            scans.retain(|s| {
                let keep = s.finished_at.is_none_or(|t| t >= cutoff);
                if !keep && let Some(id) = &s.id {
                    let path = self.storage.join("envs").join(env).join("history").join(format!("{id}.json"));
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(file = %path.display(), error = %e, "cannot prune an old report");
                        return true;
                    }
                }
                keep
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{PlanOutcome, Report};

    fn report(env: &str, id: &str, finished: DateTime<Utc>) -> Report {
        let mut r = Report::from_outcome(PlanOutcome {
            changes: vec![],
            ignored: vec![],
            error: None,
            tool_version: None,
        });
        r.id = Some(id.to_owned());
        r.environment = Some(env.to_owned());
        r.finished_at = Some(finished);
        r
    }

    #[test]
    fn old_reports_are_pruned_and_broken_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let history = dir.path().join("envs/lab/history");
        std::fs::create_dir_all(&history).unwrap();
        let now = Utc::now();
        let old = report("lab", "lab-old", now - chrono::Duration::days(100));
        let new = report("lab", "lab-new", now - chrono::Duration::days(1));
        for r in [&old, &new] {
            let path = history.join(format!("{}.json", r.id.as_deref().unwrap()));
            std::fs::write(path, serde_json::to_vec(r).unwrap()).unwrap();
        }
        std::fs::write(history.join("lab-broken.json"), b"{\"id\": ").unwrap();
        let (h, restored) = History::load(dir.path());
        assert_eq!(
            restored["lab"].latest.as_ref().unwrap().id.as_deref(),
            Some("lab-new")
        );
        assert_eq!(
            h.list(None, DateTime::<Utc>::MIN_UTC).len(),
            2,
            "the broken file is skipped"
        );
        h.prune(Duration::from_secs(90 * 86_400), now);
        assert!(!history.join("lab-old.json").exists());
        assert!(history.join("lab-new.json").exists());
        let listed = h.list(Some("lab"), DateTime::<Utc>::MIN_UTC);
        assert_eq!(listed.len(), 1);
        assert!(h.read("lab", "lab-new").is_some());
        assert!(h.read("lab", "../lab-new").is_none(), "no path traversal");
    }
}

#[cfg(test)]
mod same_second {
    use super::*;
    use crate::report::{PlanOutcome, Report, Status};

    /// Regression: two scans ending in the same second (times are stored to the second) must
    /// restore the one written last, not whichever the directory lists first.
    #[test]
    fn the_report_written_last_is_the_latest_within_one_second() {
        let dir = tempfile::tempdir().unwrap();
        let history = dir.path().join("envs/lab/history");
        std::fs::create_dir_all(&history).unwrap();
        let t = Utc::now();
        for (id, status) in [("lab-b", Status::Conform), ("lab-a", Status::Drift)] {
            let mut r = Report::from_outcome(PlanOutcome {
                changes: vec![],
                ignored: vec![],
                error: None,
                tool_version: None,
            });
            r.status = status;
            r.id = Some(id.to_owned());
            r.environment = Some("lab".to_owned());
            r.finished_at = Some(t);
            std::fs::write(
                history.join(format!("{id}.json")),
                serde_json::to_vec(&r).unwrap(),
            )
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (h, restored) = History::load(dir.path());
        assert_eq!(
            restored["lab"].latest.as_ref().unwrap().id.as_deref(),
            Some("lab-a")
        );
        assert_eq!(
            h.list(Some("lab"), DateTime::<Utc>::MIN_UTC)[0]
                .id
                .as_deref(),
            Some("lab-a")
        );
    }
}
