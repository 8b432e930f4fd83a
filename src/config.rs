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

/// The range a duration key accepts: below it a value is a typo, beyond it timers and
/// terraform's own flags overflow (a `timeout` of u64::MAX seconds, a `lock_timeout` past
/// Go's 290 years).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    min: Duration,
    max: Duration,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const DAY: u64 = 86_400;
const INTERVAL: Bounds = Bounds {
    min: secs(1),
    max: secs(366 * DAY),
};
const JITTER: Bounds = Bounds {
    min: secs(0),
    max: secs(7 * DAY),
};
const TIMEOUT: Bounds = Bounds {
    min: secs(1),
    max: secs(DAY),
};
const KILL_GRACE: Bounds = Bounds {
    min: secs(0),
    max: secs(3_600),
};
const LOCK_TIMEOUT: Bounds = Bounds {
    min: secs(0),
    max: secs(DAY),
};
const RETENTION: Bounds = Bounds {
    min: secs(DAY),
    max: secs(3_660 * DAY),
};
const PROXMOX_TIMEOUT: Bounds = Bounds {
    min: secs(1),
    max: secs(3_600),
};

/// `d` when it lies within `bounds`, else an error naming `key` and the range.
fn within(key: &str, d: Duration, bounds: Bounds) -> Result<Duration, (String, String)> {
    if d < bounds.min || d > bounds.max {
        return Err((
            key.to_owned(),
            format!(
                "{} is out of range: it must be between {} and {}",
                humantime::format_duration(d),
                humantime::format_duration(bounds.min),
                humantime::format_duration(bounds.max)
            ),
        ));
    }
    Ok(d)
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    defaults: RawEnvironment,
    #[serde(default)]
    scheduler: RawScheduler,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    proxmox: Option<RawProxmox>,
    #[serde(default)]
    environments: BTreeMap<String, RawEnvironment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen_address: Option<String>,
    config_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<PathBuf>,
    retention: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    max_concurrent_scans: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    max_resource_series: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxmox {
    api_url: String,
    token_id: String,
    token_secret_file: Option<PathBuf>,
    token_secret_env: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    interval: Option<HumanDuration>,
    timeout: Option<HumanDuration>,
    #[serde(default)]
    allow_empty_inventory: bool,
    #[serde(default)]
    ignore: RawProxmoxIgnore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxmoxIgnore {
    #[serde(default)]
    vmids: Vec<String>,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// One `[environments.NAME]` table, or `[defaults]`: every key optional here.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    dir: Option<PathBuf>,
    binary: Option<String>,
    interval: Option<HumanDuration>,
    cron: Option<String>,
    jitter: Option<HumanDuration>,
    timeout: Option<HumanDuration>,
    kill_grace: Option<HumanDuration>,
    lock_timeout: Option<HumanDuration>,
    init: Option<InitMode>,
    refresh_only: Option<bool>,
    parallelism: Option<u32>,
    run_on_start: Option<bool>,
    var_files: Option<Vec<PathBuf>>,
    backend_config: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    env_files: Option<Vec<PathBuf>>,
    ignore: Option<Vec<RawIgnoreRule>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIgnoreRule {
    address: String,
    attribute: Option<String>,
    reason: String,
    expires: Option<NaiveDate>,
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
    pub proxmox: Option<Proxmox>,
    pub environments: BTreeMap<String, Environment>,
}

#[derive(Debug, Clone)]
pub struct Web {
    pub listen_address: SocketAddr,
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub path: PathBuf,
    pub retention: Duration,
}

/// `proxmox.api_url`, parsed once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// `https://host:8006`, without a trailing slash.
    pub url: String,
    /// The host as written (an IPv6 address in brackets).
    pub host: String,
    /// 8006 when the URL gives none.
    pub port: u16,
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl PartialEq<&str> for ApiUrl {
    fn eq(&self, other: &&str) -> bool {
        self.url == *other
    }
}

/// `HOST[:PORT]` or `[V6][:PORT]`; the port defaults to Proxmox's 8006.
pub(crate) fn split_host_port(hostport: &str) -> Option<(String, u16)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 8006,
            None => return None,
        };
        return Some((format!("[{host}]"), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((hostport.to_owned(), 8006)),
    }
}

/// Settings of the optional unmanaged-guest check (`[proxmox]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxmox {
    pub api_url: ApiUrl,
    /// `USER@REALM!TOKENID`.
    pub token_id: String,
    pub token_secret: TokenSecret,
    /// CA certificates to trust (the cluster's `pve-root-ca.pem`); else the system's.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (never the default).
    pub insecure: bool,
    /// How often the inventory is compared with the states.
    pub interval: Duration,
    /// Bound of one API request; each `state pull` has its environment's timeout.
    pub timeout: Duration,
    pub allow_empty_inventory: bool,
    pub ignore: GuestIgnore,
}

/// Where the API token's secret is read (at every check, so that a rotated token is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSecret {
    File(PathBuf),
    EnvVar(String),
}

