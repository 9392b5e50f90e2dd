//! Variables: from a rule target (`ARGS|!ARGS:x`, `&TX:y`, `XML://@*`) to the list of values
//! a rule tests, each with the name ModSecurity reports for it (`ARGS:q`).
//!
//! Values are described by [`ValueRef`] handles rather than copied: request data is read in
//! place; values that live in mutable state (TX, MATCHED_*) or are computed (counts, sizes,
//! flags) are copied into the caller's `temp` buffer. Must not evaluate operators or change
//! state.

use std::io::Write;

use super::cache::ValueKey;
use super::collection::Pairs;
use super::ruleset::{CSelector, CTarget, Ruleset};
use super::transaction::{RequestData, State};
use crate::seclang::ir::Variable;

/// Which list of request data a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum List {
    ArgsGet = 1,
    ArgsPost,
    Headers,
    Cookies,
    Files,
    PartHeaders,
    XmlText,
    XmlAttr,
    ResponseHeaders,
}

/// Single-valued request data read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scalar {
    RequestLine = 16,
    Method,
    Protocol,
    Uri,
    UriRaw,
    Filename,
    Basename,
    QueryString,
    RequestBody,
    RemoteAddr,
    ServerAddr,
    UniqueId,
    ResponseBody,
    ResponseProtocol,
    ReqbodyErrorMsg,
}

/// Where a value's bytes are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Src {
    /// The name (`name == true`) or value of entry `idx` of a list.
    Pair {
        list: List,
        idx: u32,
        name: bool,
    },
    Scalar(Scalar),
    /// `temp[start..start + len]`.
    Temp {
        start: u32,
        len: u32,
    },
}

/// The key part of a value's display name (`ARGS:<key>`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeySrc {
    None,
    /// The name of entry `idx` of a list.
    PairName(List, u32),
    /// Fixed text.
    Static(&'static str),
    /// `temp[start..start + len]`.
    Temp(u32, u32),
}

/// One value to test.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueRef {
    pub var: Variable,
    pub src: Src,
    pub key: KeySrc,
}

impl ValueRef {
    /// Stable identity for the transformation cache; `None` for values in mutable state.
    pub fn cache_key(&self) -> Option<ValueKey> {
        match self.src {
            Src::Pair { list, idx, name } => {
                Some(((list as u64) << 40) | (u64::from(idx) << 1) | u64::from(name))
            }
            Src::Scalar(s) => Some(scalar_key(s)),
            Src::Temp { .. } => None,
        }
    }
}

/// The cache key of a scalar (see [`ValueRef::cache_key`]).
pub(crate) fn scalar_key(s: Scalar) -> ValueKey {
    (s as u64) << 40
}

pub(crate) fn list(req: &RequestData, l: List) -> &Pairs {
    match l {
        List::ArgsGet => &req.args_get,
        List::ArgsPost => &req.args_post,
        List::Headers => &req.headers,
        List::Cookies => &req.cookies,
        List::Files => &req.files,
        List::PartHeaders => &req.part_headers,
        List::XmlText => &req.xml_text,
        List::XmlAttr => &req.xml_attr,
        List::ResponseHeaders => &req.response_headers,
    }
}

fn scalar(req: &RequestData, s: Scalar) -> &[u8] {
    match s {
        Scalar::RequestLine => &req.request_line,
        Scalar::Method => &req.method,
        Scalar::Protocol => &req.protocol,
        Scalar::Uri => &req.uri,
        Scalar::UriRaw => &req.uri_raw,
        Scalar::Filename => &req.filename,
        Scalar::Basename => &req.basename,
        Scalar::QueryString => &req.query,
        Scalar::RequestBody => {
            if req.request_body_var {
                &req.body
            } else {
                &[]
            }
        }
        Scalar::RemoteAddr => &req.remote_addr,
        Scalar::ServerAddr => &req.server_addr,
        Scalar::UniqueId => &req.unique_id,
        Scalar::ResponseBody => {
            if req.response_body_var {
                &req.response_body
            } else {
                &[]
            }
        }
        Scalar::ResponseProtocol => &req.response_protocol,
        Scalar::ReqbodyErrorMsg => &req.reqbody_error_msg,
    }
}

