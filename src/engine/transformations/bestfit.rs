//! The best-fit folding `urlDecodeUni` applies to `%uXXXX` escapes.
//!
//! Data only. CRS deployments load ModSecurity's `unicode.mapping` with code page 20127
//! (US-ASCII) through `SecUnicodeMapFile`, and Coraza carries the same folding built in. The
//! mapping is Windows' "best fit" for that code page: a character with an obvious ASCII
//! look-alike (accented letters, typographic quotes and dashes, spaces, fullwidth forms) folds
//! to it; everything else has no entry and `urlDecodeUni` falls back to the low byte.
//!
//! The code page lists 370 characters. 93 of them are the fullwidth forms U+FF01–U+FF5E, which
//! fold to their low byte + 0x20 — exactly what the no-entry fallback already computes — so they
//! are left to that rule and the table below holds the other 277, grouped by the ASCII byte they
//! fold to. All of those lie in U+00A0–U+2122, which the lookup array covers directly.

/// `(ASCII byte, code points that fold to it)`, one row per byte.
const FOLDS: &[(u8, &[u16])] = &[
    (
        b' ',
        &[
            0x00a0, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006,
        ],
    ),
    (b'!', &[0x00a1]),
    (b'"', &[0x02ba, 0x030e, 0x201c, 0x201d, 0x201e]),
    (b'$', &[0x00a4]),
    (b'\'', &[0x02b9, 0x02bc, 0x02c8, 0x2018, 0x2019, 0x2032]),
    (b',', &[0x00b8, 0x201a]),
    (b'-', &[0x00ad, 0x2010, 0x2011, 0x2013, 0x2014]),
    (b'.', &[0x00b7, 0x2022, 0x2026]),
    (b'1', &[0x00b9]),
    (b'2', &[0x00b2]),
    (b'3', &[0x00b3]),
    (b'<', &[0x00ab, 0x2039]),
    (b'>', &[0x00bb, 0x203a]),
    (
        b'A',
        &[
            0x00c0, 0x00c1, 0x00c2, 0x00c3, 0x00c4, 0x00c5, 0x00c6, 0x0100, 0x0102, 0x0104, 0x01cd,
            0x01de,
        ],
    ),
    (b'C', &[0x00a9, 0x00c7, 0x0106, 0x0108, 0x010a, 0x010c]),
    (b'D', &[0x00d0, 0x010e, 0x0110, 0x0189]),
    (
        b'E',
        &[
            0x00c8, 0x00c9, 0x00ca, 0x00cb, 0x0112, 0x0114, 0x0116, 0x0118, 0x011a,
        ],
    ),
    (b'F', &[0x0191]),
    (b'G', &[0x011c, 0x011e, 0x0120, 0x0122, 0x01e4, 0x01e6]),
    (b'H', &[0x0124, 0x0126]),
    (
        b'I',
        &[
            0x00cc, 0x00cd, 0x00ce, 0x00cf, 0x0128, 0x012a, 0x012c, 0x012e, 0x0130, 0x0197, 0x01cf,
        ],
    ),
    (b'J', &[0x0134]),
    (b'K', &[0x0136, 0x01e8]),
    (b'L', &[0x0139, 0x013b, 0x013d, 0x0141]),
    (b'N', &[0x00d1, 0x0143, 0x0145, 0x0147]),
    (
        b'O',
        &[
            0x00d2, 0x00d3, 0x00d4, 0x00d5, 0x00d6, 0x00d8, 0x014c, 0x014e, 0x0150, 0x0152, 0x019f,
            0x01a0, 0x01d1, 0x01ea, 0x01ec,
        ],
    ),
    (b'R', &[0x00ae, 0x0154, 0x0156, 0x0158]),
    (b'S', &[0x015a, 0x015c, 0x015e, 0x0160]),
    (b'T', &[0x0162, 0x0164, 0x0166, 0x01ae, 0x2122]),
    (
        b'U',
        &[
            0x00d9, 0x00da, 0x00db, 0x00dc, 0x0168, 0x016a, 0x016c, 0x016e, 0x0170, 0x0172, 0x01af,
            0x01d3, 0x01d5, 0x01d7, 0x01d9, 0x01db,
        ],
    ),
    (b'W', &[0x0174]),
    (b'Y', &[0x00a5, 0x00dd, 0x0176, 0x0178]),
    (b'Z', &[0x0179, 0x017b, 0x017d]),
    (b'^', &[0x02c4, 0x02c6, 0x0302]),
    (b'_', &[0x02cd, 0x0331, 0x0332]),
    (b'`', &[0x02cb, 0x0300, 0x2035]),
    (
        b'a',
        &[
            0x00aa, 0x00e0, 0x00e1, 0x00e2, 0x00e3, 0x00e4, 0x00e5, 0x00e6, 0x0101, 0x0103, 0x0105,
            0x01ce, 0x01df,
        ],
    ),
    (b'b', &[0x0180]),
    (b'c', &[0x00a2, 0x00e7, 0x0107, 0x0109, 0x010b, 0x010d]),
    (b'd', &[0x010f, 0x0111]),
    (
        b'e',
        &[
            0x00e8, 0x00e9, 0x00ea, 0x00eb, 0x0113, 0x0115, 0x0117, 0x0119, 0x011b,
        ],
    ),
    (b'f', &[0x0192]),
    (
        b'g',
        &[0x011d, 0x011f, 0x0121, 0x0123, 0x01e5, 0x01e7, 0x0261],
    ),
    (b'h', &[0x0125, 0x0127]),
    (
        b'i',
        &[
            0x00ec, 0x00ed, 0x00ee, 0x00ef, 0x0129, 0x012b, 0x012d, 0x012f, 0x0131, 0x01d0,
        ],
    ),
    (b'j', &[0x0135, 0x01f0]),
    (b'k', &[0x0137, 0x01e9]),
    (b'l', &[0x013a, 0x013c, 0x013e, 0x0142, 0x019a]),
    (b'n', &[0x00f1, 0x0144, 0x0146, 0x0148]),
    (
        b'o',
        &[
            0x00ba, 0x00f2, 0x00f3, 0x00f4, 0x00f5, 0x00f6, 0x00f8, 0x014d, 0x014f, 0x0151, 0x0153,
            0x01a1, 0x01d2, 0x01eb, 0x01ed,
        ],
    ),
    (b'r', &[0x0155, 0x0157, 0x0159]),
    (b's', &[0x015b, 0x015d, 0x015f, 0x0161]),
    (b't', &[0x0163, 0x0165, 0x0167, 0x01ab]),
    (
        b'u',
        &[
            0x00f9, 0x00fa, 0x00fb, 0x00fc, 0x0169, 0x016b, 0x016d, 0x016f, 0x0171, 0x0173, 0x01b0,
            0x01d4, 0x01d6, 0x01d8, 0x01da, 0x01dc,
        ],
    ),
    (b'w', &[0x0175]),
    (b'y', &[0x00fd, 0x00ff, 0x0177]),
    (b'z', &[0x017c, 0x017e, 0x01b6]),
    (b'|', &[0x00a6]),
    (b'~', &[0x02dc, 0x0303]),
];

