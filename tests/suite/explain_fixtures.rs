//! Every case of tests/fixtures/opentofu-show-json through `explain`, with expectations
//! written from reading each case (its plan.txt where there is one, else its JSON).

use serde_json::{Value, json};

use crate::support::{fixtures, run};

/// Expected outcome of one fixture: status, exit code, summary
/// [create, update, delete, replace, outside_terraform] and (address, action, outside)
/// of every listed change, in plan order.
struct Case {
    name: &'static str,
    status: &'static str,
    counts: [u64; 5],
    changes: &'static [(&'static str, &'static str, bool)],
}

const CASES: &[Case] = &[
    Case {
        name: "eq-basic-json-string-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("tfcoremock_simple_resource.json", "update", false)],
    },
    Case {
        name: "eq-basic-set-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("tfcoremock_set.set", "update", false)],
    },
    // The data source read is left out; its module's resources are created.
    Case {
        name: "eq-data-read",
        status: "drift",
        counts: [3, 0, 0, 0, 0],
        changes: &[
            ("tfcoremock_simple_resource.create", "create", false),
            ("module.create.local_file.data_file", "create", false),
            ("module.create.random_integer.random", "create", false),
        ],
    },
    Case {
        name: "eq-drift-refresh-only",
        status: "drift",
        counts: [0, 1, 0, 0, 1],
        changes: &[("tfcoremock_simple_resource.drift", "update", true)],
    },
    Case {
        name: "eq-drift-relevant-attributes",
        status: "drift",
        counts: [0, 2, 0, 0, 1],
        changes: &[
            ("tfcoremock_simple_resource.base", "update", true),
            ("tfcoremock_simple_resource.dependent", "update", false),
        ],
    },
    Case {
        name: "eq-drift-simple",
        status: "drift",
        counts: [0, 1, 0, 0, 1],
        changes: &[("tfcoremock_simple_resource.drift", "update", true)],
    },
    Case {
        name: "eq-fully-populated-complex-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("tfcoremock_complex_resource.complex", "update", false)],
    },
    Case {
        name: "eq-local-provider-delete",
        status: "drift",
        counts: [0, 0, 1, 0, 0],
        changes: &[("local_file.local_file", "delete", false)],
    },
    Case {
        name: "eq-local-provider-update",
        status: "drift",
        counts: [0, 0, 0, 1, 0],
        changes: &[("local_file.local_file", "replace", false)],
    },
    // A move alone is listed but not counted.
    Case {
        name: "eq-moved-simple",
        status: "conform",
        counts: [0, 0, 0, 0, 0],
        changes: &[("tfcoremock_simple_resource.second", "move", false)],
    },
    Case {
        name: "eq-moved-with-drift",
        status: "drift",
        counts: [0, 2, 0, 0, 1],
        changes: &[
            ("tfcoremock_simple_resource.base_after", "update", true),
            ("tfcoremock_simple_resource.dependent", "update", false),
        ],
    },
    Case {
        name: "eq-moved-with-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("tfcoremock_simple_resource.moved", "update", false)],
    },
    Case {
        name: "eq-nested-list-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("tfcoremock_nested_list.nested_list", "update", false)],
    },
    Case {
        name: "eq-nested-map-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("tfcoremock_nested_map.nested_map", "update", false)],
    },
    Case {
        name: "eq-nested-objects-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("tfcoremock_nested_object.nested_object", "update", false)],
    },
    Case {
        name: "eq-nested-set-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("tfcoremock_nested_set.nested_set", "update", false)],
    },
    Case {
        name: "eq-replace-within-list",
        status: "drift",
        counts: [0, 0, 0, 1, 0],
        changes: &[("tfcoremock_list.list", "replace", false)],
    },
    Case {
        name: "eq-replace-within-set",
        status: "drift",
        counts: [0, 0, 0, 1, 0],
        changes: &[("tfcoremock_set.set", "replace", false)],
    },
    Case {
        name: "eq-simple-object-replace",
        status: "drift",
        counts: [0, 0, 0, 1, 0],
        changes: &[("tfcoremock_object.object", "replace", false)],
    },
    // Only variables and outputs change: no resource, so conform.
    Case {
        name: "eq-variables-and-outputs",
        status: "conform",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
    Case {
        name: "stream-plan-json-basic",
        status: "drift",
        counts: [1, 0, 0, 0, 0],
        changes: &[("null_resource.foo", "create", false)],
    },
    Case {
        name: "stream-plan-json-full",
        status: "drift",
        counts: [2, 0, 0, 0, 0],
        changes: &[
            ("tfcoremock_complex_resource.example", "create", false),
            ("tfcoremock_simple_resource.example", "create", false),
        ],
    },
    Case {
        name: "stream-plan-json-no-changes",
        status: "conform",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
    Case {
        name: "tf1114-create-foreach-sensitive",
        status: "drift",
        counts: [3, 0, 0, 0, 0],
        changes: &[
            ("terraform_data.a[\"x\"]", "create", false),
            ("terraform_data.a[\"y\"]", "create", false),
            ("terraform_data.b", "create", false),
        ],
    },
    // The deposed object counts as its own change.
    Case {
        name: "tf1114-deposed-cbd",
        status: "drift",
        counts: [0, 0, 1, 1, 0],
        changes: &[
            ("terraform_data.d", "replace", false),
            ("terraform_data.d", "delete", false),
        ],
    },
    Case {
        name: "tf1114-mixed-update-replace-delete",
        status: "drift",
        counts: [1, 1, 1, 1, 0],
        changes: &[
            ("terraform_data.a[\"x\"]", "replace", false),
            ("terraform_data.a[\"y\"]", "delete", false),
            ("terraform_data.b", "update", false),
            ("terraform_data.c", "create", false),
        ],
    },
    Case {
        name: "tf1114-no-changes",
        status: "conform",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
    Case {
        name: "tfjson-action-reason",
        status: "drift",
        counts: [0, 0, 0, 1, 0],
        changes: &[("null_resource.example", "replace", false)],
    },
    Case {
        name: "tfjson-has-checks",
        status: "drift",
        counts: [2, 0, 0, 0, 0],
        changes: &[
            (
                "module.files.local_file.foo[\"file1.txt\"]",
                "create",
                false,
            ),
            (
                "module.files.local_file.foo[\"file2.txt\"]",
                "create",
                false,
            ),
        ],
    },
    // An import with an update is an update.
    Case {
        name: "tfjson-identity",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("corner_user_identity.user", "update", false)],
    },
    Case {
        name: "tfjson-moved-block",
        status: "conform",
        counts: [0, 0, 0, 0, 0],
        changes: &[("random_id.test2", "move", false)],
    },
    // Terraform 0.12, format_version 0.1.
    Case {
        name: "tfjson-no-changes",
        status: "conform",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
    Case {
        name: "tofu-basic-create",
        status: "drift",
        counts: [3, 0, 0, 0, 0],
        changes: &[
            ("test_instance.test[0]", "create", false),
            ("test_instance.test[1]", "create", false),
            ("test_instance.test[2]", "create", false),
        ],
    },
    Case {
        name: "tofu-basic-delete",
        status: "drift",
        counts: [0, 1, 1, 0, 0],
        changes: &[
            ("test_instance.test", "update", false),
            ("test_instance.test-delete", "delete", false),
        ],
    },
    Case {
        name: "tofu-basic-update",
        status: "conform",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
    Case {
        name: "tofu-conditions",
        status: "drift",
        counts: [2, 0, 0, 0, 0],
        changes: &[
            ("test_instance.bar", "create", false),
            ("test_instance.foo", "create", false),
        ],
    },
    Case {
        name: "tofu-drift",
        status: "drift",
        counts: [0, 2, 0, 0, 1],
        changes: &[
            ("test_instance.no_refresh", "update", false),
            ("test_instance.should_refresh", "update", true),
        ],
    },
    Case {
        name: "tofu-identity-update",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("test_instance.test", "update", false)],
    },
    Case {
        name: "tofu-modules",
        status: "drift",
        counts: [4, 0, 0, 0, 0],
        changes: &[
            ("module.module_test_bar.test_instance.test", "create", false),
            (
                "module.module_test_foo.test_instance.test[0]",
                "create",
                false,
            ),
            (
                "module.module_test_foo.test_instance.test[1]",
                "create",
                false,
            ),
            (
                "module.module_test_foo.test_instance.test[2]",
                "create",
                false,
            ),
        ],
    },
    Case {
        name: "tofu-moved",
        status: "drift",
        counts: [0, 1, 0, 0, 0],
        changes: &[("test_instance.baz", "update", false)],
    },
    Case {
        name: "tofu-moved-drift",
        status: "drift",
        counts: [0, 2, 0, 0, 1],
        changes: &[
            ("test_instance.no_refresh", "update", false),
            ("test_instance.should_refresh_with_move", "update", true),
        ],
    },
    // `test_instance.test` moved to `[0]` (listed) and `[1]` is new.
    Case {
        name: "tofu-multi-resource-update",
        status: "drift",
        counts: [1, 0, 0, 0, 0],
        changes: &[
            ("test_instance.test[0]", "move", false),
            ("test_instance.test[1]", "create", false),
        ],
    },
    Case {
        name: "tofu-nested-modules",
        status: "drift",
        counts: [1, 0, 0, 0, 0],
        changes: &[(
            "module.my_module.module.more.test_instance.test",
            "create",
            false,
        )],
    },
    Case {
        name: "tofu-plan-error",
        status: "error",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
    Case {
        name: "tofu-requires-replace",
        status: "drift",
        counts: [0, 0, 0, 1, 0],
        changes: &[("test_instance.test", "replace", false)],
    },
    Case {
        name: "tofu-sensitive-values",
        status: "drift",
        counts: [1, 0, 0, 0, 0],
        changes: &[("test_instance.test", "create", false)],
    },
    Case {
        name: "tofu-show-json-sensitive",
        status: "drift",
        counts: [3, 0, 0, 0, 0],
        changes: &[
            ("test_instance.test[0]", "create", false),
            ("test_instance.test[1]", "create", false),
            ("test_instance.test[2]", "create", false),
        ],
    },
    // Only an unknown output: nothing to apply to resources.
    Case {
        name: "tofu-unknown-output",
        status: "conform",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
    // `validate -json` documents: their diagnostics are configuration errors.
    Case {
        name: "diag-validate-missing-var",
        status: "error",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
    Case {
        name: "diag-validate-outputs",
        status: "error",
        counts: [0, 0, 0, 0, 0],
        changes: &[],
    },
];

fn explain_json(path: &std::path::Path) -> (i32, Value) {
    let (code, stdout, stderr) = run(&["explain", "--format", "json", path.to_str().unwrap()]);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{}: no JSON ({e}): {stderr}", path.display()));
    (code, report)
}

fn exit_code_of(status: &str) -> i32 {
    match status {
        "conform" => 0,
        "drift" => 2,
        _ => 1,
    }
}

#[test]
fn every_fixture_case_is_explained_as_read() {
    let Some(dir) = fixtures() else { return };
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("output.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = CASES.iter().map(|c| c.name.to_owned()).collect();
    expected.sort();
    assert_eq!(on_disk, expected, "every fixture case has an expectation");

    for case in CASES {
        let (code, r) = explain_json(&dir.join(case.name).join("output.json"));
        let ctx = case.name;
        assert_eq!(r["status"], case.status, "{ctx}: status");
        assert_eq!(code, exit_code_of(case.status), "{ctx}: exit code");
        let s = &r["summary"];
        let got = [
            &s["create"],
            &s["update"],
            &s["delete"],
            &s["replace"],
            &s["outside_terraform"],
        ]
        .map(|v| v.as_u64().unwrap());
        assert_eq!(got, case.counts, "{ctx}: summary");
        let changes: Vec<(String, String, bool)> = r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["address"].as_str().unwrap().to_owned(),
                    c["action"].as_str().unwrap().to_owned(),
                    c["outside_terraform"].as_bool().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, String, bool)> = case
            .changes
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
            .collect();
        assert_eq!(changes, want, "{ctx}: changes");
        assert_eq!(
            r["environment"],
            Value::Null,
            "{ctx}: explain has no environment"
        );
        assert_eq!(r["id"], Value::Null, "{ctx}: explain has no id");
    }
}

fn report(case: &str) -> Value {
    let dir = fixtures().expect("checked by caller");
    explain_json(&dir.join(case).join("output.json")).1
}

fn attributes(r: &Value, change: usize) -> Vec<(String, Value, Value)> {
    r["changes"][change]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap().to_owned(),
                a["actual"].clone(),
                a["expected"].clone(),
            )
        })
        .collect()
}

fn attr(path: &str, actual: Value, expected: Value) -> (String, Value, Value) {
    (path.to_owned(), actual, expected)
}

#[test]
fn drift_shows_what_reality_has_against_what_code_declares() {
    if fixtures().is_none() {
        return;
    }
    // plan.txt: string "Hello, world!" -> "Hello, drift!" outside, then back to the code.
    let r = report("eq-drift-simple");
    assert_eq!(
        attributes(&r, 0),
        [attr(
            "string",
            json!("Hello, drift!"),
            json!("Hello, world!")
        )]
    );
    // Refresh-only: actual = what refresh found, expected = the recorded state.
    let r = report("eq-drift-refresh-only");
    assert_eq!(
        attributes(&r, 0),
        [attr(
            "string",
            json!("Hello, drift!"),
            json!("Hello, world!")
        )]
    );
    let r = report("eq-drift-relevant-attributes");
    assert_eq!(
        attributes(&r, 0),
        [
            attr("number", json!(1), json!(0)),
            attr("string", json!("Hello, drift!"), json!("Hello, change!"))
        ]
    );
    assert_eq!(
        attributes(&r, 1),
        [attr(
            "string",
            json!("Hello, world!"),
            json!("Hello, change!")
        )]
    );
}

#[test]
fn nested_paths_use_dots_indexes_and_whole_values_where_lengths_differ() {
    if fixtures().is_none() {
        return;
    }
    let r = report("eq-nested-map-update");
    let paths: Vec<String> = attributes(&r, 0).into_iter().map(|a| a.0).collect();
    assert_eq!(
        paths,
        [
            "maps.first_nested_map.first_key",
            "maps.first_nested_map.third_key",
            "maps.second_nested_map.first_key",
            "maps.second_nested_map.second_key"
        ]
    );
    assert_eq!(
        attributes(&r, 0)[1].1,
        Value::Null,
        "a key added by the code has no actual value"
    );

    let r = report("eq-nested-list-update");
    let a = attributes(&r, 0);
    assert_eq!(
        a[0],
        attr(
            "lists[0]",
            json!([]),
            json!(["44E1C623-7B70-4D78-B4D3-D9CFE8A6D982"])
        )
    );
    assert_eq!(a[1].0, "lists[1][0]");
    assert_eq!(a[2].0, "lists[2]");

    let r = report("eq-replace-within-list");
    assert_eq!(
        attributes(&r, 0),
        [attr(
            "list[1].id",
            json!("6A8C6A29-D417-480A-BE19-12D7398B3178"),
            json!("07F887E2-FDFF-4B2E-9BFB-B6AA4A05EDB9")
        )]
    );
    assert_eq!(r["changes"][0]["reason"], "replace_because_cannot_update");

    let r = report("eq-nested-objects-update");
    assert_eq!(
        attributes(&r, 0)[0].0,
        "parent_object.first_nested_object.attribute_two"
    );
}

#[test]
fn unknown_values_and_reasons_are_reported() {
    if fixtures().is_none() {
        return;
    }
    let r = report("tofu-requires-replace");
    assert_eq!(
        attributes(&r, 0),
        [
            attr("ami", json!("bar"), json!("force-replace")),
            attr("id", json!("placeholder"), json!("(known after apply)"))
        ]
    );
    let r = report("tf1114-deposed-cbd");
    assert_eq!(r["changes"][0]["reason"], "replace_because_tainted");
    assert_eq!(r["changes"][1]["reason"], "deposed object b1a262ce");
    assert_eq!(
        attributes(&r, 0)[1],
        attr("triggers_replace[0]", json!(2), json!(3))
    );
    let r = report("tf1114-mixed-update-replace-delete");
    assert_eq!(r["changes"][1]["reason"], "delete_because_each_key");
    assert_eq!(r["changes"][0]["index"], "x");
    assert_eq!(
        attributes(&r, 0)[2],
        attr("triggers_replace", Value::Null, json!(["rotate-1"]))
    );
    let r = report("tofu-modules");
    assert_eq!(r["changes"][1]["module"], "module.module_test_foo");
    assert_eq!(r["changes"][1]["index"], 0);
    assert_eq!(r["changes"][1]["type"], "test_instance");
    assert_eq!(r["changes"][1]["name"], "test");
}

#[test]
fn errored_plans_and_validate_output_are_errors_with_a_reason() {
    if fixtures().is_none() {
        return;
    }
    let r = report("tofu-plan-error");
    assert_eq!(r["error"]["reason"], "terraform");
    let r = report("diag-validate-missing-var");
    assert_eq!(r["error"]["reason"], "config");
    assert_eq!(
        r["error"]["summary"],
        "Reference to undeclared input variable"
    );
}

#[test]
fn fake_secrets_never_appear_in_any_output() {
    let Some(dir) = fixtures() else { return };
    for case in CASES {
        let path = dir.join(case.name).join("output.json");
        for format in ["json", "text"] {
            let (_, stdout, stderr) = run(&["explain", "--format", format, path.to_str().unwrap()]);
            for secret in ["s3cr3t", "n3w-s3cr3t"] {
                assert!(
                    !stdout.contains(secret) && !stderr.contains(secret),
                    "{}: {format} output shows {secret}",
                    case.name
                );
            }
        }
    }
    // Sensitive attributes are marked, computed copies of them too.
    let r = report("tf1114-mixed-update-replace-delete");
    assert_eq!(
        attributes(&r, 2),
        [
            attr("input", json!("(sensitive)"), json!("(sensitive)")),
            attr("output", json!("(sensitive)"), json!("(known after apply)"))
        ]
    );
}

#[test]
fn text_output_is_an_aligned_table() {
    let Some(dir) = fixtures() else { return };
    let path = dir.join("eq-drift-relevant-attributes/output.json");
    let (code, stdout, _) = run(&["explain", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("plan: DRIFT"), "{stdout}");
    assert!(lines[1].contains("ADDRESS") && lines[1].contains("ACTUAL -> EXPECTED"));
    let col = lines[1].find("ATTRIBUTE").unwrap();
    for line in &lines[2..] {
        let bytes = line.as_bytes();
        assert!(
            bytes[col] != b' ' && bytes[col - 1] == b' ',
            "attribute column aligned: {line:?}"
        );
    }
    assert!(
        stdout.contains("\"Hello, drift!\" -> \"Hello, change!\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "no colour when not on a terminal"
    );
}

#[test]
fn explain_with_an_environment_applies_its_ignore_rules() {
    let Some(dir) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[environments.lab]
dir = "."
[[environments.lab.ignore]]
address = "tfcoremock_simple_resource.*"
attribute = "string"
reason = "set by a cron job on purpose"
[environments.old]
dir = "."
[[environments.old.ignore]]
address = "tfcoremock_simple_resource.*"
attribute = "string"
reason = "expired exception"
expires = "2020-01-01"
"#,
    )
    .unwrap();
    let plan = dir.join("eq-drift-simple/output.json");
    let args = |env: &'static str| {
        [
            "explain",
            "--format",
            "json",
            "--config",
            config.to_str().unwrap(),
            "--env",
            env,
            plan.to_str().unwrap(),
        ]
        .map(String::from)
    };
    let (code, stdout, stderr) = run(&args("lab").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["status"], "conform");
    assert_eq!(r["summary"]["ignored"], 1);
    assert_eq!(
        r["ignored"][0]["address"],
        "tfcoremock_simple_resource.drift"
    );
    assert_eq!(
        r["ignored"][0]["ignored_by"],
        "set by a cron job on purpose"
    );

    let (code, stdout, _) = run(&args("old").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2, "an expired rule no longer hides the drift");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["summary"]["ignored"], 0);
}

#[test]
fn refresh_only_reads_the_drift_in_the_right_direction() {
    let Some(dir) = fixtures() else { return };
    // A refresh-only plan (no resource_changes): actual = what refresh found, expected = the
    // recorded state.
    let r = report("eq-drift-refresh-only");
    assert_eq!(r["changes"][0]["outside_terraform"], true);
    assert_eq!(
        attributes(&r, 0),
        [attr(
            "string",
            json!("Hello, drift!"),
            json!("Hello, world!")
        )]
    );
    // A normal plan read with an environment set to refresh_only: only resource_drift counts.
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        "[environments.lab]\ndir = \".\"\nrefresh_only = true\n",
    )
    .unwrap();
    let plan = dir.join("tofu-drift/output.json");
    let (code, stdout, _) = run(&[
        "explain",
        "--format",
        "json",
        "--config",
        config.to_str().unwrap(),
        "--env",
        "lab",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        r["changes"].as_array().unwrap().len(),
        1,
        "no_refresh only differs from the code: {r}"
    );
    assert_eq!(r["changes"][0]["address"], "test_instance.should_refresh");
    assert_eq!(
        attributes(&r, 0),
        [attr("ami", json!("refreshed"), json!("refresh-me"))]
    );
    // The refresh-only output of the conditions case has no drift at all.
    let plan = dir.join("tofu-conditions/input/output-refresh-only.json");
    let (code, _, _) = run(&["explain", plan.to_str().unwrap()]);
    assert_eq!(code, 0);
}
