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

/// Most sets kept for one pattern (each one a prefilter bit the rule needs).
const MAX_CONJUNCTION: usize = 3;

/// Parses a pattern exactly as `rx::compile` does and returns its required literals: a list of
/// sets (lower-cased) that are *all* required — every match contains one literal of each set.
/// Weak sets (a lone letter or digit, present in almost any value) are dropped; `None` when
/// nothing useful remains.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<Vec<u8>>>> {
    let rewritten = rewrite_braced_hex(pattern);
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .multi_line(true)
        .dot_matches_new_line(true)
        .build()
        .parse(&rewritten)
        .ok()?;
    select(required(&hir))
}

/// Keeps the strongest non-weak sets, at most [`MAX_CONJUNCTION`].
fn select(mut sets: Vec<Vec<Vec<u8>>>) -> Option<Vec<Vec<Vec<u8>>>> {
    sets.retain(|s| {
        !s.is_empty() && s.len() <= MAX_SET && !s.iter().any(|l| l.is_empty() || is_weak(l))
    });
    sets.sort_by_key(|s| std::cmp::Reverse(score(s)));
    sets.dedup();
    sets.truncate(MAX_CONJUNCTION);
    (!sets.is_empty()).then_some(sets)
}

/// A literal that occurs in almost any text: a single letter or digit.
fn is_weak(l: &[u8]) -> bool {
    matches!(l, [b] if b.is_ascii_alphanumeric())
}

fn score(s: &[Vec<u8>]) -> (usize, usize) {
    let min = s.iter().map(Vec::len).min().unwrap_or(0);
    (min.min(8), usize::MAX - s.len())
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

/// Sets of literals that are all required by `h` (a conjunction; empty when nothing is known).
fn required(h: &Hir) -> Vec<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(l) => vec![vec![l.0.to_ascii_lowercase()]],
        HirKind::Class(c) => class_bytes(c)
            .map(|bs| vec![dedup(bs.into_iter().map(|b| vec![b]).collect())])
            .unwrap_or_default(),
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                Vec::new()
            } else {
                required(&r.sub)
            }
        }
        // One of the branches matches: each branch contributes its best set, and the union of
        // those is required.
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                let Some(best) = best(required(a)) else {
                    return Vec::new();
                };
                out.extend(best);
                if out.len() > MAX_SET {
                    return Vec::new();
                }
            }
            vec![dedup(out)]
        }
        HirKind::Concat(parts) => concat(parts),
    }
}

/// The single most selective set of a conjunction (ignoring weak ones where possible).
fn best(sets: Vec<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    let mut sets: Vec<_> = sets
        .into_iter()
        .filter(|s| !s.is_empty() && s.len() <= MAX_SET)
        .collect();
    sets.sort_by_key(|s| (!s.iter().any(|l| is_weak(l)), score(s)));
    sets.pop()
}

/// In a concatenation every part is required, so every part's sets are. Adjacent parts that
/// are exact (match only their literals, each exactly once) are joined by cross product into
/// longer, more selective literals.
fn concat(parts: &[Hir]) -> Vec<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<Vec<u8>>> = Vec::new();
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
                        out.push(prev);
                        set
                    }
                });
            }
            None => {
                if let Some(r) = run.take() {
                    out.push(r);
                }
                out.extend(required(p));
            }
        }
    }
    if let Some(r) = run {
        out.push(r);
    }
    out
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

/// The (lower-cased) bytes of a small class; `None` when it has more than 16 after folding.
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
    if out.is_empty() || out.len() > 16 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<Vec<String>>> {
        required_literals(p).map(|sets| {
            sets.into_iter()
                .map(|v| {
                    v.into_iter()
                        .map(|l| String::from_utf8_lossy(&l).into_owned())
                        .collect()
                })
                .collect()
        })
    }

    fn one(v: &[&str]) -> Option<Vec<Vec<String>>> {
        Some(vec![v.iter().map(|s| s.to_string()).collect()])
    }

    #[test]
    fn extraction_shapes() {
        assert_eq!(
            lits("(?i)select.+from"),
            Some(vec![vec!["select".into()], vec!["from".into()]])
        );
        assert_eq!(
            lits("x|bc"),
            None,
            "a lone letter is too weak to prefilter on"
        );
        assert_eq!(lits("<|bc"), one(&["<", "bc"]));
        assert_eq!(lits("^.*$"), None);
        assert_eq!(lits("x?"), None);
        assert_eq!(lits(r"[\n\r]"), one(&["\n", "\r"]));
        assert_eq!(lits(r"\$\{"), one(&["${"]));
        assert_eq!(lits("(?i)on(?:load|error)="), one(&["onerror=", "onload="]));
        // Joins a run of exact parts: `<script` beats `<`.
        assert_eq!(lits("<(?i:script)"), one(&["<script"]));
        assert_eq!(
            lits(r"\x{e2}\x80[\x98\x99]"),
            one(&["\u{2018}", "\u{2019}"])
        );
        // Separated by a class, both words are required: a conjunction.
        assert_eq!(
            lits(r"(?i)union-+select"),
            Some(vec![
                vec!["select".into()],
                vec!["union".into()],
                vec!["-".into()]
            ])
        );
        // A small punctuation class is a usable set; lone letters are not.
        assert_eq!(lits(r"[;|&'{]"), one(&["&", "'", ";", "{", "|"]));
    }

    #[test]
    fn rewrite_keeps_escaped_backslashes() {
        assert_eq!(rewrite_braced_hex(r"[\x{be}]"), r"[\xbe]");
        assert_eq!(rewrite_braced_hex(r"\\x{be}"), r"\\x{be}");
        assert_eq!(rewrite_braced_hex(r"\x{1234}"), r"\x{1234}");
        assert_eq!(rewrite_braced_hex("é\\x{41}"), "é\\x41");
    }
}
