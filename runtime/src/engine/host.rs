//! What lives in each stage instance's `Store`: the sandbox's WASI context
//! (empty: no files, network, environment or arguments; clocks only when
//! granted), the memory limiter, stdout and stderr (lines into weir's log,
//! and the last KiB of stderr for fault messages), and the `host` import the
//! stage calls.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::weir::stage::host::{self, Level};
use super::bindings::weir::stage::state::{self as state_import, Write};
use super::state::StateCall;

/// Which stage an instance belongs to, for logs and errors.
#[derive(Debug)]
pub(crate) struct StageLabel {
    pub pipeline: String,
    pub stage: String,
}

/// The data of one instance's `Store`.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stderr: Tail,
    label: Arc<StageLabel>,
    /// Shared with stdout and stderr: one budget for everything the stage logs.
    logs: Arc<Mutex<LogBudget>>,
    /// Buckets this stage was granted, and where to read them.
    kv: Vec<String>,
    kv_source: Option<Arc<dyn KvSource>>,
    /// The stage's state during a call of a stateful stage; `None` outside
    /// calls and for stages without state.
    pub(crate) state: Option<StateCall>,
}

/// Where `kv-get` reads from: weir's in-memory mirror of NATS KV buckets.
pub trait KvSource: Send + Sync {
    /// The value of `key` in `bucket`; an error when weir has no copy of
    /// the bucket.
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
}

impl HostState {
    pub(crate) fn new(label: Arc<StageLabel>, spec: &super::StageSpec, kv_source: Option<Arc<dyn KvSource>>) -> wasmtime::Result<Self> {
        let stderr = Tail::default();
        let logs = Arc::new(Mutex::new(LogBudget::new()));
        let mut builder = WasiCtx::builder();
        for (host, guest) in &spec.dirs {
            // Read-only: a stage reads its model or reference files, never
            // writes beside them.
            builder.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadOnly)?;
        }
        // No clocks unless granted: a stage reads times from its events, so
        // that what it outputs depends on its inputs alone.
        if !spec.clock {
            builder.wall_clock(Frozen).monotonic_clock(Frozen);
        }
        let wasi = builder
            .stdout(StageOutput::new(Stream::Stdout, label.clone(), logs.clone(), None))
            .stderr(StageOutput::new(Stream::Stderr, label.clone(), logs.clone(), Some(stderr.clone())))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Ok(HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(spec.memory),
            stderr,
            label,
            logs,
            kv: spec.kv.clone(),
            kv_source,
            state: None,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl host::Host for HostState {
    fn kv_get(&mut self, bucket: String, key: String) -> Result<Option<Vec<u8>>, String> {
        self.kv_lookup(&bucket, &key)
    }

    fn log(&mut self, level: Level, message: String) {
        log_line(&self.logs, &self.label, level, &message);
    }
}

impl super::bindings::weir::stage::types::Host for HostState {}

/// Stages built against contract 0.1.0 import the same host functions
/// under that version.
impl super::legacy::weir::stage::host::Host for HostState {
    fn kv_get(&mut self, bucket: String, key: String) -> Result<Option<Vec<u8>>, String> {
        self.kv_lookup(&bucket, &key)
    }

    fn log(&mut self, level: super::legacy::weir::stage::host::Level, message: String) {
        use super::legacy::weir::stage::host::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        log_line(&self.logs, &self.label, level, &message);
    }
}

impl super::legacy::weir::stage::types::Host for HostState {}

impl state_import::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.state.as_ref()?.get(&key).map(|v| v.to_vec())
    }

    fn apply(&mut self, event: u32, writes: Vec<Write>) -> Result<(), String> {
        let Some(state) = self.state.as_mut() else {
            return Err("state is only available in process and tick, not in init".to_owned());
        };
        state.apply(event, writes.into_iter().map(|w| (w.key, w.value.map(bytes::Bytes::from))).collect())
    }

    fn keys(&mut self, prefix: String, limit: u32) -> Vec<String> {
        self.state.as_ref().map(|s| s.keys(&prefix, limit as usize)).unwrap_or_default()
    }
}

impl HostState {
    fn kv_lookup(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        if !self.kv.iter().any(|b| b == bucket) {
            return Err(format!(
                "KV bucket \"{bucket}\" is not granted to stage \"{}\"; add it to the stage's grants = {{ kv = [...] }} in the pipeline TOML",
                self.label.stage
            ));
        }
        match &self.kv_source {
            Some(source) => source.get(bucket, key),
            None => Err(format!(
                "KV bucket \"{bucket}\" is not available here: `weir run` mirrors KV buckets from NATS, `weir exec` serves them from files given with --kv {bucket}.json"
            )),
        }
    }
}

