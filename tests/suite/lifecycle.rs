//! The drift lifecycle with real terraform: `drift_since` and each change's `since` carried
//! through a failed scan and a restart, the gauge while drifting, the resolution in the
//! history.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::real_terraform::{applied_vm, raise_memory_in_state};
use crate::server::{Server, metric};
use crate::support::{have_terraform, terraform};

/// Waits until `/detail/lab` shows a report other than `previous`.
fn next_report(server: &Server, previous: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, report) = server.get_json("/detail/lab");
        if status == 200 && report["id"] != previous["id"] && !report["id"].is_null() {
            return report;
        }
        assert!(Instant::now() < deadline, "no new scan of lab: {report}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn unix(rfc3339: &Value) -> f64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp() as f64
}

#[test]
fn drift_since_survives_a_failed_scan_and_a_restart_and_its_resolution_is_in_the_history() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    raise_memory_in_state(&w.ws());
    let config = w.config("run_on_start = false");

    // Scan 1: drift; the run and the change start here.
    let (_, first, stderr, _) = w.scan(&config);
    assert_eq!(first["status"], "drift", "{stderr}");
    let since = first["drift_since"].clone();
    assert!(since.is_string(), "{first}");
    assert_eq!(first["drift_since"], first["started_at"]);
    assert_eq!(first["changes"][0]["since"], since);

    // A failed scan in between carries the run on.
    std::fs::write(w.ws().join("broken.tf"), "resource \"terraform_data\" {\n").unwrap();
    let (_, failed, _, _) = w.scan(&config);
    assert_eq!(failed["status"], "error", "{failed}");
    assert_eq!(failed["drift_since"], since);
    std::fs::remove_file(w.ws().join("broken.tf")).unwrap();

    // Scan 2, a second later: the same run, the same change.
    std::thread::sleep(Duration::from_millis(1100));
    let (_, second, _, _) = w.scan(&config);
    assert_eq!(second["status"], "drift");
    assert_ne!(second["started_at"], first["started_at"]);
    assert_eq!(second["drift_since"], since);
    assert_eq!(second["changes"][0]["since"], since);

    // A restarted exporter shows the run before it scans, and keeps it at scan 3.
    let server = Server::in_process(&config);
    let metrics = server.metrics();
    assert_eq!(
        metric(
            &metrics,
            "tfdrift_drift_since_timestamp_seconds",
            &[("environment", "lab")]
        ),
        Some(unix(&since)),
        "{metrics}"
    );
    let (_, restored) = server.get_json("/detail/lab");
    let (code, _, _) = server.request("POST", "/scan/lab", None);
    assert_eq!(code, 202);
    let third = next_report(&server, &restored);
    assert_eq!(third["status"], "drift");
    assert_eq!(third["drift_since"], since);
    assert_eq!(third["changes"][0]["since"], since);
    let attributes = crate::server::label(
        &server.metrics(),
        "tfdrift_resource_change_info",
        "attributes",
    );
    assert!(
        attributes
            .as_deref()
            .is_some_and(|a| a.contains("3072") && a.contains("2048")),
        "the attributes label says what changed: {attributes:?}"
    );

    // Reverted: conform, the gauge gone, and the history tells when the drift ended.
    terraform(
        &w.ws(),
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    server.request("POST", "/scan/lab", None);
    let fourth = next_report(&server, &third);
    assert_eq!(fourth["status"], "conform", "{fourth}");
    assert!(fourth["drift_since"].is_null());
    assert_eq!(
        metric(
            &server.metrics(),
            "tfdrift_drift_since_timestamp_seconds",
            &[("environment", "lab")]
        ),
        None
    );
    let (_, history) = server.get_json("/history?environment=lab");
    let scans = history["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 5, "{history}");
    assert_eq!(scans[0]["status"], "conform");
    assert_eq!(scans[0]["resolved_drift_since"], since, "{history}");
    assert!(
        scans[1..]
            .iter()
            .all(|s| s.get("resolved_drift_since").is_none()),
        "only the resolving scan says so: {history}"
    );
}
