//! `reconcile`: how to resolve the last drift of an environment, for a person to do. Revert
//! (make reality match the code again with a targeted apply) or adopt (write what reality has
//! into the code). It prints commands and HCL; it runs nothing.

use std::fmt::Write;

use serde_json::Value;

use crate::config::Environment;
use crate::plan::redact::{KNOWN_AFTER_APPLY, SENSITIVE};
use crate::report::{Action, Change, Report, Status};
use crate::unmanaged::Unmanaged;
use crate::unmanaged::state::import_blocks;

/// Quotes a word for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The environment's binary as a person types it (`terraform`, `tofu`, a quoted path).
fn program(env: &Environment) -> String {
    let plain = env
        .binary
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if plain {
        env.binary.clone()
    } else {
        shell_quote(&env.binary)
    }
}

/// A JSON value written as HCL.
pub fn hcl(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let escaped = s
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
                .replace("${", "$${")
                .replace("%{", "%%{");
            format!("\"{escaped}\"")
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|v| hcl(v, indent)).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(map) => {
            let pad = "  ".repeat(indent + 1);
            let mut out = String::from("{\n");
            for (k, v) in map {
                let key = if is_identifier(k) {
                    k.clone()
                } else {
                    hcl(&Value::String(k.clone()), 0)
                };
                let _ = writeln!(out, "{pad}{key} = {}", hcl(v, indent + 1));
            }
            out.push_str(&"  ".repeat(indent));
            out.push('}');
            out
        }
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn marker(v: &Value) -> bool {
    matches!(v, Value::String(s) if s == KNOWN_AFTER_APPLY)
}

/// The guide for one environment's latest report.
/// `exporter` is the start of a `curl -X POST` to the running exporter, URL base included
/// (see [`trigger_command`]).
#[allow(
    clippy::disallowed_methods,
    reason = "the reconcile command, a one-shot command without a runtime"
)]
pub fn guide(env: &Environment, report: &Report, exporter: &str) -> String {
    let mut out = String::new();
    let id = report.id().unwrap_or("?");
    let when = report
        .finished_at()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    match report.status {
        Status::Conform => {
            let _ = writeln!(
                out,
                "{}: the last scan ({id}, {when}) found no drift: nothing to reconcile.",
                env.name
            );
            return out;
        }
        Status::Error => {
            let reason = report
                .error
                .as_ref()
                .map(|e| e.reason.as_str())
                .unwrap_or("unknown");
            let _ = writeln!(
                out,
                "{}: the last scan ({id}, {when}) failed ({reason}); showing its changes if it had any. Fix the error and scan again first.",
                env.name
            );
        }
        Status::Drift => {
            let _ = writeln!(out, "{}: drift found by scan {id} ({when}).", env.name);
        }
    }
    let counted: Vec<&Change> = report
        .changes
        .iter()
        .filter(|c| c.action.is_counted())
        .collect();
    if counted.is_empty() {
        return out;
    }
    let var_files: String = env
        .var_files
        .iter()
        .map(|f| format!(" -var-file={}", shell_quote(&f.display().to_string())))
        .collect();
    let dir = std::fs::canonicalize(&env.dir).unwrap_or_else(|_| env.dir.clone());
    let chdir = shell_quote(&format!("-chdir={}", dir.display()));
    let tf = program(env);
    let _ = writeln!(
        out,
        "Nothing below has been run. For each resource, choose one way:\n"
    );
    for change in counted {
        resource_guide(&mut out, change, &tf, &chdir, &var_files);
    }
    let _ = writeln!(
        out,
        "Then confirm: tfdrift-exporter scan {}   (or: {exporter}/scan/{})",
        env.name, env.name
    );
    if exporter.contains("https://") {
        let _ = writeln!(
            out,
            "(curl needs --cacert FILE when the exporter's certificate comes from a private CA)"
        );
    }
    out
}

