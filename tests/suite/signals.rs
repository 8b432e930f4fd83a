//! Change signals: what the simulated Proxmox records (cluster log lines, tasks, config
//! digests) starts a scan of the environment that manages the guest, with default settings
//! and a daily schedule. Through the real terraform, the simulator (tests/pvesim, in this
//! process), Debian's Prometheus with the shipped rules, Alertmanager with the shipped
//! configuration, and a fake of the Telegram Bot API (it imitates the documented
//! `sendMessage` request and answer).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::attribution::{CONTAINER, ROOT, TERRAFORM, simulator};
use crate::chain::{
    FakeTelegram, alertmanager, free_port, prom_query, prometheus, shipped_alertmanager, wait_until,
};
use crate::proxmox::{Sim, homelab_code, provider_code};
use crate::server::{Server, metric};
use crate::support::{have_terraform, tool};
use crate::unmanaged::terraform_in;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Two environments applied with Terraform's token: `lab` (VM 120) and `dns` (container
/// 130, in a workspace of its own).
pub struct Site {
    pub root: tempfile::TempDir,
    pub sim: Sim,
    cli_config: PathBuf,
}

impl Site {
    pub fn new() -> Option<Site> {
        let (root, sim, cli_config) = simulator()?;
        let site = Site {
            root,
            sim,
            cli_config,
        };
        site.write(
            "lab",
            &homelab_code(site.sim.url(), TERRAFORM, site.sim.ca(), ""),
        );
        site.write(
            "dns",
            &format!(
                "{}{CONTAINER}",
                provider_code(site.sim.url(), TERRAFORM, site.sim.ca())
            ),
        );
        for ws in ["lab", "dns"] {
            site.apply(ws);
        }
        Some(site)
    }

    fn write(&self, ws: &str, code: &str) {
        let dir = self.root.path().join(ws);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.tf"), code).unwrap();
    }

    /// `terraform apply` of a workspace, with Terraform's token.
    pub fn apply(&self, ws: &str) {
        terraform_in(
            &self.root.path().join(ws),
            &self.cli_config,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        );
    }

    /// Both environments on a daily schedule, never scanned at start, and `[proxmox]` with
    /// its defaults (reads every 10 s, digests every 30 s); `extra` goes into `[defaults]`.
    pub fn config(&self, extra: &str) -> PathBuf {
        let path = self.root.path().join("config.toml");
        let env = |name: &str| {
            format!(
                "[environments.{name}]\ndir = \"{name}\"\nenv = {{ TF_CLI_CONFIG_FILE = \"{}\" }}\n",
                self.cli_config.display()
            )
        };
        std::fs::write(
            &path,
            format!(
                "[storage]\npath = \"state\"\n\
                 [defaults]\ninterval = \"24h\"\njitter = \"0s\"\nkill_grace = \"2s\"\ninit = \"never\"\nrun_on_start = false\n{extra}\
                 [proxmox]\napi_url = \"{}\"\ntoken_id = \"tfdrift@pve!ci\"\ntoken_secret_file = \"pve-token\"\nca_file = \"{}\"\n\
                 terraform_token_ids = [\"terraform@pve!apply\"]\n{}{}",
                self.sim.url(),
                self.sim.ca().display(),
                env("lab"),
                env("dns"),
            ),
        )
        .unwrap();
        path
    }

    pub fn by_hand(&self, method: &str, path: &str, body: Value) {
        assert_eq!(self.sim.call_as(ROOT, method, path, Some(body)), 200);
    }
}

/// Waits until the exporter knows which environment manages which guest (its first
/// unmanaged-guest check) and has read every managed guest's config digest once.
pub fn ready(server: &Server) {
    wait_until(
        "the first unmanaged-guest check",
        Duration::from_secs(60),
        || {
            let (_, u) = server.get_json("/unmanaged");
            u["managed"]["lab"] == json!([120]) && u["managed"]["dns"] == json!([130])
        },
    );
    for _ in 0..2 {
        crate::attribution::next_poll(server);
    }
}

/// The scans of `env` in its history, newest first.
fn history(server: &Server, env: &str) -> Vec<Value> {
    let (status, h) = server.get_json(&format!("/history?environment={env}"));
    assert_eq!(status, 200, "{h}");
    h["scans"].as_array().cloned().unwrap_or_default()
}

fn seconds_since(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 10.0).round() / 10.0
}

