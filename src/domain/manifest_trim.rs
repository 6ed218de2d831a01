//! Validating and trimming a manifest in one pass over its bytes, in constant memory.
//!
//! [`Trimmer`] is a push scanner: it is fed the manifest in chunks of any size, checks
//! them against the JSON grammar (RFC 8259, UTF-8, nesting at most [`MAX_DEPTH`] deep, as
//! serde_json accepts), and copies the bytes of the top-level `metadata` and `nodes` members
//! through untouched. It holds a few bytes of state, never the document: a 1 GB manifest
//! trims in the same memory as a 1 KB one.

use std::io::{Read, Write};

use wide::u8x16;

use super::manifest::ManifestError;

/// Nesting at this depth is refused, the top-level object counted (serde_json's limit).
pub const MAX_DEPTH: usize = 128;
/// The longest member name remembered at the top level; longer ones are neither member kept.
const KEY_CAP: usize = 64;
const KEPT: [&[u8]; 2] = [b"metadata", b"nodes"];

/// Where the grammar stands between tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The document's first value.
    Document,
    /// A value (after `:`, or after `,` in an array).
    Value,
    /// A value or `]` right after `[`.
    FirstValue,
    /// A member name or `}` right after `{`.
    FirstKey,
    /// A member name after `,`.
    Key,
    Colon,
    /// `,` or the container's end after a value.
    Next,
    /// Only whitespace, after the document's value.
    End,
}

/// Inside a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    None,
    /// In a string: a member `name` or a value; `escape` after a `\`, `hex` counts the digits
    /// of a `\u` left to read.
    String {
        name: bool,
        escape: bool,
        hex: u8,
    },
    Number(Number),
    /// In `true`, `false` or `null`: the literal and how many of its bytes were read.
    Literal {
        word: &'static [u8],
        read: u8,
    },
}

/// The number grammar's states: what the last byte completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Minus,
    Zero,
    Integer,
    Dot,
    Fraction,
    Exponent,
    ExponentSign,
    ExponentDigits,
}

impl Number {
    /// Whether a number may end here.
    fn complete(self) -> bool {
        matches!(self, Number::Zero | Number::Integer | Number::Fraction | Number::ExponentDigits)
    }

    fn next(self, byte: u8) -> Option<Number> {
        use Number::*;
        Some(match (self, byte) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Integer,
            (Integer, b'0'..=b'9') => Integer,
            (Zero | Integer, b'.') => Dot,
            (Dot | Fraction, b'0'..=b'9') => Fraction,
            (Zero | Integer | Fraction, b'e' | b'E') => Exponent,
            (Exponent, b'+' | b'-') => ExponentSign,
            (Exponent | ExponentSign | ExponentDigits, b'0'..=b'9') => ExponentDigits,
            _ => return None,
        })
    }
}

/// Validates a manifest fed in chunks and writes its trimmed form: `{` + the top-level
/// `metadata` and `nodes` members in the manifest's order, their values byte for byte + `}`;
/// a member the manifest lacks is written as `null` at the end.
#[derive(Debug)]
pub struct Trimmer {
    expect: Expect,
    token: Token,
    /// Open containers, innermost last: `true` for an object.
    stack: Vec<bool>,
    /// The top-level member name being read (up to [`KEY_CAP`] bytes, as sent).
    key: Vec<u8>,
    key_overflow: bool,
    /// The top-level member whose value is being copied, and whether it is being copied.
    keeping: Option<usize>,
    copying: bool,
    seen: [bool; 2],
    /// A UTF-8 sequence cut by the chunk's end, and how many bytes it needs in all.
    utf8: ([u8; 4], usize, usize),
    offset: u64,
    written: u64,
    members: usize,
    not_object: bool,
}

impl Default for Trimmer {
    fn default() -> Self {
        Self::new()
    }
}

/// The bytes that end a run of plain string content: `"`, `\\` and control bytes.
const STRING_STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        stop[byte] = true;
        byte += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

/// How many bytes of `bytes` are plain string content: sixteen at a time while none of them
/// may end the run, then byte by byte.
#[inline]
fn string_run(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 16) {
        let stops = string_stops(block.try_into().expect("sixteen bytes"));
        if stops != 0 {
            return at + stops.trailing_zeros() as usize;
        }
        at += 16;
    }
    at + bytes[at..].iter().position(|&b| STRING_STOP[usize::from(b)]).unwrap_or(bytes.len() - at)
}

