//! What the stateful plugins (`dedupe`, `window-count`, `sessionize`)
//! share: the key an event is grouped by, durations, event times and
//! subject templates, each parsed once in `init` and used per event.
//!
//! Every per-event failure is an [`Error::invalid`] that names the field and
//! what was wrong with it; nothing here panics on input.

use std::time::{SystemTime, UNIX_EPOCH};

use weir_sdk::serde_json::{Map, Value};
use weir_sdk::{Config, Error, Event, Path, Selection};

/// The end of time, in ms since the epoch: 2^53, the `now` of the final
/// tick of `weir exec` and `weir test`.
pub const END_OF_TIME: u64 = 1 << 53;

/// The longest duration accepted (365 days).
pub const MAX_DURATION: u64 = 365 * 86_400_000;

/// The latest event time accepted: two of the longest durations before
/// [`END_OF_TIME`] (some 285,000 years from now), so that anything open at
/// any accepted time (a window and its lateness, a session and its gap)
/// has ended by the final tick, and no sum of a time and durations
/// overflows.
pub const MAX_TIME: u64 = END_OF_TIME - 2 * MAX_DURATION;

/// One part of a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// A payload field (`product_id`, `user.id`).
    Field(Path),
    /// A header (`header:Nats-Msg-Id`).
    Header(String),
    /// The whole subject (`subject`).
    Subject,
    /// One token of the subject, counted from 1 (`subject:3`).
    SubjectToken(usize),
}

/// What an event is grouped by: one or more [`Part`]s, each with the name it
/// was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    parts: Vec<(String, Part)>,
}

impl Key {
    /// Parses `config.<name>`: one part or a list of them.
    ///
    /// A part is a dotted payload path, `header:<name>`, `subject`, or
    /// `subject:<n>` (the n-th token of the subject, from 1).
    pub fn from_config(value: Option<&Value>, name: &str) -> Result<Key, String> {
        let texts: Vec<&str> = match value {
            None | Some(Value::Null) => {
                return Err(format!("config.{name} is required: a field path, \"header:<name>\", \"subject\", \"subject:<n>\", or a list of them"));
            }
            Some(Value::String(text)) => vec![text],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| item.as_str().ok_or_else(|| format!("config.{name}[{i}]: expected a string, found {item}")))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("config.{name}: expected a string or a non-empty list of strings, found {other}")),
        };
        let mut parts = Vec::with_capacity(texts.len());
        for text in texts {
            let part = Part::parse(text).map_err(|e| format!("config.{name}: {e}"))?;
            if parts.iter().any(|(seen, _)| seen == text) {
                return Err(format!("config.{name}: {text:?} appears twice"));
            }
            parts.push((text.to_owned(), part));
        }
        Ok(Key { parts })
    }

    /// The parts, with their names.
    pub fn parts(&self) -> &[(String, Part)] {
        &self.parts
    }

    /// The payload fields the key reads.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().filter_map(|(_, part)| match part {
            Part::Field(path) => Some(path),
            _ => None,
        })
    }

    /// The key's values for an event: strings, numbers or bools. `payload`
    /// is what the stage's [`Selection`] read (anything, when the key reads
    /// no field).
    pub fn values(&self, event: &Event, payload: &Value) -> Result<Vec<Value>, Error> {
        self.parts.iter().map(|(_, part)| part.value(event, payload)).collect()
    }

    /// The key as text: a single string value as it is, anything else as
    /// JSON (a number `7`, a list `["p-1","s-2"]` for several parts).
    pub fn text(values: &[Value]) -> String {
        match values {
            [Value::String(text)] => text.clone(),
            [value] => value.to_string(),
            values => Value::Array(values.to_vec()).to_string(),
        }
    }
}

