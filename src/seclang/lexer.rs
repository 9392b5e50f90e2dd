//! Splits rule-file text into directives and their arguments.
//!
//! The model is Coraza's (and close to Apache's config reader): each physical line is trimmed,
//! lines starting with `#` and blank lines are skipped, and a line ending in `\` is joined to the
//! next one with the backslash removed and no separator. Arguments are whitespace-separated;
//! a double-quoted argument ends at the first `"` preceded by an even number of backslashes,
//! and the only unescape applied is `\"` → `"` (patterns keep every other backslash).

use super::error::CompileError;

/// One directive with its location (the line where it starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub line: u32,
    pub name: String,
    pub args: Vec<String>,
}

/// Splits `text` (from `file`) into directives.
pub fn directives(file: &str, text: &str) -> Result<Vec<Directive>, CompileError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0u32;
    for (i, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let line = raw.trim();
        if logical.is_empty() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            start_line = line_no;
        }
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            continue;
        }
        logical.push_str(line);
        out.push(split_directive(file, start_line, &logical)?);
        logical.clear();
    }
    if !logical.is_empty() {
        // A trailing backslash on the last line: accept what we have, as Apache does.
        out.push(split_directive(file, start_line, &logical)?);
    }
    Ok(out)
}

fn split_directive(file: &str, line: u32, text: &str) -> Result<Directive, CompileError> {
    let text = text.trim();
    let (name, rest) = match text.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let args = split_args(rest).map_err(|m| CompileError::new(file, line, m))?;
    Ok(Directive {
        line,
        name: name.to_string(),
        args,
    })
}

/// Splits a directive's argument text into arguments.
pub fn split_args(text: &str) -> Result<Vec<String>, String> {
    let bytes = text.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if bytes[i] == b'"' {
            let start = i + 1;
            let end = closing_quote(bytes, start)
                .ok_or_else(|| format!("unterminated quoted argument: {}", excerpt(&text[i..])))?;
            args.push(unescape_quotes(&text[start..end]));
            i = end + 1;
        } else {
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            args.push(text[start..i].to_string());
        }
    }
    Ok(args)
}

/// Index of the `"` closing a quoted string that starts at `from`: the first quote preceded by
/// an even number of backslashes.
fn closing_quote(bytes: &[u8], from: usize) -> Option<usize> {
    let mut backslashes = 0usize;
    for (j, &b) in bytes.iter().enumerate().skip(from) {
        match b {
            b'\\' => backslashes += 1,
            b'"' if backslashes % 2 == 0 => return Some(j),
            _ => backslashes = 0,
        }
        if b != b'\\' {
            backslashes = 0;
        }
    }
    None
}

fn unescape_quotes(s: &str) -> String {
    s.replace("\\\"", "\"")
}

/// First 60 characters of `s`, for error messages.
pub fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_comments_and_quotes() {
        let text = "# comment\n\nSecRule ARGS \"@rx a\\\"b\" \\\n    \"id:1,\\\n    phase:2\"\nSecMarker END\n";
        let d = directives("f.conf", text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].line, 3);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].args, vec!["ARGS", "@rx a\"b", "id:1,phase:2"]);
        assert_eq!(d[1].args, vec!["END"]);
        assert_eq!(d[1].line, 6);
    }

    #[test]
    fn backslashes_before_quote_are_counted() {
        // `\\"` ends the string (even count); the pattern keeps its backslashes.
        let a = split_args(r#""@rx a\\" "x""#).unwrap();
        assert_eq!(a, vec![r"@rx a\\", "x"]);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let e = directives("f.conf", "SecRule ARGS \"@rx a\n").unwrap_err();
        assert!(e.to_string().starts_with("f.conf:1:"), "{e}");
    }
}
