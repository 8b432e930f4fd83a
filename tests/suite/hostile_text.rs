//! Hostile text, as a careless operator and a hostile cluster would write it: emoji (two
//! UTF-16 units each, as Telegram counts), bidi controls that reorder what surrounds them
//! (`admin\u{202e}@evil.com\u{202c}` reads as `adminmoc.live@...`), C1 and DEL characters
//! that terminals obey, and `<&>"` for the HTML surfaces. Fleets of simulated Proxmox
//! guests whose `for_each` keys, names and authors are made of it.

use std::path::PathBuf;

use serde_json::json;

use crate::proxmox::{Homelab, TOKEN, provider_code};

/// The bidi and control characters every surface must show escaped, never raw.
pub const HIDDEN: [char; 6] = [
    '\u{202e}', '\u{202c}', '\u{2066}', '\u{9b}', '\u{7f}', '\u{1b}',
];

/// What the texts of a fleet are made of.
#[derive(Clone, Copy, Debug)]
pub enum Style {
    /// Only characters beyond U+FFFF: 60 emoji are 120 units.
    Emoji,
    /// Only the Basic Multilingual Plane, but hostile: `<&>"`, bidi, C1, DEL, ESC.
    Bmp,
    /// Both, alternating by index.
    Mixed,
}

impl Style {
    fn pick(self, i: usize) -> Style {
        match self {
            Style::Mixed if i.is_multiple_of(2) => Style::Emoji,
            Style::Mixed => Style::Bmp,
            other => other,
        }
    }

    /// The `i`th text (a `for_each` key, a guest's name): distinct per `i`.
    pub fn text(self, i: usize) -> String {
        match self.pick(i) {
            Style::Emoji => format!("{}{i}", "\u{1F525}".repeat(60)),
            _ => format!(
                "{i}{}",
                "<&>\"\u{202e}moc.live\u{202c}\u{9b}2J\u{7f}\u{2066}\u{1b}[0m".repeat(8)
            ),
        }
    }

    /// The `i`th author, as the cluster log would name them.
    pub fn user(self, i: usize) -> String {
        match self.pick(i) {
            Style::Emoji => format!("{}{i}@pam", "\u{1F600}".repeat(30)),
            _ => format!("admin\u{202e}@evil.com\u{202c}{i}\u{9b}@pve"),
        }
    }
}

/// A workspace in `lab`'s simulator with `count` guests from vmid `first`, keyed by
/// `style`'s texts, applied. Returns its directory.
pub fn fleet(lab: &Homelab, name: &str, first: u32, count: usize, style: Style) -> PathBuf {
    let dir = lab.root.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let keys: Vec<String> = (0..count).map(|i| style.text(i)).collect();
    std::fs::write(dir.join("keys.json"), json!(keys).to_string()).unwrap();
    let code = format!(
        "{}locals {{\n  keys = jsondecode(file(\"${{path.module}}/keys.json\"))\n}}\n\
         resource \"pvesim_vm\" \"g\" {{\n  for_each = {{ for i, k in local.keys : k => i }}\n  \
         vmid   = {first} + each.value\n  node   = \"pve1\"\n  name   = \"vm${{each.value}}\"\n  \
         memory = 2048\n  cores  = 2\n}}\n",
        provider_code(lab.sim.url(), TOKEN, lab.sim.ca())
    );
    std::fs::write(dir.join("main.tf"), code).unwrap();
    lab.terraform_in(
        &dir,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    dir
}

/// Every guest of a fleet renamed to `style`'s text and given 1 GB more, "by hand": the
/// simulator's guests changed and the cluster log saying who did it, as Proxmox logs a
/// config change (`update VM <id>: -memory ... -name ...`).
pub fn drift_by_hand(lab: &Homelab, first: u32, count: usize, style: Style) {
    for i in 0..count {
        let vmid = first + i as u32;
        let name = style.text(i);
        {
            let mut guests = lab.sim.cluster.guests.lock().unwrap();
            let guest = guests.get_mut(&vmid).expect("the fleet's guest");
            guest.memory = 3072;
            guest.name = Some(name.clone());
        }
        match style.pick(i) {
            // pmxcfs drops characters beyond U+FFFF from the cluster log: such an author
            // reaches the exporter only through a task list (a POST of the config).
            Style::Emoji => lab
                .sim
                .cluster
                .audit
                .task("pve1", &style.user(i), "qmconfig", vmid),
            _ => lab.sim.cluster.audit.log(
                "pve1",
                &style.user(i),
                &format!("update VM {vmid}: -memory 3072 -name {name}"),
            ),
        }
    }
}

/// `text` without the escape sequences a pty adds of its own (`script` writes none here with
/// NO_COLOR, but a carriage return before each newline).
fn terminal_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace("\r\n", "\n")
}

/// Regression: the `scan` table and the log lines passed U+202E, U+2066 (bidi), U+009B (the
/// 8-bit CSI) and DEL raw to the terminal. On a pty, with a workspace directory and a value
/// full of them: every one is printed as its `\uXXXX` escape.
#[test]
fn the_scan_table_and_the_logs_on_a_terminal_show_hidden_characters_escaped() {
    if !crate::support::have_terraform() {
        return;
    }
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::support::skip("script (util-linux) is not installed: no pty");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // The directory's name is logged ("scan started ... dir=..."); the value is in the table.
    let ws = root.path().join("ws\u{202e}\u{2066}\u{9b}\u{7f}");
    std::fs::create_dir(&ws).unwrap();
    let code = |value: &str| {
        format!(
            "resource \"terraform_data\" \"x\" {{\n  for_each = toset([\"k\\u202e\"])\n  input = \"{value}\"\n}}\n"
        )
    };
    std::fs::write(ws.join("main.tf"), code("plain")).unwrap();
    crate::support::terraform(
        &ws,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    std::fs::write(ws.join("main.tf"), code("v\\u202e\\u2066\\u009b2J\\u007f")).unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        "[storage]\npath = \"state\"\n[defaults]\ninterval = \"1h\"\n\
         [environments.lab]\ndir = \"ws\\u202e\\u2066\\u009b\\u007f\"\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_tfdrift-exporter");
    let command = format!("{bin} scan --config '{}'", config.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = terminal_text(&out.stdout);
    assert!(shown.contains("lab: DRIFT"), "{shown}");
    let row = shown
        .lines()
        .find(|l| l.contains("input"))
        .unwrap_or_else(|| panic!("no table row: {shown}"));
    assert!(
        row.contains("v\\u202e\\u2066\\u009b2J\\u007f"),
        "the value escaped in the table: {row}"
    );
    let log = shown
        .lines()
        .find(|l| l.contains("msg=\"scan started\""))
        .unwrap_or_else(|| panic!("no log line: {shown}"));
    assert!(
        log.contains("ws\\u202e\\u2066\\u009b\\u007f"),
        "the directory escaped in the log: {log}"
    );
    assert!(
        !shown.contains(HIDDEN) && !shown.contains('\u{1b}'),
        "a hidden character reached the terminal: {shown:?}"
    );
}
