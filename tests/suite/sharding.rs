//! Work split across replicas like kube-state-metrics: `--shard auto` takes the ordinal
//! from the host name, each environment belongs to exactly one replica, and one more
//! replica moves about one in n of them.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use tfdrift_exporter::shard::Shard;

use crate::chain::wait_until;
use crate::server::{Server, metric};

const ENVIRONMENTS: usize = 60;

/// A configuration of 60 environments that are not scanned on start (only who owns which
/// is looked at here).
fn fleet(root: &Path) -> std::path::PathBuf {
    let mut text = String::from(
        "[storage]\npath = \"state\"\n[defaults]\ninterval = \"1h\"\nrun_on_start = false\n",
    );
    for i in 0..ENVIRONMENTS {
        let dir = root.join(format!("env-{i:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        text.push_str(&format!(
            "[environments.env-{i:02}]\ndir = \"{}\"\n",
            dir.display()
        ));
    }
    let config = root.join("config.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// The environments a replica shows (each has its scan interval gauge), with its shard
/// gauges checked.
fn owned(server: &Server, ordinal: u32, total: u32) -> BTreeSet<String> {
    let m = server.metrics();
    assert_eq!(
        metric(&m, "tfdrift_total_shards", &[]),
        Some(f64::from(total)),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "tfdrift_shard_ordinal",
            &[("shard_ordinal", &ordinal.to_string())]
        ),
        Some(f64::from(ordinal)),
        "{m}"
    );
    m.lines()
        .filter(|l| l.starts_with("tfdrift_scan_interval_seconds{"))
        .filter_map(|l| crate::server::label(l, "tfdrift_scan_interval_seconds", "environment"))
        .collect()
}

/// `total` replicas, each with `HOSTNAME=tfdrift-<ordinal>` and `--shard auto`; what each
/// shows once its scheduler has placed every environment it owns.
fn replicas(config: &Path, total: u32) -> Vec<BTreeSet<String>> {
    let servers: Vec<Server> = (0..total)
        .map(|ordinal| {
            Server::start_in_env(
                config,
                "",
                &["--shard", "auto", "--total-shards", &total.to_string()],
                &[("HOSTNAME", &format!("tfdrift-{ordinal}"))],
            )
        })
        .collect();
    servers
        .iter()
        .zip(0..)
        .map(|(server, ordinal)| {
            let expected = (0..ENVIRONMENTS)
                .filter(|i| Shard { ordinal, total }.owns(&format!("env-{i:02}")))
                .count();
            wait_until(
                "the replica's environments",
                Duration::from_secs(20),
                || owned(server, ordinal, total).len() == expected,
            );
            owned(server, ordinal, total)
        })
        .collect()
}

#[test]
fn every_environment_belongs_to_exactly_one_replica_and_a_fourth_moves_few() {
    let root = tempfile::tempdir().unwrap();
    let config = fleet(root.path());
    let three = replicas(&config, 3);
    let mut all = BTreeSet::new();
    for (ordinal, envs) in three.iter().enumerate() {
        assert!(!envs.is_empty(), "shard {ordinal} owns nothing");
        for env in envs {
            assert!(all.insert(env.clone()), "{env} is owned twice");
        }
    }
    assert_eq!(all.len(), ENVIRONMENTS, "every environment has an owner");

    let four = replicas(&config, 4);
    let owner =
        |shards: &[BTreeSet<String>], env: &str| shards.iter().position(|s| s.contains(env));
    let moved: Vec<&String> = all
        .iter()
        .filter(|env| owner(&three, env) != owner(&four, env))
        .collect();
    assert!(
        moved.len() * 10 <= ENVIRONMENTS * 3,
        "{} of {ENVIRONMENTS} moved: {moved:?}",
        moved.len()
    );
    // Only to the new replica.
    assert!(
        moved.iter().all(|env| owner(&four, env) == Some(3)),
        "{moved:?}"
    );
}

#[test]
fn a_host_name_without_an_ordinal_is_refused_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let config = fleet(root.path());
    let out = crate::support::bin()
        .env("HOSTNAME", "monitoring")
        .args([
            "--config",
            config.to_str().unwrap(),
            "--shard",
            "auto",
            "--total-shards",
            "3",
        ])
        .output()
        .unwrap();
    let (code, _, err) = crate::support::output_of(out);
    assert_ne!(code, 0);
    assert!(
        err.contains("--shard") && err.contains("monitoring"),
        "{err}"
    );
}
