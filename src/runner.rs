//! Drives terraform/tofu. The allow-list of subcommands lives here and only here
//! ([`TfCommand`] can only be built for `init`, `plan`, `show`, `state pull` and `version`),
//! every run gets its own process group, and one deadline covers the whole scan: at the
//! deadline the group gets SIGINT (terraform releases its state lock), then after
//! `kill_grace` a second SIGINT, then SIGKILL. No process of the group outlives a run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::cancel::{CancellationToken, Cancelled};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep_until, timeout};

use crate::plan::stream::{StreamSummary, push_bounded};

/// How long terraform gets to exit after the second SIGINT ("Exiting immediately") before
/// SIGKILL.
const AFTER_SECOND_INTERRUPT: Duration = Duration::from_secs(2);
/// Upper bound of a `show -json` document kept in memory.
const MAX_DOCUMENT: u64 = 2 * 1024 * 1024 * 1024;

/// The only terraform subcommands the exporter ever runs (interface §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand {
    Init,
    Plan,
    Show,
    StatePull,
    Version,
}

impl Subcommand {
    fn words(self) -> &'static [&'static str] {
        match self {
            Subcommand::Init => &["init"],
            Subcommand::Plan => &["plan"],
            Subcommand::Show => &["show"],
            Subcommand::StatePull => &["state", "pull"],
            Subcommand::Version => &["version"],
        }
    }
}

/// The arguments of `plan` that come from the configuration.
#[derive(Debug, Clone)]
pub struct PlanArgs<'a> {
    pub lock_timeout: Duration,
    pub plan_file: &'a Path,
    pub refresh_only: bool,
    pub parallelism: u32,
    pub var_files: &'a [PathBuf],
}

/// A terraform command line; its fields are private so that nothing outside this module can
/// make one that is not on the allow-list.
#[derive(Debug, Clone)]
pub struct TfCommand {
    subcommand: Subcommand,
    args: Vec<OsString>,
}

impl TfCommand {
    /// `init -input=false -no-color -lockfile=readonly [-reconfigure] [-backend-config=...]`.
    /// `reconfigure` follows a changed backend without touching any state (never
    /// `-migrate-state`, which writes state).
    pub fn init(backend_config: &[String], reconfigure: bool) -> TfCommand {
        let mut args: Vec<OsString> = ["-input=false", "-no-color", "-lockfile=readonly"]
            .map(OsString::from)
            .to_vec();
        if reconfigure {
            args.push("-reconfigure".into());
        }
        args.extend(
            backend_config
                .iter()
                .map(|b| OsString::from(format!("-backend-config={b}"))),
        );
        TfCommand {
            subcommand: Subcommand::Init,
            args,
        }
    }

    /// `plan -input=false -no-color -json -detailed-exitcode -lock-timeout=.. -out=..`
    pub fn plan(p: &PlanArgs<'_>) -> TfCommand {
        let mut args: Vec<OsString> = ["-input=false", "-no-color", "-json", "-detailed-exitcode"]
            .map(OsString::from)
            .to_vec();
        args.push(format!("-lock-timeout={}s", p.lock_timeout.as_secs()).into());
        let mut out = OsString::from("-out=");
        out.push(p.plan_file);
        args.push(out);
        if p.refresh_only {
            args.push("-refresh-only".into());
        }
        args.push(format!("-parallelism={}", p.parallelism).into());
        for f in p.var_files {
            let mut arg = OsString::from("-var-file=");
            arg.push(f);
            args.push(arg);
        }
        TfCommand {
            subcommand: Subcommand::Plan,
            args,
        }
    }

    /// `show -json PLANFILE`
    pub fn show(plan_file: &Path) -> TfCommand {
        TfCommand {
            subcommand: Subcommand::Show,
            args: vec!["-json".into(), plan_file.into()],
        }
    }

    /// `state pull` (unmanaged-resource check).
    pub fn state_pull() -> TfCommand {
        TfCommand {
            subcommand: Subcommand::StatePull,
            args: Vec::new(),
        }
    }

    /// `version -json`
    pub fn version() -> TfCommand {
        TfCommand {
            subcommand: Subcommand::Version,
            args: vec!["-json".into()],
        }
    }

