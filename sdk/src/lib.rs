//! Write [weir](https://example.invalid/weir) pipeline stages in Rust.
//!
//! A stage is a WebAssembly component that weir runs in a sandbox between a
//! NATS source and a NATS sink. With this crate a stage is a type that
//! implements [`Stage`] and one [`export_stage!`] line; the crate generates
//! the bindings for the `weir:stage` WIT contract (`sdk/wit/stage.wit`) and
//! hides them.
//!
//! # A complete stage
//!
//! ```
//! use serde::Deserialize;
//! use weir_sdk::{Config, Error, Event, Output, Stage};
//!
//! #[derive(Deserialize)]
//! struct Settings { min_price: f64 }
//!
//! #[derive(Deserialize)]
//! struct Order { price: f64 }
//!
//! /// Keeps the orders that cost at least `min_price`.
//! struct Expensive(Settings);
//!
//! impl Stage for Expensive {
//!     fn init(config: Config) -> Result<Self, String> {
//!         Ok(Expensive(config.parse()?))
//!     }
//!
//!     fn process(&mut self, event: Event) -> Result<Output, Error> {
//!         let order: Order = event.json()?;
//!         Ok(if order.price >= self.0.min_price { event.into() } else { Output::Drop })
//!     }
//! }
//!
//! weir_sdk::export_stage!(Expensive);
//! # let out = weir_sdk::testing::run::<Expensive>(
//! #     r#"{"min_price": 10}"#,
//! #     vec![Event::new("orders", r#"{"price": 12.5}"#), Event::new("orders", r#"{"price": 3}"#)],
//! # );
//! # assert_eq!(out[0].as_ref().unwrap().len(), 1);
//! # assert!(out[1].as_ref().unwrap().is_empty());
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` in a crate
//! with `crate-type = ["cdylib", "rlib"]`; see the README for the whole walk
//! from `cargo new` to a pipeline TOML.
//!
//! # What a stage returns
//!
//! For every input event, [`Stage::process`] returns either an [`Output`] or
//! an [`Error`]:
//!
//! - [`Output::Drop`] drops the event (a filter),
//! - [`Output::One`] replaces it (a map; the same event, unchanged, passes it
//!   through),
//! - [`Output::Many`] splits it into several events (a flat-map),
//! - an output event whose [`Event::subject`] differs from the input's is
//!   routed to that subject,
//! - [`Error::invalid`] sends the input event to the pipeline's dead-letter
//!   subject and never retries it; [`Error::retry`] marks a transient failure
//!   that weir redelivers when its source can.
//!
//! A panic, an endless loop or running out of memory is a fault: weir throws
//! the instance away and dead-letters only the event that caused it.
//!
//! # State and timers
//!
//! A stage can keep keyed state across events ([`state`]: get, set, delete,
//! prefix scans, JSON values and counters), which weir stores in NATS KV and
//! commits exactly once per input, and can ask to be called on a timer
//! ([`Stage::tick`]) to emit events of its own, such as a window that
//! closed. The shipped `dedupe`, `window-count` and `sessionize` plugins are
//! built on them.
//!
//! # Testing without WebAssembly
//!
//! Everything here also builds for the host. On a target other than `wasm32`,
//! the [`log`] macros print to stderr instead of calling weir, [`kv`]
//! reads a test store that [`testing::kv_put`] fills and [`state`] one that
//! [`testing::state_put`] fills, so `cargo test` tests a stage natively;
//! [`testing`] runs a stage (and its ticks) the way weir would.
//!
//! ```
//! # use weir_sdk::{Config, Error, Event, Output, Stage};
//! # struct Upper;
//! # impl Stage for Upper {
//! #     fn init(_: Config) -> Result<Self, String> { Ok(Upper) }
//! #     fn process(&mut self, e: Event) -> Result<Output, Error> {
//! #         let upper = e.payload_str()?.to_uppercase();
//! #         Ok(e.with_payload(upper).into())
//! #     }
//! # }
//! let out = weir_sdk::testing::run_one::<Upper>("{}", Event::new("in", "hello"));
//! assert_eq!(out.unwrap()[0].payload, b"HELLO");
//! ```
//!
//! # Renaming the dependency
//!
//! The generated code refers to this crate as `::weir_sdk`: depend on it
//! under that name (do not rename it in `Cargo.toml`).
#![deny(missing_docs)]

