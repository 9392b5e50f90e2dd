//! XML request bodies → `XML:/*` (text nodes) and `XML://@*` (attribute values), the only
//! XPath forms CRS uses.
//!
//! Owns a streaming pass over the body with `quick-xml` that reproduces Coraza's
//! `internal/bodyprocessors/xml.go` (Go's `encoding/xml` with `Strict = false`,
//! `AutoClose = HTMLAutoClose`, `Entity = HTMLEntity`). Must not: build a tree, resolve
//! anything outside the body, or expand entities declared in the document.
//!
//! Semantics:
//! - every text node, trimmed of (Unicode) whitespace, is handed to [`BodySink::xml_text`]
//!   when non-empty; text is split by markup (`a<b/>c` is `a` then `c`), CDATA sections are
//!   text nodes of their own, comments and processing instructions are skipped;
//! - every attribute value of every element is handed to [`BodySink::xml_attr`] with the
//!   attribute's qualified name, untrimmed, even when empty; `xmlns` declarations included;
//!   an attribute without a value (`<a b>`) has its name as value, unquoted values are
//!   accepted (Go's non-strict mode);
//! - in text and attribute values the five XML entities, numeric character references and
//!   the HTML 4 named entities (`&nbsp;`, `&eacute;`, ...) are decoded; an unknown or
//!   malformed reference (`&xxe;`, `& `) is kept as written; CR LF and lone CR become LF;
//! - non-strict structure: a mismatched end tag closes the elements opened after the one it
//!   matches (`<a><b></a>` is fine); the HTML void elements (`br`, `img`, `input`, ...)
//!   close themselves unless their end tag follows at once;
//! - DOCTYPE declarations are skipped: no internal or external entity is ever defined,
//!   fetched or expanded (no XXE, no billion laughs); references to them stay literal.
//!
//! Errors (the values handed over before them stay with the sink): an end tag that closes
//! nothing, elements still open at the end, markup quick-xml cannot parse (an unclosed tag,
//! comment or CDATA), a declared encoding other than UTF-8/ASCII/ISO-8859-x/windows-125x or a
//! UTF-16/32 byte-order mark (Go refuses any non-UTF-8 declaration; we accept the
//! ASCII-compatible ones, whose markup and attack payloads read the same), an element
//! nesting deeper than `max_depth`, or more than `max_args` values.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{BodyError, BodyLimits, BodySink, Processor, SmallStack};

/// Open elements kept inline before the stack spills to the heap.
const INLINE_DEPTH: usize = 64;

/// Go's `encoding/xml.HTMLAutoClose`: elements considered closed right after they open.
const AUTO_CLOSE: &[&[u8]] = &[
    b"basefont",
    b"br",
    b"area",
    b"link",
    b"img",
    b"param",
    b"hr",
    b"input",
    b"col",
    b"frame",
    b"isindex",
    b"base",
    b"meta",
];

/// What a successful parse handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XmlStatus {
    /// Text nodes handed to `sink.xml_text`.
    pub texts: usize,
    /// Attribute values handed to `sink.xml_attr`.
    pub attrs: usize,
}

/// An open element: the length of its name on the name stack (kept in the scratch buffer)
/// and whether it is an HTML void element waiting to be auto-closed.
#[derive(Clone, Copy, Default)]
struct Open {
    name_len: usize,
    void: bool,
}

