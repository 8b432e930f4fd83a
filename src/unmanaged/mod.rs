//! Guests created outside Terraform: the Proxmox inventory ([`api`]) compared with the
//! guests every environment's state manages ([`state`]). A guest whose vmid no state holds,
//! and that no `[proxmox.ignore]` entry names, is unmanaged.

pub mod api;
mod render;
pub mod state;

pub use render::render_text;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use std::sync::Arc;

use crate::cancel::{CancellationToken, Cancelled};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::config::{Config, GuestIgnore, Proxmox};
use crate::gate::{Gate, Priority};
use crate::scan::{PullError, pull_state};
use api::{Client, Guest};
use state::{Provider, managed_guests};

/// Why a check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckReason {
    /// The API refused the token (401/403), or it sees no guest at all.
    Auth,
    /// The API cannot be reached: connection, TLS, time-out.
    Connectivity,
    /// The configuration cannot be used: token secret, CA file.
    Config,
    /// The API answered something else than the inventory.
    Api,
    /// An environment's state could not be read.
    State,
}

impl CheckReason {
    pub const ALL: [CheckReason; 5] = [
        CheckReason::Auth,
        CheckReason::Connectivity,
        CheckReason::Config,
        CheckReason::Api,
        CheckReason::State,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckReason::Auth => "auth",
            CheckReason::Connectivity => "connectivity",
            CheckReason::Config => "config",
            CheckReason::Api => "api",
            CheckReason::State => "state",
        }
    }
}

impl fmt::Display for CheckReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckError {
    pub reason: CheckReason,
    pub summary: String,
}

impl CheckError {
    pub fn new(reason: CheckReason, summary: String) -> CheckError {
        CheckError { reason, summary }
    }
}

/// The result of one check (`GET /unmanaged`, `tfdrift-exporter unmanaged --format json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmanaged {
    #[serde(with = "crate::report::rfc3339_seconds")]
    pub checked_at: Option<DateTime<Utc>>,
    /// Unmanaged guests by vmid. After a failed check: those of the last successful one
    /// (`guests_checked_at`), so that a failing API does not look like a clean cluster.
    pub guests: Vec<Guest>,
    #[serde(
        default,
        with = "crate::report::rfc3339_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub guests_checked_at: Option<DateTime<Utc>>,
    /// Guests the inventory listed, templates left out.
    #[serde(default)]
    pub inventory: usize,
    /// Unmanaged guests left out by `[proxmox.ignore]`.
    #[serde(default)]
    pub ignored: usize,
    /// The provider each environment's state uses for its guests (for import blocks).
    #[serde(default)]
    pub providers: BTreeMap<String, Provider>,
    /// The vmids each environment's state manages (which environment a change signal is
    /// for). After a failed check: those of the last successful one.
    #[serde(default)]
    pub managed: BTreeMap<String, BTreeSet<u32>>,
    pub error: Option<CheckError>,
}

impl Unmanaged {
    /// Exit code of `tfdrift-exporter unmanaged`: 0 none, 2 some, 1 the check failed.
    pub fn exit_code(&self) -> u8 {
        match (&self.error, self.guests.is_empty()) {
            (Some(_), _) => 1,
            (None, true) => 0,
            (None, false) => 2,
        }
    }

    /// A failed check that keeps what the last successful one found.
    pub fn failed(error: CheckError, previous: Option<&Unmanaged>) -> Unmanaged {
        let previous = previous.filter(|p| p.error.is_none() || p.guests_checked_at.is_some());
        Unmanaged {
            checked_at: Some(Utc::now()),
            guests: previous.map(|p| p.guests.clone()).unwrap_or_default(),
            guests_checked_at: previous.and_then(|p| p.guests_checked_at.or(p.checked_at)),
            inventory: previous.map(|p| p.inventory).unwrap_or_default(),
            ignored: previous.map(|p| p.ignored).unwrap_or_default(),
            providers: previous.map(|p| p.providers.clone()).unwrap_or_default(),
            managed: previous.map(|p| p.managed.clone()).unwrap_or_default(),
            error: Some(error),
        }
    }

