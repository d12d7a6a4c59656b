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
        let mut object: Map<String, Value> = event.json()?;
        object.insert(self.0.field.clone(), self.0.value.clone());
        let payload = weir_sdk::serde_json::to_vec(&object).map_err(|e| Error::invalid(e.to_string()))?;
        Ok(event.with_payload(payload).into())
    }
}

weir_sdk::export_stage!(Stamp);

#[cfg(test)]
mod tests {
    use weir_sdk::{Event, testing};

    use super::Stamp;

    const CONFIG: &str = r#"{"field": "team", "value": "growth"}"#;

    #[test]
    fn sets_the_field() {
        let out = testing::run_one::<Stamp>(CONFIG, Event::new("shop.views", r#"{"product": 7}"#)).unwrap();
        let payload: weir_sdk::serde_json::Value = out[0].json().unwrap();
        assert_eq!(payload, weir_sdk::serde_json::json!({"product": 7, "team": "growth"}));
    }

    #[test]
    fn refuses_what_is_not_a_json_object() {
        let error = testing::run_one::<Stamp>(CONFIG, Event::new("shop.views", "[1, 2]")).unwrap_err();
        assert_eq!(error.message(), "payload does not match the expected shape: invalid type: sequence, expected a map at line 1 column 0");
    }

    #[test]
    fn refuses_a_config_without_a_field() {
        assert!(testing::init::<Stamp>(r#"{"value": 1}"#).is_err());
    }
}
