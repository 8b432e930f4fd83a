//! Values of the root module's `sensitive = true` variables, known before terraform runs.
//! Terraform prints them in clear in some error texts (a `validation` message that
//! interpolates the variable), so a scan treats them as secrets from its start, whatever
//! their source: `var_files`, `terraform.tfvars` and `*.auto.tfvars` (HCL or JSON),
//! `TF_VAR_<name>` (the process, `env`, `env_files`) and the variable's `default`.
//!
//! Blocking file I/O: call it off the async runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The sensitive variables declared in the `*.tf` and `*.tf.json` files of `dir` (the root
/// module), with their defaults. A file that does not parse is passed over: terraform
/// refuses it before it evaluates any variable.
pub fn declared(dir: &Path) -> BTreeMap<String, Option<Value>> {
    let mut out = BTreeMap::new();
    for path in files(dir, |name| name.ends_with(".tf")) {
        let Some(body) = read(&path).and_then(|text| hcl::parse(&text).ok()) else {
            continue;
        };
        for block in body.blocks().filter(|b| b.identifier() == "variable") {
            let Some(name) = block.labels().first().map(|l| l.as_str().to_owned()) else {
                continue;
            };
            let attribute = |key: &str| {
                block
                    .body()
                    .attributes()
                    .find(|a| a.key() == key)
                    .map(|a| json_of(hcl::Value::from(a.expr().clone())))
            };
            if attribute("sensitive") == Some(Value::Bool(true)) {
                out.insert(name, attribute("default"));
            }
        }
    }
    for path in files(dir, |name| name.ends_with(".tf.json")) {
        let Some(doc) = read(&path).and_then(|t| serde_json::from_str::<Value>(&t).ok()) else {
            continue;
        };
        let Some(variables) = doc.get("variable").and_then(Value::as_object) else {
            continue;
        };
        for (name, v) in variables {
            if v.get("sensitive") == Some(&Value::Bool(true)) {
                out.insert(name.clone(), v.get("default").cloned());
            }
        }
    }
    out
}

/// Every value the sensitive variables of `dir` may take in a scan: from `var_files`
/// (relative to `dir`), the automatically loaded variable files, `TF_VAR_<name>` in `vars`
/// or the process environment, and the defaults.
/// Returned as the string leaves of those values (numbers and booleans are not secrets
/// anyone could recognise).
pub fn values(dir: &Path, var_files: &[PathBuf], vars: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for value in raw_values(dir, var_files, vars) {
        leaves(&value, &mut out);
    }
    out
}

fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
        _ => {}
    }
}

fn raw_values(dir: &Path, var_files: &[PathBuf], vars: &[(String, String)]) -> Vec<Value> {
    let declared = declared(dir);
    if declared.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<Value> = declared.values().flatten().cloned().collect();
    let auto = files(dir, |name| {
        name == "terraform.tfvars"
            || name == "terraform.tfvars.json"
            || name.ends_with(".auto.tfvars")
            || name.ends_with(".auto.tfvars.json")
    });
    for path in auto
        .into_iter()
        .chain(var_files.iter().map(|f| dir.join(f)))
    {
        let assigned = read(&path).map(|text| assignments(&path, &text));
        for (name, value) in assigned.into_iter().flatten() {
            if declared.contains_key(&name) {
                out.push(value);
            }
        }
    }
    let environment = std::env::vars().chain(vars.iter().cloned());
    for (key, value) in environment {
        if let Some(name) = key.strip_prefix("TF_VAR_")
            && declared.contains_key(name)
        {
            out.push(Value::String(value));
        }
    }
    out
}

/// The `name = value` lines of a variables file (`.tfvars` is HCL, `.tfvars.json` JSON).
fn assignments(path: &Path, text: &str) -> Vec<(String, Value)> {
    if path.extension().is_some_and(|e| e == "json") {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            _ => Vec::new(),
        };
    }
    let Ok(body) = hcl::parse(text) else {
        // Unparsable: terraform stops on it before any validation runs. Its words may
        // still be a value ("token = s3cr3t" without quotes): every word counts.
        return text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), Value::String(v.trim().to_owned())))
            .collect();
    };
    body.attributes()
        .map(|a| {
            (
                a.key().to_owned(),
                json_of(hcl::Value::from(a.expr().clone())),
            )
        })
        .collect()
}

fn json_of(value: hcl::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The files of `dir` whose names `keep` accepts, in name order (as terraform reads them).
#[allow(
    clippy::disallowed_methods,
    reason = "called from scan::files inside the scan's spawn_blocking"
)]
fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter(|e| keep(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// A file's text; a code file over 16 MiB is not read (no root module has one).
#[allow(
    clippy::disallowed_methods,
    reason = "called from scan::files inside the scan's spawn_blocking"
)]
fn read(path: &Path) -> Option<String> {
    let size = std::fs::metadata(path).ok()?.len();
    if size > 16 * 1024 * 1024 {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_of_a_sensitive_variable_is_found_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("main.tf"),
            r#"
variable "token" {
  type      = string
  sensitive = true
  default   = "default-secret"
}
variable "region" { default = "eu-west" }
variable "nested" {
  sensitive = true
  type = object({ user = string, pass = string })
}
"#,
        )
        .unwrap();
        std::fs::write(
            d.join("vars.tf.json"),
            r#"{"variable": {"json_secret": {"sensitive": true}}}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("prod.tfvars"),
            "token = \"file-secret\"\nregion = \"not-a-secret\"\nnested = { user = \"u\", pass = \"nested-secret\" }\n",
        )
        .unwrap();
        std::fs::write(
            d.join("x.auto.tfvars.json"),
            r#"{"json_secret": "auto-secret"}"#,
        )
        .unwrap();
        let vars = vec![("TF_VAR_token".to_owned(), "env-secret".to_owned())];
        let found = values(d, &[PathBuf::from("prod.tfvars")], &vars).join(" ");
        for secret in [
            "default-secret",
            "file-secret",
            "nested-secret",
            "auto-secret",
            "env-secret",
        ] {
            assert!(found.contains(secret), "{secret} in {found}");
        }
        assert!(
            !found.contains("not-a-secret") && !found.contains("eu-west"),
            "{found}"
        );
    }
}
