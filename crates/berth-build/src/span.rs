//! Source positions: byte offsets from the parser become `line:column` pairs.

use std::fmt;

/// A position in a source file, 1-based; the column counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number (in characters), starting at 1.
    pub column: u32,
}

impl Span {
    /// A span at `line:column`.
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A span in a named file; displays as `Dockerfile:12:1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file name as the user knows it (e.g. `Dockerfile`, `docker/api.Dockerfile`).
    pub file: String,
    /// Where in that file.
    pub span: Span,
}

impl Location {
    /// A location in `file` at `span`.
    pub fn new(file: impl Into<String>, span: Span) -> Self {
        Self {
            file: file.into(),
            span,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.span)
    }
}

/// Maps byte offsets of one text to [`Span`]s.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, line_starts }
    }

    pub(crate) fn span(&self, offset: usize) -> Span {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        // The parser only reports offsets at char boundaries, but be defensive.
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Span::new(to_u32(line + 1), to_u32(column + 1))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_lines_and_chars() {
        let map = SourceMap::new("ab\nçd\n\nx");
        assert_eq!(map.span(0), Span::new(1, 1));
        assert_eq!(map.span(1), Span::new(1, 2));
        assert_eq!(map.span(3), Span::new(2, 1));
        assert_eq!(map.span(5), Span::new(2, 2));
        assert_eq!(map.span(7), Span::new(3, 1));
        assert_eq!(map.span(8), Span::new(4, 1));
        assert_eq!(map.span(100), Span::new(4, 2));
    }
}
