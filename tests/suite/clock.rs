//! A wall clock that is wrong, through libfaketime (Debian `faketime`) preloaded into the
//! exporter: a scan stamped a year ahead, a start 100 days ahead. terraform is a Go binary
//! that does not read the clock through libc, so only the exporter's time moves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::server::Server;
use crate::support::{Workspace, bin, have_terraform, output_of, skip, terraform};

/// libfaketime's multi-threaded library (the exporter's runtime has threads).
fn faketime() -> Option<PathBuf> {
    let lib = PathBuf::from("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
    if !lib.is_file() {
        skip("libfaketime is not installed (Debian package faketime)");
        return None;
    }
    Some(lib)
}

/// `scan --format json` of `config` with the clock moved by `offset` ("+365d", or "" for
/// the right time): the one report.
fn scan_at(config: &Path, lib: &Path, offset: &str) -> Value {
    let mut cmd = bin();
    cmd.args(["scan", "--format", "json", "--config"])
        .arg(config);
    if !offset.is_empty() {
        cmd.env("LD_PRELOAD", lib).env("FAKETIME", offset);
    }
    let (_, stdout, stderr) = output_of(cmd.output().unwrap());
    let reports: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    reports[0].clone()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// A workspace whose code asks for another value than its state holds: drift.
fn drifting() -> Workspace {
    let w = Workspace::new("resource \"terraform_data\" \"vm\" {\n  input = 2048\n}\n");
    terraform(
        &w.ws(),
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    std::fs::write(
        w.ws().join("main.tf"),
        "resource \"terraform_data\" \"vm\" {\n  input = 3072\n}\n",
    )
    .unwrap();
    w
}

/// Regression: a drift scan stamped a year ahead kept `drift_since` (and its gauge) a year
/// in the future for the whole run. The next scan, on time, carries the run without ever
/// starting after itself.
#[test]
fn a_drift_scan_stamped_a_year_ahead_leaves_no_run_starting_in_the_future() {
    let Some(lib) = faketime() else { return };
    if !have_terraform() {
        return;
    }
    let w = drifting();
    let config = w.config("");
    let ahead = scan_at(&config, &lib, "+365d");
    assert_eq!(ahead["status"], "drift", "{ahead}");
    assert!(
        time(&ahead["started_at"]) > Utc::now() + chrono::Duration::days(300),
        "the clock ran ahead: {}",
        ahead["started_at"]
    );
    let on_time = scan_at(&config, &lib, "");
    assert_eq!(on_time["status"], "drift");
    let started = time(&on_time["started_at"]);
    assert!(
        time(&on_time["drift_since"]) <= started,
        "drift_since {} after the scan's start {started}",
        on_time["drift_since"]
    );
    let change = &on_time["changes"][0];
    assert!(time(&change["since"]) <= started, "{change}");
}

/// Regression: one forward clock jump of 100 days at start deleted 11 of 12 stored reports.
/// Twelve scans, one a day, then the exporter started 100 days ahead: all twelve are kept,
/// and the log says what the clock alone would have deleted.
#[test]
fn a_start_100_days_ahead_deletes_nothing() {
    let Some(lib) = faketime() else { return };
    if !have_terraform() {
        return;
    }
    let w = drifting();
    let config = w.config("run_on_start = false");
    for day in (0..12).rev() {
        // Scans of the last twelve days (the clock moved back for each).
        let report = scan_at(&config, &lib, &format!("-{day}d"));
        assert_eq!(report["status"], "drift", "{report}");
    }
    let history = w.storage().join("envs/lab/history");
    let stored = || {
        std::fs::read_dir(&history)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    };
    assert_eq!(stored(), 12);
    let lib = lib.display().to_string();
    let server = Server::start_in_env(
        &config,
        "",
        &[],
        &[("LD_PRELOAD", lib.as_str()), ("FAKETIME", "+100d")],
    );
    server.wait_served(Duration::from_secs(30));
    assert_eq!(stored(), 12, "nothing deleted");
    let logged = server.logged();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("not pruning reports") && l.contains("reports=12")),
        "the refusal is said: {logged:#?}"
    );
    let (_, page) = server.get_json("/history?since=1000d");
    assert_eq!(page["scans"].as_array().unwrap().len(), 12, "{page}");
}
