//! weir: a WebAssembly stream processor for NATS.
//!
//! weir reads events from NATS, passes each through a chain of sandboxed
//! WebAssembly stages configured in TOML, and publishes the results.
//!
//! # Layout
//!
//! The tree follows an event's path; docs/architecture.md says which file
//! handles each step, which threads and channels carry events, and which
//! module may depend on which.
//!
//! - [`nats`]: everything async-nats. `nats/source.rs`: where events come
//!   from (core subscription or JetStream pull consumer) and their
//!   [`Delivery`](nats::Delivery) handles; `nats/publish.rs`: sending events;
//!   `nats/connect.rs`, `nats/kv.rs`, `nats/service.rs`.
//! - [`pipeline`]: `pipeline/workers.rs`: the dispatch of batches to worker
//!   OS threads; `pipeline/chain.rs`: a chain of stages run over a batch,
//!   one [`Outcome`](pipeline::Outcome) per input; `pipeline/candidate.rs`:
//!   a stage's candidate version run beside it (shadow or canary), compared
//!   and judged; `pipeline/blueprint.rs`: building a pipeline's stages
//!   (compile, `init`, version).
//! - `sink.rs`: publishing outcomes, settling inputs (ack, retry backoff),
//!   dead letters.
//! - `task.rs`: one running pipeline, source → workers → sink, and what
//!   starting one needs.
//! - [`run`]: `weir run`, the process's life: start, signals and reload
//!   triggers, stop.
//! - [`reload`]: keeping the running pipelines in step with their files:
//!   `reload/plan.rs` (what to do, from two configurations), `reload/mod.rs`
//!   (doing it, never running less than before; carrying out candidates'
//!   decisions), `reload/decisions.rs` (decisions remembered in NATS KV),
//!   `reload/watch.rs` (file watcher and SIGHUP).
//! - [`control`]: the answers of `weir status`, `weir reload` and `weir
//!   promote`/`rollback`, shared by the serving side and the command line.
//! - [`state`]: the keyed state of stateful stages: the local copy they
//!   read and write, committed to the pipeline's NATS KV bucket exactly
//!   once per input (`nats/state.rs` writes it).
//! - [`engine`]: everything wasmtime: compile (cached), link, limit,
//!   instantiate and call plugins.
//! - [`config`]: pipeline and process TOML, parsed into validated types with
//!   errors that name file, line and key. Pure: no NATS, no wasmtime.
//! - [`event`]: weir's own event, stage error and dead-letter types.
//! - [`exec`]: `weir exec`, a pipeline over JSON lines without NATS.
//! - [`testing`]: `weir test`, test files' cases with expected outputs and
//!   per-stage budgets, without NATS.
//! - [`author`]: `weir new stage` and `weir build`, for stage authors in
//!   Rust, Python and JavaScript.
//! - [`metrics`]: counters and histograms, `/metrics`, `/healthz`, `/readyz`.
//! - [`cli`]: the command line.

pub mod author;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod event;
pub mod exec;
pub mod metrics;
pub mod nats;
pub mod pipeline;
pub mod reload;
pub mod run;
mod sink;
pub mod state;
mod task;
pub mod testing;

/// The allocator of the `weir` binary: jemalloc.
///
/// Every event costs the host a few small allocations per stage (the outputs
/// lifted out of the sandbox, NATS messages and headers), made and freed in
/// batches, and often freed on another thread than the one that made them
/// (reactor ↔ worker). glibc's per-thread cache holds 7 blocks of a size, so a
/// batch of 64 spills into its slower bins: with jemalloc a noop chain runs
/// about 14% fewer instructions per event (callgrind). The in-process
/// benchmarks declare the same allocator, so that they measure what the
/// binary runs:
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: weir::Allocator = weir::ALLOCATOR;
///
/// fn main() {
///     let events: Vec<String> = (0..64).map(|i| format!("event {i}")).collect();
///     assert_eq!(events[63], "event 63");
/// }
/// ```
pub type Allocator = tikv_jemallocator::Jemalloc;

/// The value to declare as `#[global_allocator]`: see [`Allocator`].
pub const ALLOCATOR: Allocator = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`. `background_thread` returns
/// unused pages to the system from a thread of its own instead of from
/// whichever allocation or free happens to trigger the purge: without it the
/// noop relay's p99 at 20k events/s was 4.7–4.9 ms in two runs, against
/// 1.9–3.8 ms on glibc and 2.0–3.9 ms with it (docs/performance.md). `_RJEM_MALLOC_CONF`
/// in the environment adds to or overrides these.
///
/// jemalloc reads a C `const char *`: a thin pointer to the first byte of a
/// NUL-terminated string, as `tikv_jemalloc_sys::malloc_conf` declares it.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: Option<&u8> = Some(&b"background_thread:true\0"[0]);
