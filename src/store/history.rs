//! The history of scans in memory: per environment one small entry per stored report (id,
//! end, status) in the order the reports were written, and the drift run the last of them
//! left, loaded at start from the index file ([`super::index`]), grown by each commit
//! ([`super::commit`]) and pruned after `retention`. Summaries and full reports are read
//! from their files when asked for, a page at a time, so that 100,000 stored scans cost a
//! few megabytes and start in a blink.
//!
//! The `History` is the one writer of the index files: commits append, prunes rewrite, the
//! start heals, all under its `files` lock. Its `index` mutex guards memory only: file
//! reads and writes happen outside it (blocking code, called from [`super::Storage`] off the
//! runtime).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::index::{
    IndexLine, index_len, latest_readable, load_env, read_report, remove_from_index,
    stored_environments,
};
use super::layout::Layout;
pub use super::summary::ScanSummary;
use super::summary::read_summary;
use crate::lifecycle::Run;
use crate::report::{Report, Status};

/// One stored scan in memory.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) id: Box<str>,
    pub(super) finished_at: Option<DateTime<Utc>>,
    pub(super) status: Status,
    /// Position in the order written (grows, never reused within a run).
    seq: u64,
}

impl From<&IndexLine> for Entry {
    fn from(l: &IndexLine) -> Entry {
        Entry {
            id: l.id.as_str().into(),
            finished_at: l.finished_at,
            status: l.status,
            seq: 0,
        }
    }
}

/// The index of stored scans, per environment, in the order written.
#[derive(Debug)]
pub struct History {
    pub(super) layout: Layout,
    /// Held only to read or change the entries: never across file I/O.
    index: Mutex<Index>,
    /// Held by every write of an index file, so that a line appended while a prune rewrites
    /// the file is kept (it was lost, and the next scan then carried its lifecycle from an
    /// older one).
    files: Mutex<()>,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    envs: BTreeMap<String, EnvIndex>,
    next_seq: u64,
}

/// What memory holds of one environment's history.
#[derive(Debug, Default)]
pub(super) struct EnvIndex {
    pub(super) entries: Vec<Entry>,
    /// The drift run as the scan written last that did not fail left it (`None`: none did).
    pub(super) run: Option<Run>,
    /// The length of the index file when this process last read or wrote it; another length
    /// means another process (a CLI scan) wrote it. `None`: not read yet (the CLI reads an
    /// environment's index when it first commits a scan of it).
    pub(super) synced: Option<u64>,
    /// The last id given (base, suffix): a report that could not be written leaves no entry,
    /// and its id is not given again.
    pub(super) issued: Option<(String, u32)>,
}

impl Index {
    /// Takes `lines` (with the run they leave) as the whole history of `env`.
    fn replace(&mut self, env: &str, lines: &[IndexLine], run: Option<Run>, synced: u64) {
        let mut entries = Vec::with_capacity(lines.len());
        for line in lines {
            let mut e = Entry::from(line);
            e.seq = self.next_seq;
            self.next_seq += 1;
            entries.push(e);
        }
        let slot = self.envs.entry(env.to_owned()).or_default();
        slot.entries = entries;
        slot.run = run;
        slot.synced = Some(synced);
    }

    /// Adds a scan just written to the index file.
    pub(super) fn push(&mut self, env: &str, line: &IndexLine) {
        let mut e = Entry::from(line);
        e.seq = self.next_seq;
        self.next_seq += 1;
        self.envs.entry(env.to_owned()).or_default().entries.push(e);
    }

    pub(super) fn env(&mut self, env: &str) -> &mut EnvIndex {
        self.envs.entry(env.to_owned()).or_default()
    }

    fn entries(&self, env: &str) -> Option<&Vec<Entry>> {
        self.envs.get(env).map(|e| &e.entries)
    }
}

/// What loading found for one environment.
#[derive(Debug, Default)]
pub struct Restored {
    /// The stored report written last (skipping files that no longer read).
    pub latest: Option<Report>,
    /// End of the newest scan that did not error.
    pub last_success: Option<DateTime<Utc>>,
}

/// One page of `/history`.
#[derive(Debug, Serialize)]
pub struct Page {
    pub scans: Vec<ScanSummary>,
    /// Give it as `before` for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// A scan in a listing: (finished_at, seq, environment, id).
type PageKey = (Option<DateTime<Utc>>, u64, String, Box<str>);

/// What `/history` asks for.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub environment: Option<&'a str>,
    pub since: DateTime<Utc>,
    /// A cursor from a previous page.
    pub before: Option<&'a str>,
    pub limit: usize,
}

