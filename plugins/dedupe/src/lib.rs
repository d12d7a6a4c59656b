//! `dedupe`: drops an event whose key was seen within a TTL.
//!
//! ```toml
//! [[stages]]
//! name = "dedupe"
//! plugin = "../plugins/dedupe.wasm"
//! timer = "10s"
//! config = { key = "order_id", ttl = "10m", time = "ts" }
//! ```
//!
//! See `README.md` for the whole story; in short:
//!
//! - `key` (required): a payload field path, `header:<name>`, `subject`,
//!   `subject:<n>`, or a list of them,
//! - `ttl` (required): how long a key is remembered (`"500ms"` … `"1d"`),
//! - `time` (optional): the payload field with the event's time (ms since
//!   1970, or RFC 3339); without it, the time the event is processed, which
//!   needs `grants = { clock = true }`.
//!
//! An event is a duplicate when an event with the same key was let through
//! less than `ttl` before or after it (by event time); duplicates are
//! dropped, everything else passes unchanged.
//!
//! State: `seen/<bucket>/<key>` holds the time the key was let through,
//! where `<bucket>` is that time divided by `ttl` (16 digits), so that the
//! timer expires whole buckets in key order without reading values; and
//! `latest` holds the latest bucket seen.

use weir_keyed::{Clock, Fields, Key};
use weir_sdk::{Config, Error, Event, Output, Stage, state};

/// The most keys one tick deletes; the next tick goes on.
pub const EXPIRE_PER_TICK: u32 = 10_000;

/// The stage: its key, TTL and clock.
pub struct Dedupe {
    key: Key,
    ttl: u64,
    clock: Clock,
    fields: Fields,
}

const KEYS: &[&str] = &["key", "ttl", "time"];

impl Stage for Dedupe {
    fn init(config: Config) -> Result<Self, String> {
        let table = weir_keyed::config_table(&config, KEYS)?;
        let key = Key::from_config(table.get("key"), "key")?;
        let ttl = weir_keyed::duration(table.get("ttl"), "ttl", false)?;
        let clock = Clock::from_config(table.get("time"), "dedupe")?;
        let fields = Fields::new(key.paths().chain(clock.path()));
        Ok(Dedupe { key, ttl, clock, fields })
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        let payload = self.fields.read(&event)?;
        let key = Key::text(&self.key.values(&event, &payload)?);
        let time = self.clock.time(&payload)?;
        let bucket = time / self.ttl;
        // A key let through at `first` matches times within `ttl` of it:
        // `first` is in this bucket or a neighbour.
        for near in [bucket.saturating_sub(1), bucket, bucket + 1] {
            let seen = seen_key(near, &key);
            if let Some(first) = state::get_json::<u64>(&seen)?
                && first.abs_diff(time) < self.ttl
            {
                return Ok(Output::Drop);
            }
        }
        state::set(&seen_key(bucket, &key), time.to_string());
        if latest().is_none_or(|latest| latest < bucket) {
            state::set(LATEST, bucket.to_string());
        }
        Ok(event.into())
    }

    /// Deletes the buckets that no event can match any more, oldest first,
    /// at most [`EXPIRE_PER_TICK`] keys.
    fn tick(&mut self, now: u64) -> Result<Vec<weir_sdk::Event>, String> {
        // Bucket `b` holds times before `(b + 1) * ttl`, which match events
        // before `(b + 2) * ttl`. Both the clock and the latest event time
        // must be past that: replayed old events still find their keys.
        let horizon = (now / self.ttl).min(latest().unwrap_or(0));
        for key in state::keys(SEEN, EXPIRE_PER_TICK) {
            match bucket_of(&key) {
                Some(bucket) if bucket.saturating_add(2) <= horizon => state::delete(&key),
                Some(_) => break,
                // Not a key this version writes: leave it.
                None => continue,
            }
        }
        Ok(Vec::new())
    }
}

weir_sdk::export_stage!(Dedupe);

const SEEN: &str = "seen/";
const LATEST: &str = "latest";

/// The latest bucket seen. Bookkeeping, not an event's data: a value this
/// version cannot read is taken as none, and the next event overwrites it.
fn latest() -> Option<u64> {
    state::get_json::<u64>(LATEST).unwrap_or_else(|error| {
        weir_sdk::warn!("{error}; it is reset");
        None
    })
}

fn seen_key(bucket: u64, key: &str) -> String {
    format!("{SEEN}{bucket:016}/{key}")
}

/// The bucket of a `seen/<bucket>/<key>` key.
fn bucket_of(key: &str) -> Option<u64> {
    let rest = key.strip_prefix(SEEN)?;
    let (bucket, _) = rest.split_once('/')?;
    bucket.parse().ok()
}

