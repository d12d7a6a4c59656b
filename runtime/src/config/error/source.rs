//! Byte spans in a config file turned into lines, columns and snippets.

use std::ops::Range;
use std::path::Path;

use toml::de::DeTable;

use super::locate::find_key;
use super::mask::{mask_line, mask_urls};
use super::rewrite::{rewrite_serde, rewrite_syntax};
use super::{ConfigError, Location, Snippet};

/// One config file's text, for turning byte spans into lines, columns and snippets.
pub(crate) struct SourceFile<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
    /// Mask passwords and tokens in messages and snippets: errors end up in logs.
    secrets: bool,
}

impl<'a> SourceFile<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        Self { path, text, secrets: false }
    }

    /// A file that may hold secrets (`weir.toml`).
    pub(crate) fn with_secrets(path: &'a Path, text: &'a str) -> Self {
        Self { path, text, secrets: true }
    }

    /// 1-based line and character column of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line = self.text[..line_start].matches('\n').count() + 1;
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column, line_start)
    }

    pub(crate) fn location(&self, span: &Range<usize>) -> Location {
        let (line, column, _) = self.position(span.start);
        Location { file: self.path.to_owned(), line, column }
    }

    /// An error at `span` (or about the whole file when `None`).
    pub(crate) fn error(&self, span: Option<Range<usize>>, key: Option<String>, message: impl Into<String>, help: Option<String>) -> ConfigError {
        let mut message = message.into();
        if self.secrets {
            message = mask_urls(&message);
        }
        let mut error = ConfigError::file(self.path, message);
        error.key = key;
        error.help = help;
        if let Some(span) = span {
            let (line, column, line_start) = self.position(span.start);
            let line_text = self.text[line_start..].split('\n').next().unwrap_or_default().trim_end_matches('\r');
            let masked;
            let line_text = if self.secrets {
                masked = mask_line(line_text);
                masked.as_str()
            } else {
                line_text
            };
            let line_chars = line_text.chars().count();
            let span_end = span.end.clamp(span.start, self.text.len());
            let span_chars = self.text.get(span.start..span_end).map_or(0, |s| s.chars().count());
            // Spans over several lines are underlined to the end of the first one.
            let width = span_chars.min(line_chars.saturating_sub(column - 1)).max(1);
            error.line = Some(line);
            error.column = Some(column);
            error.snippet = Some(Snippet { line, text: line_text.replace('\t', " "), column, width });
        }
        error
    }

    pub(crate) fn error_at(&self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>, help: Option<String>) -> ConfigError {
        self.error(Some(span), Some(key.into()), message, help)
    }

    /// Converts an error from the `toml` crate (syntax or serde) into a [`ConfigError`].
    pub(crate) fn toml_error(&self, error: &toml::de::Error, syntax: bool) -> ConfigError {
        let (tree, _) = DeTable::parse_recoverable(self.text);
        let mut span = error.span();
        // The root table's span is empty at 0: an error there (a missing top-level key) has
        // no useful place to point at.
        if !syntax && span.as_ref().is_some_and(|s| s.start == 0 && s.end == 0) {
            span = None;
        }
        // After a syntax error the recovered tree is only a guess; trust it when the error
        // points at a token (a bad value, a duplicate key), not at a gap between tokens.
        // `[[sink]]` has the same span as the array and as its first table: when serde
        // complains about a sequence, the array is meant.
        let prefer = if error.message().starts_with("invalid type: sequence") { Some("array") } else { None };
        let found = span
            .as_ref()
            .filter(|s| !syntax || !s.is_empty())
            .and_then(|s| find_key(tree.get_ref(), s, prefer))
            .unwrap_or_default();
        let text = span.as_ref().map(|s| self.slice(s));
        let (message, help) = if syntax { rewrite_syntax(error.message(), &found, text) } else { rewrite_serde(error.message(), &found, text) };
        // Missing keys are reported at the table that lacks them, so the key is the table.
        self.error(span, found.path, message, help)
    }

    fn slice(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or_default()
    }
}
