//! Everything under `storage.path`, and the only code that knows its layout (its `layout` submodule).
//!
//! ```text
//! <storage>/envs/<env>/tf-data/                          terraform's TF_DATA_DIR
//! <storage>/envs/<env>/history/<env>-20261125T031502Z.json  reports, written atomically
//! <storage>/envs/<env>/history/index.jsonl               one line per report, in the order written
//! <storage>/envs/<env>/scan.lock                         shared by the exporter and the CLI
//! <storage>/envs/<env>/init.fingerprint
//! <storage>/envs/<env>/plan.json                         the last served plan (0600)
//! <storage>/envs/<env>/plan-XXXXXX/plan.tfplan           0700, removed after the scan
//! <storage>/unmanaged.json                               the last unmanaged-guest check
//! <storage>/attribution.jsonl                            what the Proxmox cluster log and tasks said
//! <storage>/attribution-status.json                      the attribution poller's last status
//! ```
//!
//! [`Storage`] is what the running exporter (and the CLI's `scan`) holds: its methods are
//! async and do their file work in `spawn_blocking`, never on a runtime thread. It owns the
//! history: [`Storage::commit`] is the one way a scan becomes a stored report, and the
//! history's index files have no other writer. The blocking pieces under it ([`EnvStore`],
//! [`History`], [`load_unmanaged`], [`save_unmanaged`]) are for those callers and for the
//! CLI, which runs outside the runtime.

mod atomic;
mod attribution;
mod commit;
mod env;
mod history;
mod index;
mod layout;
mod lines;
mod lock;
mod summary;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use atomic::{StoreError, write_atomic};
pub use attribution::{AttributionFiles, MAX_ATTRIBUTION_ENTRIES, attribution_journal};
pub use env::{EnvStore, ScanLock};
pub use history::{History, Page, Query, Restored, ScanSummary};
pub use index::IndexLine;
pub use layout::{Layout, safe_name};
pub use lock::LockWait;

use crate::report::{Report, Scanned};

/// A committed scan and whether its report reached the history.
#[derive(Debug, Clone)]
pub struct Stored {
    pub report: Report,
    pub stored: bool,
}

/// An open file to answer with, and its length.
pub type OpenFile = (tokio::fs::File, u64);

/// The storage of the running exporter: the layout, and the history's index in memory.
#[derive(Debug, Clone)]
pub struct Storage {
    layout: Layout,
    history: Arc<History>,
}

/// Runs blocking file work off the runtime; a panic in it becomes `None` (logged).
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(error = %e, "storage task failed: {what}");
            None
        }
    }
}

impl Storage {
    /// Reads the history's index of every environment (healing it where it disagrees with
    /// the files) and the latest report of each.
    pub async fn load(path: &Path) -> (Storage, std::collections::BTreeMap<String, Restored>) {
        let root = path.to_owned();
        let loaded = blocking("loading the history", move || History::load(&root)).await;
        let (history, restored) =
            loaded.unwrap_or_else(|| (History::empty(path), Default::default()));
        let storage = Storage {
            layout: Layout::new(path),
            history: Arc::new(history),
        };
        (storage, restored)
    }

    /// The storage under `path` whose history is read an environment at a time, when first
    /// needed (the CLI).
    pub fn open(path: &Path) -> Storage {
        Storage {
            layout: Layout::new(path),
            history: Arc::new(History::empty(path)),
        }
    }

    /// `storage.path`.
    pub fn path(&self) -> &Path {
        self.layout.root()
    }

    /// Commits a finished scan (see [`History::commit`]), off the runtime.
    pub async fn commit(&self, scanned: Scanned) -> Stored {
        let history = self.history.clone();
        let (env, started_at) = (scanned.environment.clone(), scanned.started_at);
        let committed = blocking("storing a scan", move || history.commit(scanned)).await;
        committed.unwrap_or_else(|| {
            let mut report = Report::failed(crate::report::ScanError {
                reason: crate::report::ErrorReason::Terraform,
                summary: "the report could not be stored: the storage task failed".into(),
                detail: String::new(),
            });
            report.stamp = Some(crate::report::Stamp {
                id: commit::id_base(&env, started_at),
                environment: env,
                started_at,
                finished_at: Utc::now(),
                duration_seconds: 0.0,
            });
            Stored {
                report,
                stored: false,
            }
        })
    }

    /// What a scan of `env` that started at `not_after` reads to say who changed its
    /// guests: the poller's files and, from memory, the end of the last conform scan.
    pub async fn attribution<S, E>(
        &self,
        env: &str,
        not_after: DateTime<Utc>,
    ) -> Option<AttributionFiles<S, E>>
    where
        S: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + Send + 'static,
    {
        let (history, env) = (self.history.clone(), env.to_owned());
        blocking("reading the attribution journal", move || {
            history.attribution(&env, not_after)
        })
        .await
    }

    /// The stored report of `env` written last.
    pub async fn latest(&self, env: &str) -> Option<Report> {
        let (history, env) = (self.history.clone(), env.to_owned());
        blocking("reading the latest report", move || history.latest(&env))
            .await
            .flatten()
    }

