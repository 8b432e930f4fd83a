//! `[discovery]`: every directory under `root` that matches an `include` glob, no `exclude`
//! glob, and holds `*.tf` or `*.tf.json` files becomes an environment, named by the `name`
//! template and configured by `[defaults]`; an `[environments.NAME]` of the same name
//! overrides the discovered one's settings. Globs match one path segment per `/`-separated
//! part (`*` stays within a segment); a `**` part matches any number of segments.
//!
//! Blocking file I/O: it runs where the configuration is read.

use super::*;

/// Directories below `root` looked at, at most: a bound on a pathological tree.
const MAX_DIRS: usize = 100_000;
/// Depth of a `**` search.
const MAX_DEPTH: usize = 12;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    pub(super) root: Option<PathBuf>,
    #[serde(default)]
    pub(super) include: Vec<String>,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
    pub(super) name: Option<String>,
    pub(super) interval: Option<HumanDuration>,
}

/// The validated `[discovery]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub root: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `{dir}`: the directory's own name; `{path}`: its path under root, `/` as `-`.
    pub name: String,
    /// How often the directories are looked at again (also at every reload).
    pub interval: Duration,
}

impl RawDiscovery {
    pub(super) fn validate(
        self,
        absolute: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Discovery, KeyError> {
        let root = self
            .root
            .ok_or_else(|| KeyError::new("discovery.root", "missing: the directory to search"))?;
        if self.include.is_empty() {
            return Err(KeyError::new(
                "discovery.include",
                "missing: globs of directories under root, like [\"envs/*\"]",
            ));
        }
        for (key, globs) in [
            ("discovery.include", &self.include),
            ("discovery.exclude", &self.exclude),
        ] {
            if let Some(bad) = globs
                .iter()
                .find(|g| g.is_empty() || g.starts_with('/') || g.split('/').any(|p| p == ".."))
            {
                return Err(KeyError::new(
                    key,
                    format!("{bad:?}: a glob relative to discovery.root, without \"..\""),
                ));
            }
        }
        let name = self.name.unwrap_or_else(|| "{dir}".to_owned());
        if !name.contains("{dir}") && !name.contains("{path}") {
            return Err(KeyError::new(
                "discovery.name",
                format!("{name:?} names every directory alike: use {{dir}} or {{path}}"),
            ));
        }
        let interval = match self.interval {
            Some(d) => within("discovery.interval", d.0, INTERVAL)?,
            None => DEFAULT_INTERVAL,
        };
        Ok(Discovery {
            root: absolute(&root),
            include: self.include,
            exclude: self.exclude,
            name,
            interval,
        })
    }
}

impl Discovery {
    /// The environments found now: name -> directory. Two directories of one name are an
    /// error naming both.
    #[allow(
        clippy::disallowed_methods,
        reason = "runs where the configuration is read: before the runtime, or in spawn_blocking"
    )]
    pub(super) fn find(&self) -> Result<BTreeMap<String, PathBuf>, KeyError> {
        if !self.root.is_dir() {
            return Err(KeyError::new(
                "discovery.root",
                format!("{} is not a directory", self.root.display()),
            ));
        }
        let include: Vec<Vec<&str>> = self
            .include
            .iter()
            .map(|g| g.split('/').collect())
            .collect();
        let exclude: Vec<Vec<&str>> = self
            .exclude
            .iter()
            .map(|g| g.split('/').collect())
            .collect();
        let depth = include
            .iter()
            .map(|g| {
                if g.contains(&"**") {
                    MAX_DEPTH
                } else {
                    g.len()
                }
            })
            .max()
            .unwrap_or(0);
        let mut found = BTreeMap::new();
        let mut pending = vec![(self.root.clone(), Vec::<String>::new())];
        let mut seen = 0;
        while let Some((dir, parts)) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // Directories only, never through a link (no cycles), never hidden ones
                // (.terraform, .git).
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let file_name = entry.file_name().to_string_lossy().into_owned();
                if file_name.starts_with('.') {
                    continue;
                }
                seen += 1;
                if seen > MAX_DIRS {
                    return Err(KeyError::new(
                        "discovery.root",
                        format!(
                            "more than {MAX_DIRS} directories below {}: narrow root or include",
                            self.root.display()
                        ),
                    ));
                }
                let mut path = parts.clone();
                path.push(file_name);
                let segments: Vec<&str> = path.iter().map(String::as_str).collect();
                let included = include.iter().any(|g| matches(g, &segments))
                    && !exclude.iter().any(|g| matches(g, &segments));
                if included && holds_code(&entry.path()) {
                    let name = self.name_of(&segments);
                    if !valid_name(&name) {
                        return Err(KeyError::new(
                            "discovery.name",
                            format!(
                                "{} gives the name {name:?}: names may use only letters, digits, '-' and '_' (at most 64); exclude it or change the template",
                                entry.path().display()
                            ),
                        ));
                    }
                    if let Some(other) = found.insert(name.clone(), entry.path()) {
                        return Err(KeyError::new(
                            "discovery.name",
                            format!(
                                "{name:?} names both {} and {}: use {{path}} in the template, or exclude one",
                                other.display(),
                                entry.path().display()
                            ),
                        ));
                    }
                }
                if path.len() < depth {
                    pending.push((entry.path(), path));
                }
            }
        }
        Ok(found)
    }

    fn name_of(&self, segments: &[&str]) -> String {
        self.name
            .replace("{dir}", segments.last().copied().unwrap_or_default())
            .replace("{path}", &segments.join("-"))
    }
}

/// True when a directory holds Terraform files of its own.
#[allow(
    clippy::disallowed_methods,
    reason = "runs where the configuration is read: before the runtime, or in spawn_blocking"
)]
fn holds_code(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name.ends_with(".tf") || name.ends_with(".tf.json"))
                && e.file_type().is_ok_and(|t| t.is_file())
        })
}

/// A glob's parts against a path's segments: each part matches one segment, `**` any
/// number of them.
fn matches(glob: &[&str], path: &[&str]) -> bool {
    match (glob.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((&"**", rest)), _) => {
            matches(rest, path) || (!path.is_empty() && matches(glob, &path[1..]))
        }
        (Some((part, rest)), Some((segment, others))) => {
            crate::glob::Glob::new(part).matches(segment) && matches(rest, others)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_matches_one_segment_and_a_double_star_any_number() {
        assert!(matches(&["envs", "*"], &["envs", "prod"]));
        assert!(!matches(&["envs", "*"], &["envs", "prod", "modules"]));
        assert!(!matches(&["envs", "*"], &["envs"]));
        assert!(matches(&["**", "live"], &["a", "b", "live"]));
        assert!(matches(&["**", "live"], &["live"]));
        assert!(matches(&["teams", "*", "**"], &["teams", "net", "x", "y"]));
        assert!(matches(&["env-?"], &["env-a"]));
    }
}