impl Part {
    /// Parses one part of a key.
    pub fn parse(text: &str) -> Result<Part, String> {
        if let Some(name) = text.strip_prefix("header:") {
            if name.is_empty() {
                return Err(format!("{text:?} names no header"));
            }
            return Ok(Part::Header(name.to_owned()));
        }
        if text == "subject" {
            return Ok(Part::Subject);
        }
        if let Some(n) = text.strip_prefix("subject:") {
            return match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Part::SubjectToken(n)),
                _ => Err(format!("{text:?}: subject tokens count from 1 (\"subject:3\")")),
            };
        }
        Path::parse(text).map(Part::Field)
    }

    fn value(&self, event: &Event, payload: &Value) -> Result<Value, Error> {
        match self {
            Part::Field(path) => match path.get(payload) {
                None | Some(Value::Null) => Err(Error::invalid(format!("payload has no field {:?} (the key)", path.as_str()))),
                Some(Value::String(s)) if s.is_empty() => Err(Error::invalid(format!("field {:?} (the key) is an empty string", path.as_str()))),
                Some(Value::Array(_) | Value::Object(_)) => {
                    Err(Error::invalid(format!("field {:?} (the key) is an object or a list, not a string, number or bool", path.as_str())))
                }
                Some(value) => Ok(value.clone()),
            },
            Part::Header(name) => match event.header(name) {
                Some(value) if !value.is_empty() => Ok(Value::String(value.to_owned())),
                _ => Err(Error::invalid(format!("event has no header {name:?} (the key)"))),
            },
            Part::Subject => Ok(Value::String(event.subject.clone())),
            Part::SubjectToken(n) => match event.subject.split('.').nth(n - 1) {
                Some(token) if !token.is_empty() => Ok(Value::String(token.to_owned())),
                _ => Err(Error::invalid(format!("subject {:?} has no token {n} (the key)", event.subject))),
            },
        }
    }
}

/// The stage's config as a table whose keys are all among `keys`: what
/// each stage's `init` reads its settings from.
pub fn config_table<'a>(config: &'a Config, keys: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let Value::Object(table) = config.value() else {
        return Err(format!("config: expected a table, found {}", config.value()));
    };
    if let Some(unknown) = table.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(format!("config.{unknown}: unknown key; valid: {}", keys.join(", ")));
    }
    Ok(table)
}

/// Parses a duration such as `"500ms"`, `"10s"`, `"5m"`, `"1h"` or `"1d"`
/// into milliseconds, for `config.<name>`. Zero is allowed only when
/// `allow_zero`.
pub fn duration(value: Option<&Value>, name: &str, allow_zero: bool) -> Result<u64, String> {
    let example = "(e.g. \"500ms\", \"10s\", \"5m\", \"1h\", \"1d\")";
    let text = match value {
        Some(Value::String(text)) => text.trim(),
        None | Some(Value::Null) => return Err(format!("config.{name} is required: a duration {example}")),
        Some(other) => return Err(format!("config.{name}: expected a duration string {example}, found {other}")),
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("config.{name}: {text:?} is not a duration {example}")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("config.{name}: {text:?} is not a duration {example}"))?;
    let ms = n
        .checked_mul(scale)
        .filter(|&ms| ms <= MAX_DURATION)
        .ok_or_else(|| format!("config.{name}: {text:?} is longer than 365 days"))?;
    if ms == 0 && !allow_zero {
        return Err(format!("config.{name}: must be longer than zero"));
    }
    Ok(ms)
}

/// Where an event's time comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Clock {
    /// A payload field: milliseconds since the epoch, or an RFC 3339 string.
    Field(Path),
    /// The time the event is processed (the stage needs the clock grant).
    Processing,
}

impl Clock {
    /// Parses `config.time` (absent: processing time). `stage` names the
    /// stage in the message that asks for the clock grant: a stage without
    /// it reads the clock as zero, and would put every event at 1970.
    pub fn from_config(value: Option<&Value>, stage: &str) -> Result<Clock, String> {
        match value {
            None | Some(Value::Null) => {
                if now_ms() == 0 {
                    return Err(format!(
                        "config.time is not set, so {stage} uses the time each event is processed, but the stage's clock reads zero: \
                         grant it with `grants = {{ clock = true }}` on the stage, or set `time` to a payload field with the event's time"
                    ));
                }
                Ok(Clock::Processing)
            }
            Some(Value::String(text)) => Path::parse(text).map(Clock::Field).map_err(|e| format!("config.time: {e}")),
            Some(other) => Err(format!("config.time: expected a field path, found {other}")),
        }
    }

