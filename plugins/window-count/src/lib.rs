//! `window-count`: counts (and sums) events per key in time windows, and
//! emits one event per key and window when the window closes.
//!
//! ```toml
//! [[stages]]
//! name = "per-minute"
//! plugin = "../plugins/window-count.wasm"
//! timer = "1s"
//! config = { key = ["type", "product_id", "shop_id"], sum = ["price"], time = "ts",
//!            window = "1m", lateness = "10s", subject = "product.{type}" }
//! ```
//!
//! See `README.md` for the whole story; in short:
//!
//! - `key` (required): what to group by: payload field paths,
//!   `header:<name>`, `subject`, `subject:<n>`, one or a list,
//! - `sum` (optional): numeric payload fields to add up per group,
//! - `time` (optional): the payload field with the event's time (ms since
//!   1970, or RFC 3339); without it, the time the event is processed (needs
//!   `grants = { clock = true }`),
//! - `window` (required): the window's length; `slide` (optional, default
//!   `window`): how far apart windows start (sliding windows when shorter),
//! - `lateness` (default `"0s"`): how long after its end a window stays
//!   open for late events,
//! - `subject` (required): the subject of the emitted events; `{part}` is
//!   replaced by the group's value of that key part.
//!
//! Input events are consumed (dropped): what comes out are the windows,
//! from [`Stage::tick`].
//!
//! State: `w/<start>/<group>` (start in ms, 16 digits; group as a JSON list
//! of the key's values) holds `{"count": n, "sum": {...}}`, and `closed`
//! the time before which every window has closed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weir_keyed::{Clock, Fields, Key, MAX_DURATION};
use weir_sdk::{Config, Error, Event, Output, Path, Stage, state};

/// The most window keys one tick emits and deletes; the next tick goes on.
pub const CLOSE_PER_TICK: u32 = 10_000;

/// The most windows one event counts into (`window / slide`).
pub const MAX_OVERLAP: u64 = 60;

/// The stage: its settings, parsed once.
pub struct WindowCount {
    key: Key,
    sum: Vec<Path>,
    clock: Clock,
    window: u64,
    slide: u64,
    lateness: u64,
    subject: Vec<Piece>,
    fields: Fields,
    /// `closed`, read once per batch: only a tick changes it.
    closed: Option<u64>,
}

/// A piece of the subject template.
enum Piece {
    Text(String),
    /// The index of a key part.
    Part(usize),
}

/// What a window holds for one group.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counts {
    count: u64,
    #[serde(default)]
    sum: Map<String, Value>,
}

const KEYS: &[&str] = &["key", "sum", "time", "window", "slide", "lateness", "subject"];

