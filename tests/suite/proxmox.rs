//! Real drift: a simulated Proxmox VE API (tests/pvesim, in this process) and the
//! `terraform-provider-pvesim` provider that the real terraform loads through
//! `dev_overrides`. A change made "by hand" through the API is what terraform's refresh sees.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pvesim::client::Client;
use serde_json::{Value, json};

use crate::server::{Server, metric};
use crate::support::{have_terraform, skip};

pub const TOKEN: &str = "tfdrift@pve!ci=0d5f5a1e-sim-secret";

/// The directory of the provider binary: `PVESIM_PROVIDER_DIR` when set (`.ci/run` builds
/// it once before the tests), else built here once for a plain `cargo test` (into its own
/// target dir, so that the `cargo test` holding the main one is not waited for).
pub fn provider_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PVESIM_PROVIDER_DIR").map(PathBuf::from) {
            if dir.join("terraform-provider-pvesim").is_file() {
                return Some(dir);
            }
            skip(&format!(
                "PVESIM_PROVIDER_DIR={} holds no terraform-provider-pvesim",
                dir.display()
            ));
            return None;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target/pvesim");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--quiet", "-p", "pvesim", "--features", "provider"])
            .args(["--bin", "terraform-provider-pvesim", "--target-dir"])
            .arg(&target)
            .current_dir(root)
            .stdout(Stdio::null())
            .output();
        match built {
            Ok(out) if out.status.success() => Some(target.join("debug")),
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr).into_owned();
                skip(&format!(
                    "cannot build terraform-provider-pvesim (protoc missing?): {why}"
                ));
                None
            }
            Err(e) => {
                skip(&format!(
                    "cannot run cargo to build terraform-provider-pvesim: {e}"
                ));
                None
            }
        }
    })
    .clone()
}

/// A simulator running in this process; stopped when dropped.
pub struct Sim {
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
    ca: PathBuf,
    pub cluster: Arc<pvesim::Cluster>,
}

impl Sim {
    /// Starts a simulator whose CA certificate is written to `dir/pve-root-ca.pem`.
    pub fn start(dir: &Path) -> Sim {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cluster = Arc::new(pvesim::Cluster::default());
        cluster.tokens.lock().unwrap().insert(TOKEN.to_owned());
        let certs = pvesim::certificates().unwrap();
        let (running, _) = runtime
            .block_on(pvesim::serve("127.0.0.1:0", cluster.clone(), certs))
            .unwrap();
        let ca = dir.join("pve-root-ca.pem");
        std::fs::write(&ca, &running.ca_pem).unwrap();
        Sim {
            runtime: Some(runtime),
            url: format!("https://{}", running.address),
            ca,
            cluster,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// A change "by hand", as the Proxmox UI makes it: through the API.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> u16 {
        self.call_as(TOKEN, method, path, body)
    }

    /// The same with another token (`USER@REALM!ID=SECRET`, known to the cluster).
    pub fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> u16 {
        let client = Client::new(&self.url, token, Some(&self.ca)).unwrap();
        let runtime = self.runtime.as_ref().unwrap();
        runtime.block_on(client.call(method, path, body)).unwrap().0
    }

    /// The mission's manual change: 1 GB more RAM for VM 120, through the API.
    pub fn raise_memory_by_hand(&self) {
        let status = self.call(
            "PUT",
            "/nodes/pve1/qemu/120/config",
            Some(json!({"memory": 3072})),
        );
        assert_eq!(status, 200);
    }

    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CLI configuration under `root` that loads the test provider from `provider` through
/// `dev_overrides`.
pub fn dev_overrides(root: &Path, provider: &Path) -> PathBuf {
    let rc = root.join("terraform.rc");
    std::fs::write(
        &rc,
        format!("provider_installation {{\n  dev_overrides {{ \"example.local/test/pvesim\" = \"{}\" }}\n  direct {{}}\n}}\n", provider.display()),
    )
    .unwrap();
    rc
}

/// The provider block: the test provider reaching `url` with `token`, trusting `ca`.
pub fn provider_code(url: &str, token: &str, ca: &Path) -> String {
    format!(
        r#"terraform {{
  required_providers {{
    pvesim = {{ source = "example.local/test/pvesim" }}
  }}
}}
provider "pvesim" {{
  api_url = "{url}"
  token   = "{token}"
  ca_file = "{}"
}}
"#,
        ca.display()
    )
}

/// The homelab's code: the provider reaching `url` with `token` and trusting `ca`, VM 120
/// `web` (2048 MB, 2 cores), then `extra`.
pub fn homelab_code(url: &str, token: &str, ca: &Path, extra: &str) -> String {
    format!(
        r#"{}resource "pvesim_vm" "web" {{
  vmid   = 120
  node   = "pve1"
  name   = "web"
  memory = 2048
  cores  = 2
}}
{extra}"#,
        provider_code(url, token, ca)
    )
}

/// A homelab workspace with one VM, applied through the provider.
pub struct Homelab {
    pub root: tempfile::TempDir,
    pub sim: Sim,
    pub cli_config: PathBuf,
}

