//! Guests created outside Terraform: the simulated Proxmox API (tests/pvesim, HTTPS with a
//! CA generated here) holds guests created through its API, and real terraform reads the
//! states of three environments (`state pull`, no provider needed) written here in the
//! shapes of both Proxmox providers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proxmox::{Sim, TOKEN};
use crate::server::{Server, metric};
use crate::support::{have_terraform, run};

/// A state (format 4) holding `resources`: (module, type, name, attributes).
fn state(resources: &[(Option<&str>, &str, &str, Value)]) -> String {
    let provider = |t: &str| {
        if t.starts_with("proxmox_virtual_environment") || t == "proxmox_vm" {
            "provider[\"registry.terraform.io/bpg/proxmox\"]"
        } else {
            "provider[\"registry.terraform.io/telmate/proxmox\"]"
        }
    };
    let resources: Vec<Value> = resources
        .iter()
        .map(|(module, t, name, attributes)| {
            let mut r = json!({
                "mode": "managed", "type": t, "name": name, "provider": provider(t),
                "instances": [{"schema_version": 0, "attributes": attributes, "sensitive_attributes": []}]
            });
            if let Some(m) = module {
                r["module"] = json!(m);
            }
            r
        })
        .collect();
    serde_json::to_string_pretty(&json!({
        "version": 4, "terraform_version": "1.11.4", "serial": 3,
        "lineage": "5b0c3c57-1c43-4f5e-9d7e-9b1f0e9a1e11", "outputs": {}, "resources": resources
    }))
    .unwrap()
}

/// The homelab: a simulated cluster and prod (bpg), lab (Telmate) and monitoring (bpg's
/// short spelling, in a module) with local states.
struct Cluster {
    root: tempfile::TempDir,
    sim: Sim,
}

impl Cluster {
    fn new() -> Option<Cluster> {
        if !have_terraform() {
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let sim = Sim::start(root.path());
        let c = Cluster { root, sim };
        for (node, kind, body) in [
            ("pve1", "qemu", json!({"vmid": 100, "name": "web"})),
            ("pve1", "lxc", json!({"vmid": 101, "hostname": "dns"})),
            ("pve2", "qemu", json!({"vmid": 110, "name": "db"})),
            ("pve2", "lxc", json!({"vmid": 111, "hostname": "cache"})),
            ("pve1", "qemu", json!({"vmid": 120, "name": "grafana"})),
            // Not guests of anybody's: a template, and a sandbox tagged as unmanaged on purpose.
            (
                "pve1",
                "qemu",
                json!({"vmid": 9000, "name": "debian-12", "template": 1}),
            ),
            (
                "pve1",
                "qemu",
                json!({"vmid": 9100, "name": "sandbox", "tags": "scratch;unmanaged"}),
            ),
        ] {
            c.create(node, kind, body);
        }
        c.write_state(
            "prod",
            &state(&[
                (
                    None,
                    "proxmox_virtual_environment_vm",
                    "web",
                    json!({"id": "100", "vm_id": 100, "node_name": "pve1"}),
                ),
                (
                    None,
                    "proxmox_virtual_environment_container",
                    "dns",
                    json!({"id": "101", "vm_id": 101, "node_name": "pve1"}),
                ),
            ]),
        );
        c.write_state(
            "lab",
            &state(&[
                (
                    None,
                    "proxmox_vm_qemu",
                    "db",
                    json!({"id": "pve2/qemu/110", "vmid": 110, "target_node": "pve2"}),
                ),
                (
                    None,
                    "proxmox_lxc",
                    "cache",
                    json!({"id": "pve2/lxc/111", "vmid": 111, "target_node": "pve2"}),
                ),
            ]),
        );
        c.write_state(
            "monitoring",
            &state(&[(
                Some("module.grafana"),
                "proxmox_vm",
                "this",
                json!({"id": "120", "vm_id": 120, "node_name": "pve1"}),
            )]),
        );
        std::fs::write(c.root.path().join("pve-token"), format!("{}\n", secret())).unwrap();
        Some(c)
    }

    /// Creates a guest "by hand", as the Proxmox UI does: through the API.
    fn create(&self, node: &str, kind: &str, body: Value) {
        assert_eq!(
            self.sim
                .call("POST", &format!("/nodes/{node}/{kind}"), Some(body)),
            200
        );
    }

    fn write_state(&self, env: &str, state: &str) {
        let dir = self.root.path().join("envs").join(env);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.tf"), "terraform {}\n").unwrap();
        std::fs::write(dir.join("terraform.tfstate"), state).unwrap();
    }

    /// The exporter's configuration: the three environments, `[proxmox]` with `proxmox`
    /// appended (defaults: this simulator, its CA, the token file).
    fn config(&self, proxmox: &str) -> PathBuf {
        let path = self.root.path().join("config.toml");
        let mut text = String::from(
            "[storage]\npath = \"storage\"\n[defaults]\ninterval = \"1h\"\njitter = \"0s\"\nkill_grace = \"2s\"\nrun_on_start = false\n",
        );
        for env in ["prod", "lab", "monitoring"] {
            text.push_str(&format!("[environments.{env}]\ndir = \"envs/{env}\"\n"));
        }
        // Keys first, then any sub-tables ([proxmox.ignore]) as written.
        let (keys, tables) = match proxmox
            .find("\n[")
            .map(|i| i + 1)
            .or(proxmox.starts_with('[').then_some(0))
        {
            Some(i) => (&proxmox[..i], &proxmox[i..]),
            None => (proxmox, ""),
        };
        let mut settings: Vec<String> = keys.lines().map(str::to_owned).collect();
        for (key, default) in [
            ("api_url", format!("{:?}", self.sim.url())),
            ("token_id", "\"tfdrift@pve!ci\"".to_owned()),
            ("token_secret_file", "\"pve-token\"".to_owned()),
            (
                "ca_file",
                format!("{:?}", self.sim.ca().display().to_string()),
            ),
        ] {
            let overridden = settings.iter().any(|l| l.starts_with(&format!("{key} ")));
            let dropped = settings.iter().any(|l| l == &format!("-{key}"));
            if !overridden && !dropped {
                settings.push(format!("{key} = {default}"));
            }
        }
        settings.retain(|l| !l.starts_with('-'));
        text.push_str(&format!("[proxmox]\n{}\n{tables}\n", settings.join("\n")));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `unmanaged --format json`: (exit code, the result, stderr).
    fn unmanaged(&self, proxmox: &str) -> (i32, Value, String) {
        unmanaged_json(&self.config(proxmox))
    }

    fn storage(&self) -> PathBuf {
        self.root.path().join("storage")
    }
}

/// `unmanaged --format json --config CONFIG`: (exit code, the result, stderr).
fn unmanaged_json(config: &std::path::Path) -> (i32, Value, String) {
    let (code, stdout, stderr) = run(&[
        "unmanaged",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ]);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, v, stderr)
}

/// The secret part of the simulator's token.
fn secret() -> &'static str {
    TOKEN.split_once('=').unwrap().1
}

