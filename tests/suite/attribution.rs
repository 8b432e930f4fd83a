//! Who changed a guest: the simulated Proxmox API (tests/pvesim, in this process) keeps a
//! cluster log ring and task lists as the real one does; the real terraform applies through
//! the test provider with Terraform's own token; a person changes guests by hand with
//! another; the exporter reads the log and tasks and names them in `changed_by`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proxmox::{Sim, TOKEN, dev_overrides, homelab_code, provider_dir};
use crate::server::{Server, metric};
use crate::support::have_terraform;
use crate::unmanaged::terraform_in;

/// The token Terraform applies with (`proxmox.terraform_token_ids`).
pub const TERRAFORM: &str = "terraform@pve!apply=5e1f-terraform-secret";
/// A person in the web UI (a token of root@pam, as `pvesh` or a script would use).
pub const ROOT: &str = "root@pam!admin=77aa-root-secret";

/// Container 130 `dns` (512 MB).
pub const CONTAINER: &str = "resource \"pvesim_lxc\" \"dns\" {\n  vmid   = 130\n  node   = \"pve1\"\n  name   = \"dns\"\n  memory = 512\n  cores  = 1\n}\n";

/// A simulator under a new directory that knows Terraform's token and root@pam's, the
/// exporter's token secret in `pve-token`, and the CLI configuration that loads the test
/// provider; `None` without terraform or the provider (said).
pub fn simulator() -> Option<(tempfile::TempDir, Sim, PathBuf)> {
    if !have_terraform() {
        return None;
    }
    let provider = provider_dir()?;
    let root = tempfile::tempdir().unwrap();
    let sim = Sim::start(root.path());
    for token in [TERRAFORM, ROOT] {
        sim.cluster.tokens.lock().unwrap().insert(token.to_owned());
    }
    let cli_config = dev_overrides(root.path(), &provider);
    std::fs::write(
        root.path().join("pve-token"),
        TOKEN.split_once('=').unwrap().1,
    )
    .unwrap();
    Some((root, sim, cli_config))
}

/// A VM and a container applied through the provider with Terraform's token.
pub struct Lab {
    pub root: tempfile::TempDir,
    pub sim: Sim,
    cli_config: PathBuf,
}

impl Lab {
    pub fn new() -> Option<Lab> {
        let (root, sim, cli_config) = simulator()?;
        let ws = root.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        // Terraform's token applies; a container beside the VM.
        std::fs::write(
            ws.join("main.tf"),
            homelab_code(sim.url(), TERRAFORM, sim.ca(), CONTAINER),
        )
        .unwrap();
        let lab = Lab {
            root,
            sim,
            cli_config,
        };
        lab.apply();
        Some(lab)
    }

    pub fn ws(&self) -> PathBuf {
        self.root.path().join("ws")
    }

    /// `terraform apply` of the workspace, with Terraform's token.
    pub fn apply(&self) {
        terraform_in(
            &self.ws(),
            &self.cli_config,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        );
    }

    /// Environment `lab` and `[proxmox]` with attribution every second; no change signals
    /// (these tests scan when they choose: tests/suite/signals.rs has the signals').
    pub fn config(&self) -> PathBuf {
        let path = self.root.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[storage]\npath = \"state\"\n[defaults]\ninterval = \"1h\"\nkill_grace = \"2s\"\ninit = \"never\"\nrun_on_start = false\n\
                 [proxmox]\napi_url = \"{}\"\ntoken_id = \"tfdrift@pve!ci\"\ntoken_secret_file = \"pve-token\"\nca_file = \"{}\"\n\
                 interval = \"1h\"\nattribution_interval = \"1s\"\nevents = false\nterraform_token_ids = [\"terraform@pve!apply\"]\n\
                 [environments.lab]\ndir = \"ws\"\nenv = {{ TF_CLI_CONFIG_FILE = \"{}\" }}\n",
                self.sim.url(),
                self.sim.ca().display(),
                self.cli_config.display()
            ),
        )
        .unwrap();
        path
    }

    /// [`Lab::config`] with `attribution_interval` at its default (a minute).
    pub fn config_default_interval(&self) -> PathBuf {
        let path = self.config();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("attribution_interval = \"1s\"\n", "")).unwrap();
        path
    }

    pub fn by_hand(&self, token: &str, path: &str, body: Value) {
        assert_eq!(self.sim.call_as(token, "PUT", path, Some(body)), 200);
    }
}

