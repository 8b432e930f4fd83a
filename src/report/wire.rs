//! The JSON of a [`Report`] (interface §7), field for field and in order: the one place its
//! shape is spelt, for writing (borrowing the report) and for reading (owning what it reads).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    AttributionError, Change, CheckResult, Report, ScanError, Stamp, Status, Summary, Tool,
    Trigger, rfc3339_seconds,
};

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    id: Option<Cow<'a, str>>,
    environment: Option<Cow<'a, str>>,
    status: Status,
    #[serde(default, with = "rfc3339_seconds")]
    started_at: Option<DateTime<Utc>>,
    #[serde(default, with = "rfc3339_seconds")]
    finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    duration_seconds: Option<f64>,
    #[serde(default)]
    tool: Option<Cow<'a, Tool>>,
    summary: Summary,
    #[serde(default, with = "rfc3339_seconds")]
    drift_since: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "rfc3339_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    resolved_drift_since: Option<DateTime<Utc>>,
    changes: Cow<'a, [Change]>,
    ignored: Cow<'a, [Change]>,
    error: Option<Cow<'a, ScanError>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attribution_error: Option<AttributionError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trigger: Option<Cow<'a, Trigger>>,
    /// `[]` when the plan had none; reports stored before checks were read have none.
    #[serde(default)]
    checks: Cow<'a, [CheckResult]>,
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let stamp = self.stamp.as_ref();
        Wire {
            id: stamp.map(|t| Cow::Borrowed(t.id.as_str())),
            environment: stamp.map(|t| Cow::Borrowed(t.environment.as_str())),
            status: self.status,
            started_at: stamp.map(|t| t.started_at),
            finished_at: stamp.map(|t| t.finished_at),
            duration_seconds: stamp.map(|t| t.duration_seconds),
            tool: self.tool.as_ref().map(Cow::Borrowed),
            summary: self.summary,
            drift_since: self.drift_since,
            resolved_drift_since: self.resolved_drift_since,
            changes: Cow::Borrowed(&self.changes),
            ignored: Cow::Borrowed(&self.ignored),
            error: self.error.as_ref().map(Cow::Borrowed),
            attribution_error: self.attribution_error,
            trigger: self.trigger.as_ref().map(Cow::Borrowed),
            checks: Cow::Borrowed(&self.checks),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Report {
    /// A report with an id, an environment and both times has a stamp (a report stored
    /// before durations were kept reads as 0 s); any other has none.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Report, D::Error> {
        let w = Wire::deserialize(d)?;
        let stamp = match (w.id, w.environment, w.started_at, w.finished_at) {
            (Some(id), Some(environment), Some(started_at), Some(finished_at)) => Some(Stamp {
                id: id.into_owned(),
                environment: environment.into_owned(),
                started_at,
                finished_at,
                duration_seconds: w.duration_seconds.unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Report {
            stamp,
            status: w.status,
            tool: w.tool.map(Cow::into_owned),
            summary: w.summary,
            drift_since: w.drift_since,
            resolved_drift_since: w.resolved_drift_since,
            changes: w.changes.into_owned(),
            ignored: w.ignored.into_owned(),
            error: w.error.map(Cow::into_owned),
            attribution_error: w.attribution_error,
            trigger: w.trigger.map(Cow::into_owned),
            checks: w.checks.into_owned(),
        })
    }
}
