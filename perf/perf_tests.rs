//! Tests of the perf harness (`cargo test --release --test perf_harness`): the capture format,
//! the replay's checks against real and deliberately wrong agents, CPU accounting, the PNG
//! writer, and a capture through a real HAProxy replayed against the agent that answered it.
//!
//! Like `tests/haproxy_e2e.rs`, the HAProxy test FAILS without `haproxy` installed unless
//! `CORAZA_SKIP_HAPROXY=1` is set.

// The harness's command-line code is only used by the bench target.
#[allow(dead_code)]
mod harness;
