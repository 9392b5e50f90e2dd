//! Normalizers: case, whitespace, NUL bytes, comments, command lines, paths, trimming.
//!
//! Owns the character classes each transformation uses (which bytes count as whitespace, which
//! sequences open a comment) and the path-cleaning algorithm. Everything here only removes or
//! rewrites bytes in place, except `removeWhitespace`, which writes U+FFFD for invalid UTF-8.
//! A scan reports a position only where a byte is removed or rewritten, and no writer re-creates
//! what it removed (a whitespace run, a comment, a NUL, a `.` segment), so a reported change is
//! a real one.

use memchr::memchr;

use super::{decode_utf8, Kernel, REPLACEMENT_UTF8};

/// The non-empty tail `s[i..]`.
#[inline]
fn tail(s: &[u8], i: usize) -> Option<&[u8]> {
    s.get(i..).filter(|t| !t.is_empty())
}

// ---- lowercase, uppercase ------------------------------------------------------------------

/// `lowercase`: ASCII `A`–`Z` → `a`–`z`; other bytes (including non-ASCII letters) unchanged,
/// as in ModSecurity and Coraza. Output = input length.
pub(super) const LOWERCASE: Kernel = Kernel {
    scan: |s| s.iter().position(u8::is_ascii_uppercase),
    write: |s, i, out| {
        out.extend(
            s.get(i..)
                .unwrap_or_default()
                .iter()
                .map(u8::to_ascii_lowercase),
        )
    },
};

/// `uppercase`: ASCII `a`–`z` → `A`–`Z`. ModSecurity's rule; Coraza upper-cases Unicode letters
/// (Go's `strings.ToUpper`, which also rewrites invalid UTF-8) while its `lowercase` is ASCII
/// only — we keep the two symmetric and byte-preserving. CRS does not use `uppercase`.
pub(super) const UPPERCASE: Kernel = Kernel {
    scan: |s| s.iter().position(u8::is_ascii_lowercase),
    write: |s, i, out| {
        out.extend(
            s.get(i..)
                .unwrap_or_default()
                .iter()
                .map(u8::to_ascii_uppercase),
        )
    },
};

// ---- compressWhitespace, removeWhitespace --------------------------------------------------

/// `compressWhitespace`: each run of whitespace becomes one space. Whitespace is the ASCII set
/// (space, `\t \n \v \f \r`), U+0085 and U+00A0 encoded in UTF-8, and a stray 0xA0 byte (Latin-1
/// NBSP); input is read as UTF-8 units, so the 0xA0 / 0x85 inside `à` (C3 A0) or `Å` (C3 85) is
/// not whitespace. This is Coraza 3.8's rule (#1659); ModSecurity v2 matches bytes 0xA0 anywhere
/// and v3 only the ASCII set. Output ≤ input.
pub(super) const COMPRESS_WHITESPACE: Kernel = Kernel {
    scan: compress_whitespace_scan,
    write: compress_whitespace_write,
};

