//! `router`: sets each event's subject from a template over its JSON fields.
//!
//! ```toml
//! [[stages]]
//! name = "route"
//! plugin = "../plugins/router.wasm"
//! config = { subject = "orders.{country}.{type}", default = "unknown" }
//! ```
//!
//! - `subject` (required): the new subject. `{path}` is replaced by the value
//!   of the payload field at the dotted `path` (`{user.country}`,
//!   `{items.0.sku}`). Braces cannot appear literally.
//! - `default` (optional): the token used when a field is missing, `null` or
//!   an empty string. Without it such an event is refused as invalid.
//!
//! Strings are used as they are, numbers and bools as written in JSON. Any
//! character that NATS does not allow inside a subject token (`.`,
//! whitespace, `*`, `>`, control characters) becomes `_`, so that one field
//! always fills exactly one token. An object or array field is refused as
//! invalid, and so is a payload that is not JSON.
//!
//! Only the fields the template names are read out of each payload (see
//! [`weir_sdk::Selection`]); the rest is checked for JSON syntax and
//! skipped.

use serde::Deserialize;
use weir_sdk::serde_json::Value;
use weir_sdk::{Config, Error, Event, Output, Path, Selection, Stage};

/// The stage: the parsed template.
pub struct Router {
    parts: Vec<Part>,
    default: Option<String>,
    fields: Selection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    subject: String,
    default: Option<String>,
}

/// A piece of the subject template.
enum Part {
    Text(String),
    Field(Path),
}

impl Stage for Router {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if let Some(default) = &settings.default
            && (default.is_empty() || default.chars().any(not_in_token))
        {
            return Err(format!(
                "config.default: {default:?} is not a single subject token \
                 (it must be non-empty, without '.', whitespace, '*' or '>')"
            ));
        }
        let parts = parse_template(&settings.subject).map_err(|e| format!("config.subject: {e}"))?;
        let fields = Selection::new(parts.iter().filter_map(|part| match part {
            Part::Field(path) => Some(path),
            Part::Text(_) => None,
        }));
        Ok(Router { parts, default: settings.default, fields })
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        let subject = self.subject_for(&self.fields.parse(&event.payload)?)?;
        Ok(Output::One(event.with_subject(subject)))
    }
}

weir_sdk::export_stage!(Router);

impl Router {
    /// The subject for a payload.
    pub fn subject_for(&self, payload: &Value) -> Result<String, Error> {
        let mut subject = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => subject.push_str(text),
                Part::Field(path) => self.push_token(&mut subject, path, path.get(payload))?,
            }
        }
        Ok(subject)
    }

    fn push_token(&self, subject: &mut String, path: &Path, value: Option<&Value>) -> Result<(), Error> {
        let problem = match value {
            Some(Value::String(s)) if !s.is_empty() => {
                push_sanitised(subject, s);
                return Ok(());
            }
            Some(Value::Number(n)) => {
                push_sanitised(subject, &n.to_string());
                return Ok(());
            }
            Some(Value::Bool(b)) => {
                subject.push_str(if *b { "true" } else { "false" });
                return Ok(());
            }
            Some(Value::Array(_) | Value::Object(_)) => {
                return Err(Error::invalid(format!("field {:?} is an object or a list, not a string, number or bool", path.as_str())));
            }
            Some(Value::String(_)) => "is empty",
            Some(Value::Null) => "is null",
            None => "is missing",
        };
        let Some(default) = &self.default else {
            return Err(Error::invalid(format!("field {:?} {problem} and no default is configured", path.as_str())));
        };
        subject.push_str(default);
        Ok(())
    }
}

/// Splits `orders.{country}.x` into text and field parts.
fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    if template.is_empty() {
        return Err("the template is empty".into());
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("unbalanced '}}' in {template:?}"));
        }
        let after = &rest[open + 1..];
        let close = after.find(['{', '}']).filter(|&i| after[i..].starts_with('}'));
        let Some(close) = close else {
            return Err(format!("unbalanced '{{' in {template:?}"));
        };
        let field = after[..close].trim();
        if field.is_empty() {
            return Err(format!("empty placeholder '{{}}' in {template:?}"));
        }
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        parts.push(Part::Field(Path::parse(field)?));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// Whether NATS forbids `c` inside one subject token.
fn not_in_token(c: char) -> bool {
    matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control()
}