/// Parses `body`, handing text nodes and attribute values to the sink. `scratch` holds the
/// names of the open elements followed by the value being decoded; it is cleared first.
pub fn parse<S: BodySink + ?Sized>(
    body: &[u8],
    limits: BodyLimits,
    scratch: &mut Vec<u8>,
    sink: &mut S,
) -> Result<XmlStatus, BodyError> {
    scratch.clear();
    let body = match body {
        [0xEF, 0xBB, 0xBF, rest @ ..] => rest,
        [0xFE, 0xFF, ..] | [0xFF, 0xFE, ..] | [0, 0, 0xFE, 0xFF, ..] => {
            return Err(BodyError::malformed(
                Processor::Xml,
                "UTF-16/32 input is not supported (byte-order mark at byte 0)",
            ))
        }
        _ => body,
    };
    let mut reader = Reader::from_reader(body);
    {
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.expand_empty_elements = false;
        config.check_comments = false;
        config.trim_text(false);
    }
    let mut state = State {
        limits,
        scratch,
        sink,
        status: XmlStatus::default(),
        open: SmallStack::new(),
    };
    loop {
        let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| {
            BodyError::malformed(
                Processor::Xml,
                format!("{e} at byte {}", reader.error_position()),
            )
        })?;
        match event {
            Event::Start(e) => {
                state.auto_close(None);
                state.check_depth(state.open.len().saturating_add(1), at)?;
                state.attributes(&e, at)?;
                let name = e.name();
                let void = is_void(name.as_ref());
                state.scratch.extend_from_slice(name.as_ref());
                state.open.push(Open {
                    name_len: name.as_ref().len(),
                    void,
                });
            }
            Event::Empty(e) => {
                state.auto_close(None);
                state.check_depth(state.open.len().saturating_add(1), at)?;
                state.attributes(&e, at)?;
            }
            Event::End(e) => {
                let name = e.name();
                state.auto_close(Some(name.as_ref()));
                state.close(name.as_ref(), at)?;
            }
            Event::Text(t) => {
                state.auto_close(None);
                state.text(&t, at, true)?;
            }
            Event::CData(t) => {
                state.auto_close(None);
                state.text(&t, at, false)?;
            }
            Event::Decl(d) => {
                if let Some(Ok(encoding)) = d.encoding() {
                    if !encoding_supported(&encoding) {
                        return Err(BodyError::malformed(
                            Processor::Xml,
                            format!(
                                "unsupported encoding \"{}\" declared at byte {at}",
                                super::escape_for_message(&encoding, 32)
                            ),
                        ));
                    }
                }
            }
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) => state.auto_close(None),
            Event::Eof => {
                state.auto_close(None);
                if !state.open.is_empty() {
                    return Err(BodyError::malformed(
                        Processor::Xml,
                        format!(
                            "unexpected end of input with {} element(s) open at byte {}",
                            state.open.len(),
                            body.len()
                        ),
                    ));
                }
                return Ok(state.status);
            }
        }
    }
}

fn is_void(name: &[u8]) -> bool {
    AUTO_CLOSE
        .iter()
        .any(|v| v.eq_ignore_ascii_case(local_name(name)))
}

fn local_name(name: &[u8]) -> &[u8] {
    match memchr::memchr(b':', name) {
        Some(i) => name.get(i + 1..).unwrap_or_default(),
        None => name,
    }
}

/// Declared encodings whose bytes read like ASCII for markup and payloads.
fn encoding_supported(encoding: &[u8]) -> bool {
    let lower = |prefix: &[u8]| {
        encoding
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    [&b"utf-8"[..], b"utf8", b"us-ascii", b"ascii"]
        .iter()
        .any(|e| encoding.eq_ignore_ascii_case(e))
        || lower(b"iso-8859-")
        || lower(b"latin")
        || lower(b"windows-125")
        || lower(b"cp125")
}

struct State<'s, S: ?Sized> {
    limits: BodyLimits,
    scratch: &'s mut Vec<u8>,
    sink: &'s mut S,
    status: XmlStatus,
    open: SmallStack<Open, INLINE_DEPTH>,
}

