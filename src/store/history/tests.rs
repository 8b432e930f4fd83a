//! The history's index against files written by hand and by the store.
use super::*;
use crate::report::{PlanOutcome, Report, Stamp};
use chrono::Timelike;

fn report(env: &str, id: &str, finished: DateTime<Utc>) -> Report {
    let mut r = Report::from_outcome(PlanOutcome::no_changes());
    r.stamp = Some(Stamp::at(id, env, finished));
    r
}

/// Writes `r` as a commit does (report, index line, memory).
fn save(h: &History, r: &Report) {
    h.write(r.environment().unwrap(), r).unwrap();
}

/// `count` scans of `lab`, a minute apart from a day ago (`lab-000`, ...), stored and
/// loaded: the directory, the history and the first scan's end.
fn minutely(count: i64) -> (tempfile::TempDir, History, DateTime<Utc>) {
    let dir = tempfile::tempdir().unwrap();
    let writer = History::empty(dir.path());
    let t0 = Utc::now() - chrono::Duration::days(1);
    for i in 0..count {
        let r = report(
            "lab",
            &format!("lab-{i:03}"),
            t0 + chrono::Duration::minutes(i),
        );
        save(&writer, &r);
    }
    let (h, _) = History::load(dir.path());
    (dir, h, t0)
}

fn all(h: &History, env: Option<&str>) -> Vec<ScanSummary> {
    h.page(&Query {
        environment: env,
        since: DateTime::<Utc>::MIN_UTC,
        before: None,
        limit: 5000,
    })
    .unwrap()
    .scans
}

#[test]
fn old_reports_are_pruned_and_broken_ones_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("envs/lab/history");
    std::fs::create_dir_all(&history).unwrap();
    let now = Utc::now();
    let old = report("lab", "lab-old", now - chrono::Duration::days(100));
    let new = report("lab", "lab-new", now - chrono::Duration::days(1));
    for r in [&old, &new] {
        let path = history.join(format!("{}.json", r.id().unwrap()));
        std::fs::write(path, serde_json::to_vec(r).unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(history.join("lab-broken.json"), b"{\"id\": ").unwrap();
    let (h, restored) = History::load(dir.path());
    assert_eq!(
        restored["lab"].latest.as_ref().unwrap().id(),
        Some("lab-new")
    );
    assert_eq!(all(&h, None).len(), 2, "the broken file is skipped");
    h.delete(h.take_pruned(Duration::from_secs(90 * 86_400), now));
    assert!(!history.join("lab-old.json").exists());
    assert!(history.join("lab-new.json").exists());
    assert_eq!(all(&h, Some("lab")).len(), 1);
    assert!(h.read("lab", "lab-new").is_some());
    assert!(h.read("lab", "../lab-new").is_none(), "no path traversal");
    // The rewritten index is what the next start reads.
    let (h, _) = History::load(dir.path());
    assert_eq!(all(&h, Some("lab")).len(), 1);
}

/// Regression: one forward clock jump of 100 days at start deleted 11 of 12 reports. Age is
/// measured against the newest stored scan as well as the clock: nothing goes, until scans
/// stored at the new time make the old ones old for real.
#[test]
fn a_clock_that_jumped_ahead_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writer = History::empty(dir.path());
    let now = Utc::now();
    for day in 0..12 {
        let r = report(
            "lab",
            &format!("lab-{day:02}"),
            now - chrono::Duration::days(11 - day),
        );
        save(&writer, &r);
    }
    let (h, _) = History::load(dir.path());
    let retention = Duration::from_secs(90 * 86_400);
    let jumped = now + chrono::Duration::days(100);
    assert!(h.take_pruned(retention, jumped).is_empty());
    assert_eq!(all(&h, Some("lab")).len(), 12);
    // Real time passed: a scan stored 85 days on makes the six over 90 days old by then go
    // (11 to 6 days before now), and keeps the six younger and itself.
    let later = report("lab", "lab-later", now + chrono::Duration::days(85));
    save(&writer, &later);
    let (h, _) = History::load(dir.path());
    h.delete(h.take_pruned(retention, jumped));
    let kept: Vec<String> = all(&h, Some("lab"))
        .into_iter()
        .filter_map(|s| s.id)
        .collect();
    assert_eq!(kept.len(), 7, "{kept:?}");
}

