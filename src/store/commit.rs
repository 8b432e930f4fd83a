//! Committing a scan: the one step that turns a [`Scanned`] into a stored report. The
//! history's memory gives the previous run and the id; the lifecycle is carried; report,
//! served plan and index line are written; memory learns the scan. One environment's
//! commits never overlap (its scan lock is held around each), and every index write is the
//! `History`'s (blocking code, called by [`super::Storage::commit`] off the runtime).

use std::os::unix::fs::DirBuilderExt;

use chrono::{DateTime, Utc};

use super::atomic::{StoreError, at, write_atomic_with};
use super::env::EnvStore;
use super::history::{EnvIndex, History};
use super::index::{IndexLine, append_index, index_len};
use super::layout::Layout;
use super::{AttributionFiles, Stored, attribution};
use crate::lifecycle::Run;
use crate::report::{Report, Scanned, Status};

impl History {
    /// Commits `scanned`: a storage failure is logged, and the report is still returned,
    /// marked as not stored.
    pub fn commit(&self, scanned: Scanned) -> Stored {
        let env = scanned.environment.clone();
        self.sync(&env);
        let (previous, id) = {
            let mut index = self.lock();
            let slot = index.env(&env);
            (slot.run.clone(), new_id(slot, &env, scanned.started_at))
        };
        let (mut report, plan) = scanned.into_report(id);
        crate::lifecycle::carry(&mut report, previous.as_ref());
        match EnvStore::open(self.layout.root(), &env).and_then(|store| store.save_plan(plan)) {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(environment = %env, error = %e, "cannot store the plan for /detail/<env>/plan")
            }
        }
        let stored = match self.write(&env, &report) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(environment = %env, error = %e, "cannot store the report; it is still shown");
                false
            }
        };
        if stored && report.status != Status::Error {
            self.lock().env(&env).run = Some(match report.status {
                Status::Conform => Run::conform(),
                _ => Run::of(&report),
            });
        }
        Stored { report, stored }
    }

    /// Writes `report` and its index line, and adds it to memory.
    pub(super) fn write(&self, env: &str, report: &Report) -> Result<(), StoreError> {
        let line = IndexLine::of(report).ok_or_else(|| {
            at(&self.layout.history(env))(std::io::Error::other("a report without an id"))
        })?;
        write_report(&self.layout, env, report)?;
        let _writing = self.writing();
        append_index(&self.layout, env, &line)?;
        let len = index_len(&self.layout, env);
        let mut index = self.lock();
        index.push(env, &line);
        index.env(env).synced = Some(len);
        Ok(())
    }

    /// When the last conform scan of `env` written before `not_after` (the asking scan's
    /// start) ended: changes are attributed from there. The last one written, never the
    /// largest timestamp: a conform scan stamped by a clock that ran ahead is passed over,
    /// or no change after it would ever have an author.
    pub fn last_conform(&self, env: &str, not_after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.sync(env);
        let mut index = self.lock();
        index
            .env(env)
            .entries
            .iter()
            .rev()
            .filter(|e| e.status == Status::Conform)
            .filter_map(|e| e.finished_at)
            .find(|t| *t <= not_after)
    }

    /// What a scan of `env` that started at `not_after` reads to say who changed its guests.
    pub fn attribution<S, E>(&self, env: &str, not_after: DateTime<Utc>) -> AttributionFiles<S, E>
    where
        S: serde::de::DeserializeOwned,
        E: serde::de::DeserializeOwned,
    {
        let (status, entries) = attribution::poller_files(&self.layout);
        AttributionFiles {
            status,
            entries,
            last_conform: self.last_conform(env, not_after),
        }
    }
}

/// A report id not given yet: `<env>-<start time>`, with a suffix on collision (with a
/// stored scan, or with an id given to a report that could not be written).
fn new_id(slot: &mut EnvIndex, env: &str, started_at: DateTime<Utc>) -> String {
    let base = id_base(env, started_at);
    let mut n = match &slot.issued {
        Some((issued, n)) if *issued == base => n + 1,
        _ => 1,
    };
    let make = |n: u32| match n {
        1 => base.clone(),
        n => format!("{base}-{n}"),
    };
    let mut id = make(n);
    while slot.entries.iter().rev().any(|e| *e.id == *id) {
        n += 1;
        id = make(n);
    }
    slot.issued = Some((base, n));
    id
}

/// `<env>-<start time>`: a report's id before any suffix.
pub(super) fn id_base(env: &str, started_at: DateTime<Utc>) -> String {
    format!("{env}-{}", started_at.format("%Y%m%dT%H%M%SZ"))
}

/// Writes a report file; a crash at any moment leaves either the old or the new file whole.
#[allow(
    clippy::disallowed_methods,
    reason = "storage: reached only through Storage's async methods and the scan's spawn_blocking steps"
)]
pub(super) fn write_report(layout: &Layout, env: &str, report: &Report) -> Result<(), StoreError> {
    let id = report.id().unwrap_or("unnamed");
    let dir = layout.history(env);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(at(&dir))?;
    let path = layout.report(env, id).ok_or_else(|| {
        at(&dir)(std::io::Error::other(format!(
            "{id:?} is not a report id (letters, digits, - and _)"
        )))
    })?;
    write_atomic_with(&path, |out| {
        serde_json::to_writer_pretty(out, report).map_err(std::io::Error::other)
    })
}
