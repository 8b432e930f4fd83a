//! The fault suite: terraform killed mid-plan, a stream cut in the middle of a line,
//! garbage and 100 MB on stderr, storage removed or full at run time, a corrupt stored
//! report, a thousand rapid scan requests. In each the exporter keeps serving, reports the
//! fault, and loses no earlier scan.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::real_terraform::applied_vm;
use crate::server::{Server, metric};
use crate::support::{Workspace, have_terraform, script, skip};

/// A wrapper around the real terraform whose `plan` misbehaves as the file `mode` next to
/// it says (anything else runs terraform as it is).
fn fake_terraform(dir: &Path) -> PathBuf {
    let path = dir.join("fake-terraform");
    script(
        &path,
        &format!(
            r#"mode=$(cat "{mode}" 2>/dev/null)
if [ "$1" = plan ]; then
  case "$mode" in
    kill)    printf '%s\n' '{{"@level":"info","@message":"Terraform 1.11.4","type":"version","terraform":"1.11.4","ui":"1.2"}}'
             kill -9 $$ ;;
    cut)     printf '%s\n' '{{"@level":"info","@message":"Terraform 1.11.4","type":"version","terraform":"1.11.4","ui":"1.2"}}'
             printf '%s' '{{"@level":"error","@message":"Error: Failed to get existing workspa'
             exit 1 ;;
    garbage) head -c 1000000 /dev/urandom
             head -c 100000000 /dev/zero | tr '\0' 'x' >&2
             exit 1 ;;
  esac
fi
exec terraform "$@"
"#,
            mode = dir.join("mode").display()
        ),
    );
    path
}

fn set_mode(dir: &Path, mode: &str) {
    std::fs::write(dir.join("mode"), mode).unwrap();
}

/// Triggers a scan of lab and waits for a report other than `previous`.
fn scan_after(server: &Server, previous: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, _, body) = server.request("POST", "/scan/lab", None);
        if status == 202 {
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(500));
    }
    let detail = server.wait_detail(Duration::from_secs(120), |d| {
        d["environments"]["lab"]["id"]
            .as_str()
            .is_some_and(|id| id != previous)
    });
    detail["environments"]["lab"].clone()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The first scan is kept, readable, through every later fault.
fn first_scan_kept(server: &Server, first: &str) {
    let (status, report) = server.get_json(&format!("/history/lab/{first}"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "conform");
    let (_, history) = server.get_json("/history?environment=lab");
    assert!(
        history["scans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == first)
    );
    assert_eq!(server.request("GET", "/-/healthy", None).0, 200);
}

#[test]
fn terraform_killed_a_cut_stream_and_a_flood_of_garbage_are_errors_and_nothing_is_lost() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    let fake = fake_terraform(w.root.path());
    let config = w.config(&format!(
        "run_on_start = false\nbinary = \"{}\"",
        fake.display()
    ));
    let server = Server::start(&config);
    set_mode(w.root.path(), "ok");
    let first = scan_after(&server, "");
    assert_eq!(first["status"], "conform", "{first}");
    let first = first["id"].as_str().unwrap().to_owned();
    let mut last = first.clone();

    for (mode, expect) in [
        ("kill", "killed by signal 9"),
        ("cut", "Failed to get existing workspa"),
        ("garbage", "exited with code 1"),
    ] {
        set_mode(w.root.path(), mode);
        let r = scan_after(&server, &last);
        assert_eq!(r["status"], "error", "{mode}: {r}");
        let text = format!("{} {}", r["error"]["summary"], r["error"]["detail"]);
        assert!(text.contains(expect), "{mode}: {text}");
        // The error text is bounded: 100 MB of stderr is not kept.
        assert!(
            r.to_string().len() < 64 * 1024,
            "{mode}: {} bytes",
            r.to_string().len()
        );
        last = r["id"].as_str().unwrap().to_owned();
        first_scan_kept(&server, &first);
        assert_eq!(
            metric(
                &server.metrics(),
                "tfdrift_status",
                &[("environment", "lab")]
            ),
            Some(2.0)
        );
    }
    let rss = rss_kib(server.pid());
    assert!(
        rss < 100 * 1024,
        "resident memory after 100 MB of stderr: {rss} KiB"
    );
    set_mode(w.root.path(), "ok");
    let back = scan_after(&server, &last);
    assert_eq!(back["status"], "conform", "{back}");
}

#[test]
fn storage_removed_or_full_at_run_time_is_reported_and_serving_goes_on() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    let storage = w.storage();
    std::fs::create_dir_all(&storage).unwrap();
    // A 4 MiB tmpfs as storage.path, filled up later (tests run as root, where a read-only
    // mode would not stop writes).
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&storage)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        skip("cannot mount a tmpfs for the full-disk test (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(storage.clone());
    let config = w.config("run_on_start = false");
    let server = Server::start(&config);
    let first = scan_after(&server, "");
    assert_eq!(first["status"], "conform", "{first}");
    let first = first["id"].as_str().unwrap().to_owned();

    // Full: the next report cannot be written (nor terraform's plan file).
    let filler = storage.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let full = scan_after(&server, &first);
    let m = server.metrics();
    assert!(
        full["status"] == "error"
            || metric(
                &m,
                "tfdrift_storage_errors_total",
                &[("environment", "lab")]
            ) >= Some(1.0),
        "the full disk shows: {full}\n{m}"
    );
    first_scan_kept(&server, &first);
    let stored = std::fs::read(storage.join(format!("envs/lab/history/{first}.json"))).unwrap();
    assert!(
        serde_json::from_slice::<Value>(&stored).is_ok(),
        "the earlier report is whole"
    );

    // Space again: scans are stored again.
    std::fs::remove_file(&filler).unwrap();
    let again = scan_after(&server, full["id"].as_str().unwrap_or(""));
    assert_eq!(again["status"], "conform", "{again}");
    assert!(
        storage
            .join(format!(
                "envs/lab/history/{}.json",
                again["id"].as_str().unwrap()
            ))
            .is_file()
    );

    // Removed: the directories are made again at the next scan.
    for entry in std::fs::read_dir(&storage).unwrap().flatten() {
        let _ = std::fs::remove_dir_all(entry.path());
    }
    let after = scan_after(&server, again["id"].as_str().unwrap());
    assert_eq!(after["status"], "conform", "{after}");
    assert!(
        storage
            .join(format!(
                "envs/lab/history/{}.json",
                after["id"].as_str().unwrap()
            ))
            .is_file()
    );
    assert_eq!(server.request("GET", "/-/healthy", None).0, 200);
}

