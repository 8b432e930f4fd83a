//! Noise control and reconciliation with real terraform: ignore rules, and `reconcile`'s
//! printed revert and adopt instructions followed to the letter.

use std::path::Path;
use std::process::Command;

use crate::real_terraform::raise_memory_in_state;
use crate::support::{Workspace, have_terraform, run, terraform};

const SCALAR_VM: &str = r#"
resource "terraform_data" "vm" {
  input = 2048
}
"#;

/// Sets the recorded `input` of `terraform_data.vm` (a manual change).
fn set_state_input(ws: &Path, value: i64) {
    let path = ws.join("terraform.tfstate");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let attrs = &mut state["resources"][0]["instances"][0]["attributes"];
    attrs["input"]["value"] = value.into();
    attrs["output"]["value"] = value.into();
    let serial = state["serial"].as_u64().unwrap();
    state["serial"] = (serial + 1).into();
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
}

fn reconcile(config: &Path) -> String {
    let (code, stdout, stderr) = run(&["reconcile", "--config", config.to_str().unwrap(), "lab"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

/// A workspace whose scalar `terraform_data.vm` has been applied.
fn applied() -> Workspace {
    let w = Workspace::new(SCALAR_VM);
    terraform(
        &w.ws(),
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    w
}

/// Runs a command printed by `reconcile`, as a person answering "yes" would.
fn run_printed(command: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{command} -auto-approve -input=false -no-color > /dev/null"
        ))
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
}

#[test]
fn following_reconcile_revert_or_adopt_makes_the_next_scan_conform() {
    if !have_terraform() {
        return;
    }
    let w = applied();
    let config = w.config("");

    // Revert: run the printed command (a person answers "yes"; the test passes -auto-approve).
    set_state_input(&w.ws(), 3072);
    assert_eq!(w.scan(&config).0, 2);
    let guide = reconcile(&config);
    assert!(guide.contains("terraform_data.vm (update"), "{guide}");
    let revert = guide
        .lines()
        .find(|l| l.trim_start().starts_with("terraform ") && l.contains("apply"))
        .unwrap()
        .trim();
    assert!(revert.contains("-target='terraform_data.vm'"), "{revert}");
    run_printed(revert);
    let (code, report, _, _) = w.scan(&config);
    assert_eq!(code, 0, "conform after the revert: {report}");

    // Adopt: write the printed assignment into the code.
    set_state_input(&w.ws(), 4096);
    assert_eq!(w.scan(&config).0, 2);
    let guide = reconcile(&config);
    let adopt = guide
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("input = "))
        .unwrap_or_else(|| panic!("{guide}"));
    assert_eq!(adopt, "input = 4096");
    assert!(
        !guide.contains("output ="),
        "consequences are not causes: {guide}"
    );
    let code_path = w.ws().join("main.tf");
    let code = std::fs::read_to_string(&code_path)
        .unwrap()
        .replace("input = 2048", adopt);
    std::fs::write(&code_path, code).unwrap();
    let (code, report, _, _) = w.scan(&config);
    assert_eq!(code, 0, "conform after adopting: {report}");
    assert!(reconcile(&config).contains("nothing to reconcile"));
}

#[test]
fn reconcile_explains_a_resource_deleted_outside_terraform_and_runs_nothing() {
    if !have_terraform() {
        return;
    }
    let w = applied();
    // The object is gone from the state as if deleted: the plan wants to create it.
    let path = w.ws().join("terraform.tfstate");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["resources"] = serde_json::json!([]);
    state["serial"] = (state["serial"].as_u64().unwrap() + 1).into();
    std::fs::write(&path, state.to_string()).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let config = w.config("");
    assert_eq!(w.scan(&config).0, 2);
    let guide = reconcile(&config);
    assert!(guide.contains("terraform_data.vm (create"), "{guide}");
    assert!(
        guide.contains("removed {") && guide.contains("from = terraform_data.vm"),
        "{guide}"
    );
    assert!(guide.contains("state rm 'terraform_data.vm'"), "{guide}");
    assert!(guide.contains("tfdrift-exporter scan lab"), "{guide}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "reconcile changed nothing"
    );

    let (code, _, stderr) = run(&["reconcile", "--config", config.to_str().unwrap(), "nope"]);
    assert_eq!(code, 64, "{stderr}");
}

#[test]
fn an_ignore_rule_makes_a_real_drift_conform_until_it_expires() {
    if !have_terraform() {
        return;
    }
    let w = crate::real_terraform::applied_vm();
    raise_memory_in_state(&w.ws());
    let rule = |expires: &str| {
        format!(
            "[[environments.lab.ignore]]\naddress = \"terraform_data.*\"\nattribute = \"input.memory\"\nreason = \"ballooning changes memory\"\n{expires}"
        )
    };
    let (code, r, _, _) = w.scan(&w.config(&rule("")));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["status"], "conform");
    assert_eq!(r["summary"]["ignored"], 1);
    assert_eq!(r["ignored"][0]["address"], "terraform_data.vm");
    assert_eq!(r["ignored"][0]["ignored_by"], "ballooning changes memory");

    let (code, r, stderr, _) = w.scan(&w.config(&rule("expires = \"2024-01-01\"")));
    assert_eq!(code, 2, "an expired rule stops applying: {r}");
    assert_eq!(r["summary"]["ignored"], 0);
    assert!(stderr.contains("ignore rule expired"), "{stderr}");
}

