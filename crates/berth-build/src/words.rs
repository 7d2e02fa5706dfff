//! Small text helpers shared by the parser: BuildKit's `parseWords`, `KEY=value` lists,
//! line continuations, CSV (for `--mount`), Go durations and byte sizes.

use std::time::Duration;

use crate::model::ArgDecl;

/// Splits on unquoted whitespace, keeping quotes and escapes in the words (BuildKit's
/// `parseWords`); they are removed later by expansion.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let ch = chars.get(pos).copied();
        if phase == Phase::Spaces {
            match ch {
                None => break,
                Some(c) if c.is_whitespace() => {
                    pos += 1;
                    continue;
                }
                Some(_) => phase = Phase::Word,
            }
        }
        let Some(mut ch) = ch else {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        };
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// `ENV`/`LABEL` arguments: `k=v k2=v2` or the legacy `k value with spaces`.
pub(crate) fn parse_name_val(rest: &str, escape: char) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Err("expected at least one NAME=value pair".into());
    };
    if !first.contains('=') {
        let rest = rest.trim_start();
        let Some(split) = rest.find(char::is_whitespace) else {
            return Err(format!("{first:?} has no value; write NAME=value"));
        };
        let (name, value) = rest.split_at(split);
        return Ok(vec![(name.to_owned(), value.trim_start().to_owned())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!(
                "can't find = in {w:?}; every pair must be NAME=value"
            )),
        })
        .collect()
}

/// `ARG` arguments: `name` or `name=default`, several per line.
pub(crate) fn parse_arg_decls(rest: &str, escape: char) -> Result<Vec<ArgDecl>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err("ARG requires at least one argument".into());
    }
    words
        .into_iter()
        .map(|w| {
            let (name, default) = match w.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (w, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(format!(
                    "invalid ARG name {name:?}; use letters, digits and _"
                ));
            }
            Ok(ArgDecl { name, default })
        })
        .collect()
}

/// Removes line continuations (escape + newline) and the comment or blank lines inside them,
/// as BuildKit does before handing a shell-form command to the shell.
pub(crate) fn join_continuations(raw: &str, escape: char) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut continuing = false;
    for line in raw.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if continuing {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
        }
        let trimmed = line.trim_end_matches([' ', '\t']);
        match trimmed.strip_suffix(escape) {
            Some(body) => {
                out.push_str(body);
                continuing = true;
            }
            None => {
                out.push_str(line);
                continuing = false;
            }
        }
    }
    out.trim().to_owned()
}

/// Byte offset where the logical line starting at `start` ends (continuations followed).
pub(crate) fn logical_line_end(text: &str, start: usize, escape: char) -> usize {
    let mut pos = start;
    loop {
        let Some(nl) = text[pos..].find('\n').map(|i| pos + i) else {
            return text.len();
        };
        let line = text[pos..nl].trim_end_matches(['\r', ' ', '\t']);
        if line.ends_with(escape) {
            pos = nl + 1;
        } else {
            return nl;
        }
    }
}

/// Splits one CSV record (Go's `encoding/csv` subset: `,` separated, `"` quoting, `""` escape).
pub(crate) fn split_csv(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quote".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

/// Parses a Go duration (`1h30m`, `300ms`, `1.5s`, `0`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}; write e.g. 30s, 1m30s or 500ms");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let s2 = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s2;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a size like `64m`, `1g`, `1024` (docker's `RAMInBytes`, binary multiples).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?}; write e.g. 64m or 1g");
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix('b')
        .filter(|r| !r.is_empty())
        .unwrap_or(&lower);
    let lower = lower.strip_suffix('i').unwrap_or(lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !(n >= 0.0 && n.is_finite()) || n * (mult as f64) > u64::MAX as f64 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"a="b c" d=e"#, '\\'),
            vec![r#"a="b c""#, "d=e"]
        );
        assert_eq!(parse_words(r"a=b\ c", '\\'), vec![r"a=b\ c"]);
        assert_eq!(parse_words("  x  ", '\\'), vec!["x"]);
        assert_eq!(parse_words("a=''", '\\'), vec!["a=''"]);
        assert_eq!(parse_words("x\\", '\\'), vec!["x"]);
    }

    #[test]
    fn name_val_forms() {
        assert_eq!(
            parse_name_val(r#"A=1 B="two words""#, '\\').unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), r#""two words""#.into())
            ]
        );
        assert_eq!(
            parse_name_val("A one two", '\\').unwrap(),
            vec![("A".into(), "one two".into())]
        );
        assert!(parse_name_val("A=1 B", '\\').is_err());
        assert!(parse_name_val("A", '\\').is_err());
    }

    #[test]
    fn arg_decls() {
        let d = parse_arg_decls("A B=2 C=", '\\').unwrap();
        assert_eq!(
            d[0],
            ArgDecl {
                name: "A".into(),
                default: None
            }
        );
        assert_eq!(
            d[1],
            ArgDecl {
                name: "B".into(),
                default: Some("2".into())
            }
        );
        assert_eq!(
            d[2],
            ArgDecl {
                name: "C".into(),
                default: Some(String::new())
            }
        );
        assert!(parse_arg_decls("=x", '\\').is_err());
    }

    #[test]
    fn continuations_are_joined() {
        assert_eq!(
            join_continuations("a && \\\n  # note\n\n  b", '\\'),
            "a &&   b"
        );
        assert_eq!(join_continuations("a \\ \r\nb", '\\'), "a b");
        assert_eq!(join_continuations("a `\nb", '`'), "a b");
        assert_eq!(join_continuations("echo hi", '\\'), "echo hi");
    }

    #[test]
    fn csv() {
        assert_eq!(
            split_csv("type=cache,target=/x").unwrap(),
            vec!["type=cache", "target=/x"]
        );
        assert_eq!(
            split_csv(r#""target=/a,b",ro"#).unwrap(),
            vec!["target=/a,b", "ro"]
        );
        assert!(split_csv(r#""x"#).is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1x").is_err());
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
    }
}