#[test]
fn a_corrupt_stored_report_is_skipped_and_the_one_before_is_restored() {
    if !have_terraform() {
        return;
    }
    let w = applied_vm();
    let config = w.config("run_on_start = false");
    let server = Server::start(&config);
    let first = scan_after(&server, "");
    let first = first["id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1100));
    let second = scan_after(&server, &first);
    let second = second["id"].as_str().unwrap().to_owned();
    drop(server);
    let path = w.storage().join(format!("envs/lab/history/{second}.json"));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let server = Server::start(&config);
    let (status, detail) = server.get_json("/detail/lab");
    assert_eq!(status, 200);
    assert_eq!(
        detail["id"],
        first.as_str(),
        "the last readable scan is restored"
    );
    let (_, history) = server.get_json("/history?environment=lab");
    let ids: Vec<&str> = history["scans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, [first.as_str()], "the corrupt one is skipped");
    assert!(
        server
            .logged()
            .iter()
            .any(|l| l.contains(&second) && l.contains("level=warn")),
        "a warning names the file: {:#?}",
        server.logged()
    );
}

#[test]
fn a_thousand_rapid_scan_requests_never_run_two_scans_of_one_environment() {
    if !have_terraform() {
        return;
    }
    let w = Workspace::new(crate::real_terraform::VM);
    // A plan that records overlapping runs and takes a second.
    let wrapper = w.root.path().join("slow-terraform");
    let marks = w.root.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    script(
        &wrapper,
        &format!(
            "if [ \"$1\" = plan ]; then\n  mkdir \"{m}/running\" 2>/dev/null || echo overlap >> \"{m}/overlaps\"\n  echo run >> \"{m}/runs\"\n  sleep 1\n  terraform \"$@\"; code=$?\n  rmdir \"{m}/running\"\n  exit $code\nfi\nexec terraform \"$@\"\n",
            m = marks.display()
        ),
    );
    let config = w.config(&format!(
        "run_on_start = false\nbinary = \"{}\"",
        wrapper.display()
    ));
    let server = Server::start(&config);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..1000 {
        *statuses
            .entry(server.request("POST", "/scan/lab", None).0)
            .or_insert(0) += 1;
    }
    assert_eq!(
        statuses.keys().copied().collect::<Vec<u16>>(),
        [202, 429],
        "accepted (started or joined) or rate-limited: {statuses:?}"
    );
    server.wait_detail(Duration::from_secs(60), |d| {
        d["environments"]["lab"]["status"] == "drift"
    });
    std::thread::sleep(Duration::from_secs(3));
    let runs = std::fs::read_to_string(marks.join("runs"))
        .unwrap()
        .lines()
        .count();
    assert!(
        !marks.join("overlaps").exists(),
        "two plans of lab ran at once"
    );
    assert!(runs <= statuses[&202], "{runs} plans for {statuses:?}");
    assert_eq!(server.request("GET", "/-/healthy", None).0, 200);
}
