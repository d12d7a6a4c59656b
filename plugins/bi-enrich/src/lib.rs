//! `bi-enrich`: joins events with reference data for BI.
//!
//! ```toml
//! [[stages]]
//! name = "enrich"
//! plugin = "../plugins/bi-enrich.wasm"
//! grants = { kv = ["shops", "rates"] }
//! config = { reporting_currency = "EUR", on_missing = "mark" }
//! ```
//!
//! Every key is optional; the defaults are:
//!
//! ```toml
//! shops_bucket = "shops"          # KV: shop id -> {"name", "country", "commission_rate"}
//! rates_bucket = "rates"          # KV: currency -> {"rate": f64}, 1 unit = rate reporting units
//! reporting_currency = "EUR"      # needs no rate
//! on_missing = "mark"             # or "dead-letter"
//! agent_cache = 4096              # user agents remembered, per worker; 0: none
//! fields = { shop_id = "shop_id", price = "price", currency = "currency",
//!            ts = "ts", user_agent = "user_agent" }   # dotted paths allowed
//! ```
//!
//! The event payload is a JSON object; the stage adds
//!
//! ```json
//! { "shop": { "name": "Shop", "country": "DE", "commission_rate": 0.1 },
//!   "price_reporting": 11.5, "reporting_currency": "EUR", "commission": 1.15,
//!   "date": { "day": "2026-11-26", "iso_week": "2026-W48", "hour": 10, "weekday": "Thursday" },
//!   "device": { "class": "desktop", "browser": "Chrome" } }
//! ```
//!
//! Amounts are rounded to 2 decimals. Date dimensions are in UTC (see
//! [`dates`]); device classes come from the `woothee` parser (see [`agent`]).
//!
//! Parsing a user agent is most of an event's cost, and tracking traffic
//! repeats the same agents, so each worker keeps the classes of up to
//! `agent_cache` agents (an [`AgentCache`], a few hundred bytes of the
//! stage's memory per agent, at most 100000 agents). The cache changes
//! nothing in the output.
//!
//! Missing reference data (the shop is not in KV, or there is no rate for
//! the currency): with `on_missing = "mark"` the event passes with
//! `"enrichment_missing": ["shop", "rate"]` naming what was missing (and
//! without the fields that needed it: `shop` and `commission`, or
//! `price_reporting`, `reporting_currency` and `commission`); with
//! `"dead-letter"` it is refused as invalid with the reason. An event
//! without one of the five fields, or with a malformed one (a `shop_id`
//! that is not a string or integer, a `price` that is not a number, a `ts`
//! that is not RFC 3339), or a payload that is not a JSON object, is always
//! refused as invalid, naming the field. A KV value of the wrong shape is
//! refused as invalid too.

pub mod agent;
pub mod dates;

use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use weir_sdk::serde_json::{self, Map, Value};
use weir_sdk::{Config, Error, Event, Output, Path, Selection, Stage, append_members, kv};

pub use agent::AgentCache;
use agent::Device;
use dates::DateDims;

/// The most agents `agent_cache` may ask for: enough for any real mix of
/// agents, and some 30 MB at most, within the default 64 MiB memory limit.
pub const MAX_AGENT_CACHE: usize = 100_000;

/// What to do when reference data is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMissing {
    /// Pass the event on with `enrichment_missing`.
    #[default]
    Mark,
    /// Refuse the event as invalid (it goes to the dead-letter subject).
    DeadLetter,
}

/// Where the stage reads the event's fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fields {
    /// The shop id, looked up in `shops_bucket`.
    pub shop_id: Path,
    /// The price, a number in `currency`.
    pub price: Path,
    /// The currency of the price, looked up in `rates_bucket`.
    pub currency: Path,
    /// The event time, RFC 3339.
    pub ts: Path,
    /// The user agent string.
    pub user_agent: Path,
}

impl Default for Fields {
    fn default() -> Fields {
        let path = |name: &str| Path::parse(name).expect("a valid default path");
        Fields { shop_id: path("shop_id"), price: path("price"), currency: path("currency"), ts: path("ts"), user_agent: path("user_agent") }
    }
}

