//! The exporter-toolkit flags every Prometheus exporter has, and the `process_*` metrics.

use std::time::Duration;

use crate::server::{Server, metric, promtool_check};

fn config() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[storage]\npath = \"state\"\n[environments.lab]\ndir = \".\"\nrun_on_start = false\n",
    )
    .unwrap();
    (dir, path)
}

/// `process_*` as client_golang's process collector gives them, plausible for this
/// process, in both formats; promtool finds nothing to say.
#[test]
fn process_metrics_are_there_and_plausible() {
    let (_dir, path) = config();
    let server = Server::start(&path);
    server.wait_served(Duration::from_secs(20));
    let m = server.metrics();
    let value = |name: &str| metric(&m, name, &[]).unwrap_or_else(|| panic!("no {name}: {m}"));
    let now = chrono::Utc::now().timestamp() as f64;
    let rss = value("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 1e9, "{rss}");
    assert!(value("process_virtual_memory_bytes") >= rss);
    let open = value("process_open_fds");
    assert!(open >= 3.0 && open <= value("process_max_fds"), "{open}");
    let started = value("process_start_time_seconds");
    assert!(
        started > now - 300.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
    assert!(value("process_cpu_seconds_total") >= 0.0);
    promtool_check(&m);
    let (_, _, om) = server.request(
        "GET",
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert!(
        om.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total "),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n") && om.matches("# EOF").count() == 1);
}

#[test]
fn disable_exporter_metrics_leaves_them_out() {
    let (_dir, path) = config();
    let server = Server::start_with(&path, "", &["--web.disable-exporter-metrics"]);
    server.wait_served(Duration::from_secs(20));
    let m = server.metrics();
    assert!(m.contains("tfdrift_build_info"), "{m}");
    assert!(!m.contains("process_"), "{m}");
}

/// `--web.telemetry-path` moves the metrics; the old path is then unknown; `/` is refused.
#[test]
fn the_telemetry_path_moves_the_metrics() {
    let (_dir, path) = config();
    let server = Server::start_with(&path, "", &["--web.telemetry-path", "/internal/metrics"]);
    server.wait_served(Duration::from_secs(20));
    let (status, _, body) = server.request("GET", "/internal/metrics", None);
    assert_eq!(status, 200);
    assert!(body.contains("tfdrift_build_info"), "{body}");
    assert_eq!(server.request("GET", "/metrics", None).0, 404);
    let (code, _, stderr) = crate::support::run(&[
        "--config",
        path.to_str().unwrap(),
        "--web.telemetry-path",
        "/",
    ]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--web.telemetry-path"), "{stderr}");
}

/// `--web.listen-address` given twice: both addresses answer.
#[test]
fn every_listen_address_answers() {
    let (_dir, path) = config();
    let second = crate::chain::free_port();
    let server = Server::start_with(
        &path,
        "",
        &["--web.listen-address", &format!("127.0.0.1:{second}")],
    );
    server.wait_served(Duration::from_secs(20));
    let other = crate::chain::http_text(&format!("http://127.0.0.1:{second}/metrics"));
    assert!(other.contains("tfdrift_build_info"), "{other}");
    assert!(server.metrics().contains("tfdrift_build_info"));
}

/// `--web.systemd-socket` serves on the socket systemd passes (systemd-socket-activate
/// plays systemd: it listens, and starts the exporter with the socket as fd 3 at the first
/// connection); without one it refuses to start, saying so.
#[test]
fn the_systemd_socket_is_served() {
    let (_dir, path) = config();
    let (code, _, stderr) =
        crate::support::run(&["--config", path.to_str().unwrap(), "--web.systemd-socket"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("systemd passed no TCP socket"), "{stderr}");
    if std::process::Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        crate::support::skip("systemd-socket-activate is not installed (Debian package systemd)");
        return;
    }
    let port = crate::chain::free_port();
    let exporter = env!("CARGO_BIN_EXE_tfdrift-exporter");
    let _activator = crate::chain::Daemon(
        std::process::Command::new("systemd-socket-activate")
            .args(["-l", &format!("127.0.0.1:{port}"), exporter])
            .args(["--config", path.to_str().unwrap(), "--web.systemd-socket"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let body = crate::chain::http_text(&format!("http://127.0.0.1:{port}/metrics"));
    assert!(body.contains("tfdrift_build_info"), "{body}");
}

/// The OpenMetrics answer of a populated exporter (a drift with its resources, a failed
/// environment, the process metrics) passes the reference parser (PyPI prometheus-client's
/// `openmetrics` parser, which agrees with the OpenMetrics test suite).
#[test]
fn openmetrics_passes_the_reference_parser() {
    if !crate::support::have_terraform() {
        return;
    }
    let python = crate::support::python();
    let found = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        crate::support::skip(
            "python with prometheus-client is not installed (./test.sh installs it into target/venv)",
        );
        return;
    }
    let w = crate::support::Workspace::new(crate::real_terraform::VM);
    let config = w.config("[environments.broken]\ndir = \"nowhere\"\n");
    let server = Server::start(&config);
    crate::chain::wait_until(
        "lab drifting and broken failing",
        Duration::from_secs(60),
        || {
            let m = server.metrics();
            metric(&m, "tfdrift_status", &[("environment", "lab")]) == Some(1.0)
                && metric(&m, "tfdrift_status", &[("environment", "broken")]) == Some(2.0)
        },
    );
    let (_, content_type, body) = server.request(
        "GET",
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert!(content_type.starts_with("application/openmetrics-text"));
    let mut child = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\nfor f in parse(sys.stdin.read()):\n    print(f.name, f.type, len(f.samples))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let families = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    for family in [
        "tfdrift_status gauge",
        "tfdrift_resource_change_info gauge",
        "tfdrift_scans counter",
        "tfdrift_scan_error_info gauge",
        "process_cpu_seconds counter",
    ] {
        assert!(families.contains(family), "{family}: {families}");
    }
}

/// `--web.max-requests 1`: each answered request gives its permit back (the refusal
/// itself, 503 past the limit, is `http::limit`'s unit test: a request cannot be held
/// in flight from outside); a value that is not a count is refused at start.
#[test]
fn max_requests_gives_each_permit_back() {
    let (_dir, path) = config();
    let server = Server::start_with(&path, "", &["--web.max-requests", "1"]);
    server.wait_served(Duration::from_secs(20));
    for _ in 0..20 {
        let (status, _, body) = server.request("GET", "/metrics", None);
        assert_eq!(status, 200, "{body}");
    }
    let (code, _, stderr) = crate::support::run(&[
        "--config",
        path.to_str().unwrap(),
        "--web.max-requests",
        "many",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--web.max-requests"), "{stderr}");
}
