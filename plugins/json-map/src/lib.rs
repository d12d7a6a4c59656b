//! `json-map`: edits the fields of JSON object payloads.
//!
//! ```toml
//! [[stages]]
//! name = "stamp"
//! plugin = "../plugins/json-map.wasm"
//! config = { remove = ["debug", "user.ip"], rename = { "old" = "new" },
//!            copy = { "meta.country" = "address.country" },
//!            set = { processed_by = "weir", version = 2 } }
//! ```
//!
//! All four are optional and run in this order:
//!
//! 1. `remove`: a list of paths to delete,
//! 2. `rename`: `{ "from" = "to" }`, moves a value,
//! 3. `copy`: `{ "to" = "from" }`, copies a value,
//! 4. `set`: `{ "path" = value }`, sets a value.
//!
//! Paths are dotted (`user.ip`, `items.0.sku`); writing creates the objects
//! on the way. Within one table, entries run in key order. A missing source
//! (for `remove`, `rename`, `copy`) is skipped. In TOML `a.b = 1` and
//! `"a.b" = 1` are the same: a nested table in these maps is read as dotted
//! paths to its leaves, so `set = { user.tier = "gold" }` sets one field and
//! keeps the rest of `user`.
//!
//! A payload that is not a JSON object, or a path that runs into a value
//! that is not an object, is refused as invalid.

use serde::Deserialize;
use weir_sdk::serde_json::{self, Map, Value};
use weir_sdk::{Config, Error, Event, Output, Path, Stage};

/// The edits, parsed once from the config.
#[derive(Debug, Default)]
pub struct Mapping {
    remove: Vec<Path>,
    /// (from, to)
    rename: Vec<(Path, Path)>,
    /// (to, from)
    copy: Vec<(Path, Path)>,
    set: Vec<(Path, Value)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    remove: Vec<Path>,
    #[serde(default)]
    rename: Map<String, Value>,
    #[serde(default)]
    copy: Map<String, Value>,
    #[serde(default)]
    set: Map<String, Value>,
}

impl Mapping {
    /// Parses the stage's configuration.
    pub fn from_config(config: &Config) -> Result<Mapping, String> {
        let settings: Settings = config.parse()?;
        let paths = |table: &str, map: Map<String, Value>| -> Result<Vec<(Path, Path)>, String> {
            leaves(map)
                .into_iter()
                .map(|(key, value)| match value {
                    Value::String(other) => Ok((parse(table, &key)?, parse(table, &other)?)),
                    other => Err(format!("config.{table}.{key}: expected a path string, found {other}")),
                })
                .collect()
        };
        Ok(Mapping {
            remove: settings.remove,
            rename: paths("rename", settings.rename)?,
            copy: paths("copy", settings.copy)?,
            set: leaves(settings.set)
                .into_iter()
                .map(|(key, value)| Ok((parse("set", &key)?, value)))
                .collect::<Result<_, String>>()?,
        })
    }

    /// Applies the edits to a JSON object.
    pub fn apply_to(&self, object: &mut Value) -> Result<(), Error> {
        for path in &self.remove {
            path.remove(object);
        }
        for (from, to) in &self.rename {
            if let Some(value) = from.remove(object) {
                to.set(object, value).map_err(Error::invalid)?;
            }
        }
        for (to, from) in &self.copy {
            if let Some(value) = from.get(object).cloned() {
                to.set(object, value).map_err(Error::invalid)?;
            }
        }
        for (path, value) in &self.set {
            path.set(object, value.clone()).map_err(Error::invalid)?;
        }
        Ok(())
    }
}

/// Parses a JSON object payload, applies the edits and writes it back: the
/// whole per-event work of the stage, public so that a native benchmark runs
/// exactly this code.
pub fn apply(mapping: &Mapping, payload: &[u8]) -> Result<Vec<u8>, Error> {
    let mut object: Value = serde_json::from_slice(payload)?;
    if !object.is_object() {
        return Err(Error::invalid("payload is not a JSON object"));
    }
    mapping.apply_to(&mut object)?;
    serde_json::to_vec(&object).map_err(|e| Error::invalid(format!("cannot write the payload: {e}")))
}

/// The stage.
pub struct JsonMap {
    mapping: Mapping,
}

impl Stage for JsonMap {
    fn init(config: Config) -> Result<Self, String> {
        Ok(JsonMap { mapping: Mapping::from_config(&config)? })
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        let payload = apply(&self.mapping, &event.payload)?;
        Ok(Output::One(event.with_payload(payload)))
    }
}

