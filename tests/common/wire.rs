//! Byte-level HTTP/1.x helpers for the CRS regression harness: what go-ftw writes on the socket,
//! and what the web server in front of the WAF (Apache in CRS's CI, HAProxy for us) hands to the
//! WAF after parsing those bytes.
//!
//! Owns: go-ftw's request assembly (`autocomplete_headers`, form-data URL encoding, multipart
//! line endings), a lenient server-side request parser (request line, headers, body framing by
//! `Transfer-Encoding: chunked` or `Content-Length`), Go-compatible URL escaping and base64.
//! Must not: know about YAML, the `check` contract or scoring (see `ftw.rs`). Every function
//! here is total on arbitrary bytes: malformed input yields a best-effort parse, never a panic.

/// One header as bytes, in wire order.
pub type HeaderPair = (Vec<u8>, Vec<u8>);

/// The request line parts and headers go-ftw assembles from a test stage (before any bytes are
/// written). `headers` is in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    pub method: String,
    pub uri: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub data: Vec<u8>,
    pub autocomplete_headers: bool,
}

/// Header-name comparison as go-ftw does it (`textproto.CanonicalMIMEHeaderKey` on both sides,
/// which for token names amounts to an ASCII case-insensitive comparison).
fn same_header_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| same_header_name(n, name))
}

/// go-ftw's `methodsWithBodyRegex` is `^POST|PUT|PATCH|DELETE$`: by Go's precedence rules that is
/// "starts with POST, or contains PUT, or contains PATCH, or ends with DELETE". Reproduced as is.
fn go_ftw_method_permits_body(method: &str) -> bool {
    method.starts_with("POST")
        || method.contains("PUT")
        || method.contains("PATCH")
        || method.ends_with("DELETE")
}

