//! ModSecurity-style log lines for matched rules (`check --log`, diagnostics).
//!
//! Shape: `[client IP] ModSecurity: Warning. Matched at VAR:key. [file "…"] [line "…"]
//! [id "N"] [msg "…"] [data "…"] [severity "…"] [ver "…"] [tag "…"]… [uri "…"] [unique_id "…"]`.
//! The `[id "N"]` field is what go-ftw and log tooling key on; values are escaped so a line
//! never breaks.

use std::fmt::Write;

use super::transaction::{MatchedRule, Transaction};
use crate::seclang::ir::SEVERITIES;

/// One log line for `m`, a match recorded by `tx`.
pub fn line(tx: &Transaction<'_>, m: &MatchedRule) -> String {
    let (tags, file, line_no) = tx.rule_info(m);
    let rule = &tx.ruleset().rules[m.rule as usize];
    let mut s = String::with_capacity(256);
    let _ = write!(s, "[client {}] ModSecurity: ", esc(&tx.req.remote_addr));
    match tx.interruption() {
        Some(i) if i.rule_id == m.id => {
            let _ = write!(
                s,
                "Access denied with code {} (phase {}). ",
                i.status, m.phase
            );
        }
        _ => s.push_str("Warning. "),
    }
    if !m.var_name.is_empty() {
        let _ = write!(s, "Matched at {}. ", esc(m.var_name.as_bytes()));
    }
    let _ = write!(
        s,
        "[file \"{}\"] [line \"{}\"] [id \"{}\"]",
        esc(file.as_bytes()),
        line_no,
        m.id
    );
    if let Some(rev) = &rule.rev {
        let _ = write!(s, " [rev \"{}\"]", esc(rev.as_bytes()));
    }
    let _ = write!(
        s,
        " [msg \"{}\"] [data \"{}\"]",
        esc(m.msg.as_bytes()),
        esc(m.data.as_bytes())
    );
    if let Some(sev) = m.severity {
        let _ = write!(s, " [severity \"{}\"]", SEVERITIES[usize::from(sev.min(7))]);
    }
    if let Some(ver) = &rule.ver {
        let _ = write!(s, " [ver \"{}\"]", esc(ver.as_bytes()));
    }
    for t in tags {
        let _ = write!(s, " [tag \"{}\"]", esc(t.as_bytes()));
    }
    let _ = write!(
        s,
        " [uri \"{}\"] [unique_id \"{}\"]",
        esc(&tx.req.uri_raw),
        esc(&tx.req.unique_id)
    );
    s
}

/// Escapes `"` and `\`, and writes control and non-ASCII bytes as `\xHH`.
pub fn esc(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping() {
        assert_eq!(super::esc(b"a\"b\\c\n\xff"), "a\\\"b\\\\c\\x0a\\xff");
    }
}
