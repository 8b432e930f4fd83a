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

/// The top-level module a file of `src/` belongs to (`src/store/env.rs` -> `store`).
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root.join("src")).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Regression: three import cycles (config <-> ignore, classify <-> plan, exporter <->
/// unmanaged) made every module depend on every other. The top-level modules now form a
/// graph without cycles (tests aside).
#[test]
fn the_top_level_modules_import_each_other_without_cycles() {
    use std::collections::{BTreeMap, BTreeSet};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(root, f)).collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(root, file) else {
            continue;
        };
        if file.ends_with("tests.rs") || file.components().any(|c| c.as_os_str() == "tests") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for (i, _) in code.match_indices("crate::") {
            let used: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if used != module && modules.contains(&used) {
                uses.entry(module.clone()).or_default().insert(used);
            }
        }
    }
    // Depth-first search for a path back to where it started.
    fn back_to(
        start: &str,
        at: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in uses.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if back_to(start, next, uses, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    for module in &modules {
        let mut path = vec![module.clone()];
        if back_to(module, module, &uses, &mut path, &mut BTreeSet::new()) {
            path.push(module.clone());
            panic!("an import cycle: {}", path.join(" -> "));
        }
    }
}