// The generated bindings name this crate by its absolute path
// (`::weir_sdk::__private::...`) so that the same paths work inside the
// plugin crates that expand `export_stage!`.
extern crate self as weir_sdk;

mod config;
mod error;

/// The plugin's allocator: see the `fast-alloc` feature in Cargo.toml. Its
/// free lists are tested natively, in front of the system allocator.
#[cfg(any(test, all(feature = "fast-alloc", target_family = "wasm", not(target_feature = "atomics"))))]
mod alloc;

#[cfg(all(feature = "fast-alloc", target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator::new();

/// Faster `memcmp` and `bcmp` for the plugin (wasm only).
#[cfg(any(test, all(feature = "fast-mem", target_family = "wasm")))]
mod mem;

mod event;
pub mod kv;
pub mod log;
mod output;
mod path;
mod select;
pub mod state;
pub mod testing;

pub use config::Config;
pub use error::Error;
pub use event::Event;
pub use output::Output;
pub use path::Path;
pub use select::{Selection, append_members};
/// The `serde_json` crate this SDK uses, for stages that work on
/// [`serde_json::Value`] without depending on it themselves.
///
/// ```
/// use weir_sdk::serde_json::json;
///
/// let event = weir_sdk::Event::new_json("orders", &json!({ "id": 7 })).unwrap();
/// assert_eq!(event.payload, br#"{"id":7}"#);
/// ```
pub use serde_json;

