//! The terraform steps of one scan (init, plan, show, state pull), each run through the
//! runner within the scan's deadline, and the error of a step that failed.

use std::path::Path;

use tokio::time::Instant;

use crate::cancel::{CancellationToken, Cancelled};
use crate::classify::{Phase, classify};
use crate::config::{Environment, InitMode};
use crate::plan::redact::{Redactor, SecretCollector};
use crate::plan::stream::errors_from_text;
use crate::report::{ErrorReason, PlanOutcome, ScanError, Tool};
use crate::runner::{Invocation, Output, PlanArgs, RunError, StdoutMode, TfCommand, run};
use crate::store::EnvStore;

use super::files::{EnvVars, Gathered, config_error, gather};

mod show;

pub(super) struct Scan<'a> {
    pub(super) env: &'a Environment,
    pub(super) tool: Tool,
    /// Values of `env_files`: scrubbed from every error text.
    pub(super) secrets: Redactor,
    pub(super) cancel: &'a CancellationToken,
    /// The plan as `/detail/<env>/plan` serves it, when the scan produced one.
    pub(super) served_plan: Option<tempfile::NamedTempFile>,
    /// When the (last) plan command started: what an attribution read must follow.
    pub(super) plan_started: Option<chrono::DateTime<chrono::Utc>>,
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
    /// The configuration declares checks or conditions: their results are read even from
    /// a plan that changes nothing.
    declares_checks: bool,
}

impl<'a> Scan<'a> {
    pub(super) fn new(env: &'a Environment, cancel: &'a CancellationToken) -> Scan<'a> {
        Scan {
            env,
            tool: Tool {
                binary: Some(env.binary.clone()),
                version: None,
            },
            secrets: Redactor::default(),
            cancel,
            served_plan: None,
            plan_started: None,
        }
    }
}

