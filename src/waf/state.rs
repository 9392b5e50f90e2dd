//! The request's state carried to the response through HAProxy (`txn.coraza.state`).
//!
//! Workers share nothing, and the `coraza-res` message may reach another worker (or another
//! sidecar process) than `coraza-req` did. So the request's ACK sets one compact variable that
//! the HAProxy configuration passes back as the `state` argument of `coraza-res`:
//!
//! ```text
//! v1|e=<engine mode>|r=<id ranges removed by ctl>|g=<tags removed by ctl>|t=<tx deltas>
//! ```
//!
//! `t` lists the TX variables whose value differs from the ruleset's baseline (what a benign
//! request leaves after phases 1–2: CRS defaults, thresholds), as `key=value` pairs joined by
//! `&`, with `%XX` escapes for `%|&=,` and bytes outside printable ASCII. A benign request's
//! state is therefore just `v1`. Decoding is total: a malformed state is rejected as a whole.

use crate::seclang::ir::RuleEngineMode;

/// What the response evaluation needs from the request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestState {
    pub engine: Option<RuleEngineMode>,
    pub removed_ranges: Vec<(u32, u32)>,
    pub removed_tags: Vec<String>,
    /// `(key, Some(value))` set, `(key, None)` deleted.
    pub tx: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Most bytes a state may have (HAProxy variables are bounded by its buffer anyway).
pub const MAX_STATE_BYTES: usize = 8192;

pub fn encode(s: &RequestState, out: &mut Vec<u8>) {
    out.extend_from_slice(b"v1");
    if let Some(e) = s.engine {
        out.extend_from_slice(b"|e=");
        out.push(match e {
            RuleEngineMode::On => b'1',
            RuleEngineMode::DetectionOnly => b'd',
            RuleEngineMode::Off => b'0',
        });
    }
    if !s.removed_ranges.is_empty() {
        out.extend_from_slice(b"|r=");
        for (i, (a, b)) in s.removed_ranges.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("{a}-{b}").as_bytes());
        }
    }
    if !s.removed_tags.is_empty() {
        out.extend_from_slice(b"|g=");
        for (i, t) in s.removed_tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            escape(t.as_bytes(), out);
        }
    }
    if !s.tx.is_empty() {
        out.extend_from_slice(b"|t=");
        for (i, (k, v)) in s.tx.iter().enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            escape(k, out);
            if let Some(v) = v {
                out.push(b'=');
                escape(v, out);
            }
        }
    }
}

pub fn decode(b: &[u8]) -> Result<RequestState, &'static str> {
    if b.len() > MAX_STATE_BYTES {
        return Err("state too large");
    }
    let mut fields = b.split(|&c| c == b'|');
    if fields.next() != Some(b"v1") {
        return Err("unknown state version");
    }
    let mut s = RequestState::default();
    for f in fields {
        let (k, v) = f.split_at(f.len().min(2));
        match k {
            b"e=" => {
                s.engine = Some(match v {
                    b"1" => RuleEngineMode::On,
                    b"d" => RuleEngineMode::DetectionOnly,
                    b"0" => RuleEngineMode::Off,
                    _ => return Err("bad engine mode in state"),
                })
            }
            b"r=" => {
                for r in v.split(|&c| c == b',') {
                    let t = std::str::from_utf8(r).map_err(|_| "bad range in state")?;
                    let (a, b) = t.split_once('-').ok_or("bad range in state")?;
                    let a = a.parse().map_err(|_| "bad range in state")?;
                    let b = b.parse().map_err(|_| "bad range in state")?;
                    s.removed_ranges.push((a, b));
                }
            }
            b"g=" => {
                for t in v.split(|&c| c == b',') {
                    let t = unescape(t)?;
                    s.removed_tags
                        .push(String::from_utf8(t).map_err(|_| "bad tag in state")?);
                }
            }
            b"t=" => {
                for kv in v.split(|&c| c == b'&') {
                    match memchr::memchr(b'=', kv) {
                        Some(i) => {
                            s.tx.push((unescape(&kv[..i])?, Some(unescape(&kv[i + 1..])?)))
                        }
                        None => s.tx.push((unescape(kv)?, None)),
                    }
                }
            }
            _ => return Err("unknown field in state"),
        }
    }
    Ok(s)
}

fn escape(b: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in b {
        if (0x21..=0x7e).contains(&c) && !b"%|&=,".contains(&c) {
            out.push(c);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        }
    }
}

fn unescape(b: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3).ok_or("bad escape in state")?;
            let s = std::str::from_utf8(h).map_err(|_| "bad escape in state")?;
            out.push(u8::from_str_radix(s, 16).map_err(|_| "bad escape in state")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = RequestState {
            engine: Some(RuleEngineMode::On),
            removed_ranges: vec![(1, 999999), (942100, 942100)],
            removed_tags: vec!["OWASP_CRS".into(), "a,b".into()],
            tx: vec![
                (
                    b"blocking_inbound_anomaly_score".to_vec(),
                    Some(b"10".to_vec()),
                ),
                (b"x".to_vec(), None),
                (b"k".to_vec(), Some(b"a|b&c=d% \xff".to_vec())),
            ],
        };
        let mut out = Vec::new();
        encode(&s, &mut out);
        assert!(
            out.iter().all(|c| (0x21..=0x7e).contains(c)),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(decode(&out).unwrap(), s);
        let mut empty = Vec::new();
        encode(&RequestState::default(), &mut empty);
        assert_eq!(empty, b"v1");
    }

    #[test]
    fn malformed_states_are_rejected() {
        for bad in [
            &b""[..],
            b"v2",
            b"v1|e=x",
            b"v1|r=1",
            b"v1|t=a=%G0",
            b"v1|zz",
            b"v1|r=a-b",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode(&vec![b'a'; MAX_STATE_BYTES + 1]).is_err());
    }
}
