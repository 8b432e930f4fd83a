//! Rules of the code's shape that a grep can check. (Blocking I/O on the runtime is the
//! compiler's to refuse: clippy.toml's disallowed-methods.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

/// The module a file below `dir` belongs to (`store/env.rs` below `src` -> `store`;
/// `history/tests.rs` below `src/store` -> `history`), unless it is one of `roots`.
fn module_below(dir: &Path, file: &Path, roots: &[&str]) -> Option<String> {
    let first = file
        .strip_prefix(dir)
        .ok()?
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (!roots.contains(&name.as_str())).then_some(name)
}

/// The top-level module a file of `src/` belongs to (`src/store/env.rs` -> `store`).
fn module_of(root: &Path, file: &Path) -> Option<String> {
    module_below(&root.join("src"), file, &["lib", "main"])
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

/// Depth-first search for a path from `at` back to `start`.
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

/// Panics with the first cycle of `uses`, a graph over `modules`.
fn assert_no_cycle(modules: &BTreeSet<String>, uses: &BTreeMap<String, BTreeSet<String>>) {
    for module in modules {
        let mut path = vec![module.clone()];
        if back_to(module, module, uses, &mut path, &mut BTreeSet::new()) {
            path.push(module.clone());
            panic!("an import cycle: {}", path.join(" -> "));
        }
    }
}

fn is_test_file(file: &Path) -> bool {
    file.ends_with("tests.rs") || file.components().any(|c| c.as_os_str() == "tests")
}

/// Regression: three import cycles (config <-> ignore, classify <-> plan, exporter <->
/// unmanaged) made every module depend on every other. The top-level modules now form a
/// graph without cycles (tests aside).
#[test]
fn the_top_level_modules_import_each_other_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(root, f)).collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(root, file) else {
            continue;
        };
        if is_test_file(file) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for (i, _) in code.match_indices("crate::") {
            let used = name_at(&code[i + 7..]);
            if used != module && modules.contains(&used) {
                uses.entry(module.clone()).or_default().insert(used);
            }
        }
    }
    assert_no_cycle(&modules, &uses);
}

/// The module name at the start of `text` (`index::{...}` -> `index`).
fn name_at(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

/// Regression: two cycles inside folders (scan::files <-> scan::steps, store::history <->
/// store::index). In every folder of `src/`, the files' modules form a graph without cycles:
/// a file's uses of a sibling are `super::sibling`, `crate::folder::sibling` or, in the
/// folder's `mod.rs`, `self::sibling` and `sibling::`.
#[test]
fn the_modules_inside_each_folder_import_each_other_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = 0;
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let folder = entry.path();
        if !folder.is_dir() {
            continue;
        }
        folders += 1;
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        let mut files = Vec::new();
        rust_files(&folder, &mut files);
        let module_of = |file: &Path| module_below(&folder, file, &["mod"]);
        let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files.iter().filter(|f| !is_test_file(f)) {
            let Some(module) = module_of(file) else {
                continue;
            };
            let code = code_of(&std::fs::read_to_string(file).unwrap());
            let prefixes = ["super::".to_owned(), format!("crate::{name}::")];
            for prefix in &prefixes {
                for (i, _) in code.match_indices(prefix.as_str()) {
                    // `super::{a::X, b::Y}` names several.
                    let rest = &code[i + prefix.len()..];
                    let named: Vec<String> = match rest.strip_prefix('{') {
                        Some(list) => list
                            .split('}')
                            .next()
                            .unwrap_or("")
                            .split(',')
                            .map(|part| name_at(part.trim()))
                            .collect(),
                        None => vec![name_at(rest)],
                    };
                    for used in named {
                        if used != module && modules.contains(&used) {
                            uses.entry(module.clone()).or_default().insert(used);
                        }
                    }
                }
            }
        }
        assert_no_cycle(&modules, &uses);
    }
    assert!(folders >= 5, "the folders of src/ were found");
}
