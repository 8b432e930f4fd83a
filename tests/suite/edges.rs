//! Trust at the edges: inputs that once gave a false "conform", a leaked secret, a panic or
//! a stuck environment. Each test is named after the defect it pins.

use serde_json::Value;

use std::path::Path;

use crate::support::{Workspace, have_terraform, script, terraform};

/// A workspace whose `binary` is a script written into it.
fn with_binary(body: &str) -> (Workspace, std::path::PathBuf) {
    let w = Workspace::new("");
    let binary = w.root.path().join("fake-terraform");
    script(&binary, body);
    let config = w.config(&format!("binary = \"{}\"", binary.display()));
    (w, config)
}

fn assert_not_conform(r: &Value, code: i32, mention: &str) {
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["status"], "error", "{r}");
    assert_eq!(r["error"]["reason"], "terraform", "{r}");
    let summary = r["error"]["summary"].as_str().unwrap();
    assert!(summary.contains(mention), "{summary}");
}

#[test]
fn a_binary_that_exits_0_without_a_plan_is_not_conform() {
    let (w, config) = with_binary("exit 0\n");
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "no version line");

    // `/bin/true` itself, by absolute path.
    let config = w.config("binary = \"/bin/true\"");
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "not a plan");
}

#[test]
fn fifty_megabytes_of_text_and_exit_0_is_not_conform() {
    let (w, config) = with_binary(
        "head -c 52428800 /dev/zero | tr '\\0' 'x' | fold -w 100\necho 'Plan: 0 to add'\nexit 0\n",
    );
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "not a plan");
    let detail = r["error"]["detail"].as_str().unwrap();
    assert!(
        detail.len() < 10_000,
        "the stray output is cut: {}",
        detail.len()
    );
}

#[test]
fn a_stream_without_change_summary_is_not_conform() {
    // A version line, then nothing: the plan stopped before its end but exited 0.
    let (w, config) = with_binary(
        "case \"$1\" in plan) echo '{\"type\":\"version\",\"terraform\":\"1.11.4\"}';; esac\nexit 0\n",
    );
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "no change summary");
}

#[test]
fn a_complete_stream_without_a_plan_file_is_not_conform() {
    let (w, config) = with_binary(
        "case \"$1\" in plan) echo '{\"type\":\"version\",\"terraform\":\"1.11.4\"}'; echo '{\"type\":\"change_summary\",\"changes\":{\"add\":0}}';; esac\nexit 0\n",
    );
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "no plan file");
}

const LOCAL_BACKEND: &str = r#"
terraform {
  backend "local" { path = "PATH" }
}
resource "terraform_data" "vm" {
  input = { name = "web", memory = 2048 }
}
"#;

/// Copies the state at `from` to `to` in `ws`, with memory raised to 3072 (drift).
fn copy_state_with_drift(ws: &Path, from: &str, to: &str) {
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(ws.join(from)).unwrap()).unwrap();
    let attrs = &mut state["resources"][0]["instances"][0]["attributes"];
    attrs["input"]["value"]["memory"] = 3072.into();
    std::fs::write(ws.join(to), state.to_string()).unwrap();
}

