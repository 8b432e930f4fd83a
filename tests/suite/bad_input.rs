//! Bad input never panics: `explain` exits 1 with one line saying what is wrong.

use std::io::Write;

use crate::support::{bin, output_of, run};

fn explain_file(bytes: &[u8]) -> (i32, String, String) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    run(&["explain", f.path().to_str().unwrap()])
}

fn assert_one_line_error(case: &str, (code, stdout, stderr): (i32, String, String), mention: &str) {
    assert_eq!(code, 1, "{case}: exit code (stderr: {stderr})");
    assert!(stdout.is_empty(), "{case}: nothing on stdout");
    assert_eq!(stderr.lines().count(), 1, "{case}: one line: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{case}: {stderr}");
    assert!(
        stderr.contains(mention),
        "{case}: {stderr:?} should mention {mention:?}"
    );
}

#[test]
fn empty_truncated_and_mistyped_plans_are_one_line_errors() {
    assert_one_line_error("empty", explain_file(b""), "EOF");
    assert_one_line_error(
        "truncated",
        explain_file(br#"{"format_version":"1.2","resource_changes":[{"address":"a.b","#),
        "EOF",
    );
    assert_one_line_error(
        "not an object",
        explain_file(b"[1,2,3]"),
        "not a terraform plan",
    );
    assert_one_line_error("no format_version", explain_file(b"{}"), "format_version");
    assert_one_line_error(
        "future format",
        explain_file(br#"{"format_version":"7.0"}"#),
        "7.0",
    );
    assert_one_line_error(
        "wrong type",
        explain_file(br#"{"format_version":"1.2","resource_changes":"many"}"#),
        "expected '['",
    );
    assert_one_line_error(
        "unknown action",
        explain_file(br#"{"format_version":"1.2","resource_changes":[{"address":"a.b","mode":"managed","type":"a","name":"b","change":{"actions":["explode"]}}]}"#),
        "explode",
    );
    assert_one_line_error(
        "actions of the wrong type",
        explain_file(br#"{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":"update"}}]}"#),
        "invalid type",
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let mut deep = String::from(
        r#"{"format_version":"1.2","resource_changes":[{"address":"a.b","change":{"actions":["update"],"before":"#,
    );
    deep.push_str(&"[".repeat(10_000));
    deep.push_str(&"]".repeat(10_000));
    deep.push_str(r#","after":1}}]}"#);
    assert_one_line_error(
        "10,000-deep",
        explain_file(deep.as_bytes()),
        "recursion limit",
    );
}

#[test]
fn a_hundred_megabytes_of_garbage_is_refused_quickly() {
    let mut garbage = Vec::with_capacity(100 * 1024 * 1024);
    let mut x: u32 = 0x1234_5678;
    while garbage.len() < 100 * 1024 * 1024 {
        // xorshift: cheap reproducible noise
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.extend_from_slice(&x.to_le_bytes());
    }
    assert_one_line_error(
        "100 MB garbage",
        explain_file(&garbage),
        "not a terraform plan",
    );
}

#[test]
fn a_missing_file_and_standard_input_work_as_documented() {
    let (code, _, stderr) = run(&["explain", "/nonexistent/plan.json"]);
    assert_eq!(code, 66, "EX_NOINPUT: {stderr}");
    assert!(stderr.contains("/nonexistent/plan.json"));

    let mut child = bin()
        .args(["explain", "--format", "json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"format_version":"1.2","resource_changes":[{"address":"a.b","mode":"managed","type":"a","name":"b","change":{"actions":["create"],"before":null,"after":{}}}]}"#)
        .unwrap();
    let (code, stdout, _) = output_of(child.wait_with_output().unwrap());
    assert_eq!(code, 2);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["summary"]["create"], 1);
}

#[test]
fn bad_flags_never_exit_2() {
    let (code, _, stderr) = run(&["explain", "--format", "yaml", "x.json"]);
    assert_eq!(code, 64, "{stderr}");
    let (code, _, _) = run(&["frobnicate"]);
    assert_eq!(code, 64);
    let (code, _, stderr) = run(&["explain", "--env", "prod", "x.json"]);
    assert_eq!(code, 64, "--env without --config: {stderr}");
}
