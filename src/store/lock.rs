//! The scan lock of one environment, shared by the exporter and the CLI (an flock on
//! `scan.lock`): waited for off the runtime, until a deadline, and given up on cancellation.

use std::time::Duration;

use crate::cancel::{CancellationToken, Cancelled};
use tokio::time::Instant;

use super::env::{EnvStore, ScanLock};

/// How often a held lock is tried again.
const POLL: Duration = Duration::from_millis(250);

/// Why the wait for a scan lock ended without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// `cancel` fired (shutdown, environment removed).
    Cancelled(Cancelled),
    /// Another process still held it at the deadline.
    TimedOut,
}

impl EnvStore {
    /// Waits for the scan lock until `deadline`, trying again every 250 ms, so that
    /// `cancel` ends the wait. `Ok(None)`: the lock file cannot be used, and the caller goes
    /// on without it (logged here).
    pub async fn lock(
        &self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Option<ScanLock>, LockWait> {
        let mut said = false;
        loop {
            let attempt = {
                let store = self.clone();
                tokio::task::spawn_blocking(move || store.try_lock()).await
            };
            let failed = match attempt {
                Ok(Ok(Some(lock))) => return Ok(Some(lock)),
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(error) = failed {
                tracing::warn!(environment = %self.name(), error = %error, "cannot take the scan lock; going on without it");
                return Ok(None);
            }
            if !said {
                tracing::info!(environment = %self.name(), "another scan of this environment is running: waiting for it");
                said = true;
            }
            if Instant::now() >= deadline {
                return Err(LockWait::TimedOut);
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = cancel.cancelled() => return Err(LockWait::Cancelled(Cancelled)),
            }
        }
    }
}
