//! Config errors as an operator reads them: file, line, column, the dotted key, what is
//! wrong, what would be valid, and the offending line with carets under the value.
//!
//! Serde errors from the `toml` crate carry a message and a byte span but no usable key
//! path, so the path is recovered by locating the span in a spanned parse tree
//! ([`toml::de::DeTable`]), and serde's stock messages ("unknown field `x`, expected …",
//! "invalid type: …") are rewritten into weir's wording.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de;
use toml::de::{DeTable, DeValue};

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
        Self {
            message: message.into(),
            help: None,
        }
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
        render(self, f)
    }
}

fn render(e: &ConfigError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}", e.file.display())?;
    if let Some(line) = e.line {
        write!(f, ":{line}")?;
        if let Some(column) = e.column {
            write!(f, ":{column}")?;
        }
    }
    f.write_str(": ")?;
    if let Some(key) = &e.key {
        write!(f, "{key}: ")?;
    }
    f.write_str(&e.message)?;
    if let Some(help) = &e.help {
        write!(f, "\n  help: {help}")?;
    }
    if let Some(snippet) = &e.snippet {
        let gutter = snippet.line.to_string().len();
        write!(f, "\n{:gutter$} |", "")?;
        write!(f, "\n{} | {}", snippet.line, snippet.text)?;
        write!(
            f,
            "\n{:gutter$} | {:pad$}{}",
            "",
            "",
            "^".repeat(snippet.width.max(1)),
            pad = snippet.column.saturating_sub(1)
        )?;
    }
    Ok(())
}

impl ConfigError {
    /// An error about a whole file, with no position in it (I/O, duplicate files).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
            help: None,
            snippet: None,
        }
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
        Some(Location {
            file: self.file.clone(),
            line: self.line?,
            column: self.column.unwrap_or(1),
        })
    }
}

/// One config file's text, for turning byte spans into lines, columns and snippets.
pub(crate) struct SourceFile<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
    /// Mask passwords and tokens in messages and snippets: errors end up in logs.
    secrets: bool,
}

impl<'a> SourceFile<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            text,
            secrets: false,
        }
    }

    /// A file that may hold secrets (`weir.toml`).
    pub(crate) fn with_secrets(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            text,
            secrets: true,
        }
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
        Location {
            file: self.path.to_owned(),
            line,
            column,
        }
    }

    /// An error at `span` (or about the whole file when `None`).
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        let mut message = message.into();
        if self.secrets {
            message = mask_urls(&message);
        }
        let mut error = ConfigError::file(self.path, message);
        error.key = key;
        error.help = help;
        if let Some(span) = span {
            let (line, column, line_start) = self.position(span.start);
            let line_text = self.text[line_start..]
                .split('\n')
                .next()
                .unwrap_or_default()
                .trim_end_matches('\r');
            let masked;
            let line_text = if self.secrets {
                masked = mask_line(line_text);
                masked.as_str()
            } else {
                line_text
            };
            let line_chars = line_text.chars().count();
            let span_end = span.end.clamp(span.start, self.text.len());
            let span_chars = self
                .text
                .get(span.start..span_end)
                .map_or(0, |s| s.chars().count());
            // Spans over several lines are underlined to the end of the first one.
            let width = span_chars.min(line_chars.saturating_sub(column - 1)).max(1);
            error.line = Some(line);
            error.column = Some(column);
            error.snippet = Some(Snippet {
                line,
                text: line_text.replace('\t', " "),
                column,
                width,
            });
        }
        error
    }

    pub(crate) fn error_at(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
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
        let prefer = if error.message().starts_with("invalid type: sequence") {
            Some("array")
        } else {
            None
        };
        let found = span
            .as_ref()
            .filter(|s| !syntax || !s.is_empty())
            .and_then(|s| find_key(tree.get_ref(), s, prefer))
            .unwrap_or_default();
        let text = span.as_ref().map(|s| self.slice(s));
        let (message, help) = if syntax {
            rewrite_syntax(error.message(), &found, text)
        } else {
            rewrite_serde(error.message(), &found, text)
        };
        // Missing keys are reported at the table that lacks them, so the key is the table.
        self.error(span, found.path, message, help)
    }

    fn slice(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or_default()
    }
}

