//! The perf harness: capture the SPOP traffic a real HAProxy 2.6 sends, replay it against an
//! agent, and report throughput, latency and CPU (issue #8). See `perf/README.md`.
//!
//! Map:
//! - [`capture`]: drives a corpus (`check` JSONL) through a real HAProxy with the reference
//!   configuration and a loopback backend; a recording TCP proxy between HAProxy and the agent
//!   keeps every NOTIFY and the verdict of its ACK.
//! - [`format`]: the capture file (JSON Lines), verdicts, re-encoding frames with new ids.
//! - [`replay`]: the load generator: K connections, pipelining depth D, flat out or at a fixed
//!   rate; checks every ACK; latency histograms (`hdrhistogram`).
//! - [`agent`]: the agent under test as a separate process pinned to one CPU (null inspector,
//!   full ruleset in-process, or the real binary), and CPU accounting from `/proc`.
//! - [`plot`] and [`png`]: latency against offered load as a PNG, with no plotting crate.
//! - [`cli`]: the commands (`run`, `capture`, `fixtures`, `replay`, `agent`, `plot`).
//!
//! Must not: change the product's behaviour (everything here talks to the agent over TCP or
//! through its public API), or send traffic anywhere but loopback.

pub mod agent;
pub mod capture;
pub mod cli;
pub mod error;
pub mod format;
pub mod plot;
pub mod png;
pub mod replay;

#[cfg(test)]
mod tests;
