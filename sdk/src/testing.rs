//! Run a stage natively, the way weir would, for unit tests.
//!
//! These helpers go through the same steps as the exported component: the
//! configuration is parsed from JSON text, [`Stage::init`] runs once, a batch
//! goes through [`Stage::process_batch`] and its length is checked, and
//! [`state`](crate::state) writes are kept or discarded per event as weir
//! would ([`tick`] does the same for [`Stage::tick`]). They run on the host
//! target, with no WebAssembly and no weir.
//!
//! ```
//! use weir_sdk::{testing, Config, Error, Event, Output, Stage};
//!
//! struct DropEmpty;
//!
//! impl Stage for DropEmpty {
//!     fn init(_: Config) -> Result<Self, String> { Ok(DropEmpty) }
//!     fn process(&mut self, event: Event) -> Result<Output, Error> {
//!         Ok(if event.payload.is_empty() { Output::Drop } else { event.into() })
//!     }
//! }
//!
//! let out = testing::run::<DropEmpty>("{}", vec![Event::new("a", ""), Event::new("a", "x")]);
//! assert_eq!(out, [Ok(vec![]), Ok(vec![Event::new("a", "x")])]);
//! ```

use crate::{Config, Error, Event, Stage};

/// What weir sees for one input event: the events to publish, or the error.
pub type Outcome = Result<Vec<Event>, Error>;

/// Creates a stage from a JSON configuration, as weir's `init` does.
///
/// ```
/// # use weir_sdk::{Config, Error, Event, Output, Stage};
/// struct NeedsName(String);
/// impl Stage for NeedsName {
///     fn init(config: Config) -> Result<Self, String> {
///         config.value()["name"].as_str().map(|n| NeedsName(n.into())).ok_or("config.name is required".into())
///     }
///     fn process(&mut self, e: Event) -> Result<Output, Error> { Ok(e.into()) }
/// }
///
/// assert!(weir_sdk::testing::init::<NeedsName>(r#"{"name": "x"}"#).is_ok());
/// assert_eq!(weir_sdk::testing::init::<NeedsName>("{}").err().unwrap(), "config.name is required");
/// ```
pub fn init<T: Stage>(config_json: &str) -> Result<T, String> {
    T::init(Config::from_json(config_json)?)
}

/// Runs one batch through a stage and checks, as weir does, that there is
/// one result per event; a wrong count is returned as `Err`, the message
/// weir would report for that fault (and the batch's state writes are
/// undone, as weir throws them away).
///
/// State writes go to the native test store ([`state_get`] reads it) for
/// the events that succeeded; a refused event's writes are discarded.
///
/// ```
/// # use weir_sdk::{Config, Error, Event, Output, Stage};
/// struct Echo;
/// impl Stage for Echo {
///     fn init(_: Config) -> Result<Self, String> { Ok(Echo) }
///     fn process(&mut self, e: Event) -> Result<Output, Error> { Ok(e.into()) }
/// }
///
/// let mut stage = weir_sdk::testing::init::<Echo>("{}").unwrap();
/// let first = weir_sdk::testing::process(&mut stage, vec![Event::new("a", "1")]).unwrap();
/// let second = weir_sdk::testing::process(&mut stage, vec![Event::new("a", "2")]).unwrap();
/// assert_eq!(second[0].as_ref().unwrap()[0].payload, b"2");
/// # drop(first);
/// ```
pub fn process<T: Stage>(stage: &mut T, events: Vec<Event>) -> Result<Vec<Outcome>, String> {
    let count = events.len();
    #[cfg(not(target_arch = "wasm32"))]
    let before = crate::state::test_store::snapshot();
    let results = crate::state::run_batch(stage, events);
    if results.len() != count {
        // weir throws a faulty call away, its state writes with it.
        #[cfg(not(target_arch = "wasm32"))]
        crate::state::test_store::restore(before);
        return Err(format!("the stage returned {} results for a batch of {count} events", results.len()));
    }
    Ok(results.into_iter().map(|result| result.map(|output| output.into_events())).collect())
}

/// Creates a stage from a JSON configuration and runs one batch through it.
///
/// # Panics
///
/// If `init` fails or the stage returns the wrong number of results, with
/// the message weir would report; in a test that fails the test.
///
/// ```
/// # use weir_sdk::{Config, Error, Event, Output, Stage};
/// struct Reject;
/// impl Stage for Reject {
///     fn init(_: Config) -> Result<Self, String> { Ok(Reject) }
///     fn process(&mut self, _: Event) -> Result<Output, Error> { Err(Error::invalid("no")) }
/// }
///
/// let out = weir_sdk::testing::run::<Reject>("{}", vec![Event::new("a", "")]);
/// assert_eq!(out, [Err(Error::invalid("no"))]);
/// ```
#[track_caller]
pub fn run<T: Stage>(config_json: &str, events: Vec<Event>) -> Vec<Outcome> {
    let mut stage = match init::<T>(config_json) {
        Ok(stage) => stage,
        Err(message) => panic!("init failed: {message}"),
    };
    match process(&mut stage, events) {
        Ok(results) => results,
        Err(fault) => panic!("{fault}"),
    }
}

/// Creates a stage from a JSON configuration and runs one event through it.
///
/// # Panics
///
/// Like [`run`].
///
/// ```
/// # use weir_sdk::{Config, Error, Event, Output, Stage};
/// struct Split;
/// impl Stage for Split {
///     fn init(_: Config) -> Result<Self, String> { Ok(Split) }
///     fn process(&mut self, e: Event) -> Result<Output, Error> {
///         Ok(Output::Many(vec![e.clone(), e]))
///     }
/// }
///
/// let out = weir_sdk::testing::run_one::<Split>("{}", Event::new("a", "x")).unwrap();
/// assert_eq!(out.len(), 2);
/// ```
#[track_caller]
pub fn run_one<T: Stage>(config_json: &str, event: Event) -> Outcome {
    run::<T>(config_json, vec![event]).pop().expect("one result for one event")
}

