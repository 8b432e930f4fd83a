//! `[discovery]`: environments found in directories by glob, named by a template, with
//! `[defaults]` and the listed environments' overrides; looked at again while running.

use std::path::Path;
use std::time::Duration;

use crate::chain::wait_until;
use crate::server::{Server, metric};
use crate::support::{have_terraform, run};

/// A directory holding a Terraform root module of one `terraform_data`.
fn module(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        "resource \"terraform_data\" \"vm\" {\n  input = 1\n}\n",
    )
    .unwrap();
}

fn check_config(root: &Path, text: &str) -> (i32, String, String) {
    let config = root.join("config.toml");
    std::fs::write(&config, text).unwrap();
    run(&["check-config", "--config", config.to_str().unwrap()])
}

/// The environments `check-config` lists, with their directories.
fn listed(out: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut name = None;
    for line in out.lines() {
        if let Some(n) = line.strip_prefix("environment ") {
            name = Some(n.trim().to_owned());
        } else if let (Some(n), Some(dir)) = (&name, line.trim().strip_prefix("dir:")) {
            let dir = dir.trim().split(' ').next().unwrap_or_default();
            found.push((n.clone(), dir.to_owned()));
            name = None;
        }
    }
    found
}

#[test]
fn directories_become_environments_named_by_the_template_with_overrides_and_exclusions() {
    let root = tempfile::tempdir().unwrap();
    let infra = root.path().join("infra");
    for dir in ["envs/prod", "envs/lab", "envs/old-dns", "teams/net/live"] {
        module(&infra.join(dir));
    }
    // Not environments: no Terraform files, hidden, deeper than the glob.
    std::fs::create_dir_all(infra.join("envs/empty")).unwrap();
    module(&infra.join("envs/.scratch"));
    module(&infra.join("envs/lab/modules/vm"));

    let (code, out, err) = check_config(
        root.path(),
        "[storage]\npath = \"state\"\n[defaults]\ninterval = \"1h\"\n\
         [discovery]\nroot = \"infra\"\ninclude = [\"envs/*\", \"teams/*/live\"]\n\
         exclude = [\"envs/old-*\"]\nname = \"{path}\"\n\
         [environments.envs-lab]\ninterval = \"15m\"\n\
         [environments.manual]\ndir = \"infra/envs/prod\"\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let infra = infra.canonicalize().unwrap_or(infra);
    let names: Vec<String> = listed(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["envs-lab", "envs-prod", "manual", "teams-net-live"],
        "{out}"
    );
    for (name, dir) in listed(&out) {
        let expected = match name.as_str() {
            "envs-lab" => "envs/lab",
            "envs-prod" | "manual" => "envs/prod",
            _ => "teams/net/live",
        };
        assert!(
            dir.ends_with(expected) && Path::new(&dir).starts_with(root.path()),
            "{name}: {dir} in {}",
            infra.display()
        );
    }
    // The override keeps the found directory and sets its own interval; the others take
    // [defaults].
    let lab = out.split("environment envs-lab").nth(1).unwrap();
    assert!(lab.contains("every 15m"), "{out}");
    let prod = out.split("environment envs-prod").nth(1).unwrap();
    assert!(prod.contains("every 1h"), "{out}");
    assert!(out.contains("discovery: "), "{out}");
}

#[test]
fn a_name_given_to_two_directories_is_an_error_naming_both() {
    let root = tempfile::tempdir().unwrap();
    let infra = root.path().join("infra");
    module(&infra.join("teams/net/live"));
    module(&infra.join("teams/dns/live"));
    let (code, out, err) = check_config(
        root.path(),
        "[storage]\npath = \"state\"\n[discovery]\nroot = \"infra\"\ninclude = [\"teams/*/live\"]\n",
    );
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("discovery.name"), "{err}");
    assert!(
        err.contains("teams/net/live") && err.contains("teams/dns/live"),
        "{err}"
    );
    // A name the store cannot hold, and a root that is not there, are refused too.
    module(&infra.join("odd dir"));
    let (code, _, err) = check_config(
        root.path(),
        "[discovery]\nroot = \"infra\"\ninclude = [\"*\"]\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("odd dir") && err.contains("discovery.name"),
        "{err}"
    );
    let (code, _, err) = check_config(
        root.path(),
        "[discovery]\nroot = \"nowhere\"\ninclude = [\"*\"]\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("discovery.root") && err.contains("nowhere"),
        "{err}"
    );
}

/// A directory that appears is scanned within the discovery interval; one that disappears
/// takes its series with it (its history stays on disk).
#[test]
fn a_directory_added_or_removed_while_running_adds_or_removes_its_environment() {
    if !have_terraform() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let envs = root.path().join("envs");
    module(&envs.join("alpha"));
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        "[storage]\npath = \"state\"\n[defaults]\ninterval = \"1h\"\njitter = \"0s\"\n\
         [discovery]\nroot = \"envs\"\ninclude = [\"*\"]\ninterval = \"1s\"\n",
    )
    .unwrap();
    let exporter = Server::start(&config);
    let status = |env: &str| {
        metric(
            &exporter.metrics(),
            "tfdrift_status",
            &[("environment", env)],
        )
    };
    wait_until("alpha scanned", Duration::from_secs(60), || {
        status("alpha").is_some()
    });

    module(&envs.join("beta"));
    wait_until("beta found and scanned", Duration::from_secs(60), || {
        status("beta").is_some()
    });
    assert!(
        exporter
            .logged()
            .iter()
            .any(|l| l.contains("discovery: the environments changed") && l.contains("added=beta")),
        "{:?}",
        exporter.logged()
    );

    std::fs::remove_dir_all(envs.join("alpha")).unwrap();
    wait_until("alpha's series gone", Duration::from_secs(30), || {
        status("alpha").is_none()
    });
    assert!(status("beta").is_some());
    assert!(
        root.path().join("state/envs/alpha/history").is_dir(),
        "the history of a removed environment stays"
    );
}