/// Regression: a conform report whose file was lost merged the drift runs around it (the
/// index line still says conform); and a conform scan stamped in the future made every
/// later change's author `[]`. The index ends the run; attribution starts from the last
/// conform scan written with a time before the asking scan.
#[test]
fn the_index_ends_a_run_and_a_future_conform_scan_is_no_attribution_boundary() {
    use crate::report::Status;
    let dir = tempfile::tempdir().unwrap();
    let writer = History::empty(dir.path());
    let now = Utc::now().with_nanosecond(0).unwrap();
    let minutes = |m: i64| now - chrono::Duration::minutes(60 - m);
    let mut drift = report("lab", "lab-drift", minutes(0));
    drift.status = Status::Drift;
    drift.drift_since = Some(minutes(0));
    save(&writer, &drift);
    let conform = report("lab", "lab-conform", minutes(10));
    save(&writer, &conform);
    std::fs::remove_file(dir.path().join("envs/lab/history/lab-conform.json")).unwrap();
    // At the next start (the heal drops the line of the lost file) and in the running
    // exporter's memory alike.
    let (restarted, _) = History::load(dir.path());
    for h in [&restarted, &writer] {
        let next = h.commit(scanned("lab", minutes(20), &["a"]));
        assert_eq!(
            next.report.drift_since,
            Some(minutes(20)),
            "a new run, not the old one"
        );
    }

    save(&writer, &report("lab", "lab-conform-2", minutes(25)));
    let ahead = report("lab", "lab-ahead", now + chrono::Duration::days(365));
    save(&writer, &ahead);
    assert_eq!(
        writer.last_conform("lab", minutes(30)),
        Some(minutes(25)),
        "the conform scan before the asking one, not the one a year ahead"
    );
}

/// A scan of `env` that started and ended at `t`, with a change at each of `addresses`.
fn scanned(env: &str, t: DateTime<Utc>, addresses: &[&str]) -> crate::report::Scanned {
    let mut outcome = PlanOutcome::no_changes();
    outcome.changes = addresses
        .iter()
        .map(|a| crate::report::Change::outside_update(a))
        .collect();
    crate::report::Scanned {
        environment: env.to_owned(),
        started_at: t,
        finished_at: t,
        duration_seconds: 0.0,
        tool: crate::report::Tool {
            binary: None,
            version: None,
        },
        trigger: crate::report::Trigger::of(crate::report::TriggerKind::Schedule),
        findings: Report::from_outcome(outcome),
        plan: None,
        guests: None,
    }
}

/// The exporter's memory knows a scan the CLI committed meanwhile (its index line): the
/// next commit carries the CLI's run on and gives the next id, instead of starting over
/// from what the exporter committed last.
#[test]
fn a_commit_of_another_process_is_read_before_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let t = (Utc::now() - chrono::Duration::minutes(30))
        .with_nanosecond(0)
        .unwrap();
    let (exporter, _) = History::load(dir.path());
    let first = exporter.commit(scanned("lab", t, &[]));
    assert_eq!(first.report.status, crate::report::Status::Conform);
    let cli = History::empty(dir.path());
    let minute = chrono::Duration::minutes(1);
    let drift = cli.commit(scanned("lab", t + minute, &["a"]));
    assert_eq!(drift.report.drift_since, Some(t + minute));
    // Same second as the CLI's scan: another id.
    let next = exporter.commit(scanned("lab", t + minute, &["a", "b"]));
    assert_eq!(
        next.report.drift_since,
        Some(t + minute),
        "the CLI's run goes on"
    );
    assert_ne!(next.report.id(), drift.report.id());
    assert!(next.stored);
    let ids: Vec<String> = all(&exporter, Some("lab"))
        .into_iter()
        .filter_map(|s| s.id)
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

/// Regression: a report stamped in the future (a wrong clock once) stays the latest at
/// every restart; the latest is the report written last.
#[test]
fn a_report_from_a_wrong_clock_is_not_the_latest_once_another_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let writer = History::empty(dir.path());
    let now = Utc::now();
    let future = report(
        "lab",
        "lab-20990101T000000Z",
        "2099-01-01T00:00:00Z".parse().unwrap(),
    );
    save(&writer, &future);
    let mut next = report("lab", "lab-now", now);
    next.status = Status::Drift;
    save(&writer, &next);
    for _ in 0..2 {
        let (_, restored) = History::load(dir.path());
        assert_eq!(
            restored["lab"].latest.as_ref().unwrap().id(),
            Some("lab-now")
        );
    }
}

#[test]
fn pages_follow_each_other_without_gaps_or_repeats() {
    let (_dir, h, _) = minutely(25);
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = h
            .page(&Query {
                environment: Some("lab"),
                since: DateTime::<Utc>::MIN_UTC,
                before: before.as_deref(),
                limit: 10,
            })
            .unwrap();
        seen.extend(page.scans.iter().map(|s| s.id.clone().unwrap()));
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("lab-{i:03}")).collect();
    assert_eq!(seen, expected);
}

/// Regression: a cursor whose scan left the `since` window between two pages (time went
/// on) gave 400; it is the empty last page. A cursor of no stored scan is still an error.
#[test]
fn a_cursor_that_left_the_since_window_gives_an_empty_last_page() {
    let (_dir, h, t0) = minutely(5);
    let query = |since, before| Query {
        environment: Some("lab"),
        since,
        before,
        limit: 3,
    };
    let first = h.page(&query(t0, None)).unwrap();
    let cursor = first.next.expect("a second page");
    assert_eq!(cursor, "lab.lab-002");
    // The window moved past the cursor's scan before the second page was asked for.
    let later = t0 + chrono::Duration::minutes(3);
    let last = h.page(&query(later, Some(&cursor))).unwrap();
    assert!(last.scans.is_empty() && last.next.is_none(), "{last:?}");
    assert!(h.page(&query(later, Some("lab.no-such-scan"))).is_err());
}