    /// The provider to adopt guests with for `environment`: the one its state uses, else
    /// the one most environments use, else bpg.
    pub fn provider_for(&self, environment: &str) -> Provider {
        if let Some(p) = self.providers.get(environment) {
            return *p;
        }
        let mut counts: BTreeMap<Provider, usize> = BTreeMap::new();
        for p in self.providers.values() {
            *counts.entry(*p).or_default() += 1;
        }
        state::most_used(&counts).unwrap_or(Provider::Bpg)
    }
}

/// True when `guest` is deliberately left outside Terraform.
pub fn is_ignored(guest: &Guest, ignore: &GuestIgnore) -> bool {
    ignore
        .vmids
        .iter()
        .any(|(a, b)| (*a..=*b).contains(&guest.vmid))
        || guest
            .name
            .as_deref()
            .is_some_and(|n| ignore.names.iter().any(|g| g.matches(n)))
        || guest
            .tags
            .iter()
            .any(|t| ignore.tags.contains(&t.to_lowercase()))
}

/// Checks now: the inventory, then every environment's state, each `state pull` holding a
/// permit of `limit` (the scans' limit: never more terraform at once than
/// `scheduler.max_concurrent_scans`).
pub async fn check(
    config: &Config,
    proxmox: &Proxmox,
    limit: &Arc<Gate>,
    cancel: &CancellationToken,
) -> Result<Result<Unmanaged, CheckError>, Cancelled> {
    let (secret, client) = match prepare(proxmox).await {
        Ok(prepared) => prepared,
        Err(e) => return Ok(Err(e)),
    };
    let scrub = |mut e: CheckError| {
        e.summary = e.summary.replace(&secret, "(redacted)");
        e
    };
    let client = match client {
        Ok(client) => client,
        Err(e) => return Ok(Err(scrub(e))),
    };
    let guests = tokio::select! {
        guests = client.guests() => guests,
        _ = cancel.cancelled() => return Err(Cancelled),
    };
    let guests = match guests {
        Ok(guests) => guests,
        Err(e) => return Ok(Err(scrub(e))),
    };
    if guests.is_empty() && !proxmox.allow_empty_inventory {
        return Ok(Err(CheckError::new(
            CheckReason::Auth,
            "the API listed no guest: a token without VM.Audit sees none (give it the role PVEAuditor), or set proxmox.allow_empty_inventory = true if the cluster really has no guest".into(),
        )));
    }
    let (by_environment, providers) = match managed_by_states(config, limit, cancel).await? {
        Ok(found) => found,
        Err(e) => return Ok(Err(scrub(e))),
    };
    let inventory = guests.len();
    let (ignored, mut unmanaged): (Vec<Guest>, Vec<Guest>) = guests
        .into_iter()
        .filter(|g| !by_environment.values().any(|m| m.contains(&g.vmid)))
        .partition(|g| is_ignored(g, &proxmox.ignore));
    creation_times(&client, &mut unmanaged, proxmox.timeout).await;
    Ok(Ok(Unmanaged {
        checked_at: Some(Utc::now()),
        guests: unmanaged,
        guests_checked_at: None,
        inventory,
        ignored: ignored.len(),
        providers,
        managed: by_environment,
        error: None,
    }))
}

/// What a [`Client`] is made of: when one of them changes, a new client is built.
#[derive(PartialEq)]
struct ClientKey {
    proxmox: Proxmox,
    secret: String,
    ca: Option<Vec<u8>>,
}

/// The clients of the settings, secrets and CA files in use, the most recent first, shared
/// by the check and the attribution poller: a client's TLS configuration is built once and
/// its connections are kept alive between requests and polls. Several, so that settings in
/// use side by side (a reload that comes back, several exporters in one test process) do
/// not throw each other's client and connections away at every poll.
static CLIENTS: std::sync::Mutex<Vec<(ClientKey, Arc<Client>)>> = std::sync::Mutex::new(Vec::new());

