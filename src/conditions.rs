//! Whether a configuration declares anything `show -json` would report in `checks`: a
//! `check` block, a resource's or an output's `precondition`/`postcondition`, a variable's
//! `validation`. Only then does a plan that changes nothing cost a `show -json` (interface
//! §2 step 3); a configuration without any is scanned as before.
//!
//! The root module's files are read, then the local modules they call (`source = "./..."`,
//! followed to any depth), and the modules init downloaded into the data directory. The
//! test is on lines, not on parsed HCL: a file terraform would refuse still tells, and a
//! false positive (the words in a heredoc) costs one `show -json`, never a wrong report.
//!
//! Blocking file I/O: call it off the async runtime.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Module directories read at most, and files per directory: a bound on a pathological
/// tree, far above any real configuration.
const MAX_DIRS: usize = 500;
const MAX_FILES: usize = 1000;

/// True when the root module `dir`, a local module it calls, or a module under
/// `data_dir/modules` declares a check or a condition.
#[allow(
    clippy::disallowed_methods,
    reason = "runs in the scan's spawn_blocking gather step"
)]
pub fn declared(dir: &Path, data_dir: &Path) -> bool {
    let mut pending = vec![dir.to_path_buf()];
    pending.extend(downloaded_modules(&data_dir.join("modules")));
    let mut seen = BTreeSet::new();
    while let Some(dir) = pending.pop() {
        let dir = dir.canonicalize().unwrap_or(dir);
        if seen.len() >= MAX_DIRS || !seen.insert(dir.clone()) {
            continue;
        }
        for path in module_files(&dir) {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let json = path.to_string_lossy().ends_with(".tf.json");
            if declares(&text, json) {
                return true;
            }
            pending.extend(local_sources(&text).into_iter().map(|s| dir.join(s)));
        }
    }
    false
}

/// The `.tf` and `.tf.json` files of a module directory.
#[allow(
    clippy::disallowed_methods,
    reason = "runs in the scan's spawn_blocking gather step"
)]
fn module_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.to_string_lossy();
            (name.ends_with(".tf") || name.ends_with(".tf.json")) && p.is_file()
        })
        .take(MAX_FILES)
        .collect()
}

/// Every directory under `modules/` of the data directory (init unpacks registry and git
/// modules there; a module may sit in a subdirectory of its package).
#[allow(
    clippy::disallowed_methods,
    reason = "runs in the scan's spawn_blocking gather step"
)]
fn downloaded_modules(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if out.len() >= MAX_DIRS {
                return out;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(entry.path());
                pending.push(entry.path());
            }
        }
    }
    out
}

/// True when a file's text opens one of the blocks that `checks` reports.
fn declares(text: &str, json: bool) -> bool {
    if json {
        return [
            "\"check\"",
            "\"precondition\"",
            "\"postcondition\"",
            "\"validation\"",
        ]
        .iter()
        .any(|key| text.contains(key));
    }
    text.lines().map(str::trim_start).any(|line| {
        let opens = |word: &str, next: &[char]| {
            line.strip_prefix(word)
                .map(str::trim_start)
                .is_some_and(|rest| rest.starts_with(next))
        };
        opens("check", &['"'])
            || opens("precondition", &['{'])
            || opens("postcondition", &['{'])
            || opens("validation", &['{'])
    })
}

/// The local module sources a file calls: `source = "./x"` or `"../x"`.
fn local_sources(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("source")?.trim_start();
            let value = rest.strip_prefix('=')?.trim().strip_prefix('"')?;
            let value = &value[..value.find('"')?];
            (value.starts_with("./") || value.starts_with("../")).then(|| value.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocks_of_checks_are_found_and_nothing_else() {
        assert!(declares("check \"up\" {\n  assert {}\n}", false));
        assert!(declares("  lifecycle {\n    precondition {\n", false));
        assert!(declares("output \"o\" {\n  postcondition{\n", false));
        assert!(declares("  validation {\n", false));
        assert!(declares(r#"{"check": {"up": {}}}"#, true));
        assert!(!declares(
            "resource \"terraform_data\" \"checker\" {}",
            false
        ));
        assert!(!declares(
            "  checks = 3\n  # a precondition would go here",
            false
        ));
        assert!(!declares(r#"{"resource": {}}"#, true));
    }

    #[test]
    fn local_modules_are_followed_and_downloaded_ones_read() {
        let root = tempfile::tempdir().unwrap();
        let code = root.path().join("code");
        let data = root.path().join("tf-data");
        std::fs::create_dir_all(code.join("modules/probe")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            code.join("main.tf"),
            "module \"probe\" {\n  source = \"./modules/probe\"\n}\n",
        )
        .unwrap();
        std::fs::write(
            code.join("modules/probe/main.tf"),
            "resource \"a\" \"b\" {}\n",
        )
        .unwrap();
        assert!(!declared(&code, &data));
        std::fs::write(code.join("modules/probe/checks.tf"), "check \"c\" {\n}\n").unwrap();
        assert!(declared(&code, &data));

        std::fs::remove_file(code.join("modules/probe/checks.tf")).unwrap();
        let fetched = data.join("modules/net/modules/inner");
        std::fs::create_dir_all(&fetched).unwrap();
        std::fs::write(fetched.join("v.tf"), "variable \"x\" {\n  validation {\n").unwrap();
        assert!(declared(&code, &data));
    }

    #[test]
    fn a_module_calling_itself_ends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.tf"),
            "module \"me\" {\n  source = \"./\"\n}\n",
        )
        .unwrap();
        assert!(!declared(dir.path(), &dir.path().join("none")));
    }
}