/// Writes one line of a stage's into weir's log, within the stage's budget.
fn log_line(budget: &Mutex<LogBudget>, label: &StageLabel, level: Level, message: &str) {
    let Some(dropped) = budget.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
    let message = truncate(message, 4096);
    if dropped > 0 {
        tracing::warn!(pipeline = %label.pipeline, stage = %label.stage, dropped, "stage logged too fast; lines were dropped");
    }
    match level {
        Level::Trace => tracing::trace!(pipeline = %label.pipeline, stage = %label.stage, "{message}"),
        Level::Debug => tracing::debug!(pipeline = %label.pipeline, stage = %label.stage, "{message}"),
        Level::Info => tracing::info!(pipeline = %label.pipeline, stage = %label.stage, "{message}"),
        Level::Warn => tracing::warn!(pipeline = %label.pipeline, stage = %label.stage, "{message}"),
        Level::Error => tracing::error!(pipeline = %label.pipeline, stage = %label.stage, "{message}"),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A token bucket that keeps a noisy stage from flooding the host's logs:
/// a burst of 200 lines, then 100 lines a second.
struct LogBudget {
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl LogBudget {
    const BURST: f64 = 200.0;
    const PER_SECOND: f64 = 100.0;

    fn new() -> Self {
        LogBudget { tokens: Self::BURST, last: Instant::now(), dropped: 0 }
    }

    /// `Some(lines dropped since the last line let through)`, or `None` to
    /// drop this line.
    fn take(&mut self) -> Option<u64> {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * Self::PER_SECOND;
        self.tokens = (self.tokens + refill).min(Self::BURST);
        self.last = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return None;
        }
        self.tokens -= 1.0;
        Some(std::mem::take(&mut self.dropped))
    }
}

/// The memory cap of one instance. A breach fails the call with
/// [`MemoryLimitExceeded`] rather than letting `memory.grow` return -1: every
/// guest language then stops the same way, and the host can tell a memory
/// breach from any other trap.
pub(crate) struct MemoryLimiter {
    limit: u64,
    /// Bytes of linear memory the instance holds now, over all its
    /// memories, and the most it ever held: what `weir test` reports as the
    /// stage's memory. Linear memory never shrinks, so the peak is also the
    /// size at the end; it is counted here because the limiter is the one
    /// place that sees every memory being created and grown.
    current: u64,
    peak: u64,
}

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        MemoryLimiter { limit, current: 0, peak: 0 }
    }

    /// The most linear memory the instance held, in bytes.
    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }
}

/// A stage tried to grow its linear memory past `limits.memory`.
#[derive(Debug, thiserror::Error)]
#[error("tried to grow its memory to {requested} bytes, over its limit of {limit} bytes")]
pub(crate) struct MemoryLimitExceeded {
    pub requested: u64,
    pub limit: u64,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded { requested: desired, limit: self.limit }));
        }
        // Called when a memory is created (current 0) and on every grow.
        self.current = self.current.saturating_add(desired.saturating_sub(current as u64));
        self.peak = self.peak.max(self.current);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real
        // stage and bounds the host memory a table can take.
        Ok(desired <= 1_000_000)
    }
}

/// A clock that always reads zero: stages get no time source unless granted.
struct Frozen;

impl HostWallClock for Frozen {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for Frozen {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Captures what a stage writes to stdout or stderr, keeping only the last
/// few KiB: enough for a panic message, never a way to exhaust the host.
#[derive(Clone, Default)]
pub(crate) struct Tail(Arc<Mutex<VecDeque<u8>>>);

impl Tail {
    const KEEP: usize = 4096;

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = &bytes[bytes.len().saturating_sub(Self::KEEP)..];
        let overflow = (buf.len() + bytes.len()).saturating_sub(Self::KEEP);
        let overflow = overflow.min(buf.len());
        buf.drain(..overflow);
        buf.extend(bytes);
    }

    /// Forgets what was written so far.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Takes what was written so far, as text.
    pub(crate) fn take(&self) -> String {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes: Vec<u8> = buf.drain(..).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// A stage's stdout or stderr: each line goes into weir's log (stdout at
/// info, stderr at warn), tagged with the pipeline and the stage, so that
/// `print`, `console.log` and `eprintln!` are seen where weir's own lines
/// are. stderr is also kept in a [`Tail`]: a panic message written just
/// before a trap becomes the fault's message.
#[derive(Clone)]
struct StageOutput(Arc<Mutex<Lines>>);

struct Lines {
    stream: Stream,
    label: Arc<StageLabel>,
    budget: Arc<Mutex<LogBudget>>,
    tail: Option<Tail>,
    /// The line being written, up to [`Lines::MAX`] bytes.
    partial: Vec<u8>,
}

impl StageOutput {
    fn new(stream: Stream, label: Arc<StageLabel>, budget: Arc<Mutex<LogBudget>>, tail: Option<Tail>) -> Self {
        StageOutput(Arc::new(Mutex::new(Lines { stream, label, budget, tail, partial: Vec::new() })))
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tail) = &lines.tail {
            tail.push(bytes);
        }
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let room = Lines::MAX.saturating_sub(lines.partial.len());
            lines.partial.extend_from_slice(&piece[..piece.len().min(room)]);
            if piece.ends_with(b"\n") {
                lines.emit();
            }
        }
    }
}

impl Lines {
    /// Longer lines are cut: a log line is for a person to read.
    const MAX: usize = 4096;

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.trim_end_matches(['\n', '\r']);
        if !line.is_empty() {
            let level = if self.stream == Stream::Stdout { Level::Info } else { Level::Warn };
            log_line(&self.budget, &self.label, level, line);
        }
        self.partial.clear();
    }
}

impl Drop for Lines {
    /// A last line without a newline is still a line.
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.emit();
        }
    }
}

impl IsTerminal for StageOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StageOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StageOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for StageOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for StageOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let tail = Tail::default();
        tail.push(&vec![b'a'; 5000]);
        tail.push(b"panicked at boom");
        let text = tail.take();
        assert_eq!(text.len(), Tail::KEEP);
        assert!(text.ends_with("panicked at boom"));
        assert_eq!(tail.take(), "");
    }

    #[test]
    fn log_budget_drops_past_the_burst_and_counts() {
        let mut budget = LogBudget::new();
        let passed = (0..1000).filter(|_| budget.take().is_some()).count();
        assert!((200..=210).contains(&passed), "{passed}");
        assert!(budget.dropped > 0);
    }
}
