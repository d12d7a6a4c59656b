//! Whatever the events and the ticks: no panic, every refusal is an
//! `invalid` with a reason, every accepted event carries a session, and
//! every accepted event is in exactly one summary in the end.

use proptest::prelude::*;
use weir_sdk::serde_json::{Value, json};
use weir_sdk::{Event, testing};
use weir_sessionize::Sessionize;

fn time() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..200_000).prop_map(Value::from),
        (1_795_687_200_000u64..1_795_700_000_000).prop_map(Value::from),
        ((1u64 << 53) - 100_000..(1u64 << 53) + 10).prop_map(Value::from),
        (weir_keyed::MAX_TIME - 1_000_000..weir_keyed::MAX_TIME + 10).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "(?s).{0,30}".prop_map(Value::String),
        Just(Value::Null),
    ]
}

fn visitor() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(&["ada", "bob", "c/d", "\r\n", ""][..]).prop_map(|k| json!(k)),
        any::<i32>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([])),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Event(Value),
    Tick(u64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let event = (visitor(), time()).prop_map(|(v, ts)| json!({ "v": v, "ts": ts }));
    let step = prop_oneof![
        4 => event.prop_map(Step::Event),
        1 => prop_oneof![any::<u64>(), 1_795_687_200_000u64..1_795_700_000_000].prop_map(Step::Tick),
    ];
    prop::collection::vec(step, 0..40)
}

fn events_in(summaries: &[Event]) -> u64 {
    summaries
        .iter()
        .filter(|e| e.subject == "sessions")
        .map(|e| e.json_value().unwrap()["events"].as_u64().unwrap())
        .sum()
}

proptest! {
    #[test]
    fn every_accepted_event_is_in_one_summary(steps in steps()) {
        testing::state_clear();
        let mut stage = testing::init::<Sessionize>(r#"{"key": "v", "gap": "10m", "time": "ts", "subject": "sessions"}"#).unwrap();
        let (mut accepted, mut summarised) = (0u64, 0u64);
        for step in steps {
            match step {
                Step::Event(payload) => {
                    let out = testing::process(&mut stage, vec![Event::new_json("in", &payload).unwrap()]).unwrap();
                    match &out[0] {
                        Ok(events) => {
                            accepted += 1;
                            let passed = events.last().unwrap();
                            prop_assert_eq!(&passed.subject, "in");
                            prop_assert!(passed.header("weir-session").is_some_and(|id| !id.chars().any(char::is_control)));
                            summarised += events_in(&events[..events.len() - 1]);
                        }
                        Err(error) => prop_assert!(error.is_invalid() && !error.message().is_empty()),
                    }
                }
                Step::Tick(now) => summarised += events_in(&testing::tick(&mut stage, now).unwrap()),
            }
        }
        loop {
            let out = testing::tick(&mut stage, 1 << 53).unwrap();
            if out.is_empty() { break; }
            summarised += events_in(&out);
        }
        prop_assert!(testing::state_keys("").is_empty(), "{:?}", testing::state_keys(""));
        prop_assert_eq!(summarised, accepted);
    }
}
