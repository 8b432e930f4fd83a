//! The pages in a real browser: Debian's headless Chromium loads `/environments/lab` at a
//! phone's 390x844 and a desktop's 1280x800. The DOM it builds (`--dump-dom`) has one
//! timeline mark per stored scan, the change with actual, expected and who, and hostile
//! addresses and values escaped; at 390 px nothing scrolls sideways (measured by a probe
//! page, served by the test beside the exporter's pages, that reads the page's scroll width
//! from a same-origin frame). Screenshots go to `target/screenshots/` as test artefacts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::attribution::{Lab, ROOT, next_poll, scan};
use crate::server::Server;
use crate::support::skip;

fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        skip("chromium is not installed (Debian package chromium)");
        return None;
    }
    Some("chromium")
}

/// Headless Chromium with a window of `size` ("390,844"): the DOM after load, or with
/// `screenshot` a PNG written there.
fn browse(url: &str, size: &str, screenshot: Option<&Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--window-size={size}"));
    match screenshot {
        Some(file) => cmd.arg(format!("--screenshot={}", file.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Serves `/probe` (a page framing an environment's page at 390 px and writing its scroll
/// width into its own DOM) and forwards every other GET to the exporter: the frame is then
/// of the same origin and readable. Stopped when dropped.
struct Probe {
    port: u16,
    stop: Arc<AtomicBool>,
}

fn probe_page(framed: &str) -> String {
    format!(
        "<!DOCTYPE html><html><body style=\"margin:0\">\
<iframe id=\"f\" src=\"{framed}\" style=\"width:390px;height:844px;border:0\"></iframe>\
<pre id=\"out\">pending</pre><script>\
document.getElementById('f').onload = function () {{\
  var d = this.contentDocument.documentElement;\
  document.getElementById('out').textContent = 'scroll ' + d.scrollWidth + ' client ' + d.clientWidth;\
}};</script></body></html>"
    )
}

impl Probe {
    /// Frames `framed` (a path of the exporter).
    fn start(exporter: String, framed: &str) -> Probe {
        let page = Arc::new(probe_page(framed));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    let exporter = exporter.clone();
                    let page = page.clone();
                    std::thread::spawn(move || serve_one(stream, &exporter, &page));
                }
            }
        });
        Probe { port, stop }
    }
}

fn serve_one(mut stream: TcpStream, exporter: &str, probe: &str) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    if path == "/probe" {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{probe}",
            probe.len()
        );
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(exporter) else {
        return;
    };
    let _ = write!(
        upstream,
        "GET {path} HTTP/1.1\r\nHost: {exporter}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = upstream.read_to_end(&mut answer);
    let _ = stream.write_all(&answer);
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_environment_page_reads_on_a_phone_and_a_desktop_in_a_real_browser() {
    let Some(_) = chromium() else { return };
    let Some(lab) = Lab::new() else { return };
    // A resource whose address and values are hostile, changed in the code (not applied).
    let hostile = |value: &str| {
        format!(
            "resource \"terraform_data\" \"evil\" {{\n  for_each = toset([\"<img src=x onerror=alert(1)>&amp;\"])\n  input = \"{value}\"\n}}\n"
        )
    };
    std::fs::write(lab.ws().join("hostile.tf"), hostile("<b>plain</b>")).unwrap();
    lab.apply();
    std::fs::write(
        lab.ws().join("hostile.tf"),
        hostile("</td><script>alert(2)</script>&lt;"),
    )
    .unwrap();
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));

    let server = Server::in_process(&lab.config());
    next_poll(&server);
    for _ in 0..3 {
        assert_eq!(scan(&server)["status"], "drift");
    }
    let url = format!("http://{}/environments/lab", server.address);

    for size in ["390,844", "1280,800"] {
        let dom = browse(&url, size, None);
        // Three scans seconds apart: one stretch of the timeline, titled with its count.
        let marks = dom.matches("class=\"mark drift\"").count();
        assert_eq!(marks, 1, "one mark for the stretch at {size}: {dom}");
        assert!(dom.contains("3 scans from"), "{dom}");
        let row = dom
            .split("<tr class=\"change\">")
            .find(|r| r.contains("pvesim_vm.web"))
            .unwrap_or_else(|| panic!("no row of the VM at {size}: {dom}"));
        assert!(row.contains("<code class=\"actual\">3072</code>"), "{row}");
        assert!(
            row.contains("<code class=\"expected\">2048</code>"),
            "{row}"
        );
        assert!(
            row.contains("<span class=\"user\">root@pam</span>"),
            "{row}"
        );
        assert!(row.contains("changed outside Terraform"), "{row}");
        // The hostile strings are text, not markup: no element came of them.
        assert!(
            !dom.contains("<img src=\"x\""),
            "an address became markup: {dom}"
        );
        assert!(!dom.contains("<script>alert(2)"), "a value became markup");
        assert!(
            dom.contains("&lt;img src=x onerror=alert(1)&gt;&amp;amp;"),
            "{dom}"
        );
        let file = screenshots().join(format!("environment-lab-{}.png", size.replace(',', "x")));
        browse(&url, size, Some(&file));
        assert!(std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000));
    }

    // A scan's page, as a browser asks for it (Accept prefers text/html).
    let (_, latest) = server.get_json("/detail/lab");
    let id = latest["id"].as_str().unwrap();
    let probe = Probe::start(server.address.clone(), "/environments/lab");
    let page = browse(
        &format!("http://127.0.0.1:{}/history/lab/{id}", probe.port),
        "1280,800",
        None,
    );
    assert!(page.contains("<h1>lab: scan"), "{page}");
    assert!(page.contains("root@pam"), "{page}");
    let (_, json_type, _) = server.request("GET", &format!("/history/lab/{id}"), None);
    assert!(
        json_type.starts_with("application/json"),
        "curl still gets JSON"
    );
    // Answers that depend on Accept say so, for every kind they give (regression: no Vary).
    let stored = format!("/history/lab/{id}");
    for (path, accept) in [
        (stored.as_str(), None),
        (stored.as_str(), Some("text/html")),
        ("/metrics", None),
        (
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0"),
        ),
    ] {
        assert_eq!(
            server.header(path, accept, "vary").as_deref(),
            Some("accept"),
            "Vary of {path} ({accept:?})"
        );
    }

    no_sideways_scroll(&probe);
}

