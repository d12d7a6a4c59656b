//! End-to-end test harness: a real `nats-server` per test, the real `weir`
//! binary, and a NATS client with helpers to publish events and read what
//! comes out.
//!
//! Layout:
//! - [`NatsServer`]: a `nats-server -js` on a free loopback port with its own
//!   JetStream store; can be stopped and started again on the same port and
//!   store (JetStream data survives), optionally with authentication.
//! - [`NatsCluster`]: three `nats-server -js` nodes clustered on loopback,
//!   each of which can be killed (SIGKILL) and started again, for the tests
//!   of a cluster that loses nodes.
//! - [`Weir`] / [`WeirBuilder`]: `weir run --config <tmp>/weir.toml` over a
//!   temporary directory of pipeline files; waits for the `ready:` line,
//!   sends signals, waits for the exit, kills on drop.
//! - [`client`] helpers: connect, publish N JSON events, collect messages
//!   with a timeout, create and read JetStream streams, consumer state.
//!
//! Every wait is bounded and fails with a message that says what was awaited;
//! the stderr of `nats-server` and `weir` is forwarded to the test's stderr,
//! prefixed, so a failing test shows what the processes said.
//!
//! Tests use `#[tokio::test(flavor = "multi_thread")]`: process start-up and
//! exit waits block the test's thread, and the NATS client must keep running
//! on the runtime's workers meanwhile.
//!
//! ## The `weir` binary
//! Cargo builds a package's binaries only for that package's own integration
//! tests, so depending on the `weir` crate would not build `weir`'s binary for
//! these tests. Instead, the first [`Weir`] of a test process runs
//! `cargo build -p weir --bin weir` in the profile and target directory of the
//! running test (a no-op when it is fresh), so the tests always run the
//! current code. `WEIR_BIN=/path/to/weir` skips the build and uses that
//! binary; without cargo (a test executable run by hand) the binary next to
//! the test's `deps/` directory is used.

mod client;
mod cluster;
mod output;
mod server;
mod tempdir;
mod weir;

pub use client::*;
pub use cluster::NatsCluster;
pub use server::{Auth, NatsServer, NatsServerBuilder, free_port, nats_server_binary};
pub use tempdir::TempDir;
pub use weir::{CLI_TIMEOUT, CliRun, Weir, WeirBuilder, cli_with_config, kv_load, shared_cache_dir, warm_cache, warm_shared_cache, weir_binary};

use std::future::Future;
use std::time::{Duration, Instant};

/// How long `weir` may take to print its readiness line (it compiles every
/// plugin first, and the 2-core CI machine runs tests in parallel).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `probe` every 20 ms until it returns `Some`, and returns that value.
/// Panics after `timeout` with `what` and the last value `describe` gave, so
/// the failure says what was awaited and how far it got.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `s` as a TOML basic string, quotes included (for paths and subjects
/// spliced into pipeline files).
pub fn toml_str(s: &str) -> String {
    // A JSON string is a valid TOML basic string.
    serde_json::to_string(s).expect("a string serialises")
}

/// A `[[stages]]` table for a pipeline file.
pub fn stage(name: &str, plugin: &str, config: &str) -> String {
    format!("[[stages]]\nname = {}\nplugin = {}\nconfig = {config}\n", toml_str(name), toml_str(plugin))
}

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The example pipeline `pipelines/<file>`, ready to run from the harness's
/// temporary directory: each plugin path `"../plugins/<name>.wasm"` becomes
/// `plugin(name)`, and each directory in a `dirs = [...]` grant becomes
/// absolute (it was relative to `pipelines/`).
pub fn example_pipeline(file: &str, plugin: impl Fn(&str) -> String) -> String {
    let dir = repo_root().join("pipelines");
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("pipelines/{file}: {e}"));
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut line = line.to_owned();
        while let Some(start) = line.find("\"../plugins/") {
            let name_start = start + "\"../plugins/".len();
            let end = line[name_start..].find(".wasm\"").map(|i| name_start + i).expect("a plugin path ends in .wasm\"");
            let name = line[name_start..end].to_owned();
            line.replace_range(start..end + ".wasm\"".len(), &toml_str(&plugin(&name)));
        }
        if let Some(list_start) = line.find("dirs = [") {
            let list_end = list_start + line[list_start..].find(']').expect("a dirs list ends on its line");
            let items: Vec<String> = line[list_start + "dirs = [".len()..list_end]
                .split(',')
                .map(|item| item.trim().trim_matches('"'))
                .filter(|item| !item.is_empty())
                .map(|item| toml_str(dir.join(item).to_str().expect("UTF-8 paths")))
                .collect();
            line.replace_range(list_start..=list_end, &format!("dirs = [{}]", items.join(", ")));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}
