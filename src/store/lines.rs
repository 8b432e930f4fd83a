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

/// The values of `path`, in the order written; `None` when it cannot be read (absent, or
/// not a file: said in the log). A line that does not parse (a torn append after a crash,
/// even one cut inside a UTF-8 sequence) is skipped and counted in the log: the lines
/// around it are kept.
pub(super) fn read_lines<T: DeserializeOwned>(path: &Path) -> Option<Vec<T>> {
    match read_existing_lines(path) {
        Ok(values) => values,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read a stored file");
            None
        }
    }
}

/// As [`read_lines`], but a file that is there and cannot be read (a directory in its
/// place, no permission) is an error; `Ok(None)`: there is none.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn read_existing_lines<T: DeserializeOwned>(
    path: &Path,
) -> Result<Option<Vec<T>>, std::io::Error> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut skipped = 0;
    let values = bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .filter_map(|line| match serde_json::from_slice(line) {
            Ok(value) => Some(value),
            Err(_) => {
                skipped += 1;
                None
            }
        })
        .collect();
    if skipped > 0 {
        tracing::warn!(file = %path.display(), lines = skipped, "skipping lines that do not read (a write cut by a crash)");
    }
    Ok(Some(values))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: one invalid UTF-8 byte (an append cut by `kill -9` inside a character)
    /// made the whole file read as empty: the attribution journal answered `[]` for ever.
    #[test]
    fn a_line_cut_inside_a_character_is_skipped_and_the_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut text = b"{\"a\":1}\n{\"a\":\"\xc3".to_vec();
        text.extend_from_slice(b"\n{\"a\":3}\n\n");
        fs::write(&path, &text).unwrap();
        let read: Vec<serde_json::Value> = read_lines(&path).unwrap();
        assert_eq!(
            read,
            [serde_json::json!({"a": 1}), serde_json::json!({"a": 3})]
        );
        assert!(read_lines::<serde_json::Value>(&dir.path().join("absent")).is_none());
        // A directory in the file's place is an error, not an empty file.
        assert!(read_existing_lines::<serde_json::Value>(dir.path()).is_err());
    }
}