/// The bytes of a value.
#[inline]
pub(crate) fn bytes<'a>(req: &'a RequestData, temp: &'a [u8], v: &ValueRef) -> &'a [u8] {
    match v.src {
        Src::Pair { list: l, idx, name } => {
            let p = list(req, l);
            if name {
                p.name(idx as usize)
            } else {
                p.value(idx as usize)
            }
        }
        Src::Scalar(s) => scalar(req, s),
        Src::Temp { start, len } => temp
            .get(start as usize..(start + len) as usize)
            .unwrap_or(&[]),
    }
}

/// Writes the display name of a value (`ARGS:q`, `REQUEST_URI`, `XML:/*`) into `out`.
pub(crate) fn write_name(req: &RequestData, temp: &[u8], v: &ValueRef, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(v.var.name().as_bytes());
    match v.key {
        KeySrc::None => {}
        KeySrc::PairName(l, i) => {
            out.push(b':');
            out.extend_from_slice(list(req, l).name(i as usize));
        }
        KeySrc::Static(s) => {
            out.push(b':');
            out.extend_from_slice(s.as_bytes());
        }
        KeySrc::Temp(s, l) => {
            out.push(b':');
            out.extend_from_slice(temp.get(s as usize..(s + l) as usize).unwrap_or(&[]));
        }
    }
}

/// A key selector used for exclusions coming from `ctl` at run time.
pub(crate) enum ExtraExclusion<'a> {
    Key(&'a [u8]),
}

/// Appends the values of `target` to `out` (counts as one value).
#[allow(clippy::too_many_arguments)] // the evaluator's disjoint borrows, passed field by field
pub(crate) fn collect(
    rs: &Ruleset,
    req: &RequestData,
    st: &State,
    target: &CTarget,
    extra: &[ExtraExclusion<'_>],
    regex_caches: &mut super::operators::rx::RegexCaches,
    temp: &mut Vec<u8>,
    out: &mut Vec<ValueRef>,
) {
    let before = out.len();
    let mut c = Collector {
        rs,
        target,
        extra,
        regex_caches,
        out,
        temp,
    };
    c.run(req, st);
    if target.count {
        let n = out.len() - before;
        out.truncate(before);
        let start = temp.len();
        // Into the reused buffer: no String per counted target.
        let _ = write!(temp, "{n}");
        out.push(ValueRef {
            var: target.var,
            src: Src::Temp {
                start: start as u32,
                len: (temp.len() - start) as u32,
            },
            key: KeySrc::None,
        });
    }
}

struct Collector<'a, 'b> {
    rs: &'a Ruleset,
    target: &'a CTarget,
    extra: &'a [ExtraExclusion<'b>],
    regex_caches: &'a mut super::operators::rx::RegexCaches,
    out: &'a mut Vec<ValueRef>,
    temp: &'a mut Vec<u8>,
}

