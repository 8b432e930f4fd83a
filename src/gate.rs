//! The one limit of terraform processes at once (`scheduler.max_concurrent_scans`), shared by
//! the scans and the unmanaged-guest check's state pulls. Unlike a first-come semaphore it
//! hands a freed permit to the most urgent waiter: a scan someone asked for (a trigger, a
//! Proxmox change signal) before a scheduled one, and among scheduled ones the one that has
//! been due the longest. After a restart of an exporter with 1,000 environments, the one
//! never scanned or scanned longest ago goes first, whatever the names' order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

/// Why a permit is wanted: the smaller goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// A person or a Proxmox change signal asked for this scan.
    Asked,
    /// The schedule (or the unmanaged-guest check's interval) made it due.
    Due,
}

/// A waiter's place in the queue: by urgency, then by how long it has been due (the earlier
/// `since`, the sooner), then first come first served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Priority {
    pub urgency: Urgency,
    pub since: DateTime<Utc>,
}

impl Priority {
    /// Asked for now.
    pub fn asked() -> Priority {
        Priority {
            urgency: Urgency::Asked,
            since: Utc::now(),
        }
    }

    /// Due since `since`.
    pub fn due(since: DateTime<Utc>) -> Priority {
        Priority {
            urgency: Urgency::Due,
            since,
        }
    }
}

/// The shared limit.
#[derive(Debug)]
pub struct Gate {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    free: usize,
    waiting: BinaryHeap<Waiter>,
    arrivals: u64,
}

#[derive(Debug)]
struct Waiter {
    priority: Priority,
    arrival: u64,
    hand: oneshot::Sender<Permit>,
}

impl Waiter {
    fn key(&self) -> (Priority, u64) {
        (self.priority, self.arrival)
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    /// Reversed: the heap's greatest is the smallest key, the most urgent.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

/// One terraform process's right to run; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Option<Arc<Gate>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

impl Gate {
    pub fn new(permits: usize) -> Arc<Gate> {
        Arc::new(Gate {
            inner: Mutex::new(Inner {
                free: permits,
                ..Inner::default()
            }),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a permit; a waiter that is dropped (cancelled) leaves the queue.
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Permit {
        loop {
            let handed = {
                let mut inner = self.inner();
                if inner.free > 0 {
                    inner.free -= 1;
                    return Permit {
                        gate: Some(self.clone()),
                    };
                }
                let (hand, handed) = oneshot::channel();
                inner.arrivals += 1;
                let arrival = inner.arrivals;
                inner.waiting.push(Waiter {
                    priority,
                    arrival,
                    hand,
                });
                handed
            };
            // A sender is only dropped after it handed a permit or found this receiver gone;
            // should one be dropped otherwise, queue again rather than run unlimited.
            if let Ok(permit) = handed.await {
                return permit;
            }
        }
    }

    /// Adds `n` permits (a paused scheduler's, once the processes of a dead exporter are gone).
    pub fn add(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            self.release();
        }
    }

    /// Waiting now (for logs and tests).
    pub fn waiting(&self) -> usize {
        self.inner().waiting.len()
    }

    /// A permit came back: to the most urgent waiter still waiting, else free. The permit is
    /// handed over outside the lock, since a refused one is dropped again.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut inner = self.inner();
                match inner.waiting.pop() {
                    Some(waiter) => waiter,
                    None => {
                        inner.free += 1;
                        return;
                    }
                }
            };
            let permit = Permit {
                gate: Some(self.clone()),
            };
            match next.hand.send(permit) {
                Ok(()) => return,
                // That waiter was cancelled: the permit goes on to the next one.
                Err(mut refused) => {
                    refused.gate = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[tokio::test]
    async fn a_freed_permit_goes_to_the_asked_then_the_longest_due() {
        let gate = Gate::new(1);
        let held = gate.acquire(Priority::asked()).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Queued in an order unlike the one they must run in.
        for (name, priority) in [
            ("due recently", Priority::due(at(50))),
            ("due long ago", Priority::due(at(-1000))),
            ("asked", Priority::asked()),
            ("due a while ago", Priority::due(at(0))),
        ] {
            let (queued, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = queued.acquire(priority).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            while gate.waiting() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["asked", "due long ago", "due a while ago", "due recently"]
        );
        assert_eq!(gate.inner().free, 1, "every permit came back");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_its_turn_to_the_next() {
        let gate = Gate::new(1);
        let held = gate.acquire(Priority::asked()).await;
        let cancelled = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.acquire(Priority::due(at(-5))).await })
        };
        let next = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.acquire(Priority::due(at(5))).await })
        };
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        cancelled.abort();
        drop(held);
        let permit = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the next waiter got the permit")
            .unwrap();
        assert_eq!(gate.inner().free, 0);
        drop(permit);
        assert_eq!(
            gate.inner().free,
            1,
            "the cancelled waiter's turn leaked nothing"
        );
    }

    #[tokio::test]
    async fn never_more_than_the_permits_at_once() {
        let gate = Gate::new(3);
        let (running, most) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    let _permit = gate.acquire(Priority::due(at(i % 7))).await;
                    {
                        let mut r = running.lock().unwrap();
                        *r += 1;
                        let mut m = most.lock().unwrap();
                        *m = (*m).max(*r);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    *running.lock().unwrap() -= 1;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*most.lock().unwrap(), 3);
        assert_eq!(gate.inner().free, 3);
    }

    #[tokio::test]
    async fn a_gate_without_permits_runs_nothing_until_they_are_added() {
        let gate = Gate::new(0);
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.acquire(Priority::asked()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        gate.add(2);
        drop(waiting.await.unwrap());
        assert_eq!(gate.inner().free, 2);
    }
}
