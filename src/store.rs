//! Files under `storage.path`: per environment a `tf-data/` (terraform's `TF_DATA_DIR`), a
//! `history/` of reports written atomically, a scan lock shared by the exporter and the CLI,
//! and private temporary directories for plan files.
//!
//! ```text
//! <storage>/envs/<env>/tf-data/
//! <storage>/envs/<env>/history/<env>-20261125T031502Z.json
//! <storage>/envs/<env>/history/index.jsonl   (one line per stored report, in the order written)
//! <storage>/envs/<env>/scan.lock
//! <storage>/envs/<env>/init.fingerprint
//! <storage>/envs/<env>/plan-XXXXXX/plan.tfplan   (0700, removed after the scan)
//! ```

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::report::{Report, Status};

/// Name of the history's index: one [`IndexLine`] per stored report, appended in the order
/// the reports were written, so that "the latest" is the one written last whatever its
/// clock said, and start-up reads one small file instead of every report.
const INDEX: &str = "index.jsonl";

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
        Some(IndexLine {
            id: report.id.clone()?,
            finished_at: report.finished_at,
            status: report.status,
        })
    }
}

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

    /// A temporary file (0600) in the environment's directory, for what is later kept with
    /// a rename (the served plan).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.root)
            .map_err(at(&self.root))
    }

    /// Keeps the last scan's served plan (`plan.json`, 0600), written to a file of
    /// [`EnvStore::temp_file`], or removes it when the scan had none.
    pub fn save_plan(&self, plan: Option<tempfile::NamedTempFile>) -> Result<(), StoreError> {
        let path = self.root.join("plan.json");
        match plan {
            Some(file) => {
                file.as_file().sync_all().map_err(at(&path))?;
                file.persist(&path).map_err(|e| at(&path)(e.error))?;
                File::open(&self.root)
                    .and_then(|d| d.sync_all())
                    .map_err(at(&self.root))
            }
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(&path)(e)),
                _ => Ok(()),
            },
        }
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
        write_atomic_with(&path, |out| {
            serde_json::to_writer_pretty(out, report).map_err(std::io::Error::other)
        })?;
        if let Some(line) = IndexLine::of(report) {
            self.append_index(&line)?;
        }
        Ok(path)
    }

    /// Appends one line to the history's index (one write of a whole line, then fsync; a
    /// crash leaves at most a torn last line, which reading skips and the next start heals).
    fn append_index(&self, line: &IndexLine) -> Result<(), StoreError> {
        let path = self.history_dir().join(INDEX);
        let mut text = serde_json::to_vec(line).map_err(|e| at(&path)(std::io::Error::other(e)))?;
        text.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(at(&path))?;
        file.write_all(&text).map_err(at(&path))?;
        file.sync_all().map_err(at(&path))
    }
}

/// The history of one environment as its directory holds it.
#[derive(Debug, Default)]
pub struct HistoryFiles {
    /// The index, in the order written; lines that do not parse are left out.
    pub index: Vec<IndexLine>,
    /// Whether the index file exists at all (storage from before the index).
    pub has_index: bool,
    /// Every report id with a file, and the file's modification time.
    pub files: Vec<(String, std::time::SystemTime)>,
}

/// Reads the index and lists the report files of `env` (blocking).
pub fn history_files(storage: &Path, env: &str) -> HistoryFiles {
    let dir = storage.join("envs").join(env).join("history");
    let mut out = HistoryFiles::default();
    if let Ok(text) = fs::read_to_string(dir.join(INDEX)) {
        out.has_index = true;
        out.index = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
    }
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
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

/// Replaces the index of `env` with `lines` (after pruning or healing), atomically.
pub fn rewrite_index(storage: &Path, env: &str, lines: &[IndexLine]) -> Result<(), StoreError> {
    let path = storage.join("envs").join(env).join("history").join(INDEX);
    let mut text = Vec::with_capacity(lines.len() * 96);
    for line in lines {
        serde_json::to_writer(&mut text, line).map_err(|e| at(&path)(std::io::Error::other(e)))?;
        text.push(b'\n');
    }
    write_atomic(&path, &text)
}

/// Where the last served plan of `env` is kept (absent when its last scan had none).
pub fn plan_path(storage: &Path, env: &str) -> PathBuf {
    storage.join("envs").join(env).join("plan.json")
}

/// Names of the environments that have a storage directory.
pub fn stored_environments(storage: &Path) -> Vec<String> {
    fs::read_dir(storage.join("envs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The file of report `id` of `env`, when both are safe names (no path traversal).
pub fn report_path(storage: &Path, env: &str, id: &str) -> Option<PathBuf> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    (safe(env) && safe(id)).then(|| {
        storage
            .join("envs")
            .join(env)
            .join("history")
            .join(format!("{id}.json"))
    })
}

/// Write to a temporary file in the same directory, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// As [`write_atomic`], with the content written by `write` (buffered), never held whole.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(at(dir))?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut out)
            .and_then(|()| out.flush())
            .map_err(at(path))?;
    }
    tmp.as_file().sync_all().map_err(at(path))?;
    tmp.persist(path).map_err(|e| at(path)(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))?;
    Ok(())
}