/// Serialises a request exactly as go-ftw v2 (`ftwhttp.BuildRequest`) does:
/// 1. request line `METHOD SP URI SP VERSION CRLF`, each part verbatim;
/// 2. with a non-empty body and autocompletion on: add `Content-Type:
///    application/x-www-form-urlencoded` when no Content-Type exists, then URL-encode the body
///    when some Content-Type equals (case-insensitively) that type and the body contains neither
///    `%` nor `+` (go-ftw's "already escaped?" test is `url.QueryUnescape(data) == data`);
/// 3. whenever a Content-Type contains `multipart/form-data;` (case-insensitively): every LF in
///    the body becomes CRLF, autocompletion or not;
/// 4. with autocompletion on: append `Connection: close` unless a Connection header exists, then
///    `Content-Length: <len>` unless one exists, when the body is non-empty or the method
///    "permits a body" (see [`go_ftw_method_permits_body`]);
/// 5. headers in order as `Name: value CRLF`, an empty line, the body.
pub fn build_go_ftw_request(req: &ClientRequest) -> Vec<u8> {
    let mut headers = req.headers.clone();
    let mut data = req.data.clone();
    if !data.is_empty() && req.autocomplete_headers {
        if !has_header(&headers, "Content-Type") {
            headers.push((
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ));
        }
        let form_encoded = headers.iter().any(|(n, v)| {
            same_header_name(n, "Content-Type")
                && v.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if form_encoded && !data.contains(&b'%') && !data.contains(&b'+') {
            data = go_ftw_encode_form(&data);
        }
    }
    let multipart = headers.iter().any(|(n, v)| {
        same_header_name(n, "Content-Type")
            && v.to_ascii_lowercase().contains("multipart/form-data;")
    });
    if multipart {
        data = lf_to_crlf(&data);
    }
    if req.autocomplete_headers {
        if !has_header(&headers, "Connection") {
            headers.push(("Connection".to_owned(), "close".to_owned()));
        }
        if !has_header(&headers, "Content-Length")
            && (!data.is_empty() || go_ftw_method_permits_body(&req.method))
        {
            headers.push(("Content-Length".to_owned(), data.len().to_string()));
        }
    }
    let mut wire = Vec::with_capacity(128 + data.len());
    wire.extend_from_slice(req.method.as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(req.uri.as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(req.version.as_bytes());
    wire.extend_from_slice(b"\r\n");
    for (name, value) in &headers {
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&data);
    wire
}

fn lf_to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// go-ftw's `encodeDataParameters` for an unescaped form body: split on `&`; a token without
/// `=` is escaped whole, otherwise key and value are escaped separately around the first `=`;
/// tokens are re-joined with `&` and one trailing `&` is dropped (so a trailing empty token
/// vanishes, as in go-ftw).
pub fn go_ftw_encode_form(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut remaining = data;
    while !remaining.is_empty() {
        let (token, rest) = match remaining.iter().position(|&b| b == b'&') {
            Some(amp) => (&remaining[..amp], &remaining[amp + 1..]),
            None => (remaining, &[][..]),
        };
        remaining = rest;
        match token.iter().position(|&b| b == b'=') {
            None => go_query_escape_into(token, &mut out),
            Some(eq) => {
                go_query_escape_into(&token[..eq], &mut out);
                out.push(b'=');
                go_query_escape_into(&token[eq + 1..], &mut out);
            }
        }
        out.push(b'&');
    }
    out.pop();
    out
}

/// Go's `url.QueryEscape`: unreserved bytes (`A-Z a-z 0-9 - _ . ~`) stay, space becomes `+`,
/// every other byte becomes `%XX` with upper-case hex.
pub fn go_query_escape_into(input: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => {
                out.push(b'%');
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
        }
    }
}

/// A request as the web server hands it to the WAF.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerRequest {
    pub method: Vec<u8>,
    pub uri: Vec<u8>,
    /// The protocol token as sent (`HTTP/1.1`, `HTTP\1.0`, empty, ...).
    pub protocol: Vec<u8>,
    pub headers: Vec<HeaderPair>,
    pub body: Vec<u8>,
}

impl ServerRequest {
    /// Values of every header with this name (ASCII case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// The request path: the URI up to the first `?`.
    pub fn path(&self) -> &[u8] {
        match self.uri.iter().position(|&b| b == b'?') {
            Some(q) => &self.uri[..q],
            None => &self.uri,
        }
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Splits off one line ending in LF (a preceding CR is removed). Without an LF the whole input
/// is the line.
fn split_line(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let line = &input[..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (line, &input[lf + 1..])
        }
        None => (input, &[]),
    }
}

/// Parses raw request bytes the way an HTTP/1.x server prepares them for the WAF, leniently
/// (a strict server would answer 400 to some of these; the WAF-facing view is still defined):
/// - request line: method up to the first space, URI up to the next space (after skipping
///   spaces), protocol = the rest after skipping spaces, or `HTTP/0.9` when there is none
///   (as Apache does); other missing parts are empty;
/// - header lines until the first empty line; a line starting with SP/HTAB continues the
///   previous value (obsolete folding, joined with one space); a line without `:` is dropped;
///   names keep their case (trailing blanks removed), values lose surrounding blanks;
/// - body framing: a `Transfer-Encoding` containing `chunked` wins (the body is de-chunked and
///   `Content-Length` headers are removed, as Apache, HAProxy and Go's server do); otherwise the
///   first `Content-Length`, when it is all digits, takes at most that many bytes; otherwise
///   there is no body (extra bytes would be the next request on the connection).
pub fn parse_server_request(raw: &[u8]) -> ServerRequest {
    let (line, mut rest) = split_line(raw);
    let (method, after_method) = split_at_space(line);
    let (uri, after_uri) = split_at_space(skip_spaces(after_method));
    let protocol = skip_spaces(after_uri);
    // A request line with no protocol is HTTP/0.9 to an HTTP/1.x server (Apache reports
    // REQUEST_PROTOCOL "HTTP/0.9" for it; CRS test 920430-5 relies on that).
    let protocol: &[u8] = if protocol.is_empty() && !uri.is_empty() {
        b"HTTP/0.9"
    } else {
        protocol
    };

    let mut headers: Vec<HeaderPair> = Vec::new();
    loop {
        if rest.is_empty() {
            break;
        }
        let (header_line, next) = split_line(rest);
        rest = next;
        if header_line.is_empty() {
            break;
        }
        if matches!(header_line.first(), Some(b' ' | b'\t')) {
            if let Some((_, value)) = headers.last_mut() {
                let folded = trim_ows(header_line);
                if !folded.is_empty() {
                    if !value.is_empty() {
                        value.push(b' ');
                    }
                    value.extend_from_slice(folded);
                }
            }
            continue;
        }
        let Some(colon) = header_line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &header_line[..colon];
        let name = match name.iter().rposition(|&b| b != b' ' && b != b'\t') {
            Some(last) => &name[..=last],
            None => &[][..],
        };
        let value = trim_ows(&header_line[colon + 1..]);
        headers.push((name.to_vec(), value.to_vec()));
    }

    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case(b"transfer-encoding")
            && v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked")
    });
    let body = if chunked {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(b"content-length"));
        dechunk(rest)
    } else {
        let content_length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
            .and_then(|(_, v)| parse_decimal(v));
        match content_length {
            Some(len) => {
                let take = usize::try_from(len).unwrap_or(usize::MAX).min(rest.len());
                rest[..take].to_vec()
            }
            None => Vec::new(),
        }
    };

    ServerRequest {
        method: method.to_vec(),
        uri: uri.to_vec(),
        protocol: protocol.to_vec(),
        headers,
        body,
    }
}

