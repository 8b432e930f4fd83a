//! The web configuration file (exporter-toolkit format): basic authentication with bcrypt,
//! TLS with a minimum version, client certificates, reload, and the shipped example checked
//! by promtool. Requests go through curl, as a Prometheus user would test by hand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::server::Server;
use crate::support::skip;

/// A CA, a server certificate for 127.0.0.1 signed by it, and a client certificate.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tfdrift test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write("ca.crt", ca.pem());
        for (name, sans) in [
            ("tls", vec!["127.0.0.1".to_owned(), "localhost".to_owned()]),
            ("client", vec!["prometheus".to_owned()]),
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            write(&format!("{name}.crt"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        skip(&format!("{tool} not installed"));
    }
    found
}

/// An exporter in this process whose configuration names `web.yml` in `dir` (one
/// environment, not scanned).
fn start(dir: &Path, web: &str) -> Server {
    Server::in_process(&configure(dir, web))
}

/// The configuration naming `web.yml` in `dir`, written.
fn configure(dir: &Path, web: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("ws")).unwrap();
    std::fs::write(dir.join("web.yml"), web).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[web]\nconfig_file = \"web.yml\"\n[storage]\npath = \"state\"\n[defaults]\nrun_on_start = false\n[environments.lab]\ndir = \"ws\"\n",
    )
    .unwrap();
    config
}

/// `curl` with `args`; returns the HTTP status (0 when the connection failed).
pub fn curl(args: &[&str], url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A bcrypt hash at cost 8 (cheap enough for tests), from the `bcrypt` crate: the same
/// `$2b$` format `htpasswd -nBC 10` writes.
pub fn hash(password: &str) -> String {
    bcrypt::hash(password, 8).expect("bcrypt hashes")
}

#[test]
fn basic_auth_guards_every_endpoint_and_a_wrong_user_costs_as_much_as_a_wrong_password() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &format!("basic_auth_users:\n  prometheus: {}\n", hash("s3cret")),
    );
    let url = |path: &str| format!("http://{}{path}", server.address);
    for path in [
        "/metrics",
        "/",
        "/detail",
        "/history",
        "/-/healthy",
        "/unmanaged",
    ] {
        assert_eq!(curl(&[], &url(path)), 401, "{path} without credentials");
    }
    assert_eq!(curl(&["-X", "POST"], &url("/-/reload")), 401);
    assert_eq!(curl(&["-X", "POST"], &url("/scan/lab")), 401);
    assert_eq!(curl(&["-u", "prometheus:s3cret"], &url("/metrics")), 200);
    assert_eq!(curl(&["-u", "prometheus:wrong"], &url("/metrics")), 401);
    assert_eq!(curl(&["-u", "nobody:s3cret"], &url("/metrics")), 401);
    let (_, headers, _) = server.request("GET", "/metrics", None);
    assert!(headers.contains("json"), "a JSON error body: {headers}");

    // The time of a refusal does not tell whether the user exists: both run bcrypt.
    let median = |user: &str| {
        let mut times: Vec<Duration> = (0..7)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(
                    curl(&["-u", &format!("{user}:wrong")], &url("/metrics")),
                    401
                );
                start.elapsed()
            })
            .collect();
        times.sort();
        times[3]
    };
    let (wrong_password, wrong_user) = (median("prometheus"), median("nobody"));
    assert!(
        wrong_user * 2 > wrong_password && wrong_password * 2 > wrong_user,
        "wrong password {wrong_password:?}, wrong user {wrong_user:?}"
    );
}

#[test]
fn tls_with_a_minimum_version_and_client_certificates() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = start(
        dir.path(),
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS13\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    );
    let https = format!("https://{}/metrics", server.address);
    let ca = pki.path("ca.crt");
    assert_eq!(curl(&["--cacert", &ca], &https), 200);
    assert_eq!(
        curl(&[], &https),
        0,
        "an unknown CA is refused by the client"
    );
    assert_eq!(
        curl(&["--cacert", &ca, "--tls-max", "1.2"], &https),
        0,
        "TLS 1.2 is below min_version"
    );
    assert_eq!(
        curl(&[], &format!("http://{}/metrics", server.address)),
        0,
        "no plain HTTP on a TLS port"
    );
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert", &ca, &https])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .contains("x-frame-options: deny")
    );
    drop(server);

    // Mutual TLS: a client certificate from the configured CA is required.
    let server = start(
        dir.path(),
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let https = format!("https://{}/metrics", server.address);
    assert_eq!(curl(&["--cacert", &ca], &https), 0, "no client certificate");
    assert_eq!(
        curl(
            &[
                "--cacert",
                &ca,
                "--cert",
                &pki.path("client.crt"),
                "--key",
                &pki.path("client.key")
            ],
            &https
        ),
        200
    );
}

