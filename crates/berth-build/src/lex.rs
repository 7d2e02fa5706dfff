//! Variable expansion with BuildKit's semantics (a port of moby/buildkit
//! `frontend/dockerfile/shell/lex.go`).
//!
//! This is not a shell: there is no command substitution, no globbing and no word splitting
//! except in [`Lexer::expand_words`]. Quotes are removed, `\` (or the `escape` directive's
//! character) escapes, single quotes suppress expansion, and the `${…}` forms BuildKit knows
//! are supported: `:-` `-` `:+` `+` `:?` `?` `#` `##` `%` `%%` `/` `//`.

/// A failed expansion: a syntax error in the word or a `${var:?message}` that fired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {message}")]
pub struct LexError {
    /// The word as written.
    pub word: String,
    /// What went wrong.
    pub message: String,
}

/// Expands variables in Dockerfile words.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
    /// Treat quotes as ordinary characters (BuildKit's `SkipProcessQuotes`, used for heredocs).
    skip_quotes: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new('\\')
    }
}

impl Lexer {
    /// A lexer using `escape` as escape character (`\` or, with `# escape=`` ` ``, a backtick).
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            skip_quotes: false,
        }
    }

    /// The same lexer with quote processing turned off, as BuildKit does for heredoc bodies.
    pub fn without_quotes(self) -> Self {
        Self {
            skip_quotes: true,
            ..self
        }
    }

    /// Expands `word` as one word (quotes removed, spaces kept).
    pub fn expand(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, LexError> {
        self.run(word, env).map(|(w, _)| w)
    }

    /// Expands `word` and splits the result into words on unquoted whitespace.
    pub fn expand_words(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, LexError> {
        self.run(word, env).map(|(_, ws)| ws)
    }

    fn run(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Vec<String>), LexError> {
        let mut sw = ShellWord {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: false,
        };
        sw.process_stop_on(None, false).map_err(|message| LexError {
            word: word.to_owned(),
            message,
        })
    }
}

struct ShellWord<'a> {
    lex: Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    raw_escapes: bool,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

type R<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> R<(String, Vec<String>)> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> R<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let special = ch == '$' || (!self.lex.skip_quotes && (ch == '\'' || ch == '"'));
            if special {
                let tmp = match ch {
                    '$' => self.process_dollar()?,
                    '\'' => self.process_single_quote()?,
                    _ => self.process_double_quote()?,
                };
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            let mut ch = self.next().unwrap_or_default();
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                match self.next() {
                    None => break,
                    Some(c) => ch = c,
                }
                words.add_raw_char(ch);
            } else {
                words.add_char(ch);
            }
            result.push(ch);
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> R<String> {
        self.next();
        let mut result = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => return Ok(result),
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> R<String> {
        self.next();
        let mut result = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.process_dollar()?),
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn process_dollar(&mut self) -> R<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get_env(&name).unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let mut ch = self.next();
        let mut modifier: String = ch.map(String::from).unwrap_or_default();
        let mut null_is_unset = false;
        match ch {
            Some('}') => return Ok(self.get_env(&name).unwrap_or_default()),
            Some(':') => {
                null_is_unset = true;
                ch = self.next();
                if let Some(c) = ch {
                    modifier.push(c);
                }
            }
            Some('+' | '-' | '?' | '#' | '%') => {}
            Some('/') => return self.process_replace(&name),
            _ => return Err(format!("unsupported modifier ({modifier}) in substitution")),
        }
        let raw_escapes = matches!(ch, Some('#' | '%'));
        let word = match self.process_stop_on(Some('}'), raw_escapes) {
            Ok((w, _)) => w,
            Err(e) => {
                if self.peek().is_none() {
                    return Err("syntax error: missing '}'".into());
                }
                return Err(e);
            }
        };
        let value = self.get_env(&name);
        let set = value.is_some();
        let value = value.unwrap_or_default();
        let empty_as_unset = !set || (null_is_unset && value.is_empty());
        match ch {
            Some('-') => Ok(if empty_as_unset { word } else { value }),
            Some('+') => Ok(if empty_as_unset { String::new() } else { word }),
            Some('?') => {
                if !set {
                    let msg = if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        word.as_str()
                    };
                    return Err(format!("{name}: {msg}"));
                }
                if null_is_unset && value.is_empty() {
                    let msg = if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        word.as_str()
                    };
                    return Err(format!("{name}: {msg}"));
                }
                Ok(value)
            }
            Some(c @ ('%' | '#')) => {
                let (greedy, pattern) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                if c == '%' {
                    trim_suffix(pattern, &value, greedy)
                } else {
                    trim_prefix(pattern, &value, greedy)
                }
            }
            _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
        }
    }

    fn process_replace(&mut self, name: &str) -> R<String> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w,
            Err(e) if self.peek().is_none() => {
                let _ = e;
                return Err("syntax error: missing '/' in ${}".into());
            }
            Err(e) => return Err(e),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((w, _)) => w,
            Err(e) if self.peek().is_none() => {
                let _ = e;
                return Err("syntax error: missing '}'".into());
            }
            Err(e) => return Err(e),
        };
        let value = self.get_env(name).unwrap_or_default();
        let re = shell_pattern_to_regex(&pattern, true, false)
            .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
        let rep = regex_lite::NoExpand(&replacement);
        Ok(if replace_all {
            re.replace_all(&value, rep).into_owned()
        } else {
            re.replace(&value, rep).into_owned()
        })
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(c) = self.peek().filter(|c| c.is_numeric()) {
                    self.next();
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

/// Converts a shell wildcard pattern (`*`, `?`, `\` escapes; no bracket expressions) to a regex.
fn shell_pattern_to_regex(pattern: &str, greedy: bool, anchored: bool) -> R<regex_lite::Regex> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut it = pattern.chars().peekable();
    while let Some(tok) = it.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `}` and `/` are escaped only to get past the `${}` syntax.
                if matches!(it.peek(), Some('}' | '/')) {
                    continue;
                }
                match it.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(c);
                    }
                    Some(c) => return Err(format!("invalid escape '\\{c}'")),
                    None => return Err("invalid escape '\\' at end of pattern".into()),
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            c => out.push(c),
        }
    }
    regex_lite::Regex::new(&out).map_err(|e| e.to_string())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> R<String> {
    let re = shell_pattern_to_regex(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> R<String> {
    // A regex cannot find the shortest rightmost match, so reverse both and search leftmost.
    let rev_pattern = reverse_pattern(pattern);
    let rev_value: String = value.chars().rev().collect();
    let re = shell_pattern_to_regex(&rev_pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    let rest = match re.find(&rev_value) {
        Some(m) => &rev_value[m.end()..],
        None => rev_value.as_str(),
    };
    Ok(rest.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` escape pair in order.
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; p.len()];
    let last = p.len().saturating_sub(1);
    let mut i = 0;
    while i < p.len() {
        let out_idx = last - i;
        if p[i] == '\\' && i != last {
            out[out_idx - 1] = '\\';
            out[out_idx] = p[i + 1];
            i += 2;
        } else {
            out[out_idx] = p[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests;
