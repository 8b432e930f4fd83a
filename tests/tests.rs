//! One integration-test binary: the modules below share its helpers and one link.

// Tests drive the exporter from the harness's threads: blocking I/O and sleeps are theirs.
#![allow(
    clippy::disallowed_methods,
    reason = "the test harness's threads, not the exporter's runtime"
)]

#[path = "suite/support.rs"]
mod support;

#[path = "suite/structure.rs"]
mod structure;

#[path = "suite/alerting.rs"]
mod alerting;
#[path = "suite/attribution.rs"]
mod attribution;
#[path = "suite/bad_input.rs"]
mod bad_input;
#[path = "suite/chain.rs"]
mod chain;
#[path = "suite/checks.rs"]
mod checks;
#[path = "suite/classify_streams.rs"]
mod classify_streams;
#[path = "suite/cli_config.rs"]
mod cli_config;
#[path = "suite/clock.rs"]
mod clock;
#[path = "suite/discovery.rs"]
mod discovery;
#[path = "suite/edges.rs"]
mod edges;
#[path = "suite/explain_fixtures.rs"]
mod explain_fixtures;
#[path = "suite/faults.rs"]
mod faults;
#[path = "suite/flags.rs"]
mod flags;
#[path = "suite/fleet.rs"]
mod fleet;
#[path = "suite/fuzz.rs"]
mod fuzz;
#[path = "suite/hostile_text.rs"]
mod hostile_text;
#[path = "suite/kubernetes.rs"]
mod kubernetes;
#[path = "suite/lifecycle.rs"]
mod lifecycle;
#[path = "suite/package.rs"]
mod package;
#[path = "suite/pages.rs"]
mod pages;
#[path = "suite/proxmox.rs"]
mod proxmox;
#[path = "suite/real_terraform.rs"]
mod real_terraform;
#[path = "suite/reconcile.rs"]
mod reconcile;
#[path = "suite/s3.rs"]
mod s3;
#[path = "suite/secrets.rs"]
mod secrets;
#[path = "suite/server.rs"]
mod server;
#[path = "suite/sharding.rs"]
mod sharding;
#[path = "suite/signals.rs"]
mod signals;
#[path = "suite/unmanaged.rs"]
mod unmanaged;
#[path = "suite/web.rs"]
mod web;
