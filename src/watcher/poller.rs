//! The attribution poller of the running exporter: every `proxmox.attribution_interval` it
//! checks the token's privileges, reads the cluster log and each node's task list, keeps the
//! entries about guests it did not have yet, and stores its status for the scans. A failure
//! is said once in the log (when its reason changes) and in `tfdrift_attribution_error`;
//! it never touches a scan.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::entries;
use super::signals::Signals;
use crate::attribution::{Entry, PollError, PollReason, PollStatus, ReadRequests};
use crate::cancel::CancellationToken;
use crate::changes::Changes;
use crate::config::{Config, Proxmox};
use crate::state::State;
use crate::store::{MAX_ATTRIBUTION_ENTRIES, Storage};
use crate::unmanaged::api::Client;
use crate::unmanaged::{CheckError, CheckReason};

/// Cluster log entries asked for at each read: more than a 128 KiB ring holds.
const LOG_MAX: usize = 10_000;
/// The longest cluster log answer read: the ring's 128 KiB, encoded, is far shorter; a
/// longer answer is an API error (its memory stays bounded).
const LOG_ANSWER_MAX: usize = 8 << 20;
/// Tasks asked for per node at each read.
const TASKS_MAX: usize = 1_000;
/// The read after one that found change signals comes at most this long after it.
const QUIET_READ: std::time::Duration = std::time::Duration::from_secs(5);
/// How often the journal is pruned to the history's retention.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3_600);

/// What the poller remembers between two reads.
#[derive(Debug, Default)]
struct Cursor {
    /// Keys of the kept entries (filled from the journal at the first read).
    seen: HashSet<String>,
    loaded: bool,
    /// The newest cluster log entry of the last read: (key, node, uid).
    newest: Option<(String, String, u64)>,
    /// Tasks are asked for from here on (the start of the last read, less a margin).
    tasks_since: Option<DateTime<Utc>>,
    gaps: u64,
    /// The failure last said in the log, so that it is said once.
    said: Option<PollReason>,
    /// The same for the config digests.
    digests_said: Option<CheckReason>,
    last_prune: Option<tokio::time::Instant>,
}

/// What the poller works with besides its settings.
pub struct Poller {
    pub changes: Changes,
    pub storage: Storage,
    pub reads: ReadRequests,
    /// Which environment manages a vmid.
    pub state: Arc<State>,
    /// Asks the unmanaged-guest check to run now.
    pub check_now: Arc<Notify>,
}

/// Polls until `cancel`, following the configuration on `settings`.
pub async fn run(
    poller: Poller,
    mut settings: watch::Receiver<Arc<Config>>,
    cancel: CancellationToken,
) {
    let Poller {
        changes,
        storage,
        reads,
        state,
        check_now,
    } = poller;
    let mut cursor = Cursor::default();
    let mut signals = Signals::default();
    let mut active = false;
    loop {
        let config = settings.borrow_and_update().clone();
        let Some(proxmox) = config.proxmox.clone().filter(|p| p.attribution) else {
            if active {
                tracing::info!("attribution is off: Proxmox's cluster log is no longer read");
                if let Err(e) = storage.save_attribution_status::<PollStatus>(None).await {
                    tracing::warn!(error = %e, "cannot remove the attribution status");
                }
                changes.attribution(None, 0).await;
                cursor = Cursor::default();
                signals.reset();
                active = false;
            }
            tokio::select! {
                changed = settings.changed() => if changed.is_err() { return },
                _ = cancel.cancelled() => return,
            }
            continue;
        };
        active = true;
        if !cursor.loaded {
            let kept: Vec<Entry> = storage.load_attribution().await;
            cursor.seen = kept.iter().map(entries::key).collect();
            cursor.loaded = true;
            let last = storage.attribution_status::<PollStatus>().await;
            signals.start(last.and_then(|s| s.read_started_at));
        }
        let gaps_before = cursor.gaps;
        let (status, read) = tokio::select! {
            polled = poll(&proxmox, &storage, &mut cursor) => polled,
            _ = cancel.cancelled() => return,
        };
        say_once(&mut cursor, &status, &proxmox);
        let read_started = status.read_started_at;
        match storage.save_attribution_status(Some(status.clone())).await {
            // A scan waiting for a read after its plan may look now.
            Ok(()) => drop(reads.stored.send_replace(read_started)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot store the attribution status: scans attribute nothing")
            }
        }
        changes
            .attribution(Some(status), cursor.gaps - gaps_before)
            .await;
        if proxmox.events {
            let round = tokio::select! {
                round = find_signals(&mut signals, read, &proxmox, &state, &mut cursor) => round,
                _ = cancel.cancelled() => return,
            };
            if round.check {
                check_now.notify_one();
            }
            changes.signals(round.found, round.due).await;
        } else {
            signals.reset();
        }
        prune(&storage, &mut cursor, config.storage.retention).await;
        // While signals wait for their burst to end, the next read comes sooner: it tells
        // whether the burst is over.
        let next = if signals.waiting() {
            proxmox.attribution_interval.min(QUIET_READ)
        } else {
            proxmox.attribution_interval
        };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            // A scan found a guest changed after this read began: read again now.
            _ = reads.request.notified() => {}
            changed = settings.changed() => if changed.is_err() { return },
            _ = cancel.cancelled() => return,
        }
    }
}