/// Whether the unit at the start of `s` is whitespace for `compressWhitespace`, and its length.
fn compress_unit(s: &[u8]) -> (bool, usize) {
    match s.first() {
        Some(b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') => (true, 1),
        Some(&b) if b < 0x80 => (false, 1),
        // A continuation byte never starts a valid sequence: at a unit boundary it is stray.
        Some(0xa0) => (true, 1),
        _ => {
            let (cp, len) = decode_utf8(s);
            (matches!(cp, Some(0x85 | 0xa0)), len)
        }
    }
}

/// Length of the run of ASCII bytes other than whitespace at the start of `s` (bytes every
/// whitespace transformation leaves alone).
fn plain_ascii_run(s: &[u8]) -> usize {
    s.iter()
        .position(|&b| b >= 0x80 || matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(s.len())
}

fn compress_whitespace_scan(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(rest) = tail(s, i) {
        let run = plain_ascii_run(rest);
        if run > 0 {
            i += run;
            continue;
        }
        let (space, len) = compress_unit(rest);
        if space {
            let plain = rest.first() == Some(&b' ');
            let run = tail(s, i + len).is_some_and(|next| compress_unit(next).0);
            if !plain || run {
                return Some(i);
            }
        }
        i += len;
    }
    None
}

fn compress_whitespace_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    let mut in_space = false;
    while let Some(rest) = tail(s, i) {
        let (space, len) = compress_unit(rest);
        if space {
            if !in_space {
                out.push(b' ');
            }
        } else {
            out.extend_from_slice(rest.get(..len).unwrap_or_default());
        }
        in_space = space;
        i += len;
    }
}

/// `removeWhitespace`: removes every whitespace character: the ASCII set (space, `\t \n \v \f
/// \r`) and, decoded as UTF-8, every `White_Space` code point (U+0085, U+00A0, U+1680,
/// U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). As in Coraza (Go's `unicode.IsSpace`
/// over runes), each byte that is not valid UTF-8 — a stray 0xA0 included — is rewritten as
/// U+FFFD; ModSecurity removes 0xA0 bytes and leaves other bytes alone. Output ≤ 3× input.
pub(super) const REMOVE_WHITESPACE: Kernel = Kernel {
    scan: remove_whitespace_scan,
    write: remove_whitespace_write,
};

/// What `removeWhitespace` does with the unit at the start of `s`.
enum Unit {
    Keep(usize),
    Drop(usize),
    /// One invalid byte, written as U+FFFD.
    Replace,
}

fn remove_unit(s: &[u8]) -> Unit {
    match s.first() {
        Some(b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') => Unit::Drop(1),
        Some(&b) if b < 0x80 => Unit::Keep(1),
        _ => match decode_utf8(s) {
            (None, _) => Unit::Replace,
            (
                Some(
                    0x85
                    | 0xa0
                    | 0x1680
                    | 0x2000..=0x200a
                    | 0x2028
                    | 0x2029
                    | 0x202f
                    | 0x205f
                    | 0x3000,
                ),
                len,
            ) => Unit::Drop(len),
            (Some(_), len) => Unit::Keep(len),
        },
    }
}

fn remove_whitespace_scan(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(rest) = tail(s, i) {
        let run = plain_ascii_run(rest);
        if run > 0 {
            i += run;
            continue;
        }
        match remove_unit(rest) {
            Unit::Keep(len) => i += len,
            Unit::Drop(_) | Unit::Replace => return Some(i),
        }
    }
    None
}

fn remove_whitespace_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    while let Some(rest) = tail(s, i) {
        // ASCII bytes other than whitespace are kept as they are: copy such a run at once.
        let run = plain_ascii_run(rest);
        if run > 0 {
            out.extend_from_slice(&rest[..run]);
            i += run;
            continue;
        }
        match remove_unit(rest) {
            Unit::Keep(len) => {
                out.extend_from_slice(rest.get(..len).unwrap_or_default());
                i += len;
            }
            Unit::Drop(len) => i += len,
            Unit::Replace => {
                out.extend_from_slice(REPLACEMENT_UTF8);
                i += 1;
            }
        }
    }
}

// ---- removeNulls, replaceNulls -------------------------------------------------------------

/// `removeNulls`: removes NUL bytes. Output ≤ input.
pub(super) const REMOVE_NULLS: Kernel = Kernel {
    scan: |s| memchr(0, s),
    write: |s, i, out| {
        out.extend(
            s.get(i..)
                .unwrap_or_default()
                .iter()
                .copied()
                .filter(|&b| b != 0),
        )
    },
};

/// `replaceNulls`: NUL bytes → spaces. Output = input length.
pub(super) const REPLACE_NULLS: Kernel = Kernel {
    scan: |s| memchr(0, s),
    write: |s, i, out| {
        out.extend(
            s.get(i..)
                .unwrap_or_default()
                .iter()
                .map(|&b| if b == 0 { b' ' } else { b }),
        )
    },
};

// ---- removeComments, removeCommentsChar, replaceComments -----------------------------------

/// `removeComments`: removes `/* … */` and `<!-- … -->` comments; `--` or `#` outside a comment
/// ends the value (the rest is a line comment). Unterminated comments run to the end and leave
/// one space. ModSecurity v2's algorithm, byte for byte as Coraza reproduces it, including two
/// oddities: the byte right after a comment's close is copied without being examined (so
/// `SELECT/**//**/UNION` keeps its second comment), and when the close ends the input that byte
/// is the C string terminator — a NUL is written (`/* x */` → `"\0"`, Coraza's own test).
/// libmodsecurity v3 has since dropped both oddities; CRS does not use `removeComments`.
/// Output ≤ input.
pub(super) const REMOVE_COMMENTS: Kernel = Kernel {
    scan: remove_comments_scan,
    write: remove_comments_write,
};

fn remove_comments_scan(s: &[u8]) -> Option<usize> {
    (0..s.len()).find(|&i| {
        let rest = s.get(i..).unwrap_or_default();
        rest.starts_with(b"/*")
            || rest.starts_with(b"<!--")
            || rest.starts_with(b"--")
            || rest.starts_with(b"#")
    })
}

fn remove_comments_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    let rest = |i: usize| s.get(i..).unwrap_or_default();
    // The byte after a comment's close, NUL past the end (ModSecurity reads the terminator).
    let byte_or_nul = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut in_comment = false;
    while let Some(&c) = s.get(i) {
        if !in_comment {
            if rest(i).starts_with(b"/*") {
                in_comment = true;
                i += 2;
            } else if rest(i).starts_with(b"<!--") {
                in_comment = true;
                i += 4;
            } else if rest(i).starts_with(b"--") || c == b'#' {
                return;
            } else {
                out.push(c);
                i += 1;
            }
        } else if rest(i).starts_with(b"*/") {
            in_comment = false;
            out.push(byte_or_nul(i + 2));
            i += 3;
        } else if rest(i).starts_with(b"-->") {
            in_comment = false;
            out.push(byte_or_nul(i + 3));
            i += 4;
        } else {
            i += 1;
        }
    }
    if in_comment {
        out.push(b' ');
    }
}

