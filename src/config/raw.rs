//! The file as written: every key optional, unknown keys refused.

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) web: RawWeb,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) defaults: RawEnvironment,
    #[serde(default)]
    pub(super) scheduler: RawScheduler,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) proxmox: Option<RawProxmox>,
    #[serde(default)]
    pub(super) discovery: Option<RawDiscovery>,
    #[serde(default)]
    pub(super) sharding: RawSharding,
    #[serde(default)]
    pub(super) environments: BTreeMap<String, RawEnvironment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub(super) listen_address: Option<String>,
    pub(super) external_url: Option<String>,
    pub(super) config_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) path: Option<PathBuf>,
    pub(super) retention: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScheduler {
    pub(super) max_concurrent_scans: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) max_resource_series: Option<usize>,
    pub(super) max_resource_series_total: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxmox {
    pub(super) api_url: String,
    pub(super) token_id: String,
    pub(super) token_secret_file: Option<PathBuf>,
    pub(super) token_secret_env: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) insecure: bool,
    pub(super) interval: Option<HumanDuration>,
    pub(super) timeout: Option<HumanDuration>,
    #[serde(default)]
    pub(super) allow_empty_inventory: bool,
    pub(super) attribution: Option<bool>,
    pub(super) attribution_interval: Option<HumanDuration>,
    pub(super) events: Option<bool>,
    pub(super) digest_interval: Option<HumanDuration>,
    #[serde(default)]
    pub(super) terraform_token_ids: Vec<String>,
    #[serde(default)]
    pub(super) ignore: RawProxmoxIgnore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxmoxIgnore {
    #[serde(default)]
    pub(super) vmids: Vec<String>,
    #[serde(default)]
    pub(super) names: Vec<String>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
}

/// One `[environments.NAME]` table, or `[defaults]`: every key optional here.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvironment {
    pub(super) dir: Option<PathBuf>,
    pub(super) binary: Option<String>,
    pub(super) interval: Option<HumanDuration>,
    pub(super) cron: Option<String>,
    pub(super) jitter: Option<HumanDuration>,
    pub(super) timeout: Option<HumanDuration>,
    pub(super) kill_grace: Option<HumanDuration>,
    pub(super) lock_timeout: Option<HumanDuration>,
    pub(super) init: Option<InitMode>,
    pub(super) refresh_only: Option<bool>,
    pub(super) parallelism: Option<u32>,
    pub(super) run_on_start: Option<bool>,
    pub(super) var_files: Option<Vec<PathBuf>>,
    pub(super) backend_config: Option<Vec<String>>,
    pub(super) env: Option<BTreeMap<String, String>>,
    pub(super) env_files: Option<Vec<PathBuf>>,
    pub(super) ignore: Option<Vec<RawIgnoreRule>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIgnoreRule {
    pub(super) address: String,
    pub(super) attribute: Option<String>,
    pub(super) reason: String,
    pub(super) expires: Option<NaiveDate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSharding {
    pub(super) total_shards: Option<u32>,
    pub(super) shard: Option<RawShard>,
}

/// `shard = 2` or `shard = "auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawShard {
    Number(u32),
    Text(String),
}