impl<S: BodySink + ?Sized> State<'_, S> {
    fn check_depth(&self, depth: usize, at: usize) -> Result<(), BodyError> {
        if depth > self.limits.max_depth {
            return Err(BodyError::too_deep(
                Processor::Xml,
                self.limits.max_depth,
                at,
            ));
        }
        Ok(())
    }

    fn count_value(&self, at: usize) -> Result<(), BodyError> {
        if self.status.texts.saturating_add(self.status.attrs) >= self.limits.max_args {
            return Err(BodyError::too_many_args(
                Processor::Xml,
                self.limits.max_args,
                at,
            ));
        }
        Ok(())
    }

    /// Go's `autoClose`: a void element on top is closed by any token but its own end tag.
    fn auto_close(&mut self, end_tag: Option<&[u8]>) {
        let Some(top) = self.open.last().filter(|o| o.void) else {
            return;
        };
        let names_end = self.scratch.len();
        let start = names_end.saturating_sub(top.name_len);
        let top_name = self.scratch.get(start..names_end).unwrap_or_default();
        if end_tag.is_some_and(|n| local_name(n).eq_ignore_ascii_case(local_name(top_name))) {
            return;
        }
        self.open.pop();
        self.scratch.truncate(start);
    }

    /// Closes the innermost open element named `name` and every element opened after it
    /// (Go's non-strict `popElement`); an end tag matching no open element is an error.
    fn close(&mut self, name: &[u8], at: usize) -> Result<(), BodyError> {
        let mut end = self.scratch.len();
        let mut depth = self.open.len();
        while depth > 0 {
            let Some(entry) = self.open.get(depth - 1) else {
                break;
            };
            let start = end.saturating_sub(entry.name_len);
            if self.scratch.get(start..end) == Some(name) {
                for _ in depth..=self.open.len() {
                    self.open.pop();
                }
                self.scratch.truncate(start);
                return Ok(());
            }
            end = start;
            depth -= 1;
        }
        Err(BodyError::malformed(
            Processor::Xml,
            format!(
                "unexpected end element </{}> at byte {at}",
                super::escape_for_message(name, 64)
            ),
        ))
    }

    fn attributes(&mut self, element: &BytesStart<'_>, at: usize) -> Result<(), BodyError> {
        let raw = element.attributes_raw();
        let mut attributes = element.html_attributes();
        attributes.with_checks(false);
        for attribute in attributes {
            let attribute = attribute.map_err(|e| {
                BodyError::malformed(Processor::Xml, format!("{e} in the tag at byte {at}"))
            })?;
            self.count_value(at)?;
            let key = attribute.key.as_ref();
            let value: &[u8] = if attribute.value.is_empty() && valueless(raw, key) {
                key
            } else {
                &attribute.value
            };
            let base = self.scratch.len();
            decode_text(value, self.scratch);
            let (_, decoded) = self.scratch.split_at(base);
            self.sink.xml_attr(key, decoded);
            self.scratch.truncate(base);
            self.status.attrs += 1;
        }
        Ok(())
    }

    /// A text node (escaped text when `escaped`, CDATA otherwise): decoded, trimmed, handed
    /// over when non-empty.
    fn text(&mut self, raw: &[u8], at: usize, escaped: bool) -> Result<(), BodyError> {
        let trimmed = trim_unicode_space(raw);
        if trimmed.is_empty() {
            return Ok(());
        }
        let base = self.scratch.len();
        if escaped {
            decode_text(trimmed, self.scratch);
        } else {
            normalise_newlines(trimmed, self.scratch);
        }
        // Decoding can expose more whitespace (`&#32;x`): trim again.
        let value = trim_unicode_space(self.scratch.get(base..).unwrap_or_default());
        if !value.is_empty() {
            self.count_value(at)?;
            self.sink.xml_text(value);
            self.status.texts += 1;
        }
        self.scratch.truncate(base);
        Ok(())
    }
}

/// Whether the attribute `key` (a slice of `raw`, the tag's attribute text) is written
/// without `=`. Positions are compared as addresses inside the same buffer.
fn valueless(raw: &[u8], key: &[u8]) -> bool {
    let offset = (key.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    let Some(after) = raw.get(offset.saturating_add(key.len())..) else {
        return false;
    };
    after
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .map_or(true, |&b| b != b'=')
}

/// Appends `raw` with CR LF and lone CR turned into LF (Go's `encoding/xml` text rule).
fn normalise_newlines(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\r' {
            out.push(b'\n');
            i += if raw.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
        } else {
            let rest = raw.get(i..).unwrap_or_default();
            let n = memchr::memchr(b'\r', rest).unwrap_or(rest.len());
            out.extend_from_slice(rest.get(..n).unwrap_or_default());
            i += n;
        }
    }
}

/// Appends `raw` with character and entity references decoded and newlines normalised.
fn decode_text(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let rest = raw.get(i..).unwrap_or_default();
        let n = memchr::memchr(b'&', rest).unwrap_or(rest.len());
        normalise_newlines(rest.get(..n).unwrap_or_default(), out);
        i += n;
        if i >= raw.len() {
            break;
        }
        match reference(raw.get(i..).unwrap_or_default()) {
            Some((c, len)) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += len;
            }
            None => {
                out.push(b'&');
                i += 1;
            }
        }
    }
}

/// Decodes the reference at the start of `s` (which begins with `&`): the character and the
/// bytes consumed, or `None` when it is not a known, well-formed reference.
fn reference(s: &[u8]) -> Option<(char, usize)> {
    // The longest HTML 4 name is 8 bytes; numeric references are bounded by their value.
    let window = s.get(1..s.len().min(34))?;
    let semi = memchr::memchr(b';', window)?;
    let name = window.get(..semi)?;
    let c = match name {
        [b'#', b'x' | b'X', hex @ ..] => numeric(hex, 16)?,
        [b'#', dec @ ..] => numeric(dec, 10)?,
        _ => named_entity(name)?,
    };
    Some((c, semi + 2))
}

