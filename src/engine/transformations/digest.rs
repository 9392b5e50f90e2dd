//! Encoders and digests: sha1, hexEncode, length, urlEncode.
//!
//! Owns the output formats (raw digest bytes, lower-case hex, decimal). These replace the value
//! wholesale, so the "unchanged" check compares the would-be output with the input directly;
//! it is cheap because the output is small or the comparison fails on length.

use super::Kernel;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `sha1`: the 20 raw bytes of the SHA-1 digest (usually followed by `hexEncode`, as in CRS's
/// sampling rule). ModSecurity and Coraza agree.
pub(super) const SHA1: Kernel = Kernel {
    scan: |s| (s.len() != 20 || sha1(s) != s).then_some(0),
    write: |s, _, out| out.extend_from_slice(&sha1(s)),
};

fn sha1(s: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(s).digest().bytes()
}

/// `hexEncode`: each byte as two lower-case hex digits. Output = 2× input.
pub(super) const HEX_ENCODE: Kernel = Kernel {
    scan: |s| (!s.is_empty()).then_some(0),
    write: |s, _, out| {
        for &b in s {
            out.extend_from_slice(&[
                HEX_DIGITS[usize::from(b >> 4)],
                HEX_DIGITS[usize::from(b & 0xf)],
            ]);
        }
    },
};

/// `length`: the input length in decimal. Output ≤ 20 bytes.
pub(super) const LENGTH: Kernel = Kernel {
    scan: |s| {
        let mut digits = [0u8; 20];
        (decimal(s.len(), &mut digits) != s).then_some(0)
    },
    write: |s, _, out| {
        let mut digits = [0u8; 20];
        out.extend_from_slice(decimal(s.len(), &mut digits));
    },
};

/// `n` in decimal, written at the end of `buf` (20 bytes hold any `usize`).
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        if let Some(slot) = buf.get_mut(start) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

/// `urlEncode`: space → `+`; `*`, digits and ASCII letters kept; every other byte `%hh` in
/// lower case. ModSecurity and Coraza agree. Output ≤ 3× input.
pub(super) const URL_ENCODE: Kernel = Kernel {
    scan: |s| s.iter().position(|&b| !url_safe(b)),
    write: |s, i, out| {
        for &b in s.get(i..).unwrap_or_default() {
            if url_safe(b) {
                out.push(b);
            } else if b == b' ' {
                out.push(b'+');
            } else {
                out.extend_from_slice(&[
                    b'%',
                    HEX_DIGITS[usize::from(b >> 4)],
                    HEX_DIGITS[usize::from(b & 0xf)],
                ]);
            }
        }
    },
};

fn url_safe(b: u8) -> bool {
    b == b'*' || b.is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::super::{apply, Transformation as T};

    fn run(t: T, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if apply(t, input, &mut out) {
            out
        } else {
            input.to_vec()
        }
    }

    /// Parses lower-case hex for readable expectations.
    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vector is hex"))
            .collect()
    }

    #[test]
    fn sha1_vectors() {
        // ModSecurity's sha1 vectors (and FIPS 180-2's "abc").
        let cases: &[(&[u8], &str)] = &[
            (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (b"TestCase", "a70ce38389e318bd2be18a0111c6dc76bd2cd9ed"),
            (
                b"\0\x01\x02\x03\x04\x05\x06\x07\x08",
                "63bf60c7105a07a2b125bbf89e61abdabc6978c2",
            ),
            (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ];
        for &(input, want) in cases {
            assert_eq!(
                run(T::Sha1, input),
                unhex(want),
                "sha1({:?})",
                String::from_utf8_lossy(input)
            );
        }
        // sha1 > hexEncode, CRS's pipeline.
        let digest = run(T::Sha1, b"abc");
        assert_eq!(
            run(T::HexEncode, &digest),
            b"a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn hex_encode() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"TestCase", b"5465737443617365"),
            (b"Test\0Case", b"546573740043617365"),
            (b"\x00\x7f\x80\xff", b"007f80ff"),
        ];
        for &(input, want) in cases {
            assert_eq!(run(T::HexEncode, input), want);
        }
    }

    #[test]
    fn length() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b"0"),
            (b"0", b"1"),
            (b"1", b"1"),
            (b"TestCase", b"8"),
            (b"Test\0Case", b"9"),
            (&[b'x'; 1234], b"1234"),
        ];
        for &(input, want) in cases {
            assert_eq!(run(T::Length, input), want);
        }
    }

    #[test]
    fn url_encode() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"TestCase", b"TestCase"),
            (b"Test\0Case", b"Test%00Case"),
            (b"Test Case*", b"Test+Case*"),
            (b"a=b&c", b"a%3db%26c"),
            (b"%\xff~-._", b"%25%ff%7e%2d%2e%5f"),
        ];
        for &(input, want) in cases {
            assert_eq!(run(T::UrlEncode, input), want);
        }
    }
}