#[test]
fn a_moved_backend_is_followed_by_the_next_scan_not_an_init_error_forever() {
    if !have_terraform() {
        return;
    }
    let w = Workspace::new(&LOCAL_BACKEND.replace("PATH", "a.tfstate"));
    terraform(&w.ws(), &["init", "-input=false", "-no-color"]);
    terraform(
        &w.ws(),
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    let config = w.config("");
    let (code, r, stderr, _) = w.scan(&config);
    assert_eq!(code, 0, "{r}\n{stderr}");

    // The backend block moves to another state (in the code): the next scan reads it.
    copy_state_with_drift(&w.ws(), "a.tfstate", "b.tfstate");
    std::fs::write(
        w.ws().join("main.tf"),
        LOCAL_BACKEND.replace("PATH", "b.tfstate"),
    )
    .unwrap();
    for _ in 0..2 {
        let (code, r, stderr, _) = w.scan(&config);
        assert_eq!(code, 2, "{r}\n{stderr}");
        assert_eq!(r["changes"][0]["attributes"][0]["actual"], 3072, "{r}");
    }

    // Another key in a backend_config file: followed too.
    std::fs::write(
        w.ws().join("main.tf"),
        LOCAL_BACKEND.replace(" path = \"PATH\" ", ""),
    )
    .unwrap();
    std::fs::copy(w.ws().join("a.tfstate"), w.ws().join("c.tfstate")).unwrap();
    std::fs::write(w.ws().join("backend.hcl"), "path = \"c.tfstate\"\n").unwrap();
    let config = w.config("backend_config = [\"backend.hcl\"]");
    let (code, r, stderr, _) = w.scan(&config);
    assert_eq!(code, 0, "{r}\n{stderr}");
    std::fs::write(w.ws().join("backend.hcl"), "path = \"b.tfstate\"\n").unwrap();
    let (code, r, stderr, _) = w.scan(&config);
    assert_eq!(code, 2, "{r}\n{stderr}");

    // No state was migrated or written by the exporter.
    let a: Value =
        serde_json::from_str(&std::fs::read_to_string(w.ws().join("a.tfstate")).unwrap()).unwrap();
    assert_eq!(
        a["resources"][0]["instances"][0]["attributes"]["input"]["value"]["memory"],
        2048
    );
}

#[test]
fn durations_that_overflow_are_refused_at_load_naming_the_key_and_range() {
    let w = Workspace::new("");
    for (line, key) in [
        (
            "timeout = \"18446744073709551615s\"",
            "environments.lab.timeout",
        ),
        (
            "kill_grace = \"18446744073709551615s\"",
            "environments.lab.kill_grace",
        ),
        (
            "lock_timeout = \"1000000d\"",
            "environments.lab.lock_timeout",
        ),
        ("interval = \"100000000d\"", "environments.lab.interval"),
        ("jitter = \"1000y\"", "environments.lab.jitter"),
    ] {
        let config = w.config(line);
        let path = config.to_str().unwrap();
        for command in ["check-config", "scan"] {
            let (code, stdout, stderr) = crate::support::run(&[command, "--config", path]);
            assert_eq!(code, 78, "{command} {line}: {stdout}{stderr}");
            assert!(stderr.contains(key), "{command} {line}: {stderr}");
            assert!(stderr.contains("must be between"), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        }
    }
    // A default out of range is named as the default.
    let path = w.root.path().join("defaults.toml");
    std::fs::write(
        &path,
        "[storage]\npath = \"s\"\nretention = \"100000d\"\n[environments.lab]\ndir = \"ws\"\n",
    )
    .unwrap();
    let (code, _, stderr) =
        crate::support::run(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("storage.retention"), "{stderr}");
}

#[test]
fn a_terraform_1_0_0_plan_whose_drift_entries_have_no_address_is_read() {
    // Terraform 0.15.4 to 1.0.0 wrote resource_drift entries without `address` (and 1.0.0
    // listed unchanged resources there too); the rest of the plan is read normally.
    let plan = serde_json::json!({
        "format_version": "0.2",
        "terraform_version": "1.0.0",
        "resource_drift": [
            {"mode": "managed", "type": "terraform_data", "name": "vm",
             "provider_name": "registry.terraform.io/hashicorp/null",
             "change": {"actions": ["update"], "before": {"memory": 2048}, "after": {"memory": 3072},
                        "before_sensitive": {}, "after_sensitive": {}}},
            {"mode": "managed", "type": "terraform_data", "name": "same",
             "change": {"actions": ["no-op"], "before": {"a": 1}, "after": {"a": 1}}}
        ],
        "resource_changes": [
            {"address": "terraform_data.vm", "mode": "managed", "type": "terraform_data", "name": "vm",
             "change": {"actions": ["update"], "before": {"memory": 3072}, "after": {"memory": 2048},
                        "after_unknown": {}, "before_sensitive": {}, "after_sensitive": {}}}
        ]
    });
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, plan.to_string().as_bytes()).unwrap();
    let (code, stdout, stderr) =
        crate::support::run(&["explain", "--format", "json", f.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["status"], "drift");
    assert_eq!(r["changes"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["changes"][0]["address"], "terraform_data.vm");
    assert_eq!(
        r["changes"][0]["attributes"],
        serde_json::json!([{"path": "memory", "actual": 3072, "expected": 2048}])
    );
    // A planned change without an address is still malformed.
    let bad = serde_json::json!({"format_version": "1.2", "resource_changes": [{"change": {"actions": ["update"]}}]});
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, bad.to_string().as_bytes()).unwrap();
    let (code, _, stderr) = crate::support::run(&["explain", f.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("resource_changes[0]: missing field `address`"),
        "{stderr}"
    );
}

/// The raw head of a request's answer (status line and headers) and its body.
fn raw(server: &crate::server::Server, method: &str, path: &str, accept: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn head_is_answered_on_every_get_path_and_accept_follows_q_values() {
    let w = Workspace::new("");
    let config = w.config("run_on_start = false");
    let server = crate::server::Server::start(&config);
    // The page changes once, when the scheduler's first word (the next scan) reaches the
    // state; after that nothing changes until the first scan is due.
    let settled = std::time::Instant::now();
    while !raw(&server, "GET", "/metrics", "*/*")
        .1
        .contains("tfdrift_next_scan_timestamp_seconds{")
    {
        assert!(
            settled.elapsed().as_secs() < 30,
            "no next scan in the state"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for path in [
        "/",
        "/metrics",
        "/detail",
        "/history",
        "/-/healthy",
        "/-/ready",
    ] {
        let (get, body) = raw(&server, "GET", path, "*/*");
        let (head, empty) = raw(&server, "HEAD", path, "*/*");
        assert!(head.starts_with("http/1.1 200"), "HEAD {path}: {head}");
        assert!(empty.is_empty(), "HEAD {path} has no body");
        assert!(
            head.contains(&format!("content-length: {}", body.len())) || path == "/metrics",
            "HEAD {path} tells the GET length {}: {head}",
            body.len()
        );
        assert!(get.starts_with("http/1.1 200"));
    }
    let (head, _) = raw(&server, "PUT", "/metrics", "*/*");
    assert!(
        head.starts_with("http/1.1 405") && head.contains("allow: get, head"),
        "{head}"
    );

    let content_type = |accept: &str| {
        let (head, _) = raw(&server, "GET", "/metrics", accept);
        head.lines()
            .find_map(|l| l.strip_prefix("content-type: ").map(str::to_owned))
            .unwrap()
    };
    assert!(content_type("application/openmetrics-text;q=0").starts_with("text/plain"));
    assert!(
        content_type("text/plain;q=1, application/openmetrics-text;q=0.5")
            .starts_with("text/plain")
    );
    assert!(
        content_type("Application/OpenMetrics-Text;version=1.0.0")
            .starts_with("application/openmetrics-text")
    );
    assert!(
        content_type(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"
        )
        .starts_with("application/openmetrics-text")
    );
}

#[test]
fn a_thousand_idle_or_trickling_connections_do_not_keep_a_scrape_out() {
    use std::io::Write;
    let w = Workspace::new("");
    let config = w.config("run_on_start = false");
    let server = crate::server::Server::start(&config);
    // 1,000 connections that never send a request, and 20 that send one byte a second.
    let mut idle: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(&server.address).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let (address, stop) = (server.address.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut slow: Vec<std::net::TcpStream> = (0..20)
                .map(|_| std::net::TcpStream::connect(&address).unwrap())
                .collect();
            let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n";
            for byte in request.iter().cycle().take(30) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                for s in &mut slow {
                    let _ = s.write_all(&[*byte]);
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    for path in ["/-/healthy", "/metrics"] {
        let start = std::time::Instant::now();
        let (status, _, _) = server.request("GET", path, None);
        let took = start.elapsed();
        assert_eq!(status, 200, "{path}");
        // Before the fix the scrape waited for the 10 s header timeout of the idle ones.
        assert!(
            took < std::time::Duration::from_secs(5),
            "{path} took {took:?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
    idle.clear();
}

#[test]
fn a_grandchild_that_calls_setsid_does_not_outlive_its_scan() {
    let (w, config) =
        with_binary("setsid sleep 300 < /dev/null > /dev/null 2>&1 &\nsleep 0.2\nexit 1\n");
    let (code, r, _, _) = w.scan(&config);
    assert_eq!(code, 1, "{r}");
    let storage = w.storage().display().to_string();
    assert_eq!(
        crate::support::process_with_env(&storage),
        None,
        "the setsid grandchild is gone with its scan"
    );
}

#[test]
fn terraform_left_by_an_exporter_killed_with_sigkill_is_ended_when_it_starts_again() {
    if !have_terraform() {
        return;
    }
    // A plan that hangs on an S3 endpoint that never answers (terraform ignores SIGINT
    // while an S3 request hangs, so the ending must go all the way to SIGKILL).
    let hang = crate::real_terraform::SilentServer::start();
    let w =
        Workspace::new(&crate::real_terraform::S3_BACKEND.replace("PORT", &hang.port.to_string()));
    let config = w.config("timeout = \"10m\"\nkill_grace = \"3s\"");
    let mut server = crate::server::Server::start(&config);
    server.wait_log("msg=\"scan started\"", std::time::Duration::from_secs(20));
    let storage = w.storage().display().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while crate::support::process_with_env(&storage).is_none() {
        assert!(std::time::Instant::now() < deadline, "terraform never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Past any short-lived command (`version`): the hanging init or plan.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        crate::support::process_with_env(&storage).is_some(),
        "terraform hangs on the silent S3 endpoint"
    );
    server.kill9();
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        crate::support::process_with_env(&storage).is_some(),
        "the orphan runs on without its exporter"
    );

    // systemd restarts the exporter at once.
    let config = w.config("timeout = \"10m\"\nkill_grace = \"3s\"\nrun_on_start = false");
    let started = std::time::Instant::now();
    let server = crate::server::Server::start(&config);
    while crate::support::process_with_env(&storage).is_some() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3 + 15),
            "terraform of the dead exporter still runs after kill_grace + 15 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        server.logged().iter().any(|l| l.contains("dead exporter")),
        "{:?}",
        server.logged()
    );
    drop(hang);
}

#[test]
fn a_plan_of_thousands_of_changes_is_served_whole_from_disk_and_the_page_is_bounded() {
    // A stand-in terraform whose show prints a plan of 3,000 updates.
    let w = Workspace::new("");
    let n = 3000;
    let show = w.root.path().join("show.json");
    std::fs::write(&show, crate::support::plan_of_updates(n)).unwrap();
    let binary = w.root.path().join("fake-terraform");
    script(
        &binary,
        &format!(
            "case \"$1\" in\n  plan)\n    for a in \"$@\"; do case \"$a\" in -out=*) : > \"${{a#-out=}}\";; esac; done\n    echo '{{\"type\":\"version\",\"terraform\":\"1.11.4\"}}'\n    echo '{{\"type\":\"change_summary\",\"changes\":{{\"change\":{n}}}}}'\n    exit 2;;\n  show) cat '{}';;\nesac\n",
            show.display()
        ),
    );
    let config = w.config(&format!(
        "binary = \"{}\"\ninit = \"never\"\nrun_on_start = true",
        binary.display()
    ));
    let server = crate::server::Server::start(&config);
    let detail = server.wait_detail(std::time::Duration::from_secs(60), |d| {
        d["environments"]["lab"]["status"] == "drift"
    });
    assert_eq!(
        detail["environments"]["lab"]["changes"]
            .as_array()
            .unwrap()
            .len(),
        n,
        "/detail serves the whole stored report"
    );
    let (_, lab) = server.get_json("/detail/lab");
    assert_eq!(lab["changes"].as_array().unwrap().len(), n);
    assert_eq!(lab["summary"]["update"], n);
    let id = lab["id"].as_str().unwrap();
    let (status, stored) = server.get_json(&format!("/history/lab/{id}"));
    assert_eq!(status, 200);
    assert_eq!(stored, lab);
    let (status, plan) = server.get_json("/detail/lab/plan");
    assert_eq!(status, 200);
    assert_eq!(plan["resource_changes"].as_array().unwrap().len(), n);
    // The page shows 200 changes, then says how many more and links the JSON.
    let (_, _, page) = server.request("GET", "/", None);
    assert_eq!(
        page.matches("terraform_data.vm[").count(),
        200,
        "bounded page"
    );
    assert!(
        page.contains("and 2800 more changes"),
        "the page says what it left out"
    );
    assert!(page.contains("href=\"/detail/lab\""));
}

#[test]
fn an_invalid_escape_sequence_on_the_first_scan_is_config_with_terraform_s_message() {
    if !have_terraform() {
        return;
    }
    // The first scan runs init, whose umbrella error used to hide the real one.
    let w =
        Workspace::new("resource \"terraform_data\" \"x\" {\n  input = \"C:\\\\Users\\q\"\n}\n");
    let config = w.config("");
    let (code, r, _, _) = w.scan(&config);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["error"]["reason"], "config", "{r}");
    assert_eq!(r["error"]["summary"], "Invalid escape sequence", "{r}");
    assert!(
        r["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("not a valid escape sequence"),
        "{r}"
    );
}

#[test]
fn a_wait_for_another_scans_lock_counts_against_the_timeout_and_ends_on_sigterm() {
    if !have_terraform() {
        return;
    }
    // A CLI scan holds lab's scan lock: its plan hangs on an S3 endpoint that never answers.
    let hang = crate::real_terraform::SilentServer::start();
    let w =
        Workspace::new(&crate::real_terraform::S3_BACKEND.replace("PORT", &hang.port.to_string()));
    let cli_config = w.config("timeout = \"2m\"");
    let mut cli = crate::support::bin()
        .args(["scan", "--config", cli_config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let storage = w.storage().display().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while crate::support::process_with_env(&storage).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI scan never ran terraform"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The exporter's scan waits for the lock within its own timeout, then fails.
    let exporter_config = w.root.path().join("exporter.toml");
    std::fs::write(
        &exporter_config,
        std::fs::read_to_string(&cli_config)
            .unwrap()
            .replace("timeout = \"2m\"", "timeout = \"3s\""),
    )
    .unwrap();
    let server = crate::server::Server::start(&exporter_config);
    let detail = server.wait_detail(std::time::Duration::from_secs(20), |d| {
        d["environments"]["lab"]["status"] == "error"
    });
    let error = &detail["environments"]["lab"]["error"];
    assert_eq!(error["reason"], "timeout", "{error}");
    assert!(
        error["summary"].as_str().unwrap().contains("held its lock"),
        "{error}"
    );
    drop(server);

    // Waiting again (a long timeout), it stops at once on SIGTERM.
    std::fs::write(
        &exporter_config,
        std::fs::read_to_string(&cli_config).unwrap(),
    )
    .unwrap();
    let mut server = crate::server::Server::start(&exporter_config);
    server.wait_log("waiting for it", std::time::Duration::from_secs(20));
    let (code, elapsed) = server.terminate();
    assert_eq!(code, Some(0));
    assert!(
        elapsed < std::time::Duration::from_secs(3),
        "SIGTERM does not wait for the other scan: {elapsed:?}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-INT", &cli.id().to_string()])
        .status();
    let _ = cli.wait();
    drop(hang);
}

#[test]
fn two_hundred_reloads_by_sighup_and_post_at_once_during_scans_end_on_the_last_valid_file() {
    if !have_terraform() {
        return;
    }
    let w = crate::real_terraform::applied_vm();
    let head = "[storage]\npath = \"state\"\n[defaults]\njitter = \"0s\"\nkill_grace = \"2s\"\n\
                [environments.lab]\ndir = \"ws\"\ninterval = \"1s\"\n";
    let config = w.root.path().join("config.toml");
    let valid = |k: usize| {
        format!(
            "{head}[environments.extra{k}]\ndir = \"ws\"\ninterval = \"{}h\"\nrun_on_start = false\n",
            k + 1
        )
    };
    std::fs::write(&config, valid(0)).unwrap();
    let server = crate::server::Server::start(&config);
    let (pid, address) = (server.pid(), server.address.clone());
    let reload = |_: &crate::server::Server| {
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _ = std::process::Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status();
            });
            scope.spawn(|| {
                use std::io::{Read, Write};
                let mut stream = std::net::TcpStream::connect(&address).unwrap();
                let _ = write!(
                    stream,
                    "POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.read_to_end(&mut Vec::new());
            });
        });
    };
    for i in 1..=200 {
        let text = if i % 2 == 0 {
            valid(i)
        } else {
            format!("{head}[environments.broken]\ninterval = \"not a duration\"\n")
        };
        std::fs::write(&config, text).unwrap();
        reload(&server);
    }
    // The last file (extra200) was valid: whatever reload ran last read it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, detail) = server.get_json("/detail");
        let names: Vec<String> = detail["environments"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        if names == ["extra200", "lab"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "environments: {names:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let m = server.metrics();
    let env = |name| [("environment", name)];
    assert_eq!(
        crate::server::metric(&m, "tfdrift_scan_interval_seconds", &env("extra200")),
        Some(201.0 * 3600.0),
        "the scheduler runs the last valid file"
    );
    assert!(
        crate::server::metric(&m, "tfdrift_next_scan_timestamp_seconds", &env("extra200"))
            .is_some(),
        "its first next scan is known"
    );
    for line in m.lines().filter(|l| l.contains("environment=\"extra")) {
        assert!(
            line.contains("extra200"),
            "a series of an older file: {line}"
        );
    }
    assert!(
        crate::server::metric(
            &m,
            "tfdrift_scans_total",
            &[("environment", "lab"), ("status", "conform")]
        )
        .is_some_and(|n| n >= 1.0),
        "lab was scanned meanwhile"
    );
}
