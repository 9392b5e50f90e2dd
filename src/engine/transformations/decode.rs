//! Decoders: URL (`%XX`, `%uXXXX`), HTML character references, JavaScript, CSS and C escapes,
//! base64, hexadecimal, SQL `0x` literals, and UTF-8 → `%uXXXX`.
//!
//! Owns the escape grammars and their leniency. Invalid or truncated escapes are kept as they
//! are (never an error): a WAF must see what the application would see, and applications are
//! lenient too. Only `utf8toUnicode` ever lengthens a value (and writes ASCII where the input
//! had a non-ASCII byte); every other decoded escape is shorter than its source, or as long but
//! starting with a different byte. That is why a scan that finds one escape proves a change.

use memchr::{memchr, memchr2};

use super::{bestfit, decode_utf8, entities, hex_at, hex_pair_at, hex_value, push_utf8, Kernel};

/// Copies `s[from..to]` (clamped) to `out`.
#[inline]
fn copy(out: &mut Vec<u8>, s: &[u8], from: usize, to: usize) {
    if let Some(run) = s.get(from..to.min(s.len())) {
        out.extend_from_slice(run);
    }
}

// ---- urlDecode, urlDecodeUni ---------------------------------------------------------------

/// `urlDecode`: `%XX` → byte, `+` → space; a `%` without two hex digits after it is kept.
/// Output ≤ input. (ModSecurity v2/v3 and Coraza agree.)
pub(super) const URL_DECODE: Kernel = Kernel {
    scan: url_scan,
    write: url_write,
};

/// `urlDecodeUni`: `urlDecode` plus the IIS `%uXXXX` form (`u` or `U`). A `%uXXXX` with a
/// code page 20127 best-fit entry becomes that ASCII byte (U+2019 → `'`); otherwise its low
/// byte, plus 0x20 for the fullwidth forms U+FF01–U+FF5E (so U+FF1C → `<`). A `%u` without four
/// hex digits is kept as is. Output ≤ input.
///
/// Follows Coraza, whose built-in best-fit table equals the `unicode.mapping` (code page 20127)
/// the CRS containers load into ModSecurity; without a map, ModSecurity keeps only the low byte.
pub(super) const URL_DECODE_UNI: Kernel = Kernel {
    scan: url_uni_scan,
    write: url_uni_write,
};

/// The decoded byte and the length of the escape starting at `s[i]` (`%` or `+`).
#[inline]
fn url_escape(s: &[u8], i: usize, uni: bool) -> Option<(u8, usize)> {
    match s.get(i)? {
        b'+' => Some((b' ', 1)),
        b'%' => {
            if uni && matches!(s.get(i + 1), Some(b'u' | b'U')) {
                // Without four hex digits the `%u` is kept: the `u` never starts a `%XX`.
                let h = [
                    hex_at(s, i + 2)?,
                    hex_at(s, i + 3)?,
                    hex_at(s, i + 4)?,
                    hex_at(s, i + 5)?,
                ];
                Some((uni_byte(h), 6))
            } else {
                Some((hex_pair_at(s, i + 1)?, 3))
            }
        }
        _ => None,
    }
}

/// The byte `%uXXXX` (digit values `h`) decodes to.
fn uni_byte(h: [u8; 4]) -> u8 {
    let cp = u16::from(h[0]) << 12 | u16::from(h[1]) << 8 | u16::from(h[2]) << 4 | u16::from(h[3]);
    if let Some(b) = bestfit::fold(cp) {
        return b;
    }
    let low = h[2] << 4 | h[3];
    if low > 0x00 && low < 0x5f && h[0] == 0xf && h[1] == 0xf {
        low + 0x20
    } else {
        low
    }
}

fn url_scan_with(s: &[u8], uni: bool) -> Option<usize> {
    let mut i = 0;
    loop {
        let p = i + memchr2(b'%', b'+', s.get(i..)?)?;
        if url_escape(s, p, uni).is_some() {
            return Some(p);
        }
        i = p + 1;
    }
}

fn url_write_with(s: &[u8], mut i: usize, out: &mut Vec<u8>, uni: bool) {
    while let Some(rest) = s.get(i..) {
        let Some(off) = memchr2(b'%', b'+', rest) else {
            out.extend_from_slice(rest);
            return;
        };
        let p = i + off;
        copy(out, s, i, p);
        match url_escape(s, p, uni) {
            Some((b, len)) => {
                out.push(b);
                i = p + len;
            }
            None => {
                out.push(b'%');
                i = p + 1;
            }
        }
    }
}

fn url_scan(s: &[u8]) -> Option<usize> {
    url_scan_with(s, false)
}
fn url_write(s: &[u8], i: usize, out: &mut Vec<u8>) {
    url_write_with(s, i, out, false)
}
fn url_uni_scan(s: &[u8]) -> Option<usize> {
    url_scan_with(s, true)
}
fn url_uni_write(s: &[u8], i: usize, out: &mut Vec<u8>) {
    url_write_with(s, i, out, true)
}

// ---- htmlEntityDecode ----------------------------------------------------------------------