/// Waits for an attribution read that began after now.
pub fn next_poll(server: &Server) {
    let after = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = server.metrics();
        let polled = metric(&m, "tfdrift_attribution_last_poll_timestamp_seconds", &[]);
        if polled.is_some_and(|t| t > after + 0.05) {
            return;
        }
        assert!(Instant::now() < deadline, "no attribution read: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Scans `lab` now and returns the new report.
pub fn scan(server: &Server) -> Value {
    let (_, before) = server.get_json("/detail/lab");
    assert_eq!(server.request("POST", "/scan/lab", None).0, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, report) = server.get_json("/detail/lab");
        if status == 200 && !report["id"].is_null() && report["id"] != before["id"] {
            return report;
        }
        assert!(Instant::now() < deadline, "no scan: {report}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn change<'r>(report: &'r Value, address: &str) -> &'r Value {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address)
        .unwrap_or_else(|| panic!("no change of {address}: {report}"))
}

#[test]
fn a_person_a_terraform_token_and_a_container_edit_are_told_apart() {
    let Some(lab) = Lab::new() else { return };
    let server = Server::in_process(&lab.config());
    let conform = scan(&server);
    assert_eq!(conform["status"], "conform", "{conform}");

    // root@pam raises the VM's memory by hand; the container is edited in the UI (no log).
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));
    lab.by_hand(ROOT, "/nodes/pve1/lxc/130/config", json!({"memory": 1024}));
    next_poll(&server);
    let report = scan(&server);
    assert_eq!(report["status"], "drift", "{report}");
    let vm = change(&report, "pvesim_vm.web");
    let by = &vm["changed_by"][0];
    assert_eq!(by["user"], "root@pam", "{vm}");
    assert_eq!(by["token"], "admin");
    assert_eq!(by["via"], "cluster_log");
    assert_eq!(by["by_terraform"], false);
    assert!(
        by["message"].as_str().unwrap().contains("memory 3072"),
        "{by}"
    );
    assert!(by["time"].is_string());
    assert_eq!(
        change(&report, "pvesim_lxc.dns")["changed_by"],
        json!([]),
        "a container's config edit leaves no trace to attribute"
    );
    assert!(
        server
            .metrics()
            .lines()
            .any(|l| l.contains("address=\"pvesim_vm.web\"")
                && l.contains("changed_by=\"root@pam\"")),
        "the metric names who"
    );

    // Terraform's own token changes it again: that entry says so, and comes first.
    lab.by_hand(
        TERRAFORM,
        "/nodes/pve1/qemu/120/config",
        json!({"memory": 4096}),
    );
    next_poll(&server);
    let report = scan(&server);
    let by = &change(&report, "pvesim_vm.web")["changed_by"];
    assert_eq!(by[0]["user"], "terraform@pve");
    assert_eq!(by[0]["by_terraform"], true, "{by}");
    assert_eq!(
        by[1]["user"], "root@pam",
        "the earlier change is still listed"
    );
    assert!(
        !server
            .request("GET", "/detail", None)
            .2
            .contains("sim-secret"),
        "no token secret is shown"
    );

    // A VM created by hand: the unmanaged-guest check says who created it (its qmcreate
    // task, read by the running exporter); one Terraform's token made from a workspace no
    // environment has says Terraform. The states' guests are managed, not listed.
    assert_eq!(
        lab.sim.call_as(
            ROOT,
            "POST",
            "/nodes/pve1/qemu",
            Some(json!({"vmid": 150, "name": "web2"}))
        ),
        200
    );
    assert_eq!(
        lab.sim.call_as(
            TERRAFORM,
            "POST",
            "/nodes/pve1/qemu",
            Some(json!({"vmid": 151, "name": "elsewhere"}))
        ),
        200
    );
    next_poll(&server);
    let config = lab.config();
    let (_, stdout, stderr) = crate::support::run(&[
        "unmanaged",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ]);
    let checked: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let guest = |vmid: u64| {
        checked["guests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["vmid"] == vmid)
            .cloned()
            .unwrap_or_else(|| panic!("no guest {vmid}: {checked}"))
    };
    let made = &guest(150)["created_by"];
    assert_eq!(made["user"], "root@pam", "{checked}");
    assert_eq!(made["message"], "qmcreate");
    assert_eq!(made["via"], "task");
    assert!(guest(150)["created_at"].is_string(), "{checked}");
    assert_eq!(guest(151)["created_by"]["by_terraform"], true, "{checked}");
    assert_eq!(checked["managed"]["lab"], json!([120, 130]), "{checked}");
    assert_eq!(checked["guests"].as_array().unwrap().len(), 2, "{checked}");
}

#[test]
fn a_token_without_sys_syslog_gives_null_the_scan_still_drifts_and_it_is_said_once() {
    let Some(lab) = Lab::new() else { return };
    lab.sim
        .cluster
        .without_syslog
        .lock()
        .unwrap()
        .insert("tfdrift@pve!ci".into());
    // A process: the test reads its logs.
    let mut server = Server::start(&lab.config());
    let conform = scan(&server);
    assert_eq!(conform["status"], "conform");
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));
    next_poll(&server);
    next_poll(&server);
    let report = scan(&server);
    assert_eq!(
        report["status"], "drift",
        "never an error of the scan: {report}"
    );
    assert!(
        change(&report, "pvesim_vm.web")["changed_by"].is_null(),
        "{report}"
    );
    assert_eq!(report["attribution_error"], "permission", "null says why");
    assert_eq!(
        metric(
            &server.metrics(),
            "tfdrift_attribution_error",
            &[("reason", "permission")]
        ),
        Some(1.0)
    );
    server.wait_log("attribution unavailable", Duration::from_secs(5));
    let said = server
        .logged()
        .iter()
        .filter(|l| l.contains("attribution unavailable"))
        .count();
    assert_eq!(said, 1, "said once, not at every read");
}

