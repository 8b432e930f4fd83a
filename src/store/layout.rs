//! Where each file lives under `storage.path`, and the one rule for names that become
//! path segments. No other module builds a path under the storage.

use std::path::{Path, PathBuf};

/// True for a name that may become one path segment: ASCII letters, digits, `-` and `_`
/// (no `/`, no `..`, never empty). Environment names and report ids both obey it.
pub fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The storage directory and the paths in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<storage>/envs`: one directory per environment.
    pub fn envs(&self) -> PathBuf {
        self.root.join("envs")
    }

    /// `<storage>/envs/<env>`.
    pub fn env(&self, env: &str) -> PathBuf {
        self.envs().join(env)
    }

    /// terraform's `TF_DATA_DIR` for `env`.
    pub fn tf_data(&self, env: &str) -> PathBuf {
        self.env(env).join("tf-data")
    }

    pub fn history(&self, env: &str) -> PathBuf {
        self.env(env).join("history")
    }

    /// The history's index of `env`.
    pub fn index(&self, env: &str) -> PathBuf {
        self.history(env).join("index.jsonl")
    }

    /// The file of report `id` of `env`, when both are safe names (no path traversal).
    pub fn report(&self, env: &str, id: &str) -> Option<PathBuf> {
        (safe_name(env) && safe_name(id)).then(|| self.history(env).join(format!("{id}.json")))
    }

    /// The last served plan of `env` (absent when its last scan had none).
    pub fn plan(&self, env: &str) -> Option<PathBuf> {
        safe_name(env).then(|| self.env(env).join("plan.json"))
    }

    pub fn scan_lock(&self, env: &str) -> PathBuf {
        self.env(env).join("scan.lock")
    }

    pub fn init_fingerprint(&self, env: &str) -> PathBuf {
        self.env(env).join("init.fingerprint")
    }

    /// The last unmanaged-guest check.
    pub fn unmanaged(&self) -> PathBuf {
        self.root.join("unmanaged.json")
    }

    /// What was read from the Proxmox cluster log and task lists, one entry a line.
    pub fn attribution(&self) -> PathBuf {
        self.root.join("attribution.jsonl")
    }

    /// The attribution poller's last status.
    pub fn attribution_status(&self) -> PathBuf {
        self.root.join("attribution-status.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_their_directory_are_refused() {
        let layout = Layout::new(Path::new("/s"));
        for bad in ["", "..", "a/b", "../lab", "lab.json", "lab\0"] {
            assert!(layout.report("lab", bad).is_none(), "{bad:?}");
            assert!(layout.report(bad, "id").is_none(), "{bad:?}");
            assert!(layout.plan(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            layout.report("lab", "lab-1").unwrap(),
            Path::new("/s/envs/lab/history/lab-1.json")
        );
    }
}
