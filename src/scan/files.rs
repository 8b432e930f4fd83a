//! What a scan reads and writes outside terraform, off the async runtime: the environment's
//! variables and secrets, the init fingerprint, and the `show -json` document read twice.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::Environment;
use crate::plan::redact::SecretCollector;
use crate::plan::served::write_served_plan;
use crate::plan::show::understand_plan_redacting;
use crate::plan::{ExplainOptions, PlanError};
use crate::report::{ErrorReason, PlanOutcome, ScanError};
use crate::store::EnvStore;

/// Variables added to terraform's environment.
pub(super) type EnvVars = Vec<(String, String)>;

/// A scan error of reason `config`.
pub(super) fn config_error(summary: String) -> ScanError {
    ScanError {
        reason: ErrorReason::Config,
        summary,
        detail: String::new(),
    }
}

/// What a scan reads from files before terraform runs (blocking).
pub(super) struct Gathered {
    /// `env` and the lines of `env_files`.
    pub(super) vars: EnvVars,
    /// Values of `env_files` and of the root module's sensitive variables.
    pub(super) secret_values: Vec<String>,
    pub(super) store: EnvStore,
    pub(super) fingerprint: String,
    /// The fingerprint of the last successful init.
    pub(super) recorded_fingerprint: Option<String>,
    /// The value of [`crate::orphans::VAR`] for this scan's processes (it reads the disk).
    pub(super) orphan_tag: String,
    /// For a plan: the configuration declares checks or conditions ([`crate::conditions`]).
    pub(super) declares_checks: bool,
}

#[allow(
    clippy::disallowed_methods,
    reason = "runs in the scan's spawn_blocking gather step"
)]
pub(super) fn gather(
    env: &Environment,
    storage: &Path,
    for_plan: bool,
) -> Result<Gathered, ScanError> {
    if !env.dir.is_dir() {
        return Err(config_error(format!(
            "environments.{}.dir: {} is not a directory",
            env.name,
            env.dir.display()
        )));
    }
    let (vars, mut secret_values) = environment_variables(env)?;
    secret_values.extend(crate::sensitive::values(&env.dir, &env.var_files, &vars));
    let store = EnvStore::open(storage, &env.name)
        .map_err(|e| config_error(format!("storage.path: {e}")))?;
    // Only a plan has checks to read; a `state pull` needs no look at the files.
    let declares_checks = for_plan && crate::conditions::declared(&env.dir, &store.tf_data_dir());
    Ok(Gathered {
        vars,
        secret_values,
        declares_checks,
        fingerprint: init_fingerprint(env),
        recorded_fingerprint: store.init_fingerprint(),
        orphan_tag: crate::orphans::tag(storage, &env.name),
        store,
    })
}

/// `env` plus the KEY=VALUE lines of `env_files` (whose values are secrets).
#[allow(
    clippy::disallowed_methods,
    reason = "runs in the scan's spawn_blocking gather step"
)]
fn environment_variables(env: &Environment) -> Result<(EnvVars, Vec<String>), ScanError> {
    let mut vars: Vec<(String, String)> = env
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut secrets = Vec::new();
    for file in &env.env_files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            config_error(format!(
                "environments.{}.env_files: {}: {e}",
                env.name,
                file.display()
            ))
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else {
                return Err(config_error(format!(
                    "environments.{}.env_files: {}:{}: expected KEY=VALUE",
                    env.name,
                    file.display(),
                    n + 1
                )));
            };
            let key = key.trim();
            if let Some(why) = crate::environ::forbidden(key) {
                return Err(config_error(format!(
                    "environments.{}.env_files: {}:{}: {key} is not allowed: {why}",
                    env.name,
                    file.display(),
                    n + 1
                )));
            }
            let value = value.trim().trim_matches('"').to_owned();
            secrets.push(value.clone());
            vars.push((key.to_owned(), value));
        }
    }
    Ok((vars, secrets))
}

/// Reads the `show -json` document saved at `document` twice, streaming: once to understand
/// it (and learn its secrets), once to write its served form into `served`. The first
/// failing fails the scan; the second only loses `/detail/<env>/plan`.
#[allow(
    clippy::disallowed_methods,
    reason = "runs in the scan's spawn_blocking show step"
)]
pub(super) fn understand_and_serve(
    document: &Path,
    options: ExplainOptions,
    secrets: SecretCollector,
    mut served: tempfile::NamedTempFile,
) -> Result<(PlanOutcome, Result<tempfile::NamedTempFile, PlanError>), ScanError> {
    let unreadable = |e: PlanError| ScanError {
        reason: ErrorReason::Terraform,
        summary: format!("cannot understand the output of show -json: {e}"),
        detail: String::new(),
    };
    let open = || {
        std::fs::File::open(document)
            .map(std::io::BufReader::new)
            .map_err(PlanError::Io)
    };
    let (outcome, redactor) =
        understand_plan_redacting(open().map_err(unreadable)?, options, secrets)
            .map_err(unreadable)?;
    let written = open().and_then(|input| {
        let mut out = std::io::BufWriter::new(served.as_file_mut());
        write_served_plan(input, &redactor, &mut out)?;
        out.flush()?;
        drop(out);
        Ok(served)
    });
    Ok((outcome, written))
}

/// What a successful init depends on: when it changes, init runs again.
#[allow(
    clippy::disallowed_methods,
    reason = "runs in the scan's spawn_blocking gather step"
)]
fn init_fingerprint(env: &Environment) -> String {
    let mut h = Sha256::new();
    h.update(env.binary.as_bytes());
    h.update([0]);
    for arg in &env.backend_config {
        h.update(arg.as_bytes());
        h.update([0]);
        // A -backend-config may name a file (relative to dir); its content matters too.
        if let Ok(content) = std::fs::read(env.dir.join(arg)) {
            h.update(&content);
        }
        h.update([0]);
    }
    if let Ok(lock) = std::fs::read(env.dir.join(".terraform.lock.hcl")) {
        h.update(&lock);
    }
    // Backends also read settings from the environment (AWS_ENDPOINT_URL_S3, ...).
    for (key, value) in &env.env {
        h.update(key.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}
