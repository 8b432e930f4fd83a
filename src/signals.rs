//! Change signals: what Proxmox records as it happens, used to scan an environment soon after
//! one of its guests changed, instead of at its next scheduled scan
//! (docs/proxmox.md, "Change signals"). The attribution poller
//! ([`crate::watcher`]) finds them at each read: the cluster log's lines and the nodes'
//! tasks about a guest, and the config `digest` of every guest a state manages (an LXC edit
//! writes neither a line nor a task). [`Debounce`] turns a burst of them into one hand-over
//! per environment; the scheduler then scans, never two scans of one environment at once.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::report::Signal;

/// Signals kept per scan trigger (the newest); the rest are counted.
pub const MAX_KEPT: usize = 20;
/// A burst of signals is handed over at the latest this long after its first signal.
pub const MAX_WAIT: Duration = Duration::from_secs(45);
/// Signals by a Terraform token (an apply) wait until the token has been quiet this long,
/// so that the scan follows the apply instead of meeting its state lock...
pub const TERRAFORM_QUIET: Duration = Duration::from_secs(30);
/// ... but not longer than this after the first one.
pub const TERRAFORM_MAX_WAIT: Duration = Duration::from_secs(900);

/// The signals that start one scan: the newest [`MAX_KEPT`] and how many there were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub signals: Vec<Signal>,
    pub total: usize,
}

impl Batch {
    fn add(&mut self, signals: Vec<Signal>) {
        self.total += signals.len();
        self.signals.extend(signals);
        if self.signals.len() > MAX_KEPT {
            let extra = self.signals.len() - MAX_KEPT;
            self.signals.drain(..extra);
        }
    }

    /// Takes another batch in (a scan queued or waiting absorbs new signals).
    pub fn absorb(&mut self, other: Batch) {
        let total = self.total + other.total;
        self.add(other.signals);
        self.total = total;
    }
}

#[derive(Debug)]
struct Pending {
    batch: Batch,
    first: Instant,
    /// A read brought a signal for the environment since the last round.
    fresh: bool,
    /// The last signal by a Terraform token.
    terraform: Option<Instant>,
}

/// Signals waiting per environment until the burst is over: a batch is handed over after
/// the first read that brings no new signal for its environment, or [`MAX_WAIT`] after its
/// first signal; one with a signal by a Terraform token waits until the token has been
/// quiet for [`TERRAFORM_QUIET`] (at most [`TERRAFORM_MAX_WAIT`]).
#[derive(Debug, Default)]
pub struct Debounce {
    pending: BTreeMap<String, Pending>,
}

impl Debounce {
    /// Takes the signals one read found, per environment, and returns the batches due now.
    pub fn round(
        &mut self,
        now: Instant,
        found: BTreeMap<String, Vec<Signal>>,
    ) -> Vec<(String, Batch)> {
        for (environment, signals) in found {
            if signals.is_empty() {
                continue;
            }
            let pending = self.pending.entry(environment).or_insert_with(|| Pending {
                batch: Batch::default(),
                first: now,
                fresh: false,
                terraform: None,
            });
            if signals.iter().any(|s| s.by_terraform) {
                pending.terraform = Some(now);
            }
            pending.batch.add(signals);
            pending.fresh = true;
        }
        let due: Vec<String> = self
            .pending
            .iter_mut()
            .filter_map(|(environment, p)| {
                let waited = now.duration_since(p.first);
                let applying = p.terraform.is_some_and(|t| {
                    now.duration_since(t) < TERRAFORM_QUIET && waited < TERRAFORM_MAX_WAIT
                });
                let quiet = !std::mem::take(&mut p.fresh);
                let ready = if p.terraform.is_some() {
                    !applying
                } else {
                    quiet || waited >= MAX_WAIT
                };
                ready.then(|| environment.clone())
            })
            .collect();
        due.into_iter()
            .filter_map(|e| self.pending.remove(&e).map(|p| (e, p.batch)))
            .collect()
    }

    /// Batches wait for their burst to end.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Forgets the environments that are gone.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.pending.retain(|e, _| keep(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SignalSource;

    fn signal(vmid: u32, by_terraform: bool) -> Signal {
        Signal {
            source: SignalSource::ClusterLog,
            vmid,
            node: "pve1".into(),
            user: Some("root@pam".into()),
            token: None,
            by_terraform,
            changed_at: None,
            seen_at: None,
            message: format!("update VM {vmid}: -memory 3072"),
        }
    }

    fn found(env: &str, n: usize, by_terraform: bool) -> BTreeMap<String, Vec<Signal>> {
        [(env.to_owned(), vec![signal(100, by_terraform); n])].into()
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_change_is_handed_over_at_the_next_read_that_brings_nothing() {
        let mut d = Debounce::default();
        let t0 = Instant::now();
        assert!(d.round(t0, found("lab", 1, false)).is_empty());
        let due = d.round(t0 + Duration::from_secs(10), BTreeMap::new());
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, "lab");
        assert_eq!(due[0].1.total, 1);
        assert!(
            d.round(t0 + Duration::from_secs(20), BTreeMap::new())
                .is_empty()
        );
    }

    /// 200 edits within a minute, read every 10 s: one batch at the maximum wait, one
    /// after the burst (the scan of the first absorbs nothing it may have missed).
    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_batch_until_the_maximum_wait() {
        let mut d = Debounce::default();
        let t0 = Instant::now();
        let mut batches = Vec::new();
        for round in 0..10u64 {
            let now = t0 + Duration::from_secs(10 * round);
            let edits = if round < 7 {
                found("lab", 33, false)
            } else {
                BTreeMap::new()
            };
            batches.extend(
                d.round(now, edits)
                    .into_iter()
                    .map(|(_, b)| (round, b.total)),
            );
        }
        assert_eq!(batches, vec![(5, 198), (7, 33)]);
        // Kept bounded: the newest MAX_KEPT.
        let mut d = Debounce::default();
        d.round(t0, found("lab", 500, false));
        let due = d.round(t0 + Duration::from_secs(10), BTreeMap::new());
        assert_eq!(due[0].1.signals.len(), MAX_KEPT);
        assert_eq!(due[0].1.total, 500);
    }

    #[tokio::test(start_paused = true)]
    async fn an_apply_is_waited_for_until_its_token_is_quiet() {
        let mut d = Debounce::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(d.round(at(0), found("lab", 3, true)).is_empty());
        assert!(d.round(at(10), BTreeMap::new()).is_empty());
        assert!(d.round(at(20), found("lab", 1, true)).is_empty());
        assert!(d.round(at(40), BTreeMap::new()).is_empty());
        let due = d.round(at(50), BTreeMap::new());
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.total, 4);
        // A token that never stops is not waited for without end.
        let mut d = Debounce::default();
        let mut handed = None;
        for s in (0..1_000).step_by(10) {
            if !d.round(at(s), found("lab", 1, true)).is_empty() {
                handed = Some(s);
                break;
            }
        }
        assert_eq!(handed, Some(900));
    }

    #[test]
    fn a_batch_keeps_the_newest_and_counts_all() {
        let mut a = Batch::default();
        a.add(vec![signal(1, false); 15]);
        let mut b = Batch::default();
        b.add(vec![signal(2, false); 15]);
        a.absorb(b);
        assert_eq!(a.total, 30);
        assert_eq!(a.signals.len(), MAX_KEPT);
        assert_eq!(a.signals.last().unwrap().vmid, 2);
        assert_eq!(a.signals.first().unwrap().vmid, 1);
    }
}
