//! Parsers for the three parts of a `SecRule`: targets, operator, actions; and for macros.
//!
//! Each returns a plain `String` error; the caller adds `file:line`.

use super::ir::*;

/// A parsed target list entry before exclusions are attached to their collections.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub variable: Variable,
    pub selector: Selector,
    pub count: bool,
    pub exclude: bool,
}

/// Parses `ARGS|!ARGS:foo|&TX:bar|REQUEST_COOKIES:/re|gex/|XML:/*`.
pub fn targets(text: &str) -> Result<Vec<TargetSpec>, String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let mut exclude = false;
        let mut count = false;
        match b[i] {
            b'!' => {
                exclude = true;
                i += 1;
            }
            b'&' => {
                count = true;
                i += 1;
            }
            _ => {}
        }
        let name_start = i;
        while i < b.len() && b[i] != b':' && b[i] != b'|' {
            i += 1;
        }
        let name = &text[name_start..i];
        let variable = Variable::from_name(name.trim())
            .ok_or_else(|| format!("unknown variable {:?} in {:?}", name, text))?;
        let mut selector = Selector::All;
        if i < b.len() && b[i] == b':' {
            i += 1;
            let key_start = i;
            if variable == Variable::Xml {
                while i < b.len() && b[i] != b'|' {
                    i += 1;
                }
                let xpath = &text[key_start..i];
                if xpath != "/*" && xpath != "//@*" {
                    return Err(format!(
                        "XPath {xpath:?} is not supported (only XML:/* and XML://@*)"
                    ));
                }
                selector = Selector::XPath(xpath.to_string());
            } else if i < b.len() && b[i] == b'/' {
                // A regex key ends at an unescaped '/' followed by '|' or the end.
                let mut j = i + 1;
                let mut end = None;
                while j < b.len() {
                    if b[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if b[j] == b'/' && (j + 1 == b.len() || b[j + 1] == b'|') {
                        end = Some(j);
                        break;
                    }
                    j += 1;
                }
                let end = end.ok_or_else(|| format!("unterminated /regex/ key in {text:?}"))?;
                selector = Selector::Regex(text[i + 1..end].to_string());
                i = end + 1;
            } else if i < b.len() && b[i] == b'\'' {
                let close = text[i + 1..]
                    .find('\'')
                    .ok_or_else(|| format!("unterminated quoted key in {text:?}"))?;
                selector = Selector::Key(text[i + 1..i + 1 + close].to_ascii_lowercase());
                i = i + 2 + close;
            } else {
                while i < b.len() && b[i] != b'|' {
                    i += 1;
                }
                let key = &text[key_start..i];
                if key.is_empty() {
                    return Err(format!("empty key after {name}: in {text:?}"));
                }
                selector = Selector::Key(key.to_ascii_lowercase());
            }
            if !variable.is_collection() {
                return Err(format!(
                    "{} is not a collection; it takes no key",
                    variable.name()
                ));
            }
        }
        if i < b.len() {
            if b[i] != b'|' {
                return Err(format!("unexpected {:?} in targets {text:?}", &text[i..]));
            }
            i += 1;
        }
        if exclude && selector == Selector::All {
            return Err(format!("exclusion {:?} needs a key", &text[start..i]));
        }
        out.push(TargetSpec {
            variable,
            selector,
            count,
            exclude,
        });
    }
    if out.is_empty() {
        return Err("empty target list".into());
    }
    Ok(out)
}

/// Attaches each `!VAR:key` exclusion to every target of the same variable.
pub fn resolve_targets(specs: &[TargetSpec]) -> Vec<Target> {
    let mut out: Vec<Target> = specs
        .iter()
        .filter(|s| !s.exclude)
        .map(|s| Target {
            variable: s.variable,
            selector: s.selector.clone(),
            count: s.count,
            exclusions: Vec::new(),
        })
        .collect();
    for ex in specs.iter().filter(|s| s.exclude) {
        add_exclusion(&mut out, ex.variable, &ex.selector);
    }
    out
}

/// Adds an exclusion to every target reading `variable`.
pub fn add_exclusion(targets: &mut [Target], variable: Variable, selector: &Selector) {
    for t in targets.iter_mut().filter(|t| t.variable == variable) {
        if !t.exclusions.contains(selector) {
            t.exclusions.push(selector.clone());
        }
    }
}