/// Go's rule: digits parse as u64 below 0x110000; surrogates become U+FFFD.
fn numeric(digits: &[u8], radix: u32) -> Option<char> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for &d in digits {
        let v = char::from(d).to_digit(radix)?;
        value = value.checked_mul(radix)?.checked_add(v)?;
        if value >= 0x11_0000 {
            return None;
        }
    }
    Some(char::from_u32(value).unwrap_or('\u{FFFD}'))
}

fn named_entity(name: &[u8]) -> Option<char> {
    let code = match name {
        b"lt" => 60,
        b"gt" => 62,
        b"amp" => 38,
        b"apos" => 39,
        b"quot" => 34,
        _ => HTML_ENTITIES
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .map(|&(_, c)| c)?,
    };
    char::from_u32(code)
}

/// Trims Unicode white space (Go's `strings.TrimSpace`) from both ends; invalid UTF-8 is
/// not white space.
fn trim_unicode_space(s: &[u8]) -> &[u8] {
    let mut start = 0;
    while let Some((c, len)) = first_char(s.get(start..).unwrap_or_default()) {
        if !c.is_whitespace() {
            break;
        }
        start += len;
    }
    let mut end = s.len();
    while end > start {
        let Some((c, len)) = last_char(s.get(start..end).unwrap_or_default()) else {
            break;
        };
        if !c.is_whitespace() {
            break;
        }
        end -= len;
    }
    s.get(start..end).unwrap_or_default()
}

fn first_char(s: &[u8]) -> Option<(char, usize)> {
    let len = match *s.first()? {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    };
    let c = std::str::from_utf8(s.get(..len)?).ok()?.chars().next()?;
    Some((c, len))
}

fn last_char(s: &[u8]) -> Option<(char, usize)> {
    let start = (1..=4.min(s.len()))
        .map(|n| s.len() - n)
        .find(|&i| s.get(i).is_some_and(|&b| b & 0xC0 != 0x80))?;
    let tail = s.get(start..)?;
    let c = std::str::from_utf8(tail).ok()?.chars().next()?;
    Some((c, tail.len()))
}