/// A pipeline stage: a type that weir creates once per instance and then
/// feeds events.
///
/// Implement [`init`](Stage::init) and [`process`](Stage::process), then
/// export the type with [`export_stage!`].
///
/// ```
/// use weir_sdk::{Config, Error, Event, Output, Stage};
///
/// /// Passes every event through and counts them.
/// struct Count { seen: u64 }
///
/// impl Stage for Count {
///     fn init(_config: Config) -> Result<Self, String> {
///         Ok(Count { seen: 0 })
///     }
///
///     fn process(&mut self, event: Event) -> Result<Output, Error> {
///         self.seen += 1;
///         Ok(Output::One(event))
///     }
/// }
///
/// weir_sdk::export_stage!(Count);
/// ```
pub trait Stage: Sized + 'static {
    /// Creates the stage from its configuration.
    ///
    /// Called once per instance with the stage's `config` table from the
    /// pipeline TOML ([`Config::empty`] when there is none). Parse and check
    /// the whole configuration here, once: an `Err` refuses it, `weir
    /// validate` prints the message, and a reload keeps the running version.
    /// Name the offending key in the message.
    ///
    /// weir may create several instances (one per worker, and a fresh one
    /// after a fault); each gets its own `init` and they share nothing.
    ///
    /// ```
    /// # use weir_sdk::{Config, Error, Event, Output, Stage};
    /// struct Prefix(String);
    ///
    /// impl Stage for Prefix {
    ///     fn init(config: Config) -> Result<Self, String> {
    ///         match config.value()["prefix"].as_str() {
    ///             Some(prefix) => Ok(Prefix(prefix.to_owned())),
    ///             None => Err("config.prefix: expected a string".into()),
    ///         }
    ///     }
    /// #   fn process(&mut self, e: Event) -> Result<Output, Error> { Ok(e.into()) }
    /// }
    ///
    /// assert!(weir_sdk::testing::init::<Prefix>(r#"{"prefix": "eu."}"#).is_ok());
    /// assert_eq!(
    ///     weir_sdk::testing::init::<Prefix>("{}").err().unwrap(),
    ///     "config.prefix: expected a string",
    /// );
    /// ```
    fn init(config: Config) -> Result<Self, String>;

    /// Processes one event.
    ///
    /// Return what becomes of it (see [`Output`]) or why it was refused (see
    /// [`Error`]). The default [`process_batch`](Stage::process_batch) calls
    /// this once per event, in order.
    ///
    /// ```
    /// # use weir_sdk::{Config, Error, Event, Output, Stage};
    /// struct Tag;
    ///
    /// impl Stage for Tag {
    /// #   fn init(_: Config) -> Result<Self, String> { Ok(Tag) }
    ///     fn process(&mut self, event: Event) -> Result<Output, Error> {
    ///         Ok(event.with_header("tagged-by", "weir").into())
    ///     }
    /// }
    ///
    /// let out = weir_sdk::testing::run_one::<Tag>("{}", Event::new("a", "x")).unwrap();
    /// assert_eq!(out[0].header("tagged-by"), Some("weir"));
    /// ```
    fn process(&mut self, event: Event) -> Result<Output, Error>;

    /// Processes a whole batch at once.
    ///
    /// Override it when a stage gains from seeing several events together
    /// (batched inference, one lookup for many keys). It must return exactly
    /// one result per event, in the same order: weir treats any other length
    /// as a fault of the instance. The default calls [`process`](Stage::process)
    /// for each event, moving it, without copying payloads, and sends each
    /// event's [`state`] writes to weir after it returns `Ok` (discarding
    /// them after an `Err`). An override that writes state should do the
    /// same with [`state::flush`] and [`state::discard`]; otherwise its
    /// writes go with the batch's first successful event (see [`state`]).
    ///
    /// ```
    /// # use weir_sdk::{Config, Error, Event, Output, Stage};
    /// /// Numbers the events of each batch.
    /// struct Number;
    ///
    /// impl Stage for Number {
    /// #   fn init(_: Config) -> Result<Self, String> { Ok(Number) }
    ///     fn process(&mut self, event: Event) -> Result<Output, Error> {
    ///         Ok(event.into())
    ///     }
    ///
    ///     fn process_batch(&mut self, events: Vec<Event>) -> Vec<Result<Output, Error>> {
    ///         let n = events.len();
    ///         events
    ///             .into_iter()
    ///             .enumerate()
    ///             .map(|(i, e)| Ok(e.with_header("part", format!("{i}/{n}")).into()))
    ///             .collect()
    ///     }
    /// }
    ///
    /// let out = weir_sdk::testing::run::<Number>("{}", vec![Event::new("a", ""), Event::new("a", "")]);
    /// assert_eq!(out[1].as_ref().unwrap()[0].header("part"), Some("1/2"));
    /// ```
    fn process_batch(&mut self, events: Vec<Event>) -> Vec<Result<Output, Error>> {
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                let result = self.process(event);
                state::finish_event(index, result)
            })
            .collect()
    }

    /// Called on the stage's timer, with the time in milliseconds since the
    /// Unix epoch; returns events to send down the pipeline.
    ///
    /// weir calls it every `timer` (a key of the stage's `[[stages]]` entry,
    /// e.g. `timer = "1s"`), and once more after the last input of `weir
    /// exec` and `weir test` with `now` = 2^53 ms (the end of time:
    /// everything still open closes then; keep time arithmetic saturating).
    /// Its [`state`] writes are committed together with the events it
    /// returns, once: when several weir processes tick, the one whose writes
    /// conflict is discarded with its events. An `Err` is logged and
    /// discards the tick's writes and events; the next tick tries again.
    ///
    /// `now` is weir's clock, whatever the stage's `grants.clock` says. The
    /// default does nothing. Keep a tick short: do a bounded amount of work
    /// (e.g. at most 10,000 keys) and leave the rest for the next one.
    ///
    /// ```
    /// use weir_sdk::{state, testing, Config, Error, Event, Output, Stage};
    ///
    /// /// Counts events, and publishes the count when the timer fires.
    /// struct Heartbeat;
    ///
    /// impl Stage for Heartbeat {
    ///     fn init(_: Config) -> Result<Self, String> { Ok(Heartbeat) }
    ///
    ///     fn process(&mut self, _event: Event) -> Result<Output, Error> {
    ///         state::add("count", 1)?;
    ///         Ok(Output::Drop)
    ///     }
    ///
    ///     fn tick(&mut self, now: u64) -> Result<Vec<Event>, String> {
    ///         let count = state::add("count", 0).map_err(|e| e.to_string())?;
    ///         state::delete("count");
    ///         Ok(vec![Event::new("heartbeat", format!("{now}: {count}"))])
    ///     }
    /// }
    ///
    /// let mut stage = testing::init::<Heartbeat>("{}").unwrap();
    /// testing::process(&mut stage, vec![Event::new("a", ""), Event::new("a", "")]).unwrap();
    /// let out = testing::tick(&mut stage, 60_000).unwrap();
    /// assert_eq!(out[0].payload, b"60000: 2");
    /// assert_eq!(testing::state_get("count"), None);
    /// ```
    fn tick(&mut self, now: u64) -> Result<Vec<Event>, String> {
        let _ = now;
        Ok(Vec::new())
    }
}