/// Logs a failure when its reason is new, and the recovery.
fn say_once(cursor: &mut Cursor, status: &PollStatus, proxmox: &Proxmox) {
    let reason = status.error.as_ref().map(|e| e.reason);
    if reason == cursor.said {
        return;
    }
    match &status.error {
        Some(e) => tracing::warn!(
            reason = %e.reason,
            token = %proxmox.token_id,
            error = %e.summary,
            "attribution unavailable: changed_by is null until Proxmox's cluster log can be read"
        ),
        None => tracing::info!("attribution available: Proxmox's cluster log and tasks are read"),
    }
    cursor.said = reason;
}

/// Prunes the journal to the history's retention every [`PRUNE_EVERY`] (its cap is kept at
/// every append).
async fn prune(storage: &Storage, cursor: &mut Cursor, retention: std::time::Duration) {
    let due = cursor.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
    if !due {
        return;
    }
    cursor.last_prune = Some(tokio::time::Instant::now());
    match storage
        .prune_attribution(|e: &Entry| e.time, retention, Utc::now())
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(entries = n, "attribution journal pruned");
            let kept: Vec<Entry> = storage.load_attribution().await;
            cursor.seen = kept.iter().map(entries::key).collect();
        }
        Err(e) => tracing::warn!(error = %e, "cannot prune the attribution journal"),
    }
}

fn poll_error(e: CheckError, secret: &str) -> PollError {
    let reason = match e.reason {
        CheckReason::Auth => PollReason::Auth,
        CheckReason::Connectivity => PollReason::Connectivity,
        CheckReason::Config => PollReason::Config,
        CheckReason::Api | CheckReason::State => PollReason::Api,
    };
    PollError {
        reason,
        summary: e.summary.replace(secret, "(redacted)"),
    }
}

/// What a read leaves for the change signals: the client and the new entries (none when
/// the log or the tasks could not be read).
struct Read {
    client: Arc<Client>,
    /// `None`: the log or the tasks could not be read.
    fresh: Option<Vec<Entry>>,
    at: DateTime<Utc>,
}

