//! Surfaces that must stay bounded with many environments: the landing page summarises and
//! pages, failing environments first; `/metrics` keeps to its global cap of resource series.
//! A stand-in terraform (a shell script) answers each environment at once: plans without
//! changes, a failing plan for the environments named `f*`, a drift of 30 updates for those
//! named `d*`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::chain::wait_until;
use crate::server::Server;

/// How many environments of each kind a fleet has.
struct Kinds {
    conform: usize,
    failing: usize,
    drifting: usize,
    unscanned: usize,
}

/// Updates in the plan of a drifting environment.
const DRIFTED: usize = 30;

/// A configuration of environments whose plans find nothing, fail, or drift, and of some
/// never scanned; `extra` follows `[defaults]`' keys (a section of its own, as `[metrics]`).
fn fleet(root: &Path, kinds: Kinds, extra: &str) -> PathBuf {
    let show = root.join("show.json");
    std::fs::write(&show, crate::support::plan_of_updates(DRIFTED)).unwrap();
    let fake = root.join("fake-terraform");
    crate::support::script(
        &fake,
        "case \"$1\" in\n\
         version) echo '{\"terraform_version\":\"1.11.4\"}';;\n\
         plan) for a in \"$@\"; do case \"$a\" in -out=*) : > \"${a#-out=}\";; esac; done\n\
           echo '{\"type\":\"version\",\"terraform\":\"1.11.4\"}'\n\
           case \"$PWD\" in\n\
           */d*) echo '{\"type\":\"change_summary\",\"changes\":{\"change\":30}}'; exit 2;;\n\
           */f*) echo '{\"@level\":\"error\",\"@message\":\"Error: boom\",\"type\":\"diagnostic\",\"diagnostic\":{\"severity\":\"error\",\"summary\":\"boom\",\"detail\":\"\"}}'; exit 1;;\n\
           *) echo '{\"@level\":\"info\",\"@message\":\"Plan: 0 to add, 0 to change, 0 to destroy.\",\"type\":\"change_summary\",\"changes\":{\"add\":0,\"change\":0,\"import\":0,\"remove\":0,\"operation\":\"plan\"}}';;\n\
         esac;;\n\
         show) cat \"$SHOW_JSON\";;\n\
         esac\nexit 0\n",
    );
    let mut text = format!(
        "[storage]\npath = \"state\"\n[scheduler]\nmax_concurrent_scans = 4\n[defaults]\nbinary = \"{}\"\ninit = \"never\"\ninterval = \"1h\"\njitter = \"0s\"\n{extra}",
        fake.display()
    );
    let groups = [
        ("e", kinds.conform, true),
        ("f", kinds.failing, true),
        ("d", kinds.drifting, true),
        ("u", kinds.unscanned, false),
    ];
    for (prefix, n, scanned) in groups {
        for i in 0..n {
            let name = format!("{prefix}{i:03}");
            let dir = root.join("envs").join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("main.tf"), "terraform {}\n").unwrap();
            text.push_str(&format!(
                "[environments.{name}]\ndir = \"envs/{name}\"\nrun_on_start = {scanned}\nenv = {{ SHOW_JSON = \"{}\" }}\n",
                show.display()
            ));
        }
    }
    let config = root.join("config.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// Waits until `n` environments have a last scan.
fn scanned(server: &Server, n: usize) {
    wait_until(
        "every environment scanned",
        Duration::from_secs(120),
        || {
            server
                .metrics()
                .lines()
                .filter(|l| l.starts_with("tfdrift_last_scan_timestamp_seconds{"))
                .count()
                == n
        },
    );
}

/// The environments of a page's table, in order.
fn rows(page: &str) -> Vec<String> {
    page.split("<td data-label=\"Environment\"><a href=\"/environments/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

fn get(server: &Server, path: &str) -> (u16, String) {
    let (status, _, body) = server.request("GET", path, None);
    (status, body)
}

#[test]
fn the_landing_page_counts_pages_and_puts_failures_first() {
    if !crate::support::have_terraform() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let kinds = Kinds {
        conform: 120,
        failing: 3,
        drifting: 2,
        unscanned: 7,
    };
    let config = fleet(root.path(), kinds, "");
    let server = Server::start(&config);
    scanned(&server, 125);

    let (status, page) = get(&server, "/");
    assert_eq!(status, 200);
    for count in [
        "132 environments",
        "3 error",
        "2 drift",
        "7 unscanned",
        "120 conform",
    ] {
        assert!(page.contains(count), "the summary says {count}: {page}");
    }
    let first = rows(&page);
    assert_eq!(first.len(), 50, "one page of 50");
    assert_eq!(
        first[..10],
        [
            "f000", "f001", "f002", "d000", "d001", "u000", "u001", "u002", "u003", "u004"
        ],
        "failing first, then drifting, then never scanned, then conform"
    );
    assert!(page.contains("Environments 1-50 of 132"), "{page}");
    assert!(page.contains("href=\"/?page=2\""), "{page}");
    assert!(!page.contains("previous page"));
    assert!(
        page.contains("id=\"env-f000\"") && page.contains("boom"),
        "the failing environments' errors are below the table"
    );
    assert!(
        page.contains("id=\"env-d001\"") && page.contains("terraform_data.vm[29]"),
        "and the drifting ones' changes"
    );
    assert!(
        !page.contains("id=\"env-e000\""),
        "a conform one has no section"
    );

    let (_, last) = get(&server, "/?page=3");
    assert_eq!(rows(&last).len(), 32);
    assert_eq!(rows(&last).last().map(String::as_str), Some("e119"));
    assert!(last.contains("Environments 101-132 of 132") && last.contains("href=\"/?page=2\""));
    let (_, beyond) = get(&server, "/?page=99");
    assert_eq!(rows(&beyond), rows(&last), "past the end: the last page");

    let (_, failing) = get(&server, "/?status=error");
    assert_eq!(rows(&failing), ["f000", "f001", "f002"]);
    let (_, named) = get(&server, "/?name=e11&status=conform");
    assert_eq!(rows(&named).len(), 10, "e110-e119");
    assert!(
        named.contains("value=\"e11\"") && named.contains("<option value=\"conform\" selected>"),
        "the form keeps what was asked: {named}"
    );
    let (_, none) = get(&server, "/?name=nothing-like-it");
    assert!(none.contains("No environment matches."));

    for (query, says) in [
        (
            "/?status=bogus",
            "must be error, drift, unscanned or conform",
        ),
        ("/?page=0", "must be a number from 1"),
        ("/?sort=name", "(use status, name, page)"),
    ] {
        let (status, body) = get(&server, query);
        assert_eq!(status, 400, "{query}");
        assert!(body.contains(says), "{query}: {body}");
    }
}

#[test]
fn resource_series_keep_to_the_limit_per_environment_and_in_all() {
    if !crate::support::have_terraform() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let kinds = Kinds {
        conform: 5,
        failing: 0,
        drifting: 8,
        unscanned: 0,
    };
    let limits = "[metrics]\nmax_resource_series = 20\nmax_resource_series_total = 100\n";
    let config = fleet(root.path(), kinds, limits);
    let server = Server::start(&config);
    scanned(&server, 13);
    let m = server.metrics();
    let series: Vec<String> = m
        .lines()
        .filter(|l| l.starts_with("tfdrift_resource_change_info{"))
        .filter_map(|l| crate::server::label(l, "tfdrift_resource_change_info", "environment"))
        .collect();
    assert_eq!(series.len(), 100, "the total limit, reached");
    for d in 0..8 {
        let name = format!("d{d:03}");
        let shown = series.iter().filter(|e| **e == name).count();
        assert!(shown <= 20, "{name}: {shown} series");
        let dropped = crate::server::metric(
            &m,
            "tfdrift_resource_series_dropped",
            &[("environment", &name)],
        )
        .unwrap_or(0.0);
        assert_eq!(
            shown + dropped as usize,
            DRIFTED,
            "{name}: every change has a series or is counted as dropped"
        );
        assert_eq!(
            crate::server::metric(
                &m,
                "tfdrift_changed_resources",
                &[("environment", &name), ("action", "update")]
            ),
            Some(DRIFTED as f64),
            "the counts stay whole"
        );
    }
    assert!(
        !m.contains("tfdrift_resource_series_dropped{environment=\"e"),
        "absent where nothing was dropped"
    );
}