impl Collector<'_, '_> {
    fn run(&mut self, req: &RequestData, st: &State) {
        use Variable as V;
        let var = self.target.var;
        match var {
            V::Args => {
                self.pairs(req, List::ArgsGet, false);
                self.pairs(req, List::ArgsPost, false);
            }
            V::ArgsNames => {
                self.pairs(req, List::ArgsGet, true);
                self.pairs(req, List::ArgsPost, true);
            }
            V::ArgsGet => self.pairs(req, List::ArgsGet, false),
            V::ArgsGetNames => self.pairs(req, List::ArgsGet, true),
            V::ArgsPost => self.pairs(req, List::ArgsPost, false),
            V::ArgsPostNames => self.pairs(req, List::ArgsPost, true),
            V::RequestHeaders => self.pairs(req, List::Headers, false),
            V::RequestHeadersNames => self.pairs(req, List::Headers, true),
            V::RequestCookies => self.pairs(req, List::Cookies, false),
            V::RequestCookiesNames => self.pairs(req, List::Cookies, true),
            V::ResponseHeaders => self.pairs(req, List::ResponseHeaders, false),
            V::ResponseHeadersNames => self.pairs(req, List::ResponseHeaders, true),
            V::Files => self.pairs(req, List::Files, false),
            V::FilesNames => self.pairs(req, List::Files, true),
            V::MultipartPartHeaders => self.pairs(req, List::PartHeaders, false),
            V::FilesSizes => {
                for (i, size) in req.file_sizes.iter().enumerate() {
                    let name = req.files.name(i);
                    if self.selected(name) {
                        self.temp_value(
                            size.to_string().as_bytes(),
                            KeySrc::PairName(List::Files, i as u32),
                        );
                    }
                }
            }
            V::Xml => match self.target.sel {
                CSelector::XmlAttr => self.xml(req, List::XmlAttr, "//@*"),
                _ => self.xml(req, List::XmlText, "/*"),
            },
            V::Tx => self.tx(st),
            V::Ip | V::Global | V::Session | V::User => {
                for (v, k, val) in &st.others {
                    if *v == var && self.selected(k) {
                        let ks = self.push_temp(k);
                        self.temp_value(val, ks);
                    }
                }
            }
            V::MatchedVars | V::MatchedVarsNames => {
                for (name, value) in st.matched_vars.iter() {
                    if self.selected(name) {
                        let ks = self.push_temp(name);
                        let v = if var == V::MatchedVars { value } else { name };
                        self.temp_value(v, ks);
                    }
                }
            }
            V::MatchedVar => self.temp_value(&st.matched_var, KeySrc::None),
            V::MatchedVarName => self.temp_value(&st.matched_var_name, KeySrc::None),
            V::RequestLine => self.scalar(Scalar::RequestLine),
            V::RequestMethod => self.scalar(Scalar::Method),
            V::RequestProtocol => self.scalar(Scalar::Protocol),
            V::RequestUri => self.scalar(Scalar::Uri),
            V::RequestUriRaw => self.scalar(Scalar::UriRaw),
            V::RequestFilename => self.scalar(Scalar::Filename),
            V::RequestBasename => self.scalar(Scalar::Basename),
            V::QueryString => self.scalar(Scalar::QueryString),
            V::RequestBody => self.scalar(Scalar::RequestBody),
            V::RemoteAddr => self.scalar(Scalar::RemoteAddr),
            V::ServerAddr => self.scalar(Scalar::ServerAddr),
            V::UniqueId => self.scalar(Scalar::UniqueId),
            V::ResponseBody => self.scalar(Scalar::ResponseBody),
            V::ResponseProtocol => self.scalar(Scalar::ResponseProtocol),
            V::ReqbodyErrorMsg | V::ReqbodyProcessorErrorMsg => {
                self.scalar(Scalar::ReqbodyErrorMsg)
            }
            V::ReqbodyProcessor => {
                let p = req.body_processor.map(|p| p.name()).unwrap_or("");
                self.temp_value(p.as_bytes(), KeySrc::None)
            }
            V::ResponseContentType => {
                let ct = req
                    .response_headers
                    .first(b"content-type")
                    .unwrap_or(&[])
                    .to_vec();
                self.temp_value(&ct, KeySrc::None)
            }
            _ => {
                if let Some(n) = numeric(req, var) {
                    self.temp_value(n.to_string().as_bytes(), KeySrc::None);
                }
            }
        }
    }

    /// Whether an entry named `name` passes the selector and the exclusions.
    fn selected(&mut self, name: &[u8]) -> bool {
        let t = self.target;
        let ok = match &t.sel {
            CSelector::All | CSelector::XmlText | CSelector::XmlAttr => true,
            CSelector::Key(k) => name.eq_ignore_ascii_case(k),
            CSelector::TxSlot(_) => false,
            CSelector::Regex(i) => self.key_regex(*i, name),
        };
        if !ok {
            return false;
        }
        for e in &t.exclusions {
            if self.excluded_by(e, name) {
                return false;
            }
        }
        for e in self.extra {
            let ExtraExclusion::Key(k) = e;
            let hit = name.eq_ignore_ascii_case(k);
            if hit {
                return false;
            }
        }
        true
    }

    fn excluded_by(&mut self, e: &CSelector, name: &[u8]) -> bool {
        match e {
            CSelector::Key(k) => name.eq_ignore_ascii_case(k),
            CSelector::Regex(i) => self.key_regex(*i, name),
            CSelector::TxSlot(s) => name.eq_ignore_ascii_case(&self.rs.tx_names[*s as usize]),
            _ => false,
        }
    }

