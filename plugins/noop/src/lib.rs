//! `noop`: passes every event through unchanged.
//!
//! It measures what weir itself costs: the batch goes in and comes back out
//! with no work and no copies. No configuration.
//!
//! ```toml
//! [[stages]]
//! name = "noop"
//! plugin = "../plugins/noop.wasm"
//! ```

use weir_sdk::{Config, Error, Event, Output, Stage};

/// The stage: no state.
pub struct Noop;

impl Stage for Noop {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Noop)
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        Ok(Output::One(event))
    }

    fn process_batch(&mut self, events: Vec<Event>) -> Vec<Result<Output, Error>> {
        // The same as the default, without a call through `process` per event.
        events.into_iter().map(|event| Ok(Output::One(event))).collect()
    }
}

weir_sdk::export_stage!(Noop);

#[cfg(test)]
mod tests {
    use weir_sdk::{Event, testing};

    use super::Noop;

    #[test]
    fn passes_every_event_through_unchanged() {
        let events = vec![Event::new("a", "1").add_header("h", "v"), Event::new("b", vec![0xff, 0x00])];
        let out = testing::run::<Noop>("{}", events.clone());
        assert_eq!(out, [Ok(vec![events[0].clone()]), Ok(vec![events[1].clone()])]);
    }

    #[test]
    fn an_empty_batch_gives_no_results() {
        assert!(testing::run::<Noop>("{}", vec![]).is_empty());
    }
}