/// `removeCommentsChar`: removes the comment markers `/*`, `*/`, `<!--`, `-->`, `--` and `#`
/// wherever they are, keeping the text between them (Coraza and ModSecurity). Output ≤ input.
pub(super) const REMOVE_COMMENTS_CHAR: Kernel = Kernel {
    scan: remove_comments_char_scan,
    write: remove_comments_char_write,
};

/// The first comment marker: only a byte that can start one is tried.
fn remove_comments_char_scan(s: &[u8]) -> Option<usize> {
    s.iter()
        .enumerate()
        .filter(|(_, b)| matches!(b, b'/' | b'*' | b'<' | b'-' | b'#'))
        .map(|(i, _)| i)
        .find(|&i| comment_marker_len(s.get(i..).unwrap_or_default()) > 0)
}

/// The length of the comment marker at the start of `s`, 0 if there is none.
fn comment_marker_len(s: &[u8]) -> usize {
    const MARKERS: [&[u8]; 6] = [b"/*", b"*/", b"<!--", b"-->", b"--", b"#"];
    MARKERS
        .iter()
        .find(|m| s.starts_with(m))
        .map_or(0, |m| m.len())
}

fn remove_comments_char_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    while let Some(rest) = tail(s, i) {
        // Bytes that cannot start a marker are kept: copy such a run at once.
        let run = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'*' | b'<' | b'-' | b'#'))
            .unwrap_or(rest.len());
        if run > 0 {
            out.extend_from_slice(&rest[..run]);
            i += run;
            continue;
        }
        match comment_marker_len(rest) {
            0 => {
                out.extend_from_slice(rest.get(..1).unwrap_or_default());
                i += 1;
            }
            len => i += len,
        }
    }
}

/// `replaceComments`: each `/* … */` becomes one space; an unterminated `/*` runs to the end and
/// becomes one space; a lone `*/` is kept. ModSecurity and Coraza agree. Output ≤ input.
pub(super) const REPLACE_COMMENTS: Kernel = Kernel {
    scan: |s| memchr::memmem::find(s, b"/*"),
    write: replace_comments_write,
};

fn replace_comments_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    while let Some(rest) = tail(s, i) {
        let Some(open) = memchr::memmem::find(rest, b"/*") else {
            out.extend_from_slice(rest);
            return;
        };
        out.extend_from_slice(rest.get(..open).unwrap_or_default());
        out.push(b' ');
        let body = i + open + 2;
        match s.get(body..).and_then(|b| memchr::memmem::find(b, b"*/")) {
            Some(close) => i = body + close + 2,
            None => return,
        }
    }
}

// ---- cmdLine -------------------------------------------------------------------------------

/// `cmdLine`: normalizes a shell / `cmd.exe` command line: deletes `\ " ' ^`; turns each run of
/// space, `,`, `;`, `\t`, `\r`, `\n` into one space; deletes a space before `/` or `(`; lowercases
/// ASCII. ModSecurity and Coraza agree. Output ≤ input.
pub(super) const CMD_LINE: Kernel = Kernel {
    scan: cmd_line_scan,
    write: cmd_line_write,
};

/// The first change, restarted at the space that may be deleted later if one is pending (the
/// writer must see that space to know it has to take it back).
fn cmd_line_scan(s: &[u8]) -> Option<usize> {
    let mut pending_space: Option<usize> = None;
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'"' | b'\'' | b'\\' | b'^' | b',' | b';' | b'\t' | b'\r' | b'\n' | b'A'..=b'Z' => {
                return Some(pending_space.unwrap_or(i));
            }
            b' ' => {
                if pending_space.is_some() {
                    return pending_space;
                }
                pending_space = Some(i);
            }
            b'/' | b'(' => {
                if pending_space.is_some() {
                    return pending_space;
                }
            }
            _ => pending_space = None,
        }
    }
    None
}

fn cmd_line_write(s: &[u8], i: usize, out: &mut Vec<u8>) {
    let mut space = false;
    for &c in s.get(i..).unwrap_or_default() {
        match c {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(c);
            }
            _ => {
                out.push(c.to_ascii_lowercase());
                space = false;
            }
        }
    }
}

// ---- normalizePath, normalizePathWin -------------------------------------------------------

/// `normalizePath`: lexical path cleaning (Go's `path.Clean`, which Coraza uses): collapses
/// repeated `/`, removes `.` segments, resolves `..` against the preceding segment, drops `..`
/// at the root of an absolute path and keeps leading `..` of a relative one; a trailing `/` is
/// kept, and a path that cleans to nothing (`.`, `./`) becomes empty.
///
/// One deliberate difference from Coraza: a path that cleans to the root keeps a single slash
/// (`//` → `/`), where Coraza appends the trailing slash again and turns `/` into `//`.
/// Output ≤ input.
pub(super) const NORMALIZE_PATH: Kernel = Kernel {
    scan: |s| path_scan(s, false),
    write: |s, _, out| path_write(s, false, out),
};