/// Masks the value of a line that sets a secret (or a likely typo of one: `tokn = "…"`),
/// and the credentials in URLs.
fn mask_line(line: &str) -> String {
    let line = mask_urls(line);
    if let Some((key, value)) = line.split_once('=') {
        let name = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
        let secret = ["token", "password", "secret"]
            .iter()
            .any(|s| name.contains(s) || edit_distance(&name, s) <= 2);
        if secret && !value.trim().is_empty() {
            let indent = &value[..value.len() - value.trim_start().len()];
            return format!("{key}={indent}\"***\"");
        }
    }
    line
}

/// Replaces the user and password of every `scheme://user:pass@host` with `***`.
pub(crate) fn mask_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '"' | '\'' | ',') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                rest = &tail[userinfo_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// What [`find_key`] found at a span.
#[derive(Default)]
struct Found {
    /// Dotted path of the innermost key or value containing the span.
    path: Option<String>,
    /// The TOML type of the value, when the span is a value rather than a key.
    value_type: Option<&'static str>,
}

/// Finds the innermost key or value whose span contains `span`. Between equal spans, one
/// whose type is `prefer` wins, else the deepest (an array of tables shares its span with
/// its first table).
///
/// Every table is searched, not only those whose span contains the target: a `[table]`
/// header's span covers the header only, and its keys follow it.
fn find_key(root: &DeTable<'_>, span: &Range<usize>, prefer: Option<&str>) -> Option<Found> {
    struct Best {
        path: String,
        len: usize,
        depth: usize,
        value_type: Option<&'static str>,
    }
    fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        if inner.is_empty() {
            outer.start <= inner.start && inner.start < outer.end
        } else {
            outer.start <= inner.start && inner.end <= outer.end
        }
    }
    struct Search<'a> {
        target: &'a Range<usize>,
        prefer: Option<&'a str>,
    }
    fn consider(
        best: &mut Option<Best>,
        search: &Search<'_>,
        candidate: Range<usize>,
        path: &str,
        depth: usize,
        value_type: Option<&'static str>,
    ) {
        if !contains(&candidate, search.target) {
            return;
        }
        let len = candidate.len();
        let preferred = |t: Option<&str>| search.prefer.is_some() && t == search.prefer;
        let better = match best {
            None => true,
            Some(b) if len != b.len => len < b.len,
            Some(b) if preferred(value_type) != preferred(b.value_type) => preferred(value_type),
            Some(b) => depth > b.depth,
        };
        if better {
            *best = Some(Best {
                path: path.to_owned(),
                len,
                depth,
                value_type,
            });
        }
    }
    fn walk_value(
        value: &toml::Spanned<DeValue<'_>>,
        path: &str,
        depth: usize,
        search: &Search<'_>,
        best: &mut Option<Best>,
    ) {
        match value.get_ref() {
            DeValue::Table(table) => walk_table(table, path, depth + 1, search, best),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    consider(
                        best,
                        search,
                        item.span(),
                        &item_path,
                        depth + 1,
                        Some(item.get_ref().type_str()),
                    );
                    walk_value(item, &item_path, depth + 1, search, best);
                }
            }
            _ => {}
        }
    }
    fn walk_table(
        table: &DeTable<'_>,
        prefix: &str,
        depth: usize,
        search: &Search<'_>,
        best: &mut Option<Best>,
    ) {
        for (key, value) in table.iter() {
            let path = join_key(prefix, key.get_ref());
            consider(best, search, key.span(), &path, depth, None);
            consider(
                best,
                search,
                value.span(),
                &path,
                depth,
                Some(value.get_ref().type_str()),
            );
            walk_value(value, &path, depth, search, best);
        }
    }
    let mut best = None;
    let search = Search {
        target: span,
        prefer,
    };
    walk_table(root, "", 0, &search, &mut best);
    best.map(|b| Found {
        path: Some(b.path),
        value_type: b.value_type,
    })
}

