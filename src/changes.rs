//! What may change the running exporter's state, as messages to the one task that applies
//! them ([`crate::supervisor`]), and the handle that sends them. Whoever sends waits for the
//! change to be applied, so that "reloaded" means reloaded and a finished scan is in the
//! state before its environment stops showing as running.

use tokio::sync::{mpsc, oneshot};

use chrono::{DateTime, Utc};

use crate::attribution::PollStatus;
use crate::scan::Finished;
use crate::unmanaged::Unmanaged;

/// Changes waiting for the supervisor, at most: senders wait beyond that.
const QUEUE: usize = 64;

/// One change, with the channel its answer goes back on.
#[derive(Debug)]
pub enum Change {
    /// Read the configuration file again (SIGHUP, `POST /-/reload`); `Err` is the message.
    Reload(oneshot::Sender<Result<(), String>>),
    /// `[discovery]`'s interval passed: look at the directories again, and reload when the
    /// environments found differ from the running ones.
    Rediscover,
    /// A scan ended: commit it, then show it.
    ScanFinished(Box<Finished>, oneshot::Sender<()>),
    /// An unmanaged-guest check ended (already stored).
    UnmanagedFinished(Unmanaged, oneshot::Sender<()>),
    /// The guests each environment's state manages, read by a shard that does not check
    /// (shard 0 has them from its check).
    Managed(crate::state::Managed, oneshot::Sender<()>),
    /// A scan of the environment started (with what started it) or ended (`None`).
    Running {
        environment: String,
        started: Option<crate::report::TriggerKind>,
    },
    /// The environment's next scan is due then; its schedule's period in seconds.
    NextScan {
        environment: String,
        due: Option<DateTime<Utc>>,
        period_seconds: f64,
    },
    /// The attribution poller read Proxmox (`None`: attribution is off), finding `new_gaps`
    /// new gaps in the cluster log.
    Attribution {
        status: Option<Box<PollStatus>>,
        new_gaps: u64,
    },
    /// A read found change signals (counted per source); the batches are due: scan their
    /// environments.
    Signals {
        found: Vec<crate::report::SignalSource>,
        due: Vec<(String, crate::signals::Batch)>,
    },
}

/// The sending side: cheap to clone, one per component that changes the state.
#[derive(Debug, Clone)]
pub struct Changes {
    queue: mpsc::Sender<Change>,
}

/// Why a reload got no answer.
const STOPPING: &str = "the exporter is shutting down";

impl Changes {
    /// A handle and the queue the supervisor reads.
    pub fn channel() -> (Changes, mpsc::Receiver<Change>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        (Changes { queue }, receiver)
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn reload(&self) -> Result<(), String> {
        let (answer, outcome) = oneshot::channel();
        if self.queue.send(Change::Reload(answer)).await.is_err() {
            return Err(STOPPING.into());
        }
        outcome.await.unwrap_or_else(|_| Err(STOPPING.into()))
    }

    /// Asks for a new look at `[discovery]`'s directories (not waited for).
    pub async fn rediscover(&self) {
        let _ = self.queue.send(Change::Rediscover).await;
    }

    /// Hands over a finished scan and waits until it is committed and the state shows it.
    /// After shutdown nothing is committed (the scan is lost, as one interrupted).
    pub async fn scan_finished(&self, finished: Finished) {
        self.apply(|applied| Change::ScanFinished(Box::new(finished), applied))
            .await;
    }

    /// Says that a scan of `environment` started (`Some`: what started it) or ended (not
    /// waiting: the queue keeps the order).
    pub async fn running(&self, environment: &str, started: Option<crate::report::TriggerKind>) {
        self.tell(Change::Running {
            environment: environment.to_owned(),
            started,
        })
        .await;
    }

    /// Says when the next scan of `environment` is due.
    pub async fn next_scan(
        &self,
        environment: &str,
        due: Option<DateTime<Utc>>,
        period_seconds: f64,
    ) {
        self.tell(Change::NextScan {
            environment: environment.to_owned(),
            due,
            period_seconds,
        })
        .await;
    }

    /// Hands over an attribution poll.
    pub async fn attribution(&self, status: Option<PollStatus>, new_gaps: u64) {
        self.tell(Change::Attribution {
            status: status.map(Box::new),
            new_gaps,
        })
        .await;
    }

    /// Hands over the change signals one read found, and the batches due.
    pub async fn signals(
        &self,
        found: Vec<crate::report::SignalSource>,
        due: Vec<(String, crate::signals::Batch)>,
    ) {
        if found.is_empty() && due.is_empty() {
            return;
        }
        self.tell(Change::Signals { found, due }).await;
    }

    /// Sends a change without waiting for it to be applied.
    async fn tell(&self, change: Change) {
        let _ = self.queue.send(change).await;
    }

    /// Hands over a finished unmanaged-guest check and waits until the state shows it.
    pub async fn unmanaged_finished(&self, result: Unmanaged) {
        self.apply(|applied| Change::UnmanagedFinished(result, applied))
            .await;
    }

    /// Says which guests each environment's state manages.
    pub async fn managed(&self, managed: crate::state::Managed) {
        self.apply(|applied| Change::Managed(managed, applied))
            .await;
    }

    /// Sends a change and waits until it is applied (or the supervisor is gone).
    async fn apply(&self, change: impl FnOnce(oneshot::Sender<()>) -> Change) {
        let (applied, done) = oneshot::channel();
        if self.queue.send(change(applied)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// A handle whose changes are taken and dropped at once (tests of one component).
    pub fn discarding() -> Changes {
        let (changes, mut queue) = Changes::channel();
        tokio::spawn(async move {
            while let Some(change) = queue.recv().await {
                match change {
                    Change::Reload(answer) => {
                        let _ = answer.send(Ok(()));
                    }
                    Change::ScanFinished(_, applied)
                    | Change::UnmanagedFinished(_, applied)
                    | Change::Managed(_, applied) => {
                        let _ = applied.send(());
                    }
                    Change::Running { .. }
                    | Change::Rediscover
                    | Change::Signals { .. }
                    | Change::NextScan { .. }
                    | Change::Attribution { .. } => {}
                }
            }
        });
        changes
    }
}