/// Asserts that the probe's framed page does not scroll sideways at 390 px.
fn no_sideways_scroll(probe: &Probe) {
    let probed = browse(
        &format!("http://127.0.0.1:{}/probe", probe.port),
        "390,900",
        None,
    );
    let measured = probed
        .split("scroll ")
        .nth(1)
        .and_then(|m| m.split('<').next())
        .unwrap_or_else(|| panic!("the probe measured nothing: {probed}"));
    let mut numbers = measured
        .split_whitespace()
        .filter_map(|w| w.parse::<u32>().ok());
    let (scroll, client) = (numbers.next().unwrap(), numbers.next().unwrap());
    assert!(
        scroll <= client,
        "the page is {scroll} px wide in a {client} px viewport"
    );
}

/// A user whose name holds bidi controls: raw, the page would read `adminmoc.live@...`.
const BIDI_USER: &str = "admin\u{202e}@evil.com\u{202c}";

#[test]
fn a_bidi_author_is_shown_escaped_and_the_longest_name_fits_a_phone() {
    let Some(_) = chromium() else { return };
    let Some(lab) = Lab::new() else { return };
    lab.by_hand(ROOT, "/nodes/pve1/qemu/120/config", json!({"memory": 3072}));
    // The cluster log names a hostile user for the change (newest entry).
    lab.sim
        .cluster
        .audit
        .log("pve1", BIDI_USER, "update VM 120: -memory 3072");
    // The longest name an environment may have: 64 characters, nowhere a browser breaks.
    let name = "homelab_proxmox_production_cluster_north_rack2_firewall_rules_01";
    assert_eq!(name.len(), 64);
    let config = lab.config();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[environments.lab]", &format!("[environments.{name}]")),
    )
    .unwrap();
    let server = Server::in_process(&config);
    next_poll(&server);
    assert_eq!(
        server.request("POST", &format!("/scan/{name}"), None).0,
        202
    );
    server.wait_detail(std::time::Duration::from_secs(60), |d| {
        d["environments"][name]["status"] == "drift"
    });
    let path = format!("/environments/{name}");
    let url = format!("http://{}{path}", server.address);
    let dom = browse(&url, "390,844", None);
    let row = dom
        .split("<tr class=\"change\">")
        .find(|r| r.contains("pvesim_vm.web"))
        .unwrap_or_else(|| panic!("no row of the VM: {dom}"));
    assert!(
        row.contains("<span class=\"user\">admin\\u202e@evil.com\\u202c</span>"),
        "the author's bidi controls shown escaped: {row}"
    );
    assert!(
        !dom.contains(['\u{202e}', '\u{202c}']),
        "a raw bidi control in the DOM"
    );
    browse(
        &url,
        "390,844",
        Some(&screenshots().join("environment-long-name-390x844.png")),
    );
    no_sideways_scroll(&Probe::start(server.address.clone(), &path));
}

