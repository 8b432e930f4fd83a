//! The change signals of one read of Proxmox ([`crate::signals`]): the new cluster log lines
//! and tasks the poller kept, and, every `proxmox.digest_interval`, the inventory and the
//! config digest of each guest a state manages. A signal for a managed vmid goes to its
//! environments' [`Debounce`]; a guest created or destroyed that no state manages asks for
//! the unmanaged-guest check instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::attribution::Entry;
use crate::config::Proxmox;
use crate::report::{AttributionSource, Signal, SignalSource};
use crate::signals::{Batch, Debounce};
use crate::state::Managed;
use crate::unmanaged::api::{Client, Guest, GuestKind};
use crate::unmanaged::{CheckError, CheckReason};

/// The tasks that change a guest (docs/proxmox.md, "Who changed a guest"); a
/// clone's is handled apart.
const CHANGE_TASKS: [&str; 13] = [
    "qmconfig",
    "qmcreate",
    "qmdestroy",
    "qmrestore",
    "qmigrate",
    "qmmove",
    "qmrollback",
    "vzcreate",
    "vzdestroy",
    "vzrestore",
    "vzmigrate",
    "move_volume",
    "vzrollback",
];

/// Config digests read per round at most (the oldest first): the requests of one read stay
/// bounded however many guests the states manage.
const DIGESTS_PER_ROUND: usize = 100;
/// How far before the last read of the previous run a kept entry still counts as a signal
/// at the first read after a start (clocks of a cluster differ a bit).
const START_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// A guest's config digest as last read.
#[derive(Debug, Clone)]
struct Known {
    node: String,
    kind: GuestKind,
    digest: String,
    read_at: DateTime<Utc>,
}

/// What one round found.
#[derive(Debug, Default)]
pub(super) struct Round {
    /// The source of every signal found (counted by the metric).
    pub(super) found: Vec<SignalSource>,
    /// Batches due now, per environment.
    pub(super) due: Vec<(String, Batch)>,
    /// A guest no state manages was created or destroyed: check now.
    pub(super) check: bool,
    /// The inventory or a digest could not be read (said once by the caller).
    pub(super) error: Option<CheckError>,
}

/// What the signal side of the poller remembers between reads.
#[derive(Debug, Default)]
pub(super) struct Signals {
    debounce: Debounce,
    digests: HashMap<u32, Known>,
    /// When a cluster log line about a managed guest was last read: a VM's config change
    /// always writes one, so its changed digest says nothing new.
    logged: HashMap<u32, DateTime<Utc>>,
    /// The vmids of the last inventory (`None` before the first).
    inventory: Option<BTreeSet<u32>>,
    next_digests: Option<Instant>,
    /// Kept entries older than this are not signals (the first read after a start).
    since: Option<DateTime<Utc>>,
    started: bool,
}

impl Signals {
    /// The first read after a start takes as signals only the entries since the last read
    /// of the previous run (`last_read`); without one, none (a baseline).
    pub(super) fn start(&mut self, last_read: Option<DateTime<Utc>>) {
        if !self.started {
            self.started = true;
            self.since = Some(last_read.map_or(DateTime::<Utc>::MAX_UTC, |t| t - START_MARGIN));
        }
    }

    /// One round: `fresh` are the entries this read kept (`None`: the log or the tasks could
    /// not be read), `managed` the vmids per environment.
    pub(super) async fn round(
        &mut self,
        client: &Client,
        proxmox: &Proxmox,
        fresh: Option<&[Entry]>,
        managed: &Managed,
        read_at: DateTime<Utc>,
    ) -> Round {
        let mut round = Round::default();
        // The first read after a start is the one that reads the log.
        let since = if fresh.is_some() {
            self.since.take()
        } else {
            None
        };
        let mut found: BTreeMap<String, Vec<Signal>> = BTreeMap::new();
        let mut add = |signal: Signal, round: &mut Round| {
            let mut any = false;
            for environment in environments_of(managed, signal.vmid) {
                found
                    .entry(environment.clone())
                    .or_default()
                    .push(signal.clone());
                any = true;
            }
            if any {
                round.found.push(signal.source);
            }
            any
        };
        for entry in fresh.unwrap_or_default() {
            let counts = match (since, entry.time) {
                (Some(since), Some(t)) => t >= since,
                (Some(_), None) => false,
                (None, _) => true,
            };
            if !counts {
                continue;
            }
            match effect(entry) {
                Effect::None => continue,
                Effect::NewGuest => {
                    round.check = true;
                    continue;
                }
                Effect::Change => {}
            }
            let managed_by_some = add(of_entry(entry, read_at), &mut round);
            if managed_by_some && entry.via == AttributionSource::ClusterLog {
                self.logged.insert(entry.vmid, read_at);
            }
            if !managed_by_some && (entry.creates() || destroys(entry)) {
                round.check = true;
            }
        }
        // Due by the interval, or at once for a guest never read (a new state, a start).
        let unknown = managed.values().flatten().any(|vmid| {
            !self.digests.contains_key(vmid)
                && self.inventory.as_ref().is_none_or(|i| i.contains(vmid))
        });
        let due = unknown || self.next_digests.is_none_or(|t| Instant::now() >= t);
        if due {
            self.next_digests = Some(Instant::now() + proxmox.digest_interval);
            let (signals, check, error) = self.digests(client, managed, read_at).await;
            round.check |= check;
            round.error = error;
            for signal in signals {
                add(signal, &mut round);
            }
        }
        round.due = self.debounce.round(Instant::now(), found);
        round
    }