/// Guests that are deliberately left outside Terraform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestIgnore {
    /// Inclusive vmid ranges (`"9000-9099"`, or one id `"150"`).
    pub vmids: Vec<(u32, u32)>,
    /// Globs on the guest name (`*`, `?`).
    pub names: Vec<String>,
    /// A guest carrying any of these tags is ignored (compared case-insensitively).
    pub tags: Vec<String>,
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
    /// Reads `path` plus the `TFDRIFT_` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, Env::prefixed(ENV_PREFIX).split("__"))
    }

    fn load_with_env(path: &Path, env: Env) -> Result<Config, ConfigError> {
        // figment ignores a missing file; a missing configuration must stop start-up.
        std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse(one_line(e)))?;
        validate(path, raw)
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

impl Config {
    /// The effective settings of every environment and its next three runs, for
    /// `check-config`.
    pub fn describe(&self, now: chrono::DateTime<chrono::Local>) -> String {
        use std::fmt::Write;
        let d = crate::schedule::human;
        let mut out = String::new();
        let _ = writeln!(out, "configuration: {} (valid)", self.file.display());
        let _ = writeln!(out, "listen address: {}", self.web.listen_address);
        let _ = writeln!(
            out,
            "storage: {} (retention {})",
            self.storage.path.display(),
            d(self.storage.retention)
        );
        let _ = writeln!(out, "max concurrent scans: {}", self.max_concurrent_scans);
        if let Some(p) = &self.proxmox {
            let _ = writeln!(out, "\nproxmox (unmanaged guests)");
            let _ = writeln!(out, "  api url:      {} as {}", p.api_url, p.token_id);
            let secret = match &p.token_secret {
                TokenSecret::File(f) if f.is_file() => format!("file {}", f.display()),
                TokenSecret::File(f) => {
                    format!("file {}  (WARNING: not a readable file)", f.display())
                }
                TokenSecret::EnvVar(v) if std::env::var_os(v).is_some() => format!("variable {v}"),
                TokenSecret::EnvVar(v) => format!("variable {v}  (WARNING: not set)"),
            };
            let _ = writeln!(out, "  token secret: {secret}");
            let tls = match (&p.ca_file, p.insecure) {
                (_, true) => "INSECURE: certificates are not verified".to_owned(),
                (Some(ca), false) => format!("CA file {}", ca.display()),
                (None, false) => "the system's CA certificates".to_owned(),
            };
            let _ = writeln!(out, "  tls:          {tls}");
            let _ = writeln!(
                out,
                "  interval:     every {} (request timeout {})",
                d(p.interval),
                d(p.timeout)
            );
            let _ = writeln!(
                out,
                "  empty inventory: {}",
                if p.allow_empty_inventory {
                    "allowed"
                } else {
                    "an error"
                }
            );
            let ranges: Vec<String> = p
                .ignore
                .vmids
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            let list = |items: &[String]| listed(items.to_vec());
            let _ = writeln!(
                out,
                "  ignore:       vmids {}; names {}; tags {}",
                list(&ranges),
                list(&p.ignore.names),
                list(&p.ignore.tags)
            );
        }
        for env in self.environments.values() {
            let _ = writeln!(out, "\nenvironment {}", env.name);
            let dir_note = if env.dir.is_dir() {
                ""
            } else {
                "  (WARNING: not a directory)"
            };
            let _ = writeln!(out, "  dir:          {}{dir_note}", env.dir.display());
            let _ = writeln!(out, "  binary:       {}", env.binary);
            let _ = writeln!(
                out,
                "  schedule:     {} (jitter up to {}, run on start: {})",
                env.schedule.describe(),
                d(env.jitter),
                env.run_on_start
            );
            let _ = writeln!(
                out,
                "  timeout:      {} (kill grace {}, lock timeout {})",
                d(env.timeout),
                d(env.kill_grace),
                d(env.lock_timeout)
            );
            let _ = writeln!(out, "  init:         {}", env.init);
            let _ = writeln!(out, "  refresh only: {}", env.refresh_only);
            let _ = writeln!(out, "  parallelism:  {}", env.parallelism);
            let list = listed;
            let _ = writeln!(
                out,
                "  var files:    {}",
                list(
                    env.var_files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect()
                )
            );
            let _ = writeln!(out, "  backend conf: {}", list(env.backend_config.clone()));
            let _ = writeln!(
                out,
                "  env:          {}",
                list(env.env.keys().cloned().collect())
            );
            let _ = writeln!(
                out,
                "  env files:    {}",
                list(
                    env.env_files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect()
                )
            );
            for rule in &env.ignore {
                let mut notes = Vec::new();
                if !crate::ignore::in_force(rule, now.date_naive()) {
                    notes.push("EXPIRED: no longer applied".to_owned());
                }
                if let Some(why) = crate::ignore::impossible_address(&rule.address) {
                    notes.push(format!("WARNING: this address pattern cannot match: {why}"));
                }
                let _ = writeln!(
                    out,
                    "  ignore:       {} {} ({}{}){}",
                    rule.address,
                    rule.attribute.as_deref().unwrap_or("(whole resource)"),
                    rule.reason,
                    rule.expires
                        .map(|e| format!(", expires {e}"))
                        .unwrap_or_default(),
                    notes.iter().map(|n| format!("  {n}")).collect::<String>()
                );
            }
            let runs: Vec<String> = env
                .schedule
                .upcoming(now, 3)
                .iter()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S %:z").to_string())
                .collect();
            let first = if env.run_on_start {
                "at start, then "
            } else {
                ""
            };
            let _ = writeln!(out, "  next runs:    {first}{}", runs.join(", "));
        }
        out
    }
}

