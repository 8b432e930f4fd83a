//! Every scan of a window as one mark on a line, coloured by status: an SVG drawn on the
//! server that scales to the page's width.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::{escape, time};
use crate::report::Status;

/// The drawing's width in its own units (the SVG scales it to the page).
const WIDTH: f64 = 1000.0;

/// The timeline of `marks` (id, end, status) between `from` and `to`.
pub(super) fn render(
    h: &mut String,
    env: &str,
    marks: &[(String, DateTime<Utc>, Status)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) {
    let span = (to - from).num_seconds().max(1) as f64;
    let counts = |s: Status| marks.iter().filter(|(_, _, m)| *m == s).count();
    let _ = writeln!(
        h,
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} 40\" preserveAspectRatio=\"none\" role=\"img\" \
aria-label=\"{} scans from {} to {}: {} conform, {} drift, {} error\">",
        marks.len(),
        time(Some(from)),
        time(Some(to)),
        counts(Status::Conform),
        counts(Status::Drift),
        counts(Status::Error)
    );
    for (id, at, status) in marks {
        let x = ((*at - from).num_seconds() as f64 / span * WIDTH).clamp(0.0, WIDTH - 2.0);
        let _ = writeln!(
            h,
            "<a href=\"/history/{}/{}\"><rect class=\"mark {status}\" x=\"{x:.1}\" y=\"4\" width=\"2\" height=\"32\"><title>{} {status}</title></rect></a>",
            escape(env),
            escape(id),
            time(Some(*at))
        );
    }
    h.push_str("</svg>\n");
    let _ = writeln!(
        h,
        "<p class=\"legend\">{} to {}: <span class=\"conform\">■ conform</span> {} · <span class=\"drift\">■ drift</span> {} · <span class=\"error\">■ error</span> {}</p>",
        time(Some(from)),
        time(Some(to)),
        counts(Status::Conform),
        counts(Status::Drift),
        counts(Status::Error)
    );
}
