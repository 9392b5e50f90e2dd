//! Required literals of `@rx` patterns, computed by the compiler for the engine's prefilter.
//!
//! For a pattern, a set of *required literals* is a set of byte strings at least one of which
//! occurs (ASCII case-insensitively) in anything the pattern can match. The engine puts every
//! rule's set into one automaton and skips the rules whose literals a value does not contain
//! (see `engine::prefilter`). Computing the sets here means the built-in ruleset carries them
//! precomputed (build time), and `check --rules` computes them with the same code.
//!
//! Soundness of [`required`]: a literal set is only returned when every match of the HIR
//! must contain one of its strings. Anything not understood yields `None` (no prefilter; the
//! rule always runs). The patterns are parsed with the flags the engine compiles them with
//! (`engine::operators::rx`): bytes, Unicode off, multi-line, dot-all.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Largest number of literals a set may have before it is not worth it.
const MAX_SET: usize = 512;
/// Largest cross product built when joining adjacent small sets in a concatenation.
const MAX_CROSS: usize = 64;

/// Parses a pattern exactly as `rx::compile` does and returns its required literals
/// (lower-cased), or `None` when no useful set exists.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let rewritten = rewrite_braced_hex(pattern);
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .multi_line(true)
        .dot_matches_new_line(true)
        .build()
        .parse(&rewritten)
        .ok()?;
    let set = required(&hir)?;
    if set.is_empty() || set.iter().any(|l| l.is_empty()) {
        return None;
    }
    Some(set)
}

/// Rewrites `\x{HH}` (exactly two hex digits) into `\xHH`, leaving escaped backslashes alone:
/// regex-syntax rejects a braced escape above 0x7f inside a class when Unicode is off, while
/// both forms mean the byte. Shared with the engine's regex compilation.
pub fn rewrite_braced_hex(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'x')
                && b.get(i + 2) == Some(&b'{')
                && b.get(i + 3).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 4).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 5) == Some(&b'}')
            {
                out.push_str("\\x");
                out.push_str(&p[i + 3..i + 5]);
                i += 6;
                continue;
            }
            // Copy the escape pair verbatim so `\\x{..}` stays a literal backslash.
            out.push_str(&p[i..(i + 2).min(p.len())]);
            i += 2;
            continue;
        }
        let ch = p[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Required literal set of `h` (lower-cased, deduplicated).
fn required(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(l) => Some(vec![l.0.to_ascii_lowercase()]),
        HirKind::Class(c) => {
            class_bytes(c).map(|bs| dedup(bs.into_iter().map(|b| vec![b]).collect()))
        }
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                None
            } else {
                required(&r.sub)
            }
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(required(a)?);
                if out.len() > MAX_SET {
                    return None;
                }
            }
            Some(dedup(out))
        }
        HirKind::Concat(parts) => concat(parts),
    }
}

/// In a concatenation every part is required, so any part's set is a valid set for the whole.
/// Adjacent parts that are exact (match only their literals, each exactly once) are joined by
/// cross product to get longer, more selective literals; the best candidate wins.
fn concat(parts: &[Hir]) -> Option<Vec<Vec<u8>>> {
    let mut best: Option<Vec<Vec<u8>>> = None;
    let mut run: Option<Vec<Vec<u8>>> = None;
    for p in parts {
        match exact(p) {
            Some(set) => {
                run = Some(match run.take() {
                    None => set,
                    Some(prev) if prev.len() * set.len() <= MAX_CROSS => {
                        let mut joined = Vec::with_capacity(prev.len() * set.len());
                        for a in &prev {
                            for b in &set {
                                let mut s = a.clone();
                                s.extend_from_slice(b);
                                joined.push(s);
                            }
                        }
                        dedup(joined)
                    }
                    Some(prev) => {
                        best = better(best, Some(prev));
                        set
                    }
                });
            }
            None => {
                best = better(best, run.take());
                best = better(best, required(p));
            }
        }
    }
    better(best, run)
}