/// Items joined by commas, or `-` for none (check-config).
fn listed(items: Vec<String>) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// figment reports one error per line; the CLI shows one line.
fn one_line(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| e.to_string().replace('\n', " "))
        .collect::<Vec<_>>()
        .join("; ")
}

fn validate(file: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        message,
    };
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };

    let listen = raw.web.listen_address.as_deref().unwrap_or("0.0.0.0:9847");
    let listen_address = listen.parse().map_err(|_| {
        invalid(
            "web.listen_address",
            format!("{listen:?} is not an address like \"0.0.0.0:9847\""),
        )
    })?;

    if raw.defaults.dir.is_some() {
        return Err(invalid(
            "defaults.dir",
            "dir is per environment; set it under [environments.NAME]".into(),
        ));
    }
    if raw.environments.is_empty() {
        return Err(invalid(
            "environments",
            "no environment is configured; add an [environments.NAME] table with a dir".into(),
        ));
    }
    let retention = match raw.storage.retention {
        Some(d) => within("storage.retention", d.0, RETENTION)
            .map_err(|(key, message)| invalid(&key, message))?,
        None => Duration::from_secs(90 * DAY),
    };
    let mut environments = BTreeMap::new();
    for (name, env) in &raw.environments {
        let environment = merge_environment(name, env, &raw.defaults, &absolute)
            .map_err(|(key, message)| invalid(&key, message))?;
        environments.insert(name.clone(), environment);
    }

    let max_concurrent_scans = raw.scheduler.max_concurrent_scans.unwrap_or(1);
    if max_concurrent_scans == 0 {
        return Err(invalid(
            "scheduler.max_concurrent_scans",
            "must be at least 1".into(),
        ));
    }
    let proxmox = match raw.proxmox {
        Some(p) => Some(
            validate_proxmox(p, &environments, &absolute)
                .map_err(|(key, message)| invalid(&key, message))?,
        ),
        None => None,
    };
    Ok(Config {
        file: file.to_owned(),
        web: Web {
            listen_address,
            config_file: raw.web.config_file.map(|f| absolute(&f)),
        },
        storage: Storage {
            path: absolute(
                &raw.storage
                    .path
                    .unwrap_or_else(|| PathBuf::from("/var/lib/tfdrift-exporter")),
            ),
            retention,
        },
        max_concurrent_scans,
        max_resource_series: raw.metrics.max_resource_series.unwrap_or(100),
        proxmox,
        environments,
    })
}

