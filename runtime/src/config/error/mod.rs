//! Config errors as an operator reads them: file, line, column, the dotted key, what is
//! wrong, what would be valid, and the offending line with carets under the value.
//!
//! Serde errors from the `toml` crate carry a message and a byte span but no usable key
//! path, so the path is recovered by locating the span in a spanned parse tree
//! ([`toml::de::DeTable`]), and serde's stock messages ("unknown field `x`, expected …",
//! "invalid type: …") are rewritten into weir's wording.

mod locate;
mod mask;
mod render;
mod rewrite;
mod source;
mod suggest;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de;

pub(crate) use locate::join_key;
pub(crate) use mask::mask_urls;
pub(crate) use source::SourceFile;
pub(crate) use suggest::suggest;

/// Separates a message from its help inside a serde error string: serde errors are plain
/// strings, and validating visitors need to pass both through the `toml` crate. A control
/// character cannot appear unescaped in a message, because values are quoted with `{:?}`.
const HELP_SEPARATOR: char = '\u{1f}';

/// Why a value is invalid, and what would be valid. Returned by the validating
/// constructors ([`super::Name::new`], [`super::Subject::new`], [`super::parse_size`], …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    /// What is wrong, quoting the value.
    pub message: String,
    /// What would be valid.
    pub help: Option<String>,
}

impl InvalidValue {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), help: None }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Packs message and help into one serde error, unpacked again by [`split_help`].
    pub(crate) fn into_de<E: de::Error>(self) -> E {
        match self.help {
            Some(help) => E::custom(format_args!("{}{HELP_SEPARATOR}{help}", self.message)),
            None => E::custom(self.message),
        }
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidValue {}

/// A position in a config file, 1-based. Displays as `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// The source line an error points at, with the columns to underline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// 1-based line number.
    pub line: usize,
    /// The line's text, tabs replaced by spaces so that the carets line up.
    pub text: String,
    /// 1-based column (in characters) of the first caret.
    pub column: usize,
    /// Number of carets, at least 1.
    pub width: usize,
}

/// A configuration error. `Display` renders it for a terminal:
///
/// ```text
/// pipelines/views.toml:12:22: stages[1].limits.timeout: invalid duration "fast"
///   help: write a number and a unit, like "20ms", "1s" or "2m"
///    |
/// 12 | limits = { timeout = "fast", memory = "64MiB" }
///    |                      ^^^^^^
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as given by the caller.
    pub file: PathBuf,
    /// 1-based line, when the error has a place in the file.
    pub line: Option<usize>,
    /// 1-based column in characters.
    pub column: Option<usize>,
    /// Dotted path of the key, with array indices: `stages[1].limits.timeout`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What would be valid, or how to fix it.
    pub help: Option<String>,
    /// The offending line, for display.
    pub snippet: Option<Snippet>,
}

// Written by hand rather than with thiserror: the rendering is multi-line and conditional,
// which a format string cannot express.
impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        render::render(self, f)
    }
}

impl ConfigError {
    /// An error about a whole file, with no position in it (I/O, duplicate files).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line: None, column: None, key: None, message: message.into(), help: None, snippet: None }
    }

    /// `FILE: cannot read file: REASON`, without the `(os error N)` noise. `what` is
    /// "file" or "directory".
    pub(crate) fn io(file: &Path, what: &str, error: &std::io::Error) -> Self {
        let reason = match error.kind() {
            std::io::ErrorKind::InvalidData => "the file is not valid UTF-8".to_owned(),
            _ => {
                let text = error.to_string();
                match text.find(" (os error") {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                }
            }
        };
        Self::file(file, format!("cannot read {what}: {reason}"))
    }

    /// Where the error is, if it has a line.
    pub fn location(&self) -> Option<Location> {
        Some(Location { file: self.file.clone(), line: self.line?, column: self.column.unwrap_or(1) })
    }
}

/// Splits a message packed by [`InvalidValue::into_de`].
fn split_help(message: &str) -> (String, Option<String>) {
    match message.split_once(HELP_SEPARATOR) {
        Some((message, help)) => (message.to_owned(), Some(help.to_owned())),
        None => (message.to_owned(), None),
    }
}