/// `normalizePathWin`: `normalizePath` after turning every `\` into `/` (Coraza, ModSecurity).
pub(super) const NORMALIZE_PATH_WIN: Kernel = Kernel {
    scan: |s| path_scan(s, true),
    write: |s, _, out| path_write(s, true, out),
};

/// Where `clean_path` writes. Go's `path.Clean` writes into a "lazy buffer" that stays a view of
/// the input until the output first diverges; the scan uses that to prove "unchanged" without
/// writing anything.
trait PathSink {
    fn len(&self) -> usize;
    fn append(&mut self, c: u8);
    fn byte(&self, i: usize) -> u8;
    fn truncate(&mut self, len: usize);
    /// Whether cleaning can stop (the dry run has diverged).
    fn done(&self) -> bool;
}

/// Dry run: the output length while it is still a prefix of the input.
struct Prefix<'a> {
    input: &'a [u8],
    len: usize,
    diverged: bool,
}

impl PathSink for Prefix<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn append(&mut self, c: u8) {
        if self.input.get(self.len) == Some(&c) {
            self.len += 1;
        } else {
            self.diverged = true;
        }
    }
    fn byte(&self, i: usize) -> u8 {
        self.input.get(i).copied().unwrap_or(0)
    }
    fn truncate(&mut self, len: usize) {
        self.len = len;
    }
    fn done(&self) -> bool {
        self.diverged
    }
}

impl PathSink for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn append(&mut self, c: u8) {
        self.push(c);
    }
    fn byte(&self, i: usize) -> u8 {
        self.get(i).copied().unwrap_or(0)
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
    fn done(&self) -> bool {
        false
    }
}

/// Go's `path.Clean` over `s` (with `\` read as `/` when `win`), into `out`. Returns whether the
/// path is absolute. An empty result stands for Go's ".".
fn clean_path(s: &[u8], win: bool, out: &mut impl PathSink) -> bool {
    let at = |i: usize| s.get(i).map(|&b| if win && b == b'\\' { b'/' } else { b });
    let rooted = at(0) == Some(b'/');
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.append(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < s.len() && !out.done() {
        let end_of_segment = |k: usize| matches!(at(k), None | Some(b'/'));
        match (at(r), at(r + 1)) {
            (Some(b'/'), _) => r += 1,
            (Some(b'.'), _) if end_of_segment(r + 1) => r += 1,
            (Some(b'.'), Some(b'.')) if end_of_segment(r + 2) => {
                r += 2;
                if out.len() > dotdot {
                    // Back to the previous separator (or the `..` floor).
                    let mut w = out.len() - 1;
                    while w > dotdot && out.byte(w) != b'/' {
                        w -= 1;
                    }
                    out.truncate(w);
                } else if !rooted {
                    if out.len() > 0 {
                        out.append(b'/');
                    }
                    out.append(b'.');
                    out.append(b'.');
                    dotdot = out.len();
                }
            }
            _ => {
                if (rooted && out.len() != 1) || (!rooted && out.len() != 0) {
                    out.append(b'/');
                }
                while let Some(c) = at(r).filter(|&c| c != b'/') {
                    out.append(c);
                    r += 1;
                }
            }
        }
    }
    rooted
}

/// Whether `s` ends with a separator.
fn ends_with_separator(s: &[u8], win: bool) -> bool {
    matches!(s.last(), Some(b'/')) || (win && s.last() == Some(&b'\\'))
}

fn path_scan(s: &[u8], win: bool) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    // Most values (one plain element, or plain elements between single slashes) are seen
    // clean at once; a backslash, which normalizePathWin rewrites, needs the full cleaning.
    if !(win && memchr(b'\\', s).is_some()) && plainly_clean(s) {
        return None;
    }
    let mut dry = Prefix {
        input: s,
        len: 0,
        diverged: false,
    };
    let rooted = clean_path(s, win, &mut dry);
    if dry.diverged || dry.len == 0 {
        return Some(0);
    }
    // The cleaned path is `s[..len]`; see whether the trailing-slash rule makes it `s` again.
    let unchanged = if ends_with_separator(s, win) && !(rooted && dry.len == 1) {
        dry.len + 1 == s.len() && s.last() == Some(&b'/')
    } else {
        dry.len == s.len()
    };
    (!unchanged).then_some(0)
}

