//! Keyed state that outlives an event: counters, windows, seen ids,
//! sessions.
//!
//! Each stage of each pipeline has its own keys (strings of 1 to 1024
//! bytes) and values (bytes), which weir keeps in NATS KV. A value written
//! here is seen by every later event, in every instance and every weir
//! process that runs the pipeline, and it survives restarts.
//!
//! ```
//! use weir_sdk::{state, testing, Config, Error, Event, Output, Stage};
//!
//! /// Numbers each user's events: 1, 2, 3, ...
//! struct Nth;
//!
//! impl Stage for Nth {
//!     fn init(_: Config) -> Result<Self, String> { Ok(Nth) }
//!
//!     fn process(&mut self, event: Event) -> Result<Output, Error> {
//!         let user = event.header("user").ok_or_else(|| Error::invalid("no header \"user\""))?.to_owned();
//!         let n = state::add(&format!("n/{user}"), 1)?;
//!         Ok(event.with_header("nth", n.to_string()).into())
//!     }
//! }
//!
//! let mut stage = testing::init::<Nth>("{}").unwrap();
//! let ada = || Event::new("clicks", "").with_header("user", "ada");
//! let out = testing::process(&mut stage, vec![ada(), ada()]).unwrap();
//! assert_eq!(out[1].as_ref().unwrap()[0].header("nth"), Some("2"));
//! assert_eq!(testing::state_get("n/ada"), Some(b"2".to_vec()));
//! ```
//!
//! # What weir keeps
//!
//! Writes ([`set`], [`delete`], and the helpers built on them) are buffered
//! in the stage, per event, and handed to weir in one call once the event is
//! done:
//!
//! - the default [`Stage::process_batch`] sends
//!   an event's writes after its [`process`](crate::Stage::process) returns
//!   `Ok`, on behalf of that event; an `Err` discards them, so a refused
//!   event leaves the state as it was;
//! - if weir refuses the writes (the stage's `limits.state` or
//!   `limits.state_value` would be exceeded, or a key is empty or over 1024
//!   bytes), the event becomes an [`Error::invalid`] with weir's message, and
//!   none of its writes are kept;
//! - weir keeps an event's writes only if the event then succeeds through
//!   the rest of the pipeline, and commits them, exactly once, before it
//!   acknowledges the input;
//! - in [`Stage::tick`], the writes are sent after `tick`
//!   returns `Ok` and are committed together with the events it returns; an
//!   `Err` discards them.
//!
//! Reads ([`get`], [`keys`]) see the current event's own buffered writes
//! first, then what weir has: the state as committed, plus the writes of the
//! earlier events of the same batch.
//!
//! State belongs to events and ticks: writes made in
//! [`Stage::init`] are discarded before the first batch.
//!
//! A stage that overrides `process_batch` and never calls [`flush`] has all
//! the writes of its batch sent at the end of the batch, on behalf of the
//! first event whose result is `Ok` (and discarded if there is none), so
//! they live or die with that event. To tie writes to the event that made
//! them, call [`flush`] with the event's index after its work, and
//! [`discard`] when an event fails.
//!
//! # Values
//!
//! Values are bytes. [`get_json`] and [`set_json`] store JSON; [`add`] keeps
//! a counter as a decimal integer (which is JSON too). A value that no
//! longer decodes (written by an older version of the stage) is an
//! [`Error::invalid`] naming the key, which `?` turns into a dead letter; a
//! stage may instead match the error and reset the value with [`set_json`].
//!
//! # Natively
//!
//! On `wasm32` these functions call weir's `state` import. On any other
//! target (a native `cargo test`) they use a per-thread test store that
//! [`testing::state_put`](crate::testing::state_put) fills and
//! [`testing::state_get`](crate::testing::state_get) reads, and
//! [`testing::process`](crate::testing::process) buffers, sends and
//! discards writes exactly as in weir. The test store checks keys (1 to
//! 1024 bytes) but applies no size limits: `limits.state` and
//! `limits.state_value` exist only in weir.
//!
//! A stage that never calls these functions imports nothing of them: its
//! component is a plain stage, as before 0.2.0. (The SDK reaches weir's
//! `state.apply` only through a function pointer that the first write
//! sets, so that the default batch loop, which every stage links, does not
//! import it.)

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Event, Output, Stage};

