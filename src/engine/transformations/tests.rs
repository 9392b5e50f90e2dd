//! Cross-cutting tests: the unchanged fast path, the scan/write contract, output bounds and
//! totality on pseudo-random inputs, adversarial long inputs, and CRS pipelines. Per-function
//! reference vectors live beside each family.

use super::{apply, kernel, output_bound, Transformation};
use crate::engine::test_support::XorShift;

/// Every distinct transformation (the name table lists some twice, under two spellings).
fn all() -> Vec<Transformation> {
    let mut all: Vec<Transformation> = Transformation::TABLE.iter().map(|&(_, t)| t).collect();
    all.sort();
    all.dedup();
    all
}

/// Output of `t` on `input`, whether or not it changed.
fn run(t: Transformation, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if apply(t, input, &mut out) {
        out
    } else {
        input.to_vec()
    }
}

/// Output of a pipeline, using two buffers as the engine does.
fn pipeline(steps: &[Transformation], input: &[u8]) -> Vec<u8> {
    let mut current = input.to_vec();
    let mut scratch = Vec::new();
    for &t in steps {
        if apply(t, &current, &mut scratch) {
            assert!(
                scratch.len() <= output_bound(t, current.len()),
                "{} exceeded its bound",
                t.name()
            );
            std::mem::swap(&mut current, &mut scratch);
        }
    }
    current
}

#[test]
fn every_transformation_is_dispatched() {
    assert_eq!(all().len(), 30);
}

/// For each transformation: a value it leaves alone (`None` when every input changes) and one
/// it changes.
fn fast_path_case(t: Transformation) -> (Option<&'static [u8]>, &'static [u8]) {
    use Transformation as T;
    match t {
        T::UrlDecode => (Some(b"100% plain %zz %4"), b"a%41"),
        T::UrlDecodeUni => (Some(b"%u12 %uzzzz text"), b"%u2019"),
        T::HtmlEntityDecode => (Some(b"AT&T &foo; &#; &#5a &"), b"&lt;"),
        T::JsDecode => (Some(b"no escapes here\\"), b"\\x41"),
        T::CssDecode => (Some(b"color: red;"), b"\\41"),
        T::EscapeSeqDecode => (Some(b"trailing\\"), b"\\n"),
        T::Base64Decode | T::Base64DecodeExt => (Some(b""), b"QUJD"),
        T::HexDecode => (Some(b""), b"41"),
        T::SqlHexDecode => (Some(b"0x4 0xzz 00x"), b"0x41"),
        T::Utf8ToUnicode => (Some(b"ascii only"), "\u{e9}".as_bytes()),
        T::Lowercase => (Some(b"already lower 123 \xc3\x80"), b"Upper"),
        T::Uppercase => (Some(b"ALREADY UPPER 123 \xc3\xa0"), b"lower"),
        T::CompressWhitespace => (Some("one space \u{e0}".as_bytes()), b"two  spaces"),
        T::RemoveWhitespace => (Some("no_white\u{fffd}space".as_bytes()), b"a b"),
        T::RemoveNulls | T::ReplaceNulls => (Some(b"no nul"), b"a\0b"),
        T::RemoveComments => (Some(b"a-b*c/d*/"), b"a/*b*/c"),
        T::RemoveCommentsChar => (Some(b"a-b*c/d<!-"), b"a--b"),
        T::ReplaceComments => (Some(b"a*/b/"), b"a/*b*/c"),
        T::CmdLine => (Some(b"ls -la tmp/x"), b"LS"),
        T::NormalizePath => (Some(b"/a/b/c/"), b"/a/./b"),
        T::NormalizePathWin => (Some(b"/a/b"), b"\\a"),
        T::Trim => (Some(b"a b"), b" a"),
        T::TrimLeft => (Some(b"a "), b" a"),
        T::TrimRight => (Some(b" a"), b"a "),
        T::Sha1 => (None, b""),
        T::HexEncode => (Some(b""), b"a"),
        T::Length => (Some(b"1"), b"ab"),
        T::UrlEncode => (Some(b"Safe*123abcXYZ"), b"a b"),
    }
}