/// The change signals of a read (without a client, none: the burst waiting goes on waiting).
async fn find_signals(
    signals: &mut Signals,
    read: Option<Read>,
    proxmox: &Proxmox,
    state: &State,
    cursor: &mut Cursor,
) -> super::signals::Round {
    let config = state.config();
    signals.retain(|e| config.environments.contains_key(e));
    let Some(read) = read else {
        return signals.idle();
    };
    let managed = state.managed();
    let round = signals
        .round(
            &read.client,
            proxmox,
            read.fresh.as_deref(),
            &managed,
            read.at,
        )
        .await;
    let reason = round.error.as_ref().map(|e| e.reason);
    if reason != cursor.digests_said {
        match &round.error {
            Some(e) => {
                tracing::warn!(reason = %e.reason, error = %e.summary, "cannot read the guests' config digests: an LXC edit is found at the next scheduled scan")
            }
            None => tracing::info!("the guests' config digests are read again"),
        }
        cursor.digests_said = reason;
    }
    round
}

/// One read: privileges, the cluster log, every node's tasks. New entries are stored.
async fn poll(
    proxmox: &Proxmox,
    storage: &Storage,
    cursor: &mut Cursor,
) -> (PollStatus, Option<Read>) {
    let started = Utc::now();
    let status = |error| PollStatus {
        polled_at: Some(Utc::now()),
        read_started_at: Some(started),
        interval_seconds: proxmox.attribution_interval.as_secs(),
        error,
        gaps: 0,
    };
    let (secret, client) = match crate::unmanaged::prepare(proxmox).await {
        Ok((secret, Ok(client))) => (secret, client),
        Ok((secret, Err(e))) => return (status(Some(poll_error(e, &secret))), None),
        Err(e) => return (status(Some(poll_error(e, ""))), None),
    };
    let read = async {
        check_privileges(&client, &secret).await?;
        let mut found = read_log(&client, proxmox, cursor)
            .await
            .map_err(|e| poll_error(e, &secret))?;
        let tasks = read_tasks(&client, proxmox, cursor)
            .await
            .map_err(|e| poll_error(e, &secret))?;
        found.extend(tasks);
        Ok::<_, PollError>(found)
    };
    let found = match read.await {
        Ok(found) => found,
        // The digests can still be read: an LXC or qemu edit is still a signal.
        Err(e) => {
            let read = Read {
                client,
                fresh: None,
                at: started,
            };
            return (status(Some(e)), Some(read));
        }
    };
    let fresh: Vec<Entry> = found
        .into_iter()
        .filter(|e| cursor.seen.insert(e.key.clone()))
        .collect();
    let keys: Vec<String> = fresh.iter().map(|e| e.key.clone()).collect();
    let kept = cursor.seen.len() - fresh.len();
    let capped = kept + fresh.len() > MAX_ATTRIBUTION_ENTRIES;
    let signalled = fresh.clone();
    match storage.append_attribution(fresh, kept).await {
        // The oldest entries made room: what is seen is what is kept.
        Ok(()) if capped => {
            let kept: Vec<Entry> = storage.load_attribution().await;
            cursor.seen = kept.iter().map(entries::key).collect();
        }
        Ok(()) => {}
        Err(e) => {
            // Not stored, so not seen: the next read offers them again (they were lost).
            for key in &keys {
                cursor.seen.remove(key);
            }
            tracing::warn!(error = %e, "cannot store attribution entries; the next read tries again");
        }
    }
    cursor.tasks_since = Some(started - chrono::Duration::minutes(5));
    let status = PollStatus {
        gaps: cursor.gaps,
        ..status(None)
    };
    let read = Read {
        client,
        fresh: Some(signalled),
        at: started,
    };
    (status, Some(read))
}