/// A bit for each byte of `block` that ends a run of string content (`"`, `\\`, below 0x20),
/// the first byte in the lowest bit: one SIMD comparison per kind (SSE2 on x86_64, NEON on
/// aarch64, plain code elsewhere).
#[inline]
fn string_stops(block: [u8; 16]) -> u32 {
    let bytes = u8x16::new(block);
    let quote = bytes.simd_eq(u8x16::splat(b'"'));
    let backslash = bytes.simd_eq(u8x16::splat(b'\\'));
    // min(byte, 0x1f) == byte exactly for the bytes below 0x20.
    let control = bytes.min(u8x16::splat(0x1f)).simd_eq(bytes);
    (quote | backslash | control).to_bitmask()
}

/// How many bytes at the start of `bytes` are JSON whitespace: sixteen at a time, then byte
/// by byte (pretty-printed manifests indent every line).
#[inline]
fn whitespace_run(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 16) {
        let other = !whitespace(block.try_into().expect("sixteen bytes")) & 0xffff;
        if other != 0 {
            return at + other.trailing_zeros() as usize;
        }
        at += 16;
    }
    at + bytes[at..].iter().position(|&b| !is_whitespace(b)).unwrap_or(bytes.len() - at)
}

/// JSON's four whitespace bytes.
#[inline]
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// A bit for each whitespace byte of `block`, the first byte in the lowest bit.
#[inline]
fn whitespace(block: [u8; 16]) -> u32 {
    let bytes = u8x16::new(block);
    let is = |byte: u8| bytes.simd_eq(u8x16::splat(byte));
    (is(b' ') | is(b'\n') | is(b'\t') | is(b'\r')).to_bitmask()
}

fn invalid(what: &str, offset: u64) -> ManifestError {
    ManifestError::NotJson(format!("{what} at byte {offset}"))
}

impl Trimmer {
    pub fn new() -> Self {
        Trimmer {
            expect: Expect::Document,
            token: Token::None,
            stack: Vec::with_capacity(16),
            key: Vec::with_capacity(KEY_CAP),
            key_overflow: false,
            keeping: None,
            copying: false,
            seen: [false; 2],
            utf8: ([0; 4], 0, 0),
            offset: 0,
            written: 0,
            members: 0,
            not_object: false,
        }
    }

