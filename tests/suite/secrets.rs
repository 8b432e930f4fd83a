//! Secret hygiene: sentinel values placed where secrets live (a sensitive variable, a
//! sensitive resource attribute, an `env_files` entry, the Proxmox token file, and a
//! terraform error message that echoes a credential) must appear in no HTTP answer, no log
//! line at any level, no metric, no output of the commands and no file under
//! `storage.path`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::proxmox::Sim;
use crate::server::Server;
use crate::support::{have_terraform, run};

const SENSITIVE_VAR: &str = "SENTINEL-VAR-8f2a";
const SENSITIVE_ATTR: &str = "SENTINEL-ATTR-5c1d";
const ENV_FILE: &str = "SENTINEL-ENVFILE-3b7e";
const TOKEN_SECRET: &str = "SENTINEL-TOKEN-4e9b";
const ECHOED: &str = "SENTINEL-ERR-77c3";
/// A sensitive variable's value in a `.tfvars` file, echoed by its own validation message.
const TFVARS_ECHOED: &str = "SENTINEL-TFVARS-9d4c";
/// The same through the variable's default.
const DEFAULT_ECHOED: &str = "SENTINEL-DEFAULT-2a6f";
const ALL: [&str; 7] = [
    SENSITIVE_VAR,
    SENSITIVE_ATTR,
    ENV_FILE,
    TOKEN_SECRET,
    ECHOED,
    TFVARS_ECHOED,
    DEFAULT_ECHOED,
];

fn assert_clean(what: &str, text: &str) {
    for s in ALL {
        assert!(!text.contains(s), "{what} leaks {s}:\n{text}");
    }
}

/// Every file under `dir`, read whole; modes of what the exporter made.
pub fn walk(dir: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if path.is_dir() {
            out.push((path.clone(), Vec::new(), mode));
            walk(&path, out);
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap_or_default(), mode));
        }
    }
}

