//! Shared pieces of weir's end-to-end tests.

pub mod bench;
pub mod harness;

/// Paths of the plugins and test fixtures, built for `wasm32-wasip2` by this
/// crate's `build.rs` before any test runs.
///
/// - [`FILTER`](plugins::FILTER), [`ROUTER`](plugins::ROUTER),
///   [`NOOP`](plugins::NOOP), [`JSON_MAP`](plugins::JSON_MAP): the stages
///   shipped in `plugins/`,
/// - [`BI_ENRICH`](plugins::BI_ENRICH), [`ML_TAGGER`](plugins::ML_TAGGER):
///   the showcase stages,
/// - [`DEDUPE`](plugins::DEDUPE), [`WINDOW_COUNT`](plugins::WINDOW_COUNT),
///   [`SESSIONIZE`](plugins::SESSIONIZE): the stateful stages,
/// - [`CHAOS`](plugins::CHAOS): `tests/fixtures/chaos`, which panics, loops,
///   allocates, fails or splits on demand (see its crate docs),
/// - [`TALLY`](plugins::TALLY): `tests/fixtures/tally`, a stateful stage
///   that counts per key and panics on demand after counting.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

    /// The path of the plugin built from `plugins/<name>` (or the fixture
    /// `tests/fixtures/<name>`).
    pub fn by_name(name: &str) -> &'static str {
        ALL.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, path)| *path)
            .unwrap_or_else(|| panic!("no plugin named {name:?} is built"))
    }
}

#[cfg(test)]
mod tests {
    use super::plugins;

    #[test]
    fn every_plugin_is_a_webassembly_component() {
        for (_, path) in plugins::ALL {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(bytes[..8], *b"\0asm\x0d\x00\x01\x00", "{path} is not a component");
        }
    }
}