/// Clients kept at most.
const MAX_CLIENTS: usize = 4;

/// The token's secret and the API client. Both files are read at every check (a rotated
/// secret or CA is picked up), off the runtime's threads; the client is rebuilt only when
/// they or the settings changed, and is an error when the CA file cannot be used.
pub(crate) async fn prepare(
    proxmox: &Proxmox,
) -> Result<(String, Result<Arc<Client>, CheckError>), CheckError> {
    let proxmox = proxmox.clone();
    tokio::task::spawn_blocking(move || {
        let secret = api::token_secret(&proxmox)?;
        let key = ClientKey {
            ca: api::ca_bytes(&proxmox),
            proxmox,
            secret: secret.clone(),
        };
        let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = clients.iter().position(|(known, _)| *known == key) {
            let entry = clients.remove(i);
            let client = entry.1.clone();
            clients.insert(0, entry);
            return Ok((secret, Ok(client)));
        }
        let client = Client::new(&key.proxmox, &secret).map(Arc::new);
        if let Ok(c) = &client {
            clients.insert(0, (key, c.clone()));
            clients.truncate(MAX_CLIENTS);
        }
        Ok((secret, client))
    })
    .await
    .unwrap_or_else(|e| {
        Err(CheckError::new(
            CheckReason::Config,
            format!("cannot read the [proxmox] secret and CA files: {e}"),
        ))
    })
}

/// The vmids each environment's state manages (`state pull`s taking their turns at
/// `limit`), without the inventory: what a shard other than 0 routes change signals by.
pub async fn managed(
    config: &Config,
    limit: &Arc<Gate>,
    cancel: &CancellationToken,
) -> Result<Result<BTreeMap<String, BTreeSet<u32>>, CheckError>, Cancelled> {
    Ok(managed_by_states(config, limit, cancel)
        .await?
        .map(|(managed, _)| managed))
}

/// The vmids each environment's state manages, and each environment's Proxmox provider.
type ManagedByStates = (BTreeMap<String, BTreeSet<u32>>, BTreeMap<String, Provider>);

/// The vmids each environment's state manages, and each environment's Proxmox provider.
async fn managed_by_states(
    config: &Config,
    limit: &Arc<Gate>,
    cancel: &CancellationToken,
) -> Result<Result<ManagedByStates, CheckError>, Cancelled> {
    // Each pull waits its turn among the scans, as due since the check started.
    let since = Priority::due(Utc::now());
    let pulls = config.environments.values().map(|env| async move {
        let pulled = tokio::select! {
            _permit = limit.acquire(since) => pull_state(env, &config.storage.path, cancel).await,
            _ = cancel.cancelled() => Err(PullError::Cancelled(Cancelled)),
        };
        (env.name.clone(), pulled)
    });
    let mut managed = BTreeMap::new();
    let mut providers = BTreeMap::new();
    for (name, pulled) in join_all(pulls).await {
        let document = match pulled {
            Ok(document) => document,
            Err(PullError::Cancelled(c)) => return Err(c),
            Err(PullError::Failed(e)) => {
                return Ok(Err(CheckError::new(
                    CheckReason::State,
                    format!(
                        "environment {name}: terraform state pull failed ({}): {}{}",
                        e.reason,
                        e.summary,
                        first_lines(&e.detail)
                    ),
                )));
            }
        };
        match managed_guests(&document) {
            Ok(m) => {
                if let Some(p) = m.main_provider() {
                    providers.insert(name.clone(), p);
                }
                managed.insert(name, m.vmids);
            }
            Err(e) => {
                return Ok(Err(CheckError::new(
                    CheckReason::State,
                    format!("environment {name}: {e}"),
                )));
            }
        }
    }
    Ok(Ok((managed, providers)))
}

