//! The SPOP varint: HAProxy's additive "peers" encoding of a `u64` in 1 to 10 bytes.
//!
//! Values below 240 take one byte. Otherwise the first byte is `(v & 0xff) | 0xf0`, then
//! `v = (v - 240) >> 4`, and each following byte is `(v & 0xff) | 0x80` with
//! `v = (v - 128) >> 7`, until a final byte below 128. Decoding *adds* every byte shifted into
//! place, high bits included (`f0 00` is 240, not 0): it is not LEB128.
//! Negative integers travel as their two's complement `u64` (10 bytes).

/// Longest encoding of a `u64`.
pub const MAX_LEN: usize = 10;

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended before the final byte (one below 128).
    Truncated,
    /// More than [`MAX_LEN`] bytes, or a value above `u64::MAX`.
    Overlong,
}

/// Decodes one varint from the start of `input`; returns the value and the bytes it used.
pub fn decode(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let first = *input.first().ok_or(VarintError::Truncated)?;
    if first < 240 {
        return Ok((u64::from(first), 1));
    }
    // u128 makes the overflow check exact without reasoning about partial shifts.
    let mut value = u128::from(first);
    let mut shift = 4u32;
    let mut used = 1usize;
    loop {
        if used >= MAX_LEN {
            return Err(VarintError::Overlong);
        }
        let byte = *input.get(used).ok_or(VarintError::Truncated)?;
        used += 1;
        value += u128::from(byte) << shift;
        if value > u128::from(u64::MAX) {
            return Err(VarintError::Overlong);
        }
        if byte < 128 {
            // The bound above makes the conversion lossless.
            return Ok((value as u64, used));
        }
        shift += 7;
    }
}

/// Encodes `value` into `out`; returns the number of bytes written (1 to 10).
pub fn encode_into(value: u64, out: &mut [u8; MAX_LEN]) -> usize {
    if value < 240 {
        out[0] = value as u8;
        return 1;
    }
    out[0] = (value as u8) | 0xf0;
    let mut rest = (value - 240) >> 4;
    let mut len = 1;
    while rest >= 128 {
        out[len] = (rest as u8) | 0x80;
        rest = (rest - 128) >> 7;
        len += 1;
    }
    out[len] = rest as u8;
    len + 1
}

/// Appends the encoding of `value` to `out`.
pub fn encode(value: u64, out: &mut Vec<u8>) {
    let mut tmp = [0u8; MAX_LEN];
    let len = encode_into(value, &mut tmp);
    out.extend_from_slice(&tmp[..len]);
}

/// Number of bytes [`encode`] writes for `value`.
pub fn encoded_len(value: u64) -> usize {
    let mut tmp = [0u8; MAX_LEN];
    encode_into(value, &mut tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Boundaries from `docs/spop.md` §1.2 (the full table lives in the vector tests).
    #[test]
    fn size_boundaries() {
        let table: &[(u64, usize)] = &[
            (239, 1),
            (240, 2),
            (2287, 2),
            (2288, 3),
            (264_431, 3),
            (264_432, 4),
            (33_818_863, 4),
            (33_818_864, 5),
            (4_328_786_159, 5),
            (4_328_786_160, 6),
            (u64::MAX, 10),
        ];
        for &(value, len) in table {
            assert_eq!(encoded_len(value), len, "{value}");
            let mut buf = Vec::new();
            encode(value, &mut buf);
            assert_eq!(decode(&buf), Ok((value, len)), "{value}");
        }
    }

    #[test]
    fn additive_not_leb128() {
        assert_eq!(decode(&[0xf0, 0x00]), Ok((240, 2)));
        assert_eq!(decode(&[0xfc, 0xf0, 0x06]), Ok((16380, 3)));
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        assert_eq!(decode(&[]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0xf0]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0xff, 0xff, 0xff]), Err(VarintError::Truncated));
        // 11 bytes: longer than any u64 encoding.
        assert_eq!(decode(&[0xff; 11]), Err(VarintError::Overlong));
        // 10 bytes whose sum exceeds u64::MAX (last byte one above the 2^64-1 encoding).
        let over = [0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0f];
        assert_eq!(decode(&over), Err(VarintError::Overlong));
    }

    #[test]
    fn trailing_bytes_are_not_consumed() {
        assert_eq!(decode(&[0x05, 0xff]), Ok((5, 1)));
    }
}