#[test]
fn a_cluster_log_that_turns_over_between_two_reads_is_said_and_the_newest_change_kept() {
    let Some(lab) = Lab::new() else { return };
    lab.sim.cluster.audit.set_log_capacity(1000);
    // The cluster log is never empty: a read remembers its newest entry.
    lab.sim
        .cluster
        .audit
        .log("pve1", "root@pam", "starting task UPID:pve1:vzdump");
    let server = Server::in_process(&lab.config());
    scan(&server);
    next_poll(&server);
    // A busy cluster: 2,000 lines between two reads of a ring that keeps 1,000, then the
    // change that matters.
    for i in 0..2000 {
        lab.sim.cluster.audit.log(
            "pve1",
            "backup@pam",
            &format!("starting backup of VM {}", 500 + i % 7),
        );
    }
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));
    next_poll(&server);
    let gaps = metric(&server.metrics(), "tfdrift_attribution_log_gaps_total", &[]);
    assert!(
        gaps.is_some_and(|g| g >= 1.0),
        "the turn-over is said: {gaps:?}"
    );
    let report = scan(&server);
    let by = &change(&report, "pvesim_vm.web")["changed_by"];
    assert_eq!(by[0]["user"], "root@pam", "{by}");
}

#[test]
fn an_api_failure_gives_null_and_never_fails_the_scan() {
    let Some(lab) = Lab::new() else { return };
    let server = Server::in_process(&lab.config());
    assert_eq!(scan(&server)["status"], "conform");
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));
    // The exporter's token is revoked: every read of the cluster log now fails.
    lab.sim.cluster.tokens.lock().unwrap().remove(TOKEN);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(
        &server.metrics(),
        "tfdrift_attribution_error",
        &[("reason", "auth")],
    ) != Some(1.0)
    {
        assert!(Instant::now() < deadline, "the failed read is not shown");
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = scan(&server);
    assert_eq!(report["status"], "drift", "{report}");
    assert!(
        change(&report, "pvesim_vm.web")["changed_by"].is_null(),
        "what cannot be read now is not claimed: {report}"
    );
    assert_eq!(report["attribution_error"], "auth", "{report}");
}

/// Regression: with the default `attribution_interval` (a minute), a change scanned at once
/// (`POST /scan/lab` a moment after the edit) said `"changed_by": []`, "nobody", because the
/// last read of the cluster log predated the change. A scan takes entries only from a read
/// that began after its plan: it asks the poller for one and names root@pam.
#[test]
fn a_change_scanned_at_once_names_its_author_with_the_default_interval_never_nobody() {
    let Some(lab) = Lab::new() else { return };
    let server = Server::in_process(&lab.config_default_interval());
    assert_eq!(scan(&server)["status"], "conform");
    for round in 0..3 {
        let memory = 3072 + 512 * round;
        lab.by_hand(
            ROOT,
            "/nodes/pve1/qemu/120/config",
            json!({ "memory": memory }),
        );
        let report = scan(&server);
        assert_eq!(report["status"], "drift", "{report}");
        let vm = change(&report, "pvesim_vm.web");
        let by = &vm["changed_by"];
        assert_eq!(by[0]["user"], "root@pam", "round {round}: {report}");
        assert!(
            by[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("memory {memory}"))),
            "the newest change first: {by}"
        );
        assert!(report.get("attribution_error").is_none(), "{report}");
    }
}