weir_sdk::export_stage!(JsonMap);

/// Flattens nested tables into dotted keys: `{a: {b: 1}}` → `[("a.b", 1)]`.
/// An empty table stays a value.
fn leaves(map: Map<String, Value>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (key, value) in map {
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.extend(leaves(inner).into_iter().map(|(k, v)| (format!("{key}.{k}"), v)));
            }
            value => out.push((key, value)),
        }
    }
    out
}

fn parse(table: &str, path: &str) -> Result<Path, String> {
    Path::parse(path).map_err(|e| format!("config.{table}: {e}"))
}

#[cfg(test)]
mod tests {
    use weir_sdk::serde_json::{self, Value, json};
    use weir_sdk::{Event, testing};

    use super::{JsonMap, Mapping, apply};

    fn mapping(config: Value) -> Mapping {
        Mapping::from_config(&config.into()).expect("valid config")
    }

    fn map(config: Value, payload: Value) -> Value {
        let out = apply(&mapping(config), payload.to_string().as_bytes()).expect("mapped");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn sets_fields_the_benchmark_way() {
        let config = json!({ "set": { "processed_by": "weir", "version": 2 } });
        let out = map(config, json!({ "id": 1, "version": 1 }));
        assert_eq!(out, json!({ "id": 1, "processed_by": "weir", "version": 2 }));
    }

    #[test]
    fn runs_remove_rename_copy_set_in_order() {
        let config = json!({
            "remove": ["debug", "user.ip"],
            "rename": { "old": "new" },
            "copy": { "meta.country": "address.country", "again": "new" },
            "set": { "new": "overwritten", "meta.source": "weir" },
        });
        let payload = json!({
            "debug": true, "old": 1,
            "user": { "id": 7, "ip": "10.0.0.1" },
            "address": { "country": "DE" },
        });
        let out = map(config, payload);
        assert_eq!(
            out,
            json!({
                "new": "overwritten", "again": 1,
                "user": { "id": 7 },
                "address": { "country": "DE" },
                "meta": { "country": "DE", "source": "weir" },
            })
        );
    }

    #[test]
    fn nested_tables_are_dotted_paths() {
        // TOML `set = { user.tier = "gold" }` arrives as nested JSON.
        let config = json!({ "set": { "user": { "tier": "gold" }, "empty": {} } });
        let out = map(config, json!({ "user": { "id": 7 } }));
        assert_eq!(out, json!({ "user": { "id": 7, "tier": "gold" }, "empty": {} }));
    }

    #[test]
    fn missing_sources_are_skipped() {
        let config = json!({ "remove": ["nope.x"], "rename": { "a": "b" }, "copy": { "c": "d.e" } });
        assert_eq!(map(config, json!({ "z": 0 })), json!({ "z": 0 }));
    }

    #[test]
    fn bad_payloads_are_invalid() {
        let m = mapping(json!({ "set": { "a.b": 1 } }));
        let message = |payload: &str| apply(&m, payload.as_bytes()).unwrap_err().message().to_owned();
        assert!(message("{oops").starts_with("payload is not valid JSON: "));
        assert_eq!(message("[1, 2]"), "payload is not a JSON object");
        assert_eq!(message(r#"{"a": 3}"#), r#"cannot set "a.b": "a" is a number, not an object"#);
    }

    #[test]
    fn the_stage_replaces_only_the_payload() {
        let config = r#"{"set": {"seen": true}}"#;
        let event = Event::new("orders", r#"{"id":1}"#).with_header("h", "v");
        let out = testing::run_one::<JsonMap>(config, event).unwrap();
        assert_eq!(out, [Event::new("orders", r#"{"id":1,"seen":true}"#).with_header("h", "v")]);
    }

    #[test]
    fn bad_config_fails_init() {
        let error = |config: &str| testing::init::<JsonMap>(config).err().expect("init should fail");
        assert!(error(r#"{"sett": {}}"#).starts_with("config.sett: unknown field `sett`"));
        assert_eq!(error(r#"{"rename": {"a": 1}}"#), "config.rename.a: expected a path string, found 1");
        assert_eq!(error(r#"{"remove": ["a..b"]}"#), r#"config.remove[0]: path "a..b" has an empty segment"#);
        assert_eq!(error(r#"{"copy": {"a": "b."}}"#), r#"config.copy: path "b." has an empty segment"#);
    }
}