/// Whether cleaning leaves `s` as it is, seen without cleaning it: with `/` as the separator, no
/// element is `.` or `..` and no separator is doubled (an empty first element is the root, an
/// empty last one a trailing slash, both kept). `false` means "clean it and compare".
fn plainly_clean(s: &[u8]) -> bool {
    let mut start = 0;
    loop {
        let end = memchr(b'/', &s[start..]).map_or(s.len(), |o| start + o);
        let element = &s[start..end];
        if element == b"." || element == b".." {
            return false;
        }
        if element.is_empty() && start != 0 && end != s.len() {
            return false;
        }
        if end == s.len() {
            return true;
        }
        start = end + 1;
    }
}

fn path_write(s: &[u8], win: bool, out: &mut Vec<u8>) {
    let base = out.len();
    let rooted = clean_path(s, win, out);
    let cleaned = out.len() - base;
    if cleaned > 0 && ends_with_separator(s, win) && !(rooted && cleaned == 1) {
        out.push(b'/');
    }
}

// ---- trim, trimLeft, trimRight -------------------------------------------------------------

/// The bytes the trim functions remove: C's `isspace` (space, `\t \n \v \f \r`), as in Coraza.
fn is_trim_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| is_trim_space(b)).count();
    s.get(n..).unwrap_or_default()
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|b| is_trim_space(b)).count();
    s.get(..s.len() - n).unwrap_or_default()
}

/// `trim`: removes leading and trailing whitespace. Output ≤ input.
pub(super) const TRIM: Kernel = Kernel {
    scan: |s| {
        (s.first().is_some_and(is_trim_space) || s.last().is_some_and(is_trim_space)).then_some(0)
    },
    write: |s, _, out| out.extend_from_slice(trim_end(trim_start(s))),
};

/// `trimLeft`: removes leading whitespace. Output ≤ input.
pub(super) const TRIM_LEFT: Kernel = Kernel {
    scan: |s| s.first().is_some_and(is_trim_space).then_some(0),
    write: |s, _, out| out.extend_from_slice(trim_start(s)),
};

/// `trimRight`: removes trailing whitespace. Output ≤ input.
pub(super) const TRIM_RIGHT: Kernel = Kernel {
    scan: |s| s.last().is_some_and(is_trim_space).then_some(0),
    write: |s, _, out| out.extend_from_slice(trim_end(s)),
};

#[cfg(test)]
mod tests {
    use super::super::{apply, Transformation as T};
    use crate::engine::test_support::{for_each_mix, XorShift};

    /// `removeCommentsChar` copies runs that cannot start a marker at once: same output as
    /// taking one byte or marker at a time, on every mix of up to five marker pieces.
    #[test]
    fn remove_comments_char_runs_match_byte_by_byte() {
        let pieces: [&[u8]; 8] = [b"ab", b"/", b"*", b"<!", b"-", b">", b"#", b"x"];
        for_each_mix(&pieces, 5, |v| {
            let mut want = Vec::new();
            let mut i = 0;
            while i < v.len() {
                match super::comment_marker_len(&v[i..]) {
                    0 => {
                        want.push(v[i]);
                        i += 1;
                    }
                    len => i += len,
                }
            }
            assert_eq!(run(T::RemoveCommentsChar, v), want, "{v:?}");
        });
    }

    /// Without a separator, `path_scan` decides "unchanged" without cleaning: same verdicts
    /// as the full cleaning (the write path) on every short mix of `.`, `..`, letters, slashes
    /// and backslashes (a separator only for normalizePathWin).
    #[test]
    fn path_scan_shortcut_agrees_with_cleaning() {
        let pieces: [&[u8]; 6] = [b".", b"..", b"a", b"\\", b"bc", b"/"];
        for_each_mix(&pieces, 5, |v| {
            for (t, win) in [(T::NormalizePath, false), (T::NormalizePathWin, true)] {
                let mut full = Vec::new();
                super::path_write(v, win, &mut full);
                let changed = !v.is_empty() && full != v;
                assert_eq!(super::path_scan(v, win).is_some(), changed, "{t:?} {v:?}");
            }
        });
    }

    /// `removeWhitespace` copies runs of plain ASCII at once; the output is what taking one
    /// unit at a time gives, on mixes of ASCII, whitespace, multi-byte UTF-8 (spaces among
    /// them) and invalid bytes. (That the scans, which skip the same runs, agree with the
    /// writes is `random_inputs_respect_the_contract`, for every transformation.)
    #[test]
    fn remove_whitespace_runs_match_unit_by_unit() {
        let pieces: [&[u8]; 9] = [
            b"ab",
            b" ",
            b"\t\r\n",
            "\u{a0}".as_bytes(),
            "\u{3000}".as_bytes(),
            "é".as_bytes(),
            &[0xff],
            &[0xe2, 0x80],
            b"x",
        ];
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let mut v = Vec::new();
        for _ in 0..5000 {
            v.clear();
            for _ in 0..rng.below(12) {
                v.extend_from_slice(pieces[rng.below(pieces.len())]);
            }
            let mut want = Vec::new();
            let mut i = 0;
            while let Some(rest) = super::tail(&v, i) {
                match super::remove_unit(rest) {
                    super::Unit::Keep(len) => {
                        want.extend_from_slice(&rest[..len]);
                        i += len;
                    }
                    super::Unit::Drop(len) => i += len,
                    super::Unit::Replace => {
                        want.extend_from_slice(super::REPLACEMENT_UTF8);
                        i += 1;
                    }
                }
            }
            assert_eq!(run(T::RemoveWhitespace, &v), want, "{v:?}");
        }
    }

