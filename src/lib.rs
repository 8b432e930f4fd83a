//! tfdrift-exporter: runs `terraform plan` (or `tofu plan`), read-only, for each configured
//! environment, tells whether the real infrastructure still matches the code, and reports
//! what differs, since when and who changed it.
//!
//! The flow of one scan in the running exporter:
//!
//! ```text
//! scheduler -> scan -> supervisor -> store -> state -> metrics / http
//! ```
//!
//! The [`scheduler`] decides when (its [`schedule`]), waits its turn at the [`gate`] (the
//! one limit of terraform at once, most urgent first) and takes the environment's scan lock;
//! [`scan`] drives terraform through [`runner`] and hands back a complete
//! [`report::Scanned`]; the [`supervisor`], the one task that changes the exporter, gives it
//! to the [`store`], which commits it (lifecycle carried, id given, report and index line
//! written, its memory of the history updated); the supervisor then shows the committed
//! report in the [`state`], which [`metrics`] and [`http`] read. The CLI's `scan` commits
//! through the same store.
//!
//! Understanding a scan: [`plan`] understands terraform's bytes, [`classify`] names why a
//! scan failed, [`ignore`] drops known false positives (its [`glob`]s compiled at load),
//! [`report`] is what comes out; [`lifecycle`] says since when the environment drifts and
//! [`attribution`] which Proxmox user changed a guest (found by its [`guest`] vmid).
//! [`sensitive`] finds the root module's secrets before terraform runs; [`environ`] keeps the
//! variables that would add arguments to terraform away from it; [`orphans`] ends
//! terraform that outlived its scan.
//!
//! Showing: [`output`], [`page`] and [`reconcile`] show reports to people; [`text`] is the
//! one rule for untrusted text on every surface (hidden characters shown escaped, lengths in
//! UTF-16 units).
//!
//! Around it: [`config`] comes in and [`serve`] binds and starts everything; [`changes`] are
//! the messages the supervisor takes (reloads, finished scans and checks, the scheduler's
//! and the poller's news); the [`watcher`] runs the [`unmanaged`]-guest check and reads
//! Proxmox's cluster log, tasks and config digests, whose change [`signals`] make the
//! scheduler scan an environment soon after one of its guests changed; [`webconfig`] is TLS and basic authentication; [`cancel`] is how
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
pub mod conditions;
pub mod config;
pub mod environ;
pub mod gate;
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
pub mod shard;
pub mod signals;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod text;
pub mod unmanaged;
pub mod watcher;
pub mod webconfig;