mod same_second {
    use super::*;
    use crate::report::{PlanOutcome, Report, Stamp, Status};

    /// Regression: two scans ending in the same second (times are stored to the second) must
    /// restore the one written last, not whichever the directory lists first.
    #[test]
    fn the_report_written_last_is_the_latest_within_one_second() {
        let dir = tempfile::tempdir().unwrap();
        let history = dir.path().join("envs/lab/history");
        std::fs::create_dir_all(&history).unwrap();
        let t = Utc::now();
        for (id, status) in [("lab-b", Status::Conform), ("lab-a", Status::Drift)] {
            let mut r = Report::from_outcome(PlanOutcome {
                changes: vec![],
                ignored: vec![],
                error: None,
                tool_version: None,
                guests: None,
                checks: vec![],
            });
            r.status = status;
            r.stamp = Some(Stamp::at(id, "lab", t));
            std::fs::write(
                history.join(format!("{id}.json")),
                serde_json::to_vec(&r).unwrap(),
            )
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (h, restored) = History::load(dir.path());
        assert_eq!(restored["lab"].latest.as_ref().unwrap().id(), Some("lab-a"));
        let page = h
            .page(&Query {
                environment: Some("lab"),
                since: DateTime::<Utc>::MIN_UTC,
                before: None,
                limit: 10,
            })
            .unwrap();
        assert_eq!(page.scans[0].id.as_deref(), Some("lab-a"));
    }
}

/// Regression: the index had two writers, a scan appending and a prune rewriting it from
/// memory, so a line appended between the prune's choice and its rename was lost. Many
/// rounds of scans appending while prunes run: every scan a prune did not take is in the
/// index file, in the order written.
#[test]
fn prunes_while_scans_append_lose_no_committed_scan() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let retention = Duration::from_secs(86_400);
    let rounds = 300;
    let history = Arc::new(History::load(dir.path()).0);
    let appended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appending = {
        let (history, appended) = (history.clone(), appended.clone());
        std::thread::spawn(move || {
            for i in 0..rounds {
                // Every other scan is old enough to be pruned.
                let age = if i % 2 == 0 { 0 } else { 3 };
                let r = report(
                    "lab",
                    &format!("lab-{i:04}"),
                    now - chrono::Duration::days(age),
                );
                save(&history, &r);
            }
            appended.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let index = dir.path().join("envs/lab/history/index.jsonl");
    let pruning = {
        let (history, index) = (history.clone(), index.clone());
        std::thread::spawn(move || {
            let (mut pruned, mut prunes) = (0, 0);
            while !appended.load(std::sync::atomic::Ordering::SeqCst) {
                let taken = history.take_pruned(retention, now);
                if taken.is_empty() {
                    std::thread::yield_now();
                    continue;
                }
                prunes += 1;
                pruned += taken.iter().map(|p| p.ids.len()).sum::<usize>();
                // Deleting the files takes a while: scans go on meanwhile.
                std::thread::sleep(std::time::Duration::from_millis(2));
                history.delete(taken);
                // Every scan the history knows (written and remembered) is in the file:
                // what the next start reads the lifecycle from.
                let known: Vec<String> = history
                    .marks("lab", DateTime::<Utc>::MIN_UTC)
                    .into_iter()
                    .map(|(id, _, _)| id)
                    .collect();
                let lines: Vec<IndexLine> =
                    super::super::lines::read_lines(&index).unwrap_or_default();
                let missing: Vec<&String> = known
                    .iter()
                    .filter(|id| !lines.iter().any(|l| &l.id == *id))
                    .collect();
                assert!(missing.is_empty(), "lost from the index: {missing:?}");
            }
            assert!(
                prunes > 10,
                "the prunes ran while scans appended ({prunes})"
            );
            pruned
        })
    };
    appending.join().unwrap();
    let mut pruned = pruning.join().expect("no scan lost while pruning");
    let last = history.take_pruned(retention, now);
    pruned += last.iter().map(|p| p.ids.len()).sum::<usize>();
    history.delete(last);
    let lines: Vec<IndexLine> = super::super::lines::read_lines(&index).unwrap();
    let ids: Vec<String> = lines.into_iter().map(|l| l.id).collect();
    let expected: Vec<String> = (0..rounds)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("lab-{i:04}"))
        .collect();
    assert_eq!(ids, expected, "every young scan, in order");
    assert_eq!(pruned, rounds / 2, "every old one pruned once");
}
