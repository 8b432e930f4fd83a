//! The alerting chain's test support: a local fake of the Telegram Bot API (it imitates the
//! documented `sendMessage` request and answer), Debian's Alertmanager and Prometheus with
//! the shipped files, daemons stopped when dropped, Prometheus queries, and a checker of
//! what Telegram's HTML mode accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A local stand-in for the Telegram Bot API: records `POST /bot<token>/sendMessage` bodies
/// and answers as Telegram does.
/// The chat of the shipped route (Alertmanager sends `chat_id` as a string).
pub const MAIN_CHAT: &str = "-100777";

pub struct FakeTelegram {
    pub port: u16,
    messages: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl FakeTelegram {
    pub fn start() -> FakeTelegram {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, flag) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                if request_line.contains("/sendMessage")
                    && let Ok(v) = serde_json::from_slice::<Value>(&body)
                {
                    seen.lock().unwrap().push(v);
                }
                let answer = r#"{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":-1,"type":"group"},"text":""}}"#;
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        FakeTelegram {
            port,
            messages,
            stop,
        }
    }

    /// The texts sent to `chat`, in order.
    pub fn texts_in(&self, chat: &str) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m["chat_id"] == chat)
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The texts sent to the main chat ([`MAIN_CHAT`]).
    pub fn texts(&self) -> Vec<String> {
        self.texts_in(MAIN_CHAT)
    }

    /// Every text sent, to any chat.
    pub fn all(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn wait_for(&self, what: &str, limit: Duration, found: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = self.texts().into_iter().find(|t| found(t)) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no Telegram message {what} within {limit:?}; got {:#?}",
                self.texts()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A child process killed when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/alertmanager.yml` as shipped, sending to `telegram` (the fake's port) with a
/// test bot token and the main chat ([`MAIN_CHAT`]).
pub fn shipped_alertmanager(telegram: u16) -> String {
    std::fs::read_to_string(repo().join("examples/alertmanager.yml"))
        .unwrap()
        .replace(
            "api_url: https://api.telegram.org",
            &format!("api_url: http://127.0.0.1:{telegram}"),
        )
        .replace(
            "\"123456:REPLACE-WITH-YOUR-BOT-TOKEN\"",
            "\"42:test-token\"",
        )
        .replace("chat_id: -1001234567890", "chat_id: -100777")
}

/// Debian's Alertmanager on `config` (written under `dir` beside the shipped template), and
/// its port.
pub fn alertmanager(dir: &Path, config: &str) -> (Daemon, u16) {
    let port = free_port();
    std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
    std::fs::copy(
        repo().join("examples/tfdrift.tmpl"),
        dir.join("tfdrift.tmpl"),
    )
    .unwrap();
    let daemon = Daemon(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (daemon, port)
}

/// Debian's Prometheus with the shipped rules, scraping `targets` (job `tfdrift`) and
/// evaluating every `interval`, alerting to Alertmanager on `alertmanager`; `extra` are more
/// flags. Its data under `dir`; returns its port.
pub fn prometheus(
    dir: &Path,
    interval: &str,
    alertmanager: u16,
    targets: &[&str],
    extra: &[&str],
) -> (Daemon, u16) {
    let port = free_port();
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{alertmanager}\"]\nscrape_configs:\n  - job_name: tfdrift\n    static_configs:\n      - targets: [{}]\n",
            repo().join("alert-rules/tfdrift.rules.yml").display(),
            targets.join(", ")
        ),
    )
    .unwrap();
    let daemon = Daemon(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (daemon, port)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http_json(url: &str) -> Value {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The body of a GET of `url` (empty on failure).
pub fn http_text(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn prom_query(port: u16, query: &str) -> Vec<Value> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-G", "--data-urlencode"])
        .arg(format!("query={query}"))
        .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_ne!(v["status"], "error", "{query}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

pub fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `Ok` when `text` is what Telegram's HTML mode accepts: only its tags, each closed in
/// order, and every `<`, `>` and `&` outside them written as an entity.
pub fn telegram_html(text: &str) -> Result<(), String> {
    const TAGS: [&str; 13] = [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "a",
        "code",
        "pre",
        "blockquote",
    ];
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['<', '>', '&']) {
        let after = &rest[i..];
        if after.starts_with('>') {
            return Err(format!("a bare '>' at {:?}", &after[..after.len().min(20)]));
        }
        if after.starts_with('&') {
            let end = after.find(';').ok_or("an '&' that starts no entity")?;
            let entity = &after[1..end];
            let known = matches!(entity, "lt" | "gt" | "amp" | "quot")
                || entity
                    .strip_prefix('#')
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !known {
                return Err(format!("unknown entity &{entity};"));
            }
            rest = &after[end + 1..];
            continue;
        }
        let end = after.find('>').ok_or("an unclosed tag")?;
        let tag = &after[1..end];
        match tag.strip_prefix('/') {
            Some(name) => {
                if open.pop().as_deref() != Some(name) {
                    return Err(format!("</{name}> closes nothing open"));
                }
            }
            None => {
                let name = tag.split(' ').next().unwrap_or_default();
                if !TAGS.contains(&name) {
                    return Err(format!("<{name}> is not a Telegram tag"));
                }
                open.push(name.to_owned());
            }
        }
        rest = &after[end + 1..];
    }
    match open.is_empty() {
        true => Ok(()),
        false => Err(format!("{open:?} left open")),
    }
}
