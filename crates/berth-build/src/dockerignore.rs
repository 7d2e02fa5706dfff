//! `.dockerignore` with Docker's semantics (moby `patternmatcher` + `ignorefile`), which are
//! *not* gitignore's: patterns are anchored at the context root (`*.go` matches only top-level
//! files; write `**/*.go` for all), `**` spans any number of directories, `!` re-includes,
//! the last matching pattern wins, and a pattern that matches a directory excludes everything
//! below it.

use regex_lite::Regex;

use crate::error::{Error, Result};
use crate::span::{Location, Span};

/// A parsed `.dockerignore`.
#[derive(Debug, Clone)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    has_exclusions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned pattern without the leading `!`.
    cleaned: String,
    /// `!pattern`: re-include.
    exclusion: bool,
    kind: MatchKind,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    /// `dir/**`: prefix `dir/`.
    Prefix(String),
    /// `**/name` or `**name`: the text after `**`.
    Suffix(String),
    Regex(Regex),
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            // Comments are recognised before trimming, as in moby's ignorefile.
            if line.starts_with('#') {
                continue;
            }
            let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
            let fail = |reason: &str| Error::IgnorePattern {
                location: Location::new(".dockerignore", Span::new(line_no, 1)),
                pattern: line.to_owned(),
                reason: reason.to_owned(),
            };
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(fail(
                        "a lone \"!\" re-includes nothing; remove it or add a pattern after it",
                    ));
                }
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            validate_glob(&cleaned).map_err(|r| fail(&r))?;
            let kind = compile(&cleaned).map_err(|r| fail(&r))?;
            patterns.push(Pattern {
                cleaned,
                exclusion,
                kind,
            });
        }
        let has_exclusions = patterns.iter().any(|p| p.exclusion);
        Ok(Self {
            patterns,
            has_exclusions,
        })
    }

    /// The patterns after cleaning, `!` included, in file order.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exclusion {
                format!("!{}", p.cleaned)
            } else {
                p.cleaned.clone()
            }
        })
    }

    /// Whether `rel_path` (slash-separated, relative to the context root) is left out of the
    /// build context. The context root itself is never excluded.
    pub fn excluded(&self, rel_path: &str) -> bool {
        let file = clean(rel_path);
        let file = file.trim_start_matches('/');
        if file.is_empty() || file == "." {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an already excluded path, nor an exclusion a kept one.
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(file);
            if !hit {
                for i in 1..=parents.len() {
                    if p.matches(&parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walk of the context may skip directory `rel_dir` without looking inside: it is
    /// excluded and no `!` pattern could re-include anything below it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.excluded(rel_dir) {
            return false;
        }
        if !self.has_exclusions {
            return true;
        }
        let dir = clean(rel_dir);
        let dir_slash = format!("{}/", dir.trim_start_matches('/'));
        // Any path a pattern matches starts with the pattern's literal prefix, so a `!` pattern
        // whose prefix is compatible with `dir/` might re-include something below it.
        !self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let lit = literal_prefix(&p.cleaned);
            lit.starts_with(&dir_slash) || dir_slash.starts_with(lit)
        })
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchKind::Regex(re) => re.is_match(path),
        }
    }
}

fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

/// Go's `path.Clean` for slash-separated paths.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The syntax check of Go's `filepath.Match`: escapes need a character, classes must be closed
/// and well formed.
fn validate_glob(p: &str) -> std::result::Result<(), String> {
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let esc = |i: &mut usize| -> std::result::Result<(), String> {
        match chars.get(*i) {
            None | Some('-' | ']') => return Err("malformed character class".into()),
            Some('\\') => {
                *i += 1;
                if *i >= chars.len() {
                    return Err("trailing \\ in character class".into());
                }
            }
            Some(_) => {}
        }
        *i += 1;
        Ok(())
    };
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                i += 1;
                if i >= chars.len() {
                    return Err("a trailing \\ escapes nothing; remove it".into());
                }
                i += 1;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut ranges = 0;
                loop {
                    if chars.get(i) == Some(&']') && ranges > 0 {
                        i += 1;
                        break;
                    }
                    esc(&mut i)?;
                    if chars.get(i) == Some(&'-') {
                        i += 1;
                        esc(&mut i)?;
                    }
                    ranges += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// moby `Pattern.compile` with `/` as separator.
fn compile(pattern: &str) -> std::result::Result<MatchKind, String> {
    #[derive(PartialEq, Clone, Copy)]
    enum T {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = T::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == T::Exact {
                        kind = T::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = T::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = T::Regex;
                }
                if first {
                    kind = T::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = T::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = T::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                if let Some(&next) = chars.get(i) {
                    i += 1;
                    re.push('\\');
                    re.push(next);
                    kind = T::Regex;
                } else {
                    re.push_str("\\\\");
                }
            }
            '[' | ']' => {
                re.push(ch);
                kind = T::Regex;
            }
            c => re.push(c),
        }
        first = false;
    }
    Ok(match kind {
        T::Exact => MatchKind::Exact,
        T::Prefix => MatchKind::Prefix(pattern[..pattern.len() - 2].to_owned()),
        T::Suffix => MatchKind::Suffix(pattern[2..].to_owned()),
        T::Regex => {
            re.push('$');
            MatchKind::Regex(Regex::new(&re).map_err(|e| format!("cannot compile pattern: {e}"))?)
        }
    })
}

#[cfg(test)]
mod tests;