    fn run(t: T, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if apply(t, input, &mut out) {
            out
        } else {
            input.to_vec()
        }
    }

    fn check(t: T, cases: &[(&[u8], &[u8])]) {
        for &(input, want) in cases {
            let have = run(t, input);
            assert_eq!(
                have,
                want,
                "{}({:?}) = {:?}, want {:?}",
                t.name(),
                String::from_utf8_lossy(input),
                String::from_utf8_lossy(&have),
                String::from_utf8_lossy(want)
            );
        }
    }

    // Vectors: ModSecurity's regression tests (secrules-language-tests) and Coraza's tests,
    // rewritten; Coraza's value where the two differ.

    #[test]
    fn case() {
        check(
            T::Lowercase,
            &[
                (b"", b""),
                (b"testcase", b"testcase"),
                (b"TestCase", b"testcase"),
                (b"Test\0Case", b"test\0case"),
                ("ÀÉ XY".as_bytes(), "ÀÉ xy".as_bytes()),
                (b"\xc3\x80\xff", b"\xc3\x80\xff"),
            ],
        );
        check(
            T::Uppercase,
            &[
                (b"", b""),
                (b"TESTCASE", b"TESTCASE"),
                (b"testcase", b"TESTCASE"),
                (b"test\0case", b"TEST\0CASE"),
                ("àé xy".as_bytes(), "àé XY".as_bytes()),
            ],
        );
    }