/// `htmlEntityDecode`: HTML character references, decoded the way Coraza does it — with Go's
/// `x/net/html` unescaper, i.e. the HTML standard's rules — into UTF-8:
///
/// - `&#DDD;` / `&#xHH;` (semicolon optional); 0x80–0x9F are read as Windows-1252, and 0,
///   surrogates and values above U+10FFFF become U+FFFD. Digits accumulate in a wrapping 32-bit
///   integer exactly as Go's `rune` does. Go quirks kept: a reference needs at least three
///   characters after `&` to be considered (`&#5` at the very end stays), a decimal reference
///   with a single digit and no `;` stays (`&#5a`), and `&#x;` is U+FFFD.
/// - The HTML standard's named references (`&nbsp;` → U+00A0, `&NotEqualTilde;` → two code
///   points) except `&nLt;` and `&nGt;`, which Go leaves out; the 106 legacy names also match
///   without `;` and as a prefix (`&notin` → `¬in`).
/// - Anything else is kept as is.
///
/// ModSecurity instead writes one byte per reference (the low byte of a numeric one, 0xA0 for
/// `&nbsp;`) and knows only `quot amp lt gt nbsp`; CRS is tested against Coraza, so we follow
/// Coraza. No reference decodes to more bytes than it is written with: output ≤ input.
pub(super) const HTML_ENTITY_DECODE: Kernel = Kernel {
    scan: html_scan,
    write: html_write,
};

/// What one `&` at the start of a slice stands for.
enum Reference {
    /// `len` bytes decode to `first` (and `second`, for the two-code-point names).
    Decoded {
        len: usize,
        first: u32,
        second: Option<u32>,
    },
    /// The first `len` bytes are copied unchanged.
    Literal { len: usize },
}

/// Parses the reference at the start of `s` (`s[0] == b'&'`), following Go's
/// `x/net/html.unescapeEntity` (not in attribute mode).
fn parse_reference(s: &[u8]) -> Reference {
    use Reference::{Decoded, Literal};
    if s.len() <= 1 {
        return Literal { len: 1 };
    }
    if s.get(1) == Some(&b'#') {
        if s.len() <= 3 {
            return Literal { len: 1 };
        }
        let hex = matches!(s.get(2), Some(b'x' | b'X'));
        let (mut i, radix) = if hex { (3, 16) } else { (2, 10) };
        let mut x: i32 = 0;
        while let Some(&c) = s.get(i) {
            i += 1;
            let digit = if hex {
                hex_value(c)
            } else {
                c.is_ascii_digit().then(|| c - b'0')
            };
            if let Some(d) = digit {
                x = x.wrapping_mul(radix).wrapping_add(i32::from(d));
                continue;
            }
            if c != b';' {
                i -= 1;
            }
            break;
        }
        if i <= 3 {
            return Literal { len: 1 };
        }
        let cp = if (0x80..=0x9f).contains(&x) {
            entities::repair_c1(x.unsigned_abs())
        } else if x == 0 || (0xd800..=0xdfff).contains(&x) || !(0..=0x10ffff).contains(&x) {
            0xfffd
        } else {
            x.unsigned_abs()
        };
        return Decoded {
            len: i,
            first: cp,
            second: None,
        };
    }
    let mut i = 1;
    while let Some(&c) = s.get(i) {
        i += 1;
        if c.is_ascii_alphanumeric() {
            continue;
        }
        if c != b';' {
            i -= 1;
        }
        break;
    }
    let name = s.get(1..i).unwrap_or_default();
    if name.is_empty() {
        return Literal { len: i };
    }
    if let Some((first, second)) = entities::lookup(name) {
        return Decoded {
            len: i,
            first,
            second,
        };
    }
    // A legacy name may end early: "&notit;" is "¬" followed by "it;".
    let longest = (name.len() - 1).min(entities::LONGEST_WITHOUT_SEMICOLON);
    for j in (2..=longest).rev() {
        if let Some((first, None)) = name.get(..j).and_then(entities::lookup) {
            return Decoded {
                len: j + 1,
                first,
                second: None,
            };
        }
    }
    Literal { len: i }
}

fn html_scan(s: &[u8]) -> Option<usize> {
    let mut i = memchr(b'&', s)?;
    loop {
        match parse_reference(s.get(i..)?) {
            Reference::Decoded { .. } => return Some(i),
            Reference::Literal { len } => {
                i += len;
                i += memchr(b'&', s.get(i..)?)?;
            }
        }
    }
}

fn html_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    while let Some(rest) = s.get(i..) {
        let Some(off) = memchr(b'&', rest) else {
            out.extend_from_slice(rest);
            return;
        };
        let p = i + off;
        copy(out, s, i, p);
        let tail = s.get(p..).unwrap_or_default();
        match parse_reference(tail) {
            Reference::Decoded { len, first, second } => {
                push_utf8(out, first);
                if let Some(second) = second {
                    push_utf8(out, second);
                }
                i = p + len;
            }
            Reference::Literal { len } => {
                copy(out, s, p, p + len);
                i = p + len;
            }
        }
    }
}

// ---- jsDecode ------------------------------------------------------------------------------

/// `jsDecode`: JavaScript string escapes, one byte each:
///
/// - `\uHHHH` → its low byte, plus 0x20 for U+FF01–U+FF5E; `\u{H…}` (1–6 digits, ES2015)
///   likewise, folded on the full value (Coraza #1657).
/// - `\xHH` → the byte; `\OOO` octal (up to three digits, only two when the first is above 3, so
///   the value fits a byte).
/// - `\a \b \f \n \r \t \v` → control characters; `\` + any other byte → that byte.
/// - A `\` at the very end is kept.
///
/// The octal rule is ModSecurity's (and Coraza's test data); Coraza's own octal branch reads the
/// backslash as a digit, which its test vectors (`\163` → `s`) contradict. Output ≤ input.
pub(super) const JS_DECODE: Kernel = Kernel {
    scan: backslash_not_last,
    write: js_write,
};

