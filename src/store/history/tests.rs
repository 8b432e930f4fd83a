//! The history's index against files written by hand and by the store.
use super::*;
use crate::report::{PlanOutcome, Report};
use crate::store::EnvStore;

fn report(env: &str, id: &str, finished: DateTime<Utc>) -> Report {
    let mut r = Report::from_outcome(PlanOutcome {
        changes: vec![],
        ignored: vec![],
        error: None,
        tool_version: None,
    });
    r.id = Some(id.to_owned());
    r.environment = Some(env.to_owned());
    r.finished_at = Some(finished);
    r
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
        let path = history.join(format!("{}.json", r.id.as_deref().unwrap()));
        std::fs::write(path, serde_json::to_vec(r).unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(history.join("lab-broken.json"), b"{\"id\": ").unwrap();
    let (h, restored) = History::load(dir.path());
    assert_eq!(
        restored["lab"].latest.as_ref().unwrap().id.as_deref(),
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

/// Regression: a report stamped in the future (a wrong clock once) stays the latest at
/// every restart; the latest is the report written last.
#[test]
fn a_report_from_a_wrong_clock_is_not_the_latest_once_another_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = EnvStore::open(dir.path(), "lab").unwrap();
    let now = Utc::now();
    let future = report(
        "lab",
        "lab-20990101T000000Z",
        "2099-01-01T00:00:00Z".parse().unwrap(),
    );
    store.save(&future).unwrap();
    let mut next = report("lab", "lab-now", now);
    next.status = Status::Drift;
    store.save(&next).unwrap();
    for _ in 0..2 {
        let (_, restored) = History::load(dir.path());
        assert_eq!(
            restored["lab"].latest.as_ref().unwrap().id.as_deref(),
            Some("lab-now")
        );
    }
}

#[test]
fn pages_follow_each_other_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let store = EnvStore::open(dir.path(), "lab").unwrap();
    let t0 = Utc::now() - chrono::Duration::days(1);
    for i in 0..25 {
        let r = report(
            "lab",
            &format!("lab-{i:03}"),
            t0 + chrono::Duration::minutes(i),
        );
        store.save(&r).unwrap();
    }
    let (h, _) = History::load(dir.path());
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
    let dir = tempfile::tempdir().unwrap();
    let store = EnvStore::open(dir.path(), "lab").unwrap();
    let t0 = Utc::now() - chrono::Duration::days(1);
    for i in 0..5 {
        let r = report(
            "lab",
            &format!("lab-{i:03}"),
            t0 + chrono::Duration::minutes(i),
        );
        store.save(&r).unwrap();
    }
    let (h, _) = History::load(dir.path());
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
    use crate::report::{PlanOutcome, Report, Status};

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
            });
            r.status = status;
            r.id = Some(id.to_owned());
            r.environment = Some("lab".to_owned());
            r.finished_at = Some(t);
            std::fs::write(
                history.join(format!("{id}.json")),
                serde_json::to_vec(&r).unwrap(),
            )
            .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (h, restored) = History::load(dir.path());
        assert_eq!(
            restored["lab"].latest.as_ref().unwrap().id.as_deref(),
            Some("lab-a")
        );
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