    /// Reads the inventory and the digests due; a changed digest or a managed guest gone
    /// is a signal; a guest new or gone that no state manages asks for the check. A digest
    /// that cannot be read is skipped (the first such error is returned).
    async fn digests(
        &mut self,
        client: &Client,
        managed: &Managed,
        read_at: DateTime<Utc>,
    ) -> (Vec<Signal>, bool, Option<CheckError>) {
        let guests = match client.guests().await {
            Ok(guests) => guests,
            Err(e) => return (Vec::new(), false, Some(e)),
        };
        let all: BTreeSet<u32> = guests.iter().map(|g| g.vmid).collect();
        let wanted: BTreeSet<u32> = managed.values().flatten().copied().collect();
        let mut signals = Vec::new();
        let mut check = false;
        if let Some(before) = &self.inventory {
            for vmid in before.symmetric_difference(&all) {
                if wanted.contains(vmid) {
                    if !all.contains(vmid)
                        && let Some(known) = self.digests.get(vmid)
                    {
                        signals.push(digest_signal(
                            *vmid,
                            known,
                            "guest gone from the inventory",
                            read_at,
                        ));
                    }
                } else {
                    check = true;
                }
            }
        }
        self.inventory = Some(all);
        self.digests.retain(|vmid, _| wanted.contains(vmid));
        self.logged.retain(|vmid, _| wanted.contains(vmid));
        let mut order: Vec<&Guest> = guests.iter().filter(|g| wanted.contains(&g.vmid)).collect();
        // The guests never read first, then the longest unread.
        order.sort_by_key(|g| self.digests.get(&g.vmid).map(|k| k.read_at));
        let mut error = None;
        for guest in order.into_iter().take(DIGESTS_PER_ROUND) {
            let digest = match config_digest(client, guest).await {
                Ok(digest) => digest,
                Err(e) => {
                    error.get_or_insert(e);
                    // Known, digest unknown: read again at the interval, not at every read.
                    self.digests.entry(guest.vmid).or_insert_with(|| Known {
                        node: guest.node.clone(),
                        kind: guest.kind,
                        digest: String::new(),
                        read_at,
                    });
                    continue;
                }
            };
            let previous = self.digests.insert(
                guest.vmid,
                Known {
                    node: guest.node.clone(),
                    kind: guest.kind,
                    digest: digest.clone(),
                    read_at,
                },
            );
            let Some(previous) = previous.filter(|p| !p.digest.is_empty() && p.digest != digest)
            else {
                continue;
            };
            let explained = guest.kind == GuestKind::Qemu
                && self
                    .logged
                    .get(&guest.vmid)
                    .is_some_and(|t| *t >= previous.read_at);
            if !explained {
                signals.push(digest_signal(
                    guest.vmid,
                    &previous,
                    "config digest changed",
                    read_at,
                ));
            }
        }
        (signals, check, error)
    }

    /// Batches wait for their burst to end.
    pub(super) fn waiting(&self) -> bool {
        self.debounce.waiting()
    }

    /// A round without a read (it failed): batches waiting may still come due.
    pub(super) fn idle(&mut self) -> Round {
        Round {
            due: self.debounce.round(Instant::now(), BTreeMap::new()),
            ..Round::default()
        }
    }

    /// Forgets what a reload or a stop left behind.
    pub(super) fn reset(&mut self) {
        *self = Signals::default();
    }

