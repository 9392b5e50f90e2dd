//! Evaluation of a compiled ruleset against one transaction at a time.
//!
//! Owns per-request state (variables, TX collection, matched data) and the behaviour of
//! operators, transformations and body processors. It must not parse SecLang, do I/O, or take
//! locks: the [`Ruleset`] is shared read-only, everything mutable lives in a per-worker
//! [`Transaction`] that is reset, not reallocated, between requests.
//!
//! ```text
//! seclang::Program ──Ruleset::new──▶ Ruleset (regexes, phrase sets, pipeline trie, TX slots)
//! request ──Transaction::set_*──▶ RequestData ──process_request──▶ phases 1–2 (eval)
//!                                   variables ─▶ cache (transformations) ─▶ operators ─▶ actions
//! ```

pub mod body;
mod cache;
pub mod collection;
mod eval;
pub mod log;
pub mod operators;
pub mod prefilter;
pub mod ruleset;
pub mod transaction;
pub mod transformations;
pub mod variables;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

pub use ruleset::{LowerError, Ruleset};
pub use transaction::{InterruptAction, Interruption, MatchedRule, Transaction, TxSnapshot};
