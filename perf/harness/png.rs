//! A minimal PNG writer for the latency plot: 8-bit indexed colour, one zlib stream compressed
//! with fixed-Huffman deflate whose only matches repeat the previous byte or the previous row.
//! A plot is mostly background, so this is small (tens of KB) without a compression crate.
//!
//! Owns: the PNG container (signature, IHDR, PLTE, IDAT, IEND, CRC-32), the zlib wrapper
//! (Adler-32) and the deflate encoder. Must not: do anything but encode.

/// An image whose pixels index a palette of up to 256 RGB colours.
pub struct Indexed {
    pub width: usize,
    pub height: usize,
    pub palette: Vec<[u8; 3]>,
    pub pixels: Vec<u8>,
}

impl Indexed {
    pub fn new(width: usize, height: usize, palette: Vec<[u8; 3]>) -> Indexed {
        Indexed {
            width,
            height,
            palette,
            pixels: vec![0; width * height],
        }
    }

    pub fn set(&mut self, x: i64, y: i64, color: u8) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[y as usize * self.width + x as usize] = color;
        }
    }

    /// The PNG file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 3, 0, 0, 0]); // depth 8, indexed, deflate, filter 0, no interlace
        chunk(&mut out, b"IHDR", &ihdr);
        let plte: Vec<u8> = self.palette.iter().flatten().copied().collect();
        chunk(&mut out, b"PLTE", &plte);
        let stride = self.width + 1;
        let mut raw = Vec::with_capacity(stride * self.height);
        for row in self.pixels.chunks(self.width.max(1)) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        chunk(&mut out, b"IDAT", &zlib(&raw, stride));
        chunk(&mut out, b"IEND", &[]);
        out
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// Writes bits least-significant first, as deflate wants.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code, most-significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let mut rev = 0;
        for i in 0..len {
            rev |= ((code >> i) & 1) << (len - 1 - i);
        }
        self.put(rev, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// The fixed literal/length code of symbol `sym` (RFC 1951 §3.2.6).
fn fixed_litlen(bits: &mut Bits, sym: u32) {
    match sym {
        0..=143 => bits.code(0x30 + sym, 8),
        144..=255 => bits.code(0x190 + sym - 144, 9),
        256..=279 => bits.code(sym - 256, 7),
        _ => bits.code(0xC0 + sym - 280, 8),
    }
}

const LEN_BASE: [u32; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u32; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

fn put_match(bits: &mut Bits, len: u32, dist: u32) {
    let li = LEN_BASE.iter().rposition(|&b| b <= len).unwrap_or(0);
    fixed_litlen(bits, 257 + li as u32);
    bits.put(len - LEN_BASE[li], LEN_EXTRA[li]);
    let di = DIST_BASE.iter().rposition(|&b| b <= dist).unwrap_or(0);
    bits.code(di as u32, 5);
    bits.put(dist - DIST_BASE[di], DIST_EXTRA[di]);
}

/// Raw deflate, one fixed-Huffman block. Matches are tried at distance 1 and `row` (the
/// previous scanline), the only repetition a plot has much of.
pub fn deflate(data: &[u8], row: usize) -> Vec<u8> {
    let mut bits = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = 01, fixed Huffman
    let matching = |pos: usize, dist: usize| -> usize {
        if dist == 0 || dist > pos || dist > 32768 {
            return 0;
        }
        let mut n = 0;
        while n < 258 && pos + n < data.len() && data[pos + n] == data[pos + n - dist] {
            n += 1;
        }
        n
    };
    let mut pos = 0;
    while pos < data.len() {
        let (a, b) = (matching(pos, 1), matching(pos, row));
        let (len, dist) = if b >= a { (b, row) } else { (a, 1) };
        if len >= 3 {
            put_match(&mut bits, len as u32, dist as u32);
            pos += len;
        } else {
            fixed_litlen(&mut bits, u32::from(data[pos]));
            pos += 1;
        }
    }
    fixed_litlen(&mut bits, 256);
    bits.finish()
}

fn zlib(data: &[u8], row: usize) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    out.extend(deflate(data, row));
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An independent inflater for fixed-Huffman and stored blocks (RFC 1951), to check the
    /// encoder by round trip.
    pub fn inflate(input: &[u8]) -> Vec<u8> {
        let mut pos = 0usize; // bit position
        let bit = |pos: &mut usize| -> u32 {
            let b = (input[*pos / 8] >> (*pos % 8)) & 1;
            *pos += 1;
            u32::from(b)
        };
        let bits =
            |pos: &mut usize, n: u32| -> u32 { (0..n).fold(0, |acc, i| acc | (bit(pos) << i)) };
        let mut out = Vec::new();
        loop {
            let last = bit(&mut pos);
            let kind = bits(&mut pos, 2);
            match kind {
                0 => {
                    pos = pos.div_ceil(8) * 8;
                    let len = bits(&mut pos, 16) as usize;
                    let _nlen = bits(&mut pos, 16);
                    out.extend_from_slice(&input[pos / 8..pos / 8 + len]);
                    pos += len * 8;
                }
                1 => loop {
                    let mut code = 0;
                    for _ in 0..7 {
                        code = (code << 1) | bit(&mut pos);
                    }
                    let sym = if code <= 0x17 {
                        code + 256
                    } else {
                        code = (code << 1) | bit(&mut pos);
                        match code {
                            0x30..=0xBF => code - 0x30,
                            0xC0..=0xC7 => code - 0xC0 + 280,
                            _ => {
                                code = (code << 1) | bit(&mut pos);
                                code - 0x190 + 144
                            }
                        }
                    };
                    match sym {
                        0..=255 => out.push(sym as u8),
                        256 => break,
                        _ => {
                            let i = (sym - 257) as usize;
                            let len = LEN_BASE[i] + bits(&mut pos, LEN_EXTRA[i]);
                            let mut d = 0;
                            for _ in 0..5 {
                                d = (d << 1) | bit(&mut pos);
                            }
                            let dist = (DIST_BASE[d as usize]
                                + bits(&mut pos, DIST_EXTRA[d as usize]))
                                as usize;
                            for _ in 0..len {
                                out.push(out[out.len() - dist]);
                            }
                        }
                    }
                },
                _ => panic!("block type {kind} not supported by the test inflater"),
            }
            if last == 1 {
                return out;
            }
        }
    }

    #[test]
    fn deflate_round_trips() {
        let row = 97;
        let mut data = Vec::new();
        for y in 0..300usize {
            for x in 0..row {
                // Background runs, repeated rows, and some noise that matches nothing.
                let v = if y % 50 == 7 {
                    (x * 31 + y * 17) % 251
                } else if x % 40 < 3 {
                    200
                } else {
                    0
                };
                data.push(v as u8);
            }
        }
        let z = deflate(&data, row);
        assert_eq!(inflate(&z), data);
        assert!(z.len() < data.len() / 4, "{} of {}", z.len(), data.len());
        // Every literal and the longest runs.
        let all: Vec<u8> = (0..=255u8).chain(std::iter::repeat_n(9, 1000)).collect();
        assert_eq!(inflate(&deflate(&all, 10)), all);
    }

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn png_chunks_are_well_formed() {
        let mut img = Indexed::new(40, 30, vec![[255, 255, 255], [0, 0, 0]]);
        for i in 0..30 {
            img.set(i, i, 1);
        }
        img.set(-1, 5, 1); // off the canvas: ignored
        let png = img.encode();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let mut pos = 8;
        let mut kinds = Vec::new();
        let mut idat = Vec::new();
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let kind = &png[pos + 4..pos + 8];
            let data = &png[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            assert_eq!(crc, crc32(&png[pos + 4..pos + 8 + len]));
            if kind == b"IDAT" {
                idat.extend_from_slice(data);
            }
            kinds.push(String::from_utf8_lossy(kind).to_string());
            pos += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "PLTE", "IDAT", "IEND"]);
        assert_eq!((u16::from(idat[0]) << 8 | u16::from(idat[1])) % 31, 0);
        let raw = inflate(&idat[2..idat.len() - 4]);
        assert_eq!(raw.len(), 30 * 41);
        assert_eq!(&idat[idat.len() - 4..], adler32(&raw).to_be_bytes());
        assert_eq!(raw[41 * 3], 0); // filter byte
        assert_eq!(raw[41 * 3 + 1 + 3], 1); // the diagonal pixel (3, 3)
    }
}