/// An operator as written, before its argument is resolved (files read, ranges parsed).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSpec {
    pub name: String,
    pub negated: bool,
    pub arg: String,
}

/// Parses `@rx foo`, `!@eq 0`, or a bare pattern (implicit `@rx`).
pub fn operator(text: &str) -> OperatorSpec {
    let mut s = text.trim_start();
    let mut negated = false;
    if let Some(rest) = s.strip_prefix('!') {
        negated = true;
        s = rest.trim_start();
    }
    match s.strip_prefix('@') {
        Some(rest) => {
            let (name, arg) = match rest.find(|c: char| c.is_ascii_whitespace()) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            OperatorSpec {
                name: name.to_string(),
                negated,
                arg: arg.to_string(),
            }
        }
        None => OperatorSpec {
            name: "rx".into(),
            negated,
            arg: s.to_string(),
        },
    }
}

/// One `name:value` action as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAction {
    pub name: String,
    pub value: Option<String>,
}

/// Splits an action list on commas outside single quotes, and unquotes values.
pub fn actions(text: &str) -> Result<Vec<RawAction>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut prev = '\0';
    for c in text.chars() {
        if c == '\'' && prev != '\\' {
            in_quote = !in_quote;
        }
        if c == ',' && !in_quote {
            push_action(&mut out, &cur)?;
            cur.clear();
        } else {
            cur.push(c);
        }
        prev = c;
    }
    if in_quote {
        return Err(format!(
            "unterminated quote in actions {:?}",
            super::lexer::excerpt(text)
        ));
    }
    push_action(&mut out, &cur)?;
    Ok(out)
}

fn push_action(out: &mut Vec<RawAction>, piece: &str) -> Result<(), String> {
    let piece = piece.trim();
    if piece.is_empty() {
        return Ok(());
    }
    let (name, value) = match piece.find(':') {
        Some(i) => (piece[..i].trim(), Some(piece[i + 1..].trim())),
        None => (piece, None),
    };
    if name.is_empty() {
        return Err(format!("action without a name: {piece:?}"));
    }
    let value = value.map(|v| {
        let v = if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
            &v[1..v.len() - 1]
        } else {
            v
        };
        v.replace("\\'", "'")
    });
    out.push(RawAction {
        name: name.to_string(),
        value,
    });
    Ok(())
}

/// Parses a string with `%{VAR}` / `%{COLL.key}` macros.
pub fn macro_string(text: &str) -> Result<MacroString, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("%{") {
        let Some(len) = rest[start + 2..].find('}') else {
            break; // "%{" without "}" is literal text, as in ModSecurity.
        };
        if start > 0 {
            parts.push(MacroPart::Literal(rest[..start].to_string()));
        }
        let inner = &rest[start + 2..start + 2 + len];
        parts.push(macro_var(inner)?);
        rest = &rest[start + 3 + len..];
    }
    if !rest.is_empty() {
        parts.push(MacroPart::Literal(rest.to_string()));
    }
    // Merge adjacent literals (none are produced today, but keep the invariant explicit).
    Ok(MacroString { parts })
}

fn macro_var(inner: &str) -> Result<MacroPart, String> {
    let (name, key) = match inner.find(['.', ':']) {
        Some(i) => (&inner[..i], Some(&inner[i + 1..])),
        None => (inner, None),
    };
    let variable = Variable::from_name(name)
        .ok_or_else(|| format!("unknown variable in macro %{{{inner}}}"))?;
    if key.is_some() && !variable.is_collection() {
        return Err(format!(
            "macro %{{{inner}}}: {} takes no key",
            variable.name()
        ));
    }
    Ok(MacroPart::Var {
        variable,
        key: key.map(|k| k.to_ascii_lowercase()),
    })
}

/// Parses `1-255` / `9,10,13,32-126` into a 256-bit set.
pub fn byte_ranges(arg: &str) -> Result<[u64; 4], String> {
    let mut set = [0u64; 4];
    for part in arg.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u8 = lo.parse().map_err(|_| format!("bad byte range {part:?}"))?;
        let hi: u8 = hi.parse().map_err(|_| format!("bad byte range {part:?}"))?;
        if lo > hi {
            return Err(format!("bad byte range {part:?}: {lo} > {hi}"));
        }
        for b in lo..=hi {
            set[usize::from(b >> 6)] |= 1u64 << (b & 63);
        }
    }
    Ok(set)
}

