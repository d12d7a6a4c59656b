use serde::Deserialize;
use serde_json::Value;

/// A stage's configuration: the `config` table of its `[[stages]]` entry in
/// the pipeline TOML, as JSON.
///
/// ```toml
/// [[stages]]
/// name = "expensive"
/// plugin = "../plugins/expensive.wasm"
/// config = { min_price = 10, currency = "EUR" }
/// ```
///
/// Read it into a type with [`Config::parse`], or look at the raw JSON with
/// [`Config::value`].
///
/// ```
/// use serde::Deserialize;
/// use weir_sdk::Config;
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Settings { min_price: f64, currency: String }
///
/// let config = Config::from_json(r#"{"min_price": 10, "currency": "EUR"}"#).unwrap();
/// let settings: Settings = config.parse().unwrap();
/// assert_eq!(settings.currency, "EUR");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    value: Value,
}

impl Config {
    /// Parses a configuration from JSON text, as weir passes it.
    ///
    /// ```
    /// let config = weir_sdk::Config::from_json(r#"{"min_price": 10}"#).unwrap();
    /// assert_eq!(config.value()["min_price"], 10);
    ///
    /// let error = weir_sdk::Config::from_json("{").unwrap_err();
    /// assert!(error.starts_with("config is not valid JSON: "));
    /// ```
    pub fn from_json(json: &str) -> Result<Config, String> {
        serde_json::from_str(json)
            .map(|value| Config { value })
            .map_err(|e| format!("config is not valid JSON: {e}"))
    }

    /// An empty configuration (`{}`), what a stage without a `config` table
    /// receives.
    ///
    /// ```
    /// let config = weir_sdk::Config::empty();
    /// assert!(config.is_empty());
    /// ```
    pub fn empty() -> Config {
        Config { value: Value::Object(serde_json::Map::new()) }
    }

    /// Whether the configuration is an empty table (or JSON `null`).
    ///
    /// ```
    /// assert!(weir_sdk::Config::from_json("{}").unwrap().is_empty());
    /// assert!(!weir_sdk::Config::from_json(r#"{"a": 1}"#).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        match &self.value {
            Value::Object(map) => map.is_empty(),
            Value::Null => true,
            _ => false,
        }
    }

    /// The configuration as JSON.
    ///
    /// ```
    /// let config = weir_sdk::Config::from_json(r#"{"labels": ["a", "b"]}"#).unwrap();
    /// assert_eq!(config.value()["labels"][1], "b");
    /// assert!(config.value()["missing"].is_null());
    /// ```
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Takes the JSON out of the configuration.
    ///
    /// ```
    /// let value = weir_sdk::Config::from_json(r#"{"a": 1}"#).unwrap().into_value();
    /// assert!(value.is_object());
    /// ```
    pub fn into_value(self) -> Value {
        self.value
    }

    /// Reads the configuration into a type.
    ///
    /// An error names the offending key by its path from the `config` table,
    /// so the message can go straight back to `init`'s caller: with
    /// `#[serde(deny_unknown_fields)]` an unknown key is an error too.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use weir_sdk::Config;
    ///
    /// #[derive(Debug, Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Settings { limits: Limits }
    /// #[derive(Debug, Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Limits { max: u32 }
    ///
    /// let config = Config::from_json(r#"{"limits": {"max": "ten"}}"#).unwrap();
    /// assert_eq!(
    ///     config.parse::<Settings>().unwrap_err(),
    ///     r#"config.limits.max: invalid type: string "ten", expected u32"#,
    /// );
    ///
    /// let config = Config::from_json(r#"{"limits": {"maxx": 1}}"#).unwrap();
    /// assert_eq!(
    ///     config.parse::<Settings>().unwrap_err(),
    ///     "config.limits.maxx: unknown field `maxx`, expected `max`",
    /// );
    /// ```
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, String> {
        serde_path_to_error::deserialize(&self.value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." { format!("config: {inner}") } else { format!("config.{path}: {inner}") }
        })
    }
}

impl Default for Config {
    /// The same as [`Config::empty`].
    fn default() -> Config {
        Config::empty()
    }
}

/// Wraps a JSON value, handy in tests.
///
/// ```
/// let config = weir_sdk::Config::from(weir_sdk::serde_json::json!({ "field": "price" }));
/// assert_eq!(config.value()["field"], "price");
/// ```
impl From<Value> for Config {
    fn from(value: Value) -> Config {
        Config { value }
    }
}
