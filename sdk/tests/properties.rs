//! Property tests of the SDK's readers of config and payload text: paths
//! (`user.id`, `items.0.sku`), field selection and appended members; and
//! of the state's write buffer against a model.
//!
//! Whatever the input: no panic, and a rejection says what is wrong. Each
//! property runs 256 cases by default; set `PROPTEST_CASES` for more.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use weir_sdk::{Path, Selection, append_members};

/// Keys that collide in interesting ways: digits that also index arrays,
/// digits with leading zeros (another key, the same index), and indexes
/// far past any array.
const KEYS: &[&str] = &["a", "b", "0", "1", "00", "01", "2", "4000000000000", "18446744073709551615", "99999999999999999999", "a.b", ""];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_owned)
}

/// A JSON document whose objects use [`KEYS`].
fn document() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Quarters: serde_json reads them back exactly (without its
        // float_roundtrip feature, not every float is).
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
        "(?s).{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4).prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A path as written: segments from [`KEYS`] (the empty one makes it
/// invalid), or any text.
fn path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(&KEYS[..KEYS.len() - 2]), 1..4).prop_map(|s| s.join(".")),
        1 => prop::collection::vec(key(), 1..4).prop_map(|s| s.join(".")),
        1 => "(?s).{0,12}",
    ]
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(prop::sample::select(&KEYS[..KEYS.len() - 2]), 1..4).prop_map(|s| Path::parse(&s.join(".")).expect("no empty segment"))
}

/// `Path::get` written from the documented rules: an object's member by
/// key; an array's element when the segment is made of digits.
fn reference_get<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) if segment.bytes().all(|b| b.is_ascii_digit()) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

proptest! {
    /// Any text is a path or an error naming it; a path is shown as written.
    #[test]
    fn paths_parse_or_say_why(text in path_text()) {
        match Path::parse(&text) {
            Ok(path) => {
                prop_assert!(text.split('.').all(|s| !s.is_empty()));
                prop_assert_eq!(path.as_str(), text.as_str());
                prop_assert_eq!(path.to_string(), text.clone());
                prop_assert_eq!(Path::parse(&path.to_string()), Ok(path.clone()));
                prop_assert_eq!(text.parse::<Path>(), Ok(path));
            }
            Err(message) => {
                prop_assert!(text.split('.').any(str::is_empty));
                prop_assert_eq!(message, format!("path {text:?} has an empty segment"));
            }
        }
    }

    /// Reading a path follows the documented rules.
    #[test]
    fn get_follows_the_rules(doc in document(), path in path()) {
        prop_assert_eq!(path.get(&doc), reference_get(&doc, path.as_str()));
        let mut copy = doc.clone();
        prop_assert_eq!(path.get_mut(&mut copy).map(|v| v.clone()), path.get(&doc).cloned());
    }

    /// What `set` sets, `get` reads; what it cannot set, it says why.
    #[test]
    fn set_then_get(mut doc in document(), path in path(), new in document()) {
        match path.set(&mut doc, new.clone()) {
            Ok(()) => prop_assert_eq!(path.get(&doc), Some(&new)),
            Err(message) => {
                let start = format!("cannot set {:?}: ", path.as_str());
                prop_assert!(message.starts_with(&start), "{}", message);
            }
        }
    }

    /// `remove` takes out what `get` reads, and from an object leaves nothing.
    #[test]
    fn remove_takes_what_get_reads(mut doc in document(), path in path()) {
        let before = path.get(&doc).cloned();
        let removed = path.remove(&mut doc);
        prop_assert_eq!(&removed, &before);
        let parent_is_object = path
            .as_str()
            .rsplit_once('.')
            .map_or(doc.is_object(), |(parent, _)| reference_get(&doc, parent).is_some_and(Value::is_object));
        if parent_is_object {
            prop_assert_eq!(path.get(&doc), None);
        }
    }

    /// A selection reads every selected path as the whole payload does,
    /// however the payload is written.
    #[test]
    fn selections_read_as_the_whole_payload(doc in document(), paths in prop::collection::vec(path(), 0..5), pretty in any::<bool>()) {
        let bytes = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.expect("serialises");
        let read = Selection::new(&paths).parse(&bytes).map_err(|e| TestCaseError::fail(e.message().to_owned()))?;
        for path in &paths {
            prop_assert_eq!(path.get(&read), path.get(&doc), "{}", path);
        }
    }

    /// Any bytes are a selection or "not valid JSON", never a panic; what
    /// serde_json reads, a selection reads too.
    #[test]
    fn selections_of_any_bytes(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..32),
            (document(), any::<usize>(), any::<u8>()).prop_map(|(doc, at, b)| {
                let mut bytes = serde_json::to_vec(&doc).expect("serialises");
                let at = at % bytes.len();
                bytes[at] = b;
                bytes
            }),
            (document(), any::<usize>()).prop_map(|(doc, at)| {
                let bytes = serde_json::to_vec(&doc).expect("serialises");
                bytes[..at % (bytes.len() + 1)].to_vec()
            }),
        ],
        paths in prop::collection::vec(path(), 0..4),
    ) {
        let read = Selection::new(&paths).parse(&bytes);
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(whole) => {
                let read = read.map_err(|e| TestCaseError::fail(format!("{:?}: {}", String::from_utf8_lossy(&bytes), e.message())))?;
                for path in &paths {
                    prop_assert_eq!(path.get(&read), path.get(&whole), "{}", path);
                }
            }
            Err(_) => {
                // A value serde_json cannot hold (1e400) may be skipped, so
                // a selection can succeed where the whole read fails; a
                // selection's failure must say why.
                if let Err(error) = read {
                    prop_assert!(error.message().starts_with("payload is not valid JSON"), "{}", error.message());
                }
            }
        }
    }

    /// Appended members read back with the payload's own, which keep
    /// their text.
    #[test]
    fn appended_members_read_back(
        members in prop::collection::vec((key(), document()), 0..3),
        extra in prop::collection::btree_map("[x-z]{1,3}", document(), 0..3),
        pretty in any::<bool>(),
    ) {
        let doc: Map<String, Value> = members.into_iter().collect();
        let text = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.expect("serialises");
        let mut out = Vec::new();
        append_members(&mut out, &text, extra.iter().map(|(k, v)| (k.as_str(), v))).map_err(|e| TestCaseError::fail(e.message().to_owned()))?;
        let mut expected = doc.clone();
        expected.extend(extra.clone());
        prop_assert_eq!(serde_json::from_slice::<Value>(&out).ok(), Some(Value::Object(expected)), "{}", String::from_utf8_lossy(&out));
        let body = text.trim_ascii_end().strip_suffix(b"}").expect("an object");
        prop_assert!(out.starts_with(body.trim_ascii_end()), "the payload's own text is kept");
    }

    /// Anything but an object is refused, with a reason.
    #[test]
    fn appending_to_anything_else_is_refused(doc in document().prop_filter("not an object", |d| !d.is_object())) {
        let text = serde_json::to_vec(&doc).expect("serialises");
        let error = append_members(&mut Vec::new(), &text, [("k", &json!(1))]).expect_err("not an object");
        prop_assert_eq!(error.message(), "payload is not a JSON object");
    }
}

