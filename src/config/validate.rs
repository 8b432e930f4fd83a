//! From the raw file to the validated configuration: defaults merged, paths made
//! absolute, every value checked, errors naming the key.

use super::*;

/// The range a duration key accepts: below it a value is a typo, beyond it timers and
/// terraform's own flags overflow (a `timeout` of u64::MAX seconds, a `lock_timeout` past
/// Go's 290 years).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    min: Duration,
    max: Duration,
}

pub(super) const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) const DAY: u64 = 86_400;
pub(super) const INTERVAL: Bounds = Bounds {
    min: secs(1),
    max: secs(366 * DAY),
};
pub(super) const JITTER: Bounds = Bounds {
    min: secs(0),
    max: secs(7 * DAY),
};
pub(super) const TIMEOUT: Bounds = Bounds {
    min: secs(1),
    max: secs(DAY),
};
pub(super) const KILL_GRACE: Bounds = Bounds {
    min: secs(0),
    max: secs(3_600),
};
pub(super) const LOCK_TIMEOUT: Bounds = Bounds {
    min: secs(0),
    max: secs(DAY),
};
pub(super) const RETENTION: Bounds = Bounds {
    min: secs(DAY),
    max: secs(3_660 * DAY),
};
pub(super) const ATTRIBUTION_INTERVAL: Bounds = Bounds {
    min: secs(1),
    max: secs(3_600),
};
pub(super) const DIGEST_INTERVAL: Bounds = Bounds {
    min: secs(1),
    max: secs(DAY),
};
pub(super) const PROXMOX_TIMEOUT: Bounds = Bounds {
    min: secs(1),
    max: secs(3_600),
};

/// A value that cannot be used, under its key; [`validate`] adds the file.
#[derive(Debug, thiserror::Error)]
#[error("key {key:?}: {message}")]
pub(super) struct KeyError {
    key: String,
    message: String,
}

impl KeyError {
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> KeyError {
        KeyError {
            key: key.into(),
            message: message.into(),
        }
    }

    fn in_file(self, file: &Path) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_owned(),
            key: self.key,
            message: self.message,
        }
    }
}

