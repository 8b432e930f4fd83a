//! Rules of the code's shape that a grep can check.

use std::path::{Path, PathBuf};

/// Where `std::fs` may be called, and why that is never on a runtime thread.
const BLOCKING_FILE_IO: &[(&str, &str)] = &[
    (
        "src/store/",
        "the storage; Storage's async methods run it in spawn_blocking",
    ),
    (
        "src/config.rs",
        "read before the runtime starts, or by the supervisor in spawn_blocking",
    ),
    (
        "src/webconfig.rs",
        "read with the configuration, in spawn_blocking",
    ),
    ("src/cli.rs", "one-shot commands, outside the runtime"),
    (
        "src/reconcile.rs",
        "the reconcile command, outside the runtime",
    ),
    (
        "src/scan/files.rs",
        "what a scan reads, inside its spawn_blocking",
    ),
    (
        "src/sensitive.rs",
        "called from scan::files, inside its spawn_blocking",
    ),
    (
        "src/orphans.rs",
        "/proc, read in spawn_blocking (start) or after a command, blocking",
    ),
    (
        "src/unmanaged/api.rs",
        "token and CA files, read in spawn_blocking",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Regression: file I/O ran on tokio's worker threads (reports saved, the history loaded,
/// handlers reading files); a slow disk then stalled `/metrics`. `std::fs` now lives only
/// where the list above says why it is off the runtime.
#[test]
fn std_fs_is_called_only_where_it_runs_off_the_runtime() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "the sources were found");
    let mut offenders = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may use files freely.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let uses = code.contains("std::fs") || code.contains("use std::fs");
        if uses
            && !BLOCKING_FILE_IO
                .iter()
                .any(|(p, _)| relative.starts_with(p))
        {
            offenders.push(relative);
        }
    }
    assert!(
        offenders.is_empty(),
        "std::fs in code that may run on the runtime: {offenders:?}"
    );
}
