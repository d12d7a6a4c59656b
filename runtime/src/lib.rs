//! weir: a WebAssembly stream processor for NATS.
//!
//! weir reads events from NATS, passes each through a chain of sandboxed
//! WebAssembly stages configured in TOML, and publishes the results.
//!
//! # Layout
//!
//! - [`config`]: pipeline and process TOML, parsed into validated types with
//!   errors that name file, line and key.
//! - [`event`]: weir's own event, stage error and dead-letter types.
//! - [`engine`]: everything wasmtime: compile (cached), link, limit,
//!   instantiate and call plugins.
//! - [`pipeline`]: a chain of stages applied to batches of events, with fault
//!   isolation and dead letters.
//! - [`exec`]: `weir exec`, a pipeline over JSON lines without NATS.
//! - [`metrics`]: counters and histograms, `/metrics`, `/healthz`, `/readyz`.
//! - [`nats`]: the NATS connection, sources, publishers and the service face.
//! - [`run`]: `weir run`, the long-running process: source → workers → sink.
//! - [`reload`]: watching pipeline and plugin files, swapping pipelines live.
//! - [`cli`]: the command line.

pub mod cli;
pub mod config;
pub mod engine;
pub mod event;
pub mod exec;
pub mod metrics;
pub mod nats;
pub mod pipeline;
pub mod reload;
pub mod run;
