//! Cancellation, one way everywhere: a [`CancellationToken`] asks a task to stop (shutdown,
//! an environment removed, a connection closed), and [`Cancelled`] is what a task that
//! stopped because it was asked returns instead of its result.

pub use tokio_util::sync::CancellationToken;

/// The task stopped because its token was cancelled; nothing of it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;
