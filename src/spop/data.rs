//! Typed data, KV lists, and the bounds-checked cursor every decoder in this module reads with.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::DecodeError;
use super::varint;

/// A bounds-checked cursor over untrusted bytes. Every read checks the remaining length first
/// and fails with [`DecodeError::Truncated`] naming the field; nothing here can panic.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The bytes from `start` (an earlier [`Reader::position`]) up to the current position.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or(&[])
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError::Truncated { what })?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u32_be(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        self.bytes(N, what)?
            .try_into()
            .map_err(|_| DecodeError::Truncated { what })
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DecodeError::Truncated { what })?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated { what })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let (value, used) =
            varint::decode(self.rest()).map_err(|e| DecodeError::from_varint(e, what))?;
        self.pos += used;
        Ok(value)
    }

    /// `<varint length><bytes>`, the encoding of names (no type byte).
    pub(crate) fn len_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.varint(what)?;
        // A length that does not even fit in usize certainly exceeds the buffer.
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated { what })?;
        self.bytes(len, what)
    }

    pub(crate) fn typed_data(&mut self, what: &'static str) -> Result<TypedData<'a>, DecodeError> {
        let type_byte = self.u8(what)?;
        let value = match type_byte & TYPE_MASK {
            T_NULL => TypedData::Null,
            T_BOOL => TypedData::Bool(type_byte & FLAG_TRUE != 0),
            T_INT32 => {
                let raw = self.varint(what)?;
                // Negative values travel as the sign-extended 64-bit two's complement.
                let v = i32::try_from(raw as i64)
                    .map_err(|_| DecodeError::IntegerOutOfRange { what, value: raw })?;
                TypedData::Int32(v)
            }
            T_UINT32 => {
                let raw = self.varint(what)?;
                let v = u32::try_from(raw)
                    .map_err(|_| DecodeError::IntegerOutOfRange { what, value: raw })?;
                TypedData::Uint32(v)
            }
            T_INT64 => TypedData::Int64(self.varint(what)? as i64),
            T_UINT64 => TypedData::Uint64(self.varint(what)?),
            T_IPV4 => TypedData::Ipv4(Ipv4Addr::from(self.array::<4>(what)?)),
            T_IPV6 => TypedData::Ipv6(Ipv6Addr::from(self.array::<16>(what)?)),
            T_STRING => TypedData::String(self.len_prefixed(what)?),
            T_BINARY => TypedData::Binary(self.len_prefixed(what)?),
            _ => return Err(DecodeError::ReservedDataType { type_byte, what }),
        };
        Ok(value)
    }
}

const TYPE_MASK: u8 = 0x0f;
const FLAG_TRUE: u8 = 0x10;
const T_NULL: u8 = 0;
const T_BOOL: u8 = 1;
const T_INT32: u8 = 2;
const T_UINT32: u8 = 3;
const T_INT64: u8 = 4;
const T_UINT64: u8 = 5;
const T_IPV4: u8 = 6;
const T_IPV6: u8 = 7;
const T_STRING: u8 = 8;
const T_BINARY: u8 = 9;