fn split_at_space(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(sp) => (&s[..sp], &s[sp..]),
        None => (s, &[]),
    }
}

fn skip_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    s
}

/// Digits only (after trimming blanks), no sign, no overflow.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = trim_ows(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Decodes a chunked body, keeping whatever was complete when the framing breaks: a size line
/// (hex, optional `;extension`), that many bytes, CRLF; a zero size ends the body (trailers
/// are ignored).
pub fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        if input.is_empty() {
            break;
        }
        let (size_line, rest) = split_line(input);
        let size_field = size_line
            .split(|&b| b == b';')
            .next()
            .map(trim_ows)
            .unwrap_or_default();
        let Some(size) = parse_hex(size_field) else {
            break;
        };
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let take = size.min(rest.len());
        body.extend_from_slice(&rest[..take]);
        if take < size {
            break;
        }
        let after = &rest[take..];
        input = after
            .strip_prefix(b"\r\n")
            .or_else(|| after.strip_prefix(b"\n"))
            .unwrap_or(after);
    }
    body
}

fn parse_hex(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        let digit = char::from(d).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

const B64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(B64_ALPHABET[((n >> shift) & 0x3f) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// Error from [`base64_decode`]: the offending byte position in the input (after dropping line
/// breaks) or a bad length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    InvalidByte { position: usize, byte: u8 },
    BadLength(usize),
}

impl std::fmt::Display for Base64Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Base64Error::InvalidByte { position, byte } => {
                write!(f, "invalid base64 byte 0x{byte:02x} at offset {position}")
            }
            Base64Error::BadLength(len) => {
                write!(f, "base64 length {len} is not a multiple of 4")
            }
        }
    }
}

