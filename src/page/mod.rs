//! The pages people open: the landing page `/` ([`landing`]: the count per status, then a
//! page of environments, failing and drifting first, each with its status, last and next
//! scan, the reason of an error, links, and the changed resources of the first few), each
//! environment's page
//! ([`environment`], where alert links lead) and a stored scan's page ([`scan`]). Drawn
//! on the server with maud, which escapes every spliced value: untrusted text goes in as
//! [`Text`] (hidden characters shown too), and the one change table ([`parts::changes`])
//! serves all three pages. No JavaScript, no external asset, readable on a phone.

mod environment;
mod landing;
mod parts;
mod scan;
mod timeline;

pub use environment::{TIMELINE_DAYS, render as environment};
pub use landing::{Listing, render};
pub use scan::render as scan;

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, Render, html};

/// Untrusted text as a page shows it: escaped by maud like every splice, and its hidden
/// characters (bidi, controls) shown as `\u202e` ([`crate::text::visible_lines`]), so that
/// they cannot reorder what surrounds them.
pub struct Text<'a>(pub &'a str);

impl Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        crate::text::visible_lines(self.0)
            .as_ref()
            .render_to(buffer);
    }
}

/// A whole page: head (title, phone viewport, the one style sheet) and `body`.
fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (Text(title)) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// One style sheet for every page. Long addresses and values wrap anywhere; under 600 px
/// a table's rows become blocks, so that nothing scrolls sideways on a phone.
const STYLE: &str = "body{font-family:sans-serif;margin:1em auto;max-width:72em;padding:0 1em}\
h1,h2,p,li{overflow-wrap:anywhere}\
table{border-collapse:collapse;margin-bottom:1em;width:100%}\
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
code{font-size:90%;overflow-wrap:anywhere;white-space:pre-wrap}\
.conform{color:#1a7f37}.drift{color:#9a6700}.error{color:#cf222e}\
.badge{border-radius:4px;padding:0 .4em;color:#fff}.badge.conform{background:#1a7f37}\
.badge.drift{background:#9a6700}.badge.error{background:#cf222e}\
svg.timeline{width:100%;height:3em;background:#f6f8fa;display:block}\
rect.mark.conform{fill:#1a7f37}rect.mark.drift{fill:#d4a72c}rect.mark.error{fill:#cf222e}\
ul.attrs{margin:0;padding-left:1em}ol.scans{padding-left:1.5em}\
table.changes td:nth-child(2),table.changes th:nth-child(2){overflow-wrap:normal;white-space:nowrap}\
@media (max-width:600px){table.rows,table.rows tbody,table.rows tr,table.rows td{display:block;width:auto}\
table.rows thead{display:none}table.rows tr{margin-bottom:.8em;border:1px solid #ccc}\
table.rows td{border:none}table.rows td::before{content:attr(data-label) \": \";font-weight:bold}}";

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_owned())
}
