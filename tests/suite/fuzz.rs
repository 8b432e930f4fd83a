//! A mutation fuzzer for the parsers of untrusted input: the `show -json` plan reader, the
//! served plan, the `plan -json` stream, terraform's text errors, the state reader and the
//! Proxmox inventory. Seeded with every file of tests/fixtures; each case is a seed
//! mutated by bytes (flips, cuts, splices, duplications) or by structure (a JSON value
//! replaced by another type, deep nesting, huge numbers). A case passes when the parser
//! returns, with a result or an error, and a successful report keeps its own invariants.
//!
//! CI runs a short, fixed-seed run. `FUZZ_SECONDS=600 FUZZ_SEED=<n> cargo test --release
//! --test tests fuzz -- --nocapture` runs longer (BENCHMARKS.md has the 10-minute result);
//! the coverage-guided targets in `fuzz/` (cargo fuzz) use the same seeds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use tfdrift_exporter::plan::redact::SecretCollector;
use tfdrift_exporter::plan::served::served_plan;
use tfdrift_exporter::plan::stream::{StreamSummary, errors_from_text};
use tfdrift_exporter::plan::{ExplainOptions, understand_plan};
use tfdrift_exporter::report::Report;
use tfdrift_exporter::unmanaged::api::parse_inventory;
use tfdrift_exporter::unmanaged::state::managed_guests;

use crate::support::fixtures;

/// Every fixture file (JSON documents, streams, plain text), read whole.
fn seeds() -> Option<Vec<Vec<u8>>> {
    let dir = fixtures()?;
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.metadata().map(|m| m.len() < 4 << 20).unwrap_or(false)
                && let Ok(bytes) = std::fs::read(&p)
            {
                out.push(bytes);
            }
        }
    }
    // Inputs of the other parsers, in their documented shapes.
    out.push(br#"{"version":4,"terraform_version":"1.11.4","resources":[{"mode":"managed","type":"proxmox_vm_qemu","name":"a","instances":[{"attributes":{"id":"pve1/qemu/101","vmid":101}}]},{"mode":"managed","type":"proxmox_virtual_environment_vm","name":"b","instances":[{"attributes":{"vm_id":102}}]}]}"#.to_vec());
    out.push(br#"{"data":[{"id":"qemu/100","vmid":100,"type":"qemu","node":"pve1","name":"web","status":"running","template":0,"tags":"a;b"},{"id":"lxc/151","vmid":151,"type":"lxc","node":"pve3","status":"unknown"}]}"#.to_vec());
    Some(out)
}

const INTERESTING: &[u8] = b"{}[]\",:\\0-9eE.+ntfu\n\x00\xff";

/// One byte-level mutation of `data`.
fn mutate_bytes(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = data.len();
    match rng.random_range(0..7) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        2 if len > 0 => data.truncate(rng.random_range(0..len)),
        3 if len > 1 => {
            let a = rng.random_range(0..len);
            let b = rng.random_range(a..len);
            data.drain(a..b);
        }
        4 if len > 1 => {
            let a = rng.random_range(0..len);
            let b = rng.random_range(a..len.min(a + 4096));
            let chunk = data[a..b].to_vec();
            let at = rng.random_range(0..len);
            data.splice(at..at, chunk);
        }
        5 => {
            let other = &seeds[rng.random_range(0..seeds.len())];
            if !other.is_empty() {
                let a = rng.random_range(0..other.len());
                let b = rng
                    .random_range(a..other.len().min(a + 4096) + 1)
                    .min(other.len());
                let at = rng.random_range(0..=len);
                data.splice(at..at, other[a..b].iter().copied());
            }
        }
        _ => {
            let at = rng.random_range(0..=len);
            let depth = rng.random_range(1..3000);
            let open = if rng.random_bool(0.5) { b'[' } else { b'{' };
            data.splice(at..at, std::iter::repeat_n(open, depth));
        }
    }
}