/// Buffered writes: key -> new value, `None` deleting it. Only the last
/// write of a key matters, so there is one entry per key.
type Writes = BTreeMap<String, Option<Vec<u8>>>;

/// Sends writes to weir on behalf of an event.
type ApplyFn = fn(u32, Writes) -> Result<(), String>;

thread_local! {
    static PENDING: RefCell<Writes> = const { RefCell::new(BTreeMap::new()) };
    /// Set by the first write. Sending goes through this pointer so that a
    /// stage that never writes never references weir's `state.apply`, and
    /// its component does not import `state` at all.
    static APPLY: Cell<Option<ApplyFn>> = const { Cell::new(None) };
}

/// The value of `key`, or `None` when it was never set or was deleted.
///
/// The current event's own writes are seen first.
///
/// ```
/// use weir_sdk::{state, testing};
///
/// testing::state_put("greeting", "hello");
/// assert_eq!(state::get("greeting"), Some(b"hello".to_vec()));
/// state::set("greeting", "hi");
/// assert_eq!(state::get("greeting"), Some(b"hi".to_vec()));
/// state::delete("greeting");
/// assert_eq!(state::get("greeting"), None);
/// # state::discard();
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    if let Some(buffered) = PENDING.with_borrow(|pending| pending.get(key).cloned()) {
        return buffered;
    }
    host::get(key)
}

/// Sets `key` to `value`.
///
/// The write is buffered and sent to weir when the event is done (see the
/// [module docs](self)); a key that is empty or over 1024 bytes, or a value
/// over the stage's `limits.state_value`, then fails the event.
///
/// ```
/// use weir_sdk::state;
///
/// state::set("last-seen/ada", "1764147600000");
/// assert_eq!(state::get("last-seen/ada"), Some(b"1764147600000".to_vec()));
/// # state::discard();
/// ```
pub fn set(key: &str, value: impl Into<Vec<u8>>) {
    buffer(key, Some(value.into()));
}

/// Deletes `key`; deleting a key that does not exist is not an error.
///
/// ```
/// use weir_sdk::{state, testing};
///
/// testing::state_put("seen/order-7", "1");
/// state::delete("seen/order-7");
/// assert_eq!(state::get("seen/order-7"), None);
/// # state::discard();
/// ```
pub fn delete(key: &str) {
    buffer(key, None);
}

fn buffer(key: &str, value: Option<Vec<u8>>) {
    APPLY.set(Some(host::apply));
    PENDING.with_borrow_mut(|pending| match pending.get_mut(key) {
        Some(slot) => *slot = value,
        None => {
            pending.insert(key.to_owned(), value);
        }
    });
}

/// The keys that start with `prefix`, in byte order, at most `limit` of
/// them.
///
/// Use prefixes as directories (`seen/`, `w/<start>/`), and zero-padded
/// numbers where the order matters: keys sort as bytes, so `w/0009` comes
/// before `w/0010`. A stage that cleans up in [`Stage::tick`]
/// reads a bounded chunk per tick and deletes what it is done with; the
/// next tick continues from there.
///
/// ```
/// use weir_sdk::{state, testing};
///
/// testing::state_put("w/0010/a", "1");
/// testing::state_put("w/0009/b", "1");
/// testing::state_put("x/0001", "1");
/// state::set("w/0011/c", "1");
/// state::delete("w/0009/b");
/// assert_eq!(state::keys("w/", 10), ["w/0010/a", "w/0011/c"]);
/// assert_eq!(state::keys("w/", 1), ["w/0010/a"]);
/// # state::discard();
/// ```
pub fn keys(prefix: &str, limit: u32) -> Vec<String> {
    let (deleted, written) = PENDING.with_borrow(|pending| {
        let mut deleted = BTreeSet::new();
        let mut written = BTreeSet::new();
        for (key, value) in pending.range(prefix.to_owned()..).take_while(|(key, _)| key.starts_with(prefix)) {
            match value {
                Some(_) => written.insert(key.clone()),
                None => deleted.insert(key.clone()),
            };
        }
        (deleted, written)
    });
    // Ask for as many more as may be deleted: the first `limit` of what
    // remains are then among them.
    let extra = u32::try_from(deleted.len()).unwrap_or(u32::MAX);
    let mut all: BTreeSet<String> = host::keys(prefix, limit.saturating_add(extra))
        .into_iter()
        .filter(|key| !deleted.contains(key))
        .collect();
    all.extend(written);
    all.into_iter().take(limit as usize).collect()
}

