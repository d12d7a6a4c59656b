//! Shared pieces of weir's end-to-end tests.

pub mod harness;

/// Paths of the plugins and test fixtures, built for `wasm32-wasip2` by this
/// crate's `build.rs` before any test runs.
///
/// - [`FILTER`](plugins::FILTER), [`ROUTER`](plugins::ROUTER),
///   [`NOOP`](plugins::NOOP), [`JSON_MAP`](plugins::JSON_MAP): the stages
///   shipped in `plugins/`,
/// - [`CHAOS`](plugins::CHAOS): `tests/fixtures/chaos`, which panics, loops,
///   allocates, fails or splits on demand (see its crate docs).
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

#[cfg(test)]
mod tests {
    use super::plugins;

    #[test]
    fn every_plugin_is_a_webassembly_component() {
        for path in [plugins::FILTER, plugins::ROUTER, plugins::NOOP, plugins::JSON_MAP, plugins::BI_ENRICH, plugins::CHAOS] {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(bytes[..8], *b"\0asm\x0d\x00\x01\x00", "{path} is not a component");
        }
    }
}