fn validate_proxmox(
    p: RawProxmox,
    environments: &BTreeMap<String, Environment>,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> Result<Proxmox, (String, String)> {
    let key = |k: &str| format!("proxmox.{k}");
    let api_url = p.api_url.trim().trim_end_matches('/').to_owned();
    let Some(host) = api_url.strip_prefix("https://") else {
        return Err((
            key("api_url"),
            format!("{api_url:?} must start with https:// (like \"https://pve1.lan:8006\")"),
        ));
    };
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err((
            key("api_url"),
            format!(
                "{api_url:?} must be https://HOST[:PORT] without a path (the exporter adds /api2/json)"
            ),
        ));
    }
    let Some((host, port)) = split_host_port(host) else {
        return Err((
            key("api_url"),
            format!("{api_url:?} has a bad port (like \"https://pve1.lan:8006\")"),
        ));
    };
    let api_url = ApiUrl {
        url: api_url,
        host,
        port,
    };
    let valid_token = p
        .token_id
        .split_once('!')
        .is_some_and(|(user, id)| user.contains('@') && !id.is_empty() && !id.contains('='));
    if !valid_token {
        return Err((
            key("token_id"),
            format!(
                "{:?} is not an API token id like \"tfdrift@pve!monitoring\" (USER@REALM!TOKENID, without the secret)",
                p.token_id
            ),
        ));
    }
    let token_secret = match (p.token_secret_file, p.token_secret_env) {
        (Some(file), None) => TokenSecret::File(absolute(&file)),
        (None, Some(var)) if !var.trim().is_empty() => TokenSecret::EnvVar(var.trim().to_owned()),
        (None, Some(_)) => {
            return Err((
                key("token_secret_env"),
                "must name an environment variable".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err((
                key("token_secret_file"),
                "set either token_secret_file or token_secret_env, not both".into(),
            ));
        }
        (None, None) => {
            return Err((
                key("token_secret_file"),
                "missing: the file holding the API token's secret (or token_secret_env naming a variable)".into(),
            ));
        }
    };
    if p.insecure && p.ca_file.is_some() {
        return Err((
            key("insecure"),
            "insecure = true skips certificate verification, so ca_file would be unused; set one of them".into(),
        ));
    }
    let interval = match p.interval {
        Some(d) => within(&key("interval"), d.0, INTERVAL)?,
        None => environments
            .values()
            .map(|e| e.schedule.period())
            .min()
            .unwrap_or(Duration::from_secs(86_400)),
    };
    let timeout = match p.timeout {
        Some(d) => within(&key("timeout"), d.0, PROXMOX_TIMEOUT)?,
        None => Duration::from_secs(30),
    };
    let mut vmids = Vec::new();
    for (i, range) in p.ignore.vmids.iter().enumerate() {
        let parsed = match range.split_once('-') {
            Some((a, b)) => a
                .trim()
                .parse::<u32>()
                .ok()
                .zip(b.trim().parse::<u32>().ok()),
            None => range.trim().parse::<u32>().ok().map(|v| (v, v)),
        };
        match parsed {
            Some((a, b)) if a <= b => vmids.push((a, b)),
            _ => {
                return Err((
                    key(&format!("ignore.vmids[{i}]")),
                    format!("{range:?} is not a vmid or an inclusive range like \"9000-9099\""),
                ));
            }
        }
    }
    if let Some(i) = p.ignore.names.iter().position(|n| n.trim().is_empty()) {
        return Err((
            key(&format!("ignore.names[{i}]")),
            "must not be empty".into(),
        ));
    }
    if let Some(i) = p.ignore.tags.iter().position(|t| t.trim().is_empty()) {
        return Err((
            key(&format!("ignore.tags[{i}]")),
            "must not be empty".into(),
        ));
    }
    Ok(Proxmox {
        api_url,
        token_id: p.token_id,
        token_secret,
        ca_file: p.ca_file.map(|f| absolute(&f)),
        insecure: p.insecure,
        interval,
        timeout,
        allow_empty_inventory: p.allow_empty_inventory,
        ignore: GuestIgnore {
            vmids,
            names: p.ignore.names,
            tags: p
                .ignore
                .tags
                .iter()
                .map(|t| t.trim().to_lowercase())
                .collect(),
        },
    })
}

/// True for names that are safe in paths, URLs and metric labels.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn merge_environment(
    name: &str,
    env: &RawEnvironment,
    defaults: &RawEnvironment,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> Result<Environment, (String, String)> {
    let key = |k: &str| format!("environments.{name}.{k}");
    if !valid_name(name) {
        return Err((
            format!("environments.{name}"),
            "environment names may use only letters, digits, '-' and '_' (at most 64)".into(),
        ));
    }
    let dir = env.dir.as_deref().ok_or_else(|| {
        (
            key("dir"),
            "missing: the directory holding the environment's Terraform code".to_owned(),
        )
    })?;

    let schedule = match (
        env.interval.is_some() || env.cron.is_some(),
        defaults.interval.is_some() || defaults.cron.is_some(),
    ) {
        (true, _) => schedule_of(env, &key("interval"))?,
        (false, true) => schedule_of(defaults, "defaults.interval")?,
        (false, false) => Schedule::Interval(Duration::from_secs(86_400)),
    };

    // The environment's own value, else the default's, each checked under its own key.
    let pick = |name: &str,
                own: Option<HumanDuration>,
                default: Option<HumanDuration>,
                builtin: u64,
                bounds: Bounds| match (own, default) {
        (Some(d), _) => within(&key(name), d.0, bounds),
        (None, Some(d)) => within(&format!("defaults.{name}"), d.0, bounds),
        (None, None) => Ok(Duration::from_secs(builtin)),
    };
    let timeout = pick("timeout", env.timeout, defaults.timeout, 300, TIMEOUT)?;
    let jitter = pick("jitter", env.jitter, defaults.jitter, 300, JITTER)?;
    let kill_grace = pick(
        "kill_grace",
        env.kill_grace,
        defaults.kill_grace,
        30,
        KILL_GRACE,
    )?;
    let lock_timeout = pick(
        "lock_timeout",
        env.lock_timeout,
        defaults.lock_timeout,
        60,
        LOCK_TIMEOUT,
    )?;
    let parallelism = env.parallelism.or(defaults.parallelism).unwrap_or(10);
    if parallelism == 0 {
        return Err((key("parallelism"), "must be at least 1".into()));
    }
    let binary = env
        .binary
        .clone()
        .or_else(|| defaults.binary.clone())
        .unwrap_or_else(|| "terraform".into());
    if binary.trim().is_empty() {
        return Err((
            key("binary"),
            "must name terraform, tofu or an absolute path".into(),
        ));
    }

    let mut vars = defaults.env.clone().unwrap_or_default();
    vars.extend(env.env.clone().unwrap_or_default());
    for reserved in [
        "TF_DATA_DIR",
        "TF_IN_AUTOMATION",
        "TF_INPUT",
        crate::orphans::VAR,
    ] {
        if vars.contains_key(reserved) {
            return Err((
                key("env"),
                format!("{reserved} is set by the exporter and cannot be overridden"),
            ));
        }
    }

    let mut ignore = Vec::new();
    for (i, rule) in defaults
        .ignore
        .iter()
        .flatten()
        .chain(env.ignore.iter().flatten())
        .enumerate()
    {
        if rule.reason.trim().is_empty() || rule.address.trim().is_empty() {
            return Err((
                key(&format!("ignore[{i}]")),
                "address and reason must not be empty".into(),
            ));
        }
        ignore.push(IgnoreRule {
            address: rule.address.clone(),
            attribute: rule.attribute.clone(),
            reason: rule.reason.clone(),
            expires: rule.expires,
        });
    }

    Ok(Environment {
        name: name.to_owned(),
        dir: absolute(dir),
        binary,
        schedule,
        jitter,
        timeout,
        kill_grace,
        lock_timeout,
        init: env.init.or(defaults.init).unwrap_or(InitMode::Auto),
        refresh_only: env.refresh_only.or(defaults.refresh_only).unwrap_or(false),
        parallelism,
        run_on_start: env.run_on_start.or(defaults.run_on_start).unwrap_or(true),
        var_files: env
            .var_files
            .clone()
            .or_else(|| defaults.var_files.clone())
            .unwrap_or_default(),
        backend_config: env
            .backend_config
            .clone()
            .or_else(|| defaults.backend_config.clone())
            .unwrap_or_default(),
        env: vars,
        env_files: defaults
            .env_files
            .iter()
            .flatten()
            .chain(env.env_files.iter().flatten())
            .map(|f| absolute(f))
            .collect(),
        ignore,
    })
}

fn schedule_of(raw: &RawEnvironment, key: &str) -> Result<Schedule, (String, String)> {
    let cron_key = key.replace(".interval", ".cron");
    match (&raw.interval, &raw.cron) {
        (Some(_), Some(_)) => Err((
            key.to_owned(),
            "set either interval or cron, not both".into(),
        )),
        (Some(d), None) => within(key, d.0, INTERVAL).map(Schedule::Interval),
        (None, Some(expr)) => Schedule::cron(expr).map_err(|e| (cron_key, e)),
        (None, None) => unreachable!("schedule_of is only called when one is set"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/etc/t/config.toml"), text)
    }

    #[test]
    fn defaults_merge_into_each_environment() {
        let c = load(
            r#"
            [defaults]
            timeout = "2m"
            env = { A = "1" }
            [environments.prod]
            dir = "envs/prod"
            interval = "6h"
            env = { B = "2" }
            [environments.lab]
            dir = "/srv/lab"
            cron = "0 3 * * *"
            timeout = "10m"
            "#,
        )
        .unwrap();
        let prod = &c.environments["prod"];
        assert_eq!(prod.dir, PathBuf::from("/etc/t/envs/prod"));
        assert_eq!(prod.timeout, Duration::from_secs(120));
        assert_eq!(
            prod.schedule,
            Schedule::Interval(Duration::from_secs(6 * 3600))
        );
        assert_eq!(prod.env.len(), 2);
        let lab = &c.environments["lab"];
        assert_eq!(lab.timeout, Duration::from_secs(600));
        assert!(matches!(lab.schedule, Schedule::Cron { .. }));
        assert_eq!(lab.kill_grace, Duration::from_secs(30));
    }

    #[test]
    fn errors_name_the_key_and_what_was_expected() {
        let e = load("[environments.prod]\ndir = \"x\"\ninterval = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("environments.prod.interval") && e.contains("duration"),
            "{e}"
        );
        let e = load("[environments.prod]\ndir = \"x\"\ncolour = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field") && e.contains("colour"), "{e}");
        let e = load("[environments.prod]\ndir = \"x\"\ninterval = \"1h\"\ncron = \"* * * * *\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("either interval or cron"), "{e}");
        let e = load("[environments.prod]\ndir = \"x\"\ncron = \"99 * * * *\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("environments.prod.cron"), "{e}");
        let e = load("[environments.prod]\ninterval = \"1h\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("environments.prod.dir"), "{e}");
        let e = load("[environments.\"pr od\"]\ndir = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("letters, digits"), "{e}");
    }

    #[test]
    fn proxmox_settings_are_checked_and_default_to_the_shortest_interval() {
        let base = "[environments.prod]\ndir = \"x\"\ninterval = \"6h\"\n[environments.lab]\ndir = \"y\"\ninterval = \"30m\"\n";
        let with = |p: &str| load(&format!("{base}[proxmox]\n{p}"));
        let ok = "api_url = \"https://pve1.lan:8006/\"\ntoken_id = \"tfdrift@pve!mon\"\ntoken_secret_file = \"pve-token\"\n";
        let c = with(&format!(
            "{ok}[proxmox.ignore]\nvmids = [\"9000-9099\", \"150\"]\ntags = [\"Unmanaged\"]\n"
        ))
        .unwrap();
        let p = c.proxmox.unwrap();
        assert_eq!(p.api_url, "https://pve1.lan:8006");
        assert_eq!(p.interval, Duration::from_secs(1800));
        assert_eq!(
            p.token_secret,
            TokenSecret::File(PathBuf::from("/etc/t/pve-token"))
        );
        assert_eq!(p.ignore.vmids, [(9000, 9099), (150, 150)]);
        assert_eq!(p.ignore.tags, ["unmanaged"]);
        assert!(!p.insecure && !p.allow_empty_inventory);

        for (text, key, words) in [
            (
                "api_url = \"http://pve:8006\"\ntoken_id = \"a@pve!b\"\ntoken_secret_file = \"f\"",
                "proxmox.api_url",
                "https://",
            ),
            (
                "api_url = \"https://pve\"\ntoken_id = \"a@pve!b=secret\"\ntoken_secret_file = \"f\"",
                "proxmox.token_id",
                "without the secret",
            ),
            (
                "api_url = \"https://pve\"\ntoken_id = \"a@pve!b\"",
                "proxmox.token_secret_file",
                "missing",
            ),
            (
                "api_url = \"https://pve\"\ntoken_id = \"a@pve!b\"\ntoken_secret_file = \"f\"\ntoken_secret_env = \"V\"",
                "proxmox.token_secret_file",
                "not both",
            ),
            (
                "api_url = \"https://pve\"\ntoken_id = \"a@pve!b\"\ntoken_secret_file = \"f\"\ninsecure = true\nca_file = \"ca.pem\"",
                "proxmox.insecure",
                "ca_file",
            ),
            (
                "api_url = \"https://pve\"\ntoken_id = \"a@pve!b\"\ntoken_secret_file = \"f\"\n[proxmox.ignore]\nvmids = [\"200-100\"]",
                "proxmox.ignore.vmids[0]",
                "range",
            ),
        ] {
            let e = with(text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(words), "{text}: {e}");
        }
        let e = with(&format!("{ok}verify = false\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field") && e.contains("verify"), "{e}");
    }
}
