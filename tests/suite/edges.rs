//! Trust at the edges: inputs that once gave a false "conform", a leaked secret, a panic or
//! a stuck environment. Each test is named after the defect it pins.

use serde_json::Value;

use crate::support::{Workspace, script};

/// A workspace whose `binary` is a script written into it.
fn with_binary(body: &str) -> (Workspace, std::path::PathBuf) {
    let w = Workspace::new("");
    let binary = w.root.path().join("fake-terraform");
    script(&binary, body);
    let config = w.config(&format!("binary = \"{}\"", binary.display()));
    (w, config)
}

fn assert_not_conform(r: &Value, code: i32, mention: &str) {
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["status"], "error", "{r}");
    assert_eq!(r["error"]["reason"], "terraform", "{r}");
    let summary = r["error"]["summary"].as_str().unwrap();
    assert!(summary.contains(mention), "{summary}");
}

#[test]
fn a_binary_that_exits_0_without_a_plan_is_not_conform() {
    let (w, config) = with_binary("exit 0\n");
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "no version line");

    // `/bin/true` itself, by absolute path.
    let config = w.config("binary = \"/bin/true\"");
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "not a plan");
}

#[test]
fn fifty_megabytes_of_text_and_exit_0_is_not_conform() {
    let (w, config) = with_binary(
        "head -c 52428800 /dev/zero | tr '\\0' 'x' | fold -w 100\necho 'Plan: 0 to add'\nexit 0\n",
    );
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "not a plan");
    let detail = r["error"]["detail"].as_str().unwrap();
    assert!(
        detail.len() < 10_000,
        "the stray output is cut: {}",
        detail.len()
    );
}

#[test]
fn a_stream_without_change_summary_is_not_conform() {
    // A version line, then nothing: the plan stopped before its end but exited 0.
    let (w, config) = with_binary(
        "case \"$1\" in plan) echo '{\"type\":\"version\",\"terraform\":\"1.11.4\"}';; esac\nexit 0\n",
    );
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "no change summary");
}

#[test]
fn a_complete_stream_without_a_plan_file_is_not_conform() {
    let (w, config) = with_binary(
        "case \"$1\" in plan) echo '{\"type\":\"version\",\"terraform\":\"1.11.4\"}'; echo '{\"type\":\"change_summary\",\"changes\":{\"add\":0}}';; esac\nexit 0\n",
    );
    let (code, r, _, _) = w.scan(&config);
    assert_not_conform(&r, code, "no plan file");
}
