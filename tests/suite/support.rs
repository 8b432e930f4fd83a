//! Helpers: the binary under test, the shared fixtures, real terraform, temp workspaces.
//! A test that cannot find what it needs says SKIP on stderr; under CI (`CI` set) it fails
//! instead, so CI never skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The exporter binary built for these tests.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tfdrift-exporter"));
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

/// Runs the binary and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    output_of(bin().args(args).output().expect("the test binary runs"))
}

pub fn output_of(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Skips (locally) or fails (CI) a test whose requirement is missing.
pub fn skip(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI must not skip: {what}");
    }
    // Straight to the process's standard error: the test harness captures `eprintln!` and
    // shows it only for a failing test, so a skip would pass unseen.
    let name = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "SKIP: {name}: {what}");
}

/// True when the command `name` runs (`name --version`); otherwise skips, naming the
/// Debian `package` that has it.
pub fn tool(name: &str, package: &str) -> bool {
    let ok = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        skip(&format!(
            "{name} is not installed (Debian package {package})"
        ));
    }
    ok
}

/// `tests/fixtures/opentofu-show-json`: the plan and stream fixtures, inside the
/// repository (their origins and licence in its PROVENANCE.md and LICENSE-MPL-2.0.txt).
pub fn fixtures() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opentofu-show-json");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(&format!("fixtures not found at {}", dir.display()));
        None
    }
}

/// True when `terraform` is on PATH.
pub fn have_terraform() -> bool {
    let ok = Command::new("terraform")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip("terraform is not on PATH");
    }
    ok
}

/// Runs terraform in `dir` for test setup (never through the exporter).
pub fn terraform(dir: &Path, args: &[&str]) {
    let out = Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("terraform runs");
    assert!(
        out.status.success(),
        "terraform {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temp directory holding a workspace `ws/` and a configuration `config.toml` whose
/// storage is `state/` next to it.
pub struct Workspace {
    pub root: tempfile::TempDir,
}

impl Workspace {
    pub fn new(main_tf: &str) -> Workspace {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join("ws")).unwrap();
        std::fs::write(root.path().join("ws/main.tf"), main_tf).unwrap();
        Workspace { root }
    }

    pub fn ws(&self) -> PathBuf {
        self.root.path().join("ws")
    }

    pub fn storage(&self) -> PathBuf {
        self.root.path().join("state")
    }

    /// Writes `config.toml` with one environment `lab` whose extra settings are `extra`.
    pub fn config(&self, extra: &str) -> PathBuf {
        let path = self.root.path().join("config.toml");
        let text = format!(
            "[storage]\npath = \"state\"\n[defaults]\ninterval = \"1h\"\nkill_grace = \"2s\"\n[environments.lab]\ndir = \"ws\"\n{extra}\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `scan --format json` of this workspace: (exit code, the one report, stderr, seconds).
    pub fn scan(&self, config: &Path) -> (i32, serde_json::Value, String, Duration) {
        let start = Instant::now();
        let (code, stdout, stderr) = run(&[
            "scan",
            "--format",
            "json",
            "--config",
            config.to_str().unwrap(),
        ]);
        let elapsed = start.elapsed();
        let reports: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("scan printed no JSON ({e}): {stdout}\n{stderr}"));
        (code, reports[0].clone(), stderr, elapsed)
    }
}

/// True while some process has `needle` in its environment (how the tests find processes a
/// scan started: each test's storage path is unique and lands in `TF_DATA_DIR`).
pub fn process_with_env(needle: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(environ) = std::fs::read(entry.path().join("environ"))
            && String::from_utf8_lossy(&environ).contains(needle)
        {
            return Some(pid);
        }
    }
    None
}

/// Writes an executable shell script (a wrapper standing in for `terraform`).
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The Python that has moto (`MOTO_PYTHON`, set by ./test.sh to its virtualenv), else
/// `python3`.
pub fn python() -> std::ffi::OsString {
    std::env::var_os("MOTO_PYTHON").unwrap_or_else(|| "python3".into())
}

/// A `terraform show -json` plan of `n` updates of `terraform_data.vm[i]` (memory 3072 ->
/// 2048), for stand-in terraforms.
pub fn plan_of_updates(n: usize) -> String {
    let changes: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"address":"terraform_data.vm[{i}]","mode":"managed","type":"terraform_data","name":"vm","index":{i},"change":{{"actions":["update"],"before":{{"memory":3072}},"after":{{"memory":2048}},"after_unknown":{{}},"before_sensitive":{{}},"after_sensitive":{{}}}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"format_version":"1.2","terraform_version":"1.11.4","resource_changes":[{}]}}"#,
        changes.join(",")
    )
}
