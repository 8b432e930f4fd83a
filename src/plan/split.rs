//! Splits a plan document, read as a stream, into the top-level members the exporter needs
//! and the elements of its change lists, without ever holding the whole document: a plan of
//! tens of MB is mostly `prior_state`, `planned_values` and `configuration`, which are
//! skipped byte by byte. Each piece handed out is complete JSON text, parsed by serde_json
//! (which validates it); skipped parts are only checked for balanced brackets and strings.
//! Nesting is tracked with an explicit stack, so no input can exhaust the call stack.

use std::io::Read;

/// What to do with a top-level member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Skip,
    /// The whole value, as one piece.
    Whole,
    /// Each element of an array value, one piece at a time.
    Elements,
}

/// A piece of the document.
#[derive(Debug)]
pub enum Piece<'a> {
    Member {
        key: &'a str,
        value: &'a [u8],
    },
    /// An element of an array member; `Present` tells that the member exists even when empty.
    Element {
        key: &'a str,
        index: usize,
        value: &'a [u8],
    },
    Present {
        key: &'a str,
    },
}

/// Why the document could not be split.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("at byte {offset}: {message}")]
    Syntax { offset: u64, message: String },
    #[error("reading the plan: {0}")]
    Io(#[from] std::io::Error),
    /// The handler refused a piece.
    #[error("{0}")]
    Piece(String),
}

const CHUNK: usize = 1 << 20;

/// Bytes that end a number or literal.
fn is_delimiter(b: u8) -> bool {
    matches!(b, b',' | b'}' | b']' | b':' | b' ' | b'\n' | b'\r' | b'\t')
}

/// The index of the quote closing a string that starts at `from`, if it is within `buf`.
fn string_end(buf: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let i = from + memchr::memchr2(b'"', b'\\', buf.get(from..)?)?;
        if buf[i] == b'"' {
            return Some(i);
        }
        // A backslash escapes the next byte, which must be in this chunk too.
        from = i + 2;
        if from > buf.len() {
            return None;
        }
    }
}

struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Bytes consumed before `buf[0]`.
    offset: u64,
    /// While `capturing`, bytes of `buf` from `mark` on belong to the value being copied
    /// out into `captured` (reused from piece to piece).
    capturing: bool,
    captured: Vec<u8>,
    mark: usize,
}

