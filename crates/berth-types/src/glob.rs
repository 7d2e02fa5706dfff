//! One path segment against a shell pattern, in time linear in the pattern times the name.
//!
//! `.dockerignore`, `COPY` sources, `discover:` patterns and the Skaffold manifest globs that
//! `berth init` reads all match one path segment at a time. Their grammar is Go's
//! `filepath.Match` (Docker and Skaffold are Go programs): `*` any run of characters, `?` one
//! character, `[a-z]` / `[^a-z]` / `[!a-z]` classes and `\` escapes. globset is not used for
//! them: its classes, escapes and separators follow a different grammar, and a file that
//! Docker ignores must be the file berth ignores.
//!
//! Every pattern here comes from a repository, which may be hostile. The matcher is therefore
//! Go's chunk algorithm (each run between stars matched at its leftmost place, never revisited),
//! not a backtracking one: the backtracking matchers it replaces took exponential time on a
//! pattern such as `*a*a*a*a*a*a*a*a*a*a*b` against a long name, which hung a build or the
//! server's config load.

/// Which characters are special.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `*`, `?`, classes and `\` escapes, as Go's `filepath.Match`.
    Go,
    /// `*` and `?` only; every other character is literal (`discover:` patterns).
    Wildcards,
}

/// Whether `name` (one path segment) matches `pattern`. A malformed class (`[a-` without `]`)
/// matches nothing.
pub fn segment_matches(syntax: Syntax, pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let mut p = &p[..];
    let mut n = &n[..];
    'pattern: while !p.is_empty() {
        let (star, chunk, rest) = scan_chunk(syntax, p);
        p = rest;
        if star && chunk.is_empty() {
            // A trailing star takes the rest of the segment.
            return true;
        }
        // The chunk where the name is now; if this is the last chunk it must end the name.
        if let Some(t) = match_chunk(syntax, chunk, n)
            && (t.is_empty() || !p.is_empty())
        {
            n = t;
            continue;
        }
        if star {
            // The leftmost later place where the chunk matches (the last chunk: the one that
            // ends the name).
            for i in 0..n.len() {
                if let Some(t) = match_chunk(syntax, chunk, &n[i + 1..]) {
                    if p.is_empty() && !t.is_empty() {
                        continue;
                    }
                    n = t;
                    continue 'pattern;
                }
            }
        }
        return false;
    }
    n.is_empty()
}

/// Leading stars, then the run up to the next star outside a class.
fn scan_chunk(syntax: Syntax, p: &[char]) -> (bool, &[char], &[char]) {
    let mut star = false;
    let mut p = p;
    while p.first() == Some(&'*') {
        p = &p[1..];
        star = true;
    }
    let mut in_class = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if syntax == Syntax::Go => i += 1,
            '[' if syntax == Syntax::Go => in_class = true,
            ']' if syntax == Syntax::Go => in_class = false,
            '*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    let i = i.min(p.len());
    (star, &p[..i], &p[i..])
}

/// Matches `chunk` (no star outside classes) at the start of `n`; the rest of `n` on success.
fn match_chunk<'n>(syntax: Syntax, chunk: &[char], n: &'n [char]) -> Option<&'n [char]> {
    let mut c = chunk;
    let mut n = n;
    while let Some(&first) = c.first() {
        match first {
            '?' => {
                n = n.get(1..)?;
                c = &c[1..];
            }
            '[' if syntax == Syntax::Go => {
                let (&ch, rest) = n.split_first()?;
                let (hit, after) = class(&c[1..], ch)?;
                if !hit {
                    return None;
                }
                n = rest;
                c = after;
            }
            '\\' if syntax == Syntax::Go && c.len() > 1 => {
                if n.first() != Some(&c[1]) {
                    return None;
                }
                n = &n[1..];
                c = &c[2..];
            }
            lit => {
                if n.first() != Some(&lit) {
                    return None;
                }
                n = &n[1..];
                c = &c[1..];
            }
        }
    }
    Some(n)
}

/// A class after its `[`: whether `ch` is in it, and the pattern after its `]`; `None` when the
/// class is not closed.
fn class(p: &[char], ch: char) -> Option<(bool, &[char])> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    let one = |i: &mut usize| -> Option<char> {
        let c = *p.get(*i)?;
        if c == '\\' {
            *i += 1;
            let e = *p.get(*i)?;
            *i += 1;
            return Some(e);
        }
        *i += 1;
        Some(c)
    };
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            break;
        }
        first = false;
        let lo = one(&mut i)?;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|x| *x != ']') {
            i += 1;
            let hi = one(&mut i)?;
            if lo <= ch && ch <= hi {
                hit = true;
            }
        } else if lo == ch {
            hit = true;
        }
    }
    Some((hit != negate, &p[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(p: &str, n: &str) -> bool {
        segment_matches(Syntax::Go, p, n)
    }

    #[test]
    fn matches_like_go_filepath_match() {
        // Cases from Go's own filepath.Match table, within one segment; `[]a]` (a leading `]`
        // is literal) and `[!x]` are Docker's as well.
        let table = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab", true),
            ("a*b*c*d*e*", "axbxcxdxe", true),
            ("a*b*c*d*e*", "axbxcxdxexxx", true),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("ab[!e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[]a]", "]", true),
            ("*x", "xxx", true),
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("[a-", "a", false),
            ("", "", true),
            ("", "a", false),
        ];
        for (p, n, want) in table {
            assert_eq!(go(p, n), want, "pattern {p:?} against {n:?}");
        }
    }

    #[test]
    fn wildcards_treat_classes_and_backslashes_as_literal() {
        let w = |p, n| segment_matches(Syntax::Wildcards, p, n);
        assert!(w("svc-*", "svc-web"));
        assert!(w("?eb", "web"));
        assert!(w("[x]", "[x]"));
        assert!(!w("[x]", "x"));
        assert!(w("a\\b", "a\\b"));
    }

    #[test]
    fn a_pattern_of_many_stars_does_not_take_exponential_time() {
        // With the backtracking matchers this pattern against 60 `a`s tried C(60, 15)
        // placements (about 5e13): the call never returned.
        let pattern = "*a".repeat(15) + "*b";
        let name = "a".repeat(60);
        assert!(!go(&pattern, &name));
        assert!(!segment_matches(Syntax::Wildcards, &pattern, &name));
        assert!(go(&pattern, &(name.clone() + "b")));
    }
}
