//! The storage of one environment as a scan uses it: its `TF_DATA_DIR`, its scan lock, its
//! private plan directories, its init fingerprint, the served plan and the reports. Every
//! method blocks: a scan calls them from `spawn_blocking` (see [`super::Storage`]).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::atomic::{StoreError, at, remove_if_present, sync_dir, write_atomic, write_atomic_with};
use super::index::IndexLine;
use super::layout::Layout;
use super::lines::read_lines;
use crate::report::Report;

/// The storage of one environment.
#[derive(Debug, Clone)]
pub struct EnvStore {
    layout: Layout,
    env: String,
}

/// Held while a scan of the environment runs; dropping it releases the lock.
#[derive(Debug)]
pub struct ScanLock {
    _file: File,
}

impl EnvStore {
    /// Creates the environment's directory and `tf-data/` (0700) when they are missing;
    /// `history/` is made when the first report is saved, so that a broken history never
    /// stops a scan.
    #[allow(
        clippy::disallowed_methods,
        reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
    )]
    pub fn open(storage: &Path, env: &str) -> Result<EnvStore, StoreError> {
        let layout = Layout::new(storage);
        let tf_data = layout.tf_data(env);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tf_data)
            .map_err(at(&tf_data))?;
        Ok(EnvStore {
            layout,
            env: env.to_owned(),
        })
    }

    /// The environment's name.
    pub fn name(&self) -> &str {
        &self.env
    }

    fn root(&self) -> PathBuf {
        self.layout.env(&self.env)
    }

    /// terraform's `TF_DATA_DIR` for this environment.
    pub fn tf_data_dir(&self) -> PathBuf {
        self.layout.tf_data(&self.env)
    }

    /// Takes the scan lock when it is free; `None` while a scan holds it.
    #[allow(
        clippy::disallowed_methods,
        reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
    )]
    pub fn try_lock(&self) -> Result<Option<ScanLock>, StoreError> {
        let path = self.layout.scan_lock(&self.env);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(at(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ScanLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(at(&path)(e)),
        }
    }

    /// A fresh private directory for a plan file; removed when the guard drops. Directories
    /// left by a crash are removed first.
    #[allow(
        clippy::disallowed_methods,
        reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
    )]
    pub fn plan_dir(&self) -> Result<PlanDir, StoreError> {
        let root = self.root();
        if let Ok(entries) = fs::read_dir(&root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("plan-") {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        // tempfile creates directories 0700.
        tempfile::Builder::new()
            .prefix("plan-")
            .tempdir_in(&root)
            .map(|dir| PlanDir(Some(dir)))
            .map_err(at(&root))
    }

    /// The fingerprint of the last successful init, if any.
    #[allow(
        clippy::disallowed_methods,
        reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
    )]
    pub fn init_fingerprint(&self) -> Option<String> {
        fs::read_to_string(self.layout.init_fingerprint(&self.env)).ok()
    }

    pub fn set_init_fingerprint(&self, fingerprint: Option<&str>) -> Result<(), StoreError> {
        let path = self.layout.init_fingerprint(&self.env);
        match fingerprint {
            Some(f) => write_atomic(&path, f.as_bytes()),
            None => remove_if_present(&path),
        }
    }

    /// A temporary file (0600) in the environment's directory, for what is later kept with
    /// a rename (the served plan).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let root = self.root();
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&root)
            .map_err(at(&root))
    }

    /// Keeps the last scan's served plan (`plan.json`, 0600), written to a file of
    /// [`EnvStore::temp_file`], or removes it when the scan had none.
    pub fn save_plan(&self, plan: Option<tempfile::NamedTempFile>) -> Result<(), StoreError> {
        let path = self.root().join("plan.json");
        match plan {
            Some(file) => {
                file.as_file().sync_all().map_err(at(&path))?;
                file.persist(&path).map_err(|e| at(&path)(e.error))?;
                sync_dir(&self.root())
            }
            None => remove_if_present(&path),
        }
    }

    /// A report id not used yet: `<env>-<start time>`, with a suffix on collision.
    #[allow(
        clippy::disallowed_methods,
        reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
    )]
    pub fn new_id(&self, report: &Report) -> String {
        let env = self.env.as_str();
        let stamp = report
            .started_at
            .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_default();
        let base = format!("{env}-{stamp}");
        // Ids issued in this process: a report that could not be written (a full disk)
        // leaves no file, and its id must not be given again in the same second.
        type Issued = Vec<(String, String, u32)>;
        static ISSUED: std::sync::Mutex<Issued> = std::sync::Mutex::new(Vec::new());
        let mut issued = ISSUED.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = issued
            .iter()
            .find(|(e, b, _)| e == env && *b == base)
            .map(|(_, _, n)| n + 1)
            .unwrap_or(1);
        let make = |n: u32| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        };
        let mut id = make(n);
        while self.layout.report(env, &id).is_some_and(|p| p.exists()) {
            n += 1;
            id = make(n);
        }
        issued.retain(|(e, _, _)| e != env);
        issued.push((env.to_owned(), base.clone(), n));
        id
    }

    /// Stores a report; a crash at any moment leaves either the old or the new file whole.
    #[allow(
        clippy::disallowed_methods,
        reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
    )]
    pub fn save(&self, report: &Report) -> Result<PathBuf, StoreError> {
        let id = report.id.as_deref().unwrap_or("unnamed");
        let dir = self.layout.history(&self.env);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(at(&dir))?;
        let path = self.layout.report(&self.env, id).ok_or_else(|| {
            at(&dir)(std::io::Error::other(format!(
                "{id:?} is not a report id (letters, digits, - and _)"
            )))
        })?;
        write_atomic_with(&path, |out| {
            serde_json::to_writer_pretty(out, report).map_err(std::io::Error::other)
        })?;
        if let Some(line) = IndexLine::of(report) {
            self.append_index(&line)?;
        }
        Ok(path)
    }

    fn append_index(&self, line: &IndexLine) -> Result<(), StoreError> {
        super::index::append_index(&self.layout, &self.env, line)
    }
}