/// First and last code point with a fold outside the fullwidth block.
const FIRST: u16 = 0x00a0;
const LAST: u16 = 0x2122;

/// `FOLDS` inverted into a direct lookup from `code point - FIRST`; 0 means no fold (no code
/// point folds to NUL).
static LOOKUP: [u8; (LAST - FIRST) as usize + 1] = {
    let mut table = [0u8; (LAST - FIRST) as usize + 1];
    let mut row = 0;
    while row < FOLDS.len() {
        let (byte, code_points) = FOLDS[row];
        let mut k = 0;
        while k < code_points.len() {
            let cp = code_points[k];
            assert!(cp >= FIRST && cp <= LAST, "fold outside the lookup range");
            assert!(table[(cp - FIRST) as usize] == 0, "code point listed twice");
            table[(cp - FIRST) as usize] = byte;
            k += 1;
        }
        row += 1;
    }
    table
};

/// The ASCII byte `cp` folds to under code page 20127, if it has a best-fit entry outside the
/// fullwidth block (that block is handled by the caller's low-byte rule).
pub(super) fn fold(cp: u16) -> Option<u8> {
    let index = cp.checked_sub(FIRST)?;
    match LOOKUP.get(usize::from(index)) {
        Some(&b) if b != 0 => Some(b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_holds_the_277_non_fullwidth_folds() {
        let listed: usize = FOLDS.iter().map(|(_, cps)| cps.len()).sum();
        assert_eq!(listed, 277);
        assert_eq!(LOOKUP.iter().filter(|&&b| b != 0).count(), 277);
    }

    #[test]
    fn folds_from_the_code_page() {
        let cases: &[(u16, Option<u8>)] = &[
            (0x2019, Some(b'\'')), // right single quotation mark
            (0x201c, Some(b'"')),
            (0x00a0, Some(b' ')),
            (0x00e9, Some(b'e')),
            (0x00c6, Some(b'A')), // AE ligature keeps only its first letter
            (0x2122, Some(b'T')), // trade mark sign
            (0x2014, Some(b'-')),
            (0x00d7, None), // multiplication sign: no look-alike
            (0x0041, None), // ASCII itself is not in the table
            (0x2123, None),
            (0xff01, None), // fullwidth: left to the low-byte rule
        ];
        for &(cp, want) in cases {
            assert_eq!(fold(cp), want, "U+{cp:04X}");
        }
    }
}
