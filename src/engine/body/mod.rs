//! TEMPORARY stand-in until the body-processor branch lands (replaced at merge).
pub mod cookies {
    pub fn parse<S: super::BodySink + ?Sized>(v: &[u8], s: &mut S) -> usize {
        let _ = (v, s);
        0
    }
}
pub mod urlencoded {
    pub fn parse<S: super::BodySink + ?Sized>(
        i: &[u8],
        l: &super::BodyLimits,
        sc: &mut Vec<u8>,
        s: &mut S,
    ) -> Result<(), super::BodyError> {
        let _ = (l, sc);
        for p in i.split(|&b| b == b'&') {
            if p.is_empty() {
                continue;
            }
            let (n, v) = match p.iter().position(|&b| b == b'=') {
                Some(x) => (&p[..x], &p[x + 1..]),
                None => (p, &b""[..]),
            };
            s.arg(n, v);
        }
        Ok(())
    }
}
pub mod multipart {
    #[derive(Debug, Default, Clone, Copy)]
    pub struct MultipartFlags {
        pub boundary_quoted: bool,
        pub boundary_whitespace: bool,
        pub data_before: bool,
        pub data_after: bool,
        pub header_folding: bool,
        pub lf_line: bool,
        pub crlf_lf_lines: bool,
        pub missing_semicolon: bool,
        pub invalid_quoting: bool,
        pub invalid_part: bool,
        pub invalid_header_folding: bool,
        pub file_limit_exceeded: bool,
        pub unmatched_boundary: bool,
    }
    impl MultipartFlags {
        pub fn strict_error(&self) -> bool {
            false
        }
    }
    pub struct MultipartOutcome {
        pub flags: MultipartFlags,
        pub error: Option<super::BodyError>,
    }
    pub fn parse<S: super::BodySink + ?Sized>(
        b: &[u8],
        ct: &[u8],
        l: &super::BodyLimits,
        sc: &mut Vec<u8>,
        s: &mut S,
    ) -> MultipartOutcome {
        let _ = (b, ct, l, sc, s);
        MultipartOutcome {
            flags: Default::default(),
            error: None,
        }
    }
}
pub mod json {
    pub fn parse<S: super::BodySink + ?Sized>(
        b: &[u8],
        l: &super::BodyLimits,
        sc: &mut Vec<u8>,
        s: &mut S,
    ) -> Result<(), super::BodyError> {
        let _ = (b, l, sc, s);
        Ok(())
    }
}
pub mod xml {
    pub fn parse<S: super::BodySink + ?Sized>(
        b: &[u8],
        l: &super::BodyLimits,
        s: &mut S,
    ) -> Result<(), super::BodyError> {
        let _ = (b, l, s);
        Ok(())
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_args: usize,
    pub max_depth: usize,
    pub max_parts: usize,
}
pub trait BodySink {
    fn arg(&mut self, name: &[u8], value: &[u8]);
    fn file(&mut self, f: &[u8], n: &[u8], size: usize) {
        let _ = (f, n, size);
    }
    fn part_header(&mut self, p: &[u8], l: &[u8]) {
        let _ = (p, l);
    }
    fn xml_text(&mut self, t: &[u8]) {
        let _ = t;
    }
    fn xml_attr(&mut self, n: &[u8], v: &[u8]) {
        let _ = (n, v);
    }
}
#[derive(Debug, Clone)]
pub struct BodyError(pub String);
impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
