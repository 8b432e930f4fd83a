//! One scan of one environment: init when needed, plan, show when the plan has changes,
//! understand the result and make the report. Never anything that writes infrastructure.

use std::io::Write;
use std::path::Path;

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::classify::{Phase, classify};
use crate::config::{Environment, InitMode};
use crate::plan::redact::{Redactor, SecretCollector};
use crate::plan::served::write_served_plan;
use crate::plan::show::understand_plan_redacting;
use crate::plan::stream::errors_from_text;
use crate::plan::{ExplainOptions, PlanError};
use crate::report::{ErrorReason, PlanOutcome, Report, ScanError, Tool};
use crate::runner::{Invocation, Output, PlanArgs, RunError, StdoutMode, TfCommand, run};
use crate::store::EnvStore;
use tokio_util::sync::CancellationToken;

/// Scans `env` under its scan lock (a CLI scan and the exporter never scan one environment
/// at once), stores the report in the history and returns it. A storage failure is logged;
/// the report is still returned.
pub async fn scan_and_store(
    env: &Environment,
    storage: &Path,
    cancel: &CancellationToken,
) -> Option<Stored> {
    let opened = {
        let (storage, name) = (storage.to_owned(), env.name.clone());
        tokio::task::spawn_blocking(move || EnvStore::open(&storage, &name)).await
    };
    let opened = opened
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let store = match opened {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::error!(environment = %env.name, error = %e, "cannot open the environment's storage");
            None
        }
    };
    // The wait for another process's scan of this environment counts against the timeout
    // and ends with the exporter (a SIGTERM does not wait for the CLI's scan).
    let started_at = Utc::now();
    let deadline = Instant::now() + env.timeout;
    let lock = match &store {
        Some(store) => match wait_for_lock(env, store, deadline, cancel).await {
            Ok(lock) => lock,
            Err(LockWait::Cancelled) => {
                tracing::warn!(environment = %env.name, "scan cancelled while waiting for the scan lock");
                return None;
            }
            Err(LockWait::TimedOut(error)) => {
                let mut report = Report::failed(error);
                report.environment = Some(env.name.clone());
                report.started_at = Some(started_at);
                report.finished_at = Some(Utc::now());
                return Some(store_report(env, store, report, None).await);
            }
        },
        None => None,
    };
    tracing::info!(environment = %env.name, dir = %env.dir.display(), "scan started");
    let Ok((report, plan)) = scan(env, storage, cancel, deadline).await else {
        tracing::warn!(environment = %env.name, "scan cancelled: terraform was interrupted, nothing is stored");
        return None;
    };
    let stored = match &store {
        Some(store) => store_report(env, store, report, plan).await,
        None => Stored {
            report,
            stored: false,
        },
    };
    drop(lock);
    let report = &stored.report;
    let s = &report.summary;
    tracing::info!(
        environment = %env.name,
        status = %report.status,
        reason = report.error.as_ref().map(|e| e.reason.as_str()).unwrap_or(""),
        duration_seconds = report.duration_seconds.unwrap_or_default(),
        create = s.create,
        update = s.update,
        delete = s.delete,
        replace = s.replace,
        outside_terraform = s.outside_terraform,
        "scan finished"
    );
    Some(stored)
}

/// Gives `report` its id and writes it (and the served plan) to the history, off the
/// runtime's threads. A storage failure is logged; the report is still returned.
async fn store_report(
    env: &Environment,
    store: &EnvStore,
    report: Report,
    plan: Option<tempfile::NamedTempFile>,
) -> Stored {
    let (name, store) = (env.name.clone(), store.clone());
    let id_only = report.id.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut report = report;
        report.id = Some(store.new_id(&name, &report));
        if let Err(e) = store.save_plan(plan) {
            tracing::error!(environment = %name, error = %e, "cannot store the plan for /detail/<env>/plan");
        }
        let stored = match store.save(&report) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(environment = %name, error = %e, "cannot store the report; it is still shown");
                false
            }
        };
        Stored { report, stored }
    })
    .await;
    match written {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(environment = %env.name, error = %e, "storing the report failed");
            let mut report = Report::failed(ScanError {
                reason: ErrorReason::Terraform,
                summary: format!("the report could not be stored: {e}"),
                detail: String::new(),
            });
            report.id = id_only;
            report.environment = Some(env.name.clone());
            Stored {
                report,
                stored: false,
            }
        }
    }
}

/// Why the wait for a scan lock ended without it.
enum LockWait {
    Cancelled,
    TimedOut(ScanError),
}