/// `d` when it lies within `bounds`, else an error naming `key` and the range.
pub(super) fn within(key: &str, d: Duration, bounds: Bounds) -> Result<Duration, KeyError> {
    if d < bounds.min || d > bounds.max {
        return Err(KeyError::new(
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

pub(super) fn validate(file: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let invalid = |key: &str, message: &str| KeyError::new(key, message).in_file(file);
    let base = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let absolute = |p: &Path| base.join(p);

    let listen = raw.web.listen_address.as_deref().unwrap_or("0.0.0.0:9847");
    let listen_address = listen.parse().map_err(|_| {
        invalid(
            "web.listen_address",
            &format!("{listen:?} is not an address like \"0.0.0.0:9847\""),
        )
    })?;

    if raw.defaults.dir.is_some() {
        return Err(invalid(
            "defaults.dir",
            "dir is per environment; set it under [environments.NAME]",
        ));
    }
    let mut listed = raw.environments;
    let discovery = match raw.discovery {
        Some(d) => {
            let d = d.validate(&absolute).map_err(|e| e.in_file(file))?;
            // A listed environment of a found name keeps its settings and, unless it sets
            // its own, takes the found directory.
            for (name, dir) in d.find().map_err(|e| e.in_file(file))? {
                let env = listed.entry(name).or_default();
                if env.dir.is_none() {
                    env.dir = Some(dir);
                }
            }
            Some(d)
        }
        None => None,
    };
    if listed.is_empty() {
        let message = match &discovery {
            Some(d) => format!(
                "no environment is configured and discovery found none under {}",
                d.root.display()
            ),
            None => "no environment is configured; add an [environments.NAME] table with a dir"
                .to_owned(),
        };
        return Err(invalid("environments", &message));
    }
    let retention = match raw.storage.retention {
        Some(d) => within("storage.retention", d.0, RETENTION).map_err(|e| e.in_file(file))?,
        None => Duration::from_secs(90 * DAY),
    };
    let mut environments = BTreeMap::new();
    for (name, env) in &listed {
        let environment =
            merge_environment(name, env, &raw.defaults, &absolute).map_err(|e| e.in_file(file))?;
        environments.insert(name.clone(), environment);
    }

    let max_concurrent_scans = raw.scheduler.max_concurrent_scans.unwrap_or(1);
    if max_concurrent_scans == 0 {
        return Err(invalid(
            "scheduler.max_concurrent_scans",
            "must be at least 1",
        ));
    }
    let proxmox = match raw.proxmox {
        Some(p) => {
            Some(validate_proxmox(p, &environments, &absolute).map_err(|e| e.in_file(file))?)
        }
        None => None,
    };
    Ok(Config {
        file: file.to_owned(),
        web: Web {
            listen_address,
            external_url: external_url(raw.web.external_url.as_deref())
                .map_err(|e| e.in_file(file))?,
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
        max_resource_series_total: raw.metrics.max_resource_series_total.unwrap_or(10_000),
        proxmox,
        discovery,
        sharding: sharding(raw.sharding).map_err(|e| e.in_file(file))?,
        environments,
        elsewhere: BTreeMap::new(),
    })
}

/// The longest `web.external_url`: with `/environments/<64 characters>` the alert's link
/// stays within the 292 characters the Telegram template links.
const EXTERNAL_URL_MAX: usize = 200;

/// `web.external_url`: `http(s)://HOST[:PORT][/PATH]`, kept without a trailing slash. Only
/// the characters the Telegram template puts in a link (letters, digits, `-._~:/%[]`; an
/// international host name in its `xn--` form), so that no alert loses its link.
fn external_url(raw: Option<&str>) -> Result<Option<String>, KeyError> {
    let Some(raw) = raw else { return Ok(None) };
    let url = raw.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let linkable = |c: char| c.is_ascii_alphanumeric() || "-._~:/%[]".contains(c);
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && rest.chars().all(linkable)
                && url.len() <= EXTERNAL_URL_MAX =>
        {
            Ok(Some(url.to_owned()))
        }
        _ => Err(KeyError::new(
            "web.external_url",
            format!(
                "{raw:?} is not a URL like \"https://monitoring.lan:9847\" (how people reach the exporter; letters, digits and -._~:/%[] only, at most {EXTERNAL_URL_MAX} characters)"
            ),
        )),
    }
}

/// True for names that are safe in paths, URLs and metric labels.
/// (An environment's name becomes a path segment under `storage.path`: the store's rule.)
pub(super) fn valid_name(name: &str) -> bool {
    name.len() <= 64 && crate::store::safe_name(name)
}

pub(super) fn merge_environment(
    name: &str,
    env: &RawEnvironment,
    defaults: &RawEnvironment,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> Result<Environment, KeyError> {
    let key = |k: &str| format!("environments.{name}.{k}");
    if !valid_name(name) {
        return Err(KeyError::new(
            format!("environments.{name}"),
            "environment names may use only letters, digits, '-' and '_' (at most 64)",
        ));
    }
    let dir = env.dir.as_deref().ok_or_else(|| {
        KeyError::new(
            key("dir"),
            "missing: the directory holding the environment's Terraform code",
        )
    })?;

    let schedule = merged_schedule(env, defaults, &key("interval"))?;
    let Timing {
        timeout,
        jitter,
        kill_grace,
        lock_timeout,
    } = timing(env, defaults, &key)?;
    let parallelism = env.parallelism.or(defaults.parallelism).unwrap_or(10);
    if parallelism == 0 {
        return Err(KeyError::new(key("parallelism"), "must be at least 1"));
    }
    let binary = merged_binary(env, defaults, &key("binary"))?;
    let vars = merged_vars(env, defaults, &key)?;
    let ignore = merged_ignore(env, defaults, &key)?;

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

/// The durations of an environment: bounded, its own value else the default's.
struct Timing {
    timeout: Duration,
    jitter: Duration,
    kill_grace: Duration,
    lock_timeout: Duration,
}

fn timing(
    env: &RawEnvironment,
    defaults: &RawEnvironment,
    key: &dyn Fn(&str) -> String,
) -> Result<Timing, KeyError> {
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
    Ok(Timing {
        timeout,
        jitter,
        kill_grace,
        lock_timeout,
    })
}

/// `[defaults].env` with the environment's own `env` over it; the exporter's own variables
/// are refused.
fn merged_vars(
    env: &RawEnvironment,
    defaults: &RawEnvironment,
    key: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, String>, KeyError> {
    let mut vars = defaults.env.clone().unwrap_or_default();
    vars.extend(env.env.clone().unwrap_or_default());
    if let Some((name, why)) = vars
        .keys()
        .find_map(|name| crate::environ::forbidden(name).map(|why| (name, why)))
    {
        return Err(KeyError::new(
            key("env"),
            format!("{name} is not allowed: {why}"),
        ));
    }
    for reserved in [
        "TF_DATA_DIR",
        "TF_IN_AUTOMATION",
        "TF_INPUT",
        crate::orphans::VAR,
    ] {
        if vars.contains_key(reserved) {
            return Err(KeyError::new(
                key("env"),
                format!("{reserved} is set by the exporter and cannot be overridden"),
            ));
        }
    }
    Ok(vars)
}

/// The default ignore rules, then the environment's, with their globs compiled.
fn merged_ignore(
    env: &RawEnvironment,
    defaults: &RawEnvironment,
    key: &dyn Fn(&str) -> String,
) -> Result<Vec<IgnoreRule>, KeyError> {
    let mut ignore = Vec::new();
    for (i, rule) in defaults
        .ignore
        .iter()
        .flatten()
        .chain(env.ignore.iter().flatten())
        .enumerate()
    {
        if rule.reason.trim().is_empty() || rule.address.trim().is_empty() {
            return Err(KeyError::new(
                key(&format!("ignore[{i}]")),
                "address and reason must not be empty",
            ));
        }
        ignore.push(IgnoreRule {
            address: crate::glob::Glob::new(&rule.address),
            attribute: rule.attribute.as_deref().map(crate::glob::Glob::new),
            reason: rule.reason.clone(),
            expires: rule.expires,
        });
    }
    Ok(ignore)
}

/// The environment's schedule, else the default's, else daily.
fn merged_schedule(
    env: &RawEnvironment,
    defaults: &RawEnvironment,
    key: &str,
) -> Result<Schedule, KeyError> {
    let schedule = match (
        env.interval.is_some() || env.cron.is_some(),
        defaults.interval.is_some() || defaults.cron.is_some(),
    ) {
        (true, _) => schedule_of(env, key)?,
        (false, true) => schedule_of(defaults, "defaults.interval")?,
        (false, false) => Schedule::Interval(Duration::from_secs(86_400)),
    };
    Ok(schedule)
}

/// The terraform (or tofu) binary: the environment's, the default's, or `terraform`.
fn merged_binary(
    env: &RawEnvironment,
    defaults: &RawEnvironment,
    key: &str,
) -> Result<String, KeyError> {
    let binary = env
        .binary
        .clone()
        .or_else(|| defaults.binary.clone())
        .unwrap_or_else(|| "terraform".into());
    if binary.trim().is_empty() {
        return Err(KeyError::new(
            key,
            "must name terraform, tofu or an absolute path",
        ));
    }
    Ok(binary)
}

pub(super) fn schedule_of(raw: &RawEnvironment, key: &str) -> Result<Schedule, KeyError> {
    let cron_key = key.replace(".interval", ".cron");
    match (&raw.interval, &raw.cron) {
        (Some(_), Some(_)) => Err(KeyError::new(
            key.to_owned(),
            "set either interval or cron, not both",
        )),
        (Some(d), None) => within(key, d.0, INTERVAL).map(Schedule::Interval),
        (None, Some(expr)) => Schedule::cron(expr).map_err(|e| KeyError::new(cron_key, e)),
        (None, None) => unreachable!("schedule_of is only called when one is set"),
    }
}

/// `[sharding]`; `"auto"` takes the ordinal from the host name.
fn sharding(raw: RawSharding) -> Result<crate::shard::Shard, KeyError> {
    let total = raw.total_shards.unwrap_or(1);
    let shard = match raw.shard {
        None => "0".to_owned(),
        Some(RawShard::Number(n)) => n.to_string(),
        Some(RawShard::Text(text)) => text,
    };
    crate::shard::Shard::resolve(&shard, total, crate::shard::host_name().as_deref())
        .map_err(|message| KeyError::new("sharding.shard", message))
}