/// The first backslash, if a byte follows it (every such backslash starts an escape).
fn backslash_not_last(s: &[u8]) -> Option<usize> {
    let i = memchr(b'\\', s)?;
    (i + 1 < s.len()).then_some(i)
}

fn is_octal(b: Option<&u8>) -> bool {
    matches!(b, Some(b'0'..=b'7'))
}

/// The value of the octal digits `s[from..to]` (at most three), truncated to a byte.
fn octal_byte(s: &[u8], from: usize, to: usize) -> u8 {
    let digits = s.get(from..to).unwrap_or_default();
    let value = digits
        .iter()
        .fold(0u32, |v, &d| v * 8 + u32::from(d.wrapping_sub(b'0') & 7));
    (value & 0xff) as u8
}

/// The control character a C-style single-letter escape names, or the letter itself.
fn c_escape(c: u8) -> u8 {
    match c {
        b'a' => 0x07,
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        other => other,
    }
}

/// The decoded byte and length of the JavaScript escape at `s[p]`, a backslash followed by
/// `next`.
fn js_escape(s: &[u8], p: usize, next: u8) -> (u8, usize) {
    if next == b'u' && s.get(p + 2) == Some(&b'{') {
        let digits = (0..6)
            .take_while(|&k| hex_at(s, p + 3 + k).is_some())
            .count();
        if digits > 0 && s.get(p + 3 + digits) == Some(&b'}') {
            let code = (0..digits)
                .filter_map(|k| hex_at(s, p + 3 + k))
                .fold(0u32, |v, d| v << 4 | u32::from(d));
            let mut b = (code & 0xff) as u8;
            if (0xff01..=0xff5e).contains(&code) {
                b = b.wrapping_add(0x20);
            }
            return (b, digits + 4);
        }
    }
    if next == b'u' {
        if let (Some(h2), Some(h3), Some(low)) =
            (hex_at(s, p + 2), hex_at(s, p + 3), hex_pair_at(s, p + 4))
        {
            let fullwidth = h2 == 0xf && h3 == 0xf && low > 0x00 && low < 0x5f;
            return (if fullwidth { low + 0x20 } else { low }, 6);
        }
    }
    if next == b'x' {
        if let Some(b) = hex_pair_at(s, p + 2) {
            return (b, 4);
        }
    }
    if is_octal(Some(&next)) {
        let mut digits = (0..3).take_while(|&k| is_octal(s.get(p + 1 + k))).count();
        if digits == 3 && next > b'3' {
            digits = 2;
        }
        return (octal_byte(s, p + 1, p + 1 + digits), 1 + digits);
    }
    (c_escape(next), 2)
}

fn js_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    while let Some(rest) = s.get(i..) {
        let Some(off) = memchr(b'\\', rest) else {
            out.extend_from_slice(rest);
            return;
        };
        let p = i + off;
        copy(out, s, i, p);
        let Some(&next) = s.get(p + 1) else {
            out.push(b'\\');
            return;
        };
        let (b, len) = js_escape(s, p, next);
        out.push(b);
        i = p + len;
    }
}

// ---- cssDecode -----------------------------------------------------------------------------

/// `cssDecode`: CSS escapes per Coraza (#1658, the CSS Syntax rule): `\` + 1–6 hex digits is one
/// code point written as UTF-8 (U+FF01–U+FF5E folded to ASCII; surrogates and values above
/// U+10FFFF become U+FFFD; `\0` is a NUL byte), and one whitespace after it is swallowed;
/// `\` + newline is a line continuation (removed); `\` + any other byte is that byte; a final `\`
/// is dropped. Output ≤ input.
///
/// ModSecurity instead keeps only the last two hex digits as one raw byte. An open Coraza pull
/// request (#1677) would also treat `\` + CR / CRLF / FF as continuations; current Coraza, and we,
/// keep the CR or FF.
pub(super) const CSS_DECODE: Kernel = Kernel {
    scan: css_scan,
    write: css_write,
};

fn css_scan(s: &[u8]) -> Option<usize> {
    // Every backslash disappears from the output.
    memchr(b'\\', s)
}

fn css_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    while let Some(rest) = s.get(i..) {
        let Some(off) = memchr(b'\\', rest) else {
            out.extend_from_slice(rest);
            return;
        };
        let p = i + off;
        copy(out, s, i, p);
        i = p + 1;
        let Some(&next) = s.get(i) else {
            return;
        };
        let digits = (0..6).take_while(|&k| hex_at(s, i + k).is_some()).count();
        if digits > 0 {
            let mut cp = (0..digits)
                .filter_map(|k| hex_at(s, i + k))
                .fold(0u32, |v, d| v << 4 | u32::from(d));
            if (0xff01..=0xff5e).contains(&cp) {
                cp -= 0xfee0;
            }
            push_utf8(out, cp);
            i += digits;
            if matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)) {
                i += 1;
            }
        } else if next == b'\n' {
            i += 1;
        } else {
            out.push(next);
            i += 1;
        }
    }
}

// ---- escapeSeqDecode -----------------------------------------------------------------------

/// `escapeSeqDecode`: ANSI C escapes: `\a \b \f \n \r \t \v \\ \? \' \"`, `\xHH` (`x` or `X`),
/// `\O`–`\OOO` octal (value truncated to a byte: `\666` → 0xB6); `\` + any other byte → that
/// byte; a final `\` is kept. ModSecurity and Coraza agree. Output ≤ input.
pub(super) const ESCAPE_SEQ_DECODE: Kernel = Kernel {
    scan: backslash_not_last,
    write: escape_seq_write,
};