    fn key_regex(&mut self, i: u32, name: &[u8]) -> bool {
        self.rs.regexes.is_match(i, self.regex_caches, name)
    }

    fn pairs(&mut self, req: &RequestData, l: List, names: bool) {
        let p = list(req, l);
        for i in 0..p.len() {
            if self.selected(p.name(i)) {
                self.out.push(ValueRef {
                    var: self.target.var,
                    src: Src::Pair {
                        list: l,
                        idx: i as u32,
                        name: names,
                    },
                    key: KeySrc::PairName(l, i as u32),
                });
            }
        }
    }

    fn xml(&mut self, req: &RequestData, l: List, key: &'static str) {
        let p = list(req, l);
        for i in 0..p.len() {
            self.out.push(ValueRef {
                var: Variable::Xml,
                src: Src::Pair {
                    list: l,
                    idx: i as u32,
                    name: false,
                },
                key: KeySrc::Static(key),
            });
        }
    }

    fn tx(&mut self, st: &State) {
        if let CSelector::TxSlot(s) = self.target.sel {
            if let Some(v) = st.tx.slot(s) {
                // Exclusions on a single key are moot; the key is fixed.
                let name = &self.rs.tx_names[s as usize];
                let ks = self.push_temp(name);
                self.temp_value(v, ks);
            }
            return;
        }
        let rs = self.rs;
        st.tx.for_each_live(|slot, key, value| {
            let k = match slot {
                Some(s) => rs.tx_names[s as usize].as_slice(),
                None => key,
            };
            if self.selected(k) {
                let ks = self.push_temp(k);
                self.temp_value(value, ks);
            }
        });
    }

    fn scalar(&mut self, s: Scalar) {
        self.out.push(ValueRef {
            var: self.target.var,
            src: Src::Scalar(s),
            key: KeySrc::None,
        });
    }

    fn push_temp(&mut self, b: &[u8]) -> KeySrc {
        let start = self.temp.len();
        self.temp.extend_from_slice(b);
        KeySrc::Temp(start as u32, b.len() as u32)
    }

    fn temp_value(&mut self, v: &[u8], key: KeySrc) {
        let start = self.temp.len();
        self.temp.extend_from_slice(v);
        self.out.push(ValueRef {
            var: self.target.var,
            src: Src::Temp {
                start: start as u32,
                len: v.len() as u32,
            },
            key,
        });
    }
}

/// Single numeric variables.
fn numeric(req: &RequestData, v: Variable) -> Option<u64> {
    use Variable as V;
    let b = |x: bool| u64::from(x);
    let m = &req.multipart;
    Some(match v {
        V::RequestBodyLength => req.body.len() as u64,
        V::ArgsCombinedSize => {
            (req.args_get.combined_size() + req.args_post.combined_size()) as u64
        }
        V::FilesCombinedSize => req.file_sizes.iter().sum(),
        V::RemotePort => u64::from(req.remote_port),
        V::ServerPort => u64::from(req.server_port),
        V::ResponseStatus => u64::from(req.response_status),
        V::ResponseContentLength => req
            .response_headers
            .first(b"content-length")
            .map(|v| super::operators::to_number(v).max(0) as u64)
            .unwrap_or(req.response_body.len() as u64),
        V::ReqbodyError | V::ReqbodyProcessorError => b(req.reqbody_error),
        V::UrlencodedError => b(req.urlencoded_error),
        V::InboundDataError => b(req.inbound_data_error),
        V::OutboundDataError => b(req.outbound_data_error),
        V::MultipartStrictError => b(req.multipart_strict_error),
        V::MultipartBoundaryQuoted => b(m.boundary_quoted),
        V::MultipartBoundaryWhitespace => b(m.boundary_whitespace),
        V::MultipartDataBefore => b(m.data_before),
        V::MultipartDataAfter => b(m.data_after),
        V::MultipartHeaderFolding => b(m.header_folding),
        V::MultipartLfLine => b(m.lf_line),
        V::MultipartCrlfLfLines => b(m.crlf_lf_lines()),
        V::MultipartMissingSemicolon => b(m.missing_semicolon),
        V::MultipartInvalidQuoting => b(m.invalid_quoting),
        V::MultipartInvalidPart => b(m.invalid_part),
        V::MultipartInvalidHeaderFolding => b(m.invalid_header_folding),
        V::MultipartFileLimitExceeded => b(m.file_limit_exceeded),
        V::MultipartUnmatchedBoundary => b(m.unmatched_boundary),
        _ => return None,
    })
}

