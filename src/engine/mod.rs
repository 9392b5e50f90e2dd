//! Evaluation of a compiled ruleset against one transaction at a time.
//!
//! Owns per-request state (variables, TX collection, matched data) and the behaviour of
//! operators, transformations and body processors. It must not parse SecLang, do I/O, or take
//! locks: the ruleset is shared read-only, everything mutable is per worker.

pub mod body;
pub mod transformations;