/// One SPOP typed value. STRING and BINARY borrow the frame and are bytes, never assumed UTF-8
/// (HAProxy passes raw header bytes such as `caf\xe9` in a STRING).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedData<'a> {
    Null,
    Bool(bool),
    Int32(i32),
    Uint32(u32),
    Int64(i64),
    Uint64(u64),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    String(&'a [u8]),
    Binary(&'a [u8]),
}

impl<'a> TypedData<'a> {
    /// The type byte as it appears on the wire (BOOL true carries the 0x10 flag).
    pub fn type_byte(&self) -> u8 {
        match self {
            TypedData::Null => T_NULL,
            TypedData::Bool(false) => T_BOOL,
            TypedData::Bool(true) => T_BOOL | FLAG_TRUE,
            TypedData::Int32(_) => T_INT32,
            TypedData::Uint32(_) => T_UINT32,
            TypedData::Int64(_) => T_INT64,
            TypedData::Uint64(_) => T_UINT64,
            TypedData::Ipv4(_) => T_IPV4,
            TypedData::Ipv6(_) => T_IPV6,
            TypedData::String(_) => T_STRING,
            TypedData::Binary(_) => T_BINARY,
        }
    }

    /// The bytes of a STRING or BINARY value.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            TypedData::String(b) | TypedData::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// Any integer type as `i64` (`None` for a UINT64 above `i64::MAX` and for non-integers).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            TypedData::Int32(v) => Some(i64::from(v)),
            TypedData::Uint32(v) => Some(i64::from(v)),
            TypedData::Int64(v) => Some(v),
            TypedData::Uint64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            TypedData::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value of an integer type as HAProxy's varint carries it (two's complement for
    /// negatives). `None` for non-integers.
    fn wire_integer(&self) -> Option<u64> {
        match *self {
            TypedData::Int32(v) => Some(i64::from(v) as u64),
            TypedData::Uint32(v) => Some(u64::from(v)),
            TypedData::Int64(v) => Some(v as u64),
            TypedData::Uint64(v) => Some(v),
            _ => None,
        }
    }

    /// Bytes [`TypedData::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            TypedData::Null | TypedData::Bool(_) => 0,
            TypedData::Ipv4(_) => 4,
            TypedData::Ipv6(_) => 16,
            TypedData::String(b) | TypedData::Binary(b) => {
                varint::encoded_len(b.len() as u64) + b.len()
            }
            other => other.wire_integer().map_or(0, varint::encoded_len),
        }
    }

    /// Appends `<type byte><value>` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.type_byte());
        match self {
            TypedData::Null | TypedData::Bool(_) => {}
            TypedData::Ipv4(a) => out.extend_from_slice(&a.octets()),
            TypedData::Ipv6(a) => out.extend_from_slice(&a.octets()),
            TypedData::String(b) | TypedData::Binary(b) => {
                varint::encode(b.len() as u64, out);
                out.extend_from_slice(b);
            }
            other => {
                if let Some(v) = other.wire_integer() {
                    varint::encode(v, out);
                }
            }
        }
    }
}

/// Appends `<varint length><bytes>` (a KV key, message, argument or variable name).
pub(crate) fn encode_name(name: &[u8], out: &mut Vec<u8>) {
    varint::encode(name.len() as u64, out);
    out.extend_from_slice(name);
}

pub(crate) fn encoded_name_len(name: &[u8]) -> usize {
    varint::encoded_len(name.len() as u64) + name.len()
}

/// A KV-LIST payload (HELLO, DISCONNECT): `(name, value)` pairs up to the end of the frame.
/// Yields an error once (an empty key, a truncated or reserved value) and then stops.
#[derive(Debug, Clone)]
pub struct KvList<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> KvList<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        KvList {
            reader: Reader::new(payload),
            failed: false,
        }
    }
}

