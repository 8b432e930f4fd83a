//! `show -json` documents: the report reader (both directions) and the served plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfdrift_exporter::plan::redact::SecretCollector;
use tfdrift_exporter::plan::served::served_plan;
use tfdrift_exporter::plan::{ExplainOptions, understand_plan};
use tfdrift_exporter::report::Report;

fuzz_target!(|data: &[u8]| {
    if let Ok(outcome) = understand_plan(data, ExplainOptions::default()) {
        let report = Report::from_outcome(outcome);
        let counted = report.changes.iter().filter(|c| c.action.is_counted()).count() as u64;
        assert_eq!(report.summary.counted(), counted);
    }
    let _ = understand_plan(data, ExplainOptions { refresh_only: true });
    let _ = served_plan(data, SecretCollector::default());
});