#[test]
fn reconcile_prints_the_configured_binary_and_a_trigger_that_works_over_tls_with_auth() {
    if !have_terraform() {
        return;
    }
    let w = applied();
    // `tofu` here is a wrapper around the real terraform, by absolute path.
    let bin_dir = w.root.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let tofu = bin_dir.join("tofu");
    crate::support::script(&tofu, "exec terraform \"$@\"\n");
    let pki = crate::web::Pki::new(w.root.path());
    std::fs::write(
        w.root.path().join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: {}\n",
            crate::web::hash("pw")
        ),
    )
    .unwrap();
    let config = w.config(&format!("binary = \"{}\"", tofu.display()));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("[web]\nconfig_file = \"web.yml\"\nlisten_address = \"127.0.0.1:0\"\n{text}"),
    )
    .unwrap();
    set_state_input(&w.ws(), 3072);
    assert_eq!(w.scan(&config).0, 2);
    let guide = reconcile(&config);
    let revert = guide
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" apply") && l.contains("-target="))
        .unwrap_or_else(|| panic!("{guide}"));
    assert!(
        revert.starts_with(&format!("{} ", tofu.display())),
        "the configured binary, not terraform: {revert}"
    );
    assert!(!guide.contains("terraform '-chdir"), "{guide}");
    let trigger = guide
        .lines()
        .find_map(|l| l.split_once("(or: ").map(|(_, c)| c.trim_end_matches(')')))
        .unwrap_or_else(|| panic!("{guide}"));
    assert!(
        trigger.starts_with("curl -u 'prometheus' -X POST https://"),
        "{trigger}"
    );
    assert!(guide.contains("--cacert"), "{guide}");

    // Against the running exporter (on its own port): the printed command with the password
    // a person would type and the private CA.
    let server = crate::server::Server::start(&config);
    let printed_base = trigger
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap();
    let url = format!(
        "https://{}{}",
        server.address,
        &printed_base["https://".len()..][printed_base["https://".len()..].find('/').unwrap()..]
    );
    let ca = pki.path("ca.crt");
    let status = crate::web::curl(
        &["--cacert", &ca, "-u", "prometheus:pw", "-X", "POST"],
        &url,
    );
    assert_eq!(status, 202, "{url}");

    // The printed revert, run through the wrapper, makes the next scan conform.
    run_printed(revert);
    drop(server);
    assert_eq!(w.scan(&config).0, 0);
}
