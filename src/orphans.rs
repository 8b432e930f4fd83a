//! Terraform processes that outlived the scan that started them: a grandchild that left the
//! process group (`setsid`), or everything a scan had running when the exporter was killed
//! (`kill -9`, OOM), whose deadline died with it. Every process a scan starts carries
//! [`VAR`] in its environment (inherited by its children, whatever group they move to):
//! which storage, which exporter process (pid and start time) and which environment. After
//! each command the exporter kills what is left of it; at start it gives the processes of a
//! dead exporter the ending of a timed-out scan: SIGINT (terraform releases its state lock),
//! `kill_grace`, SIGINT, then SIGKILL.
//!
//! Linux: processes are found through `/proc/<pid>/environ` (readable for our own user).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

/// The environment variable that tags every process a scan starts.
pub const VAR: &str = "TFDRIFT_RUN";

/// How long an orphan gets after the second SIGINT before SIGKILL.
const AFTER_SECOND_INTERRUPT: Duration = Duration::from_secs(2);

/// The tag of this exporter process's commands for one environment:
/// `<storage digest>.<pid>.<start time>.<environment>`.
pub fn tag(storage: &Path, env: &str) -> String {
    let me = std::process::id();
    format!(
        "{}.{me}.{}.{env}",
        storage_digest(storage),
        start_time(me).unwrap_or_default()
    )
}

#[allow(
    clippy::disallowed_methods,
    reason = "called by tag(), which the scan runs in its spawn_blocking gather step"
)]
fn storage_digest(storage: &Path) -> String {
    let path = std::fs::canonicalize(storage).unwrap_or_else(|_| storage.to_owned());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`, in clock ticks since boot):
/// with the pid, it names one process even after the pid is reused.
#[allow(
    clippy::disallowed_methods,
    reason = "/proc, read in spawn_blocking (end_dead_exporters at start, kill_left_by after a command)"
)]
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Every process carrying a tag, with the tag.
#[allow(
    clippy::disallowed_methods,
    reason = "/proc, read in spawn_blocking (end_dead_exporters at start, kill_left_by after a command)"
)]
fn tagged() -> Vec<(u32, String)> {
    let prefix = format!("{VAR}=");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let found = environ
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_bytes()));
        if let Some(tag) = found {
            out.push((pid, String::from_utf8_lossy(tag).into_owned()));
        }
    }
    out
}

/// Processes still carrying exactly `tag` (what a finished command left behind).
fn left_by(tag: &str) -> Vec<u32> {
    tagged()
        .into_iter()
        .filter(|(_, t)| t == tag)
        .map(|(pid, _)| pid)
        .collect()
}

/// Kills at once what a finished command left behind (blocking, quick).
pub fn kill_left_by(tag: &str) {
    for pid in left_by(tag) {
        tracing::warn!(
            pid,
            "a process of a finished scan outlived its process group: killing it"
        );
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// The processes of exporters that are gone, started for `storage`, by environment.
pub fn of_dead_exporters(storage: &Path) -> BTreeMap<String, Vec<u32>> {
    let digest = storage_digest(storage);
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (pid, tag) in tagged() {
        let mut parts = tag.splitn(4, '.');
        let (Some(d), Some(owner), Some(started), Some(env)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if d != digest {
            continue;
        }
        let (Ok(owner), Ok(started)) = (owner.parse::<u32>(), started.parse::<u64>()) else {
            continue;
        };
        let alive = start_time(owner) == Some(started);
        if !alive {
            out.entry(env.to_owned()).or_default().push(pid);
        }
    }
    out
}

/// Gives `pids` the ending of a timed-out scan and waits for it (blocking): SIGINT,
/// `kill_grace`, SIGINT, two seconds, SIGKILL. Returns how many had to be killed.
#[allow(
    clippy::disallowed_methods,
    reason = "/proc and the grace wait, in spawn_blocking (end_dead_exporters at start, kill_left_by after a command)"
)]
pub fn end(pids: &[u32], kill_grace: Duration) -> usize {
    let signal = |s: Signal| {
        for pid in pids {
            let _ = kill(Pid::from_raw(*pid as i32), s);
        }
    };
    let gone = |limit: Duration| {
        let deadline = std::time::Instant::now() + limit;
        loop {
            // A zombie (not reaped by anyone yet) counts as gone: it holds nothing.
            let alive = pids.iter().filter(|p| running(**p)).count();
            if alive == 0 || std::time::Instant::now() >= deadline {
                return alive;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    signal(Signal::SIGINT);
    if gone(kill_grace) == 0 {
        return 0;
    }
    signal(Signal::SIGINT);
    if gone(AFTER_SECOND_INTERRUPT) == 0 {
        return 0;
    }
    let left = pids.iter().filter(|p| running(**p)).count();
    signal(Signal::SIGKILL);
    gone(Duration::from_secs(5));
    left
}

/// Ends every process that a dead exporter left running for `storage` (blocking: up to the
/// longest `kill_grace` + a few seconds), each environment's with its own `kill_grace`
/// (30 s for an environment no longer configured), all environments at once.
pub fn end_dead_exporters(storage: &Path, kill_grace: &BTreeMap<String, Duration>) {
    let found = of_dead_exporters(storage);
    std::thread::scope(|scope| {
        for (env, pids) in &found {
            let grace = kill_grace
                .get(env)
                .copied()
                .unwrap_or(Duration::from_secs(30));
            tracing::warn!(environment = %env, processes = pids.len(), kill_grace = %crate::schedule::human(grace), "terraform of a dead exporter is still running: interrupting it as a timed-out scan (SIGINT, kill_grace, SIGINT, SIGKILL)");
            scope.spawn(move || {
                let killed = end(pids, grace);
                if killed > 0 {
                    tracing::warn!(environment = %env, killed, "processes of a dead exporter ignored two interrupts: killed (a remote state lock may be left: see the README)");
                } else {
                    tracing::info!(environment = %env, "the processes of the dead exporter have ended");
                }
            });
        }
    });
}

/// True while `pid` exists and is not a zombie.
#[allow(
    clippy::disallowed_methods,
    reason = "/proc, read in spawn_blocking (end_dead_exporters at start, kill_left_by after a command)"
)]
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_this_process_and_it_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        let tag = tag(dir.path(), "lab");
        let parts: Vec<&str> = tag.split('.').collect();
        assert_eq!(parts.len(), 4, "{tag}");
        assert_eq!(parts[1], std::process::id().to_string());
        assert_eq!(parts[3], "lab");
        assert_eq!(
            start_time(std::process::id())
                .map(|t| t.to_string())
                .as_deref(),
            Some(parts[2])
        );
        assert!(of_dead_exporters(dir.path()).is_empty());
    }
}
