//! What may change the running exporter's state, as messages to the one task that applies
//! them ([`crate::supervisor`]), and the handle that sends them. Whoever sends waits for the
//! change to be applied, so that "reloaded" means reloaded and a finished scan is in the
//! state before its environment stops showing as running.

use tokio::sync::{mpsc, oneshot};

use crate::store::Stored;
use crate::unmanaged::Unmanaged;

/// Changes waiting for the supervisor, at most: senders wait beyond that.
const QUEUE: usize = 64;

/// One change, with the channel its answer goes back on.
#[derive(Debug)]
pub enum Change {
    /// Read the configuration file again (SIGHUP, `POST /-/reload`); `Err` is the message.
    Reload(oneshot::Sender<Result<(), String>>),
    /// A scan ended with this report.
    ScanFinished(Box<Stored>, oneshot::Sender<()>),
    /// An unmanaged-guest check ended (already stored).
    UnmanagedFinished(Unmanaged, oneshot::Sender<()>),
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

    /// Hands over a finished scan and waits until the state shows it. After shutdown
    /// the report is only on disk (the next start restores it).
    pub async fn scan_finished(&self, stored: Stored) {
        self.apply(|applied| Change::ScanFinished(Box::new(stored), applied))
            .await;
    }

    /// Hands over a finished unmanaged-guest check and waits until the state shows it.
    pub async fn unmanaged_finished(&self, result: Unmanaged) {
        self.apply(|applied| Change::UnmanagedFinished(result, applied))
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
                    Change::ScanFinished(_, applied) | Change::UnmanagedFinished(_, applied) => {
                        let _ = applied.send(());
                    }
                }
            }
        });
        changes
    }
}
