//! The scans of a window on a line, coloured by status: an SVG drawn on the server that
//! scales to the page's width. The window is cut into at most [`MAX_MARKS`] stretches of
//! time; each stretch with scans is one mark, coloured by its worst status, titled with its
//! counts and linked to exactly its scans. So the page stays small whatever the interval:
//! 130,000 scans in 90 days (one a minute) are 500 marks, not 130,000.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use maud::{Markup, html};

use super::time;
use crate::report::Status;

/// The drawing's width in its own units (the SVG scales it to the page).
const WIDTH: f64 = 1000.0;
/// The most marks a timeline draws.
pub(super) const MAX_MARKS: usize = 500;

/// One stretch of time with scans: `marks[first..=last]`.
struct Bucket {
    slot: usize,
    first: usize,
    last: usize,
    counts: [usize; 3],
}

impl Bucket {
    fn count(&self) -> usize {
        self.last - self.first + 1
    }

    /// Error over drift over conform: a stretch with one failed scan shows it.
    fn worst(&self) -> Status {
        match self.counts {
            [_, _, e] if e > 0 => Status::Error,
            [_, d, _] if d > 0 => Status::Drift,
            _ => Status::Conform,
        }
    }
}

fn index_of(s: Status) -> usize {
    match s {
        Status::Conform => 0,
        Status::Drift => 1,
        Status::Error => 2,
    }
}

/// `marks` (oldest first) grouped into at most [`MAX_MARKS`] stretches of `from..to`.
fn buckets(
    marks: &[(String, DateTime<Utc>, Status)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Bucket> {
    let span = (to - from).num_milliseconds().max(1) as f64;
    let mut out: Vec<Bucket> = Vec::new();
    for (i, (_, at, status)) in marks.iter().enumerate() {
        let offset = (*at - from).num_milliseconds() as f64 / span;
        let slot = ((offset * MAX_MARKS as f64) as usize).min(MAX_MARKS - 1);
        match out.last_mut() {
            Some(b) if b.slot == slot => {
                b.last = i;
                b.counts[index_of(*status)] += 1;
            }
            _ => {
                let mut counts = [0; 3];
                counts[index_of(*status)] = 1;
                out.push(Bucket {
                    slot,
                    first: i,
                    last: i,
                    counts,
                });
            }
        }
    }
    out
}

/// Where a mark leads: the scan's page for one scan, else the `/history` page that lists
/// exactly the stretch's scans (newest first: before the next newer scan, as many as it has).
fn link(env: &str, marks: &[(String, DateTime<Utc>, Status)], b: &Bucket, days: i64) -> String {
    if b.count() == 1 {
        return format!("/history/{env}/{}", marks[b.first].0);
    }
    let mut url = format!(
        "/history?environment={env}&since={days}d&limit={}",
        b.count()
    );
    if let Some((newer, _, _)) = marks.get(b.last + 1) {
        let _ = write!(url, "&before={env}.{newer}");
    }
    url
}

/// The timeline of `marks` (id, end, status; oldest first) between `from` and `to`.
pub(super) fn render(
    env: &str,
    marks: &[(String, DateTime<Utc>, Status)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Markup {
    let counts = |s: Status| marks.iter().filter(|(_, _, m)| *m == s).count();
    let (conform, drift, error) = (
        counts(Status::Conform),
        counts(Status::Drift),
        counts(Status::Error),
    );
    let label = format!(
        "{} scans from {} to {}: {conform} conform, {drift} drift, {error} error",
        marks.len(),
        time(Some(from)),
        time(Some(to)),
    );
    let days = (to - from).num_days().max(1);
    let step = WIDTH / MAX_MARKS as f64;
    html! {
        svg.timeline viewBox={ "0 0 " (WIDTH) " 40" } preserveAspectRatio="none" role="img" aria-label=(label) {
            @for b in buckets(marks, from, to) {
                @let worst = b.worst();
                a href=(link(env, marks, &b, days)) {
                    rect class={ "mark " (worst) } x=(format!("{:.1}", b.slot as f64 * step)) y="4"
                        width=(format!("{step:.1}")) height="32" {
                        title { (title(marks, &b, worst)) }
                    }
                }
            }
        }
        p.legend {
            (time(Some(from))) " to " (time(Some(to))) ": "
            span.conform { "■ conform" } " " (conform) " · "
            span.drift { "■ drift" } " " (drift) " · "
            span.error { "■ error" } " " (error)
        }
    }
}

/// What a mark says when pointed at.
fn title(marks: &[(String, DateTime<Utc>, Status)], b: &Bucket, worst: Status) -> String {
    if b.count() == 1 {
        return format!("{} {worst}", time(Some(marks[b.first].1)));
    }
    format!(
        "{} scans from {} to {}: {} conform, {} drift, {} error",
        b.count(),
        time(Some(marks[b.first].1)),
        time(Some(marks[b.last].1)),
        b.counts[0],
        b.counts[1],
        b.counts[2]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minutes)
    }

    #[test]
    fn a_scan_a_minute_for_90_days_is_500_marks_each_linked_to_exactly_its_scans() {
        let minutes = 90 * 24 * 60;
        let marks: Vec<(String, DateTime<Utc>, Status)> = (0..minutes)
            .map(|m| {
                let status = if m == 1000 {
                    Status::Error
                } else {
                    Status::Conform
                };
                (format!("s{m}"), at(m), status)
            })
            .collect();
        let b = buckets(&marks, at(0), at(minutes));
        assert_eq!(b.len(), MAX_MARKS);
        assert_eq!(b.iter().map(Bucket::count).sum::<usize>(), marks.len());
        // The one failed scan colours its stretch.
        let failed = b
            .iter()
            .find(|b| (b.first..=b.last).contains(&1000))
            .unwrap();
        assert_eq!(failed.worst(), Status::Error);
        assert_eq!(b.iter().filter(|b| b.worst() == Status::Error).count(), 1);
        // The first stretch: its scans, newest first, before the first scan of the next.
        let first = &b[0];
        assert_eq!(
            link("lab", &marks, first, 90),
            format!(
                "/history?environment=lab&since=90d&limit={}&before=lab.s{}",
                first.count(),
                first.last + 1
            )
        );
        let h = render("lab", &marks, at(0), at(minutes)).into_string();
        assert_eq!(h.matches("<rect").count(), MAX_MARKS);
        assert!(h.len() < 200_000, "{} bytes", h.len());
    }

    #[test]
    fn a_lone_scan_links_to_its_own_page() {
        let marks = vec![("lab-1".to_owned(), at(5), Status::Drift)];
        let b = buckets(&marks, at(0), at(60));
        assert_eq!(b.len(), 1);
        assert_eq!(link("lab", &marks, &b[0], 90), "/history/lab/lab-1");
    }
}
