//! Decoding of the header arguments HAProxy sends: `req.hdrs` / `res.hdrs` text
//! (`name: value\r\n` lines and a final empty line) and `req.hdrs_bin` binary pairs
//! (`<varint len><name><varint len><value>`, terminated by an empty name and value).
//!
//! Both are total: malformed input yields what could be read plus an error flag, never a
//! panic. Must not allocate per header.

use crate::spop::varint;

/// Calls `f(name, value)` for every header line of `req.hdrs` text. Returns the number of
/// lines that had no `:` (skipped; HAProxy never produces them, a hand-written config might).
pub fn text(block: &[u8], mut f: impl FnMut(&[u8], &[u8])) -> usize {
    let mut bad = 0;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match memchr::memchr(b':', line) {
            Some(i) => f(trim(&line[..i]), trim(&line[i + 1..])),
            None => bad += 1,
        }
    }
    bad
}

/// Calls `f(name, value)` for every pair of `req.hdrs_bin`. Returns `Err` (after delivering
/// the pairs before it) when the block is truncated or a length is malformed.
pub fn binary(mut block: &[u8], mut f: impl FnMut(&[u8], &[u8])) -> Result<(), &'static str> {
    while !block.is_empty() {
        let (name, rest) = take(block)?;
        let (value, rest) = take(rest)?;
        block = rest;
        if name.is_empty() && value.is_empty() {
            return Ok(());
        }
        f(name, value);
    }
    // No terminator: the block was cut.
    Err("header block ends without its terminator")
}

fn take(b: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let (len, used) = varint::decode(b).map_err(|_| "malformed length in header block")?;
    let rest = &b[used..];
    let len = usize::try_from(len).map_err(|_| "header length out of range")?;
    if len > rest.len() {
        return Err("header block truncated");
    }
    Ok(rest.split_at(len))
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(s, |e| e + 1);
    &b[s..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn collect_text(b: &[u8]) -> (Pairs, usize) {
        let mut v = Vec::new();
        let bad = text(b, |n, x| v.push((n.to_vec(), x.to_vec())));
        (v, bad)
    }

    #[test]
    fn text_block_as_haproxy_sends_it() {
        let (v, bad) =
            collect_text(b"host: a\r\nx-multi: 1\r\nx-multi:  2 \r\nx-latin1: caf\xe9\r\n\r\n");
        assert_eq!(bad, 0);
        assert_eq!(v.len(), 4);
        assert_eq!(v[2], (b"x-multi".to_vec(), b"2".to_vec()));
        assert_eq!(v[3].1, b"caf\xe9");
        let (v, bad) = collect_text(b"no colon\r\nok: 1\r\n");
        assert_eq!((v.len(), bad), (1, 1));
    }

    #[test]
    fn binary_block() {
        let mut b = Vec::new();
        for (n, x) in [(&b"host"[..], &b"a"[..]), (b"accept", b"*/*")] {
            varint::encode(n.len() as u64, &mut b);
            b.extend_from_slice(n);
            varint::encode(x.len() as u64, &mut b);
            b.extend_from_slice(x);
        }
        b.extend_from_slice(&[0, 0]);
        let mut v = Vec::new();
        binary(&b, |n, x| v.push((n.to_vec(), x.to_vec()))).unwrap();
        assert_eq!(v.len(), 2);
        assert!(binary(&b[..b.len() - 2], |_, _| {}).is_err());
        assert!(binary(&[0xf0], |_, _| {}).is_err());
        assert!(binary(&[5, b'a'], |_, _| {}).is_err());
    }
}