/// Appends a key to a dotted path, quoting keys that are not bare TOML keys.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// Splits a message packed by [`InvalidValue::into_de`].
fn split_help(message: &str) -> (String, Option<String>) {
    match message.split_once(HELP_SEPARATOR) {
        Some((message, help)) => (message.to_owned(), Some(help.to_owned())),
        None => (message.to_owned(), None),
    }
}

/// The names quoted in backticks in a serde message, in order.
fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// Help for a key that a table requires, keyed by the table's path with indices removed.
fn missing_key_help(table: &str, key: &str) -> Option<&'static str> {
    Some(match (table, key) {
        ("", "name") => "every pipeline needs a unique name, like name = \"product-views\"",
        ("", "source") => {
            "add a [source] table with the subject to read from, like subject = \"orders.created\""
        }
        ("", "sink") => {
            "add a [sink] table with the subject to publish to, like subject = \"processed.{subject}\""
        }
        ("source", "subject") => {
            "add the NATS subject to read from, like subject = \"orders.created\""
        }
        ("sink", "subject") => {
            "add the NATS subject to publish results to, like subject = \"processed.{subject}\""
        }
        ("dead_letter", "subject") => {
            "add the NATS subject for failed events, like subject = \"weir.dlq.orders\""
        }
        ("stages[]", "name") => {
            "every stage needs a name, unique within the pipeline, like name = \"enrich\""
        }
        ("stages[]", "plugin") => {
            "add the path of the stage's .wasm component, like plugin = \"plugins/enrich.wasm\""
        }
        _ => return None,
    })
}

/// Keys whose value is a table, for "missing table `[sink]`" rather than "missing key".
const TABLE_KEYS: &[&str] = &["source", "sink"];

/// Rewrites serde's stock messages; custom messages (from weir's visitors) pass through.
fn rewrite_serde(raw: &str, found: &Found, text: Option<&str>) -> (String, Option<String>) {
    if let Some(rest) = raw.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let Some((unknown, valid)) = names.split_first() else {
            return split_help(raw);
        };
        let help = if valid.is_empty() {
            "no keys are allowed here".to_owned()
        } else {
            let list = format!("valid keys here are: {}", valid.join(", "));
            match suggest(unknown, valid) {
                Some(close) => format!("did you mean \"{close}\"? {list}"),
                None => list,
            }
        };
        return (format!("unknown key \"{unknown}\""), Some(help));
    }
    if raw.starts_with("missing field ") {
        let Some(key) = backticked(raw).first().copied() else {
            return split_help(raw);
        };
        let table = found.path.as_deref().unwrap_or_default();
        let generic = strip_indices(table);
        let message = if table.is_empty() && TABLE_KEYS.contains(&key) {
            format!("missing table [{key}]")
        } else {
            format!("missing key \"{key}\"")
        };
        return (message, missing_key_help(&generic, key).map(str::to_owned));
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ")
        && let Some((unexpected, expected)) = rest.split_once(", expected ")
    {
        let found_text = describe_found(unexpected, found, text);
        let expected = expected_phrase(expected);
        let help = type_help(&expected, found, text);
        return (format!("expected {expected}, found {found_text}"), help);
    }
    if let Some(rest) = raw.strip_prefix("invalid value: ")
        && let Some((_, expected)) = rest.split_once(", expected ")
    {
        let value = text.map_or_else(|| "value".to_owned(), |t| t.trim().to_owned());
        return (
            format!(
                "invalid value {value}: expected {}",
                expected_phrase(expected)
            ),
            None,
        );
    }
    if raw == "integer number overflowed" {
        return (
            "integer is too large".to_owned(),
            Some("integers must fit in 64 bits".to_owned()),
        );
    }
    split_help(raw)
}

fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// Describes what was found for an "invalid type" message, preferring the TOML type from
/// the tree: serde sees a TOML datetime as a map, which would read "found a table".
fn describe_found(unexpected: &str, found: &Found, text: Option<&str>) -> String {
    let text = text
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 60 && !t.contains('\n'));
    match (found.value_type, text) {
        (Some("table"), _) => "a table".to_owned(),
        (Some("array"), _) => "an array".to_owned(),
        (Some(kind), Some(text)) => format!("{kind} {text}"),
        (Some(kind), None) => kind.to_owned(),
        (None, _) => unexpected.replace('`', ""),
    }
}