/// The acceptance, end to end with the shipped rules and Alertmanager file: a qemu
/// memory change by root@pam reaches Telegram within 60 s naming root@pam and the
/// attribute; an LXC memory change (no log line: found by its digest) within 90 s, its
/// author said to be unknown; a VM created by hand is in `/unmanaged` within 60 s with its
/// creator. Prometheus scrapes and evaluates every 15 s, as examples/prometheus.yml does.
#[test]
fn changes_in_proxmox_reach_telegram_within_a_minute_with_their_author() {
    if !tool("prometheus", "prometheus")
        || !tool("prometheus-alertmanager", "prometheus-alertmanager")
    {
        return;
    }
    let Some(site) = Site::new() else { return };
    let dir = site.root.path().to_owned();
    let exporter = Server::in_process(&site.config(""));

    let telegram = FakeTelegram::start();
    let (_am, am_port) = alertmanager(&dir, &shipped_alertmanager(telegram.port));
    let shipped = std::fs::read_to_string(repo().join("examples/prometheus.yml")).unwrap();
    assert!(
        shipped.contains("scrape_interval: 15s") && shipped.contains("evaluation_interval: 15s")
    );
    let (_prometheus, prom_port) = prometheus(&dir, "15s", am_port, &[&exporter.address], &[]);
    ready(&exporter);
    wait_until(
        "Prometheus scraping the exporter",
        Duration::from_secs(60),
        || {
            prom_query(prom_port, "up{job=\"tfdrift\"}")
                .first()
                .is_some_and(|s| s["value"][1] == "1")
        },
    );
    assert!(telegram.all().is_empty(), "nothing while conform");

    let edited = Instant::now();
    site.by_hand(
        "PUT",
        "/nodes/pve1/qemu/120/config",
        json!({"memory": 3072}),
    );
    site.by_hand("PUT", "/nodes/pve1/lxc/130/config", json!({"memory": 1024}));
    site.by_hand(
        "POST",
        "/nodes/pve1/qemu",
        json!({"vmid": 150, "name": "web2"}),
    );

    let vm = telegram.wait_for("for lab's drift", Duration::from_secs(60), |t| {
        t.contains("DRIFT") && t.contains("[lab]")
    });
    let vm_seconds = seconds_since(edited);
    assert!(vm.contains("by root@pam"), "{vm}");
    assert!(vm.contains("memory: 3072 -&gt; 2048"), "{vm}");
    assert!(vm.contains("Changed in Proxmox at"), "{vm}");
    let report = exporter.wait_report("lab", Duration::from_secs(5), |r| r["status"] == "drift");
    assert_eq!(report["trigger"]["kind"], "proxmox", "{report}");
    let signal = &report["trigger"]["signals"][0];
    assert_eq!(signal["vmid"], 120, "{report}");
    assert_eq!(signal["user"], "root@pam", "{report}");
    assert_eq!(report["changes"][0]["changed_by"][0]["user"], "root@pam");

    wait_until(
        "VM 150 in /unmanaged",
        Duration::from_secs(60) - edited.elapsed(),
        || {
            let (_, u) = exporter.get_json("/unmanaged");
            u["guests"].as_array().is_some_and(|g| {
                g.iter()
                    .any(|g| g["vmid"] == 150 && g["created_by"]["user"] == "root@pam")
            })
        },
    );
    let unmanaged_seconds = seconds_since(edited);

    let lxc = telegram.wait_for(
        "for dns's drift",
        Duration::from_secs(90).saturating_sub(edited.elapsed()),
        |t| t.contains("DRIFT") && t.contains("[dns]"),
    );
    let lxc_seconds = seconds_since(edited);
    assert!(lxc.contains("author unknown"), "{lxc}");
    assert!(lxc.contains("memory: 1024 -&gt; 512"), "{lxc}");
    let (_, dns) = exporter.get_json("/detail/dns");
    assert_eq!(dns["trigger"]["signals"][0]["source"], "digest", "{dns}");

    let m = exporter.metrics();
    for env in ["lab", "dns"] {
        let latency = metric(
            &m,
            "tfdrift_detection_delay_seconds",
            &[("environment", env)],
        );
        assert!(
            latency.is_some_and(|s| s > 0.0 && s < 90.0),
            "{env}: {latency:?}"
        );
    }
    assert_eq!(
        metric(
            &m,
            "tfdrift_scan_triggers_total",
            &[("environment", "lab"), ("trigger", "proxmox")]
        ),
        Some(1.0),
        "one scan for one edit (its digest is no second signal): {m}"
    );
    for source in ["cluster_log", "digest"] {
        assert!(
            metric(&m, "tfdrift_change_signals_total", &[("source", source)])
                .is_some_and(|n| n >= 1.0),
            "{source}: {m}"
        );
    }
    eprintln!(
        "edit to Telegram: qemu {vm_seconds} s, LXC {lxc_seconds} s; VM made by hand in /unmanaged after {unmanaged_seconds} s"
    );
}

