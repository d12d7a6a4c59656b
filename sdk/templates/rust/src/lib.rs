//! `{{name}}`: a weir stage. It sets one field of every JSON event to the
//! value its config names, and refuses events that are not JSON objects.
//!
//! Build it with `weir build`, test it natively with `cargo test`, and run it
//! over the sample events with `weir exec pipeline.toml --input events.jsonl`.

use serde::Deserialize;
use weir_sdk::serde_json::{Map, Value};
use weir_sdk::{Config, Error, Event, Output, Stage};

/// The stage's `config` table in the pipeline TOML.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The field to set.
    field: String,
    /// Its value: any TOML value.
    value: Value,
}

/// The stage. weir makes one per worker and keeps it across events.
pub struct Stamp(Settings);

impl Stage for Stamp {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Stamp(config.parse()?))
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        // Not JSON at all: `?` makes it a dead letter with the parser's reason.
        let mut object: Map<String, Value> = match event.json()? {
            Value::Object(object) => object,
            other => return Err(Error::invalid(format!("payload is a JSON {}, not an object", kind(&other)))),
        };
        object.insert(self.0.field.clone(), self.0.value.clone());
        let payload = weir_sdk::serde_json::to_vec(&object).map_err(|e| Error::invalid(e.to_string()))?;
        Ok(event.with_payload(payload).into())
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

weir_sdk::export_stage!(Stamp);

#[cfg(test)]
mod tests {
    use weir_sdk::{Event, testing};

    use super::Stamp;

    const CONFIG: &str = r#"{"field": "team", "value": "web"}"#;

    #[test]
    fn sets_the_field() {
        let out = testing::run_one::<Stamp>(CONFIG, Event::new("{{name}}.in", r#"{"product": 7}"#)).unwrap();
        let payload: weir_sdk::serde_json::Value = out[0].json().unwrap();
        assert_eq!(payload, weir_sdk::serde_json::json!({"product": 7, "team": "web"}));
    }

    #[test]
    fn refuses_what_is_not_a_json_object() {
        let error = testing::run_one::<Stamp>(CONFIG, Event::new("{{name}}.in", "[1, 2]")).unwrap_err();
        assert_eq!(error.message(), "payload is a JSON array, not an object");
    }

    #[test]
    fn refuses_a_config_without_a_field() {
        assert!(testing::init::<Stamp>(r#"{"value": 1}"#).is_err());
    }
}
