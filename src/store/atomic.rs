//! Writes that a crash at any moment leaves either old or new, and the error that names the
//! path.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A storage problem, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub(super) fn at(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_owned(),
        source,
    }
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
    sync_dir(dir)
}

/// fsync of a directory, so that a rename in it survives a crash.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

/// Removes `path`; a file already gone is no error.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(path)(e)),
        _ => Ok(()),
    }
}