/// The stage's configuration, parsed once in `init`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// KV bucket of the shops.
    pub shops_bucket: String,
    /// KV bucket of the exchange rates.
    pub rates_bucket: String,
    /// The currency prices are converted to.
    pub reporting_currency: String,
    /// What to do when reference data is missing.
    pub on_missing: OnMissing,
    /// The event's field names.
    pub fields: Fields,
    /// How many user agents each worker remembers; 0 parses every one.
    pub agent_cache: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            shops_bucket: "shops".into(),
            rates_bucket: "rates".into(),
            reporting_currency: "EUR".into(),
            on_missing: OnMissing::Mark,
            fields: Fields::default(),
            agent_cache: 4096,
        }
    }
}

impl Settings {
    /// Parses and checks the stage's configuration.
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let settings: Settings = config.parse()?;
        for (key, value) in
            [("shops_bucket", &settings.shops_bucket), ("rates_bucket", &settings.rates_bucket), ("reporting_currency", &settings.reporting_currency)]
        {
            if value.trim().is_empty() {
                return Err(format!("config.{key}: must not be empty"));
            }
        }
        if settings.agent_cache > MAX_AGENT_CACHE {
            return Err(format!(
                "config.agent_cache: {} is too many user agents to cache, the most is {MAX_AGENT_CACHE} (0 turns the cache off)",
                settings.agent_cache
            ));
        }
        Ok(settings)
    }
}

/// A shop's reference data, the value in `shops_bucket`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Shop {
    /// Display name.
    pub name: String,
    /// Country code.
    pub country: String,
    /// Share of the price that is commission, e.g. 0.1.
    pub commission_rate: f64,
}

/// An exchange rate, the value in `rates_bucket`.
#[derive(Deserialize)]
struct Rate {
    rate: f64,
}

/// A KV lookup: `(bucket, key)` to the value, `Ok(None)` when there is no
/// such key, `Err` when the bucket cannot be read.
pub type Lookup<'a> = dyn Fn(&str, &str) -> Result<Option<Vec<u8>>, String> + 'a;

/// The stage: its settings and, since there is one instance per worker and
/// it runs one event at a time, its own user-agent cache.
#[derive(Debug)]
pub struct BiEnrich {
    settings: Settings,
    agents: AgentCache,
    /// What is read of each payload: the five fields, and the fields the
    /// stage adds (to know whether the payload has them already).
    read: Selection,
}

/// The top-level fields the stage adds, in key order.
const ADDED: [&str; 7] = ["commission", "date", "device", "enrichment_missing", "price_reporting", "reporting_currency", "shop"];

impl BiEnrich {
    /// A stage with `settings` and an empty cache.
    pub fn new(settings: Settings) -> BiEnrich {
        let agents = AgentCache::new(settings.agent_cache);
        let f = &settings.fields;
        let added: Vec<Path> = ADDED.iter().map(|key| Path::parse(key).expect("a valid path")).collect();
        let read = Selection::new([&f.shop_id, &f.price, &f.currency, &f.ts, &f.user_agent].into_iter().chain(&added));
        BiEnrich { settings, agents, read }
    }

    /// The user-agent cache, to read its hit count.
    pub fn agents(&self) -> &AgentCache {
        &self.agents
    }

    /// Enriches one JSON payload: the whole per-event work of the stage,
    /// public so that a native benchmark runs exactly this code with its own
    /// `lookup`.
    ///
    /// Only the fields the stage reads are parsed (see [`Selection`]).
    /// When the payload has none of the fields the stage adds, as usual,
    /// they are appended to the payload's text, in key order: the
    /// payload's own fields stay as they came, in their order. Otherwise
    /// the payload is parsed whole and written again with the added fields
    /// replacing its own, all keys sorted.
    pub fn enrich(&mut self, payload: &[u8], lookup: &Lookup<'_>) -> Result<Vec<u8>, Error> {
        let event = self.read.parse(payload)?;
        let Value::Object(fields) = &event else {
            return Err(Error::invalid("payload is not a JSON object"));
        };
        let additions = read(&self.settings, &mut self.agents, &event, lookup)?;
        let added = additions.fields(&self.settings.reporting_currency);
        debug_assert!(added.is_sorted_by_key(|(key, _)| *key));
        // Room for the payload and what is added, so the buffer seldom grows.
        let mut out = Vec::with_capacity(payload.len() + 384);
        if ADDED.iter().any(|key| fields.contains_key(*key)) {
            let whole: Value = serde_json::from_slice(payload)?;
            let Value::Object(payload) = &whole else { unreachable!("read as an object above") };
            serde_json::to_writer(&mut out, &Enriched { payload, added: &added }).map_err(|e| Error::invalid(format!("cannot write the payload: {e}")))?;
        } else {
            let present = added.iter().filter_map(|(key, value)| Some((*key, value.as_ref()?)));
            append_members(&mut out, payload, present)?;
        }
        Ok(out)
    }
}