/// Serde's "expected" phrases for std types, in TOML words.
fn expected_phrase(expected: &str) -> String {
    let integer = |t: &str| {
        ["8", "16", "32", "64", "128", "size"]
            .iter()
            .any(|bits| t.len() > 1 && &t[1..] == *bits)
    };
    match expected {
        e if e.starts_with('u') && integer(e) => "a non-negative integer".to_owned(),
        e if e.starts_with('i') && integer(e) => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "a boolean (true or false)".to_owned(),
        "a string" | "a borrowed string" | "path string" | "a character" => "a string".to_owned(),
        "a sequence" => "an array".to_owned(),
        e if e.starts_with("struct ") || e == "a map" => "a table".to_owned(),
        e => e.to_owned(),
    }
}

/// A hint for the commonest type mistakes: quoting a number, not quoting a string, or
/// confusing `[table]` and `[[array of tables]]`.
fn type_help(expected: &str, found: &Found, text: Option<&str>) -> Option<String> {
    let text = text?.trim();
    let path = found.path.as_deref().unwrap_or_default();
    let key = path.rsplit('.').next().unwrap_or(path);
    let key = key.split('[').next().unwrap_or(key);
    match found.value_type? {
        "string" if expected.contains("integer") => {
            let inner = text.trim_matches(['"', '\'']);
            inner
                .parse::<i64>()
                .is_ok()
                .then(|| format!("write the number without quotes: {key} = {inner}"))
        }
        "string" if expected.contains("boolean") => {
            let inner = text.trim_matches(['"', '\'']);
            matches!(inner, "true" | "false")
                .then(|| format!("write true or false without quotes: {key} = {inner}"))
        }
        "integer" | "float" | "boolean" | "datetime" if expected.contains("string") => {
            Some(format!("put the value in quotes: {key} = \"{text}\""))
        }
        "array" if expected == "a table" => Some(format!(
            "write [{key}] for a table; [[{key}]] makes an array of tables"
        )),
        "table" if expected == "an array" => Some(format!(
            "write [[{key}]] (double brackets) for each entry of an array of tables"
        )),
        _ if key == "config" && expected == "a table" => Some(
            "write the stage's settings as a table, like config = { model = \"fashion.onnx\" }"
                .to_owned(),
        ),
        _ => None,
    }
}

/// Rewrites parser messages: they are terse ("unclosed table, expected `]`"), and an
/// unquoted string is reported as whatever its first character suggested ("invalid
/// boolean" for `subject = tracking.x`).
fn rewrite_syntax(raw: &str, found: &Found, text: Option<&str>) -> (String, Option<String>) {
    let (description, expected) = match raw.split_once(", expected ") {
        Some((d, e)) => (d, Some(e)),
        None => (raw, None),
    };
    let key = found
        .path
        .as_deref()
        .and_then(|p| p.rsplit('.').next())
        .unwrap_or("key");
    let token = text.map(str::trim).unwrap_or_default();
    if looks_unquoted(description, token) {
        return (
            "invalid TOML: string values must be quoted".to_owned(),
            Some(format!("put the value in quotes: {key} = \"{token}\"")),
        );
    }
    let help = match description {
        "duplicate key" => {
            Some("a key can be set only once in a table, and a table defined only once".to_owned())
        }
        "unclosed table" => Some("close the table header with \"]\", like [source]".to_owned()),
        "unclosed array table" => Some("close the header with \"]]\", like [[stages]]".to_owned()),
        "unclosed inline table" => Some("close the inline table with \"}\"".to_owned()),
        "unclosed array" => Some("close the array with \"]\"".to_owned()),
        "missing comma between array elements" => {
            Some("separate array elements with commas".to_owned())
        }
        "missing comma between key-value pairs" => {
            Some("separate the keys of an inline table with commas".to_owned())
        }
        "invalid basic string" | "invalid literal string" => Some(
            "close the string with a quote on the same line (use \"\"\" for a multi-line string)"
                .to_owned(),
        ),
        _ => expected.map(|e| format!("expected {e}")),
    };
    let description = match description {
        // The recovered tree holds the first definition, not this one: name the key from
        // the text under the span.
        "duplicate key" if token.starts_with(['"', '\'']) => format!("duplicate key {token}"),
        "duplicate key" if !token.is_empty() => format!("duplicate key \"{token}\""),
        d => d.to_owned(),
    };
    (format!("invalid TOML: {description}"), help)
}