    /// Drops the batches of environments the configuration no longer has.
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.debounce.retain(keep);
    }
}

/// What a kept entry says of its guest.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    /// It changed: a signal for the environments that manage it.
    Change,
    /// A clone: its task names its source, which it does not change; a new guest only.
    NewGuest,
    /// Starts, stops, backups and the like change no config.
    None,
}

fn effect(entry: &Entry) -> Effect {
    match entry.via {
        AttributionSource::ClusterLog => Effect::Change,
        AttributionSource::Task => match entry.message.as_str() {
            "qmclone" | "vzclone" => Effect::NewGuest,
            task if CHANGE_TASKS.contains(&task) => Effect::Change,
            _ => Effect::None,
        },
    }
}

/// A cluster log line or a task the poller kept, as a signal read at `seen_at`.
fn of_entry(entry: &Entry, seen_at: DateTime<Utc>) -> Signal {
    Signal {
        source: match entry.via {
            AttributionSource::ClusterLog => SignalSource::ClusterLog,
            AttributionSource::Task => SignalSource::Task,
        },
        vmid: entry.vmid,
        node: entry.node.clone(),
        user: Some(entry.user.clone()),
        token: entry.token.clone(),
        by_terraform: entry.by_terraform,
        changed_at: entry.time,
        seen_at: Some(seen_at),
        message: entry.message.clone(),
    }
}

/// The environments whose state manages `vmid`.
fn environments_of(managed: &Managed, vmid: u32) -> impl Iterator<Item = &String> {
    managed
        .iter()
        .filter(move |(_, vmids)| vmids.contains(&vmid))
        .map(|(e, _)| e)
}

/// A task that removed a guest.
fn destroys(entry: &Entry) -> bool {
    entry.via == AttributionSource::Task
        && matches!(entry.message.as_str(), "qmdestroy" | "vzdestroy")
}

/// A signal for a guest whose digest the read at `read_at` found changed (or gone) since the
/// read of `previous`.
fn digest_signal(vmid: u32, previous: &Known, message: &str, read_at: DateTime<Utc>) -> Signal {
    Signal {
        source: SignalSource::Digest,
        vmid,
        node: previous.node.clone(),
        user: None,
        token: None,
        by_terraform: false,
        changed_at: Some(previous.read_at),
        seen_at: Some(read_at),
        message: format!("{} {message}", previous.kind.as_str()),
    }
}

/// The `digest` of a guest's config (`GET /nodes/{node}/{qemu|lxc}/{vmid}/config`).
async fn config_digest(client: &Client, guest: &Guest) -> Result<String, CheckError> {
    if !crate::unmanaged::api::valid_node(&guest.node) {
        return Err(CheckError::new(
            CheckReason::Api,
            format!(
                "guest {}: node name {:?} is not one Proxmox allows",
                guest.vmid, guest.node
            ),
        ));
    }
    let path = format!(
        "/nodes/{}/{}/{}/config",
        guest.node,
        guest.kind.as_str(),
        guest.vmid
    );
    let data = client.data(&path).await?;
    data["digest"]
        .as_str()
        .filter(|d| !d.is_empty() && d.len() <= 128)
        .map(str::to_owned)
        .ok_or_else(|| {
            CheckError::new(
                CheckReason::Api,
                format!("GET {path}: the answer has no config digest"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(via: AttributionSource, message: &str) -> Entry {
        Entry {
            vmid: 100,
            node: "pve1".into(),
            time: None,
            user: "root@pam".into(),
            token: None,
            via,
            message: message.into(),
            by_terraform: false,
            key: "k".into(),
        }
    }

    #[test]
    fn config_changes_signal_clones_check_and_starts_say_nothing() {
        let task = |t: &str| effect(&entry(AttributionSource::Task, t));
        assert_eq!(
            effect(&entry(
                AttributionSource::ClusterLog,
                "update VM 100: -memory 3072"
            )),
            Effect::Change
        );
        for t in [
            "qmconfig",
            "qmdestroy",
            "vzcreate",
            "qmigrate",
            "qmrollback",
        ] {
            assert_eq!(task(t), Effect::Change, "{t}");
        }
        assert_eq!(task("qmclone"), Effect::NewGuest);
        for t in ["qmstart", "qmstop", "vzdump", "qmshutdown"] {
            assert_eq!(task(t), Effect::None, "{t}");
        }
    }
}
