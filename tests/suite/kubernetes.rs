//! examples/kubernetes, checked offline: the Kubernetes objects against the API's schemas
//! (kubernetes-validate, strict: no unknown field), the PodMonitor against the fields of the
//! Prometheus Operator's API it uses, the scrape configuration with promtool, the
//! exporter's configuration with `check-config`, and the manifests against each other (the
//! shard count, the names, the labels, the port).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use crate::support::{output_of, run, skip, tool};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes")
}

fn manifest(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// kubernetes-validate from ./test.sh's virtualenv (beside `MOTO_PYTHON`), else on PATH.
fn validator() -> Option<PathBuf> {
    let beside = std::env::var_os("MOTO_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(|d| d.join("kubernetes-validate")))
        .filter(|p| p.exists());
    let found = beside.or_else(|| {
        Command::new("kubernetes-validate")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from("kubernetes-validate"))
    });
    if found.is_none() {
        skip("kubernetes-validate is not installed (./test.sh puts it in target/venv)");
    }
    found
}

fn validate(validator: &Path, files: &[PathBuf]) -> (i32, String, String) {
    output_of(
        Command::new(validator)
            .args(["--strict", "--kubernetes-version", "1.37.0"])
            .args(files)
            .output()
            .unwrap(),
    )
}

#[test]
fn the_kubernetes_objects_pass_the_api_schemas_strictly() {
    let Some(validator) = validator() else { return };
    let files: Vec<PathBuf> = ["configmap.yaml", "service.yaml", "statefulset.yaml"]
        .iter()
        .map(|f| dir().join(f))
        .collect();
    let (code, out, err) = validate(&validator, &files);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.matches("passed for resource").count() + err.matches("passed for resource").count(),
        3,
        "{out}{err}"
    );
    assert!(!format!("{out}{err}").contains("WARN"), "{out}{err}");

    // The check can fail: an unknown field, and a wrong type.
    let root = tempfile::tempdir().unwrap();
    let statefulset = std::fs::read_to_string(dir().join("statefulset.yaml")).unwrap();
    for (what, broken) in [
        (
            "unknown field",
            statefulset.replace("  replicas: 3", "  replicaz: 3"),
        ),
        (
            "wrong type",
            statefulset.replace("containerPort: 9847", "containerPort: metrics"),
        ),
    ] {
        assert_ne!(broken, statefulset, "{what}: the mutation applies");
        let file = root.path().join("statefulset.yaml");
        std::fs::write(&file, broken).unwrap();
        let (code, out, err) = validate(&validator, &[file]);
        assert_ne!(code, 0, "{what} is refused: {out}{err}");
    }
}

/// The keys of a mapping.
fn keys(v: &Value) -> Vec<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `key = value` in the configuration (each key here is set once), without
/// its comment.
fn setting(text: &str, key: &str) -> String {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .map(|v| v.split('#').next().unwrap().trim().to_owned())
        .unwrap_or_else(|| panic!("{key} is not set"))
}

/// True when every label of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(wanted) = selector.as_mapping() else {
        return false;
    };
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_manifests_agree_with_each_other_and_the_exporter() {
    let config_map = manifest("configmap.yaml");
    let service = manifest("service.yaml");
    let statefulset = manifest("statefulset.yaml");
    let monitor = manifest("podmonitor.yaml");
    let pod = &statefulset["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["name"], "tfdrift-exporter");

    // The configuration the replicas read is valid, with discovery and automatic shards.
    let text = config_map["data"]["config.toml"].as_str().unwrap();
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    let infra = root.path().join("infra");
    std::fs::create_dir_all(infra.join("envs/prod")).unwrap();
    std::fs::write(infra.join("envs/prod/main.tf"), "terraform {}\n").unwrap();
    let (code, out, err) = output_of(
        crate::support::bin()
            .args(["check-config", "--config", config.to_str().unwrap()])
            .env("TFDRIFT_DISCOVERY__ROOT", &infra)
            .env("TFDRIFT_STORAGE__PATH", root.path().join("storage"))
            // The second pod of the StatefulSet.
            .env("HOSTNAME", "tfdrift-exporter-1")
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("prod"), "the discovered environment: {out}");
    let total: i64 = setting(text, "total_shards").parse().unwrap();
    assert_eq!(setting(text, "shard"), "\"auto\"");

    // One replica per shard, each told the same total, the shard from its pod name.
    assert_eq!(statefulset["spec"]["replicas"].as_i64(), Some(total));
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--shard=auto"), "{args:?}");
    assert!(
        args.contains(&format!("--total-shards={total}").as_str()),
        "{args:?}"
    );
    let (code, _, err) = run(&["--shard", "auto", "--total-shards", "3", "--help"]);
    assert_eq!(code, 0, "the flags exist: {err}");

    // The headless Service of the StatefulSet selects its pods and names the metrics port.
    assert_eq!(
        statefulset["spec"]["serviceName"],
        service["metadata"]["name"]
    );
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert!(selects(&service["spec"]["selector"], labels));
    assert!(selects(
        &statefulset["spec"]["selector"]["matchLabels"],
        labels
    ));
    let listen = setting(text, "listen_address");
    let port: i64 = listen
        .trim_matches('"')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ports = container["ports"].as_sequence().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"].as_i64() == Some(port)),
        "the container's metrics port is the configured {port}"
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    // Probes on the exporter's endpoints.
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    // The storage is the replica's own volume.
    let storage = setting(text, "path");
    let storage = storage.trim_matches('"');
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == storage && m["name"] == "storage")
    );
    assert_eq!(
        statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "storage"
    );

    // The PodMonitor: the Prometheus Operator's monitoring.coreos.com/v1 fields it uses,
    // nothing else; its pods, port and job are the StatefulSet's and the rules'.
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "PodMonitor");
    let mut spec = keys(&monitor["spec"]);
    spec.sort();
    assert_eq!(spec, ["jobLabel", "podMetricsEndpoints", "selector"]);
    assert_eq!(keys(&monitor["spec"]["selector"]), ["matchLabels"]);
    assert!(selects(&monitor["spec"]["selector"]["matchLabels"], labels));
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    for key in keys(endpoint) {
        assert!(
            ["port", "path", "interval"].contains(&key.as_str()),
            "{key}"
        );
    }
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    let job = monitor["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(labels[job], "tfdrift", "the job the shipped rules name");
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("alert-rules/tfdrift.rules.yml"),
    )
    .unwrap();
    assert!(rules.contains("up{job=\"tfdrift\"}"));
}

#[test]
fn the_scrape_configuration_passes_promtool() {
    if !tool("promtool", "prometheus") {
        return;
    }
    let file = dir().join("prometheus-scrape.yml");
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&file)
        .output()
        .unwrap();
    let (code, stdout, stderr) = output_of(out);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let scrape: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["job_name"], "tfdrift");
    let service = manifest("service.yaml");
    let name = job["dns_sd_configs"][0]["names"][0].as_str().unwrap();
    assert!(
        name.starts_with(&format!(
            "{}.",
            service["metadata"]["name"].as_str().unwrap()
        )),
        "the headless Service's name: {name}"
    );
    assert_eq!(job["dns_sd_configs"][0]["port"], 9847);
}
