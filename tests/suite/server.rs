//! The exporter as a long-running server, started as a process against real terraform
//! workspaces, talked to over HTTP on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tfdrift_exporter::cancel::CancellationToken;
use tfdrift_exporter::serve::{self, Options};

use crate::real_terraform::{S3_BACKEND, SilentServer, VM, raise_memory_in_state};
use crate::support::{Workspace, bin, have_terraform, process_with_env, skip, terraform};

/// A running exporter, a process or inside this test process; stopped when dropped.
pub struct Server {
    runs: Runs,
    pub address: String,
}

/// How a test's exporter runs.
enum Runs {
    /// The binary, for what needs a process: its logs, signals, its pid, `kill -9`.
    Process {
        child: Child,
        logs: mpsc::Receiver<String>,
        /// Every line the exporter logged so far.
        all_logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    },
    /// `serve::Server` on its own runtime in this process, bound to port 0 and asked for
    /// its address: for what only talks HTTP.
    InProcess {
        stop: CancellationToken,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Server {
    /// The exporter as a process (logs, signals, pid).
    pub fn start(config: &Path) -> Server {
        Server::start_logged(config, "")
    }

    /// The exporter in this process, on port 0: `serve::Server::bind` tells the port.
    pub fn in_process(config: &Path) -> Server {
        let options = Options {
            config_path: config.to_owned(),
            listen: vec!["127.0.0.1:0".into()],
            ..Options::default()
        };
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel();
        let running = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = match serve::Server::bind(options).await {
                    Ok(server) => server.without_signals(),
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(server.local_addr()));
                if let Err(e) = server.run(running).await {
                    panic!("the exporter stopped: {e}");
                }
            });
        });
        let address = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the exporter did not bind within 20 s")
            .unwrap_or_else(|e| panic!("the exporter did not start: {e}"));
        Server {
            runs: Runs::InProcess {
                stop,
                thread: Some(thread),
            },
            address: address.to_string(),
        }
    }

    fn process(&mut self) -> (&mut Child, &mpsc::Receiver<String>) {
        match &mut self.runs {
            Runs::Process { child, logs, .. } => (child, logs),
            Runs::InProcess { .. } => {
                panic!("this test needs the exporter as a process: start it with Server::start")
            }
        }
    }

    /// Starts and checks that the start-up logs (before "listening") contain `expected`.
    fn start_logged(config: &Path, expected: &str) -> Server {
        Server::start_with(config, expected, &[])
    }

    /// Starts with extra command-line arguments (`--log.level trace`).
    pub fn start_with(config: &Path, expected: &str, extra: &[&str]) -> Server {
        Server::start_in_env(config, expected, extra, &[])
    }

    /// Starts with extra arguments and environment variables (libfaketime's).
    pub fn start_in_env(
        config: &Path,
        expected: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut command = bin();
        command.envs(env.iter().copied());
        Server::start_command(command, config, expected, extra)
    }

    /// Starts `command` (another build of the exporter: the packaged binary) with the
    /// configuration on 127.0.0.1, port 0, and waits for "listening".
    pub fn start_command(
        mut command: Command,
        config: &Path,
        expected: &str,
        extra: &[&str],
    ) -> Server {
        let mut child = command
            .args([
                "--config",
                config.to_str().unwrap(),
                "--web.listen-address",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, logs) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let all_logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = all_logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            runs: Runs::Process {
                child,
                logs,
                all_logs,
            },
            address: String::new(),
        };
        if !expected.is_empty() {
            server.wait_log(expected, Duration::from_secs(20));
        }
        let line = server.wait_log("msg=listening", Duration::from_secs(20));
        let address = line
            .split(' ')
            .find_map(|f| f.strip_prefix("address="))
            .unwrap()
            .to_owned();
        server.address = address;
        server
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let (_, logs) = self.process();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match logs.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?} within {limit:?}"),
            }
        }
    }

    pub fn request(&self, method: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
        let (head, body) = self.exchange(method, path, accept);
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        (status, content_type, body)
    }

    /// The value of the answer's header `name` (lowercase) to a GET of `path`.
    pub fn header(&self, path: &str, accept: Option<&str>, name: &str) -> Option<String> {
        let (head, _) = self.exchange("GET", path, accept);
        head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix(&format!("{name}: "))
                .map(str::to_owned)
        })
    }

    /// Waits until the exporter answers (it serves once the history is loaded: seconds for
    /// a large one), at most `limit`.
    pub fn wait_served(&self, limit: Duration) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(limit)).unwrap();
        write!(
            stream,
            "GET /-/healthy HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .unwrap();
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|e| panic!("not served within {limit:?}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// One request: the answer's head and body.
    fn exchange(&self, method: &str, path: &str, accept: Option<&str>) -> (String, String) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: {}\r\n{accept}Content-Length: 0\r\nConnection: close\r\n\r\n", self.address).unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), body.to_owned())
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = self.request("GET", path, None);
        (
            status,
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")),
        )
    }

    pub fn pid(&self) -> u32 {
        match &self.runs {
            Runs::Process { child, .. } => child.id(),
            Runs::InProcess { .. } => {
                panic!("this test needs the exporter as a process: start it with Server::start")
            }
        }
    }

    /// Every line logged so far.
    pub fn logged(&self) -> Vec<String> {
        match &self.runs {
            Runs::Process { all_logs, .. } => all_logs.lock().unwrap().clone(),
            Runs::InProcess { .. } => {
                panic!("this test needs the exporter as a process: start it with Server::start")
            }
        }
    }

    pub fn metrics(&self) -> String {
        self.request("GET", "/metrics", None).2
    }

    /// Polls until `done` holds for /detail.
    pub fn wait_detail(&self, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (_, detail) = self.get_json("/detail");
            if done(&detail) {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "not reached within {limit:?}: {detail}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls until `done` holds for the latest report of `env` (`/detail/<env>`).
    pub fn wait_report(&self, env: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (_, report) = self.get_json(&format!("/detail/{env}"));
            if done(&report) {
                return report;
            }
            assert!(
                Instant::now() < deadline,
                "{env} not reached within {limit:?}: {report}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
    }

    /// SIGKILL, as the OOM killer or `kill -9` ends it: nothing of it runs afterwards.
    pub fn kill9(mut self) {
        let (child, _) = self.process();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM and the time until the process exited.
    pub fn terminate(mut self) -> (Option<i32>, Duration) {
        let start = Instant::now();
        self.signal("TERM");
        let deadline = start + Duration::from_secs(60);
        loop {
            if let Some(status) = self.process().0.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            assert!(Instant::now() < deadline, "the exporter did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.runs {
            Runs::Process { child, .. } => {
                if child.try_wait().ok().flatten().is_none() {
                    self.signal("TERM");
                    std::thread::sleep(Duration::from_millis(500));
                    let (child, _) = self.process();
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Runs::InProcess { stop, thread } => {
                stop.cancel();
                if let Some(thread) = thread.take() {
                    // A panic of the exporter's thread fails the test, unless it is failing
                    // already.
                    if thread.join().is_err() && !std::thread::panicking() {
                        panic!("the in-process exporter panicked");
                    }
                }
            }
        }
    }
}

/// The value of label `label` of the first series of `name`.
pub fn label(text: &str, name: &str, label: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with(&format!("{name}{{")))?;
    let start = line.find(&format!("{label}=\""))? + label.len() + 2;
    let rest = &line[start..];
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?),
            '"' => return Some(value),
            c => value.push(c),
        }
    }
    None
}

/// The value of the one series of `name` whose labels contain all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, label_text) = series.split_once('{').unwrap_or((series, ""));
            if metric_name != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse().unwrap())
        })
}

