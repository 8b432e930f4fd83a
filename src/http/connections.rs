//! The open connections, for making room when the cap is reached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cancel::CancellationToken;

/// Connections open at once; past it the longest-idle one is closed for a new one.
const MAX_CONNECTIONS: usize = 256;

/// The open connections. When all `MAX_CONNECTIONS` are taken, the connection idle the
/// longest (no request in flight: still sending its headers, in its TLS handshake, or kept
/// alive between requests) is closed to make room, so that idle or trickling connections
/// can never keep a scrape out; memory stays bounded by the cap.
#[derive(Default)]
pub(super) struct Connections {
    table: Mutex<ConnTable>,
}

#[derive(Default)]
struct ConnTable {
    next: u64,
    open: HashMap<u64, Conn>,
}

struct Conn {
    /// Requests being answered now.
    busy: usize,
    idle_since: Instant,
    close: CancellationToken,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection, closing the longest-idle one when all are taken;
    /// `None` when every connection is answering a request (the new one is dropped).
    pub(super) fn open(&self) -> Option<(u64, CancellationToken)> {
        let mut t = self.lock();
        if t.open.len() >= MAX_CONNECTIONS {
            let oldest = t
                .open
                .iter()
                .filter(|(_, c)| c.busy == 0)
                .min_by_key(|(_, c)| c.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(c) = t.open.remove(&oldest) {
                c.close.cancel();
            }
        }
        let id = t.next;
        t.next += 1;
        let close = CancellationToken::new();
        t.open.insert(
            id,
            Conn {
                busy: 0,
                idle_since: Instant::now(),
                close: close.clone(),
            },
        );
        Some((id, close))
    }

    pub(super) fn close(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// Marks a request of connection `id` in flight until the guard drops.
    pub(super) fn busy(self: &Arc<Self>, id: u64) -> Busy {
        if let Some(c) = self.lock().open.get_mut(&id) {
            c.busy += 1;
        }
        Busy {
            connections: self.clone(),
            id,
        }
    }
}

pub(super) struct Busy {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = self.connections.lock().open.get_mut(&self.id) {
            c.busy = c.busy.saturating_sub(1);
            c.idle_since = Instant::now();
        }
    }
}
