//! Whatever the events and the ticks: no panic, every refusal is an
//! `invalid` with a reason, a passed event is unchanged, and the same key
//! never passes twice within the TTL, unless the timer had forgotten it:
//! an event more than about two TTLs older than the latest one let through
//! may find its key expired (what keeps the state bounded).

use std::collections::HashMap;

use proptest::prelude::*;
use weir_dedupe::Dedupe;
use weir_sdk::serde_json::{Value, json};
use weir_sdk::{Event, testing};

const TTL: u64 = 60_000;

fn time() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (1_795_687_200_000u64..1_795_687_500_000).prop_map(Value::from),
        1 => (0u64..200_000).prop_map(Value::from),
        1 => ((1u64 << 53) - 100_000..(1u64 << 53) + 10).prop_map(Value::from),
        1 => (weir_keyed::MAX_TIME - 1_000_000..weir_keyed::MAX_TIME + 10).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => "(?s).{0,30}".prop_map(Value::String),
        1 => Just(Value::Null),
    ]
}

fn id() -> impl Strategy<Value = Value> {
    prop_oneof![prop::sample::select(&["a", "b", "c/d", ""][..]).prop_map(|k| json!(k)), (0i32..3).prop_map(Value::from), Just(Value::Null), Just(json!({})),]
}

#[derive(Debug, Clone)]
enum Step {
    Event(Value),
    Tick(u64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let event = (id(), time()).prop_map(|(id, ts)| json!({ "id": id, "ts": ts }));
    let step = prop_oneof![
        4 => event.prop_map(Step::Event),
        1 => prop_oneof![any::<u64>(), 1_795_687_200_000u64..1_795_687_500_000].prop_map(Step::Tick),
    ];
    prop::collection::vec(step, 0..40)
}

proptest! {
    #[test]
    fn a_key_never_passes_twice_within_the_ttl(steps in steps()) {
        testing::state_clear();
        let mut stage = testing::init::<Dedupe>(r#"{"key": "id", "ttl": "1m", "time": "ts"}"#).unwrap();
        // Key -> times let through.
        let mut passed: HashMap<String, Vec<u64>> = HashMap::new();
        // What the stage's ticks expire: buckets (time / TTL) up to this
        // minus 2, the clock and the latest bucket let through permitting.
        let (mut latest, mut forgotten) = (0u64, 0u64);
        for step in steps {
            match step {
                Step::Event(payload) => {
                    let event = Event::new_json("in", &payload).unwrap();
                    let out = testing::process(&mut stage, vec![event.clone()]).unwrap();
                    match &out[0] {
                        Ok(events) if events.is_empty() => {}
                        Ok(events) => {
                            prop_assert_eq!(events, &vec![event]);
                            let key = match &payload["id"] { Value::String(s) => s.clone(), other => other.to_string() };
                            let time = payload["ts"].as_u64().unwrap_or_else(|| payload["ts"].as_f64().map_or(0, |f| f as u64));
                            let times = passed.entry(key).or_default();
                            // Earlier times within the TTL are in this bucket
                            // or the one before, kept unless forgotten.
                            if time / TTL + 1 > forgotten {
                                prop_assert!(times.iter().all(|t| t.abs_diff(time) >= TTL), "{times:?} then {time}");
                            }
                            times.push(time);
                            latest = latest.max(time / TTL);
                        }
                        Err(error) => prop_assert!(error.is_invalid() && !error.message().is_empty()),
                    }
                }
                Step::Tick(now) => {
                    prop_assert_eq!(testing::tick(&mut stage, now), Ok(vec![]));
                    forgotten = forgotten.max((now / TTL).min(latest));
                }
            }
        }
    }
}
