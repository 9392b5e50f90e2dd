//! Fuzzes `spop::varint::decode`.
//!
//! Invariant: on any input it returns without panicking; on success it used between 1 and 10
//! bytes of the input, and those bytes are exactly the encoding `varint::encode` produces for
//! the value (the additive encoding is unique, so decode and encode are inverse); on failure
//! the input has no complete varint within 10 bytes (`Truncated`) or the sum overflows / runs
//! past 10 bytes (`Overlong`).
#![no_main]

use coraza_spoa::spop::varint::{self, VarintError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match varint::decode(data) {
        Ok((value, used)) => {
            assert!((1..=varint::MAX_LEN).contains(&used) && used <= data.len());
            let mut encoded = Vec::new();
            varint::encode(value, &mut encoded);
            assert_eq!(&encoded[..], &data[..used]);
            assert_eq!(varint::encoded_len(value), used);
        }
        Err(VarintError::Truncated) => {
            // Every byte present (after the first) continues the varint: none ends it.
            assert!(data.len() < varint::MAX_LEN);
            assert!(data.is_empty() || (data[0] >= 240 && data[1..].iter().all(|&b| b >= 128)));
        }
        Err(VarintError::Overlong) => assert!(!data.is_empty() && data[0] >= 240),
    }
});
