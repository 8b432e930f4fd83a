//! Untrusted text (plan values and addresses, Proxmox names and log lines, terraform's
//! errors) on its way to a reader: the one rule for what is hidden and how long it may be.
//!
//! *Hidden* characters are those that a reader cannot see but that change what they see:
//! C0 controls, DEL, C1 controls (U+0080-U+009F: U+009B starts a terminal escape sequence)
//! and the bidirectional formatting characters (U+061C, U+200E/U+200F, U+202A-U+202E,
//! U+2066-U+2069), which reorder the text around them (`admin\u{202e}moc.live` reads as
//! `adminlive.com`). Every surface shows them as a visible escape, `\u202e`, through
//! [`visible`]: the pages (HTML and SVG titles), the logs, the terminal, metric labels (and
//! so the Telegram messages made from them). JSON answers keep the text as it is: they are
//! data, and their readers escape for their own surface.
//!
//! Lengths are counted as Telegram counts them, in UTF-16 code units (a character beyond
//! U+FFFF, an emoji, is two), by [`units`] and [`cut`]; a cut never splits a character.

use std::borrow::Cow;
use std::fmt::Write;

/// True for a character a reader cannot see that changes what they see (see the module).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every hidden character written as `\uXXXX` (newline, carriage return and tab
/// as `\n`, `\r`, `\t`). Borrowed when there is none.
pub fn visible(text: &str) -> Cow<'_, str> {
    escape_hidden(text, |_| false)
}

/// [`visible`], but keeping newlines and tabs (multi-line text shown as lines: an error's
/// detail on a page).
pub fn visible_lines(text: &str) -> Cow<'_, str> {
    escape_hidden(text, |c| c == '\n' || c == '\t')
}

fn escape_hidden(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_hidden(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if keep(c) || !is_hidden(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// The length of `text` as Telegram counts it: UTF-16 code units.
pub fn units(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// `text` when it is at most `max` UTF-16 units long, else its longest prefix that leaves
/// room for `marker` (`...` or `…`), then `marker`: at most `max` units in all, never a
/// character split.
pub fn cut<'a>(text: &'a str, max: usize, marker: &str) -> Cow<'a, str> {
    if units(text) <= max {
        return Cow::Borrowed(text);
    }
    let room = max.saturating_sub(units(marker));
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if used + c.len_utf16() > room {
            break;
        }
        used += c.len_utf16();
        end = i + c.len_utf8();
    }
    Cow::Owned(format!("{}{marker}", &text[..end]))
}

/// A value for a metric label: hidden characters made visible, then cut at `max` UTF-16
/// units (ending in `...`).
pub fn label(text: &str, max: usize) -> String {
    cut(&visible(text), max, "...").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_c0_c1_and_del_are_shown_escaped_and_the_rest_is_left_alone() {
        assert_eq!(
            visible("admin\u{202e}@evil.com\u{202c}"),
            "admin\\u202e@evil.com\\u202c"
        );
        assert_eq!(
            visible("a\u{9b}31m\u{7f}\u{2066}b\u{1b}[2J"),
            "a\\u009b31m\\u007f\\u2066b\\u001b[2J"
        );
        assert_eq!(visible("x\ny\tz"), "x\\ny\\tz");
        assert_eq!(visible_lines("x\ny\tz\u{200f}"), "x\ny\tz\\u200f");
        assert!(matches!(
            visible("plain, ünïcode, 🔥 and <&>"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn an_emoji_is_two_units_and_a_cut_never_splits_it() {
        let fire = "\u{1F525}";
        assert_eq!(units(fire), 2);
        assert_eq!(units(&fire.repeat(60)), 120);
        let sixty = fire.repeat(60);
        let cut10 = cut(&sixty, 10, "...");
        assert_eq!(cut10, format!("{}...", fire.repeat(3)));
        assert!(units(&cut10) <= 10);
        // One unit of room left before the marker: the emoji does not fit, and is not split.
        assert_eq!(cut(&format!("ab{fire}cdef"), 6, "..."), "ab...");
        assert_eq!(cut("short", 10, "..."), "short");
        assert_eq!(cut("exactly10!", 10, "…"), "exactly10!");
        assert_eq!(cut("eleven char", 10, "…"), "eleven ch…");
    }

    #[test]
    fn a_label_is_visible_and_bounded_in_units() {
        let hostile = format!("{}\u{202e}", "\u{1F525}".repeat(100));
        let l = label(&hostile, 40);
        assert!(units(&l) <= 40, "{l}");
        assert!(l.ends_with("..."));
        assert_eq!(label("root@pam", 40), "root@pam");
        assert_eq!(label("a\u{202e}b", 40), "a\\u202eb");
    }
}