/// Reads the event's fields and the reference data: everything
/// [`enrich`](BiEnrich::enrich) adds, or why the event is refused. The
/// event is only borrowed, so its strings are not copied.
fn read(settings: &Settings, agents: &mut AgentCache, event: &Value, lookup: &Lookup<'_>) -> Result<Additions, Error> {
    let f = &settings.fields;

    // The event's own fields: any problem refuses the event.
    let shop_id: Cow<'_, str> = match f.shop_id.get(event) {
        Some(Value::String(s)) if !s.is_empty() => Cow::Borrowed(s),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Cow::Owned(n.to_string()),
        other => return Err(field_error(&f.shop_id, other, "a non-empty string")),
    };
    let price = match f.price.get(event) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        other => return Err(field_error(&f.price, other, "a number")),
    };
    let currency = match f.currency.get(event) {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        other => return Err(field_error(&f.currency, other, "a currency code")),
    };
    let date = match f.ts.get(event) {
        Some(Value::String(s)) => {
            dates::dims(s).map_err(|reason| Error::invalid(format!("field \"{}\": {s:?} is not an RFC 3339 timestamp: {reason}", f.ts)))?
        }
        other => return Err(field_error(&f.ts, other, "an RFC 3339 timestamp string")),
    };
    let device = match f.user_agent.get(event) {
        Some(Value::String(s)) => agents.classify(s),
        other => return Err(field_error(&f.user_agent, other, "a user agent string")),
    };

    // Reference data.
    let shop: Option<Shop> = read_json(lookup, &settings.shops_bucket, &shop_id)?;
    let rate = if currency == settings.reporting_currency {
        Some(1.0)
    } else {
        let rate: Option<Rate> = read_json(lookup, &settings.rates_bucket, currency)?;
        match rate {
            Some(Rate { rate }) if rate.is_finite() && rate > 0.0 => Some(rate),
            Some(Rate { rate }) => {
                return Err(Error::invalid(format!("kv value {}/{currency} has rate {rate}, expected a positive number", settings.rates_bucket)));
            }
            None => None,
        }
    };

    let mut missing = Vec::new();
    if shop.is_none() {
        missing.push("shop");
    }
    if rate.is_none() {
        missing.push("rate");
    }
    if !missing.is_empty() && settings.on_missing == OnMissing::DeadLetter {
        let mut reasons = Vec::new();
        if shop.is_none() {
            reasons.push(format!("shop {shop_id:?} not found in KV bucket {:?}", settings.shops_bucket));
        }
        if rate.is_none() {
            reasons.push(format!("no rate for currency {currency:?} in KV bucket {:?}", settings.rates_bucket));
        }
        return Err(Error::invalid(reasons.join("; ")));
    }

    Ok(Additions { price_reporting: rate.map(|rate| round2(price * rate)), shop, date, device, missing })
}

/// What [`BiEnrich::enrich`] adds to an event.
struct Additions {
    /// `price_reporting`, when there is a rate.
    price_reporting: Option<f64>,
    shop: Option<Shop>,
    date: DateDims,
    device: Device,
    /// Names of the missing reference data, for `enrichment_missing`.
    missing: Vec<&'static str>,
}

impl Additions {
    /// The fields to add, in key order; `None` for those this event does
    /// not get.
    fn fields<'a>(&'a self, reporting_currency: &'a str) -> [(&'static str, Option<Added<'a>>); 7] {
        let commission = match (&self.shop, self.price_reporting) {
            (Some(shop), Some(price)) => Some(round2(price * shop.commission_rate)),
            _ => None,
        };
        [
            ("commission", commission.map(Added::Number)),
            ("date", Some(Added::Date(&self.date))),
            ("device", Some(Added::Device(self.device))),
            ("enrichment_missing", (!self.missing.is_empty()).then_some(Added::Names(&self.missing))),
            ("price_reporting", self.price_reporting.map(Added::Number)),
            ("reporting_currency", self.price_reporting.map(|_| Added::Text(reporting_currency))),
            ("shop", self.shop.as_ref().map(Added::Shop)),
        ]
    }
}

