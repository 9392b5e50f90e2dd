//! Transformations: the `t:` actions applied to a value before an operator sees it.
//!
//! Owns the byte-exact behaviour of every [`Transformation`]: one entry point, [`apply`], that
//! writes into a caller-owned buffer, and [`output_bound`], the documented worst-case output
//! size. It must not allocate beyond growing that buffer, keep state between calls, take locks,
//! or panic: inputs are raw request bytes (not UTF-8, possibly hostile), so every function here
//! is total, linear in the input, and bounded in output.
//!
//! # Reference semantics
//!
//! The CRS regression suite is run against Coraza, so where ModSecurity v2, libmodsecurity v3 and
//! Coraza disagree we follow Coraza's current behaviour and say so on the function. The families:
//!
//! - `decode.rs`: urlDecode, urlDecodeUni, htmlEntityDecode, jsDecode, cssDecode, escapeSeqDecode,
//!   base64Decode, base64DecodeExt, hexDecode, sqlHexDecode, utf8toUnicode.
//! - `normalize.rs`: lowercase, uppercase, compressWhitespace, removeWhitespace, removeNulls,
//!   replaceNulls, removeComments, removeCommentsChar, replaceComments, cmdLine, normalizePath,
//!   normalizePathWin, trim, trimLeft, trimRight.
//! - `digest.rs`: sha1, hexEncode, length, urlEncode.
//!
//! # The unchanged fast path
//!
//! Most values contain nothing to decode. Every transformation is therefore split into a
//! read-only `scan` that finds the first offset where the output can differ from the input, and
//! a `write` that produces the output from that offset on. When the scan finds nothing, [`apply`]
//! returns `false` without touching `out` and the caller keeps borrowing its input. A scan only
//! reports an offset when the output really differs (each family documents why its decoded
//! forms can never reproduce their source), which the property tests and the fuzz target check.

mod bestfit;
mod decode;
mod digest;
mod entities;
mod normalize;

pub use crate::seclang::transformation::Transformation;

/// Applies `t` to `input`.
///
/// Writes the result into `out` (cleared first) and returns `true`, or returns `false` — leaving
/// `out` untouched — when the output would equal the input; the caller then keeps using `input`.
/// Total: never panics, runs in time linear in `input.len()`, and the output never exceeds
/// [`output_bound`]`(t, input.len())` bytes.
pub fn apply(t: Transformation, input: &[u8], out: &mut Vec<u8>) -> bool {
    let k = kernel(t);
    let Some(start) = (k.scan)(input) else {
        return false;
    };
    let start = start.min(input.len());
    out.clear();
    out.reserve(input.len());
    out.extend_from_slice(input.get(..start).unwrap_or_default());
    (k.write)(input, start, out);
    debug_assert!(
        out.as_slice() != input,
        "{} reported a change that did not happen",
        t.name()
    );
    true
}

/// The largest output [`apply`] can produce for `t` on an input of `input_len` bytes.
///
/// - `hexEncode`: twice the input; `utf8toUnicode`: six times (an invalid byte becomes `%ufffd`);
///   `urlEncode` and `removeWhitespace`: three times (`%hh`; an invalid UTF-8 byte becomes U+FFFD).
/// - `sha1`: 20 bytes; `length`: 20 digits (the longest `usize`).
/// - Everything else only removes or shortens: at most the input length.
pub fn output_bound(t: Transformation, input_len: usize) -> usize {
    use Transformation as T;
    match t {
        T::HexEncode => input_len.saturating_mul(2),
        T::Utf8ToUnicode => input_len.saturating_mul(6),
        T::UrlEncode | T::RemoveWhitespace => input_len.saturating_mul(3),
        T::Sha1 | T::Length => 20,
        _ => input_len,
    }
}

/// A transformation as a (scan, write) pair; see "The unchanged fast path" above.
///
/// `scan(input)` returns `None` only when the output equals the input. `Some(start)` promises
/// that the output differs, that its first `start` bytes are `input[..start]`, and that the
/// decoder is in its initial state at `start`. `write(input, start, out)` appends the output
/// for `input[start..]`; `write(input, 0, out)` is the whole transformation.
#[derive(Clone, Copy)]
struct Kernel {
    scan: fn(&[u8]) -> Option<usize>,
    write: fn(&[u8], usize, &mut Vec<u8>),
}

