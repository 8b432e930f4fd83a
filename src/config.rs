//! Configuration: the TOML file plus `TFDRIFT_<SECTION>__<KEY>` environment overrides
//! (interface §4), read raw first and then validated into [`Config`], with `[defaults]`
//! merged into every environment. Every error names the file, the key and what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Deserializer};

pub use crate::ignore::IgnoreRule;
use crate::schedule::Schedule;

/// Where the configuration is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/tfdrift-exporter/config.toml";
/// Prefix of the environment variables that override keys of the file.
pub const ENV_PREFIX: &str = "TFDRIFT_";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{}: key {key:?}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
    /// A `TFDRIFT_` variable that cannot be used, or whose value a key refused.
    #[error("environment variable {var}{}: {message}", key.as_ref().map(|k| format!(" (key {k:?})")).unwrap_or_default())]
    Variable {
        var: String,
        key: Option<String>,
        message: String,
    },
}

/// A duration written the humantime way (`90s`, `6h`, `1d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a duration like \"90s\", \"6h\" or \"1d\" ({e})"
                ))
            })
    }
}

/// When `init` runs before a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitMode {
    /// First scan, or the lock file / backend settings changed since the last good init.
    Auto,
    Always,
    Never,
}

impl fmt::Display for InitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InitMode::Auto => "auto",
            InitMode::Always => "always",
            InitMode::Never => "never",
        })
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; relative paths inside it are taken from its directory.
    pub file: PathBuf,
    pub web: Web,
    pub storage: Storage,
    pub max_concurrent_scans: usize,
    pub max_resource_series: usize,
    /// `tfdrift_resource_change_info` series across every environment.
    pub max_resource_series_total: usize,
    pub proxmox: Option<Proxmox>,
    /// `[discovery]`: the environments found in directories, beside the listed ones.
    pub discovery: Option<Discovery>,
    /// `[sharding]`: this replica's part of the environments (`--shard` and
    /// `--total-shards` override it).
    pub sharding: crate::shard::Shard,
    pub environments: BTreeMap<String, Environment>,
    /// The other shards' environments (empty without sharding): never scanned here; shard
    /// 0's unmanaged-guest check reads their states too.
    pub elsewhere: BTreeMap<String, Environment>,
}

#[derive(Debug, Clone)]
pub struct Web {
    pub listen_address: SocketAddr,
    /// How people reach the exporter (`https://monitoring.lan:9847`, no trailing slash): the
    /// base of the links in alerts and pages; `None`: links are relative.
    pub external_url: Option<String>,
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub path: PathBuf,
    pub retention: Duration,
}

/// One environment with `[defaults]` and the built-in defaults merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: String,
    /// Absolute (relative paths are taken from the configuration file's directory).
    pub dir: PathBuf,
    pub binary: String,
    pub schedule: Schedule,
    pub jitter: Duration,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub lock_timeout: Duration,
    pub init: InitMode,
    pub refresh_only: bool,
    pub parallelism: u32,
    pub run_on_start: bool,
    /// Passed to `plan -var-file=` as written (relative to `dir`, as terraform reads them).
    pub var_files: Vec<PathBuf>,
    /// Passed to `init -backend-config=` as written.
    pub backend_config: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// KEY=VALUE files read at each scan; their values are treated as secrets.
    pub env_files: Vec<PathBuf>,
    pub ignore: Vec<IgnoreRule>,
}

impl Config {
    /// The same, with the other shards' environments beside this one's (what the
    /// unmanaged-guest check compares the inventory with).
    pub fn with_every_shard(&self) -> Config {
        let mut every = self.clone();
        every
            .environments
            .extend(self.elsewhere.iter().map(|(n, e)| (n.clone(), e.clone())));
        every
    }

    /// Reads `path` plus the `TFDRIFT_` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars_os())
    }

    /// Reads `path` plus the `TFDRIFT_` overrides among `vars`; an error caused by a
    /// variable names it, not the file.
    #[allow(
        clippy::disallowed_methods,
        reason = "read before the runtime starts (the CLI), or in spawn_blocking (serve's bind and reload)"
    )]
    fn load_with_env(
        path: &Path,
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<Config, ConfigError> {
        let overrides = env::overrides(ENV_PREFIX, vars)?;
        // figment ignores a missing file; a missing configuration must stop start-up.
        std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let blame = |key: &str, message: String, otherwise: ConfigError| match env::setting(
            &overrides, key,
        ) {
            Some(o) => ConfigError::Variable {
                var: o.var.clone(),
                key: Some(o.key.clone()),
                message,
            },
            None => otherwise,
        };
        // Only the variables checked above: figment would read the environment again.
        let checked: Vec<String> = overrides.iter().map(|o| o.var.clone()).collect();
        let raw: RawConfig = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .filter(move |k| checked.iter().any(|v| k == v[ENV_PREFIX.len()..]))
                    .split("__"),
            )
            .extract()
            .map_err(|e| {
                let key = e.path.join(".").to_lowercase();
                let message = e.kind.to_string();
                blame(&key, message, ConfigError::Parse(one_line(e)))
            })?;
        validate(path, raw).map_err(|e| match e {
            ConfigError::Invalid { key, message, file } => {
                let otherwise = ConfigError::Invalid {
                    file,
                    key: key.clone(),
                    message: message.clone(),
                };
                blame(&key, message, otherwise)
            }
            other => other,
        })
    }

    /// Parses configuration text (tests, and `check-config` of generated files).
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Parse(format!("{}: {}", path.display(), one_line(e))))?;
        validate(path, raw)
    }

    /// The environments named on the command line (all when none is named).
    pub fn select(&self, names: &[String]) -> Result<Vec<&Environment>, ConfigError> {
        if names.is_empty() {
            return Ok(self.environments.values().collect());
        }
        names
            .iter()
            .map(|name| {
                self.environments
                    .get(name)
                    .ok_or_else(|| ConfigError::Invalid {
                        file: self.file.clone(),
                        key: format!("environments.{name}"),
                        message: format!(
                            "no such environment (configured: {})",
                            self.environments
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
            })
            .collect()
    }
}

/// figment reports one error per line; the CLI shows one line.
fn one_line(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| e.to_string().replace('\n', " "))
        .collect::<Vec<_>>()
        .join("; ")
}

mod describe;
mod discovery;
mod env;
mod proxmox;
mod raw;
mod validate;

pub use discovery::Discovery;
use discovery::RawDiscovery;
#[cfg(test)]
pub(crate) use proxmox::split_host_port;
use proxmox::validate_proxmox;
pub use proxmox::{ApiUrl, GuestIgnore, Proxmox, TokenSecret};
use raw::*;
use validate::*;

#[cfg(test)]
mod tests;