#[cfg(test)]
mod tests {
    use weir_sdk::serde_json::json;
    use weir_sdk::{Error, Event, testing};

    use super::Dedupe;

    const CONFIG: &str = r#"{"key": "order_id", "ttl": "10m", "time": "ts"}"#;
    const MINUTE: u64 = 60_000;
    const T0: u64 = 1_764_147_600_000;

    fn order(id: &str, ts: u64) -> Event {
        Event::new_json("orders", &json!({ "order_id": id, "ts": ts })).unwrap()
    }

    /// Which events pass.
    fn passed(stage: &mut Dedupe, events: Vec<Event>) -> Vec<bool> {
        testing::process(stage, events).unwrap().into_iter().map(|r| !r.unwrap().is_empty()).collect()
    }

    #[test]
    fn drops_a_key_seen_within_the_ttl_and_passes_it_after() {
        let mut stage = testing::init::<Dedupe>(CONFIG).unwrap();
        let events = vec![
            order("a", T0),
            order("a", T0 + 9 * MINUTE),  // within 10m: dropped
            order("b", T0 + MINUTE),      // another key
            order("a", T0 + 10 * MINUTE), // 10m after the first: passes again
            order("a", T0 + 15 * MINUTE), // within 10m of that one
        ];
        assert_eq!(passed(&mut stage, events), [true, false, true, true, false]);
        // Across batches and instances: the state is what remembers.
        let mut other = testing::init::<Dedupe>(CONFIG).unwrap();
        assert_eq!(passed(&mut other, vec![order("b", T0 + 2 * MINUTE)]), [false]);
    }

    #[test]
    fn an_earlier_event_time_within_the_ttl_is_a_duplicate_too() {
        let mut stage = testing::init::<Dedupe>(CONFIG).unwrap();
        assert_eq!(
            passed(&mut stage, vec![order("a", T0 + 30 * MINUTE), order("a", T0 + 21 * MINUTE), order("a", T0 + 20 * MINUTE)]),
            [true, false, true]
        );
    }

    #[test]
    fn a_passed_event_is_unchanged() {
        let event = order("a", T0).with_header("h", "v");
        assert_eq!(testing::run_one::<Dedupe>(CONFIG, event.clone()), Ok(vec![event]));
    }

