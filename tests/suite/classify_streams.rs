//! Every recorded failing run in tf1114-errors/ (and the old stream with an error) is
//! classified to its reason, from its diagnostics.

use tfdrift_exporter::plan::stream::classify_recorded;

use crate::support::fixtures;

const EXPECTED: &[(&str, &str)] = &[
    // "Backend initialization required: please run terraform init" (backend block changed)
    ("backend-config-changed.jsonl", "init"),
    ("backend-init-required.jsonl", "init"),
    ("inconsistent-dependency-lock-file.jsonl", "init"),
    // Undeclared resource, unsupported argument, undeclared variable.
    ("invalid-config.jsonl", "config"),
    ("required-plugins-not-installed.jsonl", "init"),
    (
        "required-plugins-not-installed.tf_in_automation.jsonl",
        "init",
    ),
    // S3 InternalError 500 while loading state.
    ("s3-500.jsonl", "state_backend"),
    // InvalidAccessKeyId / SignatureDoesNotMatch: credentials refused, even inside
    // "error loading state".
    ("s3-badkey.jsonl", "auth"),
    ("s3-badsig.jsonl", "auth"),
    // The state endpoint cannot be reached: the backend, not a provider API.
    ("s3-dns-no-such-host.init.jsonl", "state_backend"),
    ("s3-refused.jsonl", "state_backend"),
    ("s3-tls-unknown-authority.init.jsonl", "state_backend"),
    ("s3-nosuchbucket.jsonl", "state_backend"),
    // Interrupted runs say only "operation canceled" (or a data source's own error): the
    // stream cannot tell who interrupted; when the exporter's timeout did, the scan
    // reports `timeout` instead (see real_terraform).
    ("s3-endpoint-hang-sigterm-then-sigint.jsonl", "terraform"),
    ("sigint-double.jsonl", "terraform"),
    ("sigint-graceful.jsonl", "terraform"),
    // A held lock: Lock Info with an ID, or the S3 lockfile's 412 PreconditionFailed.
    ("state-lock-local.jsonl", "state_lock"),
    ("state-lock-s3-lockfile.jsonl", "state_lock"),
    // The same error in human form (no -json), as stderr shows it.
    ("state-lock-local.human.txt", "state_lock"),
];

#[test]
fn every_recorded_failure_is_classified_to_its_reason() {
    let Some(dir) = fixtures() else { return };
    let errors = dir.join("tf1114-errors");
    let mut on_disk: Vec<String> = std::fs::read_dir(&errors)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl") || n.ends_with(".txt"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every recorded stream has an expectation");

    for (name, reason) in EXPECTED {
        let text = std::fs::read_to_string(errors.join(name)).unwrap();
        let error = classify_recorded(&text).unwrap_or_else(|| panic!("{name}: no error found"));
        assert_eq!(error.reason.as_str(), *reason, "{name}: {error:?}");
        assert!(
            !error.summary.is_empty(),
            "{name}: the summary says what went wrong"
        );
    }
}

#[test]
fn a_lock_error_wrapping_a_network_failure_is_a_backend_failure_not_a_held_lock() {
    let stream = r#"{"@level":"error","type":"diagnostic","diagnostic":{"severity":"error","summary":"Error acquiring the state lock","detail":"Error message: operation error S3: PutObject, dial tcp 127.0.0.1:9: connect: connection refused"}}"#;
    let error = classify_recorded(stream).unwrap();
    assert_eq!(error.reason.as_str(), "state_backend");
}

#[test]
fn old_streams_with_config_errors_are_config() {
    let Some(dir) = fixtures() else { return };
    let text =
        std::fs::read_to_string(dir.join("stream-plan-json-error/plan-stream.jsonl")).unwrap();
    assert_eq!(classify_recorded(&text).unwrap().reason.as_str(), "config");
    for ok in [
        "stream-plan-json-basic",
        "stream-plan-json-no-changes",
        "tf1114-no-changes",
    ] {
        let text = std::fs::read_to_string(dir.join(ok).join("plan-stream.jsonl")).unwrap();
        assert!(classify_recorded(&text).is_none(), "{ok} has no error");
    }
}
