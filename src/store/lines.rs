//! Files of one JSON value a line (the history's index, the attribution journal): read
//! skipping lines that do not parse (a torn last line after a crash), appended with one
//! write and an fsync.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::atomic::{StoreError, at};

/// The values of `path`, in the order written; `None` when it cannot be read (absent).
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn read_lines<T: DeserializeOwned>(path: &Path) -> Option<Vec<T>> {
    let text = fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    )
}

/// `items` as the text of such a file.
pub(super) fn to_lines<T: Serialize>(path: &Path, items: &[T]) -> Result<Vec<u8>, StoreError> {
    let mut text = Vec::new();
    for item in items {
        serde_json::to_writer(&mut text, item).map_err(|e| at(path)(std::io::Error::other(e)))?;
        text.push(b'\n');
    }
    Ok(text)
}

/// Appends `items` to `path` (0600), in one write, then fsync: a crash leaves at most a
/// torn last line.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn append_lines<T: Serialize>(path: &Path, items: &[T]) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    let text = to_lines(path, items)?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(at(path))?;
    file.write_all(&text).map_err(at(path))?;
    file.sync_all().map_err(at(path))
}