/// Sets `created_by` on each guest of a check whose creation task the journal under
/// `storage` holds (read off the runtime), when attribution is on.
pub async fn name_creators(
    result: &mut Unmanaged,
    proxmox: &crate::config::Proxmox,
    storage: &std::path::Path,
) {
    if !proxmox.attribution || result.guests.is_empty() {
        return;
    }
    let storage = storage.to_owned();
    let journal: Vec<crate::attribution::Entry> =
        tokio::task::spawn_blocking(move || crate::store::attribution_journal(&storage))
            .await
            .unwrap_or_default();
    creators(&mut result.guests, &journal);
}

/// Sets `created_by` on each guest whose creation task is known (the newest, for a vmid
/// used twice), and `created_at` from it when the VM's config gave none.
pub fn creators(guests: &mut [Guest], entries: &[crate::attribution::Entry]) {
    for guest in guests {
        guest.created_by = entries
            .iter()
            .filter(|e| e.vmid == guest.vmid && e.creates())
            .max_by_key(|e| e.time)
            .map(crate::attribution::Entry::attribution);
        if let Some(by) = &guest.created_by {
            guest.created_at = guest.created_at.or(by.time);
        }
    }
}

/// Unmanaged VMs asked for their creation time (their config's `meta`), at most
/// [`CREATION_TIMES`] of them at once, all within one request timeout; what does not answer
/// in time has none.
async fn creation_times(client: &Client, guests: &mut [Guest], timeout: std::time::Duration) {
    let asked = guests
        .iter()
        .take(CREATION_TIMES)
        .map(|g| client.created_at(g));
    if let Ok(times) = tokio::time::timeout(timeout, join_all(asked)).await {
        for (guest, at) in guests.iter_mut().zip(times) {
            guest.created_at = at;
        }
    }
}

/// Unmanaged guests whose creation time is asked for at each check.
const CREATION_TIMES: usize = 100;

/// The start of a terraform error's detail, on one line.
fn first_lines(detail: &str) -> String {
    let text: String = detail
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    match text.char_indices().nth(400) {
        Some((i, _)) => format!(" {}...", &text[..i]),
        None if text.is_empty() => String::new(),
        None => format!(" {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::GuestKind;

    fn guest(vmid: u32, name: &str, tags: &[&str]) -> Guest {
        Guest {
            created_by: None,
            created_at: None,
            vmid,
            name: Some(name.into()),
            node: "pve1".into(),
            kind: GuestKind::Qemu,
            status: Some("running".into()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn ignore_by_range_name_and_tag() {
        let ignore = GuestIgnore {
            vmids: vec![(9000, 9099)],
            names: vec![crate::glob::Glob::new("test-*")],
            tags: vec!["unmanaged".into()],
        };
        assert!(is_ignored(&guest(9050, "x", &[]), &ignore));
        assert!(!is_ignored(&guest(9100, "x", &[]), &ignore));
        assert!(is_ignored(&guest(1, "test-db", &[]), &ignore));
        assert!(is_ignored(&guest(1, "x", &["Unmanaged"]), &ignore));
        assert!(!is_ignored(&guest(1, "x", &["prod"]), &ignore));
    }

    #[test]
    fn a_failed_check_keeps_the_last_guests() {
        let ok = Unmanaged {
            checked_at: Some(Utc::now()),
            guests: vec![guest(150, "web2", &[])],
            guests_checked_at: None,
            inventory: 3,
            ignored: 0,
            providers: BTreeMap::new(),
            managed: [("lab".to_owned(), [100].into())].into(),
            error: None,
        };
        let failed = Unmanaged::failed(CheckError::new(CheckReason::Auth, "401".into()), Some(&ok));
        assert_eq!(failed.guests, ok.guests);
        assert_eq!(
            failed.managed, ok.managed,
            "signals still find their environment"
        );
        assert_eq!(failed.guests_checked_at, ok.checked_at);
        assert_eq!(failed.exit_code(), 1);
        let again = Unmanaged::failed(
            CheckError::new(CheckReason::Api, "500".into()),
            Some(&failed),
        );
        assert_eq!(again.guests_checked_at, ok.checked_at);
        assert_eq!(ok.exit_code(), 2);
    }
}