    /// The full argument vector after the binary.
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = self.subcommand.words().iter().map(OsString::from).collect();
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// Where and how a command runs.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub binary: &'a str,
    pub dir: &'a Path,
    /// Added to the process environment.
    pub env: &'a [(String, String)],
    /// End of the whole scan.
    pub deadline: Instant,
    pub kill_grace: Duration,
    /// Cancelled when the exporter shuts down or the environment is removed: terraform is
    /// interrupted the same way as at the deadline.
    pub cancel: &'a CancellationToken,
}

/// What to do with standard output.
#[derive(Debug, Clone)]
pub enum StdoutMode {
    /// A `-json` stream: parsed line by line, nothing else kept.
    Stream,
    /// A document (`show -json`, `state pull`): kept whole.
    Document,
    /// Human text (`init`): kept bounded.
    Text,
    /// A large document (`show -json`): written to this file (in the scan's private
    /// directory), never held in memory.
    File(PathBuf),
}

/// The result of one command.
#[derive(Debug)]
pub struct Output {
    pub status: Option<ExitStatus>,
    /// The deadline passed and the process group was interrupted.
    pub timed_out: bool,
    pub stream: StreamSummary,
    pub document: Vec<u8>,
    /// Bounded head of standard error (and of human standard output).
    pub text: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// A command that could not be started or watched.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binary {binary:?} not found (set binary to terraform, tofu or an absolute path)")]
    NotFound { binary: String },
    #[error("cannot start {binary:?} in {}: {source}", dir.display())]
    Spawn {
        binary: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The token was cancelled and the process group was interrupted.
    #[error("interrupted: the scan was cancelled")]
    Cancelled(#[from] Cancelled),
    #[error("reading the output of {binary:?}: {source}")]
    Io {
        binary: String,
        source: std::io::Error,
    },
}

/// Runs one allow-listed command to its end or to the deadline.
pub async fn run(
    cmd: &TfCommand,
    inv: &Invocation<'_>,
    mode: StdoutMode,
) -> Result<Output, RunError> {
    let mut command = Command::new(inv.binary);
    command.args(cmd.argv()).current_dir(inv.dir);
    // TF_CLI_ARGS and the like would change what the command does (crate::environ).
    for name in crate::environ::inherited() {
        command.env_remove(name);
    }
    command
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(source) => {
            // "Not found" is the binary, unless the directory is missing (asked off the
            // runtime's threads).
            let dir_exists = tokio::fs::metadata(inv.dir).await.is_ok_and(|m| m.is_dir());
            return Err(match source.kind() {
                std::io::ErrorKind::NotFound if dir_exists => RunError::NotFound {
                    binary: inv.binary.to_owned(),
                },
                _ => RunError::Spawn {
                    binary: inv.binary.to_owned(),
                    dir: inv.dir.to_owned(),
                    source,
                },
            });
        }
    };
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));

    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_task = tokio::spawn(read_stdout(stdout, mode));
    let err_task = tokio::spawn(read_text(stderr));

    let (status, stop) = wait_or_interrupt(&mut child, pgid, inv).await;
    // Whatever terraform left behind in its group (provider plugins) goes too, and so
    // does anything of this run that left the group (`setsid`).
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    if let Some((_, tag)) = inv.env.iter().find(|(k, _)| k == crate::orphans::VAR) {
        let tag = tag.clone();
        let _ = tokio::task::spawn_blocking(move || crate::orphans::kill_left_by(&tag)).await;
    }

    let (stream, document, out_text) = finish(
        inv.binary,
        out_task,
        (StreamSummary::default(), Vec::new(), String::new()),
    )
    .await?;
    let mut text = finish(inv.binary, err_task, String::new()).await?;
    if stop == Some(Stop::Cancelled) {
        return Err(RunError::Cancelled(Cancelled));
    }
    if !out_text.is_empty() {
        text.insert_str(0, &out_text);
    }
    Ok(Output {
        status,
        timed_out: stop == Some(Stop::Deadline),
        stream,
        document,
        text,
    })
}

/// Collects a reader task; one still blocked 10 s after the group was killed (a pipe held
/// open by a process that escaped the group) is abandoned with `empty`.
async fn finish<T>(
    binary: &str,
    task: tokio::task::JoinHandle<std::io::Result<T>>,
    empty: T,
) -> Result<T, RunError> {
    let io_err = |source| RunError::Io {
        binary: binary.to_owned(),
        source,
    };
    match timeout(Duration::from_secs(10), task).await {
        Err(_) => Ok(empty),
        Ok(Err(join)) => Err(io_err(std::io::Error::other(join))),
        Ok(Ok(result)) => result.map_err(io_err),
    }
}

