//! tfdrift-exporter: runs `terraform plan` (or `tofu plan`), read-only, for each configured
//! environment, tells whether the real infrastructure still matches the code, and reports
//! what differs.
//!
//! The story, one module per step: [`config`] comes in, [`schedule`] says when, [`runner`]
//! drives terraform, [`plan`] understands its output, [`classify`] names why a scan failed,
//! [`report`] is what comes out, [`store`] keeps it, [`output`] shows it to people, and
//! [`scan`] ties one scan together (its terraform steps and its files apart). [`cli`] is the command line. [`sensitive`] finds the
//! root module's secrets before terraform runs, and [`orphans`] ends terraform that outlived
//! its scan (a `setsid` grandchild, or everything a killed exporter left running).
//! [`unmanaged`] finds Proxmox guests no state manages; [`watcher`] runs that check on its
//! interval for the [`exporter`].

#![forbid(unsafe_code)]

pub mod changes;
pub mod classify;
pub mod cli;
pub mod config;
pub mod http;
pub mod ignore;
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
pub mod unmanaged;
pub mod watcher;
pub mod webconfig;
