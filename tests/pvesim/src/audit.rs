//! What the simulated cluster remembers of who did what, as the real one does
//! (docs/proxmox.md, "Who changed a guest"):
//!
//! - the cluster log, an in-memory ring (the real one is 128 KiB; here a number of entries,
//!   1,000 by default), answered newest first by `GET /cluster/log?max=N`. A qemu config
//!   change through the API (PUT or POST) writes `update VM <vmid>: -<key> <value> ...` (keys
//!   sorted) with the acting user, a token acting as `user@realm!tokenid`. Container config
//!   edits write nothing. A caller without `Sys.Syslog` sees only its own entries.
//! - the nodes' task lists (`GET /nodes/{node}/tasks`): POST of a qemu config makes a
//!   `qmconfig` task (PUT makes none), creating a guest a `qmcreate` or `vzcreate` task; a
//!   token's task splits `user` and `tokenid`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

/// Entries the cluster log keeps when nothing else is said.
pub const LOG_CAPACITY: usize = 1000;

/// One line of the cluster log, in the API's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    pub uid: u64,
    pub time: i64,
    pub pri: u8,
    pub tag: String,
    pub pid: u32,
    pub node: String,
    pub user: String,
    pub msg: String,
    pub id: String,
}

/// One task of a node's list, in the API's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    pub endtime: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenid: Option<String>,
    pub status: String,
}

#[derive(Debug, Default)]
struct Books {
    log: VecDeque<LogEntry>,
    /// 0: [`LOG_CAPACITY`].
    capacity: usize,
    next_uid: u64,
    tasks: Vec<Task>,
}

