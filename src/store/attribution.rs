//! The attribution journal: the entries the poller read from the Proxmox cluster log and the
//! nodes' task lists, one JSON line each, appended as they come, pruned with the history's
//! retention and capped at [`MAX_ATTRIBUTION_ENTRIES`] (the newest kept); and the poller's
//! last status. Generic over the entry and status types, which belong to `attribution`.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::atomic::{StoreError, remove_if_present, write_atomic};
use super::layout::Layout;
use super::lines::{append_lines, read_existing_lines, read_lines, to_lines};
use super::{Storage, blocking, load_json, save_json};

/// Entries kept at most: a busy cluster logs a few thousand a day.
pub const MAX_ATTRIBUTION_ENTRIES: usize = 50_000;

/// What a scan reads to say who changed its guests.
#[derive(Debug)]
pub struct AttributionFiles<S, E> {
    /// The poller's last status; `None`: attribution is off or never ran.
    pub status: Option<S>,
    /// Every kept entry, oldest first; `Err` says why the journal cannot be read.
    pub entries: Result<Vec<E>, String>,
    /// When the environment's last conform scan ended: changes are attributed from there.
    pub last_conform: Option<DateTime<Utc>>,
}

fn read_entries<E: DeserializeOwned>(path: &Path) -> Vec<E> {
    read_lines(path).unwrap_or_default()
}

/// The poller's status and, when it has one, the journal (blocking: a commit's attribution
/// reads them off the runtime).
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn poller_files<S: DeserializeOwned, E: DeserializeOwned>(
    layout: &Layout,
) -> (Option<S>, Result<Vec<E>, String>) {
    let status = match layout.attribution_status().exists() {
        true => load_json(&layout.attribution_status()),
        false => None,
    };
    let path = layout.attribution();
    let entries = match status {
        Some(_) => read_existing_lines(&path)
            .map(Option::unwrap_or_default)
            .map_err(|e| format!("{}: {e}", path.display())),
        None => Ok(Vec::new()),
    };
    (status, entries)
}

/// Every kept attribution entry under `storage`, oldest first (blocking).
pub fn attribution_journal<E: DeserializeOwned>(storage: &Path) -> Vec<E> {
    read_entries(&Layout::new(storage).attribution())
}

impl Storage {
    /// The poller's last status, if attribution is on (a small file: the journal is not read).
    pub async fn attribution_status<S: DeserializeOwned + Send + 'static>(&self) -> Option<S> {
        let path = self.layout.attribution_status();
        blocking("reading the attribution status", move || load_json(&path))
            .await
            .flatten()
    }

    /// Every kept attribution entry, oldest first.
    pub async fn load_attribution<E: DeserializeOwned + Send + 'static>(&self) -> Vec<E> {
        let path = self.layout.attribution();
        blocking("reading the attribution journal", move || {
            read_entries(&path)
        })
        .await
        .unwrap_or_default()
    }

    /// Appends new entries to the journal (one write, then fsync); when `kept` (the entries
    /// the journal holds) and these are more than [`MAX_ATTRIBUTION_ENTRIES`], rewrites it
    /// atomically with the newest of them instead, so that it never holds more.
    pub async fn append_attribution<E: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        entries: Vec<E>,
        kept: usize,
    ) -> Result<(), StoreError> {
        let layout = self.layout.clone();
        blocking("storing attribution entries", move || {
            // The first poll can come before anything else made storage.path.
            super::make_root(&layout)?;
            let path = layout.attribution();
            if kept + entries.len() <= MAX_ATTRIBUTION_ENTRIES {
                return append_lines(&path, &entries);
            }
            let mut all: Vec<E> = read_entries(&path);
            all.extend(entries);
            let over = all.len().saturating_sub(MAX_ATTRIBUTION_ENTRIES);
            all.drain(..over);
            write_atomic(&path, &to_lines(&path, &all)?)
        })
        .await
        .unwrap_or_else(|| Err(failed(&self.layout)))
    }

    /// Drops the entries older than `retention` (by `time`; age measured as the history's,
    /// [`super::age_reference`], from the newest entry when the clock is ahead of it) and
    /// keeps at most the newest [`MAX_ATTRIBUTION_ENTRIES`], rewritten atomically.
    pub async fn prune_attribution<E, T>(
        &self,
        time: T,
        retention: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>
    where
        E: Serialize + DeserializeOwned + Send + 'static,
        T: Fn(&E) -> Option<DateTime<Utc>> + Send + 'static,
    {
        let layout = self.layout.clone();
        blocking("pruning the attribution journal", move || {
            let path = layout.attribution();
            let mut entries: Vec<E> = read_entries(&path);
            let before = entries.len();
            let newest = entries.iter().filter_map(&time).max();
            let oldest = super::age_reference(newest, now)
                - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
            entries.retain(|e| time(e).is_none_or(|t| t >= oldest));
            let over = entries.len().saturating_sub(MAX_ATTRIBUTION_ENTRIES);
            entries.drain(..over);
            if entries.len() == before {
                return Ok(0);
            }
            write_atomic(&path, &to_lines(&path, &entries)?)?;
            Ok(before - entries.len())
        })
        .await
        .unwrap_or_else(|| Err(failed(&self.layout)))
    }

    /// Keeps the poller's status (`None`: attribution is off; the file goes, and scans
    /// attribute nothing).
    pub async fn save_attribution_status<S: Serialize + Send + Sync + 'static>(
        &self,
        status: Option<S>,
    ) -> Result<(), StoreError> {
        let layout = self.layout.clone();
        blocking("storing the attribution status", move || {
            let path = layout.attribution_status();
            match status {
                Some(status) => save_json(&layout, &path, &status),
                None => remove_if_present(&path),
            }
        })
        .await
        .unwrap_or_else(|| Err(failed(&self.layout)))
    }
}

fn failed(layout: &Layout) -> StoreError {
    StoreError {
        path: layout.attribution(),
        source: std::io::Error::other("the storage task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (a flake in the page test under load): the attribution poller's first
    /// read could come before anything had made `storage.path`; the append failed, and the
    /// entries, already marked seen, were never written: every author `[]` from then on.
    /// The append makes the directory.
    #[tokio::test]
    async fn the_first_entries_are_kept_when_storage_path_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::load(&dir.path().join("state")).await.0;
        let entry = serde_json::json!({"vmid": 120, "user": "root@pam", "key": "log:pve1:1"});
        storage
            .append_attribution(vec![entry.clone()], 0)
            .await
            .unwrap();
        let kept: Vec<serde_json::Value> = storage.load_attribution().await;
        assert_eq!(kept, [entry]);
    }

    /// A clock 100 days ahead empties nothing; entries over the retention before the newest
    /// one still go.
    #[tokio::test]
    async fn the_journal_is_pruned_against_its_newest_entry_as_well_as_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::load(dir.path()).await.0;
        let now = Utc::now();
        let at = |days: i64| serde_json::json!({"time": (now - chrono::Duration::days(days)).to_rfc3339()});
        storage
            .append_attribution(vec![at(100), at(1), at(0)], 0)
            .await
            .unwrap();
        let time = |e: &serde_json::Value| e["time"].as_str()?.parse().ok();
        let retention = std::time::Duration::from_secs(90 * 86_400);
        let jumped = now + chrono::Duration::days(100);
        let pruned = storage
            .prune_attribution(time, retention, jumped)
            .await
            .unwrap();
        assert_eq!(pruned, 1, "only the entry 100 days before the newest");
        let kept: Vec<serde_json::Value> = storage.load_attribution().await;
        assert_eq!(kept, [at(1), at(0)]);
    }
}
