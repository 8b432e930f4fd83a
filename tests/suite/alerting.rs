//! The alerting chain end to end, with the shipped files: the exporter scanning real
//! terraform (prod conform; lab drifting because a VM's memory was raised by hand through the
//! simulated Proxmox API; monitoring with a failing state backend), Debian's Prometheus with
//! `alert-rules/tfdrift.rules.yml`, Debian's Alertmanager with `examples/alertmanager.yml`
//! (only `api_url`, `bot_token` and `chat_id` replaced), and a local fake of the Telegram Bot
//! API that records `sendMessage` calls (it imitates the documented request and answer).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::chain::{
    FakeTelegram, alertmanager, free_port, http_json, prom_query, prometheus, shipped_alertmanager,
    telegram_html, wait_until,
};
use crate::hostile_text::{HIDDEN, Style, drift_by_hand, fleet};
use crate::proxmox::{Homelab, TOKEN};
use crate::real_terraform::{S3_BACKEND, VM};
use crate::server::Server;
use crate::support::{Workspace, terraform, tool};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// The dashboard's queries, with the `environment` variable at "All".
pub fn dashboard_queries() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/tfdrift.json")).unwrap(),
    )
    .unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().replace("$environment", ".*"))
        .collect()
}

#[test]
fn shipped_rules_alertmanager_config_and_dashboard_pass_their_checkers() {
    if !tool("promtool", "prometheus") || !tool("amtool", "prometheus-alertmanager") {
        return;
    }
    let rules = repo().join("alert-rules");
    run_ok(
        Command::new("promtool")
            .args(["check", "rules", "--lint=all", "--lint-fatal"])
            .arg(rules.join("tfdrift.rules.yml")),
    );
    run_ok(
        Command::new("promtool")
            .args(["test", "rules", "tfdrift.rules.test.yml"])
            .current_dir(&rules),
    );
    run_ok(
        Command::new("amtool")
            .arg("check-config")
            .arg(repo().join("examples/alertmanager.yml")),
    );
    let routes = run_ok(
        Command::new("amtool")
            .args(["config", "routes", "test", "--verify.receivers=telegram"])
            .arg(format!(
                "--config.file={}",
                repo().join("examples/alertmanager.yml").display()
            ))
            .args(["alertname=TerraformDriftDetected", "environment=prod"]),
    );
    assert!(routes.contains("telegram"), "{routes}");
    // Every dashboard query parses (as the expression of a generated recording rule).
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<Value> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"record": format!("dashboard:query_{i}"), "expr": q}))
        .collect();
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(
        &file,
        serde_json::to_string(&json!({"groups": [{"name": "dashboard", "rules": rules}]})).unwrap(),
    )
    .unwrap();
    run_ok(Command::new("promtool").args(["check", "rules"]).arg(&file));
}

