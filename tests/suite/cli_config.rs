//! `check-config` and configuration errors as a user meets them.

use crate::support::{bin, output_of, run};

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("prod")).unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

#[test]
fn check_config_prints_effective_settings_and_next_three_runs() {
    // A rule still in force whatever the day the test runs (a fixed date would expire).
    let in_a_year = (chrono::Local::now().date_naive() + chrono::Days::new(365)).to_string();
    let (_dir, path) = write_config(
        &r#"
[defaults]
timeout = "2m"
jitter = "1m"
[environments.prod]
dir = "prod"
cron = "0 3 * * *"
var_files = ["prod.tfvars"]
[environments.lab]
dir = "lab"
interval = "6h"
refresh_only = true
[[environments.lab.ignore]]
address = "proxmox_vm_qemu.*"
attribute = "tags"
reason = "provider reorders tags"
expires = "IN_A_YEAR"
[[environments.lab.ignore]]
address = "tags"
reason = "a mistake: an attribute where an address belongs"
[[environments.lab.ignore]]
address = "proxmox_lxc.*"
reason = "old exception"
expires = "2024-01-01"
"#
        .replace("IN_A_YEAR", &in_a_year),
    );
    let (code, out, err) = run(&["check-config", "--config", &path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("environment prod") && out.contains("environment lab"),
        "{out}"
    );
    assert!(out.contains("cron \"0 3 * * *\""), "{out}");
    assert!(out.contains("every 6h"), "{out}");
    assert!(out.contains("timeout:      2m"), "{out}");
    assert!(out.contains("refresh only: true"), "{out}");
    assert!(out.contains("prod.tfvars"), "{out}");
    assert!(out.contains("provider reorders tags"), "{out}");
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("a mistake").contains("WARNING: this address pattern cannot match"),
        "{out}"
    );
    assert!(line("old exception").contains("EXPIRED"), "{out}");
    assert!(
        !line("provider reorders tags").contains("WARNING")
            && !line("provider reorders tags").contains("EXPIRED")
    );
    assert!(
        out.contains("not a directory"),
        "lab's missing dir is flagged: {out}"
    );
    let prod_runs = out
        .lines()
        .skip_while(|l| !l.contains("environment prod"))
        .find(|l| l.contains("next runs"))
        .unwrap();
    assert_eq!(prod_runs.matches("03:00:00").count(), 3, "{prod_runs}");
}

#[test]
fn configuration_errors_are_one_line_naming_file_key_and_expectation() {
    let cases = [
        (
            "[environments.prod]\ndir = \"prod\"\ntimeout = \"forever\"\n",
            "environments.prod.timeout",
            "duration",
        ),
        (
            "[environments.prod]\ndir = \"prod\"\nparallelism = \"ten\"\n",
            "environments.prod.parallelism",
            "u32",
        ),
        (
            "[environments.prod]\ndir = \"prod\"\nbogus = 1\n",
            "bogus",
            "unknown field",
        ),
        (
            "[web]\nlisten_address = \"nine\"\n[environments.prod]\ndir = \"prod\"\n",
            "web.listen_address",
            "address",
        ),
        (
            "[environments.prod]\ndir = \"prod\"\ninit = \"sometimes\"\n",
            "environments.prod.init",
            "auto",
        ),
        ("[environments.prod\n", "config.toml", "TOML"),
        ("", "environments", "no environment"),
    ];
    for (text, key, expected) in cases {
        let (_dir, path) = write_config(text);
        let (code, out, err) = run(&["check-config", "--config", &path]);
        assert_eq!(code, 78, "EX_CONFIG for {text:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("config.toml"), "names the file: {err}");
        assert!(err.contains(key), "names {key}: {err}");
        assert!(err.contains(expected), "says {expected}: {err}");
    }
    let (code, _, err) = run(&["check-config", "--config", "/nonexistent/config.toml"]);
    assert_eq!(code, 78);
    assert!(err.contains("/nonexistent/config.toml"), "{err}");
}

#[test]
fn environment_variables_override_the_file() {
    let (_dir, path) = write_config("[environments.prod]\ndir = \"prod\"\ninterval = \"6h\"\n");
    let out = bin()
        .args(["check-config", "--config", &path])
        .env("TFDRIFT_ENVIRONMENTS__PROD__INTERVAL", "15m")
        .env("TFDRIFT_DEFAULTS__PARALLELISM", "3")
        .output()
        .unwrap();
    let (code, out, err) = output_of(out);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("every 15m"), "{out}");
    assert!(out.contains("parallelism:  3"), "{out}");

    let bad = bin()
        .args(["check-config", "--config", &path])
        .env("TFDRIFT_DEFAULTS__TIMEOUT", "later")
        .output()
        .unwrap();
    let (code, _, err) = output_of(bad);
    assert_eq!(code, 78);
    assert!(
        err.to_lowercase().contains("defaults.timeout") && err.contains("TFDRIFT_"),
        "{err}"
    );
}

/// Regression: an empty override was taken as a path (`TFDRIFT_STORAGE__PATH=` stored in
/// the configuration's directory), one that names no key was ignored, and a bad value from a
/// variable was blamed on the TOML file. Each is now an error that names the variable.
#[test]
fn an_empty_unknown_or_invalid_environment_variable_is_an_error_naming_it() {
    let (_dir, path) = write_config("[environments.prod]\ndir = \"prod\"\n");
    let cases = [
        ("TFDRIFT_STORAGE__PATH", "", "empty"),
        (
            "TFDRIFT_ENVIRONMENTS__../X__DIR",
            "/tmp",
            "not an environment name",
        ),
        ("TFDRIFT_DEFAULTS____INTERVAL", "1h", "is not a key"),
        ("TFDRIFT_DEFAULTS__TIMEOUT", "1000d", "out of range"),
        (
            "TFDRIFT_ENVIRONMENTS__PROD__INTERVAL",
            "1ms",
            "out of range",
        ),
        (
            "TFDRIFT_SCHEDULER__MAX_CONCURRENT_SCANS",
            "many",
            "invalid type",
        ),
        ("TFDRIFT_NO_SUCH_SECTION", "1", "unknown field"),
    ];
    for (var, value, says) in cases {
        let out = bin()
            .args(["check-config", "--config", &path])
            .env(var, value)
            .output()
            .unwrap();
        let (code, _, err) = output_of(out);
        assert_eq!(code, 78, "{var}={value:?}: {err}");
        assert!(
            err.contains(&format!("environment variable {var}")),
            "{var}={value:?} names the variable: {err}"
        );
        assert!(err.contains(says), "{var}={value:?} says {says:?}: {err}");
        assert!(
            !err.contains("config.toml"),
            "not blamed on the file: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

/// Regression: `check-config | true` panicked ("failed printing to stdout: Broken pipe",
/// exit 101) in 19 of 20 runs. A closed pipe ends the command quietly with its own code.
#[test]
fn check_config_into_a_closed_pipe_ends_quietly_every_time() {
    let (_dir, path) = write_config("[environments.prod]\ndir = \"prod\"\n");
    for run in 0..20 {
        let mut child = bin()
            .args(["check-config", "--config", &path])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command writes, as `| true` does.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "run {run}: {err}");
        assert_eq!(out.status.code(), Some(0), "run {run}: {err}");
    }
}

#[test]
fn scanning_an_unknown_environment_is_a_usage_error() {
    let (_dir, path) = write_config("[environments.prod]\ndir = \"prod\"\n");
    let (code, _, err) = run(&["scan", "--config", &path, "staging"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("staging") && err.contains("prod"), "{err}");
}
