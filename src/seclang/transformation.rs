//! The names of the transformations (`t:` actions) the compiler accepts.
//!
//! Owns only the name table and the enum; the behaviour lives in
//! `engine::transformations`. Kept free of engine dependencies so that `build.rs` can compile
//! rules with this module alone. An unknown name is a compile error, never a skip.

/// A transformation applied to a value before an operator sees it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Transformation {
    Base64Decode,
    Base64DecodeExt,
    CmdLine,
    CompressWhitespace,
    CssDecode,
    EscapeSeqDecode,
    HexDecode,
    HexEncode,
    HtmlEntityDecode,
    JsDecode,
    Length,
    Lowercase,
    NormalizePath,
    NormalizePathWin,
    RemoveComments,
    RemoveCommentsChar,
    RemoveNulls,
    RemoveWhitespace,
    ReplaceComments,
    ReplaceNulls,
    Sha1,
    SqlHexDecode,
    Trim,
    TrimLeft,
    TrimRight,
    Uppercase,
    UrlDecode,
    UrlDecodeUni,
    UrlEncode,
    Utf8ToUnicode,
}

impl Transformation {
    /// Every transformation with its SecLang name(s); the first name is the canonical one.
    pub const TABLE: &'static [(&'static str, Transformation)] = &[
        ("base64Decode", Transformation::Base64Decode),
        ("base64DecodeExt", Transformation::Base64DecodeExt),
        ("cmdLine", Transformation::CmdLine),
        ("compressWhitespace", Transformation::CompressWhitespace),
        ("cssDecode", Transformation::CssDecode),
        ("escapeSeqDecode", Transformation::EscapeSeqDecode),
        ("hexDecode", Transformation::HexDecode),
        ("hexEncode", Transformation::HexEncode),
        ("htmlEntityDecode", Transformation::HtmlEntityDecode),
        ("jsDecode", Transformation::JsDecode),
        ("length", Transformation::Length),
        ("lowercase", Transformation::Lowercase),
        ("normalizePath", Transformation::NormalizePath),
        ("normalisePath", Transformation::NormalizePath),
        ("normalizePathWin", Transformation::NormalizePathWin),
        ("normalisePathWin", Transformation::NormalizePathWin),
        ("removeComments", Transformation::RemoveComments),
        ("removeCommentsChar", Transformation::RemoveCommentsChar),
        ("removeNulls", Transformation::RemoveNulls),
        ("removeWhitespace", Transformation::RemoveWhitespace),
        ("replaceComments", Transformation::ReplaceComments),
        ("replaceNulls", Transformation::ReplaceNulls),
        ("sha1", Transformation::Sha1),
        ("sqlHexDecode", Transformation::SqlHexDecode),
        ("trim", Transformation::Trim),
        ("trimLeft", Transformation::TrimLeft),
        ("trimRight", Transformation::TrimRight),
        ("uppercase", Transformation::Uppercase),
        ("urlDecode", Transformation::UrlDecode),
        ("urlDecodeUni", Transformation::UrlDecodeUni),
        ("urlEncode", Transformation::UrlEncode),
        ("utf8toUnicode", Transformation::Utf8ToUnicode),
    ];

    /// Looks a `t:` name up. SecLang names are case-sensitive in ModSecurity v2 but Coraza and
    /// v3 accept any case; we accept any case too (no two names differ only by case).
    pub fn from_name(name: &str) -> Option<Transformation> {
        Self::TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, t)| t)
    }

    /// The canonical SecLang name.
    pub fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|&&(_, t)| t == self)
            .map(|&(n, _)| n)
            .unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &(n, t) in Transformation::TABLE {
            assert_eq!(Transformation::from_name(n), Some(t));
            assert_eq!(Transformation::from_name(t.name()), Some(t));
        }
        assert_eq!(
            Transformation::from_name("utf8ToUnicode"),
            Some(Transformation::Utf8ToUnicode)
        );
        assert_eq!(Transformation::from_name("nope"), None);
    }
}