/// Reads `key` as JSON into `T`; `Ok(None)` when it is not set.
///
/// A value that does not decode as `T` is an [`Error::invalid`] naming the
/// key. Returning it with `?` dead-letters the event; a stage that would
/// rather start over matches the error and overwrites the value.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use weir_sdk::{state, testing};
///
/// #[derive(Debug, Default, Serialize, Deserialize)]
/// struct Visits { count: u64 }
///
/// testing::state_put("visits/ada", r#"{"count": 3}"#);
/// testing::state_put("visits/bob", "3");
///
/// let ada: Option<Visits> = state::get_json("visits/ada").unwrap();
/// assert_eq!(ada.unwrap().count, 3);
/// assert!(state::get_json::<Visits>("visits/eve").unwrap().is_none());
///
/// let error = state::get_json::<Visits>("visits/bob").unwrap_err();
/// assert!(error.message().starts_with(
///     r#"state "visits/bob" does not decode as the stage expects (written by an older version?): "#
/// ));
/// // Or reset it:
/// let bob = state::get_json::<Visits>("visits/bob").unwrap_or(None).unwrap_or_default();
/// assert_eq!(bob.count, 0);
/// ```
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    let Some(bytes) = get(key) else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| Error::invalid(format!("state {key:?} does not decode as the stage expects (written by an older version?): {error}")))
}

/// Writes `value` as JSON under `key`.
///
/// An error only when `value` cannot be written as JSON (a map with
/// non-string keys, a float that is NaN).
///
/// ```
/// use weir_sdk::{serde_json::json, state};
///
/// state::set_json("window/1764147600000", &json!({ "count": 2 })).unwrap();
/// assert_eq!(state::get("window/1764147600000"), Some(br#"{"count":2}"#.to_vec()));
/// # state::discard();
/// ```
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value).map_err(|error| Error::invalid(format!("cannot write state {key:?} as JSON: {error}")))?;
    set(key, bytes);
    Ok(())
}

/// Adds `delta` to the counter `key` (0 when not set) and returns the new
/// value; `add(key, 0)` reads it.
///
/// The counter is stored as a decimal integer. A value that is not one, or
/// a sum that would overflow an `i64`, is an [`Error::invalid`] naming the
/// key, and the counter is left as it was.
///
/// ```
/// use weir_sdk::{state, testing};
///
/// assert_eq!(state::add("views/p-1", 1).unwrap(), 1);
/// assert_eq!(state::add("views/p-1", 2).unwrap(), 3);
/// assert_eq!(state::add("views/p-1", 0).unwrap(), 3);
/// assert_eq!(state::get("views/p-1"), Some(b"3".to_vec()));
///
/// testing::state_put("views/p-2", "many");
/// assert!(state::add("views/p-2", 1).unwrap_err().message().starts_with(r#"state "views/p-2" does not decode"#));
/// # state::discard();
/// ```
pub fn add(key: &str, delta: i64) -> Result<i64, Error> {
    let current = get_json::<i64>(key)?.unwrap_or(0);
    let sum = current
        .checked_add(delta)
        .ok_or_else(|| Error::invalid(format!("state {key:?}: adding {delta} to {current} overflows a 64-bit counter")))?;
    if delta != 0 {
        set(key, sum.to_string());
    }
    Ok(sum)
}

