//! tfdrift-exporter: runs `terraform plan` (or `tofu plan`), read-only, for each configured
//! environment, tells whether the real infrastructure still matches the code, and reports
//! what differs, since when and who changed it.
//!
//! One scan: [`config`] comes in, [`schedule`] says when, [`runner`] drives terraform and
//! hands back bytes, [`plan`] understands them, [`classify`] names why a scan failed,
//! [`ignore`] drops known false positives (its [`glob`]s compiled at load), [`report`] is
//! what comes out, and [`scan`] ties the steps together; [`attribution`] says which
//! Proxmox user changed a guest (found by its [`guest`] vmid), and [`lifecycle`] since when the environment drifts.
//! [`sensitive`] finds the root module's secrets before terraform runs; [`orphans`] ends
//! terraform that outlived its scan.
//!
//! Keeping and showing: [`store`] is the only code that knows the files under
//! `storage.path` (its async methods work off the runtime); [`output`], [`page`] and
//! [`reconcile`] show reports to people; [`metrics`] to Prometheus; [`text`] is the one rule
//! for untrusted text on every surface (hidden characters shown escaped, lengths in UTF-16
//! units).
//!
//! The running exporter: [`serve`] binds and starts everything; [`state`] is the shared,
//! memory-only state that [`http`] reads; [`supervisor`] is the one task that changes it,
//! taking [`changes`] (reloads, finished scans and checks) from a bounded queue; the
//! [`scheduler`] runs scans, the [`watcher`] runs the [`unmanaged`]-guest check and reads
//! Proxmox's cluster log; [`webconfig`] is TLS and basic authentication; [`cancel`] is how
//! every task is asked to stop. [`cli`] is the command line, [`logging`] its logs.

#![forbid(unsafe_code)]
// Every #[allow] says why; unit tests run on the harness's threads, not the runtime's.
#![warn(clippy::allow_attributes_without_reason)]
#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "unit tests run blocking code on the test harness's threads"
    )
)]

pub mod attribution;
pub mod cancel;
pub mod changes;
pub mod classify;
pub mod cli;
pub mod config;
pub mod glob;
pub mod guest;
pub mod http;
pub mod ignore;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod orphans;
pub mod output;
pub mod page;
pub mod plan;
pub mod reconcile;
pub mod report;
pub mod runner;
pub mod scan;
pub mod schedule;
pub mod scheduler;
pub mod sensitive;
pub mod serve;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod text;
pub mod unmanaged;
pub mod watcher;
pub mod webconfig;