/// The cluster log and the task lists.
#[derive(Debug, Default)]
pub struct Audit {
    books: Mutex<Books>,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `-key value` pairs of a config change, keys sorted, as qemu-server logs them.
fn config_args(params: &BTreeMap<String, Value>) -> String {
    params
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let value = if key == "cipassword" {
                "<hidden>".to_owned()
            } else {
                value
            };
            format!("-{key} {value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Audit {
    /// Keeps at most `entries` lines in the cluster log from now on.
    pub fn set_log_capacity(&self, entries: usize) {
        self.books.lock().unwrap().capacity = entries;
    }

    /// Writes one line to the cluster log (the simulator's handlers, and tests adding what
    /// other activity on a busy cluster would log).
    pub fn log(&self, node: &str, user: &str, msg: &str) {
        let mut books = self.books.lock().unwrap();
        books.next_uid += 1;
        let uid = books.next_uid;
        let capacity = match books.capacity {
            0 => LOG_CAPACITY,
            n => n,
        };
        books.log.push_back(LogEntry {
            uid,
            time: now(),
            pri: 6,
            tag: "pvedaemon".into(),
            pid: 1000 + (uid % 1000) as u32,
            node: node.into(),
            user: user.into(),
            msg: msg.into(),
            id: format!("{uid}:{node}"),
        });
        while books.log.len() > capacity {
            books.log.pop_front();
        }
    }

    /// Adds a task of `kind` about `vmid` to `node`'s list, started now by `actor` (the
    /// simulator's handlers, and tests adding what other activity would).
    pub fn task(&self, node: &str, actor: &str, kind: &str, vmid: u32) {
        let mut books = self.books.lock().unwrap();
        let n = books.tasks.len() as u32 + 1;
        let start = now();
        let (user, tokenid) = match actor.split_once('!') {
            Some((user, token)) => (user.to_owned(), Some(token.to_owned())),
            None => (actor.to_owned(), None),
        };
        books.tasks.push(Task {
            upid: format!(
                "UPID:{node}:{:08X}:{:08X}:{start:08X}:{kind}:{vmid}:{actor}:",
                2000 + n,
                n
            ),
            node: node.into(),
            pid: 2000 + n,
            pstart: n as u64,
            starttime: start,
            endtime: start,
            kind: kind.into(),
            id: vmid.to_string(),
            user,
            tokenid,
            status: "OK".into(),
        });
    }

    /// A guest's config changed through the API: qemu logs it (and POST makes a task),
    /// containers log nothing.
    pub fn config_changed(
        &self,
        actor: &str,
        node: &str,
        kind: &str,
        vmid: u32,
        post: bool,
        params: &BTreeMap<String, Value>,
    ) {
        if kind != "qemu" || params.is_empty() {
            return;
        }
        self.log(
            node,
            actor,
            &format!("update VM {vmid}: {}", config_args(params)),
        );
        if post {
            self.task(node, actor, "qmconfig", vmid);
        }
    }

    /// A guest was created through the API.
    pub fn created(&self, actor: &str, node: &str, kind: &str, vmid: u32) {
        let task = if kind == "qemu" {
            "qmcreate"
        } else {
            "vzcreate"
        };
        self.task(node, actor, task, vmid);
    }

    /// A guest was destroyed through the API.
    pub fn destroyed(&self, actor: &str, node: &str, kind: &str, vmid: u32) {
        let task = if kind == "qemu" {
            "qmdestroy"
        } else {
            "vzdestroy"
        };
        self.task(node, actor, task, vmid);
    }

    /// `GET /cluster/log?max=N` (default 50), newest first; without `Sys.Syslog` only the
    /// caller's own entries. As pve-manager does, the entries are pmxcfs' text (see
    /// [`pmxcfs_text`]) decoded with `decode_json`: `Err` (HTTP 500) when that text is not
    /// JSON, which one logged backslash is enough for.
    pub fn log_answer(&self, query: &str, actor: &str, syslog: bool) -> Result<Value, String> {
        let max = param(query, "max")
            .and_then(|m| m.parse().ok())
            .unwrap_or(50usize);
        let books = self.books.lock().unwrap();
        let entries: Vec<String> = books
            .log
            .iter()
            .rev()
            .filter(|e| syslog || e.user == actor)
            .take(max)
            .map(|e| {
                format!(
                    r#"{{"uid":{},"time":{},"pri":{},"tag":"{}","pid":{},"node":"{}","user":"{}","msg":"{}","id":"{}"}}"#,
                    e.uid,
                    e.time,
                    e.pri,
                    pmxcfs_text(&e.tag),
                    e.pid,
                    pmxcfs_text(&e.node),
                    pmxcfs_text(&e.user),
                    pmxcfs_text(&e.msg),
                    pmxcfs_text(&e.id)
                )
            })
            .collect();
        let text = format!("{{\"data\":[{}]}}", entries.join(","));
        let data: Value = serde_json::from_str(&text)
            .map_err(|e| format!("malformed JSON string, {e} (in the cluster log)"))?;
        Ok(data)
    }

    /// The ring starts again, empty, its uids from 1: pmxcfs restarted on a single node.
    pub fn restart_pmxcfs(&self) {
        let mut books = self.books.lock().unwrap();
        books.log.clear();
        books.next_uid = 0;
    }

    /// `GET /nodes/{node}/tasks?since=&vmid=&typefilter=&limit=` (default 50), newest first.
    pub fn tasks_answer(&self, node: &str, query: &str) -> Value {
        let since: i64 = param(query, "since")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let vmid = param(query, "vmid");
        let typefilter = param(query, "typefilter");
        let limit = param(query, "limit")
            .and_then(|m| m.parse().ok())
            .unwrap_or(50usize);
        let books = self.books.lock().unwrap();
        let data: Vec<&Task> = books
            .tasks
            .iter()
            .rev()
            .filter(|t| t.node == node && t.starttime >= since)
            .filter(|t| vmid.is_none_or(|v| t.id == v))
            .filter(|t| typefilter.is_none_or(|f| t.kind == f))
            .take(limit)
            .collect();
        json!({ "data": data })
    }
}

/// Text as pmxcfs writes it into its JSON (docs/proxmox.md, "Text as pmxcfs writes it"):
/// `"` as `\"`, control characters as `#NNN`, other non-ASCII as `\uXXXX`, characters above
/// U+FFFF dropped, and a backslash written as it is (not escaped).
pub fn pmxcfs_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("#{:03}", c as u32)),
            c if (c as u32) > 0xFFFF => {}
            c if !c.is_ascii() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The value of `name` in a query string (no percent-decoding: the values here are numbers
/// and words).
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
}
