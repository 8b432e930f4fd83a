//! Reading the saved plan: `show -json`, understood off the runtime's threads, and the
//! checks of a plan that failed but was saved.

use std::path::Path;

use super::{Scan, Step};
use crate::classify::Phase;
use crate::plan::ExplainOptions;
use crate::plan::redact::SecretCollector;
use crate::report::{ErrorReason, PlanOutcome, ScanError};
use crate::runner::{Invocation, StdoutMode, TfCommand};
use crate::store::EnvStore;

use super::super::files::{config_error, understand_and_serve};

impl Scan<'_> {
    /// `show -json` of the saved plan, understood (and prepared for `/detail/<env>/plan`)
    /// off the runtime's threads.
    pub(super) async fn show_and_understand(
        &mut self,
        inv: &Invocation<'_>,
        store: &EnvStore,
        plan_dir: &Path,
        plan_file: &Path,
        secrets: SecretCollector,
    ) -> Result<PlanOutcome, Step> {
        let env = self.env;
        let document = plan_dir.join("show.json");
        let show = self
            .run_step(
                &TfCommand::show(plan_file),
                inv,
                StdoutMode::File(document.clone()),
                Phase::Show,
            )
            .await?;
        if show.code() != Some(0) {
            return Err(self.failure(&show, Phase::Show).into());
        }
        let options = ExplainOptions {
            refresh_only: env.refresh_only,
        };
        let store = store.clone();
        // Seconds of parsing on a plan of 100 MB: off the runtime's threads.
        let (outcome, served) = tokio::task::spawn_blocking(move || {
            let served = store
                .temp_file()
                .map_err(|e| config_error(format!("storage.path: {e}")))?;
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
}

/// What a plan that failed but was saved (a false condition, an assertion that cannot be
/// evaluated) yields once its `show -json` was `read`: its `checks`, with the plan's own
/// `error` as the scan's and none of its partial changes. A read that failed leaves the
/// plan's error as it was; a timeout or a stop stays what it is.
pub(super) fn errored_plan_checks(
    environment: &str,
    read: Result<PlanOutcome, Step>,
    error: ScanError,
) -> Result<PlanOutcome, Step> {
    match read {
        Ok(outcome) => Ok(PlanOutcome {
            error: Some(error),
            checks: outcome.checks,
            tool_version: outcome.tool_version,
            ..PlanOutcome::no_changes()
        }),
        Err(Step::Failed(failed)) if failed.reason != ErrorReason::Timeout => {
            tracing::warn!(environment = %environment, error = %failed.summary, "cannot read the checks of the errored plan");
            Err(error.into())
        }
        Err(step) => Err(step),
    }
}
