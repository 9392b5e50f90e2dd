//! coraza-spoa: a WAF sidecar for HAProxy, speaking SPOP and evaluating the OWASP Core Rule Set.
//!
//! # Map of the crate
//!
//! ```text
//! HAProxy ──SPOP frames──▶ server (one pinned mio loop per core; owns sockets and buffers)
//!    ▲                        │ spop: decode NOTIFY (arguments borrow the read buffer)
//!    │                        ▼
//!    │                     waf: coraza-req / coraza-res arguments → engine transaction
//!    │                        │ engine: phases 1–2 (3–4 for responses) over the compiled ruleset
//!    │                        ▼
//!    └──ACK set-var◀───── verdict (action, status, rule ids, anomaly score)
//!                             │ at least one logging rule matched: audit event
//!                             ▼
//!                  audit: bounded channel → writer thread → JSON lines
//! ```
//!
//! - [`spop`]: the SPOP v2.0 codec, pure (no I/O).
//! - [`server`]: worker threads, listeners, the sans-IO connection state machine.
//! - [`inspect`]: the seam between the agent and whatever evaluates messages.
//! - [`seclang`]: SecLang parser and compiler (also used by `build.rs`).
//! - [`engine`]: evaluation of a compiled ruleset: operators, transformations, variables, bodies.
//! - [`waf`]: the coraza-spoa message contract implemented on top of the engine.
//! - [`audit`]: the audit-log writer thread.
//! - [`config`](mod@config): `config.yaml`.
//! - [`check`]: the offline evaluator; [`builtin`]: the ruleset compiled in by `build.rs`.

pub mod audit;
pub mod builtin;
pub mod check;
pub mod config;
pub mod engine;
pub mod inspect;
pub mod seclang;
pub mod server;
pub mod spop;
pub mod waf;