#[test]
fn unchanged_values_leave_the_buffer_untouched() {
    for t in all() {
        let (unchanged, changed) = fast_path_case(t);
        if let Some(input) = unchanged {
            let mut out = b"previous contents".to_vec();
            let capacity = out.capacity();
            assert!(!apply(t, input, &mut out), "{} changed {input:?}", t.name());
            assert_eq!(out, b"previous contents", "{} touched the buffer", t.name());
            assert_eq!(
                out.capacity(),
                capacity,
                "{} reallocated the buffer",
                t.name()
            );
        }
        let mut out = b"previous contents".to_vec();
        assert!(
            apply(t, changed, &mut out),
            "{} did not change {changed:?}",
            t.name()
        );
        assert_ne!(out.as_slice(), changed, "{}", t.name());
        assert!(
            !out.starts_with(b"previous"),
            "{} did not clear the buffer",
            t.name()
        );
    }
}

/// Pieces of escape syntax, whitespace and UTF-8 that random inputs are built from, so that
/// they exercise the decoders' interesting paths rather than plain bytes only.
const FRAGMENTS: &[&[u8]] = &[
    b"%",
    b"%u",
    b"%U",
    b"+",
    b"%41",
    b"%u2019",
    b"%uff1c",
    b"%uFF00",
    b"&",
    b"&#",
    b"&#x",
    b"&#X",
    b";",
    b"&amp",
    b"&lt;",
    b"&nGt;",
    b"&NotEqualTilde;",
    b"&notin",
    b"&#128;",
    b"&#4294967361;",
    b"\\",
    b"\\u",
    b"\\u{",
    b"}",
    b"\\x",
    b"\\0",
    b"\\\n",
    b"\\377",
    b"0x",
    b"0X",
    b"/*",
    b"*/",
    b"<!--",
    b"-->",
    b"--",
    b"#",
    b"/",
    b"./",
    b"../",
    b"..",
    b".",
    b"\\..\\",
    b" ",
    b"  ",
    b"\t",
    b"\r\n",
    b"\x0b",
    b"\x0c",
    b"\0",
    b"\xa0",
    b"\x85",
    b"\xc2\xa0",
    b"\xc2\x85",
    b"\xe2\x80\x80",
    b"\xe3\x80\x80",
    b"\xef\xbf\xbd",
    b"\xff",
    b"\xc3",
    b"\xc3\xa0",
    b"\xed\xa0\x80",
    b"\xf0\x9f\x8d\xba",
    b"\xf4\x90\x80\x80",
    b"=",
    b"\"",
    b"'",
    b"^",
    b",",
    b"(",
    b"QUJD",
    b"Zm9v",
    b"A",
    b"z",
    b"0",
    b"7",
    b"9",
    b"a",
    b"f",
    b"F",
    b"g",
    b"u",
    b"x",
    b"X",
    b"{",
];

fn random_input(rng: &mut XorShift, max_len: usize) -> Vec<u8> {
    let target = rng.below(max_len + 1);
    let mut v = Vec::with_capacity(target + 8);
    while v.len() < target {
        match rng.below(10) {
            0..=6 => v.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]),
            7 | 8 => v.push(b"0123456789abcdefABCDEF"[rng.below(22)]),
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

/// For thousands of inputs per transformation: no panic, output within the bound, and the
/// scan/write contract — `false` means the whole output would equal the input (and `out` is
/// untouched), `true` means it differs and equals the output written from the beginning.
#[test]
fn random_inputs_respect_the_contract() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for t in all() {
        let k = kernel(t);
        for _ in 0..3000 {
            let input = random_input(&mut rng, 48);
            let mut full = Vec::new();
            (k.write)(&input, 0, &mut full);
            assert!(
                full.len() <= output_bound(t, input.len()),
                "{}({input:?}): {} bytes out of {}",
                t.name(),
                full.len(),
                input.len()
            );
            let mut out = b"sentinel".to_vec();
            if apply(t, &input, &mut out) {
                assert_eq!(
                    out,
                    full,
                    "{}({input:?}): restarted scan disagrees",
                    t.name()
                );
                assert_ne!(out, input, "{}({input:?}) reported a change", t.name());
            } else {
                assert_eq!(
                    out,
                    b"sentinel",
                    "{}({input:?}) touched the buffer",
                    t.name()
                );
                assert_eq!(full, input, "{}({input:?}) missed a change", t.name());
            }
        }
    }
}