/// Exports a [`Stage`] as the plugin's implementation of the `weir:stage`
/// world.
///
/// Use it once per plugin crate, at the top level, with the stage's type.
/// A type that does not implement [`Stage`] is a compile error pointing at
/// the type.
///
/// ```
/// # use weir_sdk::{Config, Error, Event, Output, Stage};
/// struct Noop;
///
/// impl Stage for Noop {
///     fn init(_config: Config) -> Result<Self, String> { Ok(Noop) }
///     fn process(&mut self, event: Event) -> Result<Output, Error> { Ok(event.into()) }
/// }
///
/// weir_sdk::export_stage!(Noop);
/// ```
///
/// ```compile_fail
/// struct NotAStage;
///
/// weir_sdk::export_stage!(NotAStage); // error: the trait `Stage` is not implemented
/// ```
#[macro_export]
macro_rules! export_stage {
    ($stage:ty $(,)?) => {
        const _: () = {
            // One instance of the stage per component instance. A component
            // instance is single-threaded, so a thread local is the whole state.
            ::std::thread_local! {
                #[allow(dead_code)]
                static __WEIR_INSTANCE: ::core::cell::RefCell<::core::option::Option<$stage>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            #[allow(dead_code)]
            struct __WeirExport;

            impl $crate::__private::bindings::Guest for __WeirExport {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$stage>(&__WEIR_INSTANCE, config)
                }

                fn process(events: ::std::vec::Vec<$crate::Event>) -> ::std::vec::Vec<$crate::__private::BatchResult> {
                    $crate::__private::process::<$stage>(&__WEIR_INSTANCE, events)
                }

                fn tick(now_ms: u64) -> ::core::result::Result<::std::vec::Vec<$crate::Event>, ::std::string::String> {
                    $crate::__private::tick::<$stage>(&__WEIR_INSTANCE, now_ms)
                }
            }

            // The exported functions have fixed symbol names (`init`,
            // `process`): only a component needs them, and on the host they
            // would clash when a test links several plugins.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::bindings::export!(
                __WeirExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Used by [`export_stage!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;
    use std::thread::LocalKey;

    use crate::{Config, Event, Stage};

    pub use wit_bindgen;

    /// The bindings of the `stateful-stage` world, generated from
    /// `sdk/wit`, a superset of `stage`: every plugin exports `tick`, and a
    /// plugin that never uses [`state`](crate::state) does not import it
    /// (a component imports only what its code calls), which weir takes as
    /// a plain stage.
    #[allow(missing_docs, unsafe_op_in_unsafe_fn, rust_2018_idioms)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "wit",
            world: "stateful-stage",
            runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "::weir_sdk::__private::bindings",
            // The bindings use the SDK's own `Event`: the same fields, so
            // lifting and lowering move the strings and buffers straight into
            // and out of it, with no conversion.
            with: { "weir:stage/types@0.2.0/event": crate::Event },
        });
    }

    /// One event's entry in the result of `process`, as the bindings want it.
    pub type BatchResult = Result<Vec<Event>, bindings::StageError>;

    /// The slot in which `export_stage!` keeps the instance's stage.
    pub type Slot<T> = LocalKey<RefCell<Option<T>>>;

    // Glue between the generated `Guest` trait and a `Stage`. They are
    // generic functions so that a type which is not a `Stage` is reported at
    // the type the user passed to `export_stage!`.

    pub fn init<T: Stage>(slot: &'static Slot<T>, config: String) -> Result<(), String> {
        let config = Config::from_json(&config)?;
        let stage = T::init(config)?;
        slot.set(Some(stage));
        Ok(())
    }

    pub fn process<T: Stage>(slot: &'static Slot<T>, events: Vec<Event>) -> Vec<BatchResult> {
        crate::kv::begin_batch();
        slot.with_borrow_mut(|stage| {
            // weir always calls `init` first; if it did not, trapping makes
            // it replace the instance, which is what it should do then.
            let stage = stage.as_mut().expect("weir-sdk: `process` was called before a successful `init`");
            crate::state::run_batch(stage, events)
                .into_iter()
                .map(|result| match result {
                    Ok(output) => Ok(output.into_events()),
                    Err(error) => Err(error.into_stage_error()),
                })
                .collect()
        })
    }

    pub fn tick<T: Stage>(slot: &'static Slot<T>, now: u64) -> Result<Vec<Event>, String> {
        slot.with_borrow_mut(|stage| {
            let stage = stage.as_mut().expect("weir-sdk: `tick` was called before a successful `init`");
            // A tick is a call of its own: KV reads start afresh.
            crate::kv::begin_batch();
            crate::state::run_tick(stage, now)
        })
    }
}

/// Compiles the Rust examples of `README.md` with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use crate::__private::{self, bindings::StageError};
    use crate::{Config, Error, Event, Output, Stage};

    /// Splits on "split", refuses "bad", drops "drop", counts events.
    struct Probe {
        seen: usize,
    }

    impl Stage for Probe {
        fn init(config: Config) -> Result<Self, String> {
            match config.value()["fail"].as_str() {
                Some(message) => Err(message.to_owned()),
                None => Ok(Probe { seen: 0 }),
            }
        }

        fn process(&mut self, event: Event) -> Result<Output, Error> {
            self.seen += 1;
            match event.payload.as_slice() {
                b"split" => Ok(Output::Many(vec![event.clone(), event])),
                b"bad" => Err(Error::invalid("bad event")),
                b"later" => Err(Error::retry("try later")),
                b"drop" => Ok(Output::Drop),
                _ => Ok(event.with_header("seen", self.seen.to_string()).into()),
            }
        }
    }

    thread_local! {
        static SLOT: RefCell<Option<Probe>> = const { RefCell::new(None) };
    }

    #[test]
    fn the_export_glue_runs_init_then_batches_on_one_instance() {
        assert_eq!(__private::init(&SLOT, r#"{"fail": "no"}"#.into()), Err("no".into()));
        assert!(__private::init(&SLOT, "not json".into()).unwrap_err().starts_with("config is not valid JSON"));
        __private::init(&SLOT, "{}".into()).unwrap();

        let batch = ["split", "bad", "later", "drop", "x"].map(|p| Event::new("s", p)).to_vec();
        let out = __private::process(&SLOT, batch);
        assert_eq!(out.len(), 5);
        assert_eq!(out[0].as_ref().unwrap().len(), 2);
        assert!(matches!(&out[1], Err(StageError::Invalid(m)) if m == "bad event"));
        assert!(matches!(&out[2], Err(StageError::Retry(m)) if m == "try later"));
        assert!(out[3].as_ref().unwrap().is_empty());
        assert_eq!(out[4].as_ref().unwrap()[0].header("seen"), Some("5"));

        // State lives on between batches of one instance.
        let out = __private::process(&SLOT, vec![Event::new("s", "x")]);
        assert_eq!(out[0].as_ref().unwrap()[0].header("seen"), Some("6"));
    }

    #[test]
    #[should_panic(expected = "`process` was called before a successful `init`")]
    fn process_before_init_traps() {
        thread_local! {
            static EMPTY: RefCell<Option<Probe>> = const { RefCell::new(None) };
        }
        __private::process(&EMPTY, vec![Event::new("s", "x")]);
    }

    #[test]
    fn paths_set_and_remove_through_arrays() {
        use serde_json::json;
        let path = |p: &str| crate::Path::parse(p).unwrap();
        let mut doc = json!({ "items": [{ "sku": "A" }, { "sku": "B" }], "n": null });
        path("items.1.sku").set(&mut doc, json!("C")).unwrap();
        path("n.deep").set(&mut doc, json!(1)).unwrap();
        assert_eq!(doc, json!({ "items": [{ "sku": "A" }, { "sku": "C" }], "n": { "deep": 1 } }));
        assert_eq!(path("items.2.sku").set(&mut doc, json!(1)).unwrap_err(), r#"cannot set "items.2.sku": "items" has no element "2""#);
        assert_eq!(path("items.0").remove(&mut doc), Some(json!({ "sku": "A" })));
        assert_eq!(path("items.5").remove(&mut doc), None);
        assert_eq!(path("x.y").remove(&mut doc), None);
        let mut scalar = json!(3);
        assert_eq!(path("a").set(&mut scalar, json!(1)).unwrap_err(), r#"cannot set "a": "the payload" is a number, not an object"#);
    }
}