/// Waits for the environment's scan lock (held by another process's scan of it) until
/// `deadline`, polling so that `cancel` ends the wait. `Ok(None)`: the lock file cannot be
/// used, and the scan goes on without it (logged).
async fn wait_for_lock(
    env: &Environment,
    store: &EnvStore,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Option<crate::store::ScanLock>, LockWait> {
    let mut said = false;
    loop {
        let attempt = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.try_lock()).await
        };
        match attempt {
            Ok(Ok(Some(lock))) => return Ok(Some(lock)),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(environment = %env.name, error = %e, "cannot take the scan lock; going on without it");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(environment = %env.name, error = %e, "cannot take the scan lock; going on without it");
                return Ok(None);
            }
        }
        if !said {
            tracing::info!(environment = %env.name, "another scan of this environment is running: waiting for it");
            said = true;
        }
        if Instant::now() >= deadline {
            return Err(LockWait::TimedOut(ScanError {
                reason: ErrorReason::Timeout,
                summary: format!(
                    "another scan of {} held its lock for longer than the timeout of {}",
                    env.name,
                    crate::schedule::human(env.timeout)
                ),
                detail: String::new(),
            }));
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            _ = cancel.cancelled() => return Err(LockWait::Cancelled),
        }
    }
}

/// A finished scan and whether its report reached the history.
#[derive(Debug, Clone)]
pub struct Stored {
    pub report: Report,
    pub stored: bool,
}