/// Why a run was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Cancelled,
}

async fn wait_or_interrupt(
    child: &mut Child,
    pgid: Option<Pid>,
    inv: &Invocation<'_>,
) -> (Option<ExitStatus>, Option<Stop>) {
    let stop = tokio::select! {
        status = child.wait() => return (status.ok(), None),
        _ = sleep_until(inv.deadline) => Stop::Deadline,
        _ = inv.cancel.cancelled() => Stop::Cancelled,
    };
    let signal = |s: Signal| {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, s);
        }
    };
    tracing::warn!(binary = inv.binary, dir = %inv.dir.display(), why = ?stop, "interrupting terraform");
    signal(Signal::SIGINT);
    if let Ok(status) = timeout(inv.kill_grace, child.wait()).await {
        return (status.ok(), Some(stop));
    }
    signal(Signal::SIGINT);
    if let Ok(status) = timeout(AFTER_SECOND_INTERRUPT, child.wait()).await {
        return (status.ok(), Some(stop));
    }
    tracing::warn!(
        binary = inv.binary,
        "terraform ignored two interrupts: killing its process group"
    );
    signal(Signal::SIGKILL);
    (child.wait().await.ok(), Some(stop))
}

async fn read_stdout(
    stdout: impl AsyncRead + Unpin,
    mode: StdoutMode,
) -> std::io::Result<(StreamSummary, Vec<u8>, String)> {
    match mode {
        StdoutMode::Stream => {
            let mut summary = StreamSummary::default();
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                // Bounded line reads: a binary printing one endless line cannot fill memory.
                let n = (&mut reader)
                    .take(16 * 1024 * 1024)
                    .read_until(b'\n', &mut line)
                    .await?;
                if n == 0 {
                    break;
                }
                summary.cut = line.last() != Some(&b'\n');
                summary.push_line(&String::from_utf8_lossy(&line));
            }
            Ok((summary, Vec::new(), String::new()))
        }
        StdoutMode::Document => {
            let mut document = Vec::new();
            stdout.take(MAX_DOCUMENT).read_to_end(&mut document).await?;
            Ok((StreamSummary::default(), document, String::new()))
        }
        StdoutMode::File(path) => {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .await?;
            tokio::io::copy(&mut stdout.take(MAX_DOCUMENT), &mut file).await?;
            tokio::io::AsyncWriteExt::flush(&mut file).await?;
            Ok((StreamSummary::default(), Vec::new(), String::new()))
        }
        StdoutMode::Text => Ok((
            StreamSummary::default(),
            Vec::new(),
            read_text(stdout).await?,
        )),
    }
}

/// Reads to the end, keeping only a bounded head.
async fn read_text(stream: impl AsyncRead + Unpin) -> std::io::Result<String> {
    let mut text = String::new();
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(1024 * 1024)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            break;
        }
        push_bounded(&mut text, String::from_utf8_lossy(&line).trim_end());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_command_line_is_the_documented_one() {
        let files = [PathBuf::from("prod.tfvars")];
        let cmd = TfCommand::plan(&PlanArgs {
            lock_timeout: Duration::from_secs(60),
            plan_file: Path::new("/tmp/p/plan.tfplan"),
            refresh_only: true,
            parallelism: 4,
            var_files: &files,
        });
        let argv: Vec<String> = cmd
            .argv()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            argv,
            [
                "plan",
                "-input=false",
                "-no-color",
                "-json",
                "-detailed-exitcode",
                "-lock-timeout=60s",
                "-out=/tmp/p/plan.tfplan",
                "-refresh-only",
                "-parallelism=4",
                "-var-file=prod.tfvars"
            ]
        );
        let init: Vec<OsString> = TfCommand::init(&["backend.hcl".into()], false).argv();
        assert_eq!(init.last().unwrap(), "-backend-config=backend.hcl");
        let init: Vec<OsString> = TfCommand::init(&["backend.hcl".into()], true).argv();
        assert_eq!(
            init,
            [
                "init",
                "-input=false",
                "-no-color",
                "-lockfile=readonly",
                "-reconfigure",
                "-backend-config=backend.hcl"
            ]
        );
        assert_eq!(TfCommand::state_pull().argv(), ["state", "pull"]);
    }
}