impl History {
    /// Reads the index of every environment under `storage`, heals it from the report files
    /// when they disagree, and returns it with what to restore.
    pub fn load(storage: &Path) -> (History, BTreeMap<String, Restored>) {
        let layout = Layout::new(storage);
        let mut index = Index::default();
        let mut restored = BTreeMap::new();
        for env in stored_environments(&layout) {
            let (mut lines, run) = load_env(&layout, &env);
            let synced = index_len(&layout, &env);
            index.replace(&env, &lines, run, synced);
            let latest = latest_readable(&layout, &env, &mut lines);
            let last_success = lines
                .iter()
                .rev()
                .find(|l| l.status != Status::Error)
                .and_then(|l| l.finished_at);
            restored.insert(
                env.clone(),
                Restored {
                    latest,
                    last_success,
                },
            );
        }
        let history = History {
            layout,
            index: Mutex::new(index),
            files: Mutex::new(()),
        };
        (history, restored)
    }

    /// A history that has read no index yet: each environment's is read when first needed
    /// (the CLI, which commits the scans of a few environments).
    pub fn empty(storage: &Path) -> History {
        History {
            layout: Layout::new(storage),
            index: Mutex::new(Index::default()),
            files: Mutex::new(()),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Held while an index file is written.
    pub(super) fn writing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the index of `env` again when this process has not read it yet or another
    /// process wrote it since (its length changed): a CLI scan's report is then known to the
    /// next commit's lifecycle and id.
    pub(super) fn sync(&self, env: &str) {
        let known = self.lock().envs.get(env).and_then(|e| e.synced);
        if known == Some(index_len(&self.layout, env)) {
            return;
        }
        let _writing = self.writing();
        let (lines, run) = load_env(&self.layout, env);
        let len = index_len(&self.layout, env);
        if known.is_some() {
            tracing::info!(environment = %env, reports = lines.len(), "the history index was written by another process (a CLI scan): read again");
        }
        self.lock().replace(env, &lines, run, len);
    }

    /// Every stored scan of `env` that ended at or after `since`, oldest first: (id, end,
    /// status), from memory.
    pub fn marks(&self, env: &str, since: DateTime<Utc>) -> Vec<(String, DateTime<Utc>, Status)> {
        let index = self.lock();
        let mut marks: Vec<(String, DateTime<Utc>, Status)> = index
            .entries(env)
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.id.to_string(), e.finished_at?, e.status)))
            .filter(|(_, t, _)| *t >= since)
            .collect();
        marks.sort_by_key(|(_, t, _)| *t);
        marks
    }

    /// The stored report of `env` written last, skipping files that no longer read.
    pub fn latest(&self, env: &str) -> Option<Report> {
        let ids: Vec<Box<str>> = {
            let index = self.lock();
            index
                .entries(env)?
                .iter()
                .rev()
                .map(|e| e.id.clone())
                .collect()
        };
        ids.iter().find_map(|id| self.read(env, id))
    }

    /// True when `cursor` (`env.id`) is a stored scan that finished before `since`.
    fn older_than(&self, cursor: &str, since: DateTime<Utc>) -> bool {
        let Some((env, id)) = cursor.split_once('.') else {
            return false;
        };
        let index = self.lock();
        index.entries(env).is_some_and(|entries| {
            entries
                .iter()
                .any(|e| &*e.id == id && e.finished_at.is_some_and(|t| t < since))
        })
    }

    /// Every match of `q`, newest first (by end, then by the order written).
    fn keys(&self, q: &Query<'_>) -> Vec<PageKey> {
        let mut keys: Vec<PageKey> = {
            let index = self.lock();
            index
                .envs
                .iter()
                .filter(|(name, _)| q.environment.is_none_or(|e| e == name.as_str()))
                .flat_map(|(name, env)| {
                    env.entries
                        .iter()
                        .filter(|e| e.finished_at.is_some_and(|t| t >= q.since))
                        .map(move |e| (e.finished_at, e.seq, name.clone(), e.id.clone()))
                })
                .collect()
        };
        keys.sort_by_key(|k| std::cmp::Reverse((k.0, k.1)));
        keys
    }

    /// A page of summaries, newest first, of one environment or all, finished at or after
    /// `since`. `Err` names a bad cursor.
    pub fn page(&self, q: &Query<'_>) -> Result<Page, String> {
        let keys = self.keys(q);
        let start = match q.before {
            None => 0,
            Some(cursor) => {
                let found = cursor
                    .split_once('.')
                    .and_then(|(env, id)| keys.iter().position(|k| k.2 == env && &*k.3 == id));
                match found {
                    Some(i) => i + 1,
                    // The cursor's scan is stored but has left the `since` window since the
                    // previous page (time went on): everything after it is older still, so
                    // this is the empty last page, not a bad cursor.
                    None if self.older_than(cursor, q.since) => {
                        return Ok(Page {
                            scans: Vec::new(),
                            next: None,
                        });
                    }
                    None => {
                        return Err(format!(
                            "before={cursor:?} is not a stored scan of this listing (pruned, or not a cursor from a previous page)"
                        ));
                    }
                }
            }
        };
        let mut scans = Vec::new();
        let mut end = start;
        for (_, _, env, id) in keys.iter().skip(start) {
            if scans.len() == q.limit {
                break;
            }
            end += 1;
            match self.summary(env, id) {
                Some(s) => scans.push(s),
                None => {
                    tracing::warn!(environment = %env, id = %id, "skipping an unreadable stored report")
                }
            }
        }
        let next = (end < keys.len() && end > 0).then(|| {
            let (_, _, env, id) = &keys[end - 1];
            format!("{env}.{id}")
        });
        Ok(Page { scans, next })
    }

    /// The summary of one stored report, read from its file as a stream (its changes are
    /// skipped, never held: a report of 200,000 changes costs no memory here).
    fn summary(&self, env: &str, id: &str) -> Option<ScanSummary> {
        read_summary(&self.layout.report(env, id)?)
    }

    /// The full stored report `id` of `env`, if there is one.
    pub fn read(&self, env: &str, id: &str) -> Option<Report> {
        read_report(&self.layout, env, id).ok()
    }

    /// Takes the entries that finished more than `retention` before `now` out of the index
    /// (memory only: [`History::delete`] removes their files, outside the lock).
    ///
    /// Age is measured against the newest stored scan as well as the clock: a clock that
    /// jumped ahead (a wrong NTP answer, a VM resumed) would otherwise delete the whole
    /// history at once. What the clock alone would have deleted is said in the log.
    pub fn take_pruned(&self, retention: Duration, now: DateTime<Utc>) -> Vec<Pruned> {
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            return Vec::new();
        };
        let mut index = self.lock();
        let newest = index
            .envs
            .values()
            .flat_map(|e| &e.entries)
            .filter_map(|e| e.finished_at)
            .max();
        let reference = super::age_reference(newest, now);
        let (cutoff, by_clock) = (reference - retention, now - retention);
        let refused = index
            .envs
            .values()
            .flat_map(|e| &e.entries)
            .filter(|e| e.finished_at.is_some_and(|t| t < by_clock && t >= cutoff))
            .count();
        if refused > 0 {
            tracing::warn!(
                reports = refused,
                newest = %newest.map(|t| t.to_rfc3339()).unwrap_or_default(),
                "not pruning reports that are older than storage.retention by the clock but not by the newest stored scan: has the clock jumped ahead?"
            );
        }
        let old = |e: &Entry| e.finished_at.is_some_and(|t| t < cutoff);
        let mut pruned = Vec::new();
        for (env, slot) in index.envs.iter_mut() {
            let entries = &mut slot.entries;
            if !entries.iter().any(old) {
                continue;
            }
            let (gone, keep): (Vec<Entry>, Vec<Entry>) =
                std::mem::take(entries).into_iter().partition(old);
            *entries = keep;
            pruned.push(Pruned {
                environment: env.clone(),
                ids: gone.into_iter().map(|e| e.id).collect(),
            });
        }
        pruned
    }

    /// Deletes the files of pruned reports and rewrites each environment's index.
    pub fn delete(&self, pruned: Vec<Pruned>) {
        for Pruned {
            environment: env,
            ids,
        } in pruned
        {
            for id in &ids {
                let Some(path) = self.layout.report(&env, id) else {
                    continue;
                };
                if let Err(e) = super::atomic::remove_if_present(&path) {
                    tracing::warn!(error = %e, "cannot prune an old report");
                }
            }
            let written = {
                let _writing = self.writing();
                let written = remove_from_index(&self.layout, &env, &ids);
                let len = index_len(&self.layout, &env);
                self.lock().env(&env).synced = Some(len);
                written
            };
            if let Err(e) = written {
                tracing::warn!(environment = %env, error = %e, "cannot rewrite the history index; the next start heals it");
            }
            tracing::debug!(environment = %env, pruned = ids.len(), "old reports pruned");
        }
    }
}

/// Reports taken out of one environment's index by pruning, whose files are still to go.
#[derive(Debug)]
pub struct Pruned {
    environment: String,
    ids: Vec<Box<str>>,
}

#[cfg(test)]
mod tests;