impl EnvStore {
    /// The drift run as the environment's newest stored scan that did not fail left it
    /// (walking back over failed and unreadable ones); `None` when there is none.
    #[allow(
        clippy::disallowed_methods,
        reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
    )]
    pub fn previous_run(&self) -> Option<crate::lifecycle::Run> {
        use crate::report::Status;
        let lines: Vec<IndexLine> = read_lines(&self.layout.index(&self.env))?;
        // In the order written, never by timestamp. A conform line ends the run even when
        // its file is gone; a drift whose file is gone says nothing, the one before may.
        lines
            .iter()
            .rev()
            .filter(|l| l.status != Status::Error)
            .find_map(|l| match l.status {
                Status::Conform => Some(crate::lifecycle::Run::conform()),
                _ => {
                    let path = self.layout.report(&self.env, &l.id)?;
                    let file = File::open(path).ok()?;
                    serde_json::from_reader(std::io::BufReader::new(file)).ok()
                }
            })
    }

    /// Gives `report` its id and writes it and the served plan, off the runtime. A storage
    /// failure is logged; the report is still returned, marked as not stored.
    pub async fn keep(
        &self,
        report: Report,
        plan: Option<tempfile::NamedTempFile>,
    ) -> super::Stored {
        let store = self.clone();
        let env = self.env.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut report = report;
            let previous = store.previous_run();
            crate::lifecycle::carry(&mut report, previous.as_ref());
            report.id = Some(store.new_id(&report));
            if let Err(e) = store.save_plan(plan) {
                tracing::error!(environment = %store.env, error = %e, "cannot store the plan for /detail/<env>/plan");
            }
            let stored = match store.save(&report) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(environment = %store.env, error = %e, "cannot store the report; it is still shown");
                    false
                }
            };
            super::Stored { report, stored }
        })
        .await;
        match written {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(environment = %env, error = %e, "storing the report failed");
                let mut report = Report::failed(crate::report::ScanError {
                    reason: crate::report::ErrorReason::Terraform,
                    summary: "the report could not be stored: the storage task failed".into(),
                    detail: String::new(),
                });
                report.environment = Some(env);
                super::Stored {
                    report,
                    stored: false,
                }
            }
        }
    }
}

/// A scan's private plan directory (the plan file holds secrets). Removed when dropped, and
/// off the runtime's threads when dropped on one: a scan may end at any `?`.
#[derive(Debug)]
pub struct PlanDir(Option<tempfile::TempDir>);

impl PlanDir {
    pub fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new(""), |d| d.path())
    }
}

impl Drop for PlanDir {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            // The removal finishes even at shutdown: a runtime waits for its blocking tasks.
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(dir))),
            Err(_) => drop(dir),
        }
    }
}
