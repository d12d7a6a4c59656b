//! Serde's and the TOML parser's stock messages rewritten into weir's wording, with help
//! that says what to write instead.

use super::locate::{Found, strip_indices};
use super::split_help;
use super::suggest::suggest;

/// The names quoted in backticks in a serde message, in order.
fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// Help for a key that a table requires, keyed by the table's path with indices removed.
fn missing_key_help(table: &str, key: &str) -> Option<&'static str> {
    Some(match (table, key) {
        ("", "name") => "every pipeline needs a unique name, like name = \"product-views\"",
        ("", "source") => "add a [source] table with the subject to read from, like subject = \"orders.created\"",
        ("", "sink") => "add a [sink] table with the subject to publish to, like subject = \"processed.{subject}\"",
        ("source", "subject") => "add the NATS subject to read from, like subject = \"orders.created\"",
        ("sink", "subject") => "add the NATS subject to publish results to, like subject = \"processed.{subject}\"",
        ("dead_letter", "subject") => "add the NATS subject for failed events, like subject = \"weir.dlq.orders\"",
        ("stages[]", "name") => "every stage needs a name, unique within the pipeline, like name = \"enrich\"",
        ("stages[]", "plugin") => "add the path of the stage's .wasm component, like plugin = \"plugins/enrich.wasm\"",
        _ => return None,
    })
}

/// Keys whose value is a table, for "missing table `[sink]`" rather than "missing key".
const TABLE_KEYS: &[&str] = &["source", "sink"];

/// Rewrites serde's stock messages; custom messages (from weir's visitors) pass through.
pub(super) fn rewrite_serde(raw: &str, found: &Found, text: Option<&str>) -> (String, Option<String>) {
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
        let message = if table.is_empty() && TABLE_KEYS.contains(&key) { format!("missing table [{key}]") } else { format!("missing key \"{key}\"") };
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
        return (format!("invalid value {value}: expected {}", expected_phrase(expected)), None);
    }
    if raw == "integer number overflowed" {
        return ("integer is too large".to_owned(), Some("integers must fit in 64 bits".to_owned()));
    }
    split_help(raw)
}

/// Describes what was found for an "invalid type" message, preferring the TOML type from
/// the tree: serde sees a TOML datetime as a map, which would read "found a table".
fn describe_found(unexpected: &str, found: &Found, text: Option<&str>) -> String {
    let text = text.map(str::trim).filter(|t| !t.is_empty() && t.len() <= 60 && !t.contains('\n'));
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
    let integer = |t: &str| ["8", "16", "32", "64", "128", "size"].iter().any(|bits| t.len() > 1 && &t[1..] == *bits);
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
            inner.parse::<i64>().is_ok().then(|| format!("write the number without quotes: {key} = {inner}"))
        }
        "string" if expected.contains("boolean") => {
            let inner = text.trim_matches(['"', '\'']);
            matches!(inner, "true" | "false").then(|| format!("write true or false without quotes: {key} = {inner}"))
        }
        "integer" | "float" | "boolean" | "datetime" if expected.contains("string") => Some(format!("put the value in quotes: {key} = \"{text}\"")),
        "array" if expected == "a table" => Some(format!("write [{key}] for a table; [[{key}]] makes an array of tables")),
        "table" if expected == "an array" => Some(format!("write [[{key}]] (double brackets) for each entry of an array of tables")),
        _ if key == "config" && expected == "a table" => Some("write the stage's settings as a table, like config = { model = \"fashion.onnx\" }".to_owned()),
        _ => None,
    }
}

/// Rewrites parser messages: they are terse ("unclosed table, expected `]`"), and an
/// unquoted string is reported as whatever its first character suggested ("invalid
/// boolean" for `subject = tracking.x`).
pub(super) fn rewrite_syntax(raw: &str, found: &Found, text: Option<&str>) -> (String, Option<String>) {
    let (description, expected) = match raw.split_once(", expected ") {
        Some((d, e)) => (d, Some(e)),
        None => (raw, None),
    };
    let key = found.path.as_deref().and_then(|p| p.rsplit('.').next()).unwrap_or("key");
    let token = text.map(str::trim).unwrap_or_default();
    if looks_unquoted(description, token) {
        return ("invalid TOML: string values must be quoted".to_owned(), Some(format!("put the value in quotes: {key} = \"{token}\"")));
    }
    let help = match description {
        "duplicate key" => Some("a key can be set only once in a table, and a table defined only once".to_owned()),
        "unclosed table" => Some("close the table header with \"]\", like [source]".to_owned()),
        "unclosed array table" => Some("close the header with \"]]\", like [[stages]]".to_owned()),
        "unclosed inline table" => Some("close the inline table with \"}\"".to_owned()),
        "unclosed array" => Some("close the array with \"]\"".to_owned()),
        "missing comma between array elements" => Some("separate array elements with commas".to_owned()),
        "missing comma between key-value pairs" => Some("separate the keys of an inline table with commas".to_owned()),
        "invalid basic string" | "invalid literal string" => {
            Some("close the string with a quote on the same line (use \"\"\" for a multi-line string)".to_owned())
        }
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
        && token
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*' | '>' | '/' | '+'))
        && token.chars().any(char::is_alphabetic)
}