fn kernel(t: Transformation) -> Kernel {
    use Transformation as T;
    match t {
        T::UrlDecode => decode::URL_DECODE,
        T::UrlDecodeUni => decode::URL_DECODE_UNI,
        T::HtmlEntityDecode => decode::HTML_ENTITY_DECODE,
        T::JsDecode => decode::JS_DECODE,
        T::CssDecode => decode::CSS_DECODE,
        T::EscapeSeqDecode => decode::ESCAPE_SEQ_DECODE,
        T::Base64Decode => decode::BASE64_DECODE,
        T::Base64DecodeExt => decode::BASE64_DECODE_EXT,
        T::HexDecode => decode::HEX_DECODE,
        T::SqlHexDecode => decode::SQL_HEX_DECODE,
        T::Utf8ToUnicode => decode::UTF8_TO_UNICODE,
        T::Lowercase => normalize::LOWERCASE,
        T::Uppercase => normalize::UPPERCASE,
        T::CompressWhitespace => normalize::COMPRESS_WHITESPACE,
        T::RemoveWhitespace => normalize::REMOVE_WHITESPACE,
        T::RemoveNulls => normalize::REMOVE_NULLS,
        T::ReplaceNulls => normalize::REPLACE_NULLS,
        T::RemoveComments => normalize::REMOVE_COMMENTS,
        T::RemoveCommentsChar => normalize::REMOVE_COMMENTS_CHAR,
        T::ReplaceComments => normalize::REPLACE_COMMENTS,
        T::CmdLine => normalize::CMD_LINE,
        T::NormalizePath => normalize::NORMALIZE_PATH,
        T::NormalizePathWin => normalize::NORMALIZE_PATH_WIN,
        T::Trim => normalize::TRIM,
        T::TrimLeft => normalize::TRIM_LEFT,
        T::TrimRight => normalize::TRIM_RIGHT,
        T::Sha1 => digest::SHA1,
        T::HexEncode => digest::HEX_ENCODE,
        T::Length => digest::LENGTH,
        T::UrlEncode => digest::URL_ENCODE,
    }
}

// ---- Byte helpers shared by the families -------------------------------------------------

/// Value of each byte as a hexadecimal digit, `0xff` when it is not one.
const HEX_VALUES: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The value of a hexadecimal digit.
#[inline]
fn hex_value(b: u8) -> Option<u8> {
    match HEX_VALUES[b as usize] {
        0xff => None,
        v => Some(v),
    }
}

/// The hexadecimal digit at `s[i]`, if there is one.
#[inline]
fn hex_at(s: &[u8], i: usize) -> Option<u8> {
    s.get(i).and_then(|&b| hex_value(b))
}

/// The byte written as two hexadecimal digits at `s[i..i + 2]`, if both are digits.
#[inline]
fn hex_pair_at(s: &[u8], i: usize) -> Option<u8> {
    Some(hex_at(s, i)? << 4 | hex_at(s, i.checked_add(1)?)?)
}

/// Appends `cp` as UTF-8; surrogates and values above U+10FFFF become U+FFFD, as Go's
/// `utf8.EncodeRune` does (Coraza's decoders rely on it).
fn push_utf8(out: &mut Vec<u8>, cp: u32) {
    let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// The UTF-8 encoding of U+FFFD, written in place of invalid bytes.
const REPLACEMENT_UTF8: &[u8] = "\u{fffd}".as_bytes();

/// Decodes one code point at the start of `s` with Go's `utf8.DecodeRune` rules, which Coraza
/// inherits: a valid shortest-form sequence gives `(Some(cp), len)`, anything else (a stray
/// continuation byte, a truncated, overlong or surrogate sequence) gives `(None, 1)`, so each
/// invalid byte is one unit. `s` must not be empty (an empty slice gives `(None, 1)` too).
fn decode_utf8(s: &[u8]) -> (Option<u32>, usize) {
    let Some(&b0) = s.first() else {
        return (None, 1);
    };
    if b0 < 0x80 {
        return (Some(u32::from(b0)), 1);
    }
    let cont = |k: usize, lo: u8, hi: u8| -> Option<u32> {
        s.get(k)
            .filter(|&&b| (lo..=hi).contains(&b))
            .map(|&b| u32::from(b & 0x3f))
    };
    let lead = u32::from(b0);
    let decoded = match b0 {
        0xc2..=0xdf => cont(1, 0x80, 0xbf).map(|c1| ((lead & 0x1f) << 6 | c1, 2)),
        0xe0..=0xef => {
            let (lo, hi) = match b0 {
                0xe0 => (0xa0, 0xbf),
                0xed => (0x80, 0x9f),
                _ => (0x80, 0xbf),
            };
            cont(1, lo, hi)
                .zip(cont(2, 0x80, 0xbf))
                .map(|(c1, c2)| ((lead & 0x0f) << 12 | c1 << 6 | c2, 3))
        }
        0xf0..=0xf4 => {
            let (lo, hi) = match b0 {
                0xf0 => (0x90, 0xbf),
                0xf4 => (0x80, 0x8f),
                _ => (0x80, 0xbf),
            };
            match (cont(1, lo, hi), cont(2, 0x80, 0xbf), cont(3, 0x80, 0xbf)) {
                (Some(c1), Some(c2), Some(c3)) => {
                    Some(((lead & 0x07) << 18 | c1 << 12 | c2 << 6 | c3, 4))
                }
                _ => None,
            }
        }
        _ => None,
    };
    match decoded {
        Some((cp, len)) => (Some(cp), len),
        None => (None, 1),
    }
}

#[cfg(test)]
mod tests;
