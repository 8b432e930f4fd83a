//! `[proxmox]`: the unmanaged-guest check's settings, parsed and checked at load.

use super::*;
use crate::glob::Glob;

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
    /// Read the cluster log and the nodes' task lists to tell who changed a guest.
    pub attribution: bool,
    /// How often the cluster log and the task lists are read (the log is a ring of 128 KiB:
    /// minutes, not hours); change signals are found at the same reads.
    pub attribution_interval: Duration,
    /// Scan an environment soon after Proxmox records a change of one of its guests
    /// ([`crate::signals`]).
    pub events: bool,
    /// How often the config digest of each guest a state manages is read (for the edits
    /// that write no log line: LXC configs).
    pub digest_interval: Duration,
    /// The tokens Terraform applies with (`terraform@pve!apply`): their changes are
    /// Terraform's own.
    pub terraform_token_ids: Vec<String>,
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
    pub names: Vec<Glob>,
    /// A guest carrying any of these tags is ignored (compared case-insensitively).
    pub tags: Vec<String>,
}

pub(super) fn validate_proxmox(
    p: RawProxmox,
    environments: &BTreeMap<String, Environment>,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> Result<Proxmox, KeyError> {
    let key = |k: &str| format!("proxmox.{k}");
    let api_url = parse_api_url(&p.api_url)?;
    if !valid_token_id(&p.token_id) {
        return Err(KeyError::new(
            key("token_id"),
            format!(
                "{:?} is not an API token id like \"tfdrift@pve!monitoring\" (USER@REALM!TOKENID, without the secret)",
                p.token_id
            ),
        ));
    }
    let token_secret = token_secret(p.token_secret_file, p.token_secret_env, absolute)?;
    if p.insecure && p.ca_file.is_some() {
        return Err(KeyError::new(
            key("insecure"),
            "insecure = true skips certificate verification, so ca_file would be unused; set one of them",
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
    let ignore = guest_ignore(p.ignore)?;
    let attribution_interval = match p.attribution_interval {
        Some(d) => within(&key("attribution_interval"), d.0, ATTRIBUTION_INTERVAL)?,
        None => Duration::from_secs(10),
    };
    let digest_interval = match p.digest_interval {
        Some(d) => within(&key("digest_interval"), d.0, DIGEST_INTERVAL)?,
        None => Duration::from_secs(30),
    };
    if let Some((i, id)) = p
        .terraform_token_ids
        .iter()
        .enumerate()
        .find(|(_, id)| !valid_token_id(id))
    {
        return Err(KeyError::new(
            key(&format!("terraform_token_ids[{i}]")),
            format!(
                "{id:?} is not an API token id like \"terraform@pve!apply\" (USER@REALM!TOKENID)"
            ),
        ));
    }
    let attribution = p.attribution.unwrap_or(true);
    if p.events == Some(true) && !attribution {
        return Err(KeyError::new(
            key("events"),
            "change signals are found at the reads of the cluster log and tasks: set attribution = true, or leave events out",
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
        attribution,
        attribution_interval,
        events: p.events.unwrap_or(attribution),
        digest_interval,
        terraform_token_ids: p.terraform_token_ids,
        ignore,
    })
}

/// `USER@REALM!TOKENID`, without the secret.
fn valid_token_id(id: &str) -> bool {
    id.split_once('!').is_some_and(|(user, token)| {
        user.contains('@') && !token.is_empty() && !token.contains('=')
    })
}

/// `proxmox.api_url`: `https://HOST[:PORT]` without a path.
fn parse_api_url(raw: &str) -> Result<ApiUrl, KeyError> {
    let key = |k: &str| format!("proxmox.{k}");
    let api_url = raw.trim().trim_end_matches('/').to_owned();
    let Some(host) = api_url.strip_prefix("https://") else {
        return Err(KeyError::new(
            key("api_url"),
            format!("{api_url:?} must start with https:// (like \"https://pve1.lan:8006\")"),
        ));
    };
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(KeyError::new(
            key("api_url"),
            format!(
                "{api_url:?} must be https://HOST[:PORT] without a path (the exporter adds /api2/json)"
            ),
        ));
    }
    let Some((host, port)) = split_host_port(host) else {
        return Err(KeyError::new(
            key("api_url"),
            format!("{api_url:?} has a bad port (like \"https://pve1.lan:8006\")"),
        ));
    };
    Ok(ApiUrl {
        url: api_url,
        host,
        port,
    })
}

/// Where the token's secret is read: a file or a variable, exactly one.
fn token_secret(
    file: Option<PathBuf>,
    var: Option<String>,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> Result<TokenSecret, KeyError> {
    let key = |k: &str| format!("proxmox.{k}");
    let secret = match (file, var) {
        (Some(file), None) => TokenSecret::File(absolute(&file)),
        (None, Some(var)) if !var.trim().is_empty() => TokenSecret::EnvVar(var.trim().to_owned()),
        (None, Some(_)) => {
            return Err(KeyError::new(
                key("token_secret_env"),
                "must name an environment variable",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(KeyError::new(
                key("token_secret_file"),
                "set either token_secret_file or token_secret_env, not both",
            ));
        }
        (None, None) => {
            return Err(KeyError::new(
                key("token_secret_file"),
                "missing: the file holding the API token's secret (or token_secret_env naming a variable)",
            ));
        }
    };
    Ok(secret)
}

/// `[proxmox.ignore]`: vmid ranges parsed, name globs compiled, tags lower-cased.
fn guest_ignore(ignore: RawProxmoxIgnore) -> Result<GuestIgnore, KeyError> {
    let key = |k: &str| format!("proxmox.{k}");
    let mut vmids = Vec::new();
    for (i, range) in ignore.vmids.iter().enumerate() {
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
                return Err(KeyError::new(
                    key(&format!("ignore.vmids[{i}]")),
                    format!("{range:?} is not a vmid or an inclusive range like \"9000-9099\""),
                ));
            }
        }
    }
    if let Some(i) = ignore.names.iter().position(|n| n.trim().is_empty()) {
        return Err(KeyError::new(
            key(&format!("ignore.names[{i}]")),
            "must not be empty",
        ));
    }
    if let Some(i) = ignore.tags.iter().position(|t| t.trim().is_empty()) {
        return Err(KeyError::new(
            key(&format!("ignore.tags[{i}]")),
            "must not be empty",
        ));
    }
    Ok(GuestIgnore {
        vmids,
        names: ignore.names.iter().map(|n| Glob::new(n)).collect(),
        tags: ignore
            .tags
            .iter()
            .map(|t| t.trim().to_lowercase())
            .collect(),
    })
}
