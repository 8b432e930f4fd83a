//! A stored scan without its changes (what `/history` lists), read from its report file
//! as a stream: shared by the index (healing) and the history (pages).

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::report::{Report, ScanError, Status, Summary, Tool};

/// A stored scan without its changes (what `/history` lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub id: Option<String>,
    pub environment: Option<String>,
    pub status: Status,
    #[serde(with = "crate::report::rfc3339_seconds")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::report::rfc3339_seconds")]
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub tool: Option<Tool>,
    pub summary: Summary,
    #[serde(default, with = "crate::report::rfc3339_seconds")]
    pub drift_since: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "crate::report::rfc3339_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolved_drift_since: Option<DateTime<Utc>>,
    pub error: Option<ScanError>,
}

impl From<&Report> for ScanSummary {
    fn from(r: &Report) -> Self {
        ScanSummary {
            id: r.id().map(str::to_owned),
            environment: r.environment().map(str::to_owned),
            status: r.status,
            started_at: r.started_at(),
            finished_at: r.finished_at(),
            duration_seconds: r.duration_seconds(),
            tool: r.tool.clone(),
            summary: r.summary,
            drift_since: r.drift_since,
            resolved_drift_since: r.resolved_drift_since,
            error: r.error.clone(),
        }
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn read_summary(path: &Path) -> Option<ScanSummary> {
    let file = std::fs::File::open(path).ok()?;
    serde_json::from_reader(std::io::BufReader::new(file)).ok()
}