/// The strings `h` matches when it matches exactly a finite set of strings (literals, small
/// classes, alternations and captures of those); `None` otherwise.
fn exact(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Literal(l) => Some(vec![l.0.to_ascii_lowercase()]),
        HirKind::Class(c) => {
            class_bytes(c).map(|bs| dedup(bs.into_iter().map(|b| vec![b]).collect()))
        }
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(exact(a)?);
                if out.len() > MAX_CROSS {
                    return None;
                }
            }
            Some(dedup(out))
        }
        HirKind::Concat(parts) => {
            let mut acc: Vec<Vec<u8>> = vec![Vec::new()];
            for p in parts {
                let set = exact(p)?;
                if acc.len() * set.len() > MAX_CROSS {
                    return None;
                }
                let mut next = Vec::with_capacity(acc.len() * set.len());
                for a in &acc {
                    for b in &set {
                        let mut s = a.clone();
                        s.extend_from_slice(b);
                        next.push(s);
                    }
                }
                acc = dedup(next);
            }
            Some(acc)
        }
        _ => None,
    }
}

/// The (lower-cased) bytes of a small class; `None` when it has more than 4 after folding.
fn class_bytes(c: &Class) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut push = |b: u8| {
        let b = b.to_ascii_lowercase();
        if !out.contains(&b) {
            out.push(b);
        }
    };
    match c {
        Class::Bytes(bc) => {
            for r in bc.iter() {
                if usize::from(r.end() - r.start()) > 60 {
                    return None;
                }
                for b in r.start()..=r.end() {
                    push(b);
                }
            }
        }
        Class::Unicode(uc) => {
            for r in uc.iter() {
                let (s, e) = (u32::from(r.start()), u32::from(r.end()));
                if e > 0x7f || e - s > 60 {
                    return None;
                }
                for b in s..=e {
                    push(b as u8);
                }
            }
        }
    }
    if out.is_empty() || out.len() > 4 {
        None
    } else {
        Some(out)
    }
}

fn dedup(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v.dedup();
    v
}

/// The more selective of two sets: longer shortest literal first, then fewer literals.
fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    let score = |s: &Vec<Vec<u8>>| {
        let min = s.iter().map(Vec::len).min().unwrap_or(0);
        (min.min(8), usize::MAX - s.len())
    };
    match (a, b) {
        (None, x) | (x, None) => x.filter(|s| s.len() <= MAX_SET),
        (Some(a), Some(b)) => {
            if b.len() > MAX_SET || score(&a) >= score(&b) {
                Some(a)
            } else {
                Some(b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        required_literals(p).map(|v| {
            v.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn extraction_shapes() {
        assert_eq!(lits("(?i)select.+from"), Some(vec!["select".into()]));
        assert_eq!(lits("a|bc"), Some(vec!["a".into(), "bc".into()]));
        assert_eq!(lits("^.*$"), None);
        assert_eq!(lits("x?"), None);
        assert_eq!(lits(r"[\n\r]"), Some(vec!["\n".into(), "\r".into()]));
        assert_eq!(lits(r"\$\{"), Some(vec!["${".into()]));
        assert_eq!(
            lits("(?i)on(?:load|error)="),
            Some(vec!["onerror=".into(), "onload=".into()])
        );
        // Joins a run of exact parts: `<script` beats `<`.
        assert_eq!(lits("<(?i:script)"), Some(vec!["<script".into()]));
        assert_eq!(
            lits(r"\x{e2}\x80[\x98\x99]"),
            Some(vec!["\u{2018}".into(), "\u{2019}".into()])
        );
    }

    #[test]
    fn rewrite_keeps_escaped_backslashes() {
        assert_eq!(rewrite_braced_hex(r"[\x{be}]"), r"[\xbe]");
        assert_eq!(rewrite_braced_hex(r"\\x{be}"), r"\\x{be}");
        assert_eq!(rewrite_braced_hex(r"\x{1234}"), r"\x{1234}");
        assert_eq!(rewrite_braced_hex("é\\x{41}"), "é\\x41");
    }
}