/// One operation on state, on keys from a few prefixes.
#[derive(Debug, Clone)]
enum StateOp {
    Put(String),
    Set(String),
    Delete(String),
    Flush,
    Discard,
}

fn state_key() -> impl Strategy<Value = String> {
    (prop::sample::select(&["a/", "a/b/", "b/", "", "ab"][..]), 0u8..6).prop_map(|(prefix, n)| format!("{prefix}{n}"))
}

fn state_ops() -> impl Strategy<Value = Vec<StateOp>> {
    let op = prop_oneof![
        2 => state_key().prop_map(StateOp::Put),
        3 => state_key().prop_map(StateOp::Set),
        3 => state_key().prop_map(StateOp::Delete),
        1 => Just(StateOp::Flush),
        1 => Just(StateOp::Discard),
    ];
    prop::collection::vec(op, 0..30)
}

proptest! {
    /// Reads through the write buffer see what a plain map would hold:
    /// `get` and `keys` (for every prefix and limit) agree with a model of
    /// the store with the buffered writes applied, and flushing or
    /// discarding leaves the store the model says.
    #[test]
    fn state_reads_see_buffered_writes(ops in state_ops(), prefix in prop::sample::select(&["", "a", "a/", "a/b/", "b/", "c"][..]), limit in 0u32..8) {
        use std::collections::BTreeMap;
        use weir_sdk::{state, testing};

        testing::state_clear();
        let mut store: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut pending: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for (i, op) in ops.into_iter().enumerate() {
            let value = i.to_string().into_bytes();
            match op {
                StateOp::Put(key) => {
                    testing::state_put(&key, value.clone());
                    store.insert(key, value);
                }
                StateOp::Set(key) => {
                    state::set(&key, value.clone());
                    pending.insert(key, Some(value));
                }
                StateOp::Delete(key) => {
                    state::delete(&key);
                    pending.insert(key, None);
                }
                StateOp::Flush => {
                    state::flush(0).unwrap();
                    for (key, value) in std::mem::take(&mut pending) {
                        match value {
                            Some(value) => store.insert(key, value),
                            None => store.remove(&key),
                        };
                    }
                }
                StateOp::Discard => {
                    state::discard();
                    pending.clear();
                }
            }
            let mut seen = store.clone();
            for (key, value) in &pending {
                match value {
                    Some(value) => seen.insert(key.clone(), value.clone()),
                    None => seen.remove(key),
                };
            }
            let expected: Vec<String> = seen.keys().filter(|k| k.starts_with(prefix)).take(limit as usize).cloned().collect();
            prop_assert_eq!(state::keys(prefix, limit), expected);
            for key in seen.keys().chain(store.keys()) {
                prop_assert_eq!(state::get(key), seen.get(key).cloned());
            }
            prop_assert_eq!(testing::state_keys(""), store.keys().cloned().collect::<Vec<_>>());
        }
        state::discard();
    }
}