    #[test]
    fn compress_whitespace() {
        check(
            T::CompressWhitespace,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"Test\0Case"),
                (b"Test Case", b"Test Case"),
                (b"  Test  \t   Case  ", b" Test Case "),
                (
                    b"This is a   test case with a tab \t, vtab \x0b, newline \n, return \r, formfeed \x0c, and a NUL\0 in it with a CRLF at the end.\r\n",
                    b"This is a test case with a tab , vtab , newline , return , formfeed , and a NUL\0 in it with a CRLF at the end. ",
                ),
                (b"\t", b" "),
                (b" ", b" "),
                // Coraza 3.8 (#1659): NBSP / NEL as UTF-8 and a stray 0xA0 byte are whitespace,
                // the 0xA0 / 0x85 inside other characters are not.
                (b"SELECT\xa01", b"SELECT 1"),
                (b"a\xa0\xa0b", b"a b"),
                (b"a\xc2\xa0b", b"a b"),
                (b"a\xc2\x85 b", b"a b"),
                ("à ok".as_bytes(), "à ok".as_bytes()),
                ("Å ą".as_bytes(), "Å ą".as_bytes()),
                (b"a\x85b", b"a\x85b"),
                ("a\u{2003}b".as_bytes(), "a\u{2003}b".as_bytes()),
                (b"\xc3 \xa0", b"\xc3 "),
            ],
        );
    }

    #[test]
    fn remove_whitespace() {
        check(
            T::RemoveWhitespace,
            &[
                (b"", b""),
                (b"test", b"test"),
                (b"t e s t", b"test"),
                (b" \t\n\x0b\x0c\rx", b"x"),
                (b"a\x1cb", b"a\x1cb"),
                (
                    "a\u{3000}b\u{2028}c\u{a0}d\u{85}e\u{202f}f".as_bytes(),
                    b"abcdef",
                ),
                ("é\u{fffd}".as_bytes(), "é\u{fffd}".as_bytes()),
                // Coraza rewrites invalid UTF-8 as U+FFFD (Go's strings.Map).
                (b"a\xa0b", "a\u{fffd}b".as_bytes()),
                (b"\xff", "\u{fffd}".as_bytes()),
                (b"\xe2\x80 x", "\u{fffd}\u{fffd}x".as_bytes()),
            ],
        );
    }

    #[test]
    fn nulls() {
        check(
            T::RemoveNulls,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"TestCase"),
                (b"\0\0Test\0\0Case\0\0", b"TestCase"),
                (b"\0", b""),
            ],
        );
        check(
            T::ReplaceNulls,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"Test Case"),
                (b"\0\0Test\0\0Case\0\0", b"  Test  Case  "),
            ],
        );
    }

    #[test]
    fn remove_comments() {
        check(
            T::RemoveComments,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"Test\0Case"),
                // A comment that closes at the very end leaves the C terminator (Coraza's test).
                (b"/* TestCase */", b"\0"),
                (b"/*TestCase*/", b"\0"),
                (b"<!-- comment -->", b"\0"),
                (b"Before/* TestCase */After", b"BeforeAfter"),
                (b"Before TestCase */ After", b"Before TestCase */ After"),
                (b"/*Before/* Test\r\nCase ", b" "),
                (b"Before /* Test\nCase ", b"Before  "),
                (
                    b"Before/* T*/ /* e */ /* s */ /* t */\r\nCase ",
                    b"Before   \r\nCase ",
                ),
                (
                    b"Before /* */ ops */ Test\nCase ",
                    b"Before  ops */ Test\nCase ",
                ),
                (b"/*Test\r\nCase */After", b"After"),
                (b"Test\nCase /**/ After", b"Test\nCase  After"),
                (b"Test\r\nCase */After", b"Test\r\nCase */After"),
                (b"Test/*\nCase */ After", b"Test After"),
                (b"SELECT/**//**/UNION", b"SELECT/**/UNION"),
                // v3 gives "SELECTUNION" and "foobar" here: it examines the byte after a close.
                (b"foo<!-- comment 1 --><!-- comment 2 -->bar", b"foo<!"),
                (b"hello /* comment */ world", b"hello  world"),
                (b"hello <!-- comment --> world", b"hello  world"),
                (b"hello /* unclosed", b"hello  "),
                (b"hello <!-- unclosed", b"hello  "),
                (b"hello -- rest", b"hello "),
                (b"hello # rest", b"hello "),
                (b"1-1", b"1-1"),
            ],
        );
    }

    #[test]
    fn remove_comments_char() {
        check(
            T::RemoveCommentsChar,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"/* TestCase */", b" TestCase "),
                (b"SELECT/**/UNION", b"SELECTUNION"),
                (b"<!-- x -->", b" x "),
                (b"a--b#c", b"abc"),
                (b"a-b*c/d<e!", b"a-b*c/d<e!"),
                (b"---->", b""),
                (b"<!-", b"<!-"),
            ],
        );
    }

    #[test]
    fn replace_comments() {
        check(
            T::ReplaceComments,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"Test\0Case"),
                (b"/* TestCase */", b" "),
                (b"/*TestCase*/", b" "),
                (b"Before/* TestCase */After", b"Before After"),
                (b"Before /* TestCase */ After", b"Before   After"),
                (b"/* Test\r\nCase */", b" "),
                (b"Before/* Test\r\nCase ", b"Before "),
                (b"Before /* Test\nCase ", b"Before  "),
                (b"Test\r\nCase */After", b"Test\r\nCase */After"),
                (b"Test\nCase */ After", b"Test\nCase */ After"),
                (b"SELECT/**/UNION/*x*/ALL", b"SELECT UNION ALL"),
                (b"/*/", b" "),
                (b"/**/*/", b" */"),
            ],
        );
    }

    #[test]
    fn cmd_line() {
        check(
            T::CmdLine,
            &[
                (b"", b""),
                (b"test", b"test"),
                (b"C^OMMAND /C DIR", b"command/c dir"),
                (b"C^oMMaNd /C DiR", b"command/c dir"),
                (b"cmd,/c DiR", b"cmd/c dir"),
                (b"\"command\" /c DiR", b"command/c dir"),
                (b"a b", b"a b"),
                (b"a  b", b"a b"),
                (b"a \"/b", b"a/b"),
                (b"a \"b", b"a b"),
                (b"echo (x)", b"echo(x)"),
                (b"a;b,c\td\r\ne", b"a b c d e"),
                (b"/bin/sh", b"/bin/sh"),
                (b" /x", b"/x"),
                (b"x ", b"x "),
                (b"\\w\\h\\o\\a\\m\\i", b"whoami"),
                (b"w'h'o\"am\"i", b"whoami"),
            ],
        );
    }

    #[test]
    fn normalize_path() {
        check(
            T::NormalizePath,
            &[
                (b"", b""),
                (b"/foo/bar/baz", b"/foo/bar/baz"),
                (b"/foo/bar\0/baz", b"/foo/bar\0/baz"),
                (b"x", b"x"),
                (b".", b""),
                (b"./", b""),
                (b"./..", b".."),
                (b"./../", b"../"),
                (b"..", b".."),
                (b"../", b"../"),
                (b"../.", b".."),
                (b".././", b"../"),
                (b"../..", b"../.."),
                (b"../../", b"../../"),
                (b"/dir/foo//bar", b"/dir/foo/bar"),
                (b"dir/foo//bar/", b"dir/foo/bar/"),
                (b"dir/../foo", b"foo"),
                (b"dir/../../foo", b"../foo"),
                (b"dir/./.././../../foo/bar", b"../../foo/bar"),
                (b"dir/./.././../../foo/bar/.", b"../../foo/bar"),
                (b"dir/./.././../../foo/bar/./", b"../../foo/bar/"),
                (b"dir/./.././../../foo/bar/..", b"../../foo"),
                (b"dir/./.././../../foo/bar/../", b"../../foo/"),
                (b"dir/./.././../../foo/bar/", b"../../foo/bar/"),
                (b"dir//.//..//.//..//..//foo//bar", b"../../foo/bar"),
                (b"dir//.//..//.//..//..//foo//bar//", b"../../foo/bar/"),
                (b"dir/subdir/subsubdir/subsubsubdir/../../..", b"dir"),
                (b"dir/./subdir/./subsubdir/./subsubsubdir/../../..", b"dir"),
                (b"dir/./subdir/../subsubdir/../subsubsubdir/..", b"dir"),
                (b"/dir/./subdir/../subsubdir/../subsubsubdir/../", b"/dir/"),
                (
                    b"/./.././../../../../../../../\0/../etc/./passwd",
                    b"/etc/passwd",
                ),
                // The root keeps one slash (Coraza: "//" stays "//" and "/" becomes "//").
                (b"/", b"/"),
                (b"//", b"/"),
                (b"/../", b"/"),
                (b"/..", b"/"),
                (b"a\\..\\b", b"a\\..\\b"),
                (b"...", b"..."),
                (b"a/.../b", b"a/.../b"),
                (b"..a/b..", b"..a/b.."),
            ],
        );
    }

    #[test]
    fn normalize_path_win() {
        check(
            T::NormalizePathWin,
            &[
                (b"", b""),
                (b"\\foo\\bar\\baz", b"/foo/bar/baz"),
                (b"\\foo\\bar\0\\baz", b"/foo/bar\0/baz"),
                (b"x", b"x"),
                (b".", b""),
                (b".\\", b""),
                (b".\\..", b".."),
                (b".\\..\\", b"../"),
                (b"..", b".."),
                (b"..\\", b"../"),
                (b"..\\.", b".."),
                (b"..\\.\\", b"../"),
                (b"..\\..", b"../.."),
                (b"..\\..\\", b"../../"),
                (b"\\dir\\foo\\\\bar", b"/dir/foo/bar"),
                (b"dir\\foo\\\\bar\\", b"dir/foo/bar/"),
                (b"dir\\..\\foo", b"foo"),
                (b"dir\\..\\..\\foo", b"../foo"),
                (b"dir\\.\\..\\.\\..\\..\\foo\\bar", b"../../foo/bar"),
                (b"dir\\.\\..\\.\\..\\..\\foo\\bar\\.", b"../../foo/bar"),
                (b"dir\\.\\..\\.\\..\\..\\foo\\bar\\.\\", b"../../foo/bar/"),
                (b"dir\\.\\..\\.\\..\\..\\foo\\bar\\..", b"../../foo"),
                (b"dir\\.\\..\\.\\..\\..\\foo\\bar\\..\\", b"../../foo/"),
                (b"dir\\.\\..\\.\\..\\..\\foo\\bar\\", b"../../foo/bar/"),
                (
                    b"dir\\\\.\\\\..\\\\.\\\\..\\\\..\\\\foo\\\\bar",
                    b"../../foo/bar",
                ),
                (
                    b"dir\\\\.\\\\..\\\\.\\\\..\\\\..\\\\foo\\\\bar\\\\",
                    b"../../foo/bar/",
                ),
                (b"dir\\subdir\\subsubdir\\subsubsubdir\\..\\..\\..", b"dir"),
                (
                    b"dir\\.\\subdir\\.\\subsubdir\\.\\subsubsubdir\\..\\..\\..",
                    b"dir",
                ),
                (
                    b"dir\\.\\subdir\\..\\subsubdir\\..\\subsubsubdir\\..",
                    b"dir",
                ),
                (
                    b"\\dir\\.\\subdir\\..\\subsubdir\\..\\subsubsubdir\\..\\",
                    b"/dir/",
                ),
                (
                    b"\\.\\..\\.\\..\\..\\..\\..\\..\\..\\..\\\\0\\..\\etc\\.\\passwd",
                    b"/etc/passwd",
                ),
                (b"/mixed\\sep/", b"/mixed/sep/"),
                (b"c:\\windows\\..\\boot.ini", b"c:/boot.ini"),
            ],
        );
    }

    #[test]
    fn trims() {
        check(
            T::Trim,
            &[
                (b"", b""),
                (b"Test Case", b"Test Case"),
                (b"  Test Case  ", b"Test Case"),
                (b"\t\n\x0b\x0c\r Test\0Case \r\x0c\x0b\n\t", b"Test\0Case"),
                (b"   ", b""),
                (b"\xa0x\xa0", b"\xa0x\xa0"),
            ],
        );
        check(
            T::TrimLeft,
            &[
                (b"", b""),
                (b"  Test Case  ", b"Test Case  "),
                (b"x ", b"x "),
                (b" ", b""),
            ],
        );
        check(
            T::TrimRight,
            &[
                (b"", b""),
                (b"  Test Case  ", b"  Test Case"),
                (b" x", b" x"),
                (b"\t", b""),
            ],
        );
    }
}
