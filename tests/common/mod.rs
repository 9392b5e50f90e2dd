//! Helpers shared by integration tests. Each test binary compiles this module separately and
//! uses a subset of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod ftw;
pub mod wire;