impl Homelab {
    pub fn new() -> Option<Homelab> {
        if !have_terraform() {
            return None;
        }
        let provider = provider_dir()?;
        let root = tempfile::tempdir().unwrap();
        let sim = Sim::start(root.path());
        let cli_config = dev_overrides(root.path(), &provider);
        let lab = Homelab {
            root,
            sim,
            cli_config,
        };
        lab.write_code(&lab.sim.ca.clone());
        lab.terraform(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        Some(lab)
    }

    pub fn ws(&self) -> PathBuf {
        self.root.path().join("ws")
    }

    fn write_code(&self, ca: &Path) {
        std::fs::create_dir_all(self.ws()).unwrap();
        let code = homelab_code(&self.sim.url, TOKEN, ca, "");
        std::fs::write(self.ws().join("main.tf"), code).unwrap();
    }

    fn terraform(&self, args: &[&str]) {
        self.terraform_in(&self.ws(), args);
    }

    /// Runs terraform in `dir` with the provider loaded through `dev_overrides`.
    pub fn terraform_in(&self, dir: &Path, args: &[&str]) {
        let out = Command::new("terraform")
            .args(args)
            .current_dir(dir)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "terraform {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A configuration whose environment `lab` uses the provider (no init: dev_overrides).
    fn config(&self, extra: &str) -> PathBuf {
        let path = self.root.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[storage]\npath = \"state\"\n[defaults]\ninterval = \"1h\"\nkill_grace = \"2s\"\ninit = \"never\"\n\
                 [environments.lab]\ndir = \"ws\"\nenv = {{ TF_CLI_CONFIG_FILE = \"{}\" }}\n{extra}\n",
                self.cli_config.display()
            ),
        )
        .unwrap();
        path
    }

    fn scan(&self, extra: &str) -> (i32, Value) {
        let config = self.config(extra);
        let (code, stdout, stderr) = crate::support::run(&[
            "scan",
            "--format",
            "json",
            "--config",
            config.to_str().unwrap(),
        ]);
        let reports: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
        (code, reports[0].clone())
    }
}

#[test]
fn memory_raised_by_hand_reaches_metrics_and_detail_as_drift_outside_terraform() {
    let Some(lab) = Homelab::new() else { return };
    let (code, r) = lab.scan("");
    assert_eq!(code, 0, "conform after apply: {r}");

    // The mission's test: 1 GB more RAM through the Proxmox API.
    lab.sim.raise_memory_by_hand();
    let config = lab.config("run_on_start = true");
    let server = Server::in_process(&config);
    // The restored conform scan shows first; the scan at start brings the drift.
    let detail = server.wait_detail(Duration::from_secs(60), |d| {
        d["environments"]["lab"]["status"] == "drift"
    });
    let report = &detail["environments"]["lab"];
    assert_eq!(report["status"], "drift", "{report}");
    assert_eq!(report["summary"]["outside_terraform"], 1);
    let change = &report["changes"][0];
    assert_eq!(change["address"], "pvesim_vm.web");
    assert_eq!(change["action"], "update");
    assert_eq!(change["outside_terraform"], true);
    assert_eq!(
        change["attributes"],
        json!([{"path": "memory", "actual": 3072, "expected": 2048}])
    );
    let m = server.metrics();
    assert_eq!(
        metric(&m, "tfdrift_status", &[("environment", "lab")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "tfdrift_outside_changes", &[("environment", "lab")]),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_resource_change_info",
            &[("address", "pvesim_vm.web"), ("outside_terraform", "true")]
        ),
        Some(1.0)
    );
    assert!(
        !m.contains("0d5f5a1e-sim-secret")
            && !server
                .request("GET", "/detail", None)
                .2
                .contains("0d5f5a1e-sim-secret")
    );
}

#[test]
fn a_vm_deleted_by_hand_is_a_create_outside_terraform_and_refresh_only_sees_it() {
    let Some(lab) = Homelab::new() else { return };
    assert_eq!(lab.sim.call("DELETE", "/nodes/pve1/qemu/120", None), 200);
    assert!(lab.sim.cluster.guests.lock().unwrap().is_empty());
    let (code, r) = lab.scan("");
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["changes"][0]["action"], "create");
    assert_eq!(r["changes"][0]["outside_terraform"], true);
    let (code, r) = lab.scan("refresh_only = true");
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["changes"][0]["address"], "pvesim_vm.web");
    assert_eq!(
        r["changes"][0]["action"], "delete",
        "refresh found the object gone"
    );
    assert_eq!(r["changes"][0]["outside_terraform"], true);
}