    #[test]
    fn keys_from_headers_and_several_fields() {
        let mut stage = testing::init::<Dedupe>(r#"{"key": "header:Nats-Msg-Id", "ttl": "1h", "time": "ts"}"#).unwrap();
        let msg = |id: &str| order("x", T0).with_header("Nats-Msg-Id", id);
        assert_eq!(passed(&mut stage, vec![msg("m1"), msg("m2"), msg("m1")]), [true, true, false]);

        let mut stage = testing::init::<Dedupe>(r#"{"key": ["user", "item"], "ttl": "1h", "time": "ts"}"#).unwrap();
        let click = |user: u64, item: &str| Event::new_json("clicks", &json!({ "user": user, "item": item, "ts": T0 })).unwrap();
        assert_eq!(passed(&mut stage, vec![click(1, "a"), click(1, "b"), click(2, "a"), click(1, "a")]), [true, true, true, false]);
        assert!(testing::state_keys("seen/").contains(&format!("seen/{:016}/[1,\"a\"]", T0 / 3_600_000)));
    }

    #[test]
    fn without_a_time_field_it_uses_the_clock() {
        // Natively the clock runs; in weir it needs `grants = { clock = true }`.
        let mut stage = testing::init::<Dedupe>(r#"{"key": "order_id", "ttl": "1h"}"#).unwrap();
        let event = |id: &str| Event::new_json("orders", &json!({ "order_id": id })).unwrap();
        assert_eq!(passed(&mut stage, vec![event("a"), event("a"), event("b")]), [true, false, true]);
    }

    #[test]
    fn the_timer_expires_old_buckets_in_chunks() {
        let mut stage = testing::init::<Dedupe>(CONFIG).unwrap();
        let ttl = 10 * MINUTE;
        let events = (0..5).map(|i| order(&format!("o{i}"), T0 + i * ttl)).collect();
        assert_eq!(passed(&mut stage, events), [true; 5]);
        assert_eq!(testing::state_keys("seen/").len(), 5);
        // The clock is far ahead, the latest event at bucket 4: buckets 0-2 go.
        assert_eq!(testing::tick(&mut stage, 1 << 53), Ok(vec![]));
        let left = testing::state_keys("seen/");
        assert_eq!(left.len(), 2, "{left:?}");
        // Keys of buckets 3 and 4 still catch duplicates.
        assert_eq!(passed(&mut stage, vec![order("o3", T0 + 3 * ttl + 1), order("o4", T0 + 4 * ttl + 1)]), [false, false]);
        // A clock behind the events expires only what it has passed.
        testing::state_clear();
        assert_eq!(passed(&mut stage, (0..3).map(|i| order("k", T0 + i * ttl)).collect()), [true; 3]);
        testing::tick(&mut stage, T0).unwrap();
        assert_eq!(testing::state_keys("seen/").len(), 3);
        testing::tick(&mut stage, T0 + 2 * ttl).unwrap();
        assert_eq!(testing::state_keys("seen/").len(), 2);
    }

    #[test]
    fn one_tick_deletes_at_most_ten_thousand_keys() {
        let mut stage = testing::init::<Dedupe>(CONFIG).unwrap();
        for i in 0..10_005 {
            testing::state_put(&format!("seen/0000000000000001/k{i}"), "1");
        }
        testing::state_put("latest", "100");
        testing::tick(&mut stage, 1 << 53).unwrap();
        assert_eq!(testing::state_keys("seen/").len(), 5);
        testing::tick(&mut stage, 1 << 53).unwrap();
        assert_eq!(testing::state_keys("seen/").len(), 0);
    }

    #[test]
    fn bad_events_are_invalid_with_the_reason() {
        let run = |payload: &str| testing::run_one::<Dedupe>(CONFIG, Event::new("orders", payload)).unwrap_err();
        assert_eq!(run(r#"{"ts": 1}"#), Error::invalid(r#"payload has no field "order_id" (the key)"#));
        assert_eq!(run(r#"{"order_id": "a"}"#), Error::invalid(r#"payload has no field "ts" (the event time)"#));
        assert!(
            run(r#"{"order_id": "a", "ts": "noon"}"#)
                .message()
                .starts_with(r#"field "ts" (the event time) is "noon", not an RFC 3339 time"#)
        );
        assert!(run(r#"{"order_id": {"x": 1}, "ts": 1}"#).message().contains("is an object or a list"));
        assert!(run("not json").message().starts_with("payload is not valid JSON"));
        let no_header = testing::run_one::<Dedupe>(r#"{"key": "header:Nats-Msg-Id", "ttl": "1m", "time": "ts"}"#, order("a", T0));
        assert_eq!(no_header, Err(Error::invalid(r#"event has no header "Nats-Msg-Id" (the key)"#)));
    }

    #[test]
    fn state_an_older_version_wrote_is_reported_with_its_key() {
        let mut stage = testing::init::<Dedupe>(CONFIG).unwrap();
        let key = format!("seen/{:016}/a", T0 / (10 * MINUTE));
        testing::state_put(&key, r#"{"first": 1}"#);
        let error = testing::process(&mut stage, vec![order("a", T0)]).unwrap().remove(0).unwrap_err();
        assert!(
            error
                .message()
                .starts_with(&format!(r#"state "{key}" does not decode as the stage expects (written by an older version?): "#)),
            "{error}"
        );
    }

    #[test]
    fn unreadable_bookkeeping_is_reset_rather_than_failing_every_event() {
        let mut stage = testing::init::<Dedupe>(CONFIG).unwrap();
        testing::state_put("latest", "not a number");
        assert_eq!(passed(&mut stage, vec![order("a", T0), order("a", T0 + 1)]), [true, false]);
        assert_eq!(testing::state_get("latest"), Some((T0 / (10 * MINUTE)).to_string().into_bytes()));
        assert_eq!(testing::tick(&mut stage, 1 << 53), Ok(vec![]));
    }

    #[test]
    fn config_errors_name_the_key() {
        let error = |config: &str| testing::init::<Dedupe>(config).err().unwrap();
        assert!(error(r#"{"ttl": "1m"}"#).starts_with("config.key is required"));
        assert!(error(r#"{"key": "id"}"#).starts_with("config.ttl is required"));
        assert!(error(r#"{"key": "id", "ttl": "soon"}"#).starts_with(r#"config.ttl: "soon" is not a duration"#));
        assert_eq!(error(r#"{"key": "id", "ttl": "1m", "tll": 1}"#), "config.tll: unknown key; valid: key, ttl, time");
        assert_eq!(error(r#"{"key": "id", "ttl": "1m", "time": 5}"#), "config.time: expected a field path, found 5");
        assert_eq!(error(r#"[1]"#), "config: expected a table, found [1]");
    }
}