impl Stage for WindowCount {
    fn init(config: Config) -> Result<Self, String> {
        let table = weir_keyed::config_table(&config, KEYS)?;
        let key = Key::from_config(table.get("key"), "key")?;
        let sum = match table.get("sum") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(text) => Path::parse(text).map_err(|e| format!("config.sum[{i}]: {e}")),
                    other => Err(format!("config.sum[{i}]: expected a field path, found {other}")),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("config.sum: expected a list of field paths, found {other}")),
        };
        let clock = Clock::from_config(table.get("time"), "window-count")?;
        let window = weir_keyed::duration(table.get("window"), "window", false)?;
        let slide = match table.get("slide") {
            None | Some(Value::Null) => window,
            some => weir_keyed::duration(some, "slide", false)?,
        };
        if slide > window || window % slide != 0 || window / slide > MAX_OVERLAP {
            return Err(format!(
                "config.slide: must divide config.window into at most {MAX_OVERLAP} steps (window {window} ms, slide {slide} ms)"
            ));
        }
        let lateness = match table.get("lateness") {
            None | Some(Value::Null) => 0,
            some => weir_keyed::duration(some, "lateness", true)?,
        };
        let subject = match table.get("subject") {
            Some(Value::String(text)) => parse_subject(text, &key).map_err(|e| format!("config.subject: {e}"))?,
            None | Some(Value::Null) => return Err("config.subject is required: where windows are published, e.g. \"metrics.{type}\"".into()),
            Some(other) => return Err(format!("config.subject: expected a string, found {other}")),
        };
        debug_assert!(window <= MAX_DURATION && lateness <= MAX_DURATION);
        let fields = Fields::new(key.paths().chain(sum.iter()).chain(clock.path()));
        Ok(WindowCount { key, sum, clock, window, slide, lateness, subject, fields, closed: None })
    }

    /// The default loop (each event's writes sent after it succeeds), with
    /// `closed` read once for the batch rather than once per event.
    fn process_batch(&mut self, events: Vec<Event>) -> Vec<Result<Output, Error>> {
        self.closed = None;
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| match self.process(event) {
                Ok(output) => state::flush(index).map(|()| output),
                Err(error) => {
                    state::discard();
                    Err(error)
                }
            })
            .collect()
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        let payload = self.fields.read(&event)?;
        let values = self.key.values(&event, &payload)?;
        let time = self.clock.time(&payload)?;
        let mut amounts = Vec::with_capacity(self.sum.len());
        for path in &self.sum {
            match path.get(&payload) {
                Some(Value::Number(n)) => amounts.push((path.as_str(), n.as_f64().unwrap_or(0.0))),
                None | Some(Value::Null) => return Err(Error::invalid(format!("payload has no field {:?} (in config.sum)", path.as_str()))),
                Some(other) => return Err(Error::invalid(format!("field {:?} (in config.sum) is {other}, not a number", path.as_str()))),
            }
        }
        let group = Value::Array(values).to_string();
        let closed = *self.closed.get_or_insert_with(closed);
        let mut counted = false;
        let mut start = time - time % self.slide;
        loop {
            let end = start + self.window;
            if end > closed {
                let key = window_key(start, &group);
                let mut counts = state::get_json::<Counts>(&key)?.unwrap_or_default();
                counts.count += 1;
                for (name, amount) in &amounts {
                    let total = counts.sum.get(*name).and_then(Value::as_f64).unwrap_or(0.0) + amount;
                    counts.sum.insert((*name).to_owned(), Value::from(total));
                }
                state::set_json(&key, &counts)?;
                counted = true;
            }
            // The earlier windows that also hold `time`.
            match start.checked_sub(self.slide) {
                Some(earlier) if earlier + self.window > time => start = earlier,
                _ => break,
            }
        }
        if !counted {
            let start = time - time % self.slide;
            return Err(Error::invalid(format!(
                "late: the event's time {time} is in the window [{start}, {}), closed at {closed} (lateness {} ms)",
                start + self.window,
                self.lateness
            )));
        }
        Ok(Output::Drop)
    }

    /// Emits and deletes every window that ended at least `lateness` before
    /// `now`, oldest first, at most [`CLOSE_PER_TICK`] of them.
    fn tick(&mut self, now: u64) -> Result<Vec<Event>, String> {
        let horizon = now.saturating_sub(self.lateness);
        let closed = closed();
        // Windows end on multiples of `slide`: record the change only then.
        let closing = horizon - horizon % self.slide;
        if closing > closed {
            state::set(CLOSED, closing.to_string());
        }
        let mut out = Vec::new();
        for key in state::keys(WINDOWS, CLOSE_PER_TICK) {
            let Some((start, group)) = parse_window_key(&key) else {
                weir_sdk::warn!("state key {key:?} is not a window key of this version; deleted");
                state::delete(&key);
                continue;
            };
            let end = start.saturating_add(self.window);
            if end > horizon {
                break;
            }
            let counts = state::get_json::<Counts>(&key);
            state::delete(&key);
            let counts = match counts {
                Ok(Some(counts)) => counts,
                Ok(None) => continue,
                // A tick that failed on it would fail forever: reset it.
                Err(error) => {
                    weir_sdk::warn!("{error}; the window is dropped");
                    continue;
                }
            };
            out.push(self.emit(start, end, &group, counts).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }
}

weir_sdk::export_stage!(WindowCount);

/// The end of the latest closed window. Bookkeeping, not an event's data:
/// a value this version cannot read is taken as 0, and the next tick
/// overwrites it.
fn closed() -> u64 {
    state::get_json::<u64>(CLOSED)
        .unwrap_or_else(|error| {
            weir_sdk::warn!("{error}; it is reset");
            None
        })
        .unwrap_or(0)
}

const WINDOWS: &str = "w/";
const CLOSED: &str = "closed";

fn window_key(start: u64, group: &str) -> String {
    format!("{WINDOWS}{start:016}/{group}")
}

/// The start and the group of a `w/<start>/<group>` key.
fn parse_window_key(key: &str) -> Option<(u64, Vec<Value>)> {
    let (start, group) = key.strip_prefix(WINDOWS)?.split_once('/')?;
    Some((start.parse().ok()?, serde_json::from_str(group).ok()?))
}

impl WindowCount {
    /// The event for one group's window.
    fn emit(&self, start: u64, end: u64, group: &[Value], counts: Counts) -> Result<Event, Error> {
        let mut key = Map::new();
        for ((name, _), value) in self.key.parts().iter().zip(group) {
            key.insert(name.clone(), value.clone());
        }
        let mut subject = String::new();
        for piece in &self.subject {
            match piece {
                Piece::Text(text) => subject.push_str(text),
                Piece::Part(i) => subject.push_str(&weir_keyed::token(group.get(*i).unwrap_or(&Value::Null))),
            }
        }
        let payload = serde_json::json!({
            "window_start": start,
            "window_end": end,
            "key": key,
            "count": counts.count,
            "sum": counts.sum,
        });
        Ok(Event::new_json(subject, &payload)?
            .with_header("weir-window-start", start.to_string())
            .with_header("weir-window-end", end.to_string()))
    }
}

/// Splits `metrics.product.{type}` into text and key parts.
fn parse_subject(template: &str, key: &Key) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("unbalanced '}}' in {template:?}"));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find(['{', '}']).filter(|&i| after[i..].starts_with('}')) else {
            return Err(format!("unbalanced '{{' in {template:?}"));
        };
        let name = &after[..close];
        let Some(index) = key.parts().iter().position(|(part, _)| part == name) else {
            let names: Vec<&str> = key.parts().iter().map(|(part, _)| part.as_str()).collect();
            return Err(format!("{{{name}}} is not a part of config.key (one of: {})", names.join(", ")));
        };
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_owned()));
        }
        pieces.push(Piece::Part(index));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    // With every placeholder filled by a token, the subject must be valid.
    let sample: String = pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => text.as_str(),
            Piece::Part(_) => "x",
        })
        .collect();
    weir_keyed::check_subject(&sample, "subject")
        .map_err(|_| format!("{template:?} is not a valid subject (non-empty tokens separated by '.', without whitespace, '*' or '>')"))?;
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use weir_sdk::serde_json::{Value, json};
    use weir_sdk::{Error, Event, testing};

    use super::WindowCount;

    const MINUTE: u64 = 60_000;
    /// 2025-11-26T09:00:00Z, on a minute.
    const T0: u64 = 1_764_147_600_000;
    const CONFIG: &str = r#"{"key": ["type", "product_id", "shop_id"], "sum": ["price"], "time": "ts",
        "window": "1m", "subject": "metrics.product.{type}"}"#;

    fn product(kind: &str, product: &str, shop: &str, price: f64, ts: u64) -> Event {
        let subject = format!("tracking.product.{kind}");
        Event::new_json(subject, &json!({ "type": kind, "product_id": product, "shop_id": shop, "price": price, "ts": ts })).unwrap()
    }

    fn payload(event: &Event) -> Value {
        event.json_value().unwrap()
    }

    #[test]
    fn counts_and_sums_per_key_and_minute_and_emits_when_the_window_closes() {
        let mut stage = testing::init::<WindowCount>(CONFIG).unwrap();
        let events = vec![
            product("view", "p-1", "s-1", 10.0, T0 + 1_000),
            product("view", "p-1", "s-1", 12.5, T0 + 59_999),
            product("cart", "p-1", "s-1", 10.0, T0 + 30_000),
            product("view", "p-2", "s-1", 5.0, T0 + 2_000),
            product("view", "p-1", "s-1", 1.0, T0 + MINUTE), // the next window
        ];
        let out = testing::process(&mut stage, events).unwrap();
        // Inputs are consumed.
        assert!(out.iter().all(|r| r.as_ref().unwrap().is_empty()));
        assert_eq!(testing::state_keys("w/").len(), 4);

        // Not yet closed.
        assert_eq!(testing::tick(&mut stage, T0 + MINUTE - 1), Ok(vec![]));
        let out = testing::tick(&mut stage, T0 + MINUTE).unwrap();
        assert_eq!(out.len(), 3, "{out:?}");
        let cart = &out[0];
        assert_eq!(cart.subject, "metrics.product.cart");
        assert_eq!(cart.header("weir-window-start"), Some(T0.to_string().as_str()));
        assert_eq!(cart.header("weir-window-end"), Some((T0 + MINUTE).to_string().as_str()));
        assert_eq!(
            payload(cart),
            json!({
                "window_start": T0, "window_end": T0 + MINUTE,
                "key": { "type": "cart", "product_id": "p-1", "shop_id": "s-1" },
                "count": 1, "sum": { "price": 10.0 },
            })
        );
        assert_eq!(out[1].subject, "metrics.product.view");
        assert_eq!(payload(&out[1])["key"]["product_id"], "p-1");
        assert_eq!(payload(&out[1])["count"], 2);
        assert_eq!(payload(&out[1])["sum"]["price"], 22.5);
        assert_eq!(payload(&out[2])["key"]["product_id"], "p-2");
        // Emitted windows are gone; the next minute's is still open.
        assert_eq!(testing::state_keys("w/"), [format!("w/{:016}/[\"view\",\"p-1\",\"s-1\"]", T0 + MINUTE)]);
        assert_eq!(testing::tick(&mut stage, T0 + MINUTE + 1), Ok(vec![]));

        // The end of time (weir exec and weir test) closes everything, once.
        let out = testing::tick(&mut stage, 1 << 53).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(payload(&out[0])["window_start"], T0 + MINUTE);
        assert_eq!(testing::tick(&mut stage, 1 << 53), Ok(vec![]));
        assert_eq!(testing::state_keys("w/"), Vec::<String>::new());
    }

    #[test]
    fn a_late_event_is_dead_lettered_with_the_window() {
        let mut stage = testing::init::<WindowCount>(CONFIG).unwrap();
        testing::process(&mut stage, vec![product("view", "p-1", "s-1", 1.0, T0)]).unwrap();
        assert_eq!(testing::tick(&mut stage, T0 + MINUTE).unwrap().len(), 1);
        let out = testing::process(&mut stage, vec![product("view", "p-1", "s-1", 1.0, T0 + 5), product("view", "p-1", "s-1", 1.0, T0 + MINUTE)]).unwrap();
        let late = out[0].as_ref().unwrap_err();
        assert!(late.is_invalid());
        assert_eq!(
            late.message(),
            format!("late: the event's time {} is in the window [{T0}, {}), closed at {} (lateness 0 ms)", T0 + 5, T0 + MINUTE, T0 + MINUTE)
        );
        assert!(out[1].is_ok());
        // The late event left no state behind.
        assert_eq!(testing::state_keys("w/").len(), 1);
    }

    #[test]
    fn lateness_keeps_a_window_open_after_its_end() {
        let config = CONFIG.replace(r#""window": "1m""#, r#""window": "1m", "lateness": "30s""#);
        let mut stage = testing::init::<WindowCount>(&config).unwrap();
        testing::process(&mut stage, vec![product("view", "p-1", "s-1", 1.0, T0)]).unwrap();
        assert_eq!(testing::tick(&mut stage, T0 + MINUTE + 29_999), Ok(vec![]));
        // 20 s after the window's end, a late event still counts.
        let out = testing::process(&mut stage, vec![product("view", "p-1", "s-1", 1.0, T0 + 10)]).unwrap();
        assert!(out[0].is_ok());
        let out = testing::tick(&mut stage, T0 + MINUTE + 30_000).unwrap();
        assert_eq!(payload(&out[0])["count"], 2);
    }

    #[test]
    fn sliding_windows_count_an_event_in_each_window_that_holds_it() {
        let config = r#"{"key": "k", "time": "ts", "window": "3m", "slide": "1m", "subject": "w.{k}"}"#;
        let mut stage = testing::init::<WindowCount>(config).unwrap();
        let event = |ts: u64| Event::new_json("in", &json!({ "k": "a", "ts": ts })).unwrap();
        testing::process(&mut stage, vec![event(T0 + 2 * MINUTE + 1), event(T0 + 3 * MINUTE)]).unwrap();
        let out = testing::tick(&mut stage, 1 << 53).unwrap();
        let windows: Vec<(u64, u64)> = out
            .iter()
            .map(|e| (payload(e)["window_start"].as_u64().unwrap() - T0, payload(e)["count"].as_u64().unwrap()))
            .collect();
        // Windows of 3 minutes starting every minute: [0,3) [1,4) [2,5) [3,6).
        assert_eq!(windows, [(0, 1), (MINUTE, 2), (2 * MINUTE, 2), (3 * MINUTE, 1)]);
        assert_eq!(out[0].subject, "w.a");
        assert_eq!(payload(&out[0])["sum"], json!({}));
    }

    #[test]
    fn keys_from_the_subject_and_headers_and_times_as_rfc3339() {
        let config = r#"{"key": ["subject:3", "header:shop"], "time": "ts", "window": "1h", "subject": "m.{subject:3}.{header:shop}"}"#;
        let mut stage = testing::init::<WindowCount>(config).unwrap();
        let event = |kind: &str, ts: &str| Event::new(format!("tracking.product.{kind}"), format!(r#"{{"ts": "{ts}"}}"#)).with_header("shop", "s.1");
        let out = testing::process(&mut stage, vec![event("view", "2025-11-26T09:59:59Z"), event("view", "2025-11-26T10:00:00+01:00")]).unwrap();
        assert!(out.iter().all(Result::is_ok));
        let out = testing::tick(&mut stage, 1 << 53).unwrap();
        assert_eq!(out.len(), 1);
        // A value that cannot be one token is made one.
        assert_eq!(out[0].subject, "m.view.s_1");
        assert_eq!(payload(&out[0])["key"], json!({ "subject:3": "view", "header:shop": "s.1" }));
        assert_eq!(payload(&out[0])["count"], 2);
    }

    #[test]
    fn one_tick_closes_at_most_ten_thousand_windows() {
        let mut stage = testing::init::<WindowCount>(CONFIG).unwrap();
        for i in 0..10_003 {
            testing::state_put(&format!("w/{T0:016}/[\"view\",\"p-{i}\",\"s\"]"), r#"{"count": 1, "sum": {"price": 1.0}}"#);
        }
        assert_eq!(testing::tick(&mut stage, 1 << 53).unwrap().len(), 10_000);
        assert_eq!(testing::tick(&mut stage, 1 << 53).unwrap().len(), 3);
    }

    #[test]
    fn a_window_an_older_version_wrote_is_reset_by_the_tick_and_refused_by_events() {
        let mut stage = testing::init::<WindowCount>(CONFIG).unwrap();
        let key = format!("w/{T0:016}/[\"view\",\"p-1\",\"s-1\"]");
        testing::state_put(&key, "[1, 2]");
        let out = testing::process(&mut stage, vec![product("view", "p-1", "s-1", 1.0, T0)]).unwrap();
        let error = out[0].as_ref().unwrap_err();
        assert!(
            error
                .message()
                .starts_with(&format!("state {key:?} does not decode as the stage expects (written by an older version?)")),
            "{error}"
        );
        testing::state_put("w/garbage", "1");
        assert_eq!(testing::tick(&mut stage, 1 << 53), Ok(vec![]));
        assert_eq!(testing::state_keys("w/"), Vec::<String>::new());
    }

    #[test]
    fn an_unreadable_closing_time_is_reset_by_the_next_tick() {
        let mut stage = testing::init::<WindowCount>(CONFIG).unwrap();
        testing::state_put("closed", "{}");
        let out = testing::process(&mut stage, vec![product("view", "p-1", "s-1", 1.0, T0)]).unwrap();
        assert!(out[0].is_ok());
        assert_eq!(testing::tick(&mut stage, T0 + MINUTE).unwrap().len(), 1);
        assert_eq!(testing::state_get("closed"), Some((T0 + MINUTE).to_string().into_bytes()));
    }

    #[test]
    fn bad_events_are_invalid_with_the_reason() {
        let run = |payload: Value| testing::run_one::<WindowCount>(CONFIG, Event::new_json("tracking.product.view", &payload).unwrap()).unwrap_err();
        let good = json!({ "type": "view", "product_id": "p-1", "shop_id": "s-1", "price": 1.0, "ts": T0 });
        let without = |field: &str| {
            let mut payload = good.clone();
            payload.as_object_mut().unwrap().remove(field);
            payload
        };
        assert_eq!(run(without("shop_id")), Error::invalid(r#"payload has no field "shop_id" (the key)"#));
        assert_eq!(run(without("ts")), Error::invalid(r#"payload has no field "ts" (the event time)"#));
        assert_eq!(run(without("price")), Error::invalid(r#"payload has no field "price" (in config.sum)"#));
        let mut cheap = good.clone();
        cheap["price"] = json!("cheap");
        assert_eq!(run(cheap), Error::invalid(r#"field "price" (in config.sum) is "cheap", not a number"#));
        let mut future = good;
        future["ts"] = json!(u64::MAX);
        assert!(run(future).message().contains("too far in the future"));
        let not_json = testing::run_one::<WindowCount>(CONFIG, Event::new("tracking.product.view", "{")).unwrap_err();
        assert!(not_json.message().starts_with("payload is not valid JSON"));
    }

    /// What `pipelines/tests/product-metrics.test.toml` expects of the
    /// samples, which `weir test` checks through the whole pipeline.
    #[test]
    fn the_product_metrics_samples() {
        let config = r#"{"key": ["type", "product_id", "shop_id"], "time": "ts", "window": "1m", "lateness": "10s", "subject": "product.{type}"}"#;
        let mut stage = testing::init::<WindowCount>(config).unwrap();
        let events: Vec<Event> = include_str!("../../../pipelines/samples/product-events.jsonl")
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            // The pipeline's filter stage.
            .filter(|envelope| matches!(envelope["payload"]["type"].as_str(), Some("view" | "cart")))
            .map(|envelope| Event::new_json(envelope["subject"].as_str().unwrap(), &envelope["payload"]).unwrap())
            .collect();
        assert_eq!(events.len(), 36);
        assert!(testing::process(&mut stage, events).unwrap().iter().all(|r| r.as_ref().is_ok_and(Vec::is_empty)));
        let out = testing::tick(&mut stage, 1 << 53).unwrap();
        assert_eq!(out.len(), 27);
        assert_eq!(out.iter().filter(|e| e.subject == "product.view").count(), 18);
        assert_eq!(out.iter().map(|e| payload(e)["count"].as_u64().unwrap()).sum::<u64>(), 36);
        let first = payload(&out[0]);
        assert_eq!(first["key"], json!({ "type": "cart", "product_id": "p-1207", "shop_id": "s-101" }));
        assert_eq!(first["window_start"], 1_795_687_200_000_u64);
    }

    #[test]
    fn config_errors_name_the_key() {
        let error = |config: &str| testing::init::<WindowCount>(config).err().unwrap();
        assert!(error(r#"{"window": "1m", "subject": "m"}"#).starts_with("config.key is required"));
        assert!(error(r#"{"key": "k", "subject": "m"}"#).starts_with("config.window is required"));
        assert!(error(r#"{"key": "k", "window": "1m"}"#).starts_with("config.subject is required"));
        assert_eq!(
            error(r#"{"key": "k", "window": "1m", "subject": "m.{type}"}"#),
            "config.subject: {type} is not a part of config.key (one of: k)"
        );
        assert!(error(r#"{"key": "k", "window": "1m", "subject": "m.*"}"#).contains("is not a valid subject"));
        assert!(error(r#"{"key": "k", "window": "1m", "subject": "m.{k"}"#).contains("unbalanced"));
        assert!(error(r#"{"key": "k", "window": "1m", "slide": "7s", "subject": "m"}"#).starts_with("config.slide: must divide config.window"));
        assert!(error(r#"{"key": "k", "window": "1h", "slide": "1s", "subject": "m"}"#).starts_with("config.slide: must divide config.window into at most 60"));
        assert_eq!(
            error(r#"{"key": "k", "window": "1m", "subject": "m", "sum": "price"}"#),
            r#"config.sum: expected a list of field paths, found "price""#
        );
        assert_eq!(
            error(r#"{"key": "k", "window": "1m", "subject": "m", "windw": 1}"#),
            "config.windw: unknown key; valid: key, sum, time, window, slide, lateness, subject"
        );
        assert!(error(r#"{"key": "k", "window": "1m", "subject": "m", "lateness": "late"}"#).starts_with(r#"config.lateness: "late" is not a duration"#));
    }
}