fn escape_seq_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    while let Some(rest) = s.get(i..) {
        let Some(off) = memchr(b'\\', rest) else {
            out.extend_from_slice(rest);
            return;
        };
        let p = i + off;
        copy(out, s, i, p);
        let Some(&next) = s.get(p + 1) else {
            out.push(b'\\');
            return;
        };
        let (b, len) = match (next, hex_pair_at(s, p + 2)) {
            (b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'\\' | b'?' | b'\'' | b'"', _) => {
                (c_escape(next), 2)
            }
            (b'x' | b'X', Some(b)) => (b, 4),
            (b'0'..=b'7', _) => {
                let digits = 1 + (0..2).take_while(|&k| is_octal(s.get(p + 2 + k))).count();
                (octal_byte(s, p + 1, p + 1 + digits), 1 + digits)
            }
            (other, _) => (other, 2),
        };
        out.push(b);
        i = p + len;
    }
}

// ---- base64Decode, base64DecodeExt ---------------------------------------------------------

/// `base64Decode`: standard alphabet, padding optional, CR and LF skipped; decoding stops at the
/// first `=`, space, non-ASCII or other invalid byte and returns what was decoded so far (a
/// trailing single sextet is dropped). Coraza's decoder; ModSecurity also stops at the first
/// invalid byte. Output ≤ ¾ of the input.
pub(super) const BASE64_DECODE: Kernel = Kernel {
    scan: nonempty,
    write: base64_write,
};

/// `base64DecodeExt`: as `base64Decode`, but whitespace (Go's `unicode.IsSpace` on the byte,
/// which includes 0x85 and 0xA0) and `.` are skipped instead of ending the input (Coraza).
pub(super) const BASE64_DECODE_EXT: Kernel = Kernel {
    scan: nonempty,
    write: base64_ext_write,
};

/// A change for every non-empty input (the decoders below always shorten it).
fn nonempty(s: &[u8]) -> Option<usize> {
    (!s.is_empty()).then_some(0)
}

