//! A stage's `config` table as JSON (what `init` receives), and TOML datetimes as RFC 3339.
//!
//! The conversion is a serde visitor rather than a walk over `toml::Value` so that a value
//! JSON cannot hold (a NaN) is reported by the `toml` crate at that value's span.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Expected, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::{Map, Number, Value};
use toml::value::Datetime;

use super::error::InvalidValue;

/// The key under which the `toml` crate hands a datetime to serde, as a one-entry map.
/// It is part of the `toml_datetime` serde protocol, not of weir.
pub(crate) const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

/// Formats a TOML datetime as RFC 3339 (or its date / time part when the value has no
/// offset). TOML 1.1 allows omitting seconds; RFC 3339 does not, so they are always written.
pub(crate) fn rfc3339(datetime: &Datetime) -> String {
    let mut out = String::new();
    if let Some(date) = &datetime.date {
        out.push_str(&format!("{:04}-{:02}-{:02}", date.year, date.month, date.day));
    }
    if let Some(time) = &datetime.time {
        if datetime.date.is_some() {
            out.push('T');
        }
        out.push_str(&format!("{:02}:{:02}:{:02}", time.hour, time.minute, time.second.unwrap_or(0)));
        if let Some(nanos) = time.nanosecond {
            let digits = format!("{nanos:09}");
            let digits = digits.trim_end_matches('0');
            if !digits.is_empty() {
                out.push('.');
                out.push_str(digits);
            }
        }
    }
    if let Some(offset) = &datetime.offset {
        out.push_str(&offset.to_string());
    }
    out
}

/// Validates an instant: a full RFC 3339 timestamp with a UTC offset, from a TOML datetime
/// or a string. A local time would mean different instants on different machines.
pub(crate) fn instant(text: &str) -> Result<String, InvalidValue> {
    let help = "write an RFC 3339 timestamp with a UTC offset, like 2024-05-01T00:00:00Z";
    let datetime = Datetime::from_str(text.trim()).map_err(|_| InvalidValue::new(format!("invalid timestamp {text:?}")).with_help(help))?;
    if datetime.date.is_none() || datetime.time.is_none() {
        return Err(InvalidValue::new(format!("timestamp {text:?} needs a date and a time")).with_help(help));
    }
    if datetime.offset.is_none() {
        return Err(InvalidValue::new(format!("timestamp {text:?} has no UTC offset, so it means a different instant on each machine")).with_help(help));
    }
    Ok(rfc3339(&datetime))
}

/// A TOML value converted to JSON.
pub(crate) struct JsonValue(pub(crate) Value);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor).map(JsonValue)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            InvalidValue::new(format!("{v} cannot be passed to a stage"))
                .with_help("the config table is handed to the stage as JSON, which has no nan or inf")
                .into_de()
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(JsonValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        table_or_datetime(map, None)
    }
}

/// Reads a TOML table, or a datetime (which serde sees as a one-entry map), into JSON.
/// `table_only` is the visitor to blame when a datetime is not wanted.
fn table_or_datetime<'de, A: MapAccess<'de>>(mut map: A, table_only: Option<&dyn Expected>) -> Result<Value, A::Error> {
    let mut object = Map::new();
    while let Some(key) = map.next_key::<String>()? {
        if key == TOML_DATETIME_KEY {
            let text: String = map.next_value()?;
            if let Some(expected) = table_only {
                return Err(de::Error::invalid_type(Unexpected::Other("datetime"), expected));
            }
            let datetime = Datetime::from_str(&text).map_err(de::Error::custom)?;
            return Ok(Value::String(rfc3339(&datetime)));
        }
        let JsonValue(value) = map.next_value()?;
        object.insert(key, value);
    }
    Ok(Value::Object(object))
}

/// A stage's `config` table as a JSON object.
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Map<String, Value>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                match table_or_datetime(map, Some(&self))? {
                    Value::Object(object) => Ok(object),
                    _ => Err(de::Error::invalid_type(Unexpected::Other("datetime"), &self)),
                }
            }
        }
        deserializer.deserialize_map(ObjectVisitor).map(JsonObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(instant("2024-05-01T00:00:00Z").ok().as_deref(), Some("2024-05-01T00:00:00Z"));
        assert_eq!(instant("2024-05-01 10:30:00+02:00").ok().as_deref(), Some("2024-05-01T10:30:00+02:00"));
        assert_eq!(instant("2024-05-01T10:30Z").ok().as_deref(), Some("2024-05-01T10:30:00Z"));
        assert_eq!(instant("2024-05-01T10:30:00.5Z").ok().as_deref(), Some("2024-05-01T10:30:00.5Z"));
        assert!(instant("2024-05-01").is_err());
        assert!(instant("2024-05-01T00:00:00").is_err());
        assert!(instant("yesterday").is_err());
    }

    #[test]
    fn config_to_json() {
        #[derive(serde::Deserialize)]
        struct Doc {
            config: JsonObject,
        }
        let doc: Doc = toml::from_str(
            "config = { model = \"m.onnx\", min = 0.5, n = 3, on = true, at = 2024-05-01T00:00:00Z, day = 2024-05-01, list = [1, \"a\"], nested = { x = 1 } }",
        )
        .expect("valid config");
        assert_eq!(
            Value::Object(doc.config.0),
            serde_json::json!({
                "model": "m.onnx", "min": 0.5, "n": 3, "on": true,
                "at": "2024-05-01T00:00:00Z", "day": "2024-05-01",
                "list": [1, "a"], "nested": { "x": 1 }
            })
        );
        assert!(toml::from_str::<Doc>("config = { x = nan }").is_err());
        assert!(toml::from_str::<Doc>("config = 5").is_err());
        assert!(toml::from_str::<Doc>("config = 2024-05-01").is_err());
    }
}