/// One resource: how to revert it with terraform, and how to adopt it in the code.
fn resource_guide(out: &mut String, change: &Change, tf: &str, chdir: &str, var_files: &str) {
    let origin = if change.outside_terraform {
        "changed outside Terraform"
    } else {
        "code not applied yet"
    };
    let _ = writeln!(out, "## {} ({}, {origin})", change.address, change.action);
    let revert = format!(
        "{tf} {chdir} apply{var_files} -target={}",
        shell_quote(&change.address)
    );
    match change.action {
        Action::Update | Action::Replace => {
            let _ = writeln!(out, "revert (make it match the code again):\n    {revert}");
            adopt_attributes(out, change);
        }
        Action::Create => {
            let _ = writeln!(
                out,
                "revert (create it again as the code declares):\n    {revert}\nadopt (it is gone for good: drop it from the code, and from the state without destroying anything):\n    remove its resource block, and add:\n    removed {{\n      from = {}\n      lifecycle {{\n        destroy = false\n      }}\n    }}\n    (or: {tf} {chdir} state rm {})",
                change.address.split('[').next().unwrap_or(&change.address),
                shell_quote(&change.address)
            );
        }
        Action::Delete => {
            let _ = writeln!(
                out,
                "revert (destroy it, as the code no longer declares it):\n    {revert}\nadopt (keep it: put its resource block back in the code; `{tf} {chdir} state show {}` shows its values)",
                shell_quote(&change.address)
            );
        }
        Action::Move | Action::Import | Action::Forget => {}
    }
    out.push('\n');
}

/// The values to write into the code to keep an updated resource as it is now.
fn adopt_attributes(out: &mut String, change: &Change) {
    let causes: Vec<_> = change
        .attributes
        .iter()
        .filter(|a| !marker(&a.expected))
        .collect();
    let _ = writeln!(
        out,
        "adopt (keep what it is now: write this into the resource's code):"
    );
    for a in causes {
        let value = if a.actual == Value::String(SENSITIVE.to_owned()) {
            "\"<sensitive: write the value yourself>\"".to_owned()
        } else {
            hcl(&a.actual, 2)
        };
        if is_identifier(&a.path) {
            let _ = writeln!(out, "    {} = {value}", a.path);
        } else {
            let _ = writeln!(out, "    # {} (inside a block or object): {value}", a.path);
        }
    }
}

/// The part of the guide that adopts guests created outside Terraform: `import` blocks in
/// the provider's id format of the environment's state.
pub fn adopt_unmanaged(env: &Environment, unmanaged: &Unmanaged) -> String {
    let mut out = String::new();
    let when = unmanaged
        .guests_checked_at
        .or(unmanaged.checked_at)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    if let Some(e) = &unmanaged.error {
        let _ = writeln!(
            out,
            "\nThe last unmanaged-guest check failed ({}): {}",
            e.reason, e.summary
        );
        if unmanaged.guests.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "The guests below were found by the last successful check ({when})."
        );
    }
    if unmanaged.guests.is_empty() {
        let _ = writeln!(
            out,
            "\nUnmanaged guests: none (checked {when}): every guest in Proxmox is in a state or ignored."
        );
        return out;
    }
    let provider = unmanaged.provider_for(&env.name);
    let _ = writeln!(
        out,
        "\nGuests created outside Terraform ({} found {when}; no environment's state manages them).",
        unmanaged.guests.len()
    );
    let _ = writeln!(
        out,
        "To adopt them into {} ({}), put these blocks in a .tf file of {}:\n",
        env.name,
        provider.source(),
        env.dir.display()
    );
    out.push_str(&import_blocks(&unmanaged.guests, provider));
    let _ = writeln!(
        out,
        "then let terraform write their configuration and check it:\n  {} {} plan -generate-config-out=generated.tf\n\
         Review generated.tf, apply to record them in the state, and remove the import blocks.\n\
         To leave a guest outside Terraform on purpose, list it under [proxmox.ignore] (vmids, names or tags).",
        program(env),
        shell_quote(&format!("-chdir={}", env.dir.display()))
    );
    out
}

/// `curl ... -X POST <base>` for the running exporter: `https` when it serves TLS, `-u USER`
/// (curl asks for the password) when it wants basic authentication. A certificate from a
/// private CA also needs `--cacert FILE`, which the guide says.
pub fn trigger_command(base: &str, tls: bool, user: Option<&str>) -> String {
    let mut command = String::from("curl");
    if let Some(user) = user {
        let _ = write!(command, " -u {}", shell_quote(user));
    }
    let scheme = if tls { "https" } else { "http" };
    let _ = write!(command, " -X POST {scheme}://{base}");
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_written_as_hcl() {
        assert_eq!(hcl(&json!(3072), 0), "3072");
        assert_eq!(hcl(&json!("a\"b${x}"), 0), "\"a\\\"b$${x}\"");
        assert_eq!(hcl(&json!(["a", 1]), 0), "[\"a\", 1]");
        assert_eq!(
            hcl(&json!({"name": "web", "app.io/x": true}), 0),
            "{\n  \"app.io/x\" = true\n  name = \"web\"\n}"
        );
        assert_eq!(shell_quote("a['x']"), "'a['\\''x'\\'']'");
    }
}
