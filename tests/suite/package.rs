//! The Debian package that `cargo deb` builds (./test.sh builds it from the tests' own build
//! and names it in `PACKAGE_DEB`): what it holds, what lintian says of it, its systemd units
//! as `systemd-analyze verify` reads them, and its binary serving the demo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::server::{Server, metric};
use crate::support::{output_of, skip, tool};

/// The package's files unpacked (`dpkg-deb -x`) and its control files (`dpkg-deb -e`).
struct Unpacked {
    deb: PathBuf,
    _dir: tempfile::TempDir,
    root: PathBuf,
    control: PathBuf,
}

fn unpacked() -> Option<Unpacked> {
    let Some(deb) = std::env::var_os("PACKAGE_DEB").map(PathBuf::from) else {
        skip("no package: ./test.sh builds it (cargo deb) and sets PACKAGE_DEB");
        return None;
    };
    if !tool("dpkg-deb", "dpkg") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let control = dir.path().join("control");
    for (what, into) in [("-x", &root), ("-e", &control)] {
        let (code, _, err) = output_of(
            Command::new("dpkg-deb")
                .arg(what)
                .arg(&deb)
                .arg(into)
                .output()
                .unwrap(),
        );
        assert_eq!(code, 0, "dpkg-deb {what} {}: {err}", deb.display());
    }
    Some(Unpacked {
        deb,
        _dir: dir,
        root,
        control,
    })
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_package_holds_the_binary_the_hardened_unit_its_user_and_the_shared_files() {
    let Some(package) = unpacked() else { return };
    let root = &package.root;

    // The shipped files are the repository's, byte for byte.
    for (shipped, source) in [
        ("etc/tfdrift-exporter/config.toml", "examples/config.toml"),
        (
            "usr/share/tfdrift-exporter/tfdrift.rules.yml",
            "alert-rules/tfdrift.rules.yml",
        ),
        (
            "usr/share/tfdrift-exporter/tfdrift.tmpl",
            "examples/tfdrift.tmpl",
        ),
        (
            "usr/share/tfdrift-exporter/tfdrift.json",
            "dashboards/tfdrift.json",
        ),
        (
            "usr/lib/systemd/system/tfdrift-exporter.service",
            "examples/systemd/tfdrift-exporter.service",
        ),
        (
            "usr/lib/systemd/system/tfdrift-exporter.socket",
            "examples/systemd/tfdrift-exporter.socket",
        ),
        (
            "usr/lib/sysusers.d/tfdrift-exporter.conf",
            "examples/systemd/tfdrift-exporter.sysusers",
        ),
        (
            "etc/default/tfdrift-exporter",
            "debian/tfdrift-exporter.default",
        ),
        ("usr/share/doc/tfdrift-exporter/README.md", "README.md"),
    ] {
        assert_eq!(
            read(&root.join(shipped)),
            read(&repo().join(source)),
            "{shipped} is not {source}"
        );
    }

    // The configuration and the flags file are the operator's: dpkg keeps their edits.
    let conffiles = read(&package.control.join("conffiles"));
    let conffiles: Vec<&str> = conffiles.lines().collect();
    assert!(
        conffiles.contains(&"/etc/tfdrift-exporter/config.toml")
            && conffiles.contains(&"/etc/default/tfdrift-exporter"),
        "{conffiles:?}"
    );
    assert!(
        read(&root.join("etc/default/tfdrift-exporter")).contains("\nARGS=\"\"\n"),
        "the flags file sets ARGS"
    );

    // The unit: its own user, created by sysusers.d; hardened; flags from /etc/default.
    let unit = read(&root.join("usr/lib/systemd/system/tfdrift-exporter.service"));
    for line in [
        "User=tfdrift",
        "StateDirectory=tfdrift-exporter",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "EnvironmentFile=-/etc/default/tfdrift-exporter",
        "ExecStart=/usr/bin/tfdrift-exporter --config /etc/tfdrift-exporter/config.toml $ARGS",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    let sysusers = read(&root.join("usr/lib/sysusers.d/tfdrift-exporter.conf"));
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with("u tfdrift ") && l.contains(" /var/lib/tfdrift-exporter ")),
        "{sysusers}"
    );
    // The maintainer script creates the user at installation; nothing starts before the
    // configuration is edited, and an upgrade restarts only a running exporter.
    let postinst = read(&package.control.join("postinst"));
    assert!(
        postinst.contains("systemd-sysusers") && postinst.contains("try-restart"),
        "{postinst}"
    );
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");

    // The binary is this version's.
    let (code, out, err) = output_of(
        Command::new(root.join("usr/bin/tfdrift-exporter"))
            .arg("--version")
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "--version: {out}");
    let name = package
        .deb
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&format!("tfdrift-exporter_{}-", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
}

#[test]
fn lintian_finds_no_error_in_the_package() {
    let Some(package) = unpacked() else { return };
    if !tool("lintian", "lintian") {
        return;
    }
    let (code, out, err) = output_of(
        Command::new("lintian")
            .args(["--fail-on", "error"])
            .arg(&package.deb)
            .output()
            .unwrap(),
    );
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(code == 0 && errors.is_empty(), "lintian: {out}{err}");
}

#[test]
fn the_packaged_units_pass_systemd_analyze_verify() {
    let Some(package) = unpacked() else { return };
    if !tool("systemd-analyze", "systemd") {
        return;
    }
    // verify --root reads the units, the commands they run and the targets they name under
    // the root: the package's files, with the system's own targets and kill(1) beside them.
    let root = &package.root;
    let units = root.join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/usr/lib/systemd/system")
        .unwrap()
        .flatten()
    {
        let target = units.join(entry.file_name());
        if entry.file_type().unwrap().is_file() && !target.exists() {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
    std::fs::copy("/usr/bin/kill", root.join("usr/bin/kill")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    for unit in ["tfdrift-exporter.service", "tfdrift-exporter.socket"] {
        let (code, out, err) = output_of(
            Command::new("systemd-analyze")
                .arg("verify")
                .arg(format!("--root={}", root.display()))
                .arg(unit)
                .output()
                .unwrap(),
        );
        // verify exits 0 on an unknown key or a bad value too: only silence is a pass.
        assert!(
            code == 0 && out.trim().is_empty() && err.trim().is_empty(),
            "systemd-analyze verify {unit}: exit {code}\n{out}{err}"
        );
    }
}

#[test]
fn the_packaged_binary_serves_the_demo() {
    let Some(package) = unpacked() else { return };
    if !crate::support::have_terraform() {
        return;
    }
    // The demo as the README runs it, copied so that its .state stays out of the repository.
    let demo = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("examples/demo"), demo.path());
    let mut command = Command::new(package.root.join("usr/bin/tfdrift-exporter"));
    command.env("NO_COLOR", "1");
    let server = Server::start_command(command, &demo.path().join("config.toml"), "", &[]);
    let limit = Duration::from_secs(90);
    for (env, status) in [
        ("prod", "conform"),
        ("lab", "drift"),
        ("monitoring", "error"),
    ] {
        let report = server.wait_report(env, limit, |r| r["status"] == status);
        assert_eq!(report["environment"], env);
    }
    let metrics = server.metrics();
    let status = |env| metric(&metrics, "tfdrift_status", &[("environment", env)]);
    assert_eq!(
        (status("prod"), status("lab"), status("monitoring")),
        (Some(0.0), Some(1.0), Some(2.0)),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "tfdrift_changed_resources",
            &[("environment", "lab"), ("action", "update")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "tfdrift_scan_error",
            &[("environment", "monitoring"), ("reason", "state_backend")]
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// Copies a directory's files and folders (the demo's workspaces), skipping `.state`.
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_name() == ".state" || entry.file_name() == ".terraform" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