/// Whether a scalar the parser could not read is most likely a string without quotes:
/// `20ms`, `tracking.viewed`, `fast`.
fn looks_unquoted(description: &str, token: &str) -> bool {
    let scalar_error = matches!(
        description,
        "string values must be quoted"
            | "invalid boolean"
            | "invalid integer number"
            | "invalid float"
            | "invalid date-time"
            | "invalid hexadecimal number"
            | "invalid octal number"
            | "invalid binary number"
            | "invalid exponent"
            | "invalid fraction"
            | "invalid mantissa"
            | "unexpected leading zero"
    );
    scalar_error
        && !token.is_empty()
        && token.len() <= 80
        && token.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*' | '>' | '/' | '+')
        })
        && token.chars().any(char::is_alphabetic)
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0 => return None,
        1..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, which
/// are the commonest typo ("tmieout").
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("tmieout", "timeout"), 1);
        assert_eq!(edit_distance("plugn", "plugin"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(suggest("tmieout", &["timeout", "memory"]), Some("timeout"));
        assert_eq!(suggest("colour", &["timeout", "memory"]), None);
    }

    #[test]
    fn key_paths() {
        let text = "name = \"x\"\n[sink]\nsubject = \"a\"\n[[stages]]\nname = \"a\"\n[[stages]]\nname = \"b\"\nlimits = { timeout = \"fast\" }\n";
        let tree = DeTable::parse(text).expect("valid TOML");
        let at = |needle: &str| {
            let start = text.rfind(needle).expect("needle in text");
            find_key(tree.get_ref(), &(start..start + needle.len()), None).and_then(|f| f.path)
        };
        assert_eq!(at("\"fast\"").as_deref(), Some("stages[1].limits.timeout"));
        assert_eq!(at("[sink]").as_deref(), Some("sink"));
        assert_eq!(at("\"b\"").as_deref(), Some("stages[1].name"));
        let subject = text.find("= \"a\"").map_or(0, |i| i + 2);
        let found = find_key(tree.get_ref(), &(subject..subject + 3), None).and_then(|f| f.path);
        assert_eq!(found.as_deref(), Some("sink.subject"));
        assert_eq!(join_key("config", "my key"), "config.\"my key\"");
        assert_eq!(strip_indices("stages[12].limits"), "stages[].limits");
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(mask_line("token = \"s3cret\""), "token = \"***\"");
        assert_eq!(mask_line("tokn = \"s3cret\""), "tokn = \"***\"");
        assert_eq!(mask_line("  password=\"x\""), "  password=\"***\"");
        assert_eq!(mask_line("user = \"weir\""), "user = \"weir\"");
        assert_eq!(
            mask_line("url = \"nats://u:p@a:4222, tls://b:4222\""),
            "url = \"nats://***@a:4222, tls://b:4222\""
        );
        assert_eq!(mask_urls("nats://a:4222"), "nats://a:4222");
    }

    #[test]
    fn display() {
        let text = "[[stages]]\nlimits = { timeout = \"fast\", memory = \"64MiB\" }\n";
        let source = SourceFile::new(Path::new("pipelines/views.toml"), text);
        let start = text.find("\"fast\"").unwrap_or_default();
        let error = source.error_at(
            start..start + 6,
            "stages[0].limits.timeout",
            "invalid duration \"fast\"",
            Some("write a number and a unit".to_owned()),
        );
        assert_eq!(
            error.to_string(),
            "pipelines/views.toml:2:22: stages[0].limits.timeout: invalid duration \"fast\"\n  help: write a number and a unit\n  |\n2 | limits = { timeout = \"fast\", memory = \"64MiB\" }\n  |                      ^^^^^^"
        );
        let io = ConfigError::io(
            Path::new("x.toml"),
            "file",
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(io.to_string(), "x.toml: cannot read file: entity not found");
    }
}
