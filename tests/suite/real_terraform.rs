//! Scans with real terraform (1.11.4 on these machines) against workspaces made here with
//! the built-in `terraform_data` resource and local or S3 backends.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Workspace, have_terraform, process_with_env, terraform};

pub const VM: &str = r#"
resource "terraform_data" "vm" {
  input = { name = "web", memory = 2048, cores = 2 }
}
"#;

/// A workspace whose `terraform_data.vm` has been applied.
pub fn applied_vm() -> Workspace {
    let w = Workspace::new(VM);
    terraform(
        &w.ws(),
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    w
}

/// Edits the local state the way a manual change in Proxmox shows up after refresh: the
/// recorded object no longer has what the code says (memory raised to 3072).
pub fn raise_memory_in_state(ws: &Path) {
    let path = ws.join("terraform.tfstate");
    let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let attrs = &mut state["resources"][0]["instances"][0]["attributes"];
    attrs["input"]["value"]["memory"] = json!(3072);
    attrs["output"]["value"]["memory"] = json!(3072);
    let serial = state["serial"].as_u64().unwrap();
    state["serial"] = json!(serial + 1);
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
}

fn leftover_plan_dirs(storage: &Path) -> Vec<String> {
    std::fs::read_dir(storage.join("envs/lab"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("plan-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_conforming_workspace_scans_conform_and_is_stored() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    let config = w.config("");
    let (code, r, stderr, _) = w.scan(&config);
    assert_eq!(code, 0, "{r}\n{stderr}");
    assert_eq!(r["status"], "conform");
    assert_eq!(r["environment"], "lab");
    assert_eq!(
        r["tool"],
        json!({"binary": "terraform", "version": "1.11.4"})
    );
    assert_eq!(r["error"], Value::Null);
    let id = r["id"].as_str().unwrap();
    assert!(id.starts_with("lab-2"), "{id}");
    let stored = w.storage().join(format!("envs/lab/history/{id}.json"));
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(stored).unwrap()).unwrap();
    assert_eq!(stored, r, "the history holds the printed report");
    assert!(
        !w.ws().join(".terraform").exists(),
        "the operator's .terraform/ is never touched"
    );
    assert!(
        w.storage().join("envs/lab/tf-data").is_dir(),
        "TF_DATA_DIR is under the storage path"
    );
    assert!(
        leftover_plan_dirs(&w.storage()).is_empty(),
        "the private plan directory is removed"
    );
    let mode = std::fs::metadata(w.storage().join("envs/lab"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_manual_change_is_drift_with_the_exact_attribute() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    raise_memory_in_state(&w.ws());
    let config = w.config("");
    let (code, r, stderr, _) = w.scan(&config);
    assert_eq!(code, 2, "{r}\n{stderr}");
    assert_eq!(r["status"], "drift");
    assert_eq!(r["summary"]["update"], 1);
    let change = &r["changes"][0];
    assert_eq!(change["address"], "terraform_data.vm");
    assert_eq!(change["action"], "update");
    assert_eq!(
        change["attributes"][0],
        json!({"path": "input.memory", "actual": 3072, "expected": 2048})
    );
    assert_eq!(change["attributes"][1]["path"], "output");
    assert_eq!(change["attributes"][1]["expected"], "(known after apply)");
    assert!(leftover_plan_dirs(&w.storage()).is_empty());

    // Text for people, same exit code.
    let (code, out, _) = crate::support::run(&["scan", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        out.contains("input.memory") && out.contains("3072 -> 2048"),
        "{out}"
    );
}

#[test]
fn only_allow_listed_subcommands_ever_run() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    let log = w.root.path().join("argv.log");
    let wrapper = w.root.path().join("terraform-wrapper");
    crate::support::script(
        &wrapper,
        &format!(
            "printf '%s\\n' \"$*\" >> '{}'\nexec terraform \"$@\"\n",
            log.display()
        ),
    );
    let config = w.config(&format!(
        "binary = \"{}\"\ninit = \"always\"\nvar_files = []\n",
        wrapper.display()
    ));
    assert_eq!(w.scan(&config).0, 0);
    raise_memory_in_state(&w.ws());
    assert_eq!(w.scan(&config).0, 2);

    let calls = std::fs::read_to_string(&log).unwrap();
    let subcommands: Vec<&str> = calls
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        subcommands,
        ["init", "plan", "init", "plan", "show"],
        "{calls}"
    );
    for line in calls.lines() {
        assert!(
            [
                "init -input=false -no-color -lockfile=readonly",
                "plan -input=false -no-color -json -detailed-exitcode -lock-timeout=60s -out=",
                "show -json "
            ]
            .iter()
            .any(|prefix| line.starts_with(prefix)),
            "unexpected command line: {line}"
        );
        for forbidden in [
            "apply",
            "destroy",
            "import",
            "refresh ",
            "force-unlock",
            "taint",
            "state push",
            "state rm",
            "state mv",
        ] {
            assert!(!line.contains(forbidden), "{line}");
        }
    }
}

#[test]
fn init_runs_only_when_needed() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    let log = w.root.path().join("argv.log");
    let wrapper = w.root.path().join("terraform-wrapper");
    crate::support::script(
        &wrapper,
        &format!(
            "echo \"$1\" >> '{}'\nexec terraform \"$@\"\n",
            log.display()
        ),
    );
    let config = w.config(&format!("binary = \"{}\"", wrapper.display()));
    for _ in 0..3 {
        assert_eq!(w.scan(&config).0, 0);
    }
    // The backend settings change: init again.
    std::fs::write(w.ws().join("backend.hcl"), "path = \"terraform.tfstate\"\n").unwrap();
    let config = w.config(&format!(
        "binary = \"{}\"\nbackend_config = [\"backend.hcl\"]",
        wrapper.display()
    ));
    assert_eq!(w.scan(&config).0, 0);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["init", "plan", "plan", "plan", "init", "plan"]
    );
}

#[test]
fn a_lock_held_by_a_waiting_apply_is_state_lock() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    raise_memory_in_state(&w.ws());
    // A person's `terraform apply` waiting at its confirmation prompt holds the lock.
    let mut apply = Command::new("terraform")
        .args(["apply", "-no-color"])
        .current_dir(w.ws())
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(apply.stdout.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("Enter a value") && Instant::now() < deadline {
        let mut buf = Vec::new();
        // The prompt has no newline: read up to its colon.
        if out.read_until(b':', &mut buf).unwrap() == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf));
    }
    assert!(
        seen.contains("Enter a value"),
        "apply reached its prompt: {seen}"
    );

    let config = w.config("lock_timeout = \"2s\"");
    let (code, r, stderr, elapsed) = w.scan(&config);
    let _ = apply.kill();
    let _ = apply.wait();
    assert_eq!(code, 1, "{r}\n{stderr}");
    assert_eq!(r["error"]["reason"], "state_lock", "{r}");
    assert!(
        r["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("OperationTypeApply"),
        "{r}"
    );
    assert!(
        elapsed < Duration::from_secs(2 + 10),
        "within lock_timeout plus a few seconds: {elapsed:?}"
    );
}

pub const S3_BACKEND: &str = r#"
terraform {
  backend "s3" {
    bucket                      = "tfstate"
    key                         = "env/lab/terraform.tfstate"
    region                      = "us-east-1"
    endpoints                   = { s3 = "http://127.0.0.1:PORT" }
    access_key                  = "minioadmin"
    secret_key                  = "minioadmin"
    use_path_style              = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
    skip_s3_checksum            = true
    max_retries                 = 1
  }
}
resource "terraform_data" "x" {
  input = "a"
}
"#;

#[test]
fn an_s3_backend_on_a_closed_port_is_state_backend() {
    if !have_terraform() {
        return;
    }
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again here
    let w = Workspace::new(&S3_BACKEND.replace("PORT", &port.to_string()));
    let config = w.config("timeout = \"2m\"");
    let (code, r, stderr, _) = w.scan(&config);
    assert_eq!(code, 1, "{r}\n{stderr}");
    assert_eq!(r["error"]["reason"], "state_backend", "{r}");
    let text = format!("{}{}", r["error"]["summary"], r["error"]["detail"]);
    assert!(text.contains("connection refused"), "{text}");
}

/// Accepts connections on 127.0.0.1 and never answers; stops when dropped.
pub struct SilentServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentServer { port, stop }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_hanging_s3_endpoint_times_out_and_leaves_no_process() {
    if !have_terraform() {
        return;
    }
    let server = SilentServer::start();
    let w = Workspace::new(&S3_BACKEND.replace("PORT", &server.port.to_string()));
    let config = w.config("timeout = \"5s\"\nkill_grace = \"2s\"");
    let (code, r, stderr, elapsed) = w.scan(&config);
    assert_eq!(code, 1, "{r}\n{stderr}");
    assert_eq!(r["error"]["reason"], "timeout", "{r}");
    // timeout 5 s + kill_grace 2 s + 2 s after the second interrupt, plus start-up.
    assert!(
        elapsed < Duration::from_secs(5 + 2 + 2 + 3),
        "ended in {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(5),
        "ran until its timeout: {elapsed:?}"
    );
    let storage = w.storage().display().to_string();
    assert_eq!(
        process_with_env(&storage),
        None,
        "no terraform process outlives the scan"
    );
    drop(server);
}

#[test]
fn invalid_hcl_is_config() {
    if !have_terraform() {
        return;
    }
    let w = Workspace::new("resource \"terraform_data\" \"a\" {\n  inputt = \"x\"\n}\n");
    let (code, r, stderr, _) = w.scan(&w.config(""));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(r["error"]["reason"], "config", "{r}");
    assert_eq!(r["error"]["summary"], "Unsupported argument");
}

#[test]
fn a_missing_dir_or_binary_is_config() {
    let w = Workspace::new(VM);
    let config = w.root.path().join("missing.toml");
    std::fs::write(
        &config,
        "[storage]\npath = \"state\"\n[environments.lab]\ndir = \"nowhere\"\n[environments.lab2]\ndir = \"ws\"\nbinary = \"/opt/no/terraform\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = crate::support::run(&[
        "scan",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    let reports: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reports[0]["error"]["reason"], "config");
    assert!(
        reports[0]["error"]["summary"]
            .as_str()
            .unwrap()
            .contains("environments.lab.dir"),
        "{stdout}"
    );
    assert_eq!(reports[1]["error"]["reason"], "config");
    assert!(
        reports[1]["error"]["summary"]
            .as_str()
            .unwrap()
            .contains("/opt/no/terraform"),
        "{stdout}"
    );
}

#[test]
fn two_scans_of_one_environment_never_run_at_once() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    let log = w.root.path().join("runs.log");
    let wrapper = w.root.path().join("slow-terraform");
    // Records when each plan starts and ends; a slow plan makes any overlap visible.
    crate::support::script(
        &wrapper,
        &format!(
            "[ \"$1\" = plan ] && echo \"start $(date +%s.%N)\" >> '{log}' && sleep 1\nterraform \"$@\"\nrc=$?\n[ \"$1\" = plan ] && echo \"end $(date +%s.%N)\" >> '{log}'\nexit $rc\n",
            log = log.display()
        ),
    );
    let config = w.config(&format!("binary = \"{}\"", wrapper.display()));
    let scans: Vec<_> = (0..2)
        .map(|_| {
            crate::support::bin()
                .args([
                    "scan",
                    "--format",
                    "json",
                    "--config",
                    config.to_str().unwrap(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for scan in scans {
        let out = scan.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let events: Vec<(String, f64)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let (kind, t) = l.split_once(' ').unwrap();
            (kind.to_owned(), t.parse().unwrap())
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["start", "end", "start", "end"],
        "the second scan waited for the first"
    );
    assert!(events[2].1 >= events[1].1);
}

#[test]
fn a_sensitive_variable_never_reaches_the_report_the_served_plan_or_the_history() {
    if !have_terraform() {
        return;
    }
    let w = Workspace::new(
        r#"
variable "secret" {
  type      = string
  default   = "s3cr3t-value"
  sensitive = true
}
resource "terraform_data" "b" {
  input = var.secret
}
"#,
    );
    let (code, r, stderr, _) = w.scan(&w.config(""));
    assert_eq!(code, 2, "{r}\n{stderr}");
    let plan = std::fs::read_to_string(w.storage().join("envs/lab/plan.json")).unwrap();
    assert!(plan.contains("terraform_data.b"), "{plan}");
    let mut everything = format!("{r}{stderr}{plan}");
    for entry in std::fs::read_dir(w.storage().join("envs/lab/history"))
        .unwrap()
        .flatten()
    {
        everything.push_str(&std::fs::read_to_string(entry.path()).unwrap());
    }
    assert!(!everything.contains("s3cr3t-value"), "the secret leaked");
    let mode = std::fs::metadata(w.storage().join("envs/lab/plan.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