    /// The payload field it reads, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Clock::Field(path) => Some(path),
            Clock::Processing => None,
        }
    }

    /// The event's time in ms since the epoch, at most [`MAX_TIME`].
    pub fn time(&self, payload: &Value) -> Result<u64, Error> {
        let path = match self {
            Clock::Processing => return Ok(now_ms().min(MAX_TIME)),
            Clock::Field(path) => path,
        };
        let field = path.as_str();
        let bad = |what: String| Error::invalid(format!("field {field:?} (the event time) {what}"));
        let ms = match path.get(payload) {
            None | Some(Value::Null) => return Err(Error::invalid(format!("payload has no field {field:?} (the event time)"))),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(ms), _) => ms,
                (None, Some(f)) if f.is_finite() && f >= 0.0 && f <= MAX_TIME as f64 => f as u64,
                _ => return Err(bad(format!("is {n}, not milliseconds since 1970 (a whole number from 0 to {MAX_TIME})"))),
            },
            Some(Value::String(text)) => rfc3339_ms(text).map_err(|e| bad(format!("is {text:?}, not an RFC 3339 time or milliseconds since 1970: {e}")))?,
            Some(other) => return Err(bad(format!("is {other}, not milliseconds since 1970 or an RFC 3339 string"))),
        };
        if ms > MAX_TIME {
            return Err(bad(format!("is {ms}, too far in the future (the latest time accepted is {MAX_TIME})")));
        }
        Ok(ms)
    }
}

/// Milliseconds since the epoch of an RFC 3339 date-time, from 1970 on.
fn rfc3339_ms(text: &str) -> Result<u64, String> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| e.to_string())?;
    u64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).map_err(|_| "it is before 1970".to_owned())
}

/// The wall clock in ms since the epoch; 0 in a stage without the clock
/// grant.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The payload fields a stage reads, read once per event: nothing is
/// parsed when it reads none (a key of headers, processing time).
#[derive(Debug, Clone)]
pub struct Fields {
    selection: Option<Selection>,
}

impl Fields {
    /// Reads `paths`.
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p Path>) -> Fields {
        let paths: Vec<&Path> = paths.into_iter().collect();
        Fields { selection: (!paths.is_empty()).then(|| Selection::new(paths)) }
    }

    /// The selected fields of the event's payload (`null` when none are).
    pub fn read(&self, event: &Event) -> Result<Value, Error> {
        match &self.selection {
            Some(selection) => selection.parse(&event.payload),
            None => Ok(Value::Null),
        }
    }
}

/// Checks a subject without placeholders: non-empty tokens, no wildcards,
/// no whitespace.
pub fn check_subject(subject: &str, name: &str) -> Result<(), String> {
    if subject.is_empty() || subject.split('.').any(|token| token.is_empty() || token.chars().any(not_in_token)) {
        return Err(format!(
            "config.{name}: {subject:?} is not a valid subject (non-empty tokens separated by '.', without whitespace, '*' or '>')"
        ));
    }
    Ok(())
}

/// Whether NATS forbids `c` inside one subject token.
pub fn not_in_token(c: char) -> bool {
    matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control()
}

/// A value as one subject token: strings as they are, numbers and bools as
/// JSON writes them, with characters a token cannot hold replaced by `_`.
pub fn token(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let token: String = text.chars().map(|c| if not_in_token(c) { '_' } else { c }).collect();
    if token.is_empty() { "_".to_owned() } else { token }
}

#[cfg(test)]
mod tests {
    use weir_sdk::serde_json::json;
    use weir_sdk::{Event, Path};

    use super::{Clock, Key, Part, duration, token};

