//! Globs of the ignore rules and the Proxmox name ignores, compiled once at load:
//! `*` matches any run of characters (dots and brackets included), `?` any one character.

use std::fmt;

/// One piece of a compiled glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Any,
    One,
    Char(char),
}

/// A compiled glob; shown and compared as written.
#[derive(Debug, Clone)]
pub struct Glob {
    text: String,
    tokens: Box<[Token]>,
}

impl Glob {
    pub fn new(text: &str) -> Glob {
        let tokens = text
            .chars()
            .map(|c| match c {
                '*' => Token::Any,
                '?' => Token::One,
                c => Token::Char(c),
            })
            .collect();
        Glob {
            text: text.to_owned(),
            tokens,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the whole of `text` matches; linear backtracking on the last `*`, and no
    /// allocation (ignore rules run on every change of every scan).
    pub fn matches(&self, text: &str) -> bool {
        let p = &self.tokens;
        let (mut pi, mut ti) = (0, 0);
        // The last `*` seen and the byte offset in `text` it currently stands for.
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = text[ti..].chars().next() {
            match p.get(pi) {
                Some(Token::One) => {
                    pi += 1;
                    ti += c.len_utf8();
                }
                Some(Token::Char(want)) if *want == c => {
                    pi += 1;
                    ti += c.len_utf8();
                }
                Some(Token::Any) => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        let skipped = text[st..].chars().next().map_or(1, char::len_utf8);
                        pi = sp + 1;
                        ti = st + skipped;
                        star = Some((sp, ti));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|t| *t == Token::Any)
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.text == other.text
    }
}

impl Eq for Glob {}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).matches(text)
    }

    #[test]
    fn globs_match_addresses_and_paths() {
        assert!(m(
            "module.*.proxmox_vm_qemu.web[*]",
            "module.lab.proxmox_vm_qemu.web[2]"
        ));
        assert!(m("proxmox_vm_qemu.*", "proxmox_vm_qemu.web[\"a.b\"]"));
        assert!(m("disk[?].size", "disk[0].size"));
        assert!(!m("proxmox_vm_qemu.*", "proxmox_lxc.ct"));
        assert!(m("*", ""));
        assert!(!m("tags", "tags.env"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
    }

    #[test]
    fn a_question_mark_is_one_character_not_one_byte() {
        assert!(m("vm-?", "vm-é"));
        assert!(m("*é", "ééé"));
        assert!(!m("vm-??", "vm-é"));
    }
}