/// The value of an added field, written as JSON.
enum Added<'a> {
    Number(f64),
    Text(&'a str),
    Names(&'a [&'static str]),
    /// `{"commission_rate", "country", "name"}`
    Shop(&'a Shop),
    /// `{"day", "hour", "iso_week", "weekday"}`
    Date(&'a DateDims),
    /// `{"browser", "class"}`
    Device(Device),
}

impl Serialize for Added<'_> {
    // Objects list their keys in order, as a `Map` would.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            // Not finite: `null`, as `Value::from` would make it.
            Added::Number(x) => serializer.serialize_f64(x),
            Added::Text(text) => serializer.serialize_str(text),
            Added::Names(names) => names.serialize(serializer),
            Added::Shop(shop) => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("commission_rate", &shop.commission_rate)?;
                map.serialize_entry("country", &shop.country)?;
                map.serialize_entry("name", &shop.name)?;
                map.end()
            }
            Added::Date(date) => {
                let mut map = serializer.serialize_map(Some(4))?;
                map.serialize_entry("day", &date.day)?;
                map.serialize_entry("hour", &date.hour)?;
                map.serialize_entry("iso_week", &date.iso_week)?;
                map.serialize_entry("weekday", date.weekday)?;
                map.end()
            }
            Added::Device(device) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("browser", device.browser)?;
                map.serialize_entry("class", device.class)?;
                map.end()
            }
        }
    }
}

/// The enriched event as JSON, when the payload has some of the fields the
/// stage adds: the payload's fields and the added ones merged in key
/// order, an added field replacing the payload's field of the same name.
/// That is the text that inserting the added fields into the payload's
/// `Map` and writing it would give, without allocating the added keys and
/// values first.
struct Enriched<'a> {
    payload: &'a Map<String, Value>,
    /// In key order.
    added: &'a [(&'static str, Option<Added<'a>>)],
}

impl Serialize for Enriched<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let mut added = self.added.iter().filter_map(|(key, value)| Some((*key, value.as_ref()?))).peekable();
        for (key, value) in self.payload {
            let mut replaced = false;
            while let Some((name, new)) = added.next_if(|(name, _)| *name <= key.as_str()) {
                replaced = name == key;
                map.serialize_entry(name, new)?;
            }
            if !replaced {
                map.serialize_entry(key, value)?;
            }
        }
        for (name, new) in added {
            map.serialize_entry(name, new)?;
        }
        map.end()
    }
}

/// Rounds to 2 decimals (cents).
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn field_error(path: &Path, found: Option<&Value>, expected: &str) -> Error {
    match found {
        None | Some(Value::Null) => Error::invalid(format!("missing field \"{path}\"")),
        Some(value) => Error::invalid(format!("field \"{path}\": expected {expected}, found {value}")),
    }
}

/// Looks `key` up in `bucket` and reads the value as JSON of type `T`.
fn read_json<T: serde::de::DeserializeOwned>(lookup: &Lookup<'_>, bucket: &str, key: &str) -> Result<Option<T>, Error> {
    let Some(bytes) = lookup(bucket, key).map_err(Error::invalid)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::invalid(format!("kv value {bucket}/{key} is not of the expected shape: {e}")))
}

/// The stage in weir: [`BiEnrich::enrich`] with the KV buckets that weir
/// grants.
impl Stage for BiEnrich {
    fn init(config: Config) -> Result<Self, String> {
        Ok(BiEnrich::new(Settings::from_config(&config)?))
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        let lookup = |bucket: &str, key: &str| kv::get(bucket, key).map_err(|e| e.message().to_owned());
        let payload = self.enrich(&event.payload, &lookup)?;
        Ok(Output::One(event.with_payload(payload)))
    }
}

