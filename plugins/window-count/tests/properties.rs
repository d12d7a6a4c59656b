//! Whatever the events and the ticks: no panic, every refusal is an
//! `invalid` with a reason, and every accepted event is counted exactly
//! once in the windows that come out.

use proptest::prelude::*;
use weir_sdk::serde_json::{Value, json};
use weir_sdk::{Event, testing};
use weir_window_count::WindowCount;

/// Times near the interesting places: zero, a real date, 2^53 and past it,
/// and values of the wrong type.
fn time() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..200_000).prop_map(Value::from),
        (1_795_687_200_000u64..1_795_687_500_000).prop_map(Value::from),
        ((1u64 << 53) - 100_000..(1u64 << 53) + 10).prop_map(Value::from),
        (weir_keyed::MAX_TIME - 1_000_000..weir_keyed::MAX_TIME + 10).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!("2026-11-26T10:00:00Z")),
        "(?s).{0,30}".prop_map(Value::String),
        Just(Value::Null),
        Just(json!([1])),
    ]
}

fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(&["a", "b", "c/d", "é", ""][..]).prop_map(|k| json!(k)),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!({ "x": 1 })),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Event(Value),
    Tick(u64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let event = (key(), time(), prop_oneof![any::<i32>().prop_map(Value::from), Just(json!("x"))]).prop_map(|(k, ts, n)| json!({ "k": k, "ts": ts, "n": n }));
    let step = prop_oneof![
        4 => event.prop_map(Step::Event),
        1 => prop_oneof![any::<u64>(), 1_795_687_200_000u64..1_795_687_500_000].prop_map(Step::Tick),
    ];
    prop::collection::vec(step, 0..40)
}

proptest! {
    #[test]
    fn every_accepted_event_is_counted_once(steps in steps(), sliding in any::<bool>()) {
        testing::state_clear();
        let (window, slide) = if sliding { ("3m", "1m") } else { ("1m", "1m") };
        let config = json!({ "key": "k", "sum": ["n"], "time": "ts", "window": window, "slide": slide, "lateness": "5s", "subject": "w.{k}" });
        let mut stage = testing::init::<WindowCount>(&config.to_string()).unwrap();
        let mut accepted = 0u64;
        let mut counted = 0u64;
        let count = |events: Vec<Event>| -> u64 {
            events.iter().map(|e| e.json_value().unwrap()["count"].as_u64().unwrap()).sum()
        };
        for step in steps {
            match step {
                Step::Event(payload) => {
                    let out = testing::process(&mut stage, vec![Event::new_json("in", &payload).unwrap()]).unwrap();
                    match &out[0] {
                        Ok(events) => {
                            prop_assert!(events.is_empty());
                            accepted += 1;
                        }
                        Err(error) => prop_assert!(error.is_invalid() && !error.message().is_empty()),
                    }
                }
                Step::Tick(now) => counted += count(testing::tick(&mut stage, now).unwrap()),
            }
        }
        // The end of time closes the rest, at most 10,000 windows a tick.
        loop {
            let out = testing::tick(&mut stage, 1 << 53).unwrap();
            if out.is_empty() { break; }
            counted += count(out);
        }
        prop_assert!(testing::state_keys("w/").is_empty());
        // An event may be counted in fewer windows than it falls in when
        // some were closed already; with tumbling windows, in exactly one.
        if sliding {
            prop_assert!(counted >= accepted && counted <= 3 * accepted);
        } else {
            prop_assert_eq!(counted, accepted);
        }
    }
}