/// A JSON value to put in place of another.
fn odd_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..9) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => serde_json::json!(-1),
        3 => serde_json::json!(1e308),
        4 => serde_json::json!(u64::MAX),
        5 => Value::String("(sensitive)\u{0}\u{1b}[31m".into()),
        6 => serde_json::json!([[[[null]]]]),
        7 => serde_json::json!({"": {"": []}}),
        _ => Value::String("x".repeat(rng.random_range(0..10_000))),
    }
}

/// Replaces one random node of `v` (visiting it in document order).
fn mutate_value(rng: &mut StdRng, v: &mut Value) {
    let mut count = 0usize;
    fn nodes(v: &Value, n: &mut usize) {
        *n += 1;
        match v {
            Value::Array(a) => a.iter().for_each(|x| nodes(x, n)),
            Value::Object(o) => o.values().for_each(|x| nodes(x, n)),
            _ => {}
        }
    }
    nodes(v, &mut count);
    let target = rng.random_range(0..count.max(1));
    fn walk(v: &mut Value, target: usize, n: &mut usize, rng: &mut StdRng) -> bool {
        if *n == target {
            *v = odd_value(rng);
            return true;
        }
        *n += 1;
        match v {
            Value::Array(a) => a.iter_mut().any(|x| walk(x, target, n, rng)),
            Value::Object(o) => o.values_mut().any(|x| walk(x, target, n, rng)),
            _ => false,
        }
    }
    let mut n = 0;
    walk(v, target, &mut n, rng);
}

/// One case through every parser; panics (the failure) only from the code under test.
fn run_case(input: &[u8]) {
    let options = ExplainOptions::default();
    if let Ok(outcome) = understand_plan(input, options) {
        let report = Report::from_outcome(outcome);
        let counted = report
            .changes
            .iter()
            .filter(|c| c.action.is_counted())
            .count() as u64;
        assert_eq!(
            report.summary.counted(),
            counted,
            "summary matches the changes"
        );
        let _ = serde_json::to_vec(&report).expect("a report always serializes");
    }
    let _ = understand_plan(input, ExplainOptions { refresh_only: true });
    let _ = served_plan(input, SecretCollector::default());
    let text = String::from_utf8_lossy(input);
    let summary = StreamSummary::parse(&text);
    assert!(
        summary.stray.len() <= 64 * 1024 + 4096,
        "stray text is bounded"
    );
    let _ = errors_from_text(&text);
    let _ = managed_guests(input);
    let _ = parse_inventory(input);
}

#[test]
fn parsers_survive_mutated_fixtures() {
    let Some(seeds) = seeds() else { return };
    assert!(seeds.len() > 50, "{} seeds", seeds.len());
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261125);
    // The short run: a fixed number of cases, the same every time.
    let cases = if seconds == 0 { 10_000 } else { u64::MAX };
    let deadline = Instant::now() + Duration::from_secs(if seconds > 0 { seconds } else { 3600 });
    let mut rng = StdRng::seed_from_u64(seed);
    for s in &seeds {
        run_case(s);
    }
    let mut done = 0u64;
    while done < cases && Instant::now() < deadline {
        let base = &seeds[rng.random_range(0..seeds.len())];
        let input = if rng.random_bool(0.3)
            && let Ok(mut v) = serde_json::from_slice::<Value>(base)
        {
            for _ in 0..rng.random_range(1..4) {
                mutate_value(&mut rng, &mut v);
            }
            serde_json::to_vec(&v).unwrap()
        } else {
            let mut data = base.clone();
            for _ in 0..rng.random_range(1..6) {
                mutate_bytes(&mut rng, &mut data, &seeds);
            }
            data
        };
        let outcome = std::panic::catch_unwind(|| run_case(&input));
        if outcome.is_err() {
            let path =
                Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-crash-{seed}-{done}"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "case {done} (seed {seed}) panicked; input saved to {}",
                path.display()
            );
        }
        done += 1;
    }
    eprintln!(
        "fuzz: {done} cases from {} seeds (seed {seed}) without a failure",
        seeds.len()
    );
}