/// HTML 4.01 named character references (the table Go's `encoding/xml.HTMLEntity` holds).
#[rustfmt::skip]
const HTML_ENTITIES: &[(&str, u32)] = &[
    ("nbsp", 160), ("iexcl", 161), ("cent", 162), ("pound", 163), ("curren", 164), ("yen", 165),
    ("brvbar", 166), ("sect", 167), ("uml", 168), ("copy", 169), ("ordf", 170), ("laquo", 171),
    ("not", 172), ("shy", 173), ("reg", 174), ("macr", 175), ("deg", 176), ("plusmn", 177),
    ("sup2", 178), ("sup3", 179), ("acute", 180), ("micro", 181), ("para", 182), ("middot", 183),
    ("cedil", 184), ("sup1", 185), ("ordm", 186), ("raquo", 187), ("frac14", 188), ("frac12", 189),
    ("frac34", 190), ("iquest", 191), ("Agrave", 192), ("Aacute", 193), ("Acirc", 194),
    ("Atilde", 195), ("Auml", 196), ("Aring", 197), ("AElig", 198), ("Ccedil", 199),
    ("Egrave", 200), ("Eacute", 201), ("Ecirc", 202), ("Euml", 203), ("Igrave", 204),
    ("Iacute", 205), ("Icirc", 206), ("Iuml", 207), ("ETH", 208), ("Ntilde", 209), ("Ograve", 210),
    ("Oacute", 211), ("Ocirc", 212), ("Otilde", 213), ("Ouml", 214), ("times", 215),
    ("Oslash", 216), ("Ugrave", 217), ("Uacute", 218), ("Ucirc", 219), ("Uuml", 220),
    ("Yacute", 221), ("THORN", 222), ("szlig", 223), ("agrave", 224), ("aacute", 225),
    ("acirc", 226), ("atilde", 227), ("auml", 228), ("aring", 229), ("aelig", 230), ("ccedil", 231),
    ("egrave", 232), ("eacute", 233), ("ecirc", 234), ("euml", 235), ("igrave", 236),
    ("iacute", 237), ("icirc", 238), ("iuml", 239), ("eth", 240), ("ntilde", 241), ("ograve", 242),
    ("oacute", 243), ("ocirc", 244), ("otilde", 245), ("ouml", 246), ("divide", 247),
    ("oslash", 248), ("ugrave", 249), ("uacute", 250), ("ucirc", 251), ("uuml", 252),
    ("yacute", 253), ("thorn", 254), ("yuml", 255),
    ("fnof", 402),
    ("Alpha", 913), ("Beta", 914), ("Gamma", 915), ("Delta", 916), ("Epsilon", 917), ("Zeta", 918),
    ("Eta", 919), ("Theta", 920), ("Iota", 921), ("Kappa", 922), ("Lambda", 923), ("Mu", 924),
    ("Nu", 925), ("Xi", 926), ("Omicron", 927), ("Pi", 928), ("Rho", 929), ("Sigma", 931),
    ("Tau", 932), ("Upsilon", 933), ("Phi", 934), ("Chi", 935), ("Psi", 936), ("Omega", 937),
    ("alpha", 945), ("beta", 946), ("gamma", 947), ("delta", 948), ("epsilon", 949), ("zeta", 950),
    ("eta", 951), ("theta", 952), ("iota", 953), ("kappa", 954), ("lambda", 955), ("mu", 956),
    ("nu", 957), ("xi", 958), ("omicron", 959), ("pi", 960), ("rho", 961), ("sigmaf", 962),
    ("sigma", 963), ("tau", 964), ("upsilon", 965), ("phi", 966), ("chi", 967), ("psi", 968),
    ("omega", 969), ("thetasym", 977), ("upsih", 978), ("piv", 982),
    ("bull", 8226), ("hellip", 8230), ("prime", 8242), ("Prime", 8243), ("oline", 8254),
    ("frasl", 8260), ("weierp", 8472), ("image", 8465), ("real", 8476), ("trade", 8482),
    ("alefsym", 8501), ("larr", 8592), ("uarr", 8593), ("rarr", 8594), ("darr", 8595),
    ("harr", 8596), ("crarr", 8629), ("lArr", 8656), ("uArr", 8657), ("rArr", 8658), ("dArr", 8659),
    ("hArr", 8660), ("forall", 8704), ("part", 8706), ("exist", 8707), ("empty", 8709),
    ("nabla", 8711), ("isin", 8712), ("notin", 8713), ("ni", 8715), ("prod", 8719), ("sum", 8721),
    ("minus", 8722), ("lowast", 8727), ("radic", 8730), ("prop", 8733), ("infin", 8734),
    ("ang", 8736), ("and", 8743), ("or", 8744), ("cap", 8745), ("cup", 8746), ("int", 8747),
    ("there4", 8756), ("sim", 8764), ("cong", 8773), ("asymp", 8776), ("ne", 8800),
    ("equiv", 8801), ("le", 8804), ("ge", 8805), ("sub", 8834), ("sup", 8835), ("nsub", 8836),
    ("sube", 8838), ("supe", 8839), ("oplus", 8853), ("otimes", 8855), ("perp", 8869),
    ("sdot", 8901), ("lceil", 8968), ("rceil", 8969), ("lfloor", 8970), ("rfloor", 8971),
    ("lang", 9001), ("rang", 9002), ("loz", 9674), ("spades", 9824), ("clubs", 9827),
    ("hearts", 9829), ("diams", 9830),
    ("OElig", 338), ("oelig", 339), ("Scaron", 352), ("scaron", 353), ("Yuml", 376), ("circ", 710),
    ("tilde", 732), ("ensp", 8194), ("emsp", 8195), ("thinsp", 8201), ("zwnj", 8204), ("zwj", 8205),
    ("lrm", 8206), ("rlm", 8207), ("ndash", 8211), ("mdash", 8212), ("lsquo", 8216),
    ("rsquo", 8217), ("sbquo", 8218), ("ldquo", 8220), ("rdquo", 8221), ("bdquo", 8222),
    ("dagger", 8224), ("Dagger", 8225), ("permil", 8240), ("lsaquo", 8249), ("rsaquo", 8250),
    ("euro", 8364),
];

#[cfg(test)]
#[allow(clippy::type_complexity)] // table-driven cases
mod tests {
    use super::*;
    use crate::engine::body::testing::{crs_stages, pairs, Recorder};
    use crate::engine::body::BodyErrorKind;