fn push_sanitised(subject: &mut String, value: &str) {
    subject.extend(value.chars().map(|c| if not_in_token(c) { '_' } else { c }));
}

#[cfg(test)]
mod tests {
    use weir_sdk::{Event, testing};

    use super::Router;

    const CONFIG: &str = r#"{"subject": "orders.{country}.{type}", "default": "unknown"}"#;

    fn route(config: &str, payload: &str) -> Result<String, weir_sdk::Error> {
        let out = testing::run_one::<Router>(config, Event::new("in", payload).with_header("h", "v"))?;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].header("h"), Some("v"), "headers are kept");
        assert_eq!(out[0].payload, payload.as_bytes(), "the payload is kept");
        Ok(out[0].subject.clone())
    }

    fn init_error(config: &str) -> String {
        testing::init::<Router>(config).err().expect("init should fail")
    }

    #[test]
    fn fills_the_template_from_fields() {
        assert_eq!(route(CONFIG, r#"{"country": "DE", "type": "created"}"#).unwrap(), "orders.DE.created");
        let config = r#"{"subject": "users.{user.tier}.{items.0.qty}.{vip}"}"#;
        let payload = r#"{"user": {"tier": "gold"}, "items": [{"qty": 3}], "vip": false}"#;
        assert_eq!(route(config, payload).unwrap(), "users.gold.3.false");
    }

    #[test]
    fn missing_null_or_empty_fields_take_the_default() {
        assert_eq!(route(CONFIG, r#"{"type": "created"}"#).unwrap(), "orders.unknown.created");
        assert_eq!(route(CONFIG, r#"{"country": null, "type": ""}"#).unwrap(), "orders.unknown.unknown");
    }

    #[test]
    fn without_a_default_a_missing_field_is_invalid() {
        let config = r#"{"subject": "orders.{country}"}"#;
        let error = route(config, "{}").unwrap_err();
        assert!(error.is_invalid());
        assert_eq!(error.message(), r#"field "country" is missing and no default is configured"#);
        let error = route(config, r#"{"country": null}"#).unwrap_err();
        assert_eq!(error.message(), r#"field "country" is null and no default is configured"#);
    }

    #[test]
    fn values_cannot_add_tokens_or_wildcards() {
        let config = r#"{"subject": "x.{v}"}"#;
        assert_eq!(route(config, r#"{"v": "a.b c*>\u0001"}"#).unwrap(), "x.a_b_c___");
        assert_eq!(route(config, r#"{"v": 1.5}"#).unwrap(), "x.1_5");
        assert_eq!(route(config, r#"{"v": "Zürich"}"#).unwrap(), "x.Zürich");
    }

    #[test]
    fn bad_payloads_are_invalid() {
        let error = route(CONFIG, r#"{"country": {"code": "DE"}}"#).unwrap_err();
        assert_eq!(error.message(), r#"field "country" is an object or a list, not a string, number or bool"#);
        let error = route(CONFIG, "not json").unwrap_err();
        assert!(error.message().starts_with("payload is not valid JSON: "), "{error}");
    }

    #[test]
    fn bad_config_fails_init() {
        assert_eq!(init_error(r#"{"subject": "orders.{country"}"#), r#"config.subject: unbalanced '{' in "orders.{country""#);
        assert_eq!(init_error(r#"{"subject": "orders.{a{b}}"}"#), r#"config.subject: unbalanced '{' in "orders.{a{b}}""#);
        assert_eq!(init_error(r#"{"subject": "orders.country}"}"#), r#"config.subject: unbalanced '}' in "orders.country}""#);
        assert_eq!(init_error(r#"{"subject": "orders.{}"}"#), r#"config.subject: empty placeholder '{}' in "orders.{}""#);
        assert_eq!(init_error(r#"{"subject": "a.{b..c}"}"#), r#"config.subject: path "b..c" has an empty segment"#);
        assert_eq!(init_error(r#"{"subject": ""}"#), "config.subject: the template is empty");
        assert_eq!(init_error("{}"), "config: missing field `subject`");
        assert!(init_error(r#"{"subject": "a", "defualt": "x"}"#).starts_with("config.defualt: unknown field `defualt`"));
        assert!(init_error(r#"{"subject": "a.{b}", "default": "a.b"}"#).starts_with(r#"config.default: "a.b" is not a single subject token"#));
    }
}