    fn write(&mut self, out: &mut impl Write, bytes: &[u8]) -> Result<(), ManifestError> {
        out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Checks `chunk` and writes what of the trimmed form it completes.
    pub fn feed(&mut self, chunk: &[u8], out: &mut impl Write) -> Result<(), ManifestError> {
        self.check_utf8(chunk)?;
        // Where in `chunk` the member being kept started (or 0 when it started before).
        let mut copy_from = 0;
        let mut i = 0;
        while i < chunk.len() {
            let byte = chunk[i];
            let at = self.offset + i as u64;
            match self.token {
                Token::String { name, escape: false, hex: 0 } => {
                    // Skip to the next quote or backslash; nothing between may be a control byte.
                    let remember = name && self.stack.len() == 1;
                    let rest = &chunk[i..];
                    let stop = string_run(rest);
                    if rest.get(stop).is_some_and(|&b| b < 0x20) {
                        return Err(invalid("control character in a string", at + stop as u64));
                    }
                    if remember {
                        self.remember_key(&rest[..stop]);
                    }
                    i += stop;
                    match chunk.get(i) {
                        None => break,
                        Some(b'\\') => {
                            // A two-byte escape whole in this chunk is read at once; `\u` and an
                            // escape the chunk cuts go through the escape states.
                            if let Some(&next) = chunk.get(i + 1)
                                && matches!(next, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
                            {
                                if remember {
                                    self.remember_key(&chunk[i..i + 2]);
                                }
                                i += 2;
                                continue;
                            }
                            if remember {
                                self.remember_key(b"\\");
                            }
                            self.token = Token::String { name, escape: true, hex: 0 };
                        }
                        Some(_) if name && self.stack.len() > 1 && chunk.get(i + 1) == Some(&b':') => {
                            // A nested member name and its `:` (and a space after it) at once;
                            // at the top level the `:` decides which member is kept.
                            self.token = Token::None;
                            self.expect = Expect::Value;
                            i += if chunk.get(i + 2) == Some(&b' ') { 2 } else { 1 };
                        }
                        Some(_) => {
                            self.token = Token::None;
                            self.expect = if name { Expect::Colon } else { self.after_value() };
                            if self.ends_kept_value() {
                                self.finish_copy(out, &chunk[copy_from..=i])?;
                            }
                            i += self.nested_comma(&chunk[i + 1..]);
                        }
                    }
                    i += 1;
                    continue;
                }
                Token::String { name, escape: true, .. } => {
                    let hex = match byte {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 0,
                        b'u' => 4,
                        _ => return Err(invalid("invalid escape", at)),
                    };
                    if name && self.stack.len() == 1 {
                        self.remember_key(&[byte]);
                    }
                    self.token = Token::String { name, escape: false, hex };
                }
                Token::String { name, escape: false, hex } => {
                    if !byte.is_ascii_hexdigit() {
                        return Err(invalid("invalid \\u escape", at));
                    }
                    if name && self.stack.len() == 1 {
                        self.remember_key(&[byte]);
                    }
                    self.token = Token::String { name, escape: false, hex: hex - 1 };
                }
                Token::Number(state) => match state.next(byte) {
                    Some(next) => self.token = Token::Number(next),
                    None if state.complete() => {
                        // The number ended before this byte, which is read again as structure.
                        self.token = Token::None;
                        self.expect = self.after_value();
                        if self.ends_kept_value() {
                            self.finish_copy(out, &chunk[copy_from..i])?;
                        }
                        continue;
                    }
                    None => return Err(invalid("invalid number", at)),
                },
                Token::Literal { word, read } => {
                    if byte != word[read as usize] {
                        return Err(invalid("invalid literal", at));
                    }
                    if read as usize + 1 == word.len() {
                        self.token = Token::None;
                        self.expect = self.after_value();
                        if self.ends_kept_value() {
                            self.finish_copy(out, &chunk[copy_from..=i])?;
                        }
                    } else {
                        self.token = Token::Literal { word, read: read + 1 };
                    }
                }
                Token::None => {
                    if is_whitespace(byte) {
                        i += 1 + whitespace_run(&chunk[i + 1..]);
                        continue;
                    }
                    if self.starts_kept_value() {
                        self.start_copy(out)?;
                        copy_from = i;
                    }
                    self.structure(byte, at)?;
                    if let Token::Literal { word, .. } = self.token
                        && chunk[i..].starts_with(word)
                    {
                        // The whole `true`, `false` or `null` is in this chunk: read at once.
                        self.token = Token::None;
                        self.expect = self.after_value();
                        i += word.len() - 1;
                    }
                    if self.ends_kept_value() {
                        self.finish_copy(out, &chunk[copy_from..=i])?;
                    }
                    if matches!(self.token, Token::None) {
                        // A `,` after a nested container or literal, or the space of `", "` and
                        // `": "` (as Python's json writes them), read here.
                        i += match self.nested_comma(&chunk[i + 1..]) {
                            0 => usize::from(chunk.get(i + 1) == Some(&b' ')),
                            read => read,
                        };
                    }
                }
            }
            i += 1;
        }
        if self.copying {
            let from = copy_from.min(chunk.len());
            let bytes = &chunk[from..];
            self.write(out, bytes)?;
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Ends the document: it must be complete. Writes the missing members and the closing
    /// brace; answers how many bytes were written in all.
    pub fn finish(mut self, out: &mut impl Write) -> Result<u64, ManifestError> {
        if self.utf8.1 > 0 {
            return Err(invalid("truncated UTF-8", self.offset));
        }
        if let Token::Number(state) = self.token
            && state.complete()
            && self.stack.is_empty()
        {
            // A bare number ends where the input does.
            self.token = Token::None;
            self.expect = Expect::End;
        }
        if self.expect != Expect::End || self.token != Token::None {
            return Err(invalid("EOF while parsing a value", self.offset));
        }
        if self.not_object {
            return Err(ManifestError::NotAnObject);
        }
        for (index, name) in KEPT.iter().enumerate() {
            if !self.seen[index] {
                self.open_member(out, name)?;
                self.write(out, b"null")?;
            }
        }
        self.write(out, b"}")?;
        out.flush()?;
        Ok(self.written)
    }

    /// Right after a value below the top level (where no kept member ends), reads a `,` (and
    /// one space after it) at once when `rest` starts with it; answers how many bytes it read.
    #[inline]
    fn nested_comma(&mut self, rest: &[u8]) -> usize {
        if self.expect != Expect::Next || self.stack.len() < 2 || rest.first() != Some(&b',') {
            return 0;
        }
        self.expect = if self.stack.last() == Some(&true) { Expect::Key } else { Expect::Value };
        if rest.get(1) == Some(&b' ') { 2 } else { 1 }
    }

    /// One byte outside any token: punctuation, or the start of a value.
    #[inline]
    fn structure(&mut self, byte: u8, at: u64) -> Result<(), ManifestError> {
        match self.expect {
            Expect::Document => {
                // Any other value is scanned to the end: valid JSON that is not an object is
                // told apart from what is not JSON at all.
                self.not_object = byte != b'{';
                self.value(byte, at)
            }
            Expect::Value => self.value(byte, at),
            Expect::FirstValue if byte == b']' => self.close(false, at),
            Expect::FirstValue => self.value(byte, at),
            Expect::FirstKey | Expect::Key => match byte {
                b'"' => {
                    if self.stack.len() == 1 {
                        self.key.clear();
                        self.key_overflow = false;
                    }
                    self.token = Token::String { name: true, escape: false, hex: 0 };
                    Ok(())
                }
                b'}' if self.expect == Expect::FirstKey => self.close(true, at),
                _ => Err(invalid("expected a member name", at)),
            },
            Expect::Colon => match byte {
                b':' => {
                    if self.stack.len() == 1 {
                        self.keeping = self.kept_key();
                    }
                    self.expect = Expect::Value;
                    Ok(())
                }
                _ => Err(invalid("expected ':'", at)),
            },
            Expect::Next => match (byte, self.stack.last()) {
                (b',', Some(true)) => {
                    self.expect = Expect::Key;
                    Ok(())
                }
                (b',', Some(false)) => {
                    self.expect = Expect::Value;
                    Ok(())
                }
                (b'}', Some(true)) => self.close(true, at),
                (b']', Some(false)) => self.close(false, at),
                _ => Err(invalid("expected ',' or the container's end", at)),
            },
            Expect::End => Err(invalid("trailing characters", at)),
        }
    }

    #[inline]
    fn value(&mut self, byte: u8, at: u64) -> Result<(), ManifestError> {
        self.token = match byte {
            b'{' => return self.open(true, at),
            b'[' => return self.open(false, at),
            b'"' => Token::String { name: false, escape: false, hex: 0 },
            b'-' => Token::Number(Number::Minus),
            b'0' => Token::Number(Number::Zero),
            b'1'..=b'9' => Token::Number(Number::Integer),
            b't' => Token::Literal { word: b"true", read: 1 },
            b'f' => Token::Literal { word: b"false", read: 1 },
            b'n' => Token::Literal { word: b"null", read: 1 },
            _ => return Err(invalid("expected value", at)),
        };
        Ok(())
    }

    #[inline]
    fn open(&mut self, object: bool, at: u64) -> Result<(), ManifestError> {
        if self.stack.len() + 1 >= MAX_DEPTH {
            return Err(invalid("recursion limit exceeded", at));
        }
        self.stack.push(object);
        self.expect = if object { Expect::FirstKey } else { Expect::FirstValue };
        Ok(())
    }

    #[inline]
    fn close(&mut self, object: bool, at: u64) -> Result<(), ManifestError> {
        if self.stack.pop() != Some(object) {
            return Err(invalid("mismatched container end", at));
        }
        self.expect = self.after_value();
        Ok(())
    }

    /// What follows a complete value at the current depth.
    #[inline]
    fn after_value(&self) -> Expect {
        if self.stack.is_empty() { Expect::End } else { Expect::Next }
    }

    fn remember_key(&mut self, bytes: &[u8]) {
        if self.key.len() + bytes.len() > KEY_CAP {
            self.key_overflow = true;
        } else {
            self.key.extend_from_slice(bytes);
        }
    }

    /// Which kept member the top-level name just read is (escapes decoded as serde_json does).
    fn kept_key(&self) -> Option<usize> {
        if self.key_overflow {
            return None;
        }
        let decoded;
        let name: &[u8] = if self.key.contains(&b'\\') {
            let mut quoted = Vec::with_capacity(self.key.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(&self.key);
            quoted.push(b'"');
            decoded = serde_json::from_slice::<String>(&quoted).unwrap_or_default();
            decoded.as_bytes()
        } else {
            &self.key
        };
        KEPT.iter().position(|kept| *kept == name)
    }

    /// Whether the next byte starts the value of a kept top-level member.
    #[inline]
    fn starts_kept_value(&self) -> bool {
        self.keeping.is_some() && !self.copying && self.expect == Expect::Value && self.stack.len() == 1
    }

    /// Whether a kept member's value just ended (back at the top level after it).
    #[inline]
    fn ends_kept_value(&self) -> bool {
        self.copying && self.token == Token::None && self.stack.len() == 1 && self.expect == Expect::Next
    }

    fn open_member(&mut self, out: &mut impl Write, name: &[u8]) -> Result<(), ManifestError> {
        let separator: &[u8] = if self.members == 0 { b"{\"" } else { b",\"" };
        self.write(out, separator)?;
        self.write(out, name)?;
        self.write(out, b"\":")?;
        self.members += 1;
        Ok(())
    }

    fn start_copy(&mut self, out: &mut impl Write) -> Result<(), ManifestError> {
        let index = self.keeping.expect("a kept member");
        self.seen[index] = true;
        self.open_member(out, KEPT[index])?;
        self.copying = true;
        Ok(())
    }

    fn finish_copy(&mut self, out: &mut impl Write, bytes: &[u8]) -> Result<(), ManifestError> {
        self.write(out, bytes)?;
        self.copying = false;
        self.keeping = None;
        Ok(())
    }

    /// Validates UTF-8 across chunk boundaries (JSON outside strings is ASCII, so checking the
    /// whole stream checks the strings).
    fn check_utf8(&mut self, chunk: &[u8]) -> Result<(), ManifestError> {
        let mut rest = chunk;
        let (mut pending, mut have, need) = self.utf8;
        if have > 0 {
            let take = (need - have).min(rest.len());
            pending[have..have + take].copy_from_slice(&rest[..take]);
            have += take;
            rest = &rest[take..];
            if have < need {
                self.utf8 = (pending, have, need);
                return Ok(());
            }
            simdutf8::compat::from_utf8(&pending[..need]).map_err(|_| invalid("invalid UTF-8", self.offset))?;
            self.utf8 = ([0; 4], 0, 0);
        }
        if let Err(error) = simdutf8::compat::from_utf8(rest) {
            let valid = error.valid_up_to();
            let at = self.offset + (chunk.len() - rest.len() + valid) as u64;
            if error.error_len().is_some() {
                return Err(invalid("invalid UTF-8", at));
            }
            // A sequence cut by the chunk's end: keep it for the next chunk.
            let tail = &rest[valid..];
            let need = match tail[0] {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let mut pending = [0; 4];
            pending[..tail.len()].copy_from_slice(tail);
            self.utf8 = (pending, tail.len(), need);
        }
        Ok(())
    }
}

/// Trims a whole manifest read from `read` (in 256 KiB chunks) into `out`.
pub fn trim_reader(mut read: impl Read, mut out: impl Write) -> Result<u64, ManifestError> {
    let mut trimmer = Trimmer::new();
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let n = match read.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        trimmer.feed(&buffer[..n], &mut out)?;
    }
    trimmer.finish(&mut out)
}

#[cfg(test)]
mod tests {
    use serde::de::IgnoredAny;
    use serde_json::Value;

    use super::*;

    /// Trims `body` fed in chunks of `size` bytes.
    fn trimmed(body: &[u8], size: usize) -> Result<Vec<u8>, ManifestError> {
        let mut trimmer = Trimmer::new();
        let mut out = Vec::new();
        for chunk in body.chunks(size.max(1)) {
            trimmer.feed(chunk, &mut out)?;
        }
        let written = trimmer.finish(&mut out)?;
        assert_eq!(written, out.len() as u64);
        Ok(out)
    }

    /// What serde_json says of `body`: not JSON, not an object, or the kept members (`None`
    /// when the JSON is valid but holds a lone surrogate escape, which serde_json accepts
    /// while skipping and refuses while decoding).
    fn reference(body: &[u8]) -> Result<Option<(Value, Value)>, &'static str> {
        if serde_json::from_slice::<IgnoredAny>(body).is_err() {
            return Err("not json");
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Some((
                map.get("metadata").cloned().unwrap_or(Value::Null),
                map.get("nodes").cloned().unwrap_or(Value::Null),
            ))),
            Ok(_) => Err("not an object"),
            // Stricter than serde_json's skipping, as its decoding is: UTF-8 everywhere, and
            // its nesting limit.
            Err(_) if std::str::from_utf8(body).is_err() => Err("not json"),
            Err(e) if e.to_string().contains("recursion limit") => Err("not json"),
            Err(_) if body.trim_ascii_start().starts_with(b"{") => Ok(None),
            Err(_) => Err("not an object"),
        }
    }

    fn agrees(body: &[u8]) {
        let expected = reference(body);
        for size in [1, 2, 3, 7, 64, body.len().max(1)] {
            let got = match trimmed(body, size) {
                Ok(_) if expected == Ok(None) => Ok(None),
                Ok(out) => {
                    let value: Value = serde_json::from_slice(&out)
                        .unwrap_or_else(|e| panic!("{:?}: trimmed to invalid JSON {e}", String::from_utf8_lossy(body)));
                    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
                    assert!(keys.iter().all(|k| *k == "metadata" || *k == "nodes"), "{keys:?}");
                    Ok(Some((value["metadata"].clone(), value["nodes"].clone())))
                }
                Err(ManifestError::NotAnObject) => Err("not an object"),
                Err(ManifestError::NotJson(_)) => Err("not json"),
                Err(ManifestError::Io(e)) => panic!("{e}"),
            };
            assert_eq!(got, expected, "{:?} in chunks of {size}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn members_are_copied_byte_for_byte_in_the_manifests_order() {
        let body = br#" {"metadata" : {"dbt_version": "1.6.9", "x": [1, 2.5e-3, true]}, "macros": {"m": [1, 2]},
                        "nodes":{"model.a": {"name": "a\"b\\", "tags": []}} , "child_map": {}} "#;
        for size in [1, 5, body.len()] {
            let out = trimmed(body, size).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                r#"{"metadata":{"dbt_version": "1.6.9", "x": [1, 2.5e-3, true]},"nodes":{"model.a": {"name": "a\"b\\", "tags": []}}}"#
            );
        }
        let nodes_first = trimmed(br#"{"nodes": 12, "metadata": -0.5e+7}"#, 3).unwrap();
        assert_eq!(nodes_first, br#"{"nodes":12,"metadata":-0.5e+7}"#);
        assert_eq!(trimmed(br#"{"nodes": {}}"#, 1).unwrap(), br#"{"nodes":{},"metadata":null}"#);
        assert_eq!(trimmed(br#"{}"#, 1).unwrap(), br#"{"metadata":null,"nodes":null}"#);
        // Names are compared decoded, as serde_json compares them.
        assert_eq!(trimmed(br#"{"nod\u0065s": "n"}"#, 2).unwrap(), br#"{"nodes":"n","metadata":null}"#);
    }

    #[test]
    fn it_agrees_with_serde_json_on_valid_and_invalid_documents() {
        let cases: &[&[u8]] = &[
            b"",
            b" ",
            b"{",
            b"}",
            b"{}",
            b"[]",
            b"[1, 2]",
            b"\"text\"",
            b"12",
            b"-",
            b"null",
            b"nul",
            b"{} {}",
            b"{} x",
            b"{}\n\t ",
            br#"{"a":1,}"#,
            br#"{"a":1 "b":2}"#,
            br#"{"a" 1}"#,
            br#"{a: 1}"#,
            br#"{"a": [1,]}"#,
            br#"{"a": [,1]}"#,
            br#"{"a": [1 2]}"#,
            br#"{"a": []}"#,
            br#"{"a": [[], {}, [{}]]}"#,
            br#"{"a": 01}"#,
            br#"{"a": 1.}"#,
            br#"{"a": .5}"#,
            br#"{"a": 1e}"#,
            br#"{"a": 1e+}"#,
            br#"{"a": -0}"#,
            br#"{"a": 1E5, "b": 0.0e-0}"#,
            br#"{"a": +1}"#,
            br#"{"a": tru}"#,
            br#"{"a": truex}"#,
            br#"{"a": "\x"}"#,
            br#"{"a": "\u12g4"}"#,
            br#"{"a": "\ud800"}"#,
            br#"{"a": "tab	inside"}"#,
            "{\"a\": \"é ü 😀\"}".as_bytes(),
            br#"{"nodes": {"x": 1}, "nodes": {"y": 2}}"#,
            br#"{"metadata": "m", "nodes": [1, {"metadata": 2}], "other": {"nodes": 3}}"#,
            br#"{"nodes": {"a": {"b": {"c": [1, [2, [3]]]}}}}"#,
            b"{\"a\": \"\xff\"}",
            b"{\"a\": \"\xc3\"}",
            b"{\"a\": 1}\x00",
            b"\xef\xbb\xbf{}",
        ];
        for case in cases {
            agrees(case);
        }
    }

    #[test]
    fn every_byte_that_ends_a_string_run_is_seen_wherever_it_falls_in_a_block() {
        let text = "abcdefghijklmnopqrstuvwxyz0123456789é€";
        for at in 0..text.len() {
            // Escapes (valid) and raw control bytes (invalid).
            let specials: [&[u8]; 9] =
                [br#"\""#, br#"\\"#, br#"\n"#, br#"\u00e9"#, b"\0", br#"\n\""#, b"\x01", b"\x1f", b"\t"];
            for special in specials {
                let mut string = text.as_bytes()[..at].to_vec();
                string.extend_from_slice(special);
                string.extend_from_slice(&text.as_bytes()[at..]);
                let mut body = br#"{"metadata": {"k": ""#.to_vec();
                body.extend_from_slice(&string);
                body.extend_from_slice(br#""}, "nodes": []}"#);
                agrees(&body);
            }
        }
    }

    #[test]
    fn whitespace_runs_of_any_length_end_at_the_next_token() {
        for length in 0..40 {
            let run: String = " \n\t\r".chars().cycle().take(length).collect();
            for body in [
                format!(r#"{{"metadata":{run}{{"a":{run}[1,{run}null{run}]}},{run}"nodes":{run}true{run}}}"#),
                format!(r#"{{"metadata":{run}x}}"#),
                format!(r#"{{"nodes":{run}"#),
            ] {
                agrees(body.as_bytes());
            }
        }
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [126, 127, 128, 129] {
            let body = format!("{{\"nodes\":{}{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1));
            agrees(body.as_bytes());
        }
    }

    #[test]
    fn random_mutations_of_manifests_agree_with_serde_json() {
        let seed: &[u8] = br#"{"metadata": {"v": "1.6", "n": [1, -2.5e3, null]}, "nodes": {"a": {"t": [true, false], "s": "x\ny\u00e9"}}, "z": {}}"#;
        let alphabet = b"{}[]:,\"\\ 0123456789.eE+-tfnulrsa\t\n";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut body = seed.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() % body.len() as u64) as usize;
                match next() % 3 {
                    0 => body[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                    1 => {
                        body.remove(at);
                    }
                    _ => body.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                }
            }
            agrees(&body);
        }
    }

    #[test]
    fn the_fixture_trims_like_the_whole_document_parsed() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/manifest.json");
        let body = std::fs::read(path).unwrap();
        let full: Value = serde_json::from_slice(&body).unwrap();
        let mut out = Vec::new();
        trim_reader(&body[..], &mut out).unwrap();
        assert_eq!(out, trimmed(&body, 8191).unwrap());
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["metadata"], full["metadata"]);
        assert_eq!(value["nodes"], full["nodes"]);
        assert_eq!(value.as_object().unwrap().len(), 2);
    }
}