/// A change by Terraform's own token is an apply: the scan waits until the token has been
/// quiet, so that it follows the apply instead of meeting its state lock (the apply here
/// holds it for 20 s; lock_timeout is 5 s). No drift, no state_lock error, one scan.
#[test]
fn an_apply_is_followed_by_one_scan_without_drift_or_lock_error() {
    let Some(site) = Site::new() else { return };
    let server = Server::in_process(&site.config("lock_timeout = \"5s\"\n"));
    ready(&server);
    let code = homelab_code(site.sim.url(), TERRAFORM, site.sim.ca(), "")
        .replace("memory = 2048", "memory = 4096")
        + "resource \"terraform_data\" \"slow\" {\n  triggers_replace = [pvesim_vm.web.memory]\n  provisioner \"local-exec\" {\n    command = \"sleep 20\"\n  }\n}\n";
    site.write("lab", &code);
    let applied = Instant::now();
    site.apply("lab");
    assert!(applied.elapsed() >= Duration::from_secs(20));
    let report = server.wait_report("lab", Duration::from_secs(90), |r| !r["id"].is_null());
    assert_eq!(report["status"], "conform", "{report}");
    assert_eq!(report["trigger"]["kind"], "proxmox", "{report}");
    assert!(
        report["trigger"]["signals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["by_terraform"] == true),
        "{report}"
    );
    // Nothing else comes: no second scan, no drift, no error (signals are handed over
    // within 15 s of a read).
    std::thread::sleep(Duration::from_secs(15));
    let reports = history(&server, "lab");
    assert_eq!(reports.len(), 1, "{reports:#?}");
}

/// 200 edits of one VM within a minute are at most two scans of its environment: a burst
/// waits for its end (at most 45 s), and what came during a scan is one scan after it.
#[test]
fn two_hundred_edits_within_a_minute_are_at_most_two_scans() {
    let Some(site) = Site::new() else { return };
    let server = Server::in_process(&site.config(""));
    ready(&server);
    let started = Instant::now();
    for i in 0..200u64 {
        site.by_hand(
            "PUT",
            "/nodes/pve1/qemu/120/config",
            json!({"memory": 3072 + 8 * (i % 2)}),
        );
        let due = Duration::from_millis(300 * (i + 1));
        std::thread::sleep(due.saturating_sub(started.elapsed()));
    }
    assert!(started.elapsed() < Duration::from_secs(62));
    server.wait_report("lab", Duration::from_secs(60), |r| r["status"] == "drift");
    // The burst ended at about 60 s: its last signals are handed over at the first quiet
    // read (within 15 s) and scanned; a third scan would have started by about 90 s.
    std::thread::sleep(Duration::from_secs(35));
    let scans = history(&server, "lab").len();
    assert!((1..=2).contains(&scans), "{scans} scans");
    assert!(
        history(&server, "dns").is_empty(),
        "dns manages no edited guest"
    );
}

/// The cluster log blinded by one logged backslash (HTTP 500 until the line leaves the
/// ring): the qemu edit is still a signal through its digest, the drift is found, and who
/// made it is null with the reason, never nobody.
#[test]
fn a_blinded_cluster_log_still_signals_through_digests() {
    let Some(site) = Site::new() else { return };
    let server = Server::in_process(&site.config(""));
    ready(&server);
    site.sim
        .cluster
        .audit
        .log("pve1", "root@pam", "update VM 999: -description C:\\xtemp");
    site.by_hand(
        "PUT",
        "/nodes/pve1/qemu/120/config",
        json!({"memory": 3072}),
    );
    let report = server.wait_report("lab", Duration::from_secs(90), |r| r["status"] == "drift");
    assert_eq!(
        report["trigger"]["signals"][0]["source"], "digest",
        "{report}"
    );
    assert!(report["changes"][0]["changed_by"].is_null(), "{report}");
    assert_eq!(report["attribution_error"], "api", "{report}");
}

/// The API down: the schedule goes on, the failure is one metric and one log line, not
/// one per read.
#[test]
fn the_api_down_leaves_the_schedule_going_and_says_it_once() {
    if !have_terraform() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("plain");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("main.tf"),
        "resource \"terraform_data\" \"x\" {\n  input = 1\n}\n",
    )
    .unwrap();
    crate::support::terraform(
        &ws,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    std::fs::write(root.path().join("pve-token"), "secret").unwrap();
    let closed = free_port();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = \"state\"\n[defaults]\ninterval = \"2s\"\njitter = \"0s\"\n\
             [proxmox]\napi_url = \"https://127.0.0.1:{closed}\"\ntoken_id = \"tfdrift@pve!ci\"\ntoken_secret_file = \"pve-token\"\ninsecure = true\n\
             attribution_interval = \"1s\"\ndigest_interval = \"1s\"\n\
             [environments.plain]\ndir = \"plain\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&config);
    std::thread::sleep(Duration::from_secs(15));
    let scans = history(&server, "plain").len();
    assert!(scans >= 4, "{scans} scans in 15 s with a 2 s schedule");
    let m = server.metrics();
    assert_eq!(
        metric(
            &m,
            "tfdrift_attribution_error",
            &[("reason", "connectivity")]
        ),
        Some(1.0),
        "{m}"
    );
    let logged = server.logged();
    let said = logged
        .iter()
        .filter(|l| l.contains("attribution unavailable"))
        .count();
    assert_eq!(said, 1, "{logged:#?}");
    let digests = logged
        .iter()
        .filter(|l| l.contains("config digests"))
        .count();
    assert!(digests <= 1, "{logged:#?}");
}