    fn run_with(body: &[u8], limits: BodyLimits) -> (Recorder, Result<XmlStatus, BodyError>) {
        let mut sink = Recorder::default();
        let mut scratch = Vec::new();
        let result = parse(body, limits, &mut scratch, &mut sink);
        if let Ok(status) = &result {
            assert_eq!(status.texts, sink.xml_texts.len());
            assert_eq!(status.attrs, sink.xml_attrs.len());
        }
        (sink, result)
    }

    fn run(body: &str) -> (Vec<String>, Vec<(String, String)>) {
        let (sink, result) = run_with(body.as_bytes(), BodyLimits::UNBOUNDED);
        result.unwrap_or_else(|e| panic!("{body}: {e}"));
        let texts = sink
            .xml_texts
            .iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        let attrs = sink
            .xml_attrs
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        (texts, attrs)
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn named(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Coraza `TestXMLAttribures`.
    #[test]
    fn coraza_bookstore() {
        let (texts, attrs) = run(r#"<?xml version="1.0" encoding="UTF-8"?>
<bookstore>
<book>
  <title lang="en">Harry <bold>Potter</bold> Biography</title>
  <price secret="value">29.99</price>
</book>

<book>
  <title lang="en">Learning XML</title>
  <price>39.95</price>
</book>

</bookstore>"#);
        assert_eq!(
            texts,
            strings(&[
                "Harry",
                "Potter",
                "Biography",
                "29.99",
                "Learning XML",
                "39.95"
            ])
        );
        assert_eq!(
            attrs,
            named(&[("lang", "en"), ("secret", "value"), ("lang", "en")])
        );
    }

    /// Coraza `TestXMLPayloadFlexibility` (an unclosed `<body>` closed by `</note>`),
    /// `TestXMLWithNestedElements`, `TestXMLWithSpecialEntities`, `TestXMLWithEmptyDocument`.
    #[test]
    fn coraza_flexibility_nesting_entities() {
        let (texts, _) = run("<note>\n\t\t\t<to>Tove</to>\n\t\t\t<from>Jani</from>\n\t\t\t<heading>Reminder</heading>\n\t\t\t<body>Don't forget me this weekend!\n\t\t</note>");
        assert_eq!(
            texts,
            strings(&["Tove", "Jani", "Reminder", "Don't forget me this weekend!"])
        );
        let (texts, attrs) = run("\n\t<root>\n\t\t<level1>\n\t\t\t<level2>\n\t\t\t\t<level3 attr=\"value\">\n\t\t\t\t\t<level4>Deep content</level4>\n\t\t\t\t</level3>\n\t\t\t</level2>\n\t\t</level1>\n\t</root>\n\t");
        assert_eq!(texts, strings(&["Deep content"]));
        assert_eq!(attrs, named(&[("attr", "value")]));
        let (texts, _) = run("<root><element>Text with &lt;brackets&gt; and &amp; ampersand</element><special>A &quot;quoted&quot; text with &#39;apostrophes&#39;</special></root>");
        assert_eq!(
            texts,
            strings(&[
                "Text with <brackets> and & ampersand",
                "A \"quoted\" text with 'apostrophes'"
            ])
        );
        assert_eq!(run(""), (vec![], vec![]));
    }

    /// DOCTYPE entities are never defined nor expanded: references stay literal, nothing is
    /// fetched, the billion laughs costs nothing (Coraza's XXE and billion-laughs tests).
    #[test]
    fn no_entity_expansion() {
        let (texts, _) = run("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE test [\n<!ENTITY xxe SYSTEM \"file:///etc/passwd\">\n]>\n<root><data>&xxe;</data></root>");
        assert_eq!(texts, strings(&["&xxe;"]));
        let lol = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">]><root>&lol2;</root>";
        let (texts, _) = run(lol);
        assert_eq!(texts, strings(&["&lol2;"]));
    }

    #[test]
    fn references() {
        let cases: &[(&str, &str)] = &[
            ("&lt;&gt;&amp;&apos;&quot;", "<>&'\""),
            ("&#60;&#x3c;&#X3C;", "<<<"),
            ("&eacute;t&eacute; &euro;5 &hellip;", "été €5 …"),
            ("a&nbsp;b", "a\u{a0}b"),
            ("&unknown; &foo", "&unknown; &foo"),
            ("& &; &#; &#x; &#xZZ;", "& &; &#; &#x; &#xZZ;"),
            ("&#xD800;", "\u{FFFD}"),
            ("&#1114111;|&#1114112;", "\u{10FFFF}|&#1114112;"),
            ("&#0;x", "\u{0}x"),
            ("&Alpha;&alpha;&amp", "Αα&amp"),
            ("&AMP;", "&AMP;"),
        ];
        for (raw, want) in cases {
            let (texts, attrs) = run(&format!("<a v=\"{raw}\">{raw}</a>"));
            assert_eq!(texts, strings(&[want]), "text {raw}");
            assert_eq!(attrs, named(&[("v", want)]), "attribute {raw}");
        }
    }

    #[test]
    fn text_nodes() {
        let cases: &[(&str, &[&str])] = &[
            (
                "<a><![CDATA[ <script>alert(1)</script> ]]></a>",
                &["<script>alert(1)</script>"],
            ),
            ("<a>x<![CDATA[&lt;]]>y</a>", &["x", "&lt;", "y"]),
            ("<a>one<!-- two -->three<?pi four?></a>", &["one", "three"]),
            ("<a>  \r\n\t </a>", &[]),
            ("<a>l1\r\nl2\rl3</a>", &["l1\nl2\nl3"]),
            ("<a>&nbsp;x&#32;</a>", &["x"]),
            ("<a>\u{3000}x\u{2003}</a>", &["x"]),
            ("lead<a/>trail", &["lead", "trail"]),
            ("just text", &["just text"]),
        ];
        for (body, want) in cases {
            assert_eq!(run(body).0, strings(want), "{body}");
        }
        let (sink, result) = run_with(b"<a>\xff\xfe x</a>", BodyLimits::UNBOUNDED);
        assert!(result.is_ok());
        assert_eq!(sink.xml_texts, vec![b"\xff\xfe x".to_vec()]);
    }

    #[test]
    fn attributes() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("<a b=\"1\" c='2'/>", &[("b", "1"), ("c", "2")]),
            ("<a b=c>x</a>", &[("b", "c")]),
            ("<a onload>x</a>", &[("onload", "onload")]),
            ("<a b=\"\"/>", &[("b", "")]),
            ("<a b = \"x\"/>", &[("b", "x")]),
            ("<a b=\" x \"/>", &[("b", " x ")]),
            (
                "<s:a xmlns:s=\"urn:x\" s:b=\"v\"/>",
                &[("xmlns:s", "urn:x"), ("s:b", "v")],
            ),
            ("<a b=\"1\" b=\"2\"/>", &[("b", "1"), ("b", "2")]),
            ("<a b=\"x&#x22;y\"/>", &[("b", "x\"y")]),
        ];
        for (body, want) in cases {
            assert_eq!(run(body).1, named(want), "{body}");
        }
    }

    /// Go's non-strict structure rules.
    #[test]
    fn structure() {
        let ok: &[(&str, &[&str])] = &[
            ("<a><b>x</a>", &["x"]),
            ("<a><b><c>x</a>", &["x"]),
            ("<p>a<br>b</p>", &["a", "b"]),
            ("<p><BR>b</p>", &["b"]),
            ("<p><br></br>b</p>", &["b"]),
            ("<form><input name=q><img src=x></form>", &[]),
            ("<a></a   >", &[]),
        ];
        for (body, want) in ok {
            assert_eq!(run(body).0, strings(want), "{body}");
        }
        let bad: &[(&str, &[&str])] = &[
            ("<root><unclosed>", &[]),
            ("<a>x</b>", &["x"]),
            ("</a>", &[]),
            ("<a>x</a></a>", &["x"]),
            ("<a>x", &["x"]),
            ("<a><!-- never closed", &[]),
            ("<a><![CDATA[ never closed", &[]),
            ("<a b=\"x", &[]),
            ("<s:a></t:a>", &[]),
        ];
        for (body, kept) in bad {
            let (sink, result) = run_with(body.as_bytes(), BodyLimits::UNBOUNDED);
            let err = result.expect_err(body);
            assert_eq!(err.kind(), BodyErrorKind::Malformed, "{body}");
            assert!(err.to_string().starts_with("XML parsing error: "), "{err}");
            let texts: Vec<String> = sink
                .xml_texts
                .iter()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect();
            assert_eq!(texts, strings(kept), "{body}: values before the error stay");
        }
    }

    #[test]
    fn encodings() {
        for ok in [
            "UTF-8",
            "utf-8",
            "US-ASCII",
            "ISO-8859-1",
            "iso-8859-15",
            "windows-1252",
        ] {
            let body = format!("<?xml version=\"1.0\" encoding=\"{ok}\"?><a>x</a>");
            assert_eq!(run(&body).0, strings(&["x"]), "{ok}");
        }
        for bad in ["UTF-16", "utf-32", "EBCDIC-US", "Shift_JIS"] {
            let body = format!("<?xml version=\"1.0\" encoding=\"{bad}\"?><a>x</a>");
            let (_, result) = run_with(body.as_bytes(), BodyLimits::UNBOUNDED);
            assert!(
                result
                    .unwrap_err()
                    .message()
                    .contains("unsupported encoding"),
                "{bad}"
            );
        }
        let (sink, result) = run_with(b"\xef\xbb\xbf<a>x</a>", BodyLimits::UNBOUNDED);
        assert!(result.is_ok());
        assert_eq!(sink.xml_texts, vec![b"x".to_vec()]);
        for bom in [&b"\xfe\xff\0<"[..], b"\xff\xfe<\0"] {
            assert!(run_with(bom, BodyLimits::UNBOUNDED).1.is_err());
        }
        // Version 1.1 is accepted (Go refuses it; nothing here depends on it).
        assert_eq!(run("<?xml version=\"1.1\"?><a>x</a>").0, strings(&["x"]));
    }

    #[test]
    fn limits() {
        let limits = BodyLimits {
            max_depth: 2,
            ..BodyLimits::UNBOUNDED
        };
        assert!(run_with(b"<a><b/></a>", limits).1.is_ok());
        let (sink, result) = run_with(b"<a>t<b><c/></b></a>", limits);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), BodyErrorKind::Limit);
        assert_eq!(
            err.to_string(),
            "XML parsing error: depth limit 2 exceeded at byte 7"
        );
        assert_eq!(sink.xml_texts, vec![b"t".to_vec()]);