/// Parses `127.0.0.1,::1,10.0.0.0/8` into networks.
pub fn networks(arg: &str) -> Result<Vec<(Vec<u8>, u8)>, String> {
    let mut out = Vec::new();
    for part in arg
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (addr, prefix) = match part.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (part, None),
        };
        let ip: std::net::IpAddr = addr.parse().map_err(|_| format!("bad address {part:?}"))?;
        let (bytes, max) = match ip {
            std::net::IpAddr::V4(v4) => (v4.octets().to_vec(), 32u8),
            std::net::IpAddr::V6(v6) => (v6.octets().to_vec(), 128u8),
        };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or(format!("bad prefix {part:?}"))?,
            None => max,
        };
        out.push((bytes, prefix));
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(out)
}

/// Parses id lists and ranges: `942100`, `1-999999`, `"942100 942110"`.
pub fn id_ranges(arg: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    for part in arg
        .split([' ', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad rule id {part:?}"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad rule id {part:?}"))?;
        if a > b {
            return Err(format!("bad id range {part:?}"));
        }
        out.push((a, b));
    }
    if out.is_empty() {
        return Err("no rule id given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_forms() {
        let t = targets("ARGS|!ARGS:foo|&TX:Bar|REQUEST_COOKIES:/^a|b$/|XML:/*|XML://@*").unwrap();
        assert_eq!(t.len(), 6);
        assert_eq!(
            t[1],
            TargetSpec {
                variable: Variable::Args,
                selector: Selector::Key("foo".into()),
                count: false,
                exclude: true
            }
        );
        assert_eq!(t[2].selector, Selector::Key("bar".into()));
        assert!(t[2].count);
        assert_eq!(t[3].selector, Selector::Regex("^a|b$".into()));
        assert_eq!(t[4].selector, Selector::XPath("/*".into()));
        assert_eq!(t[5].selector, Selector::XPath("//@*".into()));
        let r = resolve_targets(&t);
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].exclusions, vec![Selector::Key("foo".into())]);
    }

    #[test]
    fn target_errors() {
        assert!(targets("NOPE").unwrap_err().contains("NOPE"));
        assert!(targets("REQUEST_URI:x").is_err());
        assert!(targets("XML://foo").is_err());
        assert!(targets("!ARGS").is_err());
    }

    #[test]
    fn operators() {
        assert_eq!(
            operator("@rx ^a b$ "),
            OperatorSpec {
                name: "rx".into(),
                negated: false,
                arg: "^a b$ ".into()
            }
        );
        assert!(operator("!@eq 0").negated);
        assert_eq!(operator("@detectSQLi").arg, "");
        assert_eq!(operator("foo|bar").name, "rx");
    }

    #[test]
    fn action_lists() {
        let a = actions("id:1,phase:2,msg:'a, b',t:none,setvar:'tx.x=+%{tx.y}',chain").unwrap();
        let names: Vec<_> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["id", "phase", "msg", "t", "setvar", "chain"]);
        assert_eq!(a[2].value.as_deref(), Some("a, b"));
        assert_eq!(a[4].value.as_deref(), Some("tx.x=+%{tx.y}"));
        assert!(actions("msg:'oops").is_err());
    }

    #[test]
    fn macros() {
        let m = macro_string("a %{TX.Foo} b %{MATCHED_VAR}%{request_headers.host}").unwrap();
        assert_eq!(m.parts.len(), 5);
        assert_eq!(
            m.parts[1],
            MacroPart::Var {
                variable: Variable::Tx,
                key: Some("foo".into())
            }
        );
        assert!(macro_string("%{NOPE}").is_err());
        assert_eq!(macro_string("100%{").unwrap().as_literal(), Some("100%{"));
    }

    #[test]
    fn ranges() {
        let s = byte_ranges("9,10,13,32-126").unwrap();
        assert!(s[0] & (1 << 9) != 0 && s[0] & (1 << 11) == 0 && s[1] & (1 << (126 - 64)) != 0);
        assert!(byte_ranges("5-1").is_err());
        assert_eq!(
            id_ranges("1-999999 942100").unwrap(),
            vec![(1, 999999), (942100, 942100)]
        );
        assert_eq!(networks("127.0.0.1,::1").unwrap().len(), 2);
        assert_eq!(networks("10.0.0.0/8").unwrap()[0].1, 8);
    }
}