/// A scan stopped by its cancellation token (shutdown, environment removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// Scans `env` now and returns its report (not stored yet; see [`EnvStore::save`]).
/// `deadline` ends the whole scan (the environment's timeout, from before any wait for its
/// lock).
pub async fn scan(
    env: &Environment,
    storage: &Path,
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<(Report, Option<tempfile::NamedTempFile>), Cancelled> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let mut scan = Scan::new(env, cancel);
    let mut report = match scan.run(storage, deadline).await {
        Ok(mut outcome) => {
            let today = chrono::Local::now().date_naive();
            for rule in env
                .ignore
                .iter()
                .filter(|r| !crate::ignore::in_force(r, today))
            {
                tracing::warn!(environment = %env.name, address = %rule.address, reason = %rule.reason, "ignore rule expired: it no longer applies");
            }
            crate::ignore::apply(&mut outcome, &env.ignore, today);
            Report::from_outcome(outcome)
        }
        Err(error) => Report::failed(error),
    };
    if scan.cancelled {
        return Err(Cancelled);
    }
    if let Some(error) = report.error.as_mut() {
        error.summary = scan.secrets.redact_text(&error.summary);
        error.detail = scan.secrets.redact_text(&error.detail);
    }
    if scan.tool.version.is_none() {
        scan.tool.version = report.tool.as_ref().and_then(|t| t.version.clone());
    }
    report.environment = Some(env.name.clone());
    report.tool = Some(scan.tool);
    report.started_at = Some(started_at);
    report.finished_at = Some(Utc::now());
    report.duration_seconds = Some((clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
    Ok((report, scan.served_plan))
}

/// Why the state of an environment could not be pulled.
#[derive(Debug, Clone, PartialEq)]
pub enum PullError {
    /// Stopped by its cancellation token (shutdown).
    Cancelled,
    Failed(ScanError),
}

/// The state of `env` as `terraform state pull` prints it (empty when there is no state),
/// after init when needed. Waits for a running scan of the environment to end (both use its
/// `TF_DATA_DIR`); the wait counts against the environment's timeout.
pub async fn pull_state(
    env: &Environment,
    storage: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, PullError> {
    let deadline = Instant::now() + env.timeout;
    let _lock = match EnvStore::open(storage, &env.name) {
        Ok(store) => match wait_for_lock(env, &store, deadline, cancel).await {
            Ok(lock) => lock,
            Err(LockWait::Cancelled) => return Err(PullError::Cancelled),
            Err(LockWait::TimedOut(error)) => return Err(PullError::Failed(error)),
        },
        // The pull reports the storage problem itself.
        Err(_) => None,
    };
    let mut pull = Scan::new(env, cancel);
    let result = pull.pull(storage, deadline).await;
    if pull.cancelled {
        return Err(PullError::Cancelled);
    }
    result.map_err(|mut error| {
        error.summary = pull.secrets.redact_text(&error.summary);
        error.detail = pull.secrets.redact_text(&error.detail);
        PullError::Failed(error)
    })
}

/// Variables added to terraform's environment.
type EnvVars = Vec<(String, String)>;

struct Scan<'a> {
    env: &'a Environment,
    tool: Tool,
    /// Values of `env_files`: scrubbed from every error text.
    secrets: Redactor,
    cancel: &'a CancellationToken,
    /// Set when a step was interrupted by `cancel`.
    cancelled: bool,
    /// The plan as `/detail/<env>/plan` serves it, when the scan produced one.
    served_plan: Option<tempfile::NamedTempFile>,
}

fn config_error(summary: String) -> ScanError {
    ScanError {
        reason: ErrorReason::Config,
        summary,
        detail: String::new(),
    }
}

/// What every terraform command of an environment runs with.
struct Prepared {
    store: EnvStore,
    vars: EnvVars,
    /// Values of `env_files`, treated as secrets.
    secret_values: Vec<String>,
    /// Whether init ran in this preparation.
    initialised: bool,
    fingerprint: String,
}

impl<'a> Scan<'a> {
    fn new(env: &'a Environment, cancel: &'a CancellationToken) -> Scan<'a> {
        Scan {
            env,
            tool: Tool {
                binary: Some(env.binary.clone()),
                version: None,
            },
            secrets: Redactor::default(),
            cancel,
            cancelled: false,
            served_plan: None,
        }
    }
}

impl Scan<'_> {
    /// Checks the directory, reads `env_files`, opens the storage and runs init when needed
    /// (`init = "auto"`: when `eager` and the fingerprint changed; `state pull` is not eager,
    /// as init would install providers it does not need).
    async fn prepare(
        &mut self,
        storage: &Path,
        deadline: Instant,
        eager: bool,
    ) -> Result<Prepared, ScanError> {
        let env = self.env;
        // Files of the environment and of the storage: read off the runtime's threads.
        let gathered = {
            let (env, storage) = (env.clone(), storage.to_owned());
            tokio::task::spawn_blocking(move || gather(&env, &storage)).await
        };
        let Gathered {
            mut vars,
            secret_values,
            store,
            fingerprint,
            recorded_fingerprint,
        } = gathered.map_err(|e| {
            config_error(format!(
                "environments.{}: cannot prepare the scan: {e}",
                env.name
            ))
        })??;
        let mut collector = SecretCollector::default();
        secret_values.iter().for_each(|v| collector.add(v));
        self.secrets = collector.finish();

        vars.push(("TF_IN_AUTOMATION".into(), "1".into()));
        vars.push(("TF_INPUT".into(), "0".into()));
        vars.push(("CHECKPOINT_DISABLE".into(), "1".into()));
        vars.push((
            crate::orphans::VAR.into(),
            crate::orphans::tag(storage, &env.name),
        ));
        vars.push((
            "TF_DATA_DIR".into(),
            store.tf_data_dir().display().to_string(),
        ));
        let needs_init = match env.init {
            InitMode::Always => true,
            InitMode::Never => false,
            InitMode::Auto => {
                eager && recorded_fingerprint.as_deref() != Some(fingerprint.as_str())
            }
        };
        let mut prepared = Prepared {
            store,
            vars,
            secret_values,
            initialised: false,
            fingerprint,
        };
        if needs_init {
            let inv = self.invocation(&prepared.vars, deadline);
            self.init(&inv, &prepared.store, &prepared.fingerprint)
                .await?;
            prepared.initialised = true;
        }
        Ok(prepared)
    }

    fn invocation<'v>(&self, vars: &'v [(String, String)], deadline: Instant) -> Invocation<'v>
    where
        Self: 'v,
    {
        Invocation {
            binary: &self.env.binary,
            dir: &self.env.dir,
            env: vars,
            deadline,
            kill_grace: self.env.kill_grace,
            cancel: self.cancel,
        }
    }

    /// `state pull` (after init when needed): the state document, empty when there is none.
    async fn pull(&mut self, storage: &Path, deadline: Instant) -> Result<Vec<u8>, ScanError> {
        let prepared = self.prepare(storage, deadline, false).await?;
        let inv = self.invocation(&prepared.vars, deadline);
        let mut output = self
            .run_step(
                &TfCommand::state_pull(),
                &inv,
                StdoutMode::Document,
                Phase::StatePull,
            )
            .await?;
        if output.code() != Some(0) && !prepared.initialised && self.env.init == InitMode::Auto {
            let error = self.failure(&output, Phase::StatePull);
            if error.reason == ErrorReason::Init {
                tracing::info!(environment = %self.env.name, "state pull asks for init: running init once and pulling again");
                self.init(&inv, &prepared.store, &prepared.fingerprint)
                    .await?;
                output = self
                    .run_step(
                        &TfCommand::state_pull(),
                        &inv,
                        StdoutMode::Document,
                        Phase::StatePull,
                    )
                    .await?;
            }
        }
        if output.code() != Some(0) {
            return Err(self.failure(&output, Phase::StatePull));
        }
        Ok(output.document)
    }

    async fn run(&mut self, storage: &Path, deadline: Instant) -> Result<PlanOutcome, ScanError> {
        let env = self.env;
        let Prepared {
            store,
            vars,
            secret_values,
            initialised,
            fingerprint,
        } = self.prepare(storage, deadline, true).await?;
        let collector = || {
            let mut c = SecretCollector::default();
            secret_values.iter().for_each(|v| c.add(v));
            c
        };
        let inv = self.invocation(&vars, deadline);

        let plan_dir = store
            .plan_dir()
            .map_err(|e| config_error(format!("storage.path: {e}")))?;
        let plan_file = plan_dir.path().join("plan.tfplan");
        let plan_cmd = TfCommand::plan(&PlanArgs {
            lock_timeout: env.lock_timeout,
            plan_file: &plan_file,
            refresh_only: env.refresh_only,
            parallelism: env.parallelism,
            var_files: &env.var_files,
        });
        let mut plan = self
            .run_step(&plan_cmd, &inv, StdoutMode::Stream, Phase::Plan)
            .await?;
        if plan.code() == Some(1) && !initialised && env.init == InitMode::Auto {
            // The backend block or providers changed in a way the fingerprint cannot see.
            let error = self.failure(&plan, Phase::Plan);
            if error.reason == ErrorReason::Init {
                tracing::info!(environment = %env.name, "plan asks for init: running init once and planning again");
                self.init(&inv, &store, &fingerprint).await?;
                plan = self
                    .run_step(&plan_cmd, &inv, StdoutMode::Stream, Phase::Plan)
                    .await?;
            }
        }
        if let Some(version) = plan.stream.version.clone() {
            self.tool.version = Some(version);
        }
        let exit = plan.code();
        if exit == Some(0) && !plan.stream.reported_changes {
            // The exit code never decides alone: conform needs a plan that was really made.
            let missing = plan
                .stream
                .incomplete()
                .or_else(|| (!plan_file.is_file()).then_some("no plan file"));
            if let Some(missing) = missing {
                return Err(self.not_a_plan(&plan, missing));
            }
            return Ok(PlanOutcome {
                changes: Vec::new(),
                ignored: Vec::new(),
                error: None,
                tool_version: None,
            });
        }
        match exit {
            Some(0) | Some(2) => {
                let document = plan_dir.path().join("show.json");
                let show = self
                    .run_step(
                        &TfCommand::show(&plan_file),
                        &inv,
                        StdoutMode::File(document.clone()),
                        Phase::Show,
                    )
                    .await?;
                if show.code() != Some(0) {
                    return Err(self.failure(&show, Phase::Show));
                }
                let options = ExplainOptions {
                    refresh_only: env.refresh_only,
                };
                let served = store
                    .temp_file()
                    .map_err(|e| config_error(format!("storage.path: {e}")))?;
                let secrets = collector();
                // Seconds of parsing on a plan of 100 MB: off the runtime's threads.
                let (outcome, served) = tokio::task::spawn_blocking(move || {
                    understand_and_serve(&document, options, secrets, served)
                })
                .await
                .map_err(|e| ScanError {
                    reason: ErrorReason::Terraform,
                    summary: format!("reading the output of show -json failed: {e}"),
                    detail: String::new(),
                })??;
                match served {
                    Ok(served) => self.served_plan = Some(served),
                    Err(e) => {
                        tracing::warn!(environment = %env.name, error = %e, "cannot prepare the plan for /detail/<env>/plan")
                    }
                }
                Ok(outcome)
            }
            _ => Err(self.failure(&plan, Phase::Plan)),
        }
        // plan_dir (and the plan file with its secrets) is removed here.
    }

    async fn init(
        &mut self,
        inv: &Invocation<'_>,
        store: &EnvStore,
        fingerprint: &str,
    ) -> Result<(), ScanError> {
        let _ = store.set_init_fingerprint(None);
        // A re-init follows the backend the code and backend_config name now (a moved
        // endpoint, another key): this TF_DATA_DIR is the exporter's own, no state moves.
        let reconfigure = store.tf_data_dir().join("terraform.tfstate").is_file();
        let output = self
            .run_step(
                &TfCommand::init(&self.env.backend_config, reconfigure),
                inv,
                StdoutMode::Text,
                Phase::Init,
            )
            .await?;
        if output.code() != Some(0) {
            return Err(self.failure(&output, Phase::Init));
        }
        if let Err(e) = store.set_init_fingerprint(Some(fingerprint)) {
            tracing::warn!(environment = %self.env.name, error = %e, "cannot record the init fingerprint: init will run again next scan");
        }
        Ok(())
    }

    /// Runs one step; a deadline passed or a binary that cannot run ends the scan.
    async fn run_step(
        &mut self,
        cmd: &TfCommand,
        inv: &Invocation<'_>,
        mode: StdoutMode,
        phase: Phase,
    ) -> Result<Output, ScanError> {
        tracing::debug!(environment = %self.env.name, command = ?cmd.argv(), "running");
        let output = run(cmd, inv, mode).await.map_err(|e| match e {
            RunError::NotFound { .. } | RunError::Spawn { .. } => {
                config_error(format!("environments.{}.binary: {e}", self.env.name))
            }
            RunError::Io { .. } => ScanError {
                reason: ErrorReason::Terraform,
                summary: e.to_string(),
                detail: String::new(),
            },
        })?;
        if output.cancelled {
            self.cancelled = true;
            return Err(ScanError {
                reason: ErrorReason::Terraform,
                summary: "scan cancelled".to_owned(),
                detail: String::new(),
            });
        }
        if output.timed_out {
            let last = self.failure(&output, phase);
            return Err(ScanError {
                reason: ErrorReason::Timeout,
                summary: format!(
                    "scan exceeded its timeout of {} during {}; terraform was interrupted",
                    crate::schedule::human(self.env.timeout),
                    phase.command()
                ),
                detail: if last.summary.contains("without an error message") {
                    String::new()
                } else {
                    format!("{}\n{}", last.summary, last.detail)
                        .trim()
                        .to_owned()
                },
            });
        }
        Ok(output)
    }

    /// A plan that exited 0 without being one: `binary` is not terraform, or it stopped
    /// before the end of its plan.
    fn not_a_plan(&self, output: &Output, missing: &str) -> ScanError {
        ScanError {
            reason: ErrorReason::Terraform,
            summary: format!(
                "{} plan exited 0 but its output is not a plan ({missing}): is environments.{}.binary terraform or tofu?",
                self.env.binary, self.env.name
            ),
            detail: self.failure(output, Phase::Plan).detail,
        }
    }

    /// The error of a failed step, from its diagnostics, else from its text output.
    fn failure(&self, output: &Output, phase: Phase) -> ScanError {
        let mut diagnostics: Vec<_> = output.stream.errors().cloned().collect();
        if diagnostics.is_empty() {
            diagnostics = errors_from_text(&output.text);
            diagnostics.extend(errors_from_text(&output.stream.stray));
        }
        let mut error = classify(&diagnostics, phase);
        if diagnostics.is_empty() {
            let how = match output.status {
                Some(s) if s.code().is_some() => {
                    format!("exited with code {}", s.code().unwrap_or_default())
                }
                Some(s) => format!(
                    "was killed by signal {}",
                    std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or_default()
                ),
                None => "ended in an unknown way".to_owned(),
            };
            let cut = if output.stream.cut {
                "; its output stopped in the middle of a line"
            } else {
                ""
            };
            error.summary = format!(
                "terraform {} {how} without an error message{cut}",
                phase.command()
            );
            let stray = tail(&output.stream.stray, 2000);
            let text = tail(&output.text, 2000);
            error.detail = match (stray.is_empty(), text.is_empty()) {
                (true, _) => text,
                (false, true) => format!("standard output:\n{stray}"),
                (false, false) => format!("standard output:\n{stray}\nstandard error:\n{text}"),
            };
        }
        error
    }
}

/// What a scan reads from files before terraform runs (blocking).
struct Gathered {
    /// `env` and the lines of `env_files`.
    vars: EnvVars,
    /// Values of `env_files` and of the root module's sensitive variables.
    secret_values: Vec<String>,
    store: EnvStore,
    fingerprint: String,
    /// The fingerprint of the last successful init.
    recorded_fingerprint: Option<String>,
}

fn gather(env: &Environment, storage: &Path) -> Result<Gathered, ScanError> {
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
    Ok(Gathered {
        vars,
        secret_values,
        fingerprint: init_fingerprint(env),
        recorded_fingerprint: store.init_fingerprint(),
        store,
    })
}

/// `env` plus the KEY=VALUE lines of `env_files` (whose values are secrets).
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
            let value = value.trim().trim_matches('"').to_owned();
            secrets.push(value.clone());
            vars.push((key.trim().to_owned(), value));
        }
    }
    Ok((vars, secrets))
}

/// Reads the `show -json` document saved at `document` twice, streaming: once to understand
/// it (and learn its secrets), once to write its served form into `served`. The first
/// failing fails the scan; the second only loses `/detail/<env>/plan`.
fn understand_and_serve(
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

fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}
