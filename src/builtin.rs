//! The production ruleset, compiled by `build.rs` and embedded in the binary.
//!
//! Owns access to the generated tables (CRS version, rule counts, the enforce list) and the
//! decoding of the embedded program. Must not parse SecLang: that happened at build time.

use crate::engine::Ruleset;
use crate::seclang::ir::Program;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/ruleset.rs"));
}

pub use generated::{CRS_DIR_AT_BUILD, CRS_FILES, CRS_VERSION, ENFORCED_RULES, RULE_COUNT};

/// The embedded program.
pub fn program() -> Result<Program, String> {
    postcard::from_bytes(generated::PROGRAM)
        .map_err(|e| format!("embedded ruleset does not decode: {e}"))
}

/// The embedded program, lowered for evaluation.
pub fn ruleset() -> Result<Ruleset, String> {
    // Regexes were validated by build.rs; compile them on first use (start-up stays fast).
    Ruleset::new_lazy(program()?).map_err(|e| e.to_string())
}

/// One line for `--version`.
pub fn version_line() -> String {
    format!(
        "coraza-spoa {} (OWASP CRS {}, {} rules compiled in, {} enforced)",
        env!("CARGO_PKG_VERSION"),
        CRS_VERSION,
        RULE_COUNT,
        ENFORCED_RULES.len()
    )
}