        let limits = BodyLimits {
            max_args: 3,
            ..BodyLimits::UNBOUNDED
        };
        assert!(run_with(b"<a x=\"1\" y=\"2\">t</a>", limits).1.is_ok());
        let (sink, result) = run_with(b"<a x=\"1\" y=\"2\">t<b z=\"3\"/></a>", limits);
        assert_eq!(result.unwrap_err().kind(), BodyErrorKind::Limit);
        assert_eq!(sink.xml_attrs.len() + sink.xml_texts.len(), 3);

        // Deep nesting beyond the inline stack, within the limit.
        let deep = 200;
        let body = format!("{}x{}", "<e>".repeat(deep), "</e>".repeat(deep));
        let (sink, result) = run_with(
            body.as_bytes(),
            BodyLimits {
                max_depth: deep,
                ..BodyLimits::UNBOUNDED
            },
        );
        assert!(result.is_ok());
        assert_eq!(sink.xml_texts, vec![b"x".to_vec()]);
    }

    #[test]
    fn unicode_trim_helpers() {
        assert_eq!(trim_unicode_space(b" \t\xc2\xa0x\xe3\x80\x80 "), b"x");
        assert_eq!(trim_unicode_space(b"\xffx\xff"), b"\xffx\xff");
        assert_eq!(trim_unicode_space(b"\xc2"), b"\xc2");
        assert_eq!(trim_unicode_space(b"   "), b"");
    }

    /// Every XML body of the CRS regression tests parses; the "XML attribute injection"
    /// tests put their payload in an attribute, which must reach `xml_attr`.
    #[test]
    fn crs_regression_bodies() {
        let stages = crs_stages();
        let mut checked = 0;
        let mut attribute_tests = 0;
        let mut errors = 0;
        for stage in stages.iter().filter(|s| s.content_type_contains("xml")) {
            let (sink, result) = run_with(&stage.body, BodyLimits::UNBOUNDED);
            checked += 1;
            if let Err(e) = &result {
                errors += 1;
                eprintln!("{}: {e}", stage.name);
            }
            let looks_xml = stage.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
            if looks_xml && result.is_ok() && stage.body.windows(2).any(|w| w == b"=\"") {
                attribute_tests += usize::from(!sink.xml_attrs.is_empty());
            }
        }
        eprintln!("{checked} CRS XML bodies checked, {attribute_tests} with attributes, {errors} malformed");
        assert!(checked > 400, "{checked}");
        assert!(attribute_tests > 150, "{attribute_tests}");
        let _ = pairs(&[]);
    }
}