/// The token must see every cluster log entry (`Sys.Syslog`) and every task (`Sys.Audit`):
/// current Proxmox answers a token without them with its own entries only, which would
/// look like nobody changed anything.
async fn check_privileges(client: &Client, secret: &str) -> Result<(), PollError> {
    let data = client
        .data("/access/permissions?path=/")
        .await
        .map_err(|e| poll_error(e, secret))?;
    let granted = |p: &str| data["/"][p].as_i64() == Some(1) || data["/"][p] == true;
    let missing: Vec<&str> = ["Sys.Syslog", "Sys.Audit"]
        .into_iter()
        .filter(|p| !granted(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PollError {
        reason: PollReason::Permission,
        summary: format!(
            "the token lacks {} on / (give it a role with VM.Audit, Sys.Audit and Sys.Syslog; the built-in PVEAuditor has no Sys.Syslog)",
            missing.join(" and ")
        ),
    })
}

fn by_terraform(proxmox: &Proxmox, user: &str, token: Option<&str>) -> bool {
    token.is_some_and(|t| {
        proxmox
            .terraform_token_ids
            .iter()
            .any(|id| id == &format!("{user}!{t}"))
    })
}

/// The cluster log's guest entries, and whether it turned over since the last read.
async fn read_log(
    client: &Client,
    proxmox: &Proxmox,
    cursor: &mut Cursor,
) -> Result<Vec<Entry>, CheckError> {
    let path = format!("/cluster/log?max={LOG_MAX}");
    let data = client.data_within(&path, LOG_ANSWER_MAX).await?;
    let lines = entries::list(&data, &format!("GET {path}"))?;
    let key_of = |l: &Value| {
        format!(
            "log:{}:{}:{}",
            l["node"].as_str().unwrap_or(""),
            l["uid"].as_u64().unwrap_or(0),
            l["time"].as_i64().unwrap_or(0)
        )
    };
    if let (Some((key, node, uid)), Some(oldest), Some(newest)) =
        (&cursor.newest, lines.last(), lines.first())
    {
        let still_there = lines.iter().any(|l| &key_of(l) == key);
        let follows = oldest["node"].as_str() == Some(node.as_str())
            && oldest["uid"].as_u64() == Some(uid + 1);
        // pmxcfs restarted: its ring starts again at uid 1. A new start, not lost entries.
        let restarted = !still_there
            && newest["node"].as_str() == Some(node.as_str())
            && newest["uid"].as_u64().is_some_and(|u| u <= *uid);
        if restarted {
            tracing::info!(node = %node, "Proxmox's cluster log started again (pmxcfs restarted)");
        } else if !still_there && !follows {
            cursor.gaps += 1;
            tracing::warn!(
                interval = %crate::schedule::human(proxmox.attribution_interval),
                "Proxmox's cluster log turned over between two reads: entries may be lost (lower proxmox.attribution_interval)"
            );
        }
    }
    if let Some(first) = lines.first() {
        cursor.newest = Some((
            key_of(first),
            first["node"].as_str().unwrap_or("").to_owned(),
            first["uid"].as_u64().unwrap_or(0),
        ));
    }
    // Oldest first, as they were written: the journal stays in the cluster's order.
    let now = Utc::now();
    Ok(lines
        .iter()
        .rev()
        .filter_map(|l| entries::log_entry(l, now, |u, t| by_terraform(proxmox, u, t)))
        .collect())
}

/// The guest tasks of every node since the last read.
async fn read_tasks(
    client: &Client,
    proxmox: &Proxmox,
    cursor: &Cursor,
) -> Result<Vec<Entry>, CheckError> {
    let nodes = client.data("/nodes").await?;
    let since = cursor.tasks_since.map_or(0, |t| t.timestamp());
    let now = Utc::now();
    let mut found = Vec::new();
    for node in entries::list(&nodes, "GET /nodes")? {
        let Some(name) = entries::node_name(&node["node"]) else {
            tracing::debug!(node = %node["node"], "skipping a node whose name Proxmox would not allow");
            continue;
        };
        let path = format!("/nodes/{name}/tasks?since={since}&limit={TASKS_MAX}&source=archive");
        let tasks = client.data_within(&path, LOG_ANSWER_MAX).await?;
        found.extend(
            entries::list(&tasks, &format!("GET {path}"))?
                .iter()
                .filter_map(|t| {
                    entries::task_entry(t, name, now, |u, k| by_terraform(proxmox, u, k))
                }),
        );
    }
    Ok(found)
}