/// Sextet value of each base64 character, 0xff for anything else.
const BASE64_VALUES: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < alphabet.len() {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn base64_with(s: &[u8], out: &mut Vec<u8>, ext: bool) {
    let mut acc: u32 = 0;
    let mut n = 0;
    for &c in s {
        if ext
            && (matches!(
                c,
                b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0 | b'.'
            ))
        {
            continue;
        }
        if c == b'\r' || c == b'\n' {
            continue;
        }
        let v = BASE64_VALUES[usize::from(c)];
        if v == 0xff {
            break;
        }
        acc = acc << 6 | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

fn base64_write(s: &[u8], _start: usize, out: &mut Vec<u8>) {
    base64_with(s, out, false)
}
fn base64_ext_write(s: &[u8], _start: usize, out: &mut Vec<u8>) {
    base64_with(s, out, true)
}

// ---- hexDecode -----------------------------------------------------------------------------

/// `hexDecode`: each pair of characters becomes one byte; an odd last character is dropped.
/// ModSecurity v3's semantics, digits not validated: a non-hex character contributes
/// `(c & 0xdf) - 'A' + 10` (letters and above) or `c - '0'`, in byte arithmetic, so `0z` is 0x23.
/// Coraza does not register `t:hexDecode`. Output ≤ ½ of the input.
pub(super) const HEX_DECODE: Kernel = Kernel {
    scan: nonempty,
    write: hex_decode_write,
};

/// ModSecurity's `x2c` digit value, for any byte.
fn lenient_digit(c: u8) -> u8 {
    if c >= b'A' {
        (c & 0xdf).wrapping_sub(b'A').wrapping_add(10)
    } else {
        c.wrapping_sub(b'0')
    }
}

fn hex_decode_write(s: &[u8], _start: usize, out: &mut Vec<u8>) {
    out.extend(s.chunks_exact(2).filter_map(|pair| {
        match *pair {
            [hi, lo] => Some(
                lenient_digit(hi)
                    .wrapping_mul(16)
                    .wrapping_add(lenient_digit(lo)),
            ),
            _ => None,
        }
    }));
}

// ---- sqlHexDecode --------------------------------------------------------------------------

/// `sqlHexDecode`: a `0x`/`0X` followed by at least one pair of hex digits becomes the bytes of
/// all the pairs that follow; anything else is kept (`0xz` stays). libmodsecurity v3's current
/// semantics (v2 copies the byte after a literal unexamined and stops at a decoded NUL; Coraza
/// has no such transformation). Output ≤ input.
pub(super) const SQL_HEX_DECODE: Kernel = Kernel {
    scan: sql_hex_scan,
    write: sql_hex_write,
};

fn sql_hex_at(s: &[u8], i: usize) -> bool {
    s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && hex_pair_at(s, i + 2).is_some()
}

fn sql_hex_scan(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let p = i + memchr(b'0', s.get(i..)?)?;
        if sql_hex_at(s, p) {
            return Some(p);
        }
        i = p + 1;
    }
}

fn sql_hex_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    while let Some(rest) = s.get(i..) {
        let Some(off) = memchr(b'0', rest) else {
            out.extend_from_slice(rest);
            return;
        };
        let p = i + off;
        copy(out, s, i, p);
        if sql_hex_at(s, p) {
            i = p + 2;
            while let Some(b) = hex_pair_at(s, i) {
                out.push(b);
                i += 2;
            }
        } else {
            out.push(b'0');
            i = p + 1;
        }
    }
}

// ---- utf8toUnicode -------------------------------------------------------------------------

/// `utf8toUnicode`: each UTF-8 encoded non-ASCII character becomes `%u` + its code point in
/// lower-case hex, at least four digits (`é` → `%u00e9`, `🍺` → `%u1f37a`); each byte that is
/// not part of a valid sequence becomes `%ufffd`; ASCII is kept. Coraza's behaviour (Go's
/// decoder decides validity: no overlongs, surrogates or values above U+10FFFF). Output ≤ 6×
/// the input.
pub(super) const UTF8_TO_UNICODE: Kernel = Kernel {
    scan: utf8_scan,
    write: utf8_write,
};

fn utf8_scan(s: &[u8]) -> Option<usize> {
    // `is_ascii` checks a word at a time; most values are ASCII.
    if s.is_ascii() {
        return None;
    }
    s.iter().position(|&b| b >= 0x80)
}

fn utf8_write(s: &[u8], mut i: usize, out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    while let Some(rest) = s.get(i..) {
        let ascii = rest.iter().position(|&b| b >= 0x80).unwrap_or(rest.len());
        copy(out, s, i, i + ascii);
        i += ascii;
        let Some(tail) = s.get(i..).filter(|t| !t.is_empty()) else {
            return;
        };
        let (cp, len) = decode_utf8(tail);
        match cp {
            Some(cp) => {
                out.extend_from_slice(b"%u");
                let width = if cp > 0xfffff {
                    6
                } else if cp > 0xffff {
                    5
                } else {
                    4
                };
                for k in (0..width).rev() {
                    out.push(DIGITS[((cp >> (4 * k)) & 0xf) as usize]);
                }
            }
            None => {
                out.extend_from_slice(b"%u");
                out.extend_from_slice(b"fffd");
            }
        }
        i += len;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{apply, Transformation as T};

    /// Runs `t` and returns the output (the input when unchanged).
    fn run(t: T, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if apply(t, input, &mut out) {
            out
        } else {
            input.to_vec()
        }
    }

    /// Checks every `(input, expected)` pair of a table.
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

    // Vectors below are ModSecurity's regression tests (secrules-language-tests) and Coraza's
    // transformation tests, rewritten; where Coraza differs from ModSecurity the Coraza value is
    // used and the case says so.

    const URL_COMMON: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b"TestCase", b"TestCase"),
        (b"Test%00Case", b"Test\0Case"),
        (b"Test+Case", b"Test Case"),
        (b"%+", b"% "),
        (b"%%20", b"% "),
        (b"%0g%20", b"%0g "),
        (b"%0%20", b"%0 "),
        (b"%g0%20", b"%g0 "),
        (b"%g%20", b"%g "),
        (
            b"%0%1%2%3%4%5%6%7%8%9%0%a%b%c%d%e%f",
            b"%0%1%2%3%4%5%6%7%8%9%0%a%b%c%d%e%f",
        ),
        (
            b"%g0%g1%g2%g3%g4%g5%g6%g7%g8%g9%g0%ga%gb",
            b"%g0%g1%g2%g3%g4%g5%g6%g7%g8%g9%g0%ga%gb",
        ),
        (
            b"%0g%1g%2g%ag%bg%cg%dg%eg%fg",
            b"%0g%1g%2g%ag%bg%cg%dg%eg%fg",
        ),
        (b"%", b"%"),
        (b"%0", b"%0"),
        (b"%%", b"%%"),
        (b"%0g", b"%0g"),
        (b"%gg", b"%gg"),
        (b"%4", b"%4"),
        (b"var%3d%20@.%3d%20%28%20SELECT", b"var= @.= ( SELECT"),
        (b"%41%42%43", b"ABC"),
        (b"%4a%4A", b"JJ"),
        (b"\xff%41\xfe", b"\xffA\xfe"),
        (b"a%2541", b"a%41"),
    ];

    #[test]
    fn url_decode() {
        check(T::UrlDecode, URL_COMMON);
        check(
            T::UrlDecode,
            &[
                (b"%u0041", b"%u0041"),
                (b"%u201c", b"%u201c"),
                (b"%U0041", b"%U0041"),
            ],
        );
    }

    #[test]
    fn url_decode_every_byte() {
        let mut input = b"+".to_vec();
        let mut want = b" ".to_vec();
        for b in 0..=255u8 {
            input.extend_from_slice(format!("%{b:02x}").as_bytes());
            want.push(b);
        }
        for t in [T::UrlDecode, T::UrlDecodeUni] {
            assert_eq!(run(t, &input), want, "{}", t.name());
            assert_eq!(
                run(t, &input.to_ascii_uppercase()),
                want,
                "{} upper-case",
                t.name()
            );
        }
    }

    #[test]
    fn url_decode_uni() {
        check(T::UrlDecodeUni, URL_COMMON);
        check(
            T::UrlDecodeUni,
            &[
                (b"%%u0020", b"% "),
                (b"%0g%u0020", b"%0g "),
                (b"%0%u0020", b"%0 "),
                (b"%g0%u0020", b"%g0 "),
                (b"%u%u0020", b"%u "),
                (b"%u0%u0020", b"%u0 "),
                (b"%u00%u0020", b"%u00 "),
                (b"%u000%u0020", b"%u000 "),
                (b"%u000g%u0020", b"%u000g "),
                (b"%u", b"%u"),
                (b"%u12", b"%u12"),
                (b"%u123", b"%u123"),
                (b"%u%41", b"%uA"),
                (b"%U0041", b"A"),
                (b"%u0041%u00e9%u00e8", b"Aee"),
                (
                    b"%u201cAnd he is now the governor of Georgia.",
                    b"\"And he is now the governor of Georgia.",
                ),
                (
                    b"%u201dQuoted%u2019s%u2018 word%u2014dash",
                    b"\"Quoted's' word-dash",
                ),
                (b"%u2122%u00d7", b"T\xd7"),
                (b"%uff1cscript%uFF1E", b"<script>"),
                (b"%uff00%uff5f%uff7f", b"\x00\x5f\x7f"),
            ],
        );
    }

    #[test]
    fn url_decode_uni_latin1_block() {
        // %u0000..%u00ff: C0/C1 and ASCII keep the low byte, U+00A0..U+00FF fold (test data of
        // secrules-language-tests, computed with the 20127 map).
        let mut input = b"+".to_vec();
        for cp in 0..=0xffu32 {
            input.extend_from_slice(format!("%u{cp:04x}").as_bytes());
        }
        let mut want = b" ".to_vec();
        want.extend(0..=0x9fu8);
        want.extend_from_slice(
            b"\x20\x21\x63\xa3\x24\x59\x7c\xa7\xa8\x43\x61\x3c\xac\x2d\x52\xaf\
              \xb0\xb1\x32\x33\xb4\xb5\xb6\x2e\x2c\x31\x6f\x3e\xbc\xbd\xbe\xbf\
              \x41\x41\x41\x41\x41\x41\x41\x43\x45\x45\x45\x45\x49\x49\x49\x49\
              \x44\x4e\x4f\x4f\x4f\x4f\x4f\xd7\x4f\x55\x55\x55\x55\x59\xde\xdf\
              \x61\x61\x61\x61\x61\x61\x61\x63\x65\x65\x65\x65\x69\x69\x69\x69\
              \xf0\x6e\x6f\x6f\x6f\x6f\x6f\xf7\x6f\x75\x75\x75\x75\x79\xfe\x79",
        );
        assert_eq!(run(T::UrlDecodeUni, &input), want);
    }

    #[test]
    fn url_decode_uni_low_byte_blocks() {
        // U+1100..U+11FF have no best-fit entry: the low byte.
        let mut input = b"+".to_vec();
        let mut want = b" ".to_vec();
        for cp in 0x1100..=0x11ffu32 {
            input.extend_from_slice(format!("%u{cp:04x}").as_bytes());
            want.push(cp as u8);
        }
        assert_eq!(run(T::UrlDecodeUni, &input), want);
        // U+FF01..U+FF5E: fullwidth ASCII.
        let mut input = Vec::new();
        for cp in 0xff01..=0xff5eu32 {
            input.extend_from_slice(format!("%u{cp:04x}").as_bytes());
        }
        assert_eq!(
            run(T::UrlDecodeUni, &input),
            (0x21..=0x7eu8).collect::<Vec<_>>()
        );
        // U+FF80..U+FFFF: outside the fullwidth block, the plain low byte.
        let mut input = Vec::new();
        for cp in 0xff80..=0xffffu32 {
            input.extend_from_slice(format!("%u{cp:04X}").as_bytes());
        }
        assert_eq!(
            run(T::UrlDecodeUni, &input),
            (0x80..=0xffu8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn html_entity_decode() {
        check(
            T::HtmlEntityDecode,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"Test\0Case"),
                // ModSecurity's vector; Coraza (Go) gives U+FFFD for 0 and U+00A0 for &nbsp;.
                (
                    b"&#x0;&#X0;&#x20;&#X20;&#0;&#32;\0&#100;&quot;&amp;&lt;&gt;&nbsp;",
                    "\u{fffd}\u{fffd}  \u{fffd} \0d\"&<>\u{a0}".as_bytes(),
                ),
                // Without semicolons. Go leaves "&#0" (one decimal digit, no ';') alone.
                (
                    b"&#x0&#X0&#x20&#X20&#0&#32\0&#100&quot&amp&lt&gt&nbsp",
                    "\u{fffd}\u{fffd}  &#0 \0d\"&<>\u{a0}".as_bytes(),
                ),
                // ModSecurity gives "\x03a" and "\x01a0;" for "&#3a" and "&#1a0;"; Go does not
                // decode a single decimal digit followed by a letter.
                (
                    b"&#xg;&#Xg;&#xg0;&#X2g;&#a;\0&#a2;&#3a&#a00;&#1a0;&#10a;&foo;",
                    b"&#xg;&#Xg;&#xg0;\x02g;&#a;\0&#a2;&#3a&#a00;&#1a0;\na;&foo;",
                ),
                (
                    b"&#xg&#Xg&#xg0&#X2g&#a\0&#a2&#3a&#a00&#1a0&#10a&foo",
                    b"&#xg&#Xg&#xg0\x02g&#a\0&#a2&#3a&#a00&#1a0\na&foo",
                ),
                (b"&lt;script&gt;", b"<script>"),
                (b"&amp;lt;", b"&lt;"),
                (b"&AMP;&Amp;", b"&&Amp;"),
                (
                    b"&notin;&notin &notit;",
                    "\u{2209}\u{ac}in \u{ac}it;".as_bytes(),
                ),
                (b"&ampx", b"&x"),
                (b"&NotEqualTilde;", "\u{2242}\u{338}".as_bytes()),
                (b"&nGt;&nLt;", b"&nGt;&nLt;"),
                (b"&rsquo;&rsquo", "\u{2019}&rsquo".as_bytes()),
                (b"&#128;&#x92;&#159;", "\u{20ac}\u{2019}\u{178}".as_bytes()),
                (
                    b"&#xD800;&#x110000;&#x10FFFF;",
                    "\u{fffd}\u{fffd}\u{10ffff}".as_bytes(),
                ),
                (b"&#x;", "\u{fffd}".as_bytes()),
                // Go accumulates in a wrapping int32: 2^32 + 65 is 'A', 2^31 is negative.
                (b"&#4294967361;&#2147483648;", "A\u{fffd}".as_bytes()),
                (b"&#000000065;&#x0000041;", b"AA"),
                // Truncated references stay.
                (b"&", b"&"),
                (b"&#", b"&#"),
                (b"&#x", b"&#x"),
                (b"&#1", b"&#1"),
                (b"&#12", b"\x0c"),
                (b"&#;", b"&#;"),
                (b"&;", b"&;"),
                (b"& &", b"& &"),
                (b"a&&lt;", b"a&<"),
                (b"\xff&lt;\xfe", b"\xff<\xfe"),
            ],
        );
    }

    #[test]
    fn js_decode() {
        let mut input = br#"\\a\\b\\f\\n\\r\\t\\v\?\'\"\0\12\123"#.to_vec();
        input.extend_from_slice(b"\x00\xff");
        let mut want = br#"\a\b\f\n\r\t\v?'""#.to_vec();
        want.extend_from_slice(b"\x00\x0a\x53\x00\xff");
        check(T::JsDecode, &[(&input, &want)]);
        check(
            T::JsDecode,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"Test\0Case"),
                (br"\a\b\f\n\r\t\v", b"\x07\x08\x0c\n\r\t\x0b"),
                (br"\u", b"u"),
                (br"\u\u0", b"uu0"),
                (br"\u\u0\u01", b"uu0u01"),
                (br"\u\u0\u01\u012", b"uu0u01u012"),
                (b"\\u\\u0\\u01\\u012\0", b"uu0u01u012\0"),
                (br"\", br"\"),
                (br"\\0", br"\0"),
                (br"<\163\143\162\151\160\164>", b"<script>"),
                (br"\377", b"\xff"),
                (br"\200", b"\x80"),
                (br"\400", b" 0"),
                (br"\8\9", b"89"),
                (br"\x41\x4a\x4", b"AJx4"),
                (br"\X41", b"X41"),
                (br"\u0041\u00e9", b"A\xe9"),
                (br"\uff01\uFF5E\uff00\uff5f", b"!~\x00\x5f"),
                // ES2015 code point escapes (Coraza #1657).
                (br"\u{61}\u{6c}\u{65}\u{72}\u{74}", b"alert"),
                (br"\u{ff01}\u{0ff01}\u{FF5E}", b"!!~"),
                (br"\u{}", b"u{}"),
                (br"\u{1234567}", b"u{1234567}"),
                (br"\u{41", b"u{41"),
                (br"\u{10ffff}", b"\xff"),
                (b"\xfe\\x41\xff", b"\xfeA\xff"),
            ],
        );
    }

    #[test]
    fn css_decode() {
        check(
            T::CssDecode,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"Test\0Case"),
                (
                    b"test\\a\\b\\f\\n\\r\\t\\v\\?\\'\\\"\\\0\\12\\123\\1234\\12345\\123456\\ff01\\ff5e\\\n\\\0  string",
                    "test\n\u{b}\u{f}nrtv?'\"\0\u{12}\u{123}\u{1234}\u{12345}\u{fffd}!~\0  string"
                        .as_bytes(),
                ),
                (b"test\\", b"test"),
                (
                    b"\\1A\\1 A\\1234567\\123456 7\\1x\\1 x",
                    "\u{1a}\u{1}A\u{fffd}7\u{fffd}7\u{1}x\u{1}x".as_bytes(),
                ),
                (b"caf\\e9", "caf\u{e9}".as_bytes()),
                (b"\\0", b"\0"),
                (b"\\d800", "\u{fffd}".as_bytes()),
                (b"aler\\\nt(1)", b"alert(1)"),
                (b"aler\\\r\nt(1)", b"aler\r\nt(1)"),
                (b"\\41\x19b", b"A\x19b"),
                (b"\\6A\\6B\\6C", b"jkl"),
                (b"\\41\t\tB", b"A\tB"),
                (b"\\\\", b"\\"),
            ],
        );
    }

    #[test]
    fn escape_seq_decode() {
        let mut input = br#"\a\b\f\n\r\t\v\?\'\"\0\12\123"#.to_vec();
        input.extend_from_slice(b"\x00\xff");
        let want = b"\x07\x08\x0c\n\r\t\x0b?'\"\0\nS\0\xff";
        check(T::EscapeSeqDecode, &[(&input, want)]);
        check(
            T::EscapeSeqDecode,
            &[
                (b"", b""),
                (b"TestCase", b"TestCase"),
                (b"Test\0Case", b"Test\0Case"),
                (br"\8\9\666\xag\xga\0123", b"89\xb6xagxga\n3"),
                (br"\x", b"x"),
                (br"\x\x0", b"xx0"),
                (b"\\x\\x0\0", b"xx0\0"),
                (br"\0", b"\0"),
                (br"\01", b"\x01"),
                (br"\012", b"\n"),
                (br"\", br"\"),
                (b"\\\0", b"\0"),
                (br"<\563\543\562\551\560\564>", b"<script>"),
                (br"\377\666\777\412", b"\xff\xb6\xff\n"),
                (br"\X41\x4A\\", b"AJ\\"),
            ],
        );
    }

    #[test]
    fn base64_decode() {
        check(
            T::Base64Decode,
            &[
                (b"", b""),
                (b"VGVzdENhc2U=", b"TestCase"),
                (b"VGVzdABDYXNl", b"Test\0Case"),
                (b"VGVzdENhc2U", b"TestCase"),
                (b"PA==", b"<"),
                (b"PFRFU1Q+", b"<TEST>"),
                (b"PHNjcmlwd", b"<scrip"),
                (b"PFR FU1Q+", b"<T"),
                (b"P.HNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", b""),
                (b"PHNjcmlwd.D5hbGVydCgxKTwvc2NyaXB0Pg==", b"<scrip"),
                (b"PHNjcmlwdD.5hbGVydCgxKTwvc2NyaXB0Pg==", b"<script"),
                (b"PFRFU1Q-", b"<TEST"),
                (b"FPucA9l+", b"\x14\xfb\x9c\x03\xd9\x7e"),
                (b"FPucA9k=", b"\x14\xfb\x9c\x03\xd9"),
                (b"FPucAw==", b"\x14\xfb\x9c\x03"),
                (b"Zg==", b"f"),
                (b"Zm8=", b"fo"),
                (b"Zm9v", b"foo"),
                (b"Zm9vYg==", b"foob"),
                (b"Zm9vYmE=", b"fooba"),
                (b"Zm9vYmFy", b"foobar"),
                (b"c3VyZS4=", b"sure."),
                (b"bGVhc3VyZS4=", b"leasure."),
                (b"Zm9v\r\nYmFy", b"foobar"),
                (b"Zm9v\xffYmFy", b"foo"),
                (b"Z", b""),
            ],
        );
    }

    #[test]
    fn base64_decode_ext() {
        check(
            T::Base64DecodeExt,
            &[
                (b"", b""),
                (b"VGVzdENhc2U=", b"TestCase"),
                (b"VGVzdABDYXNl", b"Test\0Case"),
                (
                    b"P.HNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
                    b"<script>alert(1)</script>",
                ),
                (b"PFR FU1Q+", b"<TEST>"),
                (
                    b"PHNjcmlwd.D5hbGVydCgxKTwvc2NyaXB0Pg==",
                    b"<script>alert(1)</script>",
                ),
                (
                    b"PHNjcmlwdD.5hbGVydCgxKTwvc2NyaXB0Pg==",
                    b"<script>alert(1)</script>",
                ),
                (b"Zm9v\t\x0b\x0c\xa0\x85YmFy", b"foobar"),
                (b"Zm9v-YmFy", b"foo"),
            ],
        );
    }

    #[test]
    fn hex_decode() {
        check(
            T::HexDecode,
            &[
                (b"", b""),
                (b"5465737443617365", b"TestCase"),
                (b"546573740043617365", b"Test\0Case"),
                (
                    b"01234567890a0z01234567890a",
                    b"\x01\x23\x45\x67\x89\x0a\x23\x01\x23\x45\x67\x89\x0a",
                ),
                (b"01234567890az", b"\x01\x23\x45\x67\x89\x0a"),
                (b"01234567890a0", b"\x01\x23\x45\x67\x89\x0a"),
                (b"48454C4C4F", b"HELLO"),
                (b"4", b""),
            ],
        );
    }

    #[test]
    fn sql_hex_decode() {
        check(
            T::SqlHexDecode,
            &[
                (b"", b""),
                (b"0x414243", b"ABC"),
                (b"ABC", b"ABC"),
                (b"00x414243", b"0ABC"),
                (b"0xz0x414243", b"0xzABC"),
                (b"0x4142430x434241", b"ABCCBA"),
                (b"0x4142430x0x434241", b"ABC0xCBA"),
                (b"0X41", b"A"),
                (b"0x4", b"0x4"),
                (b"0x414", b"A4"),
                (b"SELECT 0x61646d696e", b"SELECT admin"),
                (b"0x", b"0x"),
            ],
        );
    }

    #[test]
    fn utf8_to_unicode() {
        check(
            T::Utf8ToUnicode,
            &[
                (b"", b""),
                (b"hello world", b"hello world"),
                (b"hello\0world", b"hello\0world"),
                (
                    "ハローワールド".as_bytes(),
                    b"%u30cf%u30ed%u30fc%u30ef%u30fc%u30eb%u30c9",
                ),
                (
                    "Hello ハローワールド world".as_bytes(),
                    b"Hello %u30cf%u30ed%u30fc%u30ef%u30fc%u30eb%u30c9 world",
                ),
                ("ĤéllŌ wŏrld".as_bytes(), b"%u0124%u00e9ll%u014c w%u014frld"),
                ("hello 🍺".as_bytes(), b"hello %u1f37a"),
                ("\u{2019}".as_bytes(), b"%u2019"),
                ("\u{fffd}".as_bytes(), b"%ufffd"),
                (b"\xf4\x8f\xbf\xbf", b"%u10ffff"),
                // Invalid bytes: one %ufffd each.
                (b"a\xffb", b"a%ufffdb"),
                (b"\xe2\x82", b"%ufffd%ufffd"),
                (b"\xc0\xaf", b"%ufffd%ufffd"),
                (b"\xed\xa0\x80", b"%ufffd%ufffd%ufffd"),
                (b"\xf4\x90\x80\x80", b"%ufffd%ufffd%ufffd%ufffd"),
                (b"\xa0", b"%ufffd"),
            ],
        );
    }
}