/// Regression: the Proxmox client opened a new TCP+TLS connection for every request and
/// rebuilt its TLS configuration at every poll, and its `Host` header dropped the port. Ten
/// polls (each reads the permissions, the cluster log, the nodes and their tasks) and the
/// check at start: a handful of connections, not one per request; `Host` is `host:port`.
#[test]
fn ten_polls_use_a_handful_of_connections_and_host_names_the_port() {
    use std::sync::atomic::Ordering;
    // Two exporters in this process, each with its own simulator: a client cache of one
    // slot threw the other's client (and its connections) away at every poll.
    let (Some(lab), Some(other)) = (Lab::new(), Lab::new()) else {
        return;
    };
    let before = lab.sim.cluster.connections.load(Ordering::SeqCst);
    let other_before = other.sim.cluster.connections.load(Ordering::SeqCst);
    lab.sim.cluster.hosts.lock().unwrap().clear();
    let server = Server::in_process(&lab.config());
    let other_server = Server::in_process(&other.config());
    for _ in 0..10 {
        next_poll(&server);
        next_poll(&other_server);
    }
    for (sim, before) in [(&lab.sim, before), (&other.sim, other_before)] {
        let opened = sim.cluster.connections.load(Ordering::SeqCst) - before;
        assert!(
            (1..=5).contains(&opened),
            "{opened} connections for ten polls and a check"
        );
    }
    let port = lab.sim.url().rsplit(':').next().unwrap().to_owned();
    let hosts = lab.sim.cluster.hosts.lock().unwrap().clone();
    assert_eq!(
        hosts.into_iter().collect::<Vec<_>>(),
        [format!("127.0.0.1:{port}")],
        "Host names the port"
    );
}

/// Regression: the journal's cap (50,000 entries) was applied only by the hourly prune: an
/// API answering thousands of new entries at every read grew it without bound in between.
/// Six reads of 10,000 new guest lines each (long ones): the journal never holds more than
/// the cap, and the newest change is still attributed.
#[test]
fn a_flood_of_new_log_lines_leaves_the_journal_under_its_cap() {
    let Some(lab) = Lab::new() else { return };
    lab.sim.cluster.audit.set_log_capacity(10_000);
    let server = Server::in_process(&lab.config());
    assert_eq!(scan(&server)["status"], "conform");
    next_poll(&server);
    let journal = lab.root.path().join("state/attribution.jsonl");
    // Long lines, yet an answer under the 8 MiB a read takes (a 128 KiB ring is far less).
    let filler = "x".repeat(500);
    for round in 0..6 {
        for i in 0..10_000 {
            lab.sim.cluster.audit.log(
                "pve1",
                "backup@pam",
                &format!(
                    "update VM {}: -description {round}-{i}-{filler}",
                    500 + i % 7
                ),
            );
        }
        next_poll(&server);
        let lines = std::fs::read_to_string(&journal).unwrap().lines().count();
        assert!(lines <= 50_000, "round {round}: {lines} lines");
    }
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));
    let report = scan(&server);
    assert_eq!(
        change(&report, "pvesim_vm.web")["changed_by"][0]["user"],
        "root@pam",
        "{report}"
    );
    let size = std::fs::metadata(&journal).unwrap().len();
    assert!(size < 40 << 20, "messages are cut: {size} bytes");
}

/// Regression: a journal that could not be read (here a directory in its place) read as
/// empty, and every change got `changed_by: []`, "nobody", with no word anywhere. It is
/// `null`, the report says `journal`, and the log says why.
#[test]
fn an_unreadable_journal_is_no_nobody() {
    let Some(lab) = Lab::new() else { return };
    let server = Server::in_process(&lab.config());
    assert_eq!(scan(&server)["status"], "conform");
    next_poll(&server);
    let journal = lab.root.path().join("state/attribution.jsonl");
    let _ = std::fs::remove_file(&journal);
    std::fs::create_dir(&journal).unwrap();
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));
    let report = scan(&server);
    assert_eq!(report["status"], "drift", "{report}");
    assert!(
        change(&report, "pvesim_vm.web")["changed_by"].is_null(),
        "{report}"
    );
    assert_eq!(report["attribution_error"], "journal", "{report}");
}