impl Scan<'_> {
    /// Checks the directory, reads `env_files`, opens the storage and runs init when needed
    /// (`init = "auto"`: when `eager` and the fingerprint changed; `state pull` is not eager,
    /// as init would install providers it does not need). Only an eager preparation (a
    /// plan's) looks for the configuration's checks.
    async fn prepare(
        &mut self,
        storage: &Path,
        deadline: Instant,
        eager: bool,
    ) -> Result<Prepared, Step> {
        let env = self.env;
        // Files of the environment and of the storage: read off the runtime's threads.
        let gathered = {
            let (env, storage) = (env.clone(), storage.to_owned());
            tokio::task::spawn_blocking(move || gather(&env, &storage, eager)).await
        };
        let Gathered {
            mut vars,
            secret_values,
            store,
            fingerprint,
            recorded_fingerprint,
            orphan_tag,
            declares_checks,
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
        vars.push((crate::orphans::VAR.into(), orphan_tag));
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
            declares_checks,
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
    pub(super) async fn pull(
        &mut self,
        storage: &Path,
        deadline: Instant,
    ) -> Result<Vec<u8>, Step> {
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
            return Err(self.failure(&output, Phase::StatePull).into());
        }
        Ok(output.document)
    }

    pub(super) async fn run(
        &mut self,
        storage: &Path,
        deadline: Instant,
    ) -> Result<PlanOutcome, Step> {
        let env = self.env;
        let Prepared {
            store,
            vars,
            secret_values,
            initialised,
            fingerprint,
            declares_checks,
        } = self.prepare(storage, deadline, true).await?;
        let collector = || {
            let mut c = SecretCollector::default();
            secret_values.iter().for_each(|v| c.add(v));
            c
        };
        let inv = self.invocation(&vars, deadline);

        let plan_dir = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.plan_dir())
                .await
                .map_err(|e| config_error(format!("storage.path: {e}")))?
                .map_err(|e| config_error(format!("storage.path: {e}")))?
        };
        let plan_file = plan_dir.path().join("plan.tfplan");
        let plan_cmd = TfCommand::plan(&PlanArgs {
            lock_timeout: env.lock_timeout,
            plan_file: &plan_file,
            refresh_only: env.refresh_only,
            parallelism: env.parallelism,
            var_files: &env.var_files,
        });
        self.plan_started = Some(chrono::Utc::now());
        let mut plan = self
            .run_step(&plan_cmd, &inv, StdoutMode::Stream, Phase::Plan)
            .await?;
        if plan.code() == Some(1) && !initialised && env.init == InitMode::Auto {
            // The backend block or providers changed in a way the fingerprint cannot see.
            let error = self.failure(&plan, Phase::Plan);
            if error.reason == ErrorReason::Init {
                tracing::info!(environment = %env.name, "plan asks for init: running init once and planning again");
                self.init(&inv, &store, &fingerprint).await?;
                self.plan_started = Some(chrono::Utc::now());
                plan = self
                    .run_step(&plan_cmd, &inv, StdoutMode::Stream, Phase::Plan)
                    .await?;
            }
        }
        if let Some(version) = plan.stream.version.clone() {
            self.tool.version = Some(version);
        }
        let exit = plan.code();
        // Continuous validation: `checks` is only in `show -json`.
        let read_checks = declares_checks || plan.stream.mentions_checks();
        if exit == Some(0) && !plan.stream.reported_changes {
            // The exit code never decides alone: conform needs a plan that was really made.
            let made = tokio::fs::metadata(&plan_file)
                .await
                .is_ok_and(|m| m.is_file());
            let missing = plan
                .stream
                .incomplete()
                .or_else(|| (!made).then_some("no plan file"));
            if let Some(missing) = missing {
                return Err(self.not_a_plan(&plan, missing).into());
            }
            if !read_checks {
                return Ok(PlanOutcome::no_changes());
            }
        }
        match exit {
            Some(0) | Some(2) => {
                self.show_and_understand(&inv, &store, plan_dir.path(), &plan_file, collector())
                    .await
            }
            Some(1) if read_checks && tokio::fs::try_exists(&plan_file).await.unwrap_or(false) => {
                let error = self.failure(&plan, Phase::Plan);
                let read = self
                    .show_and_understand(&inv, &store, plan_dir.path(), &plan_file, collector())
                    .await;
                // An errored plan is not served at /detail/<env>/plan.
                self.served_plan = None;
                show::errored_plan_checks(&env.name, read, error)
            }
            _ => Err(self.failure(&plan, Phase::Plan).into()),
        }
        // plan_dir (and the plan file with its secrets) is removed here.
    }

    async fn init(
        &mut self,
        inv: &Invocation<'_>,
        store: &EnvStore,
        fingerprint: &str,
    ) -> Result<(), Step> {
        let _ = record_fingerprint(store, None).await;
        // A re-init follows the backend the code and backend_config name now (a moved
        // endpoint, another key): this TF_DATA_DIR is the exporter's own, no state moves.
        let reconfigure = tokio::fs::metadata(store.tf_data_dir().join("terraform.tfstate"))
            .await
            .is_ok_and(|m| m.is_file());
        let output = self
            .run_step(
                &TfCommand::init(&self.env.backend_config, reconfigure),
                inv,
                StdoutMode::Text,
                Phase::Init,
            )
            .await?;
        if output.code() != Some(0) {
            return Err(self.failure(&output, Phase::Init).into());
        }
        if let Err(e) = record_fingerprint(store, Some(fingerprint.to_owned())).await {
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
    ) -> Result<Output, Step> {
        tracing::debug!(environment = %self.env.name, command = ?cmd.argv(), "running");
        let output = run(cmd, inv, mode).await.map_err(|e| match e {
            RunError::NotFound { .. } | RunError::Spawn { .. } => {
                config_error(format!("environments.{}.binary: {e}", self.env.name)).into()
            }
            RunError::Cancelled(c) => Step::Cancelled(c),
            RunError::Io { .. } => ScanError {
                reason: ErrorReason::Terraform,
                summary: e.to_string(),
                detail: String::new(),
            }
            .into(),
        })?;
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
            }
            .into());
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

/// Records (or forgets) the fingerprint of the last successful init, off the runtime's
/// threads (a temp file, an fsync and a rename).
async fn record_fingerprint(store: &EnvStore, fingerprint: Option<String>) -> Result<(), String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.set_init_fingerprint(fingerprint.as_deref()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// How a step of a scan ends when it does not succeed: a failure that makes the report,
/// or the exporter stopping it (nothing is reported then).
#[derive(Debug)]
pub(super) enum Step {
    Failed(ScanError),
    Cancelled(Cancelled),
}

impl From<ScanError> for Step {
    fn from(error: ScanError) -> Step {
        Step::Failed(error)
    }
}

impl From<Cancelled> for Step {
    fn from(cancelled: Cancelled) -> Step {
        Step::Cancelled(cancelled)
    }
}