    /// Deletes reports older than `retention` (the index's lock is held only to pick them).
    pub async fn prune(&self, retention: Duration, now: DateTime<Utc>) {
        let pruned = self.history.take_pruned(retention, now);
        if pruned.is_empty() {
            return;
        }
        let history = self.history.clone();
        blocking("pruning the history", move || history.delete(pruned)).await;
    }

    /// A page of `/history` (see [`Query`]); `Err` names a bad cursor.
    pub async fn page(
        &self,
        environment: Option<String>,
        since: DateTime<Utc>,
        before: Option<String>,
        limit: usize,
    ) -> Result<Page, String> {
        let history = self.history.clone();
        blocking("reading the history", move || {
            history.page(&Query {
                environment: environment.as_deref(),
                since,
                before: before.as_deref(),
                limit,
            })
        })
        .await
        .unwrap_or_else(|| Err("the history could not be read".into()))
    }

    /// The stored scans of `env` since `since`, oldest first (memory only: no file read).
    pub fn marks(
        &self,
        env: &str,
        since: DateTime<Utc>,
    ) -> Vec<(String, DateTime<Utc>, crate::report::Status)> {
        self.history.marks(env, since)
    }

    /// Report `id` of `env`, read whole (one at a time: an HTML page of it).
    pub async fn read_report(&self, env: &str, id: &str) -> Option<crate::report::Report> {
        let (history, env, id) = (self.history.clone(), env.to_owned(), id.to_owned());
        blocking("reading a stored report", move || history.read(&env, &id))
            .await
            .flatten()
    }

    /// Report `id` of `env`, opened to be served, when there is one.
    pub async fn open_report(&self, env: &str, id: &str) -> Option<OpenFile> {
        open(self.layout.report(env, id)?).await
    }

    /// The last served plan of `env`, opened, when its last scan had one.
    pub async fn open_plan(&self, env: &str) -> Option<OpenFile> {
        open(self.layout.plan(env)?).await
    }

    /// Reads the stored unmanaged-guest check.
    pub async fn load_unmanaged<T: DeserializeOwned + Send + 'static>(&self) -> Option<T> {
        let path = self.layout.unmanaged();
        blocking("reading the unmanaged-guest check", move || {
            load_json(&path)
        })
        .await
        .flatten()
    }

    /// Keeps the unmanaged-guest check, atomically (0600).
    pub async fn save_unmanaged<T: Serialize + Send + Sync + 'static>(
        &self,
        value: Arc<T>,
    ) -> Result<(), StoreError> {
        let layout = self.layout.clone();
        blocking("storing the unmanaged-guest check", move || {
            save_json(&layout, &layout.unmanaged(), &*value)
        })
        .await
        .unwrap_or_else(|| {
            Err(StoreError {
                path: self.layout.unmanaged(),
                source: std::io::Error::other("the storage task failed"),
            })
        })
    }
}

/// Opens (creating when missing) the storage of environment `env` under `storage`, off
/// the runtime.
pub async fn open_env(storage: &Path, env: &str) -> Result<EnvStore, StoreError> {
    let (root, name) = (storage.to_owned(), env.to_owned());
    blocking("opening an environment's storage", move || {
        EnvStore::open(&root, &name)
    })
    .await
    .unwrap_or_else(|| {
        Err(StoreError {
            path: Layout::new(storage).env(env),
            source: std::io::Error::other("the storage task failed"),
        })
    })
}

/// Opens `path` and reads its length (through tokio's blocking pool).
async fn open(path: std::path::PathBuf) -> Option<OpenFile> {
    let file = tokio::fs::File::open(&path).await.ok()?;
    let meta = file.metadata().await.ok()?;
    meta.is_file().then_some((file, meta.len()))
}

/// The stored unmanaged-guest check of `storage` (blocking; a corrupt file is logged and
/// skipped).
pub fn load_unmanaged<T: DeserializeOwned>(storage: &Path) -> Option<T> {
    load_json(&Layout::new(storage).unmanaged())
}

/// Keeps the unmanaged-guest check of `storage` (blocking).
pub fn save_unmanaged<T: Serialize>(storage: &Path, value: &T) -> Result<(), StoreError> {
    let layout = Layout::new(storage);
    save_json(&layout, &layout.unmanaged(), value)
}

/// A JSON document of the storage, if it is there and reads (blocking).
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
fn load_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "a stored file is unreadable: skipped");
            None
        }
    }
}

/// Where the age of stored things is measured from: the clock, unless the newest stored
/// thing is older. A clock that jumped ahead (a wrong NTP answer, a VM resumed) would
/// otherwise make everything old at once; real time passing makes new entries that move
/// this forward.
pub(crate) fn age_reference(newest: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    newest.map_or(now, |n| n.min(now))
}

/// Creates `storage.path` (0700) when it is missing.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
fn make_root(layout: &Layout) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(layout.root())
        .map_err(|source| StoreError {
            path: layout.root().to_owned(),
            source,
        })
}

fn save_json<T: Serialize>(layout: &Layout, path: &Path, value: &T) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| StoreError {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    make_root(layout)?;
    write_atomic(path, &json)
}