/// A source of values for the prefilter: a whole list (names or values) or a scalar. Sources
/// ignore selectors and exclusions, so they cover a superset of a target's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Pairs(List, bool),
    Scalar(Scalar),
}

/// Bound of [`Source::index`] (value tags are below 64; names and values count apart).
pub(crate) const SOURCE_INDICES: usize = 128;

impl Source {
    /// A dense index for this source: the one [`source_index`] gives each of its values.
    pub fn index(self) -> usize {
        match self {
            Source::Pairs(l, name) => l as usize * 2 + usize::from(name),
            Source::Scalar(s) => s as usize * 2,
        }
    }
}

/// The [`Source::index`] of the source a value with cache key `key` belongs to.
pub(crate) fn source_index(key: ValueKey) -> usize {
    ((key >> 40) as usize & 63) * 2 + (key & 1) as usize
}

/// The sources a variable reads, when it reads only request/response data (not TX or other
/// state that changes during evaluation).
pub(crate) fn sources_of(v: Variable) -> Option<&'static [Source]> {
    use Source::{Pairs as P, Scalar as S};
    use Variable as V;
    Some(match v {
        V::Args => &[P(List::ArgsGet, false), P(List::ArgsPost, false)],
        V::ArgsNames => &[P(List::ArgsGet, true), P(List::ArgsPost, true)],
        V::ArgsGet => &[P(List::ArgsGet, false)],
        V::ArgsGetNames => &[P(List::ArgsGet, true)],
        V::ArgsPost => &[P(List::ArgsPost, false)],
        V::ArgsPostNames => &[P(List::ArgsPost, true)],
        V::RequestHeaders => &[P(List::Headers, false)],
        V::RequestHeadersNames => &[P(List::Headers, true)],
        V::RequestCookies => &[P(List::Cookies, false)],
        V::RequestCookiesNames => &[P(List::Cookies, true)],
        V::ResponseHeaders => &[P(List::ResponseHeaders, false)],
        V::ResponseHeadersNames => &[P(List::ResponseHeaders, true)],
        V::Files => &[P(List::Files, false)],
        V::FilesNames => &[P(List::Files, true)],
        V::MultipartPartHeaders => &[P(List::PartHeaders, false)],
        V::Xml => &[P(List::XmlText, false), P(List::XmlAttr, false)],
        V::RequestLine => &[S(Scalar::RequestLine)],
        V::RequestMethod => &[S(Scalar::Method)],
        V::RequestProtocol => &[S(Scalar::Protocol)],
        V::RequestUri => &[S(Scalar::Uri)],
        V::RequestUriRaw => &[S(Scalar::UriRaw)],
        V::RequestFilename => &[S(Scalar::Filename)],
        V::RequestBasename => &[S(Scalar::Basename)],
        V::QueryString => &[S(Scalar::QueryString)],
        V::RequestBody => &[S(Scalar::RequestBody)],
        V::ResponseBody => &[S(Scalar::ResponseBody)],
        V::ResponseProtocol => &[S(Scalar::ResponseProtocol)],
        _ => return None,
    })
}

/// Calls `f(value_ref)` for every value of a source.
pub(crate) fn for_each_source_value(req: &RequestData, s: Source, mut f: impl FnMut(ValueRef)) {
    match s {
        Source::Pairs(l, names) => {
            for i in 0..list(req, l).len() {
                f(ValueRef {
                    var: Variable::Args,
                    src: Src::Pair {
                        list: l,
                        idx: i as u32,
                        name: names,
                    },
                    key: KeySrc::None,
                });
            }
        }
        Source::Scalar(sc) => f(ValueRef {
            var: Variable::Args,
            src: Src::Scalar(sc),
            key: KeySrc::None,
        }),
    }
}
