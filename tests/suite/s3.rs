//! The state in a real S3 server, as the homelab keeps it in MinIO: moto's server mode
//! (`tests/s3/moto_launcher.py`, on 127.0.0.1, credential checks on) with
//! `use_lockfile = true`. Real terraform applies, the exporter scans; the state object is
//! edited, the bucket removed, the lock held, the keys wrong, the endpoint moved.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::real_terraform::SilentServer;
use crate::support::{Workspace, have_terraform, process_with_env, skip};

/// Where the state of `lab` lives in the bucket.
const STATE_KEY: &str = "env/lab/terraform.tfstate";

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3")
}

/// A moto S3 server on a port of its own; stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// The IAM user's key, once credential checks are on.
    pub keys: Option<(String, String)>,
}

impl Moto {
    /// Starts moto (None, with SKIP, when python3 or moto is missing outside CI).
    pub fn start() -> Option<Moto> {
        let found = Command::new(crate::support::python())
            .args(["-c", "import moto.server, boto3"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            skip(
                "python3 with moto[server] is not installed (./test.sh installs it into target/venv)",
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(crate::support::python())
            .arg(tests_dir().join("moto_launcher.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python runs");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            keys: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !moto.answers() {
            assert!(Instant::now() < deadline, "moto did not start on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    fn answers(&self) -> bool {
        let address = self.endpoint.trim_start_matches("http://");
        let Ok(mut stream) = TcpStream::connect(address) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(
            stream,
            "GET /moto-api/data.json HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        );
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }

    /// `s3ctl.py` with the IAM user's key (once there is one); stdin from `input`.
    pub fn ctl(&self, args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut command = Command::new(crate::support::python());
        command
            .arg(tests_dir().join("s3ctl.py"))
            .arg(&self.endpoint)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((id, secret)) = &self.keys {
            command
                .env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        let mut child = command.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "s3ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Creates the IAM user terraform uses and turns credential checks on.
    pub fn enable_auth(&mut self) -> (String, String) {
        let out = String::from_utf8(self.ctl(&["enable-auth"], b"")).unwrap();
        let (id, secret) = out.trim().split_once(' ').unwrap();
        let keys = (id.to_owned(), secret.to_owned());
        self.keys = Some(keys.clone());
        keys
    }

    pub fn keys_in(&self, bucket: &str) -> Vec<String> {
        String::from_utf8(self.ctl(&["list", bucket], b""))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn state(&self, bucket: &str, key: &str) -> Value {
        serde_json::from_slice(&self.ctl(&["get", bucket, key], b"")).unwrap()
    }

    pub fn put_state(&self, bucket: &str, key: &str, state: &Value) {
        self.ctl(&["put", bucket, key], state.to_string().as_bytes());
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The homelab's backend block, pointed at `endpoint`, keys from the environment.
fn backend(endpoint: &str, bucket: &str) -> String {
    format!(
        r#"terraform {{
  backend "s3" {{
    bucket                      = "{bucket}"
    key                         = "{STATE_KEY}"
    region                      = "us-east-1"
    endpoints                   = {{ s3 = "{endpoint}" }}
    use_path_style              = true
    use_lockfile                = true
    skip_credentials_validation = true
    skip_region_validation      = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    max_retries                 = 2
  }}
}}
"#
    )
}

const VM: &str = r#"
resource "terraform_data" "vm" {
  input = { name = "web", memory = 2048 }
}
"#;

/// A workspace whose state lives in moto, applied by the operator's terraform (its own
/// `.terraform/` in the workspace), and a configuration whose `env_files` hold the keys.
struct Lab {
    w: Workspace,
    moto: Moto,
    keys: (String, String),
}

impl Lab {
    fn new() -> Option<Lab> {
        if !have_terraform() {
            return None;
        }
        let mut moto = Moto::start()?;
        moto.ctl(&["create-bucket", "tfstate"], b"");
        let keys = moto.enable_auth();
        let w = Workspace::new(&format!("{}{VM}", backend(&moto.endpoint, "tfstate")));
        let lab = Lab { w, moto, keys };
        lab.terraform(&["init", "-input=false", "-no-color"]);
        lab.terraform(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        lab.write_env_file(&lab.keys.0, &lab.keys.1);
        Some(lab)
    }

    fn terraform_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("terraform");
        command
            .args(args)
            .current_dir(self.w.ws())
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("AWS_ACCESS_KEY_ID", &self.keys.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.keys.1)
            .stdin(Stdio::null());
        command
    }

    fn terraform(&self, args: &[&str]) {
        let out = self.terraform_command(args).output().unwrap();
        assert!(
            out.status.success(),
            "terraform {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn write_env_file(&self, id: &str, secret: &str) {
        std::fs::write(
            self.w.root.path().join("s3.env"),
            format!("AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\n"),
        )
        .unwrap();
    }

    fn config(&self, extra: &str) -> PathBuf {
        let timeout = if extra.contains("\ntimeout =") || extra.starts_with("timeout =") {
            ""
        } else {
            "timeout = \"2m\"\n"
        };
        self.w
            .config(&format!("env_files = [\"s3.env\"]\n{timeout}{extra}"))
    }

    fn scan(&self, extra: &str) -> (i32, Value, String) {
        let (code, r, stderr, _) = self.w.scan(&self.config(extra));
        (code, r, stderr)
    }

    /// Raises the recorded memory in the state object itself (drift made by hand).
    fn raise_memory_in_s3(&self) {
        let mut state = self.moto.state("tfstate", STATE_KEY);
        let attrs = &mut state["resources"][0]["instances"][0]["attributes"];
        attrs["input"]["value"]["memory"] = 3072.into();
        attrs["output"]["value"]["memory"] = 3072.into();
        state["serial"] = (state["serial"].as_u64().unwrap() + 1).into();
        self.moto.put_state("tfstate", STATE_KEY, &state);
    }

    fn secret(&self) -> &str {
        &self.keys.1
    }
}

fn reason(r: &Value) -> &str {
    r["error"]["reason"].as_str().unwrap_or("")
}

#[test]
fn state_in_s3_scans_conform_then_drift_when_the_state_object_is_edited() {
    let Some(lab) = Lab::new() else { return };
    let (code, r, stderr) = lab.scan("");
    assert_eq!(code, 0, "{r}\n{stderr}");
    assert_eq!(r["status"], "conform");
    lab.raise_memory_in_s3();
    let (code, r, stderr) = lab.scan("");
    assert_eq!(code, 2, "{r}\n{stderr}");
    assert_eq!(
        r["changes"][0]["attributes"][0],
        serde_json::json!({"path": "input.memory", "actual": 3072, "expected": 2048})
    );
    // A plan never writes the state, and no lock is left behind.
    assert_eq!(lab.keys_in_bucket(), [STATE_KEY]);
    assert_eq!(
        lab.moto.state("tfstate", STATE_KEY)["resources"][0]["instances"][0]["attributes"]["input"]
            ["value"]["memory"],
        3072
    );
    // The S3 secret from env_files is in no output and no stored file.
    assert!(!r.to_string().contains(lab.secret()) && !stderr.contains(lab.secret()));
    assert_no_secret_under(&lab.w.storage(), lab.secret());
}

impl Lab {
    fn keys_in_bucket(&self) -> Vec<String> {
        self.moto.keys_in("tfstate")
    }
}

/// No file under `dir` holds `secret` (terraform's own TF_DATA_DIR included).
fn assert_no_secret_under(dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_no_secret_under(&path, secret);
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{} holds the S3 secret",
                path.display()
            );
        }
    }
}

#[test]
fn a_wrong_access_key_or_secret_is_auth_and_the_secret_is_never_shown() {
    let Some(lab) = Lab::new() else { return };
    let (code, r, _) = lab.scan("");
    assert_eq!(code, 0, "{r}");
    lab.write_env_file("AKIAWRONGWRONGWRONG0", lab.secret());
    let (code, r, stderr) = lab.scan("");
    assert_eq!((code, reason(&r)), (1, "auth"), "{r}");
    assert!(r["error"].to_string().contains("InvalidAccessKeyId"), "{r}");
    assert!(!stderr.contains(lab.secret()));

    let wrong = "wrong-secret-0123456789abcdefghijklmnop";
    lab.write_env_file(&lab.keys.0, wrong);
    let (code, r, stderr) = lab.scan("");
    assert_eq!((code, reason(&r)), (1, "auth"), "{r}");
    assert!(
        r["error"].to_string().contains("SignatureDoesNotMatch"),
        "{r}"
    );
    for text in [r.to_string(), stderr] {
        assert!(
            !text.contains(wrong) && !text.contains(lab.secret()),
            "{text}"
        );
    }
    assert_no_secret_under(&lab.w.storage(), wrong);
    assert_no_secret_under(&lab.w.storage(), lab.secret());
}

#[test]
fn a_missing_bucket_and_a_bucket_deleted_after_a_good_scan_are_state_backend() {
    let Some(lab) = Lab::new() else { return };
    let (code, r, _) = lab.scan("");
    assert_eq!(code, 0, "{r}");
    lab.moto.ctl(&["delete-bucket", "tfstate"], b"");
    let (code, r, _) = lab.scan("");
    assert_eq!((code, reason(&r)), (1, "state_backend"), "{r}");

    // Another environment whose bucket never existed (its first scan runs init).
    let other = Workspace::new(&format!("{}{VM}", backend(&lab.moto.endpoint, "missing")));
    std::fs::copy(
        lab.w.root.path().join("s3.env"),
        other.root.path().join("s3.env"),
    )
    .unwrap();
    let config = other.config("env_files = [\"s3.env\"]\ntimeout = \"2m\"");
    let (code, r, _, _) = other.scan(&config);
    assert_eq!((code, reason(&r)), (1, "state_backend"), "{r}");
    assert!(r["error"].to_string().contains("missing"), "{r}");
}

#[test]
fn a_lock_held_by_a_running_apply_is_state_lock_and_is_left_alone() {
    let Some(lab) = Lab::new() else { return };
    // An apply that holds the lock for a while: a resource whose creation sleeps.
    std::fs::write(
        lab.w.ws().join("slow.tf"),
        "resource \"terraform_data\" \"slow\" {\n  input = \"x\"\n  provisioner \"local-exec\" {\n    command = \"sleep 12\"\n  }\n}\n",
    )
    .unwrap();
    let mut apply = lab
        .terraform_command(&["apply", "-auto-approve", "-input=false", "-no-color"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = format!("{STATE_KEY}.tflock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab.keys_in_bucket().contains(&lock) {
        assert!(Instant::now() < deadline, "the apply never took its lock");
        std::thread::sleep(Duration::from_millis(200));
    }
    let lock_before = lab.moto.ctl(&["get", "tfstate", &lock], b"");
    let start = Instant::now();
    let (code, r, _) = lab.scan("lock_timeout = \"2s\"");
    let took = start.elapsed();
    assert_eq!((code, reason(&r)), (1, "state_lock"), "{r}");
    assert!(
        took < Duration::from_secs(2 + 8),
        "state_lock within lock_timeout + a few seconds, took {took:?}"
    );
    assert!(r["error"].to_string().contains("Lock Info"), "{r}");
    // The apply's lock is untouched and the apply finishes.
    assert_eq!(lab.moto.ctl(&["get", "tfstate", &lock], b""), lock_before);
    let status = apply.wait().unwrap();
    assert!(status.success(), "the apply finished");
    assert!(!lab.keys_in_bucket().contains(&lock));
    let (code, r, _) = lab.scan("");
    assert_eq!(code, 0, "conform after the apply: {r}");
}

#[test]
fn a_scan_that_times_out_holding_the_lock_releases_it() {
    let Some(lab) = Lab::new() else { return };
    // The plan takes the lock, then hangs reading a remote state from a server that never
    // answers (an interrupt stops it, unlike a hanging S3 request).
    let silent = SilentServer::start();
    std::fs::write(
        lab.w.ws().join("hang.tf"),
        format!(
            "data \"terraform_remote_state\" \"slow\" {{\n  backend = \"http\"\n  config = {{ address = \"http://127.0.0.1:{}/state\" }}\n}}\n",
            silent.port
        ),
    )
    .unwrap();
    let lock = format!("{STATE_KEY}.tflock");
    let (code, r, stderr) = lab.scan("timeout = \"8s\"\nkill_grace = \"3s\"");
    assert_eq!((code, reason(&r)), (1, "timeout"), "{r}\n{stderr}");
    assert!(
        !lab.keys_in_bucket().contains(&lock),
        "no .tflock left: {:?}",
        lab.keys_in_bucket()
    );
    assert_eq!(
        process_with_env(&lab.w.storage().display().to_string()),
        None,
        "no terraform left"
    );
}

#[test]
fn a_moved_s3_endpoint_is_followed_by_the_next_scan() {
    let Some(mut lab) = Lab::new() else { return };
    let (code, r, _) = lab.scan("");
    assert_eq!(code, 0, "{r}");
    // The state moves to another S3 server (its key with it), and the code says so.
    let mut other = Moto::start().unwrap();
    other.ctl(&["create-bucket", "tfstate"], b"");
    let state = lab.moto.state("tfstate", STATE_KEY);
    other.put_state("tfstate", STATE_KEY, &state);
    let keys = other.enable_auth();
    lab.write_env_file(&keys.0, &keys.1);
    std::fs::write(
        lab.w.ws().join("main.tf"),
        format!("{}{VM}", backend(&other.endpoint, "tfstate")),
    )
    .unwrap();
    drop(std::mem::replace(&mut lab.moto, other));
    lab.keys = keys;
    lab.raise_memory_in_s3();
    for _ in 0..2 {
        let (code, r, stderr) = lab.scan("");
        assert_eq!(code, 2, "the new backend's drift: {r}\n{stderr}");
    }
}