weir_sdk::export_stage!(BiEnrich);

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use weir_sdk::serde_json::{self, Value, json};
    use weir_sdk::{Error, Event, testing};

    use super::{BiEnrich, Settings};

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const IPHONE: &str =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";

    fn order(shop: &str, price: f64, currency: &str) -> Value {
        json!({
            "id": 1, "shop_id": shop, "price": price, "currency": currency,
            "ts": "2026-11-26T10:15:00Z", "user_agent": CHROME,
        })
    }

    fn fill_kv() {
        testing::kv_clear();
        testing::kv_put("shops", "s-1", r#"{"name":"Shop One","country":"DE","commission_rate":0.1}"#);
        testing::kv_put("rates", "USD", r#"{"rate":0.92}"#);
    }

    /// Runs the stage (through the SDK, with the native KV store) on one payload.
    fn run(config: &str, payload: &Value) -> Result<Value, Error> {
        let event = Event::new("orders", payload.to_string());
        let mut out = testing::run_one::<BiEnrich>(config, event)?;
        assert_eq!(out.len(), 1);
        Ok(serde_json::from_slice(&out.pop().unwrap().payload).unwrap())
    }

    fn invalid(config: &str, payload: &Value) -> String {
        let error = run(config, payload).unwrap_err();
        assert!(error.is_invalid());
        error.message().to_owned()
    }

    #[test]
    fn enriches_a_full_event() {
        fill_kv();
        let out = run("{}", &order("s-1", 12.5, "USD")).unwrap();
        assert_eq!(
            out,
            json!({
                "id": 1, "shop_id": "s-1", "price": 12.5, "currency": "USD",
                "ts": "2026-11-26T10:15:00Z", "user_agent": CHROME,
                "shop": { "name": "Shop One", "country": "DE", "commission_rate": 0.1 },
                "price_reporting": 11.5, "reporting_currency": "EUR", "commission": 1.15,
                "date": { "day": "2026-11-26", "iso_week": "2026-W48", "hour": 10, "weekday": "Thursday" },
                "device": { "class": "desktop", "browser": "Chrome" },
            })
        );
    }

    #[test]
    fn reporting_currency_needs_no_rate() {
        testing::kv_clear();
        testing::kv_put("shops", "s-1", r#"{"name":"S","country":"FR","commission_rate":0.2}"#);
        testing::kv_put("rates", "USD", r#"{"rate":0.92}"#); // no EUR entry
        let out = run("{}", &order("s-1", 10.005, "EUR")).unwrap();
        assert_eq!(out["price_reporting"], json!(10.01));
        assert_eq!(out["commission"], json!(2.0));
        assert_eq!(out.get("enrichment_missing"), None);
        // Another reporting currency, from config.
        testing::kv_put("rates", "EUR", r#"{"rate":1.087}"#);
        let out = run(r#"{"reporting_currency": "USD"}"#, &order("s-1", 100.0, "EUR")).unwrap();
        assert_eq!((&out["price_reporting"], &out["reporting_currency"]), (&json!(108.7), &json!("USD")));
    }

    #[test]
    fn missing_shop_is_marked_by_default() {
        fill_kv();
        let out = run("{}", &order("s-9", 10.0, "USD")).unwrap();
        assert_eq!(out["enrichment_missing"], json!(["shop"]));
        assert_eq!(out.get("shop"), None);
        assert_eq!(out.get("commission"), None);
        assert_eq!(out["price_reporting"], json!(9.2));
        assert_eq!(out["device"]["class"], json!("desktop"));
    }

    #[test]
    fn missing_shop_can_be_dead_lettered() {
        fill_kv();
        let config = r#"{"on_missing": "dead-letter"}"#;
        assert_eq!(invalid(config, &order("s-9", 10.0, "USD")), r#"shop "s-9" not found in KV bucket "shops""#);
        assert!(run(config, &order("s-1", 10.0, "USD")).is_ok());
    }

    #[test]
    fn missing_rate() {
        fill_kv();
        let out = run("{}", &order("s-1", 10.0, "JPY")).unwrap();
        assert_eq!(out["enrichment_missing"], json!(["rate"]));
        assert_eq!(out.get("price_reporting"), None);
        assert_eq!(out.get("commission"), None);
        assert_eq!(out["shop"]["country"], json!("DE"));

        let out = run("{}", &order("s-9", 10.0, "JPY")).unwrap();
        assert_eq!(out["enrichment_missing"], json!(["shop", "rate"]));

        let config = r#"{"on_missing": "dead-letter"}"#;
        assert_eq!(invalid(config, &order("s-1", 10.0, "JPY")), r#"no rate for currency "JPY" in KV bucket "rates""#);
        assert_eq!(
            invalid(config, &order("s-9", 10.0, "JPY")),
            r#"shop "s-9" not found in KV bucket "shops"; no rate for currency "JPY" in KV bucket "rates""#
        );
    }

    #[test]
    fn bad_events_are_invalid() {
        fill_kv();
        let with = |key: &str, value: Value| {
            let mut event = order("s-1", 10.0, "USD");
            event[key] = value;
            event
        };
        let without = |key: &str| {
            let mut event = order("s-1", 10.0, "USD");
            event.as_object_mut().unwrap().remove(key);
            event
        };
        assert_eq!(invalid("{}", &without("shop_id")), r#"missing field "shop_id""#);
        assert_eq!(invalid("{}", &without("user_agent")), r#"missing field "user_agent""#);
        assert_eq!(invalid("{}", &with("price", json!("12.5"))), r#"field "price": expected a number, found "12.5""#);
        assert_eq!(
            invalid("{}", &with("ts", json!("2026-11-31T10:00:00Z"))),
            r#"field "ts": "2026-11-31T10:00:00Z" is not an RFC 3339 timestamp: day 31 is out of range for 2026-11"#
        );
        assert_eq!(
            invalid("{}", &with("ts", json!(1_795_688_100))),
            r#"field "ts": expected an RFC 3339 timestamp string, found 1795688100"#
        );
        assert_eq!(invalid("{}", &json!([1])), "payload is not a JSON object");
        let error = testing::run_one::<BiEnrich>("{}", Event::new("orders", "{oops")).unwrap_err();
        assert!(error.message().starts_with("payload is not valid JSON: "));
        // Broken reference data is invalid too, whatever on_missing says.
        testing::kv_put("shops", "s-2", r#"{"name":"S"}"#);
        assert!(invalid("{}", &order("s-2", 1.0, "USD")).starts_with("kv value shops/s-2 is not of the expected shape: "));
    }

    #[test]
    fn date_dimensions_and_devices() {
        fill_kv();
        let mut event = order("s-1", 1.0, "EUR");
        event["ts"] = json!("2021-01-03T23:59:59Z");
        event["user_agent"] = json!(IPHONE);
        let out = run("{}", &event).unwrap();
        assert_eq!(out["date"], json!({ "day": "2021-01-03", "iso_week": "2020-W53", "hour": 23, "weekday": "Sunday" }));
        assert_eq!(out["device"], json!({ "class": "mobile", "browser": "Safari" }));

        event["ts"] = json!("2024-12-30T00:00:00Z");
        event["user_agent"] = json!("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)");
        let out = run("{}", &event).unwrap();
        assert_eq!(out["date"], json!({ "day": "2024-12-30", "iso_week": "2025-W01", "hour": 0, "weekday": "Monday" }));
        assert_eq!(out["device"], json!({ "class": "bot", "browser": "other" }));
    }

    #[test]
    fn field_names_and_buckets_are_configurable() {
        testing::kv_clear();
        testing::kv_put("partners", "7", r#"{"name":"P","country":"AT","commission_rate":0.05}"#);
        testing::kv_put("fx", "CHF", r#"{"rate":1.05}"#);
        let config = r#"{"shops_bucket": "partners", "rates_bucket": "fx",
            "fields": {"shop_id": "partner.id", "price": "amount", "currency": "cur", "ts": "at", "user_agent": "ua"}}"#;
        let event = json!({ "partner": { "id": 7 }, "amount": 20, "cur": "CHF", "at": "2026-11-26T10:15:00Z", "ua": "" });
        let out = run(config, &event).unwrap();
        assert_eq!(out["shop"]["country"], json!("AT"));
        assert_eq!(out["price_reporting"], json!(21.0));
        assert_eq!(out["commission"], json!(1.05));
        assert_eq!(out["device"], json!({ "class": "unknown", "browser": "other" }));
    }

    #[test]
    fn ungranted_bucket_is_invalid() {
        testing::kv_clear();
        testing::kv_put("shops", "s-1", r#"{"name":"S","country":"DE","commission_rate":0.1}"#);
        let message = invalid("{}", &order("s-1", 1.0, "USD"));
        assert!(message.contains("kv bucket \"rates\" is not granted"), "{message}");
    }

    #[test]
    fn enrich_works_with_any_lookup() {
        let kv: HashMap<(&str, &str), &str> =
            HashMap::from([(("shops", "s-1"), r#"{"name":"S","country":"DE","commission_rate":0.1}"#), (("rates", "USD"), r#"{"rate":0.5}"#)]);
        let lookup = |bucket: &str, key: &str| Ok(kv.get(&(bucket, key)).map(|v| v.as_bytes().to_vec()));
        let payload = order("s-1", 3.0, "USD").to_string();
        let out = BiEnrich::new(Settings::default()).enrich(payload.as_bytes(), &lookup).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((&out["price_reporting"], &out["commission"]), (&json!(1.5), &json!(0.15)));
    }

    #[test]
    fn bad_config_fails_init() {
        let error = |config: &str| testing::init::<BiEnrich>(config).expect_err("init should fail");
        assert!(error(r#"{"reporting": "EUR"}"#).starts_with("config.reporting: unknown field `reporting`"));
        assert!(error(r#"{"fields": {"shop": "x"}}"#).starts_with("config.fields.shop: unknown field `shop`"));
        assert!(error(r#"{"on_missing": "drop"}"#).starts_with("config.on_missing: unknown variant `drop`"));
        assert_eq!(error(r#"{"reporting_currency": ""}"#), "config.reporting_currency: must not be empty");
        assert_eq!(
            error(r#"{"agent_cache": 100001}"#),
            "config.agent_cache: 100001 is too many user agents to cache, the most is 100000 (0 turns the cache off)"
        );
        assert!(error(r#"{"agent_cache": -1}"#).starts_with("config.agent_cache: invalid value: integer `-1`"));
        assert!(testing::init::<BiEnrich>(r#"{"on_missing": "dead-letter", "fields": {"ts": "meta.ts"}}"#).is_ok());
    }

    #[test]
    fn the_agent_cache_changes_nothing() {
        fill_kv();
        let agents = [CHROME, IPHONE, "curl/8.5.0", "", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"];
        let events: Vec<Event> = (0..40)
            .map(|i| {
                let mut event = order(if i % 3 == 0 { "s-9" } else { "s-1" }, i as f64, "USD");
                event["user_agent"] = json!(agents[i * 7 % agents.len()]);
                Event::new("orders", event.to_string())
            })
            .collect();
        let payloads = |config: &str| -> Vec<Vec<u8>> {
            let mut stage = testing::init::<BiEnrich>(config).unwrap();
            let out = testing::process(&mut stage, events.clone()).unwrap();
            assert_eq!(stage.agents().hits() + stage.agents().misses(), events.len() as u64);
            out.into_iter().flat_map(|outcome| outcome.unwrap()).map(|event| event.payload).collect()
        };
        let uncached = payloads(r#"{"agent_cache": 0}"#);
        assert_eq!(uncached.len(), events.len());
        assert_eq!(payloads("{}"), uncached);
        assert_eq!(payloads(r#"{"agent_cache": 2}"#), uncached);
    }

    /// The raw payload the stage writes for `payload`.
    fn enriched_text(payload: &str) -> String {
        let mut out = testing::run_one::<BiEnrich>("{}", Event::new("orders", payload)).unwrap();
        String::from_utf8(out.pop().unwrap().payload).unwrap()
    }

    #[test]
    fn added_fields_follow_the_payload_as_it_came() {
        fill_kv();
        let payload = format!(
            r#"{{ "ts": "2026-11-26T10:15:00Z", "shop_id": "s-1", "price": 12.50, "currency": "USD", "user_agent": "{CHROME}", "zz": [1, {{"b": 2}}] }}"#
        );
        let text = enriched_text(&payload);
        let body = payload.trim_end_matches(" }");
        assert!(text.starts_with(&format!("{body},\"commission\":1.15,\"date\":")), "{text}");
        let read: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(read["shop"]["country"], "DE");
        assert_eq!(read["zz"], json!([1, { "b": 2 }]));
    }

    #[test]
    fn a_field_the_stage_adds_replaces_the_payloads_own() {
        fill_kv();
        let mut payload = order("s-1", 12.5, "USD");
        payload["shop"] = json!("stale");
        payload["device"] = json!({ "class": "toaster" });
        let text = enriched_text(&payload.to_string());
        assert_eq!(text.matches("\"shop\"").count(), 1, "{text}");
        assert_eq!(text.matches("\"device\"").count(), 1, "{text}");
        let read: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(read["shop"]["name"], "Shop One");
        assert_eq!(read["device"]["class"], "desktop");
    }
}