/// pmxcfs writes a backslash as it is: one logged `C:\temp` makes the whole cluster log an
/// invalid JSON text, and pve-manager answers every read with HTTP 500 until the line leaves
/// the ring (docs/proxmox.md). Attribution says `api`, the drift is still found,
/// nothing panics; once the line has left the ring, authors come back.
#[test]
fn a_cluster_log_blinded_by_a_backslash_gives_null_with_a_reason_and_the_drift_still() {
    let Some(lab) = Lab::new() else { return };
    lab.sim.cluster.audit.set_log_capacity(50);
    let server = Server::in_process(&lab.config());
    assert_eq!(scan(&server)["status"], "conform");
    lab.by_hand(
        ROOT,
        "/nodes/pve1/qemu/120/config",
        json!({"description": "backup in C:\\xtemp", "memory": 3072}),
    );
    let report = scan(&server);
    assert_eq!(report["status"], "drift", "{report}");
    assert!(
        change(&report, "pvesim_vm.web")["changed_by"].is_null(),
        "{report}"
    );
    assert_eq!(report["attribution_error"], "api", "{report}");
    // Fifty other lines push it out of the ring: the log reads again.
    for i in 0..50 {
        lab.sim
            .cluster
            .audit
            .log("pve1", "root@pam", &format!("starting task {i}"));
    }
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 4096}));
    let report = scan(&server);
    let by = &change(&report, "pvesim_vm.web")["changed_by"];
    assert_eq!(by[0]["user"], "root@pam", "{report}");
}

/// When pmxcfs restarts on a single node its ring starts again, empty, uids from 1: the
/// poller kept `log:<node>:<uid>` keys and dropped the new lines as already seen. A restart
/// is a restart: the next change is attributed, nothing is kept twice, no gap is counted.
#[test]
fn a_cluster_log_started_again_by_pmxcfs_loses_nothing_and_doubles_nothing() {
    let Some(lab) = Lab::new() else { return };
    let server = Server::in_process(&lab.config());
    assert_eq!(scan(&server)["status"], "conform");
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));
    assert_eq!(
        change(&scan(&server), "pvesim_vm.web")["changed_by"][0]["user"],
        "root@pam"
    );
    lab.sim.cluster.audit.restart_pmxcfs();
    // A second before the next change: the restarted ring's first uid is the one of the
    // change before, in another second.
    std::thread::sleep(Duration::from_millis(1100));
    lab.by_hand(
        TERRAFORM,
        "/nodes/pve1/qemu/120/config",
        json!({"memory": 4096}),
    );
    let report = scan(&server);
    let by = &change(&report, "pvesim_vm.web")["changed_by"];
    assert_eq!(
        by[0]["user"], "terraform@pve",
        "the new line is read: {report}"
    );
    assert_eq!(by[1]["user"], "root@pam");
    assert_eq!(by.as_array().unwrap().len(), 2, "nothing twice: {by}");
    assert_eq!(
        metric(&server.metrics(), "tfdrift_attribution_log_gaps_total", &[]),
        Some(0.0),
        "a restart is no gap"
    );
}

/// A hostile API: 10,000 new 4 KB guest lines at every read, every second, for a minute.
/// An answer that long is refused (no 128 KiB ring is ever that long): the read fails with
/// `api`, said once; the journal stays under its cap and the exporter (a process of its
/// own) under 64 MiB resident at its peak.
#[test]
fn a_hostile_flood_of_long_lines_keeps_the_journal_and_the_memory_bounded() {
    let Some(lab) = Lab::new() else { return };
    lab.sim.cluster.audit.set_log_capacity(10_000);
    let server = Server::start(&lab.config());
    server.wait_served(Duration::from_secs(30));
    next_poll(&server);
    let filler = "y".repeat(4_000);
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let tick = Instant::now();
        for i in 0..10_000 {
            lab.sim.cluster.audit.log(
                "pve1",
                "flood@pam",
                &format!(
                    "update VM {}: -description {round}-{i}-{filler}",
                    500 + i % 7
                ),
            );
        }
        round += 1;
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    next_poll(&server);
    let m = server.metrics();
    assert_eq!(
        metric(&m, "tfdrift_attribution_error", &[("reason", "api")]),
        Some(1.0),
        "{m}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!(
        "{round} floods; exporter peak resident memory {} MiB",
        peak_kib / 1024
    );
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
    let journal = lab.root.path().join("state/attribution.jsonl");
    let lines = std::fs::read_to_string(&journal)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    assert!(lines <= 50_000, "{lines} lines");
    let said = server
        .logged()
        .iter()
        .filter(|l| l.contains("attribution unavailable"))
        .count();
    assert_eq!(said, 1, "said once");
}