/// Sends the writes buffered so far to weir, on behalf of the event at
/// index `event` of the batch (in a tick, any index).
///
/// Only a stage that overrides [`Stage::process_batch`] needs it (the
/// default one, and the ticks, flush for you): call it after each event's
/// work, with that event's index, and [`discard`] when the event fails.
/// An `Err` is weir's refusal (a limit, a bad key), as an
/// [`Error::invalid`]: none of the writes were kept; make it the event's
/// result.
///
/// ```
/// use weir_sdk::{state, testing, Config, Error, Event, Output, Stage};
///
/// /// Counts the events of each subject, a batch at a time.
/// struct Tally;
///
/// impl Stage for Tally {
///     fn init(_: Config) -> Result<Self, String> { Ok(Tally) }
///     fn process(&mut self, event: Event) -> Result<Output, Error> { Ok(event.into()) }
///
///     fn process_batch(&mut self, events: Vec<Event>) -> Vec<Result<Output, Error>> {
///         events
///             .into_iter()
///             .enumerate()
///             .map(|(i, event)| {
///                 state::add(&format!("n/{}", event.subject), 1)?;
///                 state::flush(i)?;
///                 Ok(event.into())
///             })
///             .collect()
///     }
/// }
///
/// let mut stage = testing::init::<Tally>("{}").unwrap();
/// testing::process(&mut stage, vec![Event::new("a", ""), Event::new("a", "")]).unwrap();
/// assert_eq!(testing::state_get("n/a"), Some(b"2".to_vec()));
/// ```
pub fn flush(event: usize) -> Result<(), Error> {
    let writes = PENDING.with_borrow_mut(std::mem::take);
    if writes.is_empty() {
        return Ok(());
    }
    // black_box: seeing that only `host::apply` is ever stored, the
    // optimizer would call it directly, and every stage would import it.
    let apply = std::hint::black_box(APPLY.get()).expect("weir-sdk: writes are buffered only through `buffer`, which sets APPLY");
    apply(u32::try_from(event).unwrap_or(u32::MAX), writes).map_err(Error::invalid)
}

/// Forgets the writes buffered since the last flush.
///
/// The default [`Stage::process_batch`] calls it for an event that
/// returned `Err`; a stage that overrides it calls it for such events
/// itself (see [`flush`]).
///
/// ```
/// use weir_sdk::state;
///
/// state::set("k", "v");
/// state::discard();
/// assert_eq!(state::get("k"), None);
/// ```
pub fn discard() {
    PENDING.with_borrow_mut(BTreeMap::clear);
}

/// What the default `process_batch` does after each event: keep its writes
/// if it succeeded, forget them if not.
pub(crate) fn finish_event(index: usize, result: Result<Output, Error>) -> Result<Output, Error> {
    match result {
        Ok(output) => flush(index).map(|()| output),
        Err(error) => {
            discard();
            Err(error)
        }
    }
}

/// Runs one batch through a stage: the one path for the component and for
/// [`testing::process`](crate::testing::process).
pub(crate) fn run_batch<T: Stage>(stage: &mut T, events: Vec<Event>) -> Vec<Result<Output, Error>> {
    discard();
    let count = events.len();
    let mut results = stage.process_batch(events);
    if results.len() != count {
        // A fault: weir throws the call away, writes and all.
        discard();
        return results;
    }
    // An override's writes that it did not flush: on behalf of the first
    // event that succeeded.
    if PENDING.with_borrow(|pending| !pending.is_empty()) {
        match results.iter().position(Result::is_ok) {
            Some(first) => {
                if let Err(error) = flush(first) {
                    results[first] = Err(error);
                }
            }
            None => discard(),
        }
    }
    results
}

