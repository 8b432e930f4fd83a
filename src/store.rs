//! Files under `storage.path`: per environment a `tf-data/` (terraform's `TF_DATA_DIR`), a
//! `history/` of reports written atomically, a scan lock shared by the exporter and the CLI,
//! and private temporary directories for plan files.
//!
//! ```text
//! <storage>/envs/<env>/tf-data/
//! <storage>/envs/<env>/history/<env>-20261125T031502Z.json
//! <storage>/envs/<env>/scan.lock
//! <storage>/envs/<env>/init.fingerprint
//! <storage>/envs/<env>/plan-XXXXXX/plan.tfplan   (0700, removed after the scan)
//! ```

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::report::Report;

/// A storage problem, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_owned(),
        source,
    }
}

/// The storage of one environment.
#[derive(Debug, Clone)]
pub struct EnvStore {
    root: PathBuf,
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
    pub fn open(storage: &Path, env: &str) -> Result<EnvStore, StoreError> {
        let root = storage.join("envs").join(env);
        let tf_data = root.join("tf-data");
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tf_data)
            .map_err(at(&tf_data))?;
        Ok(EnvStore { root })
    }

    /// terraform's `TF_DATA_DIR` for this environment.
    pub fn tf_data_dir(&self) -> PathBuf {
        self.root.join("tf-data")
    }

    pub fn history_dir(&self) -> PathBuf {
        self.root.join("history")
    }

    fn lock_file(&self) -> Result<(File, PathBuf), StoreError> {
        let path = self.root.join("scan.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(at(&path))?;
        Ok((file, path))
    }

    /// Waits for, then takes, the environment's scan lock (blocking).
    pub fn lock(&self) -> Result<ScanLock, StoreError> {
        let (file, path) = self.lock_file()?;
        file.lock().map_err(at(&path))?;
        Ok(ScanLock { _file: file })
    }

    /// Takes the scan lock when it is free; `None` while a scan holds it.
    pub fn try_lock(&self) -> Result<Option<ScanLock>, StoreError> {
        let (file, path) = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(ScanLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(at(&path)(e)),
        }
    }

    /// A fresh private directory for a plan file; removed when the guard drops. Directories
    /// left by a crash are removed first.
    pub fn plan_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        if let Ok(entries) = fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("plan-") {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        // tempfile creates directories 0700.
        tempfile::Builder::new()
            .prefix("plan-")
            .tempdir_in(&self.root)
            .map_err(at(&self.root))
    }

    /// The fingerprint of the last successful init, if any.
    pub fn init_fingerprint(&self) -> Option<String> {
        fs::read_to_string(self.root.join("init.fingerprint")).ok()
    }

    pub fn set_init_fingerprint(&self, fingerprint: Option<&str>) -> Result<(), StoreError> {
        let path = self.root.join("init.fingerprint");
        match fingerprint {
            Some(f) => write_atomic(&path, f.as_bytes()),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(&path)(e)),
                _ => Ok(()),
            },
        }
    }

    /// Keeps the last scan's served plan (`plan.json`, 0600), or removes it when the scan
    /// had none.
    pub fn save_plan(&self, plan: Option<&[u8]>) -> Result<(), StoreError> {
        let path = self.root.join("plan.json");
        match plan {
            Some(bytes) => write_atomic(&path, bytes),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(&path)(e)),
                _ => Ok(()),
            },
        }
    }

    /// The last served plan of `env`, if its last scan had one.
    pub fn read_plan(storage: &Path, env: &str) -> Option<Vec<u8>> {
        fs::read(storage.join("envs").join(env).join("plan.json")).ok()
    }

    /// A report id not used yet: `<env>-<start time>`, with a suffix on collision.
    pub fn new_id(&self, env: &str, report: &Report) -> String {
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
        while self.history_dir().join(format!("{id}.json")).exists() {
            n += 1;
            id = make(n);
        }
        issued.retain(|(e, _, _)| e != env);
        issued.push((env.to_owned(), base.clone(), n));
        id
    }

    /// Stores a report; a crash at any moment leaves either the old or the new file whole.
    pub fn save(&self, report: &Report) -> Result<PathBuf, StoreError> {
        let id = report.id.as_deref().unwrap_or("unnamed");
        let dir = self.history_dir();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(at(&dir))?;
        let path = dir.join(format!("{id}.json"));
        let json =
            serde_json::to_vec_pretty(report).map_err(|e| at(&path)(std::io::Error::other(e)))?;
        write_atomic(&path, &json)?;
        Ok(path)
    }
}

/// Write to a temporary file in the same directory, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(at(dir))?;
    tmp.write_all(bytes).map_err(at(tmp.path()))?;
    tmp.as_file().sync_all().map_err(at(path))?;
    tmp.persist(path).map_err(|e| at(path)(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))?;
    Ok(())
}
