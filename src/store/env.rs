//! The storage of one environment as a scan uses it: its `TF_DATA_DIR`, its scan lock, its
//! private plan directories, its init fingerprint and the served plan (reports are the
//! history's: [`super::commit`]). Every method blocks: a scan calls them from
//! `spawn_blocking` (see [`super::Storage`]).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::atomic::{StoreError, at, remove_if_present, sync_dir, write_atomic};
use super::layout::Layout;

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