/// Runs one tick: its writes are sent if it succeeds, forgotten if not.
pub(crate) fn run_tick<T: Stage>(stage: &mut T, now: u64) -> Result<Vec<Event>, String> {
    discard();
    match stage.tick(now) {
        Ok(events) => match flush(0) {
            Ok(()) => Ok(events),
            Err(error) => Err(format!("the tick's state writes were refused: {error}")),
        },
        Err(message) => {
            discard();
            Err(message)
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod host {
    use super::Writes;
    use crate::__private::bindings::weir::stage::state;

    pub fn get(key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    pub fn keys(prefix: &str, limit: u32) -> Vec<String> {
        state::keys(prefix, limit)
    }

    pub fn apply(event: u32, writes: Writes) -> Result<(), String> {
        let writes: Vec<state::Write> = writes.into_iter().map(|(key, value)| state::Write { key, value }).collect();
        state::apply(event, &writes)
    }
}

/// The native test store: what weir would have committed.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::Writes;

    /// The longest key weir accepts, in bytes.
    const MAX_KEY: usize = 1024;

    thread_local! {
        pub static STORE: RefCell<BTreeMap<String, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn get(key: &str) -> Option<Vec<u8>> {
        STORE.with_borrow(|store| store.get(key).cloned())
    }

    pub fn keys(prefix: &str, limit: u32) -> Vec<String> {
        STORE.with_borrow(|store| {
            store
                .range(prefix.to_owned()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .take(limit as usize)
                .map(|(key, _)| key.clone())
                .collect()
        })
    }

    pub fn apply(_event: u32, writes: Writes) -> Result<(), String> {
        for key in writes.keys() {
            if key.is_empty() {
                return Err("state key is empty".to_owned());
            }
            if key.len() > MAX_KEY {
                let start: String = key.chars().take(40).collect();
                return Err(format!("state key \"{start}…\" is {} bytes, over the limit of {MAX_KEY}", key.len()));
            }
        }
        STORE.with_borrow_mut(|store| {
            for (key, value) in writes {
                match value {
                    Some(value) => store.insert(key, value),
                    None => store.remove(&key),
                };
            }
        });
        Ok(())
    }
}

/// Used by [`testing`](crate::testing).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod test_store {
    use super::host::STORE;

    pub fn put(key: &str, value: Vec<u8>) {
        STORE.with_borrow_mut(|store| store.insert(key.to_owned(), value));
    }

    pub fn get(key: &str) -> Option<Vec<u8>> {
        super::host::get(key)
    }

    pub fn keys(prefix: &str) -> Vec<String> {
        super::host::keys(prefix, u32::MAX)
    }

    pub fn clear() {
        STORE.with_borrow_mut(std::collections::BTreeMap::clear);
        super::discard();
    }

    /// The store as it is, for [`restore`] after a faulty batch.
    pub fn snapshot() -> std::collections::BTreeMap<String, Vec<u8>> {
        STORE.with_borrow(Clone::clone)
    }

    pub fn restore(snapshot: std::collections::BTreeMap<String, Vec<u8>>) {
        STORE.set(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::{add, get, keys, set};
    use crate::{Config, Error, Event, Output, Stage, testing};

    /// Counts per payload; "fail" counts, then refuses the event; "long"
    /// writes a key weir refuses.
    struct Count;

    impl Stage for Count {
        fn init(_: Config) -> Result<Self, String> {
            Ok(Count)
        }

        fn process(&mut self, event: Event) -> Result<Output, Error> {
            let payload = event.payload_str()?.to_owned();
            let n = add(&format!("n/{payload}"), 1)?;
            match payload.as_str() {
                "fail" => Err(Error::invalid("refused")),
                "long" => {
                    set(&"k".repeat(1025), "x");
                    Ok(event.into())
                }
                _ => Ok(event.with_header("n", n.to_string()).into()),
            }
        }

        fn tick(&mut self, now: u64) -> Result<Vec<Event>, String> {
            set("ticked", now.to_string());
            if now == 0 { Err("not now".into()) } else { Ok(vec![]) }
        }
    }

    fn batch(payloads: &[&str]) -> Vec<Event> {
        payloads.iter().map(|p| Event::new("s", *p)).collect()
    }

    #[test]
    fn an_event_keeps_its_writes_only_if_it_succeeds() {
        let mut stage = testing::init::<Count>("{}").unwrap();
        let out = testing::process(&mut stage, batch(&["a", "fail", "a", "long"])).unwrap();
        // The second "a" read the first one's write, applied before it.
        assert_eq!(out[2].as_ref().unwrap()[0].header("n"), Some("2"));
        assert_eq!(out[1], Err(Error::invalid("refused")));
        let refused = out[3].as_ref().unwrap_err();
        assert!(refused.is_invalid() && refused.message().contains("over the limit of 1024"), "{refused}");
        assert_eq!(testing::state_get("n/a"), Some(b"2".to_vec()));
        // Neither the refused event's count nor the refused write's.
        assert_eq!(testing::state_get("n/fail"), None);
        assert_eq!(testing::state_get("n/long"), None);
        assert_eq!(testing::state_keys(""), ["n/a"]);
    }

    #[test]
    fn a_tick_keeps_its_writes_only_if_it_succeeds() {
        let mut stage = testing::init::<Count>("{}").unwrap();
        assert_eq!(testing::tick(&mut stage, 0), Err("not now".into()));
        assert_eq!(testing::state_get("ticked"), None);
        assert_eq!(testing::tick(&mut stage, 1 << 53), Ok(vec![]));
        assert_eq!(testing::state_get("ticked"), Some(b"9007199254740992".to_vec()));
    }

    /// Overrides `process_batch` without flushing: the writes go with the
    /// first event that succeeded, or nowhere.
    struct Batched;

    impl Stage for Batched {
        fn init(_: Config) -> Result<Self, String> {
            Ok(Batched)
        }

        fn process(&mut self, event: Event) -> Result<Output, Error> {
            Ok(event.into())
        }

        fn process_batch(&mut self, events: Vec<Event>) -> Vec<Result<Output, Error>> {
            events
                .into_iter()
                .map(|event| {
                    add("seen", 1)?;
                    if event.payload == b"bad" { Err(Error::invalid("bad")) } else { Ok(event.into()) }
                })
                .collect()
        }
    }

    #[test]
    fn an_override_writes_on_behalf_of_its_first_success() {
        let mut stage = testing::init::<Batched>("{}").unwrap();
        testing::process(&mut stage, batch(&["bad", "bad"])).unwrap();
        assert_eq!(testing::state_get("seen"), None);
        testing::process(&mut stage, batch(&["bad", "ok", "ok"])).unwrap();
        assert_eq!(testing::state_get("seen"), Some(b"3".to_vec()));
    }

    /// Writes, then returns no result at all: a fault.
    struct Faulty;

    impl Stage for Faulty {
        fn init(_: Config) -> Result<Self, String> {
            Ok(Faulty)
        }

        fn process(&mut self, event: Event) -> Result<Output, Error> {
            add("n", 1)?;
            Ok(event.into())
        }

        fn process_batch(&mut self, events: Vec<Event>) -> Vec<Result<Output, Error>> {
            let mut results: Vec<_> = events.into_iter().enumerate().map(|(i, e)| super::finish_event(i, self.process(e))).collect();
            results.pop();
            results
        }
    }

    #[test]
    fn a_faulty_batch_leaves_no_state() {
        let mut stage = testing::init::<Faulty>("{}").unwrap();
        assert!(testing::process(&mut stage, batch(&["a", "b"])).is_err());
        assert_eq!(testing::state_keys(""), Vec::<String>::new());
    }

    #[test]
    fn keys_merge_buffered_writes_with_the_store() {
        for key in ["p/1", "p/2", "p/3", "q/1"] {
            testing::state_put(key, "x");
        }
        super::delete("p/1");
        super::delete("p/2");
        set("p/0", "x");
        set("p/4", "x");
        assert_eq!(keys("p/", 2), ["p/0", "p/3"]);
        assert_eq!(keys("p/", 10), ["p/0", "p/3", "p/4"]);
        assert_eq!(get("p/1"), None);
        super::discard();
        assert_eq!(keys("p/", 10), ["p/1", "p/2", "p/3"]);
    }
}