impl<'a> Iterator for KvList<'a> {
    type Item = Result<(&'a [u8], TypedData<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let item = (|| {
            let key = self.reader.len_prefixed("KV key")?;
            if key.is_empty() {
                return Err(DecodeError::EmptyKey);
            }
            let value = self.reader.typed_data("KV value")?;
            Ok((key, value))
        })();
        self.failed = item.is_err();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: TypedData<'_>) {
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out.len(), v.encoded_len(), "{v:?}");
        let mut r = Reader::new(&out);
        assert_eq!(r.typed_data("v").unwrap(), v);
        assert!(r.is_empty());
    }

    #[test]
    fn every_type_round_trips() {
        for v in [
            TypedData::Null,
            TypedData::Bool(false),
            TypedData::Bool(true),
            TypedData::Int32(i32::MIN),
            TypedData::Int32(-5),
            TypedData::Int32(200),
            TypedData::Uint32(u32::MAX),
            TypedData::Int64(i64::MIN),
            TypedData::Int64(-5),
            TypedData::Uint64(u64::MAX),
            TypedData::Ipv4(Ipv4Addr::new(10, 1, 2, 3)),
            TypedData::Ipv6("2001:db8::1".parse().unwrap()),
            TypedData::String(b"caf\xe9 \xff"),
            TypedData::String(b""),
            TypedData::Binary(&[0, 0xff, b'b']),
        ] {
            round_trip(v);
        }
    }

    /// Wire forms from docs/spop.md §1.3 and the ack_all_types vector.
    #[test]
    fn wire_bytes() {
        let table: &[(&[u8], TypedData<'_>)] = &[
            (&[0x00], TypedData::Null),
            (&[0x01], TypedData::Bool(false)),
            (&[0x11], TypedData::Bool(true)),
            (&[0x02, 0xc8], TypedData::Int32(200)),
            (
                &[
                    0x04, 0xfb, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e,
                ],
                TypedData::Int64(-5),
            ),
            (&[0x05, 0xfc, 0x03], TypedData::Uint64(300)),
            (
                &[0x06, 10, 1, 2, 3],
                TypedData::Ipv4(Ipv4Addr::new(10, 1, 2, 3)),
            ),
            (&[0x08, 0x03, b'2', b'.', b'0'], TypedData::String(b"2.0")),
            (&[0x09, 0x02, 0x00, 0xff], TypedData::Binary(&[0x00, 0xff])),
        ];
        for (bytes, value) in table {
            let mut r = Reader::new(bytes);
            assert_eq!(&r.typed_data("v").unwrap(), value);
            let mut out = Vec::new();
            value.encode(&mut out);
            assert_eq!(&out[..], *bytes);
        }
    }

    #[test]
    fn flags_in_high_nibble_are_ignored_except_bool() {
        // HAProxy masks the type with 0x0f; a STRING with a stray flag is still a STRING.
        let mut r = Reader::new(&[0x18, 0x01, b'x']);
        assert_eq!(r.typed_data("v").unwrap(), TypedData::String(b"x"));
    }

    #[test]
    fn malformed_values() {
        let table: &[(&[u8], DecodeError)] = &[
            (&[], DecodeError::Truncated { what: "v" }),
            (
                &[0x0a],
                DecodeError::ReservedDataType {
                    type_byte: 0x0a,
                    what: "v",
                },
            ),
            (
                &[0x0f],
                DecodeError::ReservedDataType {
                    type_byte: 0x0f,
                    what: "v",
                },
            ),
            (&[0x06, 1, 2, 3], DecodeError::Truncated { what: "v" }),
            (&[0x07, 0, 0], DecodeError::Truncated { what: "v" }),
            (&[0x08, 0x05, b'a'], DecodeError::Truncated { what: "v" }),
            (&[0x08, 0xf0], DecodeError::Truncated { what: "v" }),
            (
                &[
                    0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
                DecodeError::OverlongVarint { what: "v" },
            ),
        ];
        for (bytes, err) in table {
            let mut r = Reader::new(bytes);
            assert_eq!(&r.typed_data("v").unwrap_err(), err, "{bytes:02x?}");
        }
        // UINT32 one above u32::MAX, INT32 one below i32::MIN.
        for (type_byte, value) in [
            (0x03u8, 1u64 << 32),
            (0x02, (i64::from(i32::MIN) - 1) as u64),
        ] {
            let mut bytes = vec![type_byte];
            varint::encode(value, &mut bytes);
            let mut r = Reader::new(&bytes);
            assert_eq!(
                r.typed_data("v").unwrap_err(),
                DecodeError::IntegerOutOfRange { what: "v", value }
            );
        }
    }

    #[test]
    fn kv_list_stops_after_error() {
        // "a" => NULL, then an empty key.
        let payload = [0x01, b'a', 0x00, 0x00, 0x00];
        let items: Vec<_> = KvList::new(&payload).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], Ok((&b"a"[..], TypedData::Null)));
        assert_eq!(items[1], Err(DecodeError::EmptyKey));
    }
}
