//! SecLang: parse ModSecurity rule files and compile them into an executable ruleset description.
//!
//! Owns the rule language (directives, variables, operators, actions, macros) and its error
//! reporting with `file:line`. It must not evaluate anything, and must stay free of engine and
//! I/O dependencies beyond reading rule files, because `build.rs` compiles the production rules
//! with this same module.
//!
//! Stages: [`lexer`] (text → directives) → [`parse`] (targets, operators, actions, macros) →
//! [`compile`] (order-dependent semantics) → [`ir::Program`].

pub mod compile;
pub mod error;
pub mod ir;
pub mod lexer;
pub mod literals;
pub mod parse;
pub mod transformation;

pub use compile::{compile_file, compile_text, Compiler};
pub use error::CompileError;