/// Three environments side by side: prod conform, lab drifting, mon with its S3 state
/// backend on a closed port.
struct Lab {
    root: tempfile::TempDir,
    prod: Workspace,
    lab: Workspace,
    mon: Workspace,
}

impl Lab {
    fn new() -> Lab {
        let prod = Workspace::new(VM);
        let lab = Workspace::new(VM);
        for w in [&prod, &lab] {
            terraform(
                &w.ws(),
                &["apply", "-auto-approve", "-input=false", "-no-color"],
            );
        }
        raise_memory_in_state(&lab.ws());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mon = Workspace::new(&S3_BACKEND.replace("PORT", &port.to_string()));
        Lab {
            root: tempfile::tempdir().unwrap(),
            prod,
            lab,
            mon,
        }
    }

    fn storage(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn config(&self, defaults: &str, extra: &str) -> PathBuf {
        let path = self.root.path().join("config.toml");
        let text = format!(
            "[storage]\npath = \"{}\"\n[defaults]\ninterval = \"1h\"\njitter = \"0s\"\nkill_grace = \"2s\"\n{defaults}\n\
             [environments.prod]\ndir = \"{}\"\n[environments.lab]\ndir = \"{}\"\n[environments.mon]\ndir = \"{}\"\n{extra}",
            self.storage().display(),
            self.prod.ws().display(),
            self.lab.ws().display(),
            self.mon.ws().display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn all_scanned(detail: &Value) -> bool {
    ["prod", "lab", "mon"]
        .iter()
        .all(|e| !detail["environments"][e].is_null())
}

#[test]
fn metrics_detail_history_and_restart() {
    if !have_terraform() {
        return;
    }
    let lab = Lab::new();
    let config = lab.config("", "");
    let server = Server::start(&config);
    let detail = server.wait_detail(Duration::from_secs(90), all_scanned);
    assert_eq!(detail["environments"]["prod"]["status"], "conform");
    assert_eq!(detail["environments"]["lab"]["status"], "drift");
    assert_eq!(
        detail["environments"]["lab"]["trigger"],
        json!({"kind": "start"}),
        "run_on_start"
    );
    assert_eq!(
        detail["environments"]["mon"]["error"]["reason"],
        "state_backend"
    );

    // Every metric of §8 for the three outcomes.
    let m = server.metrics();
    let env = |e: &'static str| [("environment", e)];
    assert_eq!(metric(&m, "tfdrift_status", &env("prod")), Some(0.0));
    assert_eq!(metric(&m, "tfdrift_status", &env("lab")), Some(1.0));
    assert_eq!(metric(&m, "tfdrift_status", &env("mon")), Some(2.0));
    for action in ["create", "update", "delete", "replace"] {
        let want = if action == "update" { 1.0 } else { 0.0 };
        assert_eq!(
            metric(
                &m,
                "tfdrift_changed_resources",
                &[("environment", "lab"), ("action", action)]
            ),
            Some(want),
            "{action}"
        );
        assert_eq!(
            metric(
                &m,
                "tfdrift_changed_resources",
                &[("environment", "prod"), ("action", action)]
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        metric(&m, "tfdrift_outside_changes", &env("lab")),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "tfdrift_ignored_changes", &env("lab")),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_resource_change_info",
            &[
                ("environment", "lab"),
                ("address", "terraform_data.vm"),
                ("type", "terraform_data"),
                ("action", "update"),
                ("outside_terraform", "false")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "tfdrift_resource_change_info", &env("prod")),
        None
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_scan_error",
            &[("environment", "mon"), ("reason", "state_backend")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_scan_error",
            &[("environment", "mon"), ("reason", "auth")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_scan_error",
            &[("environment", "prod"), ("reason", "state_backend")]
        ),
        Some(0.0)
    );
    let now = chrono::Utc::now().timestamp() as f64;
    for e in ["prod", "lab", "mon"] {
        let last = metric(&m, "tfdrift_last_scan_timestamp_seconds", &env(e)).unwrap();
        assert!((now - last).abs() < 120.0, "{e}: {last}");
        assert!(metric(&m, "tfdrift_scan_duration_seconds", &env(e)).unwrap() > 0.0);
        assert!(metric(&m, "tfdrift_next_scan_timestamp_seconds", &env(e)).unwrap() > now + 3000.0);
        assert_eq!(
            metric(&m, "tfdrift_scan_interval_seconds", &env(e)),
            Some(3600.0)
        );
        assert_eq!(metric(&m, "tfdrift_scan_in_progress", &env(e)), Some(0.0));
    }
    assert!(metric(&m, "tfdrift_last_success_timestamp_seconds", &env("prod")).is_some());
    assert!(metric(&m, "tfdrift_last_success_timestamp_seconds", &env("lab")).is_some());
    assert_eq!(
        metric(&m, "tfdrift_last_success_timestamp_seconds", &env("mon")),
        None,
        "never succeeded"
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_scans_total",
            &[("environment", "lab"), ("status", "drift")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_scans_total",
            &[("environment", "mon"), ("status", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "tfdrift_build_info", &[]), Some(1.0));
    assert_eq!(
        metric(&m, "tfdrift_ignore_rules_expired", &env("lab")),
        Some(0.0)
    );

    // Formats: text 0.0.4 by default, OpenMetrics when asked; promtool finds nothing.
    let (_, content_type, _) = server.request("GET", "/metrics", None);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let (_, content_type, body) = server.request(
        "GET",
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"));
    promtool_check(&m);

    // /detail/<env>, /history and the stored reports.
    let (status, prod) = server.get_json("/detail/prod");
    assert_eq!(status, 200);
    assert_eq!(prod, detail["environments"]["prod"]);
    let (status, err) = server.get_json("/detail/nope");
    assert_eq!(status, 404);
    assert!(err["error"].as_str().unwrap().contains("nope"));
    let (_, history) = server.get_json("/history?environment=lab&since=1h");
    let scans = history["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 1);
    assert!(scans[0].get("changes").is_none(), "summaries only");
    let id = scans[0]["id"].as_str().unwrap();
    let (status, stored) = server.get_json(&format!("/history/lab/{id}"));
    assert_eq!(status, 200);
    assert_eq!(stored, detail["environments"]["lab"]);
    assert_eq!(server.get_json("/history?since=soon").0, 400);

    // The last plan, for tools: only the documented keys; none for a plan-less scan.
    let (status, plan) = server.get_json("/detail/lab/plan");
    assert_eq!(status, 200);
    let keys: Vec<&str> = plan
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in &keys {
        assert!(
            [
                "format_version",
                "terraform_version",
                "timestamp",
                "errored",
                "resource_drift",
                "resource_changes",
                "output_changes",
                "relevant_attributes",
                "checks"
            ]
            .contains(key),
            "{key} is not served"
        );
    }
    assert_eq!(plan["resource_changes"][0]["address"], "terraform_data.vm");
    assert_eq!(
        plan["resource_changes"][0]["change"]["before"]["input"]["memory"],
        3072
    );
    assert_eq!(
        server.get_json("/detail/prod/plan").0,
        404,
        "conform: plan exited 0, no plan"
    );
    assert_eq!(server.get_json("/detail/nope/plan").0, 404);
    assert_eq!(server.get_json("/history/lab/..%2F..%2Fetc").0, 404);
    let (_, all) = server.get_json("/history");
    assert_eq!(all["scans"].as_array().unwrap().len(), 3);

    // The landing page names every environment and the changed attribute.
    let (status, content_type, page) = server.request("GET", "/", None);
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"));
    for needle in [
        "prod",
        "lab",
        "mon",
        "state_backend",
        "input.memory",
        "3072",
        "/detail/lab",
    ] {
        assert!(page.contains(needle), "page shows {needle}");
    }
    assert_eq!(server.request("GET", "/-/healthy", None).0, 200);
    assert_eq!(server.request("GET", "/-/ready", None).0, 200);
    assert_eq!(server.request("GET", "/nothing", None).0, 404);

    // Restart without run_on_start: the gauges and /detail come back from the history at
    // once, before any scan.
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
    // A partial file (as a crash mid-write of some other tool would leave) is skipped.
    std::fs::write(
        lab.storage()
            .join("envs/lab/history/lab-29990101T000000Z.json"),
        "{\"id\": \"lab-2999",
    )
    .unwrap();
    let config = lab.config("run_on_start = false", "");
    let server = Server::start_logged(&config, "skipping an unreadable stored report");
    let (_, restored) = server.get_json("/detail");
    assert_eq!(restored, detail, "restored from the latest stored scans");
    let m = server.metrics();
    assert_eq!(metric(&m, "tfdrift_status", &env("lab")), Some(1.0));
    assert_eq!(metric(&m, "tfdrift_status", &env("mon")), Some(2.0));
    assert_eq!(
        metric(
            &m,
            "tfdrift_scan_error",
            &[("environment", "mon"), ("reason", "state_backend")]
        ),
        Some(1.0)
    );
}

pub fn promtool_check(metrics: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        skip("promtool is not installed (Debian package prometheus)");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}

#[test]
fn triggered_scans_and_reloads() {
    if !have_terraform() {
        return;
    }
    let lab = Lab::new();
    let config = lab.config("run_on_start = false", "");
    let server = Server::start(&config);
    assert_eq!(server.request("POST", "/scan/nope", None).0, 404);
    assert_eq!(server.request("GET", "/scan/prod", None).0, 405);
    let (status, _, body) = server.request("POST", "/scan/prod", None);
    assert_eq!(status, 202, "{body}");
    let detail = server.wait_detail(Duration::from_secs(60), |d| {
        d["environments"]["prod"]["status"] == "conform"
    });
    assert_eq!(
        detail["environments"]["prod"]["trigger"]["kind"], "manual",
        "{detail}"
    );
    assert_eq!(
        metric(
            &server.metrics(),
            "tfdrift_scans_total",
            &[("environment", "prod"), ("status", "conform")]
        ),
        Some(1.0)
    );

    // A broken file: 400 with the message, the running configuration stays.
    std::fs::write(&config, "[environments.prod\n").unwrap();
    let (status, _, body) = server.request("POST", "/-/reload", None);
    assert_eq!(status, 400);
    assert!(body.contains("config.toml"), "{body}");
    assert_eq!(
        server.request("POST", "/scan/lab", None).0,
        202,
        "lab still configured"
    );

    // A good file: mon removed (its series go), extra added and scanned; by SIGHUP too.
    let extra = format!(
        "[environments.extra]\ndir = \"{}\"\nrun_on_start = true\n",
        lab.prod.ws().display()
    );
    let text = format!(
        "[storage]\npath = \"{}\"\n[defaults]\ninterval = \"1h\"\nrun_on_start = false\n[environments.prod]\ndir = \"{}\"\n[environments.lab]\ndir = \"{}\"\n{extra}",
        lab.storage().display(),
        lab.prod.ws().display(),
        lab.lab.ws().display()
    );
    std::fs::write(&config, &text).unwrap();
    assert_eq!(server.request("POST", "/-/reload", None).0, 200);
    let detail = server.wait_detail(Duration::from_secs(60), |d| {
        d["environments"]["extra"]["status"] == "conform"
    });
    assert!(detail["environments"].get("mon").is_none());
    assert!(
        !server.metrics().contains("environment=\"mon\""),
        "removed environments' series disappear"
    );
    assert_eq!(server.request("POST", "/scan/mon", None).0, 404);

    std::fs::write(&config, text.replace(&extra, "")).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metrics().contains("environment=\"extra\"") {
        assert!(Instant::now() < deadline, "SIGHUP reload removes extra");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.get_json("/detail").1["environments"]
            .get("extra")
            .is_none()
    );
}

#[test]
fn sigterm_during_a_hung_scan_exits_in_time_and_leaves_no_terraform() {
    if !have_terraform() {
        return;
    }
    let hang = SilentServer::start();
    let w = Workspace::new(&S3_BACKEND.replace("PORT", &hang.port.to_string()));
    let config = w.config("timeout = \"5m\"");
    let mut server = Server::start(&config);
    server.wait_log("msg=\"scan started\"", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let storage = w.storage().display().to_string();
    assert!(process_with_env(&storage).is_some(), "terraform is running");
    let (code, elapsed) = server.terminate();
    assert_eq!(code, Some(0));
    // kill_grace is 2 s: SIGINT, 2 s, SIGINT, 2 s, SIGKILL; the bound is kill_grace + 5 s.
    assert!(
        elapsed < Duration::from_secs(2 + 5),
        "exited in {elapsed:?}"
    );
    assert_eq!(
        process_with_env(&storage),
        None,
        "no terraform process left"
    );
    drop(hang);
}

#[test]
fn a_report_that_cannot_be_stored_is_still_shown_and_counted() {
    if !have_terraform() {
        return;
    }
    let w = crate::real_terraform::applied_vm();
    let config = w.config("run_on_start = false");
    let server = Server::start(&config);
    // The history directory becomes a file: every write there fails (root ignores
    // permission bits, so a read-only directory would not do).
    let history = w.storage().join("envs/lab/history");
    std::fs::create_dir_all(w.storage().join("envs/lab")).unwrap();
    let _ = std::fs::remove_dir_all(&history);
    std::fs::write(&history, "not a directory").unwrap();
    assert_eq!(server.request("POST", "/scan/lab", None).0, 202);
    let detail = server.wait_detail(Duration::from_secs(60), |d| {
        d["environments"]["lab"]["status"] == "conform"
    });
    assert!(detail["environments"]["lab"]["id"].is_string());
    let m = server.metrics();
    assert_eq!(
        metric(
            &m,
            "tfdrift_storage_errors_total",
            &[("environment", "lab")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "tfdrift_status", &[("environment", "lab")]),
        Some(0.0)
    );
    assert_eq!(server.request("GET", "/-/healthy", None).0, 200);
}

/// Regression: `/detail/<env>` of a report that could not be stored silently served the
/// copy kept in memory, cut to 200 changes. It says so: `"stored": false` and, since its
/// 250 changes were cut, `"changes_total": 250` (interface §7).
#[test]
fn a_report_that_cannot_be_stored_says_so_and_how_many_changes_it_had() {
    if !have_terraform() {
        return;
    }
    // 250 resources in the code, none applied: 250 creates.
    let w = crate::support::Workspace::new(
        "resource \"terraform_data\" \"x\" {\n  count = 250\n  input = count.index\n}\n",
    );
    let config = w.config("run_on_start = false");
    let server = Server::in_process(&config);
    let history = w.storage().join("envs/lab/history");
    std::fs::create_dir_all(w.storage().join("envs/lab")).unwrap();
    let _ = std::fs::remove_dir_all(&history);
    std::fs::write(&history, "not a directory").unwrap();
    assert_eq!(server.request("POST", "/scan/lab", None).0, 202);
    server.wait_detail(Duration::from_secs(60), |d| {
        d["environments"]["lab"]["status"] == "drift"
    });
    let (status, detail) = server.get_json("/detail/lab");
    assert_eq!(status, 200);
    assert_eq!(detail["stored"], false, "{}", detail["stored"]);
    assert_eq!(detail["changes_total"], 250);
    assert_eq!(detail["changes"].as_array().unwrap().len(), 200);
    assert_eq!(
        detail["summary"]["create"], 250,
        "the summary counts them all"
    );
    let (_, all) = server.get_json("/detail");
    assert_eq!(all["environments"]["lab"]["stored"], false);

    // Stored again: the file is served, as written, without the marks.
    std::fs::remove_file(&history).unwrap();
    let before = detail["id"].clone();
    assert_eq!(server.request("POST", "/scan/lab", None).0, 202);
    let detail = server.wait_detail(Duration::from_secs(60), |d| {
        d["environments"]["lab"]["id"] != before
    });
    let lab = &detail["environments"]["lab"];
    assert!(
        lab.get("stored").is_none() && lab.get("changes_total").is_none(),
        "{}",
        lab["id"]
    );
    assert_eq!(lab["changes"].as_array().unwrap().len(), 250);
}

/// Regression: at SIGTERM the requests in flight were cut (the process exited under them).
/// A 40 MB stored report, streamed to a client that reads slowly; SIGTERM arrives after its
/// first megabyte: the client still gets every byte, then the exporter exits 0.
#[test]
fn a_request_in_flight_at_sigterm_gets_its_whole_answer() {
    let root = tempfile::tempdir().unwrap();
    let history = root.path().join("state/envs/lab/history");
    std::fs::create_dir_all(&history).unwrap();
    std::fs::create_dir_all(root.path().join("ws")).unwrap();
    let mut report = tfdrift_exporter::report::Report::from_outcome(
        tfdrift_exporter::report::PlanOutcome::no_changes(),
    );
    report.stamp = Some(tfdrift_exporter::report::Stamp {
        id: "lab-big".into(),
        environment: "lab".into(),
        started_at: chrono::Utc::now(),
        finished_at: chrono::Utc::now(),
        duration_seconds: 1.0,
    });
    let mut value = serde_json::to_value(&report).unwrap();
    // A field the exporter does not read: it streams the stored file as it is.
    value["padding"] = Value::String("x".repeat(40 << 20));
    std::fs::write(history.join("lab-big.json"), value.to_string()).unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        "[storage]\npath = \"state\"\n[environments.lab]\ndir = \"ws\"\ninterval = \"1d\"\nrun_on_start = false\n",
    )
    .unwrap();
    let server = Server::start(&config);
    server.wait_served(Duration::from_secs(60));

    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /history/lab/lab-big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut received = vec![0; 1 << 20];
    stream.read_exact(&mut received).unwrap();
    let head_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the answer's head")
        + 4;
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no length: {head}"));
    assert!(length > 40 << 20, "{length}");
    // The rest is read by another thread, slowly at first, while SIGTERM is sent and the
    // exporter shuts down.
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        (read.map(|_| ()), rest.len())
    });
    let (code, took) = server.terminate();
    let (read, rest) = reader.join().unwrap();
    assert!(read.is_ok(), "{read:?}");
    assert_eq!(
        received.len() - head_end + rest,
        length,
        "every byte of the answer"
    );
    assert_eq!(code, Some(0), "a clean exit after the drain ({took:?})");
}