fn vmids(result: &Value) -> Vec<u64> {
    result["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["vmid"].as_u64().unwrap())
        .collect()
}

#[test]
fn exactly_the_guests_missing_from_every_state_are_reported() {
    let Some(c) = Cluster::new() else { return };
    let ignore = "[proxmox.ignore]\ntags = [\"unmanaged\"]";
    let (code, r, stderr) = c.unmanaged(ignore);
    assert_eq!((code, vmids(&r)), (0, vec![]), "all managed: {r}\n{stderr}");
    assert_eq!(r["inventory"], 6, "the template is not a guest: {r}");
    assert_eq!(r["ignored"], 1, "{r}");

    // Made by hand: a VM, and a container whose node is offline (no name, status unknown).
    c.create("pve1", "qemu", json!({"vmid": 150, "name": "web2"}));
    c.create("pve3", "lxc", json!({"vmid": 151, "status": "unknown"}));
    let (code, r, stderr) = c.unmanaged(ignore);
    assert_eq!(code, 2, "{r}\n{stderr}");
    assert_eq!(vmids(&r), [150, 151]);
    let mut made = r["guests"][0].clone();
    let created = made
        .as_object_mut()
        .unwrap()
        .remove("created_at")
        .unwrap_or_default();
    assert_eq!(
        made,
        json!({"vmid": 150, "name": "web2", "node": "pve1", "kind": "qemu", "status": "running", "tags": []})
    );
    assert!(created.is_string(), "a VM says when it was made: {r}");
    assert!(
        r["guests"][1].get("created_at").is_none(),
        "a container's config has no creation time: {r}"
    );
    assert_eq!(r["guests"][1]["name"], Value::Null);
    assert_eq!(r["guests"][1]["kind"], "lxc");
    assert_eq!(r["guests"][1]["status"], "unknown");
    assert_eq!(r["error"], Value::Null);
    assert!(r["checked_at"].as_str().unwrap().ends_with('Z'), "{r}");
    assert_eq!(
        r["providers"],
        json!({"prod": "bpg/proxmox", "lab": "telmate/proxmox", "monitoring": "bpg/proxmox"})
    );

    // Without the ignore rule the tagged sandbox is reported too; a vmid range hides it again.
    let (_, r, _) = c.unmanaged("");
    assert_eq!(vmids(&r), [150, 151, 9100]);
    let (_, r, _) = c.unmanaged("[proxmox.ignore]\nvmids = [\"9000-9199\"]\nnames = [\"web?\"]");
    assert_eq!(vmids(&r), [151], "{r}");

    // Text for people, same exit code.
    let config = c.config(ignore);
    let (code, text, _) = run(&["unmanaged", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        text.contains("web2") && text.contains("151") && text.contains("unknown"),
        "{text}"
    );

    // reconcile prints the import blocks in the provider's own id format of each environment.
    let (code, lab, stderr) = run(&["reconcile", "--config", config.to_str().unwrap(), "lab"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        lab.contains("import {\n  to = proxmox_vm_qemu.web2\n  id = \"pve1/qemu/150\"\n}")
            && lab.contains("import {\n  to = proxmox_lxc.ct_151\n  id = \"pve3/lxc/151\"\n}")
            && lab.contains("-generate-config-out=generated.tf"),
        "{lab}"
    );
    let (_, prod, _) = run(&["reconcile", "--config", config.to_str().unwrap(), "prod"]);
    assert!(
        prod.contains("to = proxmox_virtual_environment_vm.web2\n  id = \"pve1/150\"")
            && prod
                .contains("to = proxmox_virtual_environment_container.ct_151\n  id = \"pve3/151\""),
        "{prod}"
    );

    // Adopted (the guests now in lab's state): none left.
    c.write_state(
        "lab",
        &state(&[
            (
                None,
                "proxmox_vm_qemu",
                "db",
                json!({"id": "pve2/qemu/110", "vmid": 110}),
            ),
            (
                None,
                "proxmox_lxc",
                "cache",
                json!({"id": "pve2/lxc/111", "vmid": 111}),
            ),
            (
                None,
                "proxmox_vm_qemu",
                "web2",
                json!({"id": "pve1/qemu/150", "vmid": 150}),
            ),
            (
                None,
                "proxmox_lxc",
                "ct_151",
                json!({"id": "pve3/lxc/151", "vmid": 0}),
            ),
        ]),
    );
    let (code, r, _) = c.unmanaged(ignore);
    assert_eq!((code, vmids(&r)), (0, vec![]), "{r}");
}

#[test]
fn tls_token_and_empty_inventory_failures_are_named() {
    let Some(c) = Cluster::new() else { return };
    let reason = |r: &Value| r["error"]["reason"].as_str().unwrap_or("").to_owned();

    // The right CA works; an unknown CA is a connectivity failure naming the fix.
    let other = tempfile::tempdir().unwrap();
    let stranger = Sim::start(other.path());
    let ca = format!("ca_file = {:?}", stranger.ca().display().to_string());
    let (code, r, _) = c.unmanaged(&ca);
    assert_eq!((code, reason(&r).as_str()), (1, "connectivity"), "{r}");
    assert!(
        r["error"]["summary"]
            .as_str()
            .unwrap()
            .contains("unknown authority"),
        "{r}"
    );
    // insecure = true skips verification (never the default).
    // (The tagged sandbox is reported: no ignore rule here.)
    let (code, r, _) = c.unmanaged("-ca_file\ninsecure = true");
    assert_eq!((code, r["error"].clone()), (2, Value::Null), "{r}");
    assert_eq!(vmids(&r), [9100]);

    // A wrong secret is auth, and the secret never shows.
    std::fs::write(c.root.path().join("wrong-token"), "not-the-secret\n").unwrap();
    let (code, r, stderr) = c.unmanaged("token_secret_file = \"wrong-token\"");
    assert_eq!((code, reason(&r).as_str()), (1, "auth"), "{r}");
    assert!(
        r["error"]["summary"]
            .as_str()
            .unwrap()
            .contains("401 authentication failure"),
        "{r}"
    );
    assert!(!r.to_string().contains("not-the-secret") && !stderr.contains("not-the-secret"));

    // A missing secret file is config, naming the key.
    let (code, r, _) = c.unmanaged("token_secret_file = \"missing\"");
    assert_eq!((code, reason(&r).as_str()), (1, "config"), "{r}");
    assert!(
        r["error"]["summary"]
            .as_str()
            .unwrap()
            .contains("proxmox.token_secret_file"),
        "{r}"
    );

    // The secret from a variable.
    let config = c.config("-token_secret_file\ntoken_secret_env = \"PVE_TOKEN_SECRET\"");
    let out = crate::support::bin()
        .args(["unmanaged", "--config", config.to_str().unwrap()])
        .env("PVE_TOKEN_SECRET", secret())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The API stopped: connectivity.
    drop(stranger);
    let (code, r, _) = c.unmanaged("api_url = \"https://127.0.0.1:1\"");
    assert_eq!((code, reason(&r).as_str()), (1, "connectivity"), "{r}");

    // An empty inventory (a token without VM.Audit sees nothing) is an error unless allowed.
    let empty = tempfile::tempdir().unwrap();
    let bare = Sim::start(empty.path());
    bare.cluster.tokens.lock().unwrap().insert(TOKEN.to_owned());
    let at_bare = format!(
        "api_url = {:?}\nca_file = {:?}",
        bare.url(),
        bare.ca().display().to_string()
    );
    let (code, r, _) = c.unmanaged(&at_bare);
    assert_eq!((code, reason(&r).as_str()), (1, "auth"), "{r}");
    assert!(
        r["error"]["summary"].as_str().unwrap().contains("VM.Audit"),
        "{r}"
    );
    let (code, r, _) = c.unmanaged(&format!("{at_bare}\nallow_empty_inventory = true"));
    assert_eq!((code, r["guests"].clone()), (0, json!([])), "{r}");
}

#[test]
fn a_state_that_cannot_be_read_fails_the_check_instead_of_reporting_every_guest() {
    let Some(c) = Cluster::new() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // lab's state moved to an S3 backend that does not answer.
    std::fs::remove_file(c.root.path().join("envs/lab/terraform.tfstate")).unwrap();
    std::fs::write(
        c.root.path().join("envs/lab/main.tf"),
        crate::real_terraform::S3_BACKEND.replace("PORT", &port.to_string()),
    )
    .unwrap();
    let (code, r, stderr) = c.unmanaged("");
    assert_eq!(code, 1, "{r}\n{stderr}");
    assert_eq!(r["error"]["reason"], "state", "{r}");
    let summary = r["error"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("environment lab") && summary.contains("connection refused"),
        "{summary}"
    );
    assert_eq!(
        r["guests"],
        json!([]),
        "nothing is reported as unmanaged: {r}"
    );
}

/// Polls `GET /unmanaged` until `done`.
fn wait_unmanaged(server: &Server, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, v) = server.get_json("/unmanaged");
        if status == 200 && done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "not within {limit:?}: {status} {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_exporter_reports_a_vm_made_by_hand_within_one_check_interval() {
    let Some(c) = Cluster::new() else { return };
    let config = c.config("interval = \"2s\"\n[proxmox.ignore]\ntags = [\"unmanaged\"]");
    let server = Server::start(&config);
    let first = wait_unmanaged(&server, Duration::from_secs(30), |v| {
        v["checked_at"].is_string()
    });
    assert_eq!(first["guests"], json!([]), "{first}");
    let m = server.metrics();
    assert_eq!(
        metric(&m, "tfdrift_unmanaged_resources", &[("kind", "qemu")]),
        Some(0.0),
        "{m}"
    );

    // The mission's third manual change: a VM created in the Proxmox UI.
    c.create("pve1", "qemu", json!({"vmid": 150, "name": "web2"}));
    let made = Instant::now();
    let v = wait_unmanaged(&server, Duration::from_secs(30), |v| {
        !v["guests"].as_array().unwrap().is_empty()
    });
    let waited = made.elapsed();
    assert!(
        waited < Duration::from_secs(2 * 2 + 10),
        "reported after {waited:?}"
    );
    assert_eq!(vmids(&v), [150]);
    let created = v["guests"][0]["created_at"].as_str().unwrap_or_default();
    assert!(
        created.starts_with("20"),
        "when it was made, from the VM's config (meta ctime): {v}"
    );
    let m = server.metrics();
    assert_eq!(
        metric(&m, "tfdrift_unmanaged_resources", &[("kind", "qemu")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "tfdrift_unmanaged_resources", &[("kind", "lxc")]),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_unmanaged_resource_info",
            &[
                ("vmid", "150"),
                ("name", "web2"),
                ("node", "pve1"),
                ("kind", "qemu")
            ]
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        !m.contains("environment=\"lab\",vmid"),
        "no environment label on guests"
    );
    let (_, _, page) = server.request("GET", "/", None);
    assert!(
        page.contains("Guests outside Terraform") && page.contains("web2"),
        "{page}"
    );

    // reconcile reads what the exporter stored.
    let (code, out, _) = run(&["reconcile", "--config", config.to_str().unwrap(), "prod"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("to = proxmox_virtual_environment_vm.web2\n  id = \"pve1/150\""),
        "{out}"
    );

    // The token revoked: the check fails as auth, and the guest found before stays listed.
    assert_eq!(
        c.sim
            .call("DELETE", "/access/users/tfdrift@pve/token/ci", None),
        200
    );
    let v = wait_unmanaged(&server, Duration::from_secs(30), |v| v["error"].is_object());
    assert_eq!(v["error"]["reason"], "auth", "{v}");
    assert_eq!(vmids(&v), [150], "{v}");
    assert!(v["guests_checked_at"].is_string(), "{v}");
    let m = server.metrics();
    assert_eq!(
        metric(&m, "tfdrift_unmanaged_check_error", &[("reason", "auth")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "tfdrift_unmanaged_resources", &[("kind", "qemu")]),
        Some(1.0),
        "{m}"
    );
    assert!(!m.contains(secret()) && !v.to_string().contains(secret()));
    drop(server);

    // A restart serves the stored check before the next one (interval 1h: not due yet).
    let stored = c.storage().join("unmanaged.json");
    assert!(stored.is_file());
    assert_eq!(
        std::fs::metadata(&stored)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap(),
        0o600
    );
    let config = c.config("interval = \"1h\"\n[proxmox.ignore]\ntags = [\"unmanaged\"]");
    let server = Server::start(&config);
    let (status, v) = server.get_json("/unmanaged");
    assert_eq!(status, 200, "{v}");
    assert_eq!(vmids(&v), [150], "{v}");

    // Without [proxmox] the endpoint says so and no unmanaged series exist.
    drop(server);
    let plain = c.root.path().join("plain.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&plain, text.split("[proxmox]").next().unwrap()).unwrap();
    let server = Server::start(&plain);
    let (status, v) = server.get_json("/unmanaged");
    assert_eq!(status, 404, "{v}");
    assert!(!server.metrics().contains("tfdrift_unmanaged_resources{"));
}

/// The test provider copied as `terraform-provider-proxmox`: it then serves bpg/proxmox's
/// resource shape (`proxmox_virtual_environment_vm`: `vm_id`, `node_name`, `name`; import id
/// `<node>/<vmid>`). Returns the CLI configuration that loads it through `dev_overrides`.
fn bpg_provider(root: &std::path::Path) -> Option<PathBuf> {
    let built = crate::proxmox::provider_dir()?;
    let dir = root.join("bpg-provider");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        built.join("terraform-provider-pvesim"),
        dir.join("terraform-provider-proxmox"),
    )
    .unwrap();
    let rc = root.join("terraform.rc");
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  dev_overrides {{ \"registry.terraform.io/bpg/proxmox\" = \"{}\" }}\n  direct {{}}\n}}\n",
            dir.display()
        ),
    )
    .unwrap();
    Some(rc)
}

pub fn terraform_in(dir: &std::path::Path, rc: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", rc)
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "terraform {args:?}: {text}");
    text
}

#[test]
fn the_printed_import_block_adopts_the_vm_made_by_hand() {
    if !have_terraform() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let sim = Sim::start(root.path());
    let Some(rc) = bpg_provider(root.path()) else {
        return;
    };
    let ws = root.path().join("homelab");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("main.tf"),
        format!(
            "terraform {{\n  required_providers {{\n    proxmox = {{ source = \"bpg/proxmox\" }}\n  }}\n}}\n\
             provider \"proxmox\" {{\n  api_url = \"{}\"\n  token   = \"{TOKEN}\"\n  ca_file = \"{}\"\n}}\n\
             resource \"proxmox_virtual_environment_vm\" \"web\" {{\n  vm_id     = 100\n  node_name = \"pve1\"\n  name      = \"web\"\n}}\n",
            sim.url(),
            sim.ca().display()
        ),
    )
    .unwrap();
    terraform_in(
        &ws,
        &rc,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    std::fs::write(root.path().join("pve-token"), secret()).unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = \"storage\"\n[proxmox]\napi_url = \"{}\"\ntoken_id = \"tfdrift@pve!ci\"\n\
             token_secret_file = \"pve-token\"\nca_file = \"{}\"\n\
             [environments.homelab]\ndir = \"homelab\"\ninit = \"never\"\nenv = {{ TF_CLI_CONFIG_FILE = \"{}\" }}\n",
            sim.url(),
            sim.ca().display(),
            rc.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (code, out, err) = run(&["unmanaged", "--config", config]);
    assert_eq!(code, 0, "the applied VM is managed: {out}{err}");

    // Made by hand in the Proxmox UI.
    assert_eq!(
        sim.call(
            "POST",
            "/nodes/pve1/qemu",
            Some(json!({"vmid": 150, "name": "web2"}))
        ),
        200
    );
    let (code, out, err) = run(&["unmanaged", "--config", config, "--format", "json"]);
    assert_eq!(code, 2, "{out}{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(vmids(&r), [150]);
    assert_eq!(
        r["providers"]["homelab"], "bpg/proxmox",
        "read from the real state: {r}"
    );

    // The printed block, put in the code as printed, adopts the VM.
    let (code, guide, err) = run(&["reconcile", "--config", config, "homelab"]);
    assert_eq!(code, 0, "{err}");
    let start = guide.find("import {").unwrap_or_else(|| panic!("{guide}"));
    let end = start + guide[start..].find("\n}\n").unwrap() + 3;
    let block = &guide[start..end];
    assert_eq!(
        block,
        "import {\n  to = proxmox_virtual_environment_vm.web2\n  id = \"pve1/150\"\n}\n"
    );
    std::fs::write(ws.join("imports.tf"), block).unwrap();
    terraform_in(
        &ws,
        &rc,
        &[
            "plan",
            "-input=false",
            "-no-color",
            "-generate-config-out=generated.tf",
        ],
    );
    let generated = std::fs::read_to_string(ws.join("generated.tf")).unwrap();
    assert!(
        generated.contains("resource \"proxmox_virtual_environment_vm\" \"web2\"")
            && generated.contains("vm_id")
            && generated.contains("150")
            && generated.contains("\"web2\""),
        "{generated}"
    );
    terraform_in(
        &ws,
        &rc,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    let (code, out, err) = run(&["unmanaged", "--config", config]);
    assert_eq!(code, 0, "adopted: {out}{err}");
}

/// Regression: the check started `terraform state pull` in every environment at once
/// (200 environments, 200 processes), whatever `scheduler.max_concurrent_scans` said. A fake
/// terraform that sleeps in `state pull` and records when each starts and ends: nine
/// environments, a limit of 2, never more than 2 at once (and 2 reached: the limit is used).
#[test]
fn state_pulls_take_the_scans_concurrency_limit() {
    let Some(c) = Cluster::new() else { return };
    let log = c.root.path().join("pulls.log");
    let fake = c.root.path().join("fake-terraform");
    crate::support::script(
        &fake,
        &format!(
            "case \"$1 $2\" in\n\
             \"state pull\") echo start >> '{log}'; sleep 0.5; echo end >> '{log}'; cat terraform.tfstate 2>/dev/null; exit 0;;\n\
             version*) echo '{{\"terraform_version\":\"1.11.4\"}}'; exit 0;;\n\
             esac\nexit 0\n",
            log = log.display()
        ),
    );
    let mut extra = String::new();
    for i in 0..6 {
        let dir = c.root.path().join(format!("envs/e{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.tf"), "terraform {}\n").unwrap();
        extra.push_str(&format!("[environments.e{i}]\ndir = \"envs/e{i}\"\n"));
    }
    let config = c.config("");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[defaults]\n",
        &format!(
            "[scheduler]\nmax_concurrent_scans = 2\n[defaults]\nbinary = \"{}\"\ninit = \"never\"\n",
            fake.display()
        ),
    );
    std::fs::write(&config, format!("{text}{extra}")).unwrap();
    let (code, r, stderr) = unmanaged_json(&config);
    assert_eq!(r["error"], Value::Null, "{r}\n{stderr}");
    assert_eq!(code, 2, "the sandbox VM is unmanaged: {r}");
    let events = std::fs::read_to_string(&log).unwrap();
    let (mut running, mut most, mut pulls) = (0i32, 0i32, 0);
    for event in events.lines() {
        match event {
            "start" => {
                running += 1;
                pulls += 1;
            }
            _ => running -= 1,
        }
        most = most.max(running);
    }
    assert_eq!(pulls, 9, "one pull per environment: {events}");
    assert_eq!(
        most, 2,
        "at most max_concurrent_scans at once, and that many: {events}"
    );
}

#[test]
fn with_two_shards_shard_0_checks_once_over_every_shards_states() {
    use tfdrift_exporter::shard::Shard;
    let Some(c) = Cluster::new() else { return };
    let config = c.config("interval = \"2s\"\n[proxmox.ignore]\ntags = [\"unmanaged\"]");
    let elsewhere: Vec<&str> = ["prod", "lab", "monitoring"]
        .into_iter()
        .filter(|e| {
            !Shard {
                ordinal: 0,
                total: 2,
            }
            .owns(e)
        })
        .collect();
    assert!(
        !elsewhere.is_empty(),
        "shard 1 owns an environment, whose guests shard 0 must still see"
    );
    // Each replica its own storage.
    let second = c.root.path().join("config-1.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &second,
        text.replace("path = \"storage\"", "path = \"storage-1\""),
    )
    .unwrap();
    let shard = |config: &std::path::Path, ordinal: &str| {
        Server::start_with(config, "", &["--shard", ordinal, "--total-shards", "2"])
    };
    let (zero, one) = (shard(&config, "0"), shard(&second, "1"));
    let first = wait_unmanaged(&zero, Duration::from_secs(30), |v| {
        v["checked_at"].is_string()
    });
    assert_eq!(
        first["guests"],
        json!([]),
        "the guests of {elsewhere:?} (shard 1) are managed: {first}"
    );
    assert_eq!(first["error"], Value::Null, "{first}");

    c.create("pve1", "qemu", json!({"vmid": 150, "name": "web2"}));
    let v = wait_unmanaged(&zero, Duration::from_secs(30), |v| {
        !v["guests"].as_array().unwrap().is_empty()
    });
    assert_eq!(vmids(&v), [150]);

    let (status, body) = one.get_json("/unmanaged");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.to_string().contains("shard 0 only (this is shard 1)"),
        "{body}"
    );
    let m = one.metrics();
    assert!(
        !m.contains("tfdrift_unmanaged_resource") && !m.contains("tfdrift_unmanaged_last_check"),
        "shard 1 exports no unmanaged series: {m}"
    );
    assert!(
        !one.logged()
            .iter()
            .any(|l| l.contains("unmanaged-guest check finished")),
        "shard 1 never checks"
    );
    assert!(!c.root.path().join("storage-1/unmanaged.json").exists());

    // A change by hand of a guest of shard 1's environment is scanned by shard 1 alone,
    // which knows its guests from its own states (neither replica has scanned yet).
    let (guest, env) = if elsewhere.contains(&"lab") {
        ("/nodes/pve2/qemu/110/config", "lab")
    } else {
        ("/nodes/pve1/qemu/120/config", "monitoring")
    };
    assert_eq!(c.sim.call("PUT", guest, Some(json!({"memory": 4096}))), 200);
    let signalled = [("environment", env), ("trigger", "proxmox")];
    crate::chain::wait_until(
        "shard 1 scans on the change signal",
        Duration::from_secs(60),
        || {
            metric(&one.metrics(), "tfdrift_scan_triggers_total", &signalled)
                .is_some_and(|n| n >= 1.0)
        },
    );
    assert!(
        !zero.metrics().contains(&format!("environment=\"{env}\"")),
        "shard 0 knows nothing of {env}"
    );
}

#[test]
fn two_hundred_environments_never_run_more_terraform_at_once_than_the_limit() {
    let Some(c) = Cluster::new() else { return };
    let log = c.root.path().join("terraform.log");
    let fake = c.root.path().join("fake-terraform");
    // Every invocation logs its start and end; plans find nothing to change.
    crate::support::script(
        &fake,
        &format!(
            "echo \"start $1\" >> '{log}'\n\
             sleep 0.02\n\
             case \"$1 $2\" in\n\
             \"state pull\") cat terraform.tfstate 2>/dev/null;;\n\
             version*) echo '{{\"terraform_version\":\"1.11.4\"}}';;\n\
             plan*) for a in \"$@\"; do case \"$a\" in -out=*) : > \"${{a#-out=}}\";; esac; done; echo '{{\"type\":\"version\",\"terraform\":\"1.11.4\"}}'; echo '{{\"@level\":\"info\",\"@message\":\"Plan: 0 to add, 0 to change, 0 to destroy.\",\"type\":\"change_summary\",\"changes\":{{\"add\":0,\"change\":0,\"import\":0,\"remove\":0,\"operation\":\"plan\"}}}}';;\n\
             esac\n\
             echo end >> '{log}'\nexit 0\n",
            log = log.display()
        ),
    );
    let mut extra = String::new();
    for i in 0..197 {
        let dir = c.root.path().join(format!("envs/e{i:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.tf"), "terraform {}\n").unwrap();
        extra.push_str(&format!("[environments.e{i:03}]\ndir = \"envs/e{i:03}\"\n"));
    }
    let config = c.config("interval = \"1h\"\n[proxmox.ignore]\ntags = [\"unmanaged\"]");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[defaults]\n",
        &format!(
            "[scheduler]\nmax_concurrent_scans = 2\n[defaults]\nbinary = \"{}\"\ninit = \"never\"\n",
            fake.display()
        ),
    );
    // Scans at start and the check's 200 state pulls at once.
    let text = text.replace("run_on_start = false\n", "run_on_start = true\n");
    std::fs::write(&config, format!("{text}{extra}")).unwrap();
    let server = Server::start(&config);
    let checked = wait_unmanaged(&server, Duration::from_secs(120), |v| {
        v["checked_at"].is_string()
    });
    assert_eq!(checked["error"], Value::Null, "{checked}");
    assert_eq!(checked["guests"], json!([]), "{checked}");
    crate::chain::wait_until(
        "every environment scanned",
        Duration::from_secs(120),
        || {
            let m = server.metrics();
            m.lines()
                .filter(|l| l.starts_with("tfdrift_last_scan_timestamp_seconds{"))
                .count()
                == 200
        },
    );
    drop(server);
    let events = std::fs::read_to_string(&log).unwrap();
    let (mut running, mut most, mut pulls, mut plans) = (0i32, 0i32, 0, 0);
    for event in events.lines() {
        match event {
            "end" => running -= 1,
            start => {
                running += 1;
                pulls += i32::from(start == "start state");
                plans += i32::from(start == "start plan");
            }
        }
        most = most.max(running);
    }
    assert_eq!(pulls, 200, "one pull per environment");
    assert!(plans >= 200, "one scan per environment at least: {plans}");
    assert_eq!(
        most, 2,
        "never more terraform at once than max_concurrent_scans, and that many"
    );
}

#[test]
fn shard_0_checks_against_a_directory_another_shard_owns_as_soon_as_it_is_found() {
    use tfdrift_exporter::shard::Shard;
    let Some(c) = Cluster::new() else { return };
    let listed = c.config("interval = \"1s\"\n[proxmox.ignore]\ntags = [\"unmanaged\"]");
    // The three environments found under envs/ instead of listed, looked at every second.
    let text = std::fs::read_to_string(&listed).unwrap();
    let mut kept: Vec<&str> = Vec::new();
    let mut skip = false;
    for line in text.lines() {
        if line.starts_with("[environments.") {
            skip = true;
            continue;
        }
        if line.starts_with('[') {
            skip = false;
        }
        if !skip && !line.starts_with("dir = ") {
            kept.push(line);
        }
    }
    let config = c.root.path().join("discovered.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[discovery]\nroot = \"envs\"\ninclude = [\"*\"]\ninterval = \"1s\"\n",
            kept.join("\n")
        ),
    )
    .unwrap();
    let mut zero = Server::start_with(&config, "", &["--shard", "0", "--total-shards", "2"]);
    let first = wait_unmanaged(&zero, Duration::from_secs(30), |v| {
        v["checked_at"].is_string()
    });
    assert_eq!(first["guests"], json!([]), "{first}");

    // A new root module of shard 1's, managing a new VM.
    let name = (0..)
        .map(|i| format!("new{i}"))
        .find(|n| {
            !Shard {
                ordinal: 0,
                total: 2,
            }
            .owns(n)
        })
        .unwrap();
    c.write_state(
        &name,
        &state(&[(
            None,
            "proxmox_virtual_environment_vm",
            "new",
            json!({"id": "160", "vm_id": 160, "node_name": "pve1"}),
        )]),
    );
    c.create("pve1", "qemu", json!({"vmid": 160, "name": "new"}));
    let changed = zero.wait_log(
        "discovery: the environments changed",
        Duration::from_secs(30),
    );
    assert!(changed.contains(&name), "{changed}");
    // A check that began before the new configuration was applied may end a little
    // later: wait for one that ends well after.
    let fresh = chrono::Utc::now().timestamp() + 3;
    let after = wait_unmanaged(&zero, Duration::from_secs(30), |v| {
        v["checked_at"].as_str().is_some_and(|t| {
            chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|t| t.timestamp() >= fresh)
        })
    });
    assert_eq!(
        after["guests"],
        json!([]),
        "VM 160 is managed by {name}, which shard 0 never scans: {after}"
    );
    assert!(
        !zero.metrics().contains(&format!("environment=\"{name}\"")),
        "shard 0 does not scan it"
    );
}