impl<R: Read> Reader<R> {
    fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: vec![0; CHUNK],
            pos: 0,
            len: 0,
            offset: 0,
            capturing: false,
            captured: Vec::new(),
            mark: 0,
        }
    }

    fn error(&self, message: impl Into<String>) -> SplitError {
        SplitError::Syntax {
            offset: self.offset + self.pos as u64,
            message: message.into(),
        }
    }

    fn eof(&self, what: &str) -> SplitError {
        self.error(format!("unexpected end of input (EOF) in {what}"))
    }

    /// Refills the buffer; false at the end of input.
    fn fill(&mut self) -> Result<bool, SplitError> {
        if self.capturing {
            self.captured
                .extend_from_slice(&self.buf[self.mark..self.len]);
            self.mark = 0;
        }
        self.offset += self.len as u64;
        self.pos = 0;
        self.len = loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(self.len > 0)
    }

    fn peek(&mut self) -> Result<Option<u8>, SplitError> {
        if self.pos == self.len && !self.fill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.pos]))
    }

    /// The next byte that is not white space.
    fn peek_token(&mut self, what: &str) -> Result<u8, SplitError> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\n' | b'\r' | b'\t') => self.pos += 1,
                Some(b) => return Ok(b),
                None => return Err(self.eof(what)),
            }
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), SplitError> {
        let got = self.peek_token(what)?;
        if got != byte {
            return Err(self.error(format!(
                "expected '{}' in {what}, found '{}'",
                byte as char,
                got.escape_ascii()
            )));
        }
        self.pos += 1;
        Ok(())
    }

    fn start_capture(&mut self) {
        self.captured.clear();
        self.capturing = true;
        self.mark = self.pos;
    }

    /// Skips a string whose opening quote is at `pos`.
    fn skip_string(&mut self) -> Result<(), SplitError> {
        self.pos += 1;
        loop {
            if self.pos == self.len && !self.fill()? {
                return Err(self.eof("a string"));
            }
            match memchr::memchr2(b'"', b'\\', &self.buf[self.pos..self.len]) {
                Some(i) if self.buf[self.pos + i] == b'"' => {
                    self.pos += i + 1;
                    return Ok(());
                }
                Some(i) => {
                    // A backslash: the byte after it is escaped, whatever it is.
                    self.pos += i + 1;
                    if self.peek()?.is_none() {
                        return Err(self.eof("a string"));
                    }
                    self.pos += 1;
                }
                None => self.pos = self.len,
            }
        }
    }

    /// Skips (or, while capturing, copies) one value of any depth. The common case runs in
    /// a tight loop over the current chunk; strings and scalars cut by a chunk boundary take
    /// the slow path through [`Self::skip_string`] and [`Self::skip_scalar`].
    fn skip_value(&mut self, what: &str) -> Result<(), SplitError> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            if self.pos == self.len && !self.fill()? {
                return Err(self.eof(what));
            }
            let buf = &self.buf[..self.len];
            let mut i = self.pos;
            // What to do once the chunk borrow ends.
            let mut slow: Option<u8> = None;
            while i < buf.len() {
                let b = buf[i];
                match b {
                    b' ' | b'\n' | b'\r' | b'\t' => {
                        i += 1;
                        continue;
                    }
                    b'{' | b'[' => {
                        stack.push(if b == b'{' { b'}' } else { b']' });
                        i += 1;
                        continue;
                    }
                    b'}' | b']' => {
                        if stack.pop() != Some(b) {
                            self.pos = i;
                            return Err(self.error(format!("unbalanced '{}' in {what}", b as char)));
                        }
                        i += 1;
                    }
                    b',' | b':' if !stack.is_empty() => {
                        i += 1;
                        continue;
                    }
                    b'"' => match string_end(buf, i + 1) {
                        Some(end) => i = end + 1,
                        None => {
                            slow = Some(b'"');
                            break;
                        }
                    },
                    b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                        let start = i;
                        while i < buf.len() && !is_delimiter(buf[i]) {
                            i += 1;
                        }
                        if i == buf.len() {
                            i = start;
                            slow = Some(b'0');
                            break;
                        }
                    }
                    other => {
                        self.pos = i;
                        return Err(self.error(format!(
                            "expected a JSON value in {what}, found '{}'",
                            other.escape_ascii()
                        )));
                    }
                }
                if stack.is_empty() {
                    self.pos = i;
                    return Ok(());
                }
            }
            self.pos = i;
            match slow {
                Some(b'"') => self.skip_string()?,
                Some(_) => self.skip_scalar()?,
                None => continue,
            }
            if stack.is_empty() {
                return Ok(());
            }
        }
    }

    fn skip_scalar(&mut self) -> Result<(), SplitError> {
        while let Some(b) = self.peek()? {
            if is_delimiter(b) {
                break;
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// Copies one value into `captured`.
    fn capture_value(&mut self, what: &str) -> Result<&[u8], SplitError> {
        self.peek_token(what)?;
        self.start_capture();
        let result = self.skip_value(what);
        self.capturing = false;
        result?;
        if self.captured.is_empty() {
            // The value lies within one chunk (the usual case): no copy.
            return Ok(&self.buf[self.mark..self.pos]);
        }
        self.captured
            .extend_from_slice(&self.buf[self.mark..self.pos]);
        Ok(self.captured.as_slice())
    }
}

/// Reads a plan document from `input`, calling `on` for every piece `want` asks for.
pub fn split<R: Read>(
    input: R,
    want: impl Fn(&str) -> Want,
    mut on: impl FnMut(Piece<'_>) -> Result<(), String>,
) -> Result<(), SplitError> {
    let mut r = Reader::new(input);
    if r.peek()?.is_none() {
        return Err(r.eof("the document (the input is empty)"));
    }
    r.expect(b'{', "the document (a plan is a JSON object)")?;
    let mut first = true;
    loop {
        let b = r.peek_token("the document")?;
        if b == b'}' && first {
            r.pos += 1;
            break;
        }
        if !first {
            match b {
                b',' => r.pos += 1,
                b'}' => {
                    r.pos += 1;
                    break;
                }
                other => {
                    return Err(r.error(format!(
                        "expected ',' or '}}' between members, found '{}'",
                        other.escape_ascii()
                    )));
                }
            }
        }
        first = false;
        if r.peek_token("a member name")? != b'"' {
            return Err(r.error("expected a member name"));
        }
        let key: Result<String, _> = serde_json::from_slice(r.capture_value("a member name")?);
        let key = key.map_err(|e| r.error(format!("bad member name: {e}")))?;
        r.expect(b':', "the document")?;
        let what = format!("\"{key}\"");
        match want(&key) {
            Want::Skip => r.skip_value(&what)?,
            Want::Whole => {
                let value = r.capture_value(&what)?;
                on(Piece::Member { key: &key, value }).map_err(SplitError::Piece)?;
            }
            Want::Elements => {
                if r.peek_token(&what)? == b'n' {
                    // `null` instead of a list.
                    r.skip_value(&what)?;
                    continue;
                }
                on(Piece::Present { key: &key }).map_err(SplitError::Piece)?;
                elements(&mut r, &key, &what, &mut on)?;
            }
        }
    }
    end_of_input(&mut r)
}

/// The elements of the list under `key`, each handed to `on`.
fn elements<R: Read>(
    r: &mut Reader<R>,
    key: &str,
    what: &str,
    on: &mut impl FnMut(Piece<'_>) -> Result<(), String>,
) -> Result<(), SplitError> {
    r.expect(b'[', &format!("{what} (a list)"))?;
    let mut index = 0;
    loop {
        let b = r.peek_token(what)?;
        if b == b']' {
            r.pos += 1;
            return Ok(());
        }
        if index > 0 {
            r.expect(b',', what)?;
        }
        let element = format!("{key}[{index}]");
        let value = r.capture_value(&element)?;
        on(Piece::Element { key, index, value }).map_err(SplitError::Piece)?;
        index += 1;
    }
}

/// Only white space may follow the document.
fn end_of_input<R: Read>(r: &mut Reader<R>) -> Result<(), SplitError> {
    loop {
        match r.peek()? {
            None => return Ok(()),
            Some(b' ' | b'\n' | b'\r' | b'\t') => r.pos += 1,
            Some(other) => {
                return Err(r.error(format!(
                    "unexpected '{}' after the document",
                    other.escape_ascii()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Result<Vec<String>, SplitError> {
        let mut out = Vec::new();
        split(
            // Tiny reads exercise every refill path.
            std::io::BufReader::with_capacity(3, text.as_bytes()),
            |k| match k {
                "list" => Want::Elements,
                "keep" => Want::Whole,
                _ => Want::Skip,
            },
            |p| {
                out.push(match p {
                    Piece::Member { key, value } => {
                        format!("{key}={}", String::from_utf8_lossy(value))
                    }
                    Piece::Element { key, index, value } => {
                        format!("{key}[{index}]={}", String::from_utf8_lossy(value))
                    }
                    Piece::Present { key } => format!("{key}!"),
                });
                Ok(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn members_and_elements_come_out_whole() {
        let got = pieces(r#" {"skip": {"a": [1, "x\"}]"]}, "keep": {"b": "\\"}, "list": [ {"c": 1}, 2 , "s"], "n": null} "#).unwrap();
        assert_eq!(
            got,
            [
                r#"keep={"b": "\\"}"#,
                "list!",
                r#"list[0]={"c": 1}"#,
                "list[1]=2",
                r#"list[2]="s""#
            ]
        );
        assert_eq!(
            pieces(r#"{"list": null, "keep": true}"#).unwrap(),
            ["keep=true"]
        );
        assert!(pieces("{}").unwrap().is_empty());
    }

    #[test]
    fn broken_documents_say_where() {
        for bad in [
            "",
            "[1]",
            "{\"a\": [1, 2}",
            "{\"a\": \"unterminated",
            "{\"a\" 1}",
            "{\"a\": 1} x",
            "{\"a\": 1,",
            "{\"list\": [1 2]}",
        ] {
            let e = pieces(bad).unwrap_err().to_string();
            assert!(e.contains("at byte"), "{bad:?}: {e}");
        }
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(pieces(&deep).unwrap().is_empty());
    }
}
