//! The history's index file: one [`IndexLine`] per stored report, appended in the order the
//! reports were written, so that "the latest" is the one written last whatever its clock
//! said, and start-up reads one small file per environment instead of every report. Healed
//! at start from the report files when the two disagree (blocking code).

use std::collections::HashMap;
use std::fs;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::atomic::{StoreError, at, write_atomic};
use super::layout::Layout;
use super::lines::{append_lines, read_lines};
use super::summary::{ScanSummary, read_summary};
use crate::lifecycle::Run;
use crate::report::{Report, Status};

/// One stored report in the history's index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexLine {
    pub id: String,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    pub status: Status,
}

impl IndexLine {
    pub fn of(report: &Report) -> Option<IndexLine> {
        let stamp = report.stamp.as_ref()?;
        Some(IndexLine {
            id: stamp.id.clone(),
            finished_at: Some(stamp.finished_at),
            status: report.status,
        })
    }
}

/// The history of one environment as its directory holds it.
#[derive(Debug, Default)]
struct HistoryFiles {
    /// The index, in the order written; lines that do not parse are left out.
    index: Vec<IndexLine>,
    /// Whether the index file exists at all (storage from before the index).
    has_index: bool,
    /// Every report id with a file, and the file's modification time.
    files: Vec<(String, SystemTime)>,
}

/// Reads the index and lists the report files of `env`.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
fn history_files(layout: &Layout, env: &str) -> HistoryFiles {
    let mut out = HistoryFiles::default();
    if let Some(index) = read_lines(&layout.index(env)) {
        out.has_index = true;
        out.index = index;
    }
    for entry in fs::read_dir(layout.history(env))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if id.starts_with('.') {
            continue;
        }
        let written = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        out.files.push((id.to_owned(), written));
    }
    out
}

// Every write below is made by the `History` under its `files` lock.

/// Appends one line to the index of `env` (one write of a whole line, then fsync; a crash
/// leaves at most a torn last line, which reading skips and the next start heals).
pub(super) fn append_index(layout: &Layout, env: &str, line: &IndexLine) -> Result<(), StoreError> {
    append_lines(&layout.index(env), std::slice::from_ref(line))
}

/// The length of the index file of `env` (0 when there is none).
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn index_len(layout: &Layout, env: &str) -> u64 {
    fs::metadata(layout.index(env)).map_or(0, |m| m.len())
}

/// Takes the lines of `ids` out of the index of `env` as it is on disk now (a line appended
/// since the prune chose is kept), atomically.
pub(super) fn remove_from_index(
    layout: &Layout,
    env: &str,
    ids: &[Box<str>],
) -> Result<(), StoreError> {
    let lines: Vec<IndexLine> = read_lines(&layout.index(env)).unwrap_or_default();
    let kept: Vec<IndexLine> = lines
        .into_iter()
        .filter(|l| !ids.iter().any(|id| **id == *l.id))
        .collect();
    write_index(layout, env, &kept)
}

fn write_index(layout: &Layout, env: &str, lines: &[IndexLine]) -> Result<(), StoreError> {
    let path = layout.index(env);
    let mut text = Vec::with_capacity(lines.len() * 96);
    for line in lines {
        serde_json::to_writer(&mut text, line).map_err(|e| at(&path)(std::io::Error::other(e)))?;
        text.push(b'\n');
    }
    write_atomic(&path, &text)
}

/// Names of the environments that have a storage directory.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn stored_environments(layout: &Layout) -> Vec<String> {
    fs::read_dir(layout.envs())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The index lines of one environment, in the order written, healed against its files
/// (a crash between a report and its line, a storage from before the index), and the drift
/// run the last scan written that did not fail left.
pub(super) fn load_env(layout: &Layout, env: &str) -> (Vec<IndexLine>, Option<Run>) {
    let found = history_files(layout, env);
    let on_disk: HashMap<&str, SystemTime> = found
        .files
        .iter()
        .map(|(id, t)| (id.as_str(), *t))
        .collect();
    // The last line of an id wins (a report rewritten under the same id).
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, line) in found.index.iter().enumerate() {
        position.insert(line.id.as_str(), i);
    }
    let mut lines: Vec<IndexLine> = found
        .index
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            position.get(l.id.as_str()) == Some(i) && on_disk.contains_key(l.id.as_str())
        })
        .map(|(_, l)| l.clone())
        .collect();
    let stale = found.index.len() != lines.len();
    // Files the index does not know: read them once, in the order they were written.
    let mut missing: Vec<(&str, SystemTime)> = found
        .files
        .iter()
        .filter(|(id, _)| !position.contains_key(id.as_str()))
        .map(|(id, t)| (id.as_str(), *t))
        .collect();
    missing.sort_by_key(|(id, t)| (*t, *id));
    if !missing.is_empty() {
        tracing::info!(environment = %env, reports = missing.len(), rebuilt = !found.has_index, "adding stored reports to the history index");
    }
    let mut healed = 0;
    for (id, _) in missing {
        let summary: Option<ScanSummary> = layout.report(env, id).and_then(|p| read_summary(&p));
        match summary {
            Some(s) => {
                lines.push(IndexLine {
                    id: id.to_owned(),
                    finished_at: s.finished_at,
                    status: s.status,
                });
                healed += 1;
            }
            None => tracing::warn!(environment = %env, id, "skipping an unreadable stored report"),
        }
    }
    if (stale || healed > 0)
        && let Err(e) = write_index(layout, env, &lines)
    {
        tracing::warn!(environment = %env, error = %e, "cannot rewrite the history index");
    }
    // Reports only the heal found (their line lost in a crash) were written after what the
    // index says; before them, the index as it was, files gone or not.
    let run = last_run(layout, env, &lines[lines.len() - healed..])
        .or_else(|| last_run(layout, env, &found.index));
    (lines, run)
}

/// The drift run as the newest scan of `lines` that did not fail left it, in the order
/// written, never by timestamp. A conform line ends the run even when its file is gone; a
/// drift whose file is gone says nothing, the one before may.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
fn last_run(layout: &Layout, env: &str, lines: &[IndexLine]) -> Option<Run> {
    lines
        .iter()
        .rev()
        .filter(|l| l.status != Status::Error)
        .find_map(|l| match l.status {
            Status::Conform => Some(Run::conform()),
            _ => {
                let file = fs::File::open(layout.report(env, &l.id)?).ok()?;
                serde_json::from_reader(std::io::BufReader::new(file)).ok()
            }
        })
}

/// The full stored report `id` of `env`, if it reads.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn read_report(layout: &Layout, env: &str, id: &str) -> Result<Report, String> {
    let path = layout
        .report(env, id)
        .ok_or_else(|| format!("{id:?} is not a report id"))?;
    let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The latest readable report of `env` (walking back over unreadable ones, which leave
/// `lines`).
pub(super) fn latest_readable(
    layout: &Layout,
    env: &str,
    lines: &mut Vec<IndexLine>,
) -> Option<Report> {
    while let Some(line) = lines.last() {
        match read_report(layout, env, &line.id) {
            Ok(report) => return Some(report),
            Err(e) => {
                tracing::warn!(environment = %env, id = %line.id, error = %e, "skipping an unreadable stored report");
                lines.pop();
            }
        }
    }
    None
}