#[test]
fn drift_and_failures_reach_telegram_through_prometheus_and_alertmanager() {
    if !tool("prometheus", "prometheus")
        || !tool("prometheus-alertmanager", "prometheus-alertmanager")
    {
        return;
    }
    let Some(lab) = Homelab::new() else { return };
    let prod = Workspace::new(VM);
    terraform(
        &prod.ws(),
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    let mon = Workspace::new(&S3_BACKEND.replace("PORT", &free_port().to_string()));
    let hostile = hostile_workspace();
    let dir = lab.root.path().to_owned();
    // Hostile text in the simulator: 10 guests whose keys, new names and authors are emoji,
    // 10 of BMP text with bidi and control characters, 200 of both; changed by hand.
    let fleets = [
        ("emoji10", 300, 10, Style::Emoji),
        ("bmp10", 320, 10, Style::Bmp),
        ("mixed200", 400, 200, Style::Mixed),
    ];
    let mut fleet_envs = String::new();
    for (name, first, count, style) in fleets {
        let ws = fleet(&lab, name, first, count, style);
        drift_by_hand(&lab, first, count, style);
        fleet_envs.push_str(&format!(
            "[environments.{name}]\ndir = \"{}\"\ninit = \"never\"\nrun_on_start = false\ntimeout = \"3m\"\nenv = {{ TF_CLI_CONFIG_FILE = \"{}\" }}\n",
            ws.display(),
            lab.cli_config.display()
        ));
    }

    // The mission's manual change: 1 GB more RAM through the Proxmox API, by root@pam.
    lab.sim
        .cluster
        .tokens
        .lock()
        .unwrap()
        .insert(ROOT.to_owned());
    assert_eq!(
        lab.sim.call_as(
            ROOT,
            "PUT",
            "/nodes/pve1/qemu/120/config",
            Some(json!({"memory": 3072}))
        ),
        200
    );

    // The third manual change: a VM created in the Proxmox UI, outside every state.
    assert_eq!(
        lab.sim.call(
            "POST",
            "/nodes/pve1/qemu",
            Some(json!({"vmid": 150, "name": "web2"}))
        ),
        200
    );
    std::fs::write(dir.join("pve-token"), TOKEN.split_once('=').unwrap().1).unwrap();

    // The unmanaged-guest check knows the types of the real Proxmox providers, not the test
    // provider's pvesim_vm: lab's VM 120 and the fleets' guests are listed as deliberately
    // outside Terraform.
    let config = dir.join("exporter.toml");
    let monitoring = format!(
        "[environments.monitoring]\ndir = \"{}\"\n",
        mon.ws().display()
    );
    // lab is scanned once the cluster log has been read (below), so that who changed it is
    // known (this test scans when it chooses: no change signals; tests/suite/signals.rs has
    // them); hostile drifts in 200 resources whose addresses and values are full of <&>.
    let config_text = format!(
        "[web]\nexternal_url = \"https://tfdrift.example:9847/\"\n\
             [storage]\npath = \"state\"\n[defaults]\ninterval = \"1h\"\njitter = \"0s\"\nkill_grace = \"2s\"\n\
             [proxmox]\napi_url = \"{}\"\ntoken_id = \"tfdrift@pve!ci\"\ntoken_secret_file = \"pve-token\"\nca_file = \"{}\"\ninterval = \"2s\"\nattribution_interval = \"1s\"\nevents = false\n\
             [proxmox.ignore]\nvmids = [\"120\", \"300-599\"]\n\
             [environments.prod]\ndir = \"{}\"\n{monitoring}\
             [environments.hostile]\ndir = \"{}\"\ntimeout = \"2m\"\n\
             [environments.lab]\ndir = \"{}\"\ninit = \"never\"\nrun_on_start = false\nenv = {{ TF_CLI_CONFIG_FILE = \"{}\" }}\n{fleet_envs}",
        lab.sim.url(),
        lab.sim.ca().display(),
        prod.ws().display(),
        hostile.ws().display(),
        lab.ws().display(),
        lab.cli_config.display()
    );
    std::fs::write(&config, &config_text).unwrap();
    let exporter = Server::in_process(&config);
    wait_until("the cluster log read", Duration::from_secs(30), || {
        crate::server::metric(
            &exporter.metrics(),
            "tfdrift_attribution_error",
            &[("reason", "permission")],
        ) == Some(0.0)
    });
    for env in ["lab", "emoji10", "bmp10", "mixed200"] {
        assert_eq!(
            exporter.request("POST", &format!("/scan/{env}"), None).0,
            202
        );
    }
    // A second exporter (another site) with an environment of the same name, emoji10, on a
    // copy of the workspace: its own alert, its own message and page link.
    let copy = dir.join("emoji10-copy");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(dir.join("emoji10"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    let second_config = dir.join("second.toml");
    std::fs::write(
        &second_config,
        format!(
            "[storage]\npath = \"state2\"\n[defaults]\ninterval = \"1h\"\njitter = \"0s\"\n\
             [environments.emoji10]\ndir = \"{}\"\ninit = \"never\"\ntimeout = \"3m\"\nenv = {{ TF_CLI_CONFIG_FILE = \"{}\" }}\n",
            copy.display(),
            lab.cli_config.display()
        ),
    )
    .unwrap();
    let second = Server::in_process(&second_config);

    let telegram = FakeTelegram::start();
    let shipped = shipped_alertmanager(telegram.port);
    let am_config = shipped
        .clone()
        // A second receiver whose route groups by alert name only: one message for the
        // alerts of many environments and both exporters (the template's group bound).
        .replace(
            "\nreceivers:\n",
            "  routes:\n    - receiver: grouped\n      group_by: [alertname]\n      continue: true\n    - receiver: telegram\n\nreceivers:\n  - name: grouped\n    telegram_configs:\n      - api_url: TELEGRAM\n        bot_token: \"42:test-token\"\n        chat_id: -100888\n        parse_mode: HTML\n        send_resolved: true\n        message: '{{ template \"tfdrift.telegram\" . }}'\n",
        )
        .replace("TELEGRAM", &format!("http://127.0.0.1:{}", telegram.port));
    assert_ne!(am_config, shipped);
    let (_am, am_port) = alertmanager(&dir, &am_config);
    let (_prometheus, prom_port) = prometheus(
        &dir,
        "1s",
        am_port,
        &[&exporter.address, &second.address],
        &["--rules.alert.resend-delay=1s"],
    );

    // 1. Drift: one message naming the environment and the resource. Failure: a distinct one
    //    naming the reason. Conform: nothing.
    let drift = telegram.wait_for("for lab's drift", Duration::from_secs(120), |t| {
        t.contains("DRIFT") && t.contains("[lab]")
    });
    assert!(
        drift.contains("pvesim_vm.web") && drift.contains("changed outside Terraform"),
        "{drift}"
    );
    // What changed, from what to what, who did it, since when, and the page to open.
    for needed in [
        "memory: 3072 -&gt; 2048",
        "by root@pam",
        "Drifting since",
        "<a href=\"https://tfdrift.example:9847/environments/lab\">",
    ] {
        assert!(drift.contains(needed), "{needed:?} missing: {drift}");
    }
    std::fs::write(repo().join("target/telegram-drift-message.txt"), &drift).unwrap();
    // 200 changed resources, 10 KB addresses and values full of <&>: bounded and valid.
    let hostile_drift = telegram.wait_for("for hostile's drift", Duration::from_secs(180), |t| {
        t.contains("DRIFT") && t.contains("[hostile]")
    });
    assert!(
        hostile_drift.contains("Changed resources (200, ten shown):"),
        "the count first, which no cut loses: {hostile_drift}"
    );
    // Hostile text: emoji addresses, values and authors are cut in UTF-16 units; bidi and
    // control characters arrive as visible escapes; each message keeps its page link.
    // (The first exporter's: the second has no [proxmox], so no authors.)
    let emoji = telegram.wait_for("for emoji10's drift", Duration::from_secs(180), |t| {
        t.contains("DRIFT")
            && t.contains("[emoji10]")
            && t.contains("https://tfdrift.example:9847/environments/emoji10")
    });
    for needed in ["pvesim_vm.g[", "\u{1F525}", "by \u{1F600}"] {
        assert!(emoji.contains(needed), "{needed:?} missing: {emoji}");
    }
    let bmp = telegram.wait_for("for bmp10's drift", Duration::from_secs(180), |t| {
        t.contains("DRIFT") && t.contains("[bmp10]")
    });
    assert!(
        bmp.contains("by admin\\u202e@evil.com\\u202c") && bmp.contains("\\u009b"),
        "the bidi author and the C1 character shown escaped: {bmp}"
    );
    telegram.wait_for("for mixed200's drift", Duration::from_secs(180), |t| {
        t.contains("DRIFT") && t.contains("[mixed200]") && t.contains("(200, ten shown)")
    });
    // Two exporters, one environment name: two messages, each with its own page.
    wait_until(
        "a message from each exporter for emoji10",
        Duration::from_secs(120),
        || {
            let links: std::collections::BTreeSet<String> = telegram
                .texts()
                .iter()
                .filter(|t| t.contains("DRIFT") && t.contains("[emoji10]"))
                .filter_map(|t| Some(t.split("<a href=\"").nth(1)?.split('"').next()?.to_owned()))
                .collect();
            links.contains("https://tfdrift.example:9847/environments/emoji10")
                && links.contains(&format!("http://{}/environments/emoji10", second.address))
        },
    );
    // A route that groups the drift alerts of every environment and both exporters.
    wait_until(
        "one message for a group of drift alerts",
        Duration::from_secs(120),
        || {
            telegram
                .texts_in("-100888")
                .iter()
                .any(|t| t.contains("DRIFT") && t.contains("alerts in this group"))
        },
    );
    let failed = telegram.wait_for("for monitoring's failure", Duration::from_secs(60), |t| {
        t.contains("TerraformDriftScanFailed") && t.contains("[monitoring]")
    });
    assert!(
        failed.contains("state_backend") && !failed.contains("DRIFT"),
        "{failed}"
    );
    // monitoring's state cannot be read, so the unmanaged-guest check cannot tell which
    // guests are managed: it fails (reason state) instead of calling every guest unmanaged.
    let check_failed = telegram.wait_for(
        "for the failed unmanaged-guest check",
        Duration::from_secs(60),
        |t| t.contains("TerraformUnmanagedCheckFailed"),
    );
    assert!(check_failed.contains("reason state"), "{check_failed}");
    // Every dashboard query returns data from this Prometheus (the unmanaged-guest panels
    // once the check works, below; the checks panels in checks.rs, whose workspaces have
    // checks).
    let (guest_queries, queries): (Vec<String>, Vec<String>) = dashboard_queries()
        .into_iter()
        .filter(|q| !q.contains("tfdrift_check"))
        .partition(|q| q.contains("unmanaged"));
    assert_eq!(guest_queries.len(), 2, "{guest_queries:?}");
    for query in queries {
        wait_until(
            &format!("dashboard query {query}"),
            Duration::from_secs(30),
            || !prom_query(prom_port, &query).is_empty(),
        );
    }
    // monitoring taken out of the configuration (reload): the check works and names the VM
    // made by hand, and the failed-check alert resolves.
    std::fs::write(&config, config_text.replace(&monitoring, "")).unwrap();
    assert_eq!(exporter.request("POST", "/-/reload", None).0, 200);
    let unmanaged = telegram.wait_for("for the VM made by hand", Duration::from_secs(60), |t| {
        t.contains("TerraformUnmanagedResource") && !t.contains("RESOLVED")
    });
    assert!(
        unmanaged.contains("qemu 150 web2 on pve1") && !unmanaged.contains("qemu 120"),
        "{unmanaged}"
    );
    telegram.wait_for("resolving the failed check", Duration::from_secs(60), |t| {
        t.contains("RESOLVED") && t.contains("TerraformUnmanagedCheckFailed")
    });
    for query in guest_queries {
        wait_until(
            &format!("dashboard query {query}"),
            Duration::from_secs(30),
            || !prom_query(prom_port, &query).is_empty(),
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    let texts = telegram.texts();
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("DRIFT") && t.contains("[lab]"))
            .count(),
        1,
        "exactly one drift message: {texts:#?}"
    );
    assert!(
        !telegram.all().iter().any(|t| t.contains("[prod]")),
        "conform prod is never mentioned: {texts:#?}"
    );
    assert!(
        !texts
            .iter()
            .any(|t| t.contains(TOKEN) || t.contains("0d5f5a1e-sim-secret"))
    );

    // 2. Reconciled (the manual change reverted) and rescanned: a resolved message.
    assert_eq!(
        lab.sim.call(
            "PUT",
            "/nodes/pve1/qemu/120/config",
            Some(json!({"memory": 2048}))
        ),
        200
    );
    assert_eq!(exporter.request("POST", "/scan/lab", None).0, 202);
    telegram.wait_for("resolving lab's drift", Duration::from_secs(120), |t| {
        t.contains("RESOLVED") && t.contains("[lab]")
    });

    // 3. Drift again, then the token revoked: the failure inhibits the drift alert.
    lab.sim.raise_memory_by_hand();
    assert_eq!(exporter.request("POST", "/scan/lab", None).0, 202);
    let am_alerts = format!("http://127.0.0.1:{am_port}/api/v2/alerts");
    let find = |name: &str| -> Option<Value> {
        http_json(&am_alerts)
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name && a["labels"]["environment"] == "lab")
            .cloned()
    };
    wait_until(
        "lab's drift alert in Alertmanager",
        Duration::from_secs(60),
        || find("TerraformDriftDetected").is_some(),
    );
    lab.sim.cluster.tokens.lock().unwrap().clear();
    assert_eq!(exporter.request("POST", "/scan/lab", None).0, 202);
    wait_until(
        "lab's drift alert inhibited by its failed scan",
        Duration::from_secs(60),
        || {
            find("TerraformDriftScanFailed").is_some()
                && find("TerraformDriftDetected").is_some_and(|a| {
                    a["status"]["inhibitedBy"]
                        .as_array()
                        .is_some_and(|i| !i.is_empty())
                })
        },
    );
    let failed = telegram.wait_for("for lab's failure", Duration::from_secs(60), |t| {
        t.contains("TerraformDriftScanFailed") && t.contains("[lab]")
    });
    assert!(failed.contains("auth"), "{failed}");

    // Every message Telegram received, in both chats: under its 4096 characters (UTF-16
    // code units, as Telegram counts), valid Telegram HTML, no hidden character, and a page
    // link for every drift or failure alert it shows.
    let all = telegram.all();
    std::fs::write(
        repo().join("target/telegram-messages.txt"),
        all.join("\n-----\n"),
    )
    .unwrap();
    assert!(
        all.len() > telegram.texts().len(),
        "the grouped route sent too"
    );
    for text in all {
        let length = text.encode_utf16().count();
        assert!(length < 4096, "{length} characters: {text}");
        if let Err(why) = telegram_html(&text) {
            panic!("not valid Telegram HTML ({why}): {text}");
        }
        assert!(!text.contains(HIDDEN), "a hidden character: {text:?}");
        let scans = (text.contains("DRIFT") || text.contains("TerraformDriftScanFailed"))
            && !text.contains("TerraformUnmanaged");
        if scans {
            let heads = text.matches("</b>").count();
            let links = text.matches("<a href=\"http").count();
            assert_eq!(links, heads, "a page link per alert shown: {text}");
        }
    }
}

/// A person in the Proxmox UI (a token of root@pam).
const ROOT: &str = "root@pam!admin=77aa-root-secret";

/// 200 `terraform_data` resources whose keys are 10 KB of `<&>"` and whose code now asks
/// for a value full of them too: 200 updates, code not applied.
fn hostile_workspace() -> Workspace {
    let code = |value: &str| {
        format!(
            "locals {{\n  junk = join(\"\", [for i in range(1000) : \"<&>\\\"<&>\\\"&<\"])\n  keys = [for i in range(200) : format(\"%03d%s\", i, local.junk)]\n}}\n\
             resource \"terraform_data\" \"x\" {{\n  for_each = toset(local.keys)\n  input = {value}\n}}\n"
        )
    };
    let w = Workspace::new(&code("\"plain\""));
    terraform(
        &w.ws(),
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    std::fs::write(
        w.ws().join("main.tf"),
        code("\"<b>&amp;</b><i>${local.junk}\""),
    )
    .unwrap();
    w
}