/// Regression: the timeline drew one mark per stored scan of 90 days; at a one-minute
/// interval that is ~130,000 links, ~20 MB of HTML for a phone. With 130,000 stored scans
/// (written directly, as the store lays them out) the page is under 500 KB, draws at most
/// 500 marks, and Chromium renders it.
#[test]
fn an_environment_with_130000_scans_in_90_days_has_a_small_page() {
    use tfdrift_exporter::report::{PlanOutcome, Report, Status};
    let Some(_) = chromium() else { return };
    let root = tempfile::tempdir().unwrap();
    let history = root.path().join("state/envs/lab/history");
    std::fs::create_dir_all(&history).unwrap();
    std::fs::create_dir_all(root.path().join("ws")).unwrap();
    let now = chrono::Utc::now();
    let scans: i64 = 130_000;
    // One report serialised once; each file is it with its own id, times and status.
    let mut r = Report::from_outcome(PlanOutcome::no_changes());
    let placeholder = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    r.stamp = Some(tfdrift_exporter::report::Stamp {
        id: "@ID@".into(),
        environment: "lab".into(),
        started_at: placeholder,
        finished_at: placeholder,
        duration_seconds: 0.0,
    });
    let template = serde_json::to_string(&r).unwrap();
    let epoch = placeholder.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(template.matches(&epoch).count(), 2, "{template}");
    let mut index = String::with_capacity(scans as usize * 90);
    for i in 0..scans {
        // Oldest first, 130,000 within 90 days (one every 59.8 s); every 1000th drifts,
        // every 5000th fails.
        let finished = now - chrono::Duration::milliseconds((scans - i) * 59_800);
        let status = match i {
            i if i % 5000 == 0 => Status::Error,
            i if i % 1000 == 0 => Status::Drift,
            _ => Status::Conform,
        };
        let id = format!("lab-{i:06}");
        let at = finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let json = template.replace("@ID@", &id).replace(&epoch, &at).replace(
            "\"status\":\"conform\"",
            &format!("\"status\":\"{}\"", status.as_str()),
        );
        // The page reads only the newest report whole (the rest come from the index):
        // the other files are hard links (a file system allows ~65,000 a file).
        let file = history.join(format!("{id}.json"));
        let base = i - i % 50_000;
        if i == base || i == scans - 1 {
            std::fs::write(&file, json).unwrap();
        } else {
            std::fs::hard_link(history.join(format!("lab-{base:06}.json")), &file).unwrap();
        }
        index.push_str(&format!(
            "{{\"id\":\"{id}\",\"finished_at\":\"{at}\",\"status\":\"{}\"}}\n",
            status.as_str()
        ));
    }
    std::fs::write(history.join("index.jsonl"), index).unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        "[storage]\npath = \"state\"\n[environments.lab]\ndir = \"ws\"\ninterval = \"1d\"\nrun_on_start = false\n",
    )
    .unwrap();
    let server = Server::in_process(&config);
    server.wait_served(std::time::Duration::from_secs(180));
    let (status, _, page) = server.request("GET", "/environments/lab", Some("text/html"));
    assert_eq!(status, 200);
    assert!(page.len() < 500_000, "the page is {} bytes", page.len());
    let marks = page.matches("<rect class=\"mark").count();
    assert!((400..=500).contains(&marks), "{marks} marks");
    assert!(
        page.contains("130000 scans from"),
        "the count of the window"
    );
    let started = std::time::Instant::now();
    let dom = browse(
        &format!("http://{}/environments/lab", server.address),
        "390,844",
        None,
    );
    eprintln!(
        "130,000 scans: page {} bytes, {marks} marks, Chromium {:?}",
        page.len(),
        started.elapsed()
    );
    assert_eq!(dom.matches("<rect class=\"mark").count(), marks);
}