/// Puts `value` under `key` in the KV bucket `bucket` of the native test
/// store that [`kv::get`](crate::kv::get) reads on a target other than
/// `wasm32`, so that a stage's KV lookups can be unit-tested with `cargo
/// test`.
///
/// A bucket counts as granted to the stage once something was put into it;
/// reading any other bucket is the error weir gives for an ungranted one. The
/// store is per thread (each test sees only its own puts) and lasts until
/// [`kv_clear`]. On `wasm32` the store is never read: `kv::get` asks weir.
///
/// ```
/// use weir_sdk::{kv, testing, Config, Error, Event, Output, Stage};
///
/// /// Adds the shop's country, looked up in the KV bucket "shops".
/// struct Country;
///
/// impl Stage for Country {
///     fn init(_: Config) -> Result<Self, String> { Ok(Country) }
///     fn process(&mut self, event: Event) -> Result<Output, Error> {
///         let shop = event.header("shop").unwrap_or_default().to_owned();
///         let country = kv::get("shops", &shop)?.unwrap_or_else(|| b"unknown".to_vec());
///         Ok(event.with_header("country", String::from_utf8_lossy(&country)).into())
///     }
/// }
///
/// testing::kv_put("shops", "eu-1", "DE");
/// let out = testing::run_one::<Country>("{}", Event::new("orders", "").with_header("shop", "eu-1"));
/// assert_eq!(out.unwrap()[0].header("country"), Some("DE"));
/// ```
pub fn kv_put(bucket: &str, key: &str, value: impl Into<Vec<u8>>) {
    crate::kv::test_put(bucket, key, value.into());
}

/// Empties the native KV test store of this thread: every bucket then counts
/// as not granted again.
///
/// ```
/// use weir_sdk::{kv, testing};
///
/// testing::kv_put("shops", "eu-1", "DE");
/// testing::kv_clear();
/// assert!(kv::get("shops", "eu-1").is_err());
/// ```
pub fn kv_clear() {
    crate::kv::test_clear();
}

/// Calls the stage's [`Stage::tick`] with `now` (milliseconds since the
/// Unix epoch), as weir's timer does: its state writes are kept if it
/// returns `Ok`, discarded if not. Pass `1 << 53` for the final tick of
/// `weir exec` and `weir test`.
///
/// ```
/// use weir_sdk::{state, testing, Config, Error, Event, Output, Stage};
///
/// /// Emits "ping" on every tick, and remembers the last tick.
/// struct Ping;
///
/// impl Stage for Ping {
///     fn init(_: Config) -> Result<Self, String> { Ok(Ping) }
///     fn process(&mut self, e: Event) -> Result<Output, Error> { Ok(e.into()) }
///     fn tick(&mut self, now: u64) -> Result<Vec<Event>, String> {
///         state::set("last-tick", now.to_string());
///         Ok(vec![Event::new("ping", "")])
///     }
/// }
///
/// let mut stage = testing::init::<Ping>("{}").unwrap();
/// assert_eq!(testing::tick(&mut stage, 1000).unwrap().len(), 1);
/// assert_eq!(testing::state_get("last-tick"), Some(b"1000".to_vec()));
/// ```
pub fn tick<T: Stage>(stage: &mut T, now: u64) -> Result<Vec<Event>, String> {
    crate::state::run_tick(stage, now)
}

/// Puts `value` under `key` in the native state test store that
/// [`state`](crate::state) reads and writes on a target other than
/// `wasm32`: state as a previous event (or an older version of the stage)
/// left it.
///
/// The store is per thread (each test sees only its own) and lasts until
/// [`state_clear`]. It applies no size limits (`limits.state` and
/// `limits.state_value` are weir's); keys must be 1 to 1024 bytes, as in
/// weir.
///
/// ```
/// use weir_sdk::{state, testing};
///
/// testing::state_put("seen/order-7", "1764147600000");
/// assert_eq!(state::get("seen/order-7"), Some(b"1764147600000".to_vec()));
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub fn state_put(key: &str, value: impl Into<Vec<u8>>) {
    crate::state::test_store::put(key, value.into());
}

/// The value of `key` in the native state test store: what weir would have
/// committed after the events and ticks run so far (writes still buffered
/// in the stage are not seen).
///
/// ```
/// use weir_sdk::{state, testing};
///
/// state::set("k", "v");
/// assert_eq!(testing::state_get("k"), None); // buffered, not flushed
/// state::flush(0).unwrap();
/// assert_eq!(testing::state_get("k"), Some(b"v".to_vec()));
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub fn state_get(key: &str) -> Option<Vec<u8>> {
    crate::state::test_store::get(key)
}

/// Every key of the native state test store that starts with `prefix`, in
/// byte order.
///
/// ```
/// use weir_sdk::testing;
///
/// testing::state_put("w/2/a", "");
/// testing::state_put("w/1/b", "");
/// testing::state_put("other", "");
/// assert_eq!(testing::state_keys("w/"), ["w/1/b", "w/2/a"]);
/// assert_eq!(testing::state_keys("").len(), 3);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub fn state_keys(prefix: &str) -> Vec<String> {
    crate::state::test_store::keys(prefix)
}

/// Empties the native state test store of this thread, and forgets writes
/// still buffered.
///
/// ```
/// use weir_sdk::testing;
///
/// testing::state_put("k", "v");
/// testing::state_clear();
/// assert_eq!(testing::state_get("k"), None);
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub fn state_clear() {
    crate::state::test_store::clear();
}