#[test]
fn random_pipelines_stay_bounded() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let ts = all();
    for _ in 0..2000 {
        let steps: Vec<Transformation> = (0..1 + rng.below(7))
            .map(|_| ts[rng.below(ts.len())])
            .collect();
        let input = random_input(&mut rng, 64);
        pipeline(&steps, &input);
    }
}

/// The documented bounds are reached: each worst case, repeated.
#[test]
fn bounds_are_tight() {
    use Transformation as T;
    let n = 4096;
    let cases: &[(T, Vec<u8>)] = &[
        (T::HexEncode, vec![b'a'; n]),
        (T::Utf8ToUnicode, vec![0xff; n]),
        (T::UrlEncode, vec![0xff; n]),
        (T::RemoveWhitespace, vec![0xff; n]),
        (T::HtmlEntityDecode, b"&acE;".repeat(n / 5)),
    ];
    for (t, input) in cases {
        assert_eq!(
            run(*t, input).len(),
            output_bound(*t, input.len()),
            "{}",
            t.name()
        );
    }
}

/// Long adversarial inputs complete (a quadratic path would not, at this size) and stay
/// within bounds.
#[test]
fn long_inputs() {
    let patterns: &[&[u8]] = &[
        b"%u",
        b"%",
        b"&",
        b"&a",
        b"&#",
        b"&#1",
        b"&amp",
        b"\\",
        b"\\u{1",
        b"0x",
        b"/*",
        b"*/",
        b"<!--",
        b"--",
        b"../",
        b"a/../",
        b"./",
        b"//",
        b"\\..",
        b" ",
        b"\xc2",
        b"\xa0",
        b"\xe2\x80",
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ];
    for t in all() {
        for p in patterns {
            let input = p.repeat((1 << 17) / p.len());
            let out = run(t, &input);
            assert!(out.len() <= output_bound(t, input.len()), "{}", t.name());
        }
    }
}

#[test]
fn crs_pipelines() {
    use Transformation as T;
    // The 6-step pipeline of 20 CRS rules (941xxx, 942xxx), and the curly-quote case of the
    // 942420/942440 tests: ’ → %u2019 → '.
    let xss = [
        T::Utf8ToUnicode,
        T::UrlDecodeUni,
        T::HtmlEntityDecode,
        T::JsDecode,
        T::CssDecode,
        T::RemoveNulls,
    ];
    let cases: &[(&[T], &[u8], &[u8])] = &[
        (&xss, "\u{2019} OR 1=1--".as_bytes(), b"' OR 1=1--"),
        (
            &xss,
            b"&lt;script&gt;alert(1)&lt;/script&gt;",
            b"<script>alert(1)</script>",
        ),
        (&xss, b"%3Cscr%00ipt%3E", b"<script>"),
        (
            &xss,
            b"\\u003cimg src=x onerror=alert(1)\\u003e",
            b"<img src=x onerror=alert(1)>",
        ),
        (&xss, b"%uff1cscript%uff1e", b"<script>"),
        // jsDecode runs first and reads CSS's `\6A` as octal 6 (ModSecurity issue #2517).
        (&xss, b"\\6A\\61vascript:", b"\x06A1vascript:"),
        (&[T::CssDecode], b"\\6A\\61vascript:", b"javascript:"),
        (&xss, b"plain benign value", b"plain benign value"),
        (
            &[T::Sha1, T::HexEncode],
            b"abc",
            b"a9993e364706816aba3e25717850c26c9cd0d89d",
        ),
        (
            &[T::UrlDecodeUni, T::ReplaceComments],
            b"UNION/**/SELECT%20",
            b"UNION SELECT ",
        ),
        (
            &[T::CmdLine, T::NormalizePath],
            b"CAT /ETC/./PASSWD",
            b"cat/etc/passwd",
        ),
        (
            &[T::Utf8ToUnicode, T::UrlDecodeUni, T::NormalizePathWin],
            b"..%5c..%5cwindows\\win.ini",
            b"../../windows/win.ini",
        ),
        (&[T::Lowercase, T::Length], b"ABC", b"3"),
    ];
    for (steps, input, want) in cases {
        let names: Vec<&str> = steps.iter().map(|t| t.name()).collect();
        assert_eq!(
            pipeline(steps, input),
            *want,
            "{} on {:?}",
            names.join(" > "),
            String::from_utf8_lossy(input)
        );
    }
}