    #[test]
    fn durations() {
        let d = |text: &str| duration(Some(&json!(text)), "ttl", false);
        assert_eq!(d("500ms"), Ok(500));
        assert_eq!(d("10s"), Ok(10_000));
        assert_eq!(d("5m"), Ok(300_000));
        assert_eq!(d("1h"), Ok(3_600_000));
        assert_eq!(d("1d"), Ok(86_400_000));
        assert_eq!(d("0s"), Err("config.ttl: must be longer than zero".into()));
        assert_eq!(duration(Some(&json!("0s")), "lateness", true), Ok(0));
        assert!(d("10x").unwrap_err().starts_with(r#"config.ttl: "10x" is not a duration (e.g. "500ms""#));
        assert!(d("m").is_err() && d("").is_err() && d("-1s").is_err());
        assert_eq!(d("366d"), Err(r#"config.ttl: "366d" is longer than 365 days"#.into()));
        assert_eq!(
            d("99999999999999999999d"),
            Err(r#"config.ttl: "99999999999999999999d" is not a duration (e.g. "500ms", "10s", "5m", "1h", "1d")"#.into())
        );
        assert_eq!(
            duration(None, "ttl", false),
            Err(r#"config.ttl is required: a duration (e.g. "500ms", "10s", "5m", "1h", "1d")"#.into())
        );
        assert!(duration(Some(&json!(10)), "ttl", false).unwrap_err().contains("found 10"));
    }

    #[test]
    fn keys_read_fields_headers_and_subjects() {
        let key = Key::from_config(Some(&json!(["user.id", "header:shop", "subject:3", "subject"])), "key").unwrap();
        assert_eq!(key.paths().map(Path::as_str).collect::<Vec<_>>(), ["user.id"]);
        let event = Event::new("tracking.product.view", "").with_header("shop", "s-1");
        let values = key.values(&event, &json!({ "user": { "id": 7 } })).unwrap();
        assert_eq!(values, [json!(7), json!("s-1"), json!("view"), json!("tracking.product.view")]);
        assert_eq!(Key::text(&values), r#"[7,"s-1","view","tracking.product.view"]"#);
        assert_eq!(Key::text(&[json!("abc")]), "abc");
        assert_eq!(Key::text(&[json!(7)]), "7");

        let message = |payload| key.values(&event, &payload).unwrap_err().message().to_owned();
        assert_eq!(message(json!({})), r#"payload has no field "user.id" (the key)"#);
        assert_eq!(message(json!({ "user": { "id": "" } })), r#"field "user.id" (the key) is an empty string"#);
        assert!(message(json!({ "user": { "id": [1] } })).contains("is an object or a list"));
        let no_header = key.values(&Event::new("a.b.c", ""), &json!({ "user": { "id": 1 } })).unwrap_err();
        assert_eq!(no_header.message(), r#"event has no header "shop" (the key)"#);
        let short = key
            .values(&Event::new("a.b", "").with_header("shop", "x"), &json!({ "user": { "id": 1 } }))
            .unwrap_err();
        assert_eq!(short.message(), r#"subject "a.b" has no token 3 (the key)"#);
    }

    #[test]
    fn key_config_errors() {
        let error = |value| Key::from_config(Some(&value), "key").unwrap_err();
        assert!(Key::from_config(None, "key").unwrap_err().starts_with("config.key is required"));
        assert_eq!(error(json!([])), "config.key: expected a string or a non-empty list of strings, found []");
        assert_eq!(error(json!(["a", 1])), "config.key[1]: expected a string, found 1");
        assert_eq!(error(json!("a..b")), r#"config.key: path "a..b" has an empty segment"#);
        assert_eq!(error(json!("header:")), r#"config.key: "header:" names no header"#);
        assert_eq!(error(json!("subject:0")), r#"config.key: "subject:0": subject tokens count from 1 ("subject:3")"#);
        assert_eq!(error(json!(["a", "a"])), r#"config.key: "a" appears twice"#);
        assert_eq!(Part::parse("subject:2"), Ok(Part::SubjectToken(2)));
    }

    #[test]
    fn event_times_are_milliseconds_or_rfc3339() {
        let clock = Clock::from_config(Some(&json!("ts")), "test").unwrap();
        assert_eq!(clock.time(&json!({ "ts": 1_764_147_600_000_u64 })), Ok(1_764_147_600_000));
        assert_eq!(clock.time(&json!({ "ts": 1500.7 })), Ok(1500));
        assert_eq!(clock.time(&json!({ "ts": "2025-11-26T09:00:00.250Z" })), Ok(1_764_147_600_250));
        assert_eq!(clock.time(&json!({ "ts": "2025-11-26T10:00:00+01:00" })), Ok(1_764_147_600_000));
        let message = |payload| clock.time(&payload).unwrap_err().message().to_owned();
        assert_eq!(message(json!({})), r#"payload has no field "ts" (the event time)"#);
        assert!(message(json!({ "ts": "yesterday" })).starts_with(r#"field "ts" (the event time) is "yesterday", not an RFC 3339 time"#));
        assert!(message(json!({ "ts": -5 })).contains("is -5, not milliseconds"));
        assert!(message(json!({ "ts": 1e300 })).contains("not milliseconds"));
        assert_eq!(clock.time(&json!({ "ts": super::MAX_TIME })), Ok(super::MAX_TIME));
        assert!(message(json!({ "ts": super::MAX_TIME + 1 })).contains("too far in the future"));
        assert!(message(json!({ "ts": "1969-12-31T23:59:59Z" })).contains("before 1970"));
        assert!(message(json!({ "ts": true })).contains("is true"));
        // Natively the clock runs, so processing time is accepted.
        assert_eq!(Clock::from_config(None, "test"), Ok(Clock::Processing));
        assert!(Clock::Processing.time(&json!(null)).unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn tokens_are_sanitised() {
        assert_eq!(token(&json!("view")), "view");
        assert_eq!(token(&json!("a.b c*>")), "a_b_c__");
        assert_eq!(token(&json!(7)), "7");
        assert_eq!(token(&json!("")), "_");
    }
}