#[test]
fn no_sentinel_secret_is_found_anywhere() {
    if !have_terraform() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let sim = Sim::start(dir);
    let token = format!("tfdrift@pve!ci={TOKEN_SECRET}");
    sim.cluster.tokens.lock().unwrap().insert(token);
    assert_eq!(
        sim.call(
            "POST",
            "/nodes/pve1/qemu",
            Some(serde_json::json!({"vmid": 150, "name": "web2"}))
        ),
        200
    );

    // lab: a sensitive variable (from a var file), a value from env_files, and a sensitive
    // attribute; nothing applied, so the plan shows all three.
    std::fs::create_dir_all(dir.join("lab")).unwrap();
    std::fs::write(
        dir.join("lab/main.tf"),
        format!(
            "variable \"db_password\" {{\n  type = string\n  sensitive = true\n}}\n\
             variable \"api_key\" {{\n  type = string\n}}\n\
             resource \"terraform_data\" \"app\" {{\n  input = {{\n    password = var.db_password\n    key = var.api_key\n    token = sensitive(\"{SENSITIVE_ATTR}\")\n  }}\n}}\n\
             output \"password\" {{\n  value = var.db_password\n  sensitive = true\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("lab/lab.tfvars"),
        format!("db_password = \"{SENSITIVE_VAR}\"\n"),
    )
    .unwrap();
    std::fs::write(dir.join("lab.env"), format!("TF_VAR_api_key={ENV_FILE}\n")).unwrap();
    // broken: a validation whose message echoes the credential it was given.
    std::fs::create_dir_all(dir.join("broken")).unwrap();
    std::fs::write(
        dir.join("broken/main.tf"),
        "variable \"secret\" {\n  type = string\n  validation {\n    condition = length(var.secret) < 3\n    error_message = \"The secret ${var.secret} is too long.\"\n  }\n}\n\
         resource \"terraform_data\" \"x\" {\n  input = var.secret\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.env"), format!("TF_VAR_secret={ECHOED}\n")).unwrap();
    // tokens: a sensitive variable from a var file, and one with a default, each echoed by
    // its validation message (terraform prints them in clear).
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    std::fs::write(
        dir.join("tokens/main.tf"),
        format!(
            "variable \"pve_token\" {{\n  type = string\n  sensitive = true\n  validation {{\n    condition = length(var.pve_token) < 3\n    error_message = \"The value ${{var.pve_token}} is too long.\"\n  }}\n}}\n\
             variable \"fallback\" {{\n  type = string\n  sensitive = true\n  default = \"{DEFAULT_ECHOED}\"\n  validation {{\n    condition = length(var.fallback) < 3\n    error_message = \"The default ${{var.fallback}} is too long.\"\n  }}\n}}\n\
             resource \"terraform_data\" \"x\" {{\n  input = var.pve_token\n}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokens/tokens.tfvars"),
        format!("pve_token = \"{TFVARS_ECHOED}\"\n"),
    )
    .unwrap();
    std::fs::write(dir.join("pve-token"), format!("{TOKEN_SECRET}\n")).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = \"storage\"\n[defaults]\ninterval = \"1h\"\njitter = \"0s\"\n\
             [proxmox]\napi_url = \"{}\"\ntoken_id = \"tfdrift@pve!ci\"\ntoken_secret_file = \"pve-token\"\nca_file = \"{}\"\ninterval = \"1s\"\nallow_empty_inventory = true\n\
             [environments.lab]\ndir = \"lab\"\nvar_files = [\"lab.tfvars\"]\nenv_files = [\"lab.env\"]\n\
             [environments.broken]\ndir = \"broken\"\nenv_files = [\"broken.env\"]\n\
             [environments.tokens]\ndir = \"tokens\"\nvar_files = [\"tokens.tfvars\"]\n",
            sim.url(),
            sim.ca().display()
        ),
    )
    .unwrap();

    let server = Server::start_with(&config, "", &["--log.level", "trace"]);
    let detail = server.wait_detail(Duration::from_secs(120), |d| {
        ["lab", "broken", "tokens"]
            .iter()
            .all(|e| d["environments"][e]["status"].is_string())
    });
    // The scans really met the secrets: lab plans a create, broken fails on the validation.
    let lab = &detail["environments"]["lab"];
    assert_eq!(lab["status"], "drift", "{lab}");
    let broken = &detail["environments"]["broken"];
    assert_eq!(broken["status"], "error", "{broken}");
    let message = format!(
        "{}{}",
        broken["error"]["summary"], broken["error"]["detail"]
    );
    assert!(
        message.contains("The secret (sensitive) is too long"),
        "terraform echoed the credential and the exporter scrubbed it: {message}"
    );
    // A refused value of a sensitive variable: reason config, value scrubbed.
    let tokens = &detail["environments"]["tokens"];
    assert_eq!(tokens["status"], "error", "{tokens}");
    assert_eq!(tokens["error"]["reason"], "config", "{tokens}");
    let message = tokens["error"].to_string();
    assert!(
        message.contains("(sensitive) is too long"),
        "terraform echoed the sensitive value and the exporter scrubbed it: {message}"
    );
    // The unmanaged-guest check with the token file's secret.
    let unmanaged = loop {
        let (status, v) = server.get_json("/unmanaged");
        if status == 200 {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(unmanaged["error"], Value::Null, "{unmanaged}");
    assert_eq!(unmanaged["guests"][0]["vmid"], 150, "{unmanaged}");

    let mut answers = Vec::new();
    for path in [
        "/",
        "/metrics",
        "/detail",
        "/detail/lab",
        "/detail/broken",
        "/detail/tokens",
        "/detail/lab/plan",
        "/history",
        "/unmanaged",
        "/-/healthy",
        "/-/ready",
    ] {
        answers.push((path.to_owned(), server.request("GET", path, None).2));
    }
    let openmetrics = server.request("GET", "/metrics", Some("application/openmetrics-text"));
    answers.push(("/metrics (OpenMetrics)".into(), openmetrics.2));
    let (_, history) = server.get_json("/history");
    for scan in history["scans"].as_array().unwrap() {
        let path = format!(
            "/history/{}/{}",
            scan["environment"].as_str().unwrap(),
            scan["id"].as_str().unwrap()
        );
        answers.push((path.clone(), server.request("GET", &path, None).2));
    }
    for (path, body) in &answers {
        assert_clean(&format!("GET {path}"), body);
    }
    let plan = &answers
        .iter()
        .find(|(p, _)| p == "/detail/lab/plan")
        .unwrap()
        .1;
    assert!(
        plan.contains("resource_changes") && plan.contains("(sensitive)"),
        "{plan}"
    );

    // The commands.
    let config_arg = config.to_str().unwrap();
    for args in [
        vec![
            "scan",
            "--format",
            "json",
            "--config",
            config_arg,
            "--log.level",
            "trace",
        ],
        vec!["scan", "--config", config_arg],
        vec!["reconcile", "--config", config_arg, "lab"],
        vec!["reconcile", "--config", config_arg, "broken"],
        vec!["reconcile", "--config", config_arg, "tokens"],
        vec![
            "unmanaged",
            "--format",
            "json",
            "--config",
            config_arg,
            "--log.level",
            "trace",
        ],
        vec!["check-config", "--config", config_arg],
    ] {
        let (_, stdout, stderr) = run(&args);
        assert_clean(&format!("{args:?} stdout"), &stdout);
        assert_clean(&format!("{args:?} stderr"), &stderr);
    }
    let logs = server.logged();
    drop(server);
    assert!(
        logs.iter()
            .any(|l| l.contains("level=trace") || l.contains("level=debug"))
    );
    for line in &logs {
        assert_clean("log line", line);
    }

    let storage = dir.join("storage");
    let mut files = Vec::new();
    walk(&storage, &mut files);
    assert!(files.len() > 5, "{files:?}");
    for (path, bytes, mode) in &files {
        assert_clean(&path.display().to_string(), &String::from_utf8_lossy(bytes));
        let name = path.file_name().unwrap().to_string_lossy();
        let ours = path.extension().is_some_and(|e| e == "json")
            || name == "scan.lock"
            || name == "init.fingerprint";
        if bytes.is_empty()
            && path.is_dir()
            && !path.starts_with(storage.join("envs/lab/tf-data"))
            && !path.starts_with(storage.join("envs/broken/tf-data"))
            && !path.starts_with(storage.join("envs/tokens/tf-data"))
        {
            assert_eq!(*mode, 0o700, "{}", path.display());
        } else if ours {
            assert_eq!(*mode, 0o600, "{}", path.display());
        }
    }
    assert_eq!(
        std::fs::metadata(&storage).unwrap().permissions().mode() & 0o777,
        0o700,
        "the storage directory"
    );
}

#[test]
fn trace_logs_of_the_exporter_hold_no_secret() {
    if !have_terraform() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::create_dir_all(dir.join("ws")).unwrap();
    std::fs::write(
        dir.join("ws/main.tf"),
        "variable \"k\" {\n  type = string\n}\nresource \"terraform_data\" \"a\" {\n  input = var.k\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("k.env"), format!("TF_VAR_k={ENV_FILE}\n")).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[storage]\npath = \"storage\"\n[environments.lab]\ndir = \"ws\"\nenv_files = [\"k.env\"]\n",
    )
    .unwrap();
    let server = Server::start_with(&config, "", &["--log.level", "trace"]);
    server.wait_detail(Duration::from_secs(60), |d| {
        d["environments"]["lab"]["status"] == "drift"
    });
    assert_eq!(server.request("POST", "/-/reload", None).0, 200);
    let logs = server.logged();
    drop(server);
    assert!(
        logs.iter()
            .any(|l| l.contains("level=trace") || l.contains("level=debug")),
        "trace logs are on: {logs:#?}"
    );
    for line in &logs {
        assert_clean("log line", line);
    }
}