#[test]
fn the_web_configuration_reloads_and_a_broken_one_keeps_the_running_one() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &format!("basic_auth_users:\n  prometheus: {}\n", hash("old")),
    );
    let url = format!("http://{}/metrics", server.address);
    let reload = format!("http://{}/-/reload", server.address);
    std::fs::write(
        dir.path().join("web.yml"),
        "basic_auth_users:\n  prometheus: not-a-hash\n",
    )
    .unwrap();
    assert_eq!(curl(&["-u", "prometheus:old", "-X", "POST"], &reload), 400);
    assert_eq!(
        curl(&["-u", "prometheus:old"], &url),
        200,
        "the running file stays"
    );
    std::fs::write(
        dir.path().join("web.yml"),
        format!("basic_auth_users:\n  prometheus: {}\n", hash("new")),
    )
    .unwrap();
    assert_eq!(curl(&["-u", "prometheus:old", "-X", "POST"], &reload), 200);
    assert_eq!(curl(&["-u", "prometheus:old"], &url), 401);
    assert_eq!(curl(&["-u", "prometheus:new"], &url), 200);

    // A broken file at start stops the exporter with the file and the key named.
    std::fs::write(
        dir.path().join("web.yml"),
        "tls_server_config:\n  cert_file: none.crt\n",
    )
    .unwrap();
    let (code, _, stderr) = crate::support::run(&[
        "--config",
        dir.path().join("config.toml").to_str().unwrap(),
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("web.yml") && stderr.contains("tls_server_config.key_file"),
        "{stderr}"
    );
}

#[test]
fn a_reload_that_would_drop_tls_or_basic_auth_is_refused() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // A process: the test reads the refusal in the logs.
    let server = Server::start(&configure(
        dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: {}\n",
            hash("pw")
        ),
    ));
    let ca = pki.path("ca.crt");
    let url = |path: &str| format!("https://{}{path}", server.address);
    let reload = |expected: u16| {
        assert_eq!(
            curl(
                &["--cacert", &ca, "-u", "prometheus:pw", "-X", "POST"],
                &url("/-/reload")
            ),
            expected
        )
    };
    // Emptied (an editor's truncation, a failed deploy): TLS and auth would both go.
    std::fs::write(dir.path().join("web.yml"), "").unwrap();
    reload(400);
    assert_eq!(
        curl(&["--cacert", &ca], &url("/metrics")),
        401,
        "auth stays"
    );
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "prometheus:pw"], &url("/metrics")),
        200,
        "TLS stays"
    );
    // Only TLS dropped, then only auth dropped: refused too.
    std::fs::write(
        dir.path().join("web.yml"),
        format!("basic_auth_users:\n  prometheus: {}\n", hash("pw")),
    )
    .unwrap();
    reload(400);
    std::fs::write(
        dir.path().join("web.yml"),
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n",
    )
    .unwrap();
    reload(400);
    assert_eq!(curl(&["--cacert", &ca], &url("/metrics")), 401);
    assert!(
        server
            .logged()
            .iter()
            .any(|l| l.contains("reload refused") && l.contains("basic authentication")),
        "the refusal is logged"
    );
    // A change that keeps both applies.
    std::fs::write(
        dir.path().join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: {}\n",
            hash("new")
        ),
    )
    .unwrap();
    reload(200);
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "prometheus:new"], &url("/metrics")),
        200
    );
}

#[test]
fn promtool_accepts_the_shipped_web_configuration() {
    if !have("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    Pki::new(dir.path());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web-config.yml");
    let copy = dir.path().join("web-config.yml");
    std::fs::copy(&shipped, &copy).unwrap();
    let out = Command::new("promtool")
        .args(["check", "web-config"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And the exporter takes it, with the password it documents.
    let server = start(dir.path(), &std::fs::read_to_string(&shipped).unwrap());
    let https = format!("https://{}/metrics", server.address);
    let ca = dir.path().join("ca.crt").display().to_string();
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "prometheus:change-me"], &https),
        200
    );
    assert_eq!(curl(&["--cacert", &ca], &https), 401);
}

#[test]
fn slow_clients_are_dropped_and_large_bodies_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "");
    use std::io::{Read, Write};
    // Connections that never finish their headers.
    let mut idle: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&server.address).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // They do not keep others out.
    assert_eq!(server.request("GET", "/-/healthy", None).0, 200);
    // And they are closed once the header timeout (10 s) has passed.
    std::thread::sleep(Duration::from_secs(12));
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        // Ok: the server closed it (an error here would be our own read timeout).
        let closed = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            closed.is_ok(),
            "still open after the header timeout: {closed:?}"
        );
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // A body over 64 KiB is refused before it is read.
    let mut s = std::net::TcpStream::connect(&server.address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /scan/lab HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn a_real_prometheus_scrapes_over_tls_with_basic_auth() {
    if !have("curl") || !have("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = start(
        dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: {}\n",
            hash("scrape-pw")
        ),
    );
    std::fs::write(dir.path().join("password"), "scrape-pw").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tfdrift\n    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prometheus\n      password_file: {}\n    static_configs:\n      - targets: [\"{}\"]\n  - job_name: tfdrift-no-auth\n    scheme: https\n    tls_config:\n      ca_file: {}\n    static_configs:\n      - targets: [\"{}\"]\n",
        pki.path("ca.crt"),
        dir.path().join("password").display(),
        server.address,
        pki.path("ca.crt"),
        server.address,
    );
    std::fs::write(dir.path().join("prometheus.yml"), prom_config).unwrap();
    struct Daemon(std::process::Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Daemon(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let targets = |job: &str| -> Option<String> {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}/api/v1/targets"))
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .find(|t| t["labels"]["job"] == job)
            .map(|t| {
                format!(
                    "{} {}",
                    t["health"].as_str().unwrap_or(""),
                    t["lastError"].as_str().unwrap_or("")
                )
            })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (with, without) = (targets("tfdrift"), targets("tfdrift-no-auth"));
        if with.as_deref().is_some_and(|h| h.starts_with("up"))
            && without.as_deref().is_some_and(|h| h.starts_with("down"))
        {
            assert!(
                without.unwrap().contains("401"),
                "refused for want of credentials"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus targets: {with:?} / {without:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