#[test]
fn refresh_only_drift_is_found_when_the_binary_exits_0_as_opentofu_does() {
    // OpenTofu exits 0 for a refresh-only plan with drift (opentofu#3107): a wrapper around
    // the real terraform that does the same. The stream's resource_drift decides.
    let Some(lab) = Homelab::new() else { return };
    let wrapper = lab.root.path().join("tofu-like");
    crate::support::script(
        &wrapper,
        "terraform \"$@\"; rc=$?\ncase \" $* \" in *\" -refresh-only \"*) [ $rc -eq 2 ] && exit 0;; esac\nexit $rc\n",
    );
    let binary = format!("refresh_only = true\nbinary = \"{}\"", wrapper.display());
    let (code, r) = lab.scan(&binary);
    assert_eq!(code, 0, "conform after apply: {r}");
    lab.sim.raise_memory_by_hand();
    let (code, r) = lab.scan(&binary);
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["status"], "drift");
    assert_eq!(r["changes"][0]["address"], "pvesim_vm.web");
    assert_eq!(
        r["changes"][0]["attributes"],
        json!([{"path": "memory", "actual": 3072, "expected": 2048}])
    );
}

#[test]
fn api_failures_are_classified() {
    let Some(mut lab) = Homelab::new() else {
        return;
    };
    // Another CA than the simulator's: the certificate cannot be verified.
    let other = lab.root.path().join("other-ca.pem");
    std::fs::write(&other, pvesim::certificates().unwrap().ca_pem).unwrap();
    lab.write_code(&other);
    let (code, r) = lab.scan("");
    assert_eq!(code, 1);
    assert_eq!(r["error"]["reason"], "connectivity", "{r}");
    assert!(
        r["error"]["summary"].as_str().unwrap().contains("x509"),
        "{r}"
    );
    lab.write_code(&lab.sim.ca.clone());

    // The token revoked (DELETE /access/users/{user}/token/{id}).
    assert_eq!(
        lab.sim
            .call("DELETE", "/access/users/tfdrift@pve/token/ci", None),
        200
    );
    let (code, r) = lab.scan("");
    assert_eq!(code, 1);
    assert_eq!(r["error"]["reason"], "auth", "{r}");
    assert!(
        r["error"]["summary"]
            .as_str()
            .unwrap()
            .contains("401 authentication failure"),
        "{r}"
    );

    // The simulator stopped: nothing listens any more.
    lab.sim.stop();
    let (code, r) = lab.scan("");
    assert_eq!(code, 1);
    assert_eq!(r["error"]["reason"], "connectivity", "{r}");
    assert!(
        r["error"]["summary"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{r}"
    );
    let text = r.to_string();
    assert!(
        !text.contains("0d5f5a1e-sim-secret"),
        "the token never shows: {text}"
    );
}

/// Terraform adds arguments from its environment: an operator's
/// `TF_CLI_ARGS_plan="-refresh=false"` would hide every change made by hand, and
/// `TF_CLI_ARGS="-destroy"` made every scan fail to parse its flags. The exporter's terraform
/// gets neither: the plan still refreshes (the drift is found) and the log says each
/// variable was ignored.
#[test]
fn arguments_from_the_exporters_environment_never_reach_terraform() {
    let Some(lab) = Homelab::new() else { return };
    lab.sim.raise_memory_by_hand();
    let config = lab.config("run_on_start = true");
    let server = Server::start_in_env(
        &config,
        "",
        &[],
        &[
            ("TF_CLI_ARGS_plan", "-refresh=false"),
            ("TF_CLI_ARGS", "-destroy"),
        ],
    );
    let detail = server.wait_detail(Duration::from_secs(60), |d| {
        !d["environments"]["lab"]["status"].is_null()
    });
    let report = &detail["environments"]["lab"];
    assert_eq!(report["status"], "drift", "refreshed: {report}");
    assert_eq!(
        report["changes"][0]["attributes"],
        json!([{"path": "memory", "actual": 3072, "expected": 2048}])
    );
    let logged = server.logged();
    for variable in ["TF_CLI_ARGS_plan", "TF_CLI_ARGS"] {
        let said = logged
            .iter()
            .filter(|l| {
                l.contains("ignored: terraform never gets")
                    && l.contains(&format!("variable={variable}"))
                    && !l.contains(&format!("variable={variable}_"))
            })
            .count();
        assert_eq!(said, 1, "{variable}: {logged:#?}");
    }
}

/// An environment's `env` that sets such a variable is refused at load, naming the key; an
/// `env_files` line that does fails the scan with `config`, naming the file and line.
#[test]
fn an_environment_that_sets_terraform_arguments_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[environments.lab]\ndir = \".\"\nenv = { TF_CLI_ARGS_plan = \"-refresh=false\" }\n",
    )
    .unwrap();
    let (code, _, stderr) =
        crate::support::run(&["check-config", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("environments.lab.env") && stderr.contains("TF_CLI_ARGS_plan"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("main.tf"), "").unwrap();
    std::fs::write(
        dir.path().join("lab.env"),
        "PM_USER=x\nTF_CLI_ARGS=-destroy\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        "[storage]\npath = \"state\"\n[environments.lab]\ndir = \".\"\nenv_files = [\"lab.env\"]\n",
    )
    .unwrap();
    let (_, stdout, stderr) = crate::support::run(&[
        "scan",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let report = &report[0];
    assert_eq!(report["error"]["reason"], "config", "{report}");
    let summary = report["error"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("lab.env:2") && summary.contains("TF_CLI_ARGS"),
        "{summary}"
    );
}