/// Standard padded base64 as Go's `base64.StdEncoding.DecodeString`: CR and LF are ignored
/// anywhere (the CRS files wrap `encoded_request` at 76 columns), everything else must be valid.
pub fn base64_decode(input: &str) -> Result<Vec<u8>, Base64Error> {
    let clean: Vec<u8> = input
        .bytes()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    if clean.len() % 4 != 0 {
        return Err(Base64Error::BadLength(clean.len()));
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    let quads = clean.len() / 4;
    for (q, quad) in clean.chunks(4).enumerate() {
        let last = q + 1 == quads;
        let mut n: u32 = 0;
        let mut pad = 0usize;
        for (i, &c) in quad.iter().enumerate() {
            let position = q * 4 + i;
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                // Padding only at the end of the last quad, at most two.
                b'=' if last && i >= 2 && (pad > 0 || quad[i + 1..].iter().all(|&p| p == b'=')) => {
                    pad += 1;
                    0
                }
                _ => return Err(Base64Error::InvalidByte { position, byte: c }),
            };
            n = (n << 6) | u32::from(v);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(method: &str, headers: &[(&str, &str)], data: &str, auto: bool) -> ClientRequest {
        ClientRequest {
            method: method.to_owned(),
            uri: "/".to_owned(),
            version: "HTTP/1.1".to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            data: data.as_bytes().to_vec(),
            autocomplete_headers: auto,
        }
    }

    /// Vectors from go-ftw's own `TestRequestEncodesPostData`.
    #[test]
    fn form_encoding_matches_go_ftw_vectors() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("hello=world", "hello=world"),
            ("foo bar", "foo+bar"),
            (
                "c4= ;c3=t;c2=a;c1=c;a1=/;a2=e;a3=t;a4=c;a5=/;a6=p;a7=a;a8=s;a9=s;a10=w;a11=d;$c1$c2$c3$c4$a1$a2$a3$a4$a5$a6$a7$a8$a9$a10$a11",
                "c4=+%3Bc3%3Dt%3Bc2%3Da%3Bc1%3Dc%3Ba1%3D%2F%3Ba2%3De%3Ba3%3Dt%3Ba4%3Dc%3Ba5%3D%2F%3Ba6%3Dp%3Ba7%3Da%3Ba8%3Ds%3Ba9%3Ds%3Ba10%3Dw%3Ba11%3Dd%3B%24c1%24c2%24c3%24c4%24a1%24a2%24a3%24a4%24a5%24a6%24a7%24a8%24a9%24a10%24a11",
            ),
            ("a=<b>&c", "a=%3Cb%3E&c"),
            ("a=1&", "a=1"),
            ("&a=1", "&a=1"),
            ("k=\u{e9}", "k=%C3%A9"),
        ];
        for (raw, encoded) in cases {
            assert_eq!(
                String::from_utf8(go_ftw_encode_form(raw.as_bytes())).unwrap(),
                *encoded,
                "raw {raw:?}"
            );
        }
    }

    #[test]
    fn autocomplete_adds_content_type_connection_and_length() {
        let req = client("POST", &[("Host", "localhost")], "a=<b>", true);
        assert_eq!(
            String::from_utf8(build_go_ftw_request(&req)).unwrap(),
            "POST / HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\
             Content-Length: 9\r\n\r\na=%3Cb%3E"
        );
    }

    #[test]
    fn autocomplete_leaves_escaped_or_foreign_bodies_alone() {
        // `%` or `+` present: go-ftw considers the body already escaped.
        let req = client(
            "POST",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "a=%3C&b=c+d e",
            true,
        );
        let wire = build_go_ftw_request(&req);
        assert!(wire.ends_with(b"\r\n\r\na=%3C&b=c+d e"));
        // A JSON body is never encoded.
        let req = client(
            "POST",
            &[("content-type", "application/json")],
            "{\"a\":\"<b>\"}",
            true,
        );
        let wire = String::from_utf8(build_go_ftw_request(&req)).unwrap();
        assert_eq!(
            wire,
            "POST / HTTP/1.1\r\ncontent-type: application/json\r\nConnection: close\r\n\
             Content-Length: 11\r\n\r\n{\"a\":\"<b>\"}"
        );
    }

    #[test]
    fn get_without_body_gets_only_connection_close() {
        let req = client("GET", &[("Host", "localhost")], "", true);
        assert_eq!(
            build_go_ftw_request(&req),
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        // Methods that "permit a body" get Content-Length: 0 even when empty.
        for method in ["POST", "PUT", "PATCH", "DELETE", "XPUTX", "POSTED"] {
            let wire = build_go_ftw_request(&client(method, &[], "", true));
            assert!(wire.ends_with(b"Content-Length: 0\r\n\r\n"), "{method}");
        }
        for method in ["GET", "OPTIONS", "XDELETEX"] {
            let wire = build_go_ftw_request(&client(method, &[], "", true));
            assert!(
                !wire.windows(14).any(|w| w == b"Content-Length"),
                "{method}"
            );
        }
    }

    #[test]
    fn no_autocomplete_sends_exactly_what_the_test_says() {
        let req = client("POST", &[("Content-Length", "0")], "garbage", false);
        assert_eq!(
            build_go_ftw_request(&req),
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\ngarbage"
        );
    }

    #[test]
    fn multipart_bodies_get_crlf_even_without_autocomplete() {
        let req = client(
            "POST",
            &[("Content-Type", "Multipart/Form-Data; boundary=x")],
            "--x\nA: b\n\nv\n--x--\n",
            false,
        );
        let wire = build_go_ftw_request(&req);
        assert!(wire.ends_with(b"\r\n\r\n--x\r\nA: b\r\n\r\nv\r\n--x--\r\n"));
    }

    #[test]
    fn server_parses_request_line_headers_and_content_length_body() {
        let raw = b"POST /a?b=c HTTP/1.1\r\nHost: localhost\r\nX-Fold: one\r\n  two\r\n\
                    Broken line\r\nX-Blank:   \r\nContent-Length: 3\r\n\r\nabcdef";
        let req = parse_server_request(raw);
        assert_eq!(req.method, b"POST");
        assert_eq!(req.uri, b"/a?b=c");
        assert_eq!(req.path(), b"/a");
        assert_eq!(req.protocol, b"HTTP/1.1");
        let headers: Vec<(&[u8], &[u8])> = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        assert_eq!(
            headers,
            vec![
                (&b"Host"[..], &b"localhost"[..]),
                (b"X-Fold", b"one two"),
                (b"X-Blank", b""),
                (b"Content-Length", b"3"),
            ]
        );
        assert_eq!(req.body, b"abc");
    }

    #[test]
    fn server_request_line_oddities() {
        // (raw request, method, uri, protocol)
        type Case = (&'static [u8], &'static [u8], &'static [u8], &'static [u8]);
        let cases: &[Case] = &[
            (b"GET / \r\n\r\n", b"GET", b"/", b"HTTP/0.9"),
            (b"GET / HTTP\\1.0\r\n\r\n", b"GET", b"/", b"HTTP\\1.0"),
            (b"|GET / HTTP/1.1\r\n\r\n", b"|GET", b"/", b"HTTP/1.1"),
            (b"\tGET / HTTP/1.1\r\n\r\n", b"\tGET", b"/", b"HTTP/1.1"),
            (b"GET /x\n\n", b"GET", b"/x", b"HTTP/0.9"),
            (b"", b"", b"", b""),
        ];
        for (raw, method, uri, protocol) in cases {
            let req = parse_server_request(raw);
            assert_eq!(
                (
                    req.method.as_slice(),
                    req.uri.as_slice(),
                    req.protocol.as_slice()
                ),
                (*method, *uri, *protocol),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn server_body_framing() {
        // No Content-Length, no chunking: no body (the bytes would be a next request).
        assert_eq!(
            parse_server_request(b"POST / HTTP/1.1\r\n\r\nabc").body,
            b""
        );
        // Non-numeric Content-Length: no body.
        assert_eq!(
            parse_server_request(b"POST / HTTP/1.1\r\nContent-Length: 3;\r\n\r\nabc").body,
            b""
        );
        // Shorter than announced: what arrived.
        assert_eq!(
            parse_server_request(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc").body,
            b"abc"
        );
        // Chunked wins over Content-Length, which is removed (CRS 920181-1's comment).
        let req = parse_server_request(
            b"POST / HTTP/1.1\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n\
              7\r\nfoo=bar\r\n0\r\n\r\n",
        );
        assert_eq!(req.body, b"foo=bar");
        assert!(req.header_values("content-length").next().is_none());
        assert_eq!(
            req.header_values("transfer-encoding").collect::<Vec<_>>(),
            vec![&b"chunked"[..]]
        );
    }

    #[test]
    fn dechunk_is_lenient() {
        assert_eq!(dechunk(b"3\r\nHi \r\n3\r\nCRS\r\n0\r\n\r\n"), b"Hi CRS");
        assert_eq!(dechunk(b"3;ext=1\r\nabc\r\n0\r\n"), b"abc");
        assert_eq!(dechunk(b"A\r\n0123456789\r\n"), b"0123456789");
        assert_eq!(dechunk(b"5\r\nab"), b"ab");
        assert_eq!(dechunk(b"zz\r\nab"), b"");
        assert_eq!(dechunk(b"ffffffffffffffffff\r\nab"), b"");
    }

    /// The parsers are total: arbitrary bytes (biased towards HTTP syntax) never panic, and a
    /// Content-Length body never exceeds what was sent.
    #[test]
    fn parsers_are_total_on_arbitrary_bytes() {
        const PIECES: &[&[u8]] = &[
            b"GET ",
            b"POST / HTTP/1.1",
            b"\r\n",
            b"\n",
            b":",
            b" ",
            b"\t",
            b"Content-Length: ",
            b"Transfer-Encoding: chunked",
            b"0",
            b"7",
            b"ff",
            b";",
            b"=",
            b"\xff",
            b"\x00",
            b"a",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*: deterministic, so a failure reproduces.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(next() % 24) {
                let r = next();
                if r % 4 == 0 {
                    input.push((r >> 8) as u8);
                } else {
                    input.extend_from_slice(PIECES[(r >> 8) as usize % PIECES.len()]);
                }
            }
            let req = parse_server_request(&input);
            assert!(req.body.len() <= input.len());
            let _ = dechunk(&input);
            let text = String::from_utf8_lossy(&input);
            if let Ok(decoded) = base64_decode(&text) {
                let clean = text.bytes().filter(|&c| c != b'\r' && c != b'\n').count();
                assert!(decoded.len() * 4 <= clean * 3);
            }
        }
    }

    #[test]
    fn base64_round_trip_and_go_compat() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"\xac\xed\x00\x05", "rO0ABQ=="),
        ];
        for (raw, encoded) in cases {
            assert_eq!(base64_encode(raw), *encoded);
            assert_eq!(base64_decode(encoded).unwrap(), *raw);
        }
        // Line breaks are ignored, as in Go.
        assert_eq!(base64_decode("Zm9v\nYmFy\r\n").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9"), Err(Base64Error::BadLength(3)));
        assert!(matches!(
            base64_decode("Zm=v"),
            Err(Base64Error::InvalidByte { position: 2, .. })
        ));
        assert!(matches!(
            base64_decode("Zg==Zg=="),
            Err(Base64Error::InvalidByte { position: 2, .. })
        ));
        assert!(matches!(
            base64_decode("Z!9v"),
            Err(Base64Error::InvalidByte {
                position: 1,
                byte: b'!'
            })
        ));
    }
}
