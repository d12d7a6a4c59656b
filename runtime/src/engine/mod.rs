//! Everything wasmtime: compiling plugins (once, cached by content hash),
//! linking the host imports, creating sandboxed instances with their limits,
//! and calling them. wasmtime's types stay inside this module; the rest of
//! weir sees [`Plugin`], [`Instance`], [`Fault`] and weir's own
//! [`Event`](crate::event::Event).
//!
//! Each instance has its own `Store` with:
//! - a deadline per call (epoch interruption): the stage's `limits.timeout`
//!   times the number of events in the batch;
//! - a memory cap (a resource limiter) of `limits.memory`;
//! - an empty WASI context: no files, network, environment or arguments,
//!   and clocks that read zero unless the stage is granted `clock`; stdout
//!   and stderr go to weir's log, and stderr is also kept so that a panic
//!   message can be put into the dead letter.
//!
//! After any fault the instance is dead (wasmtime refuses to enter it again):
//! callers drop it and ask the [`Plugin`] for a fresh one.

mod cache;
mod host;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, Trap};

use cache::CodeCache;
pub use cache::{ContentHash, Origin};
pub use host::KvSource;
use host::{HostState, MemoryLimitExceeded, StageLabel};
pub use state::{MAX_KEY, MemoryState, ReadAt, StateCall, StateLimits, StateView, StateWrite, entry_size as entry_size_of};

use crate::event::{ErrorKind, Event, StageResult};

mod bindings {
    wasmtime::component::bindgen!({
        world: "stateful-stage",
        path: "../sdk/wit",
    });
}

/// The contract's previous version, 0.1.0: its host functions are linked
/// too, so that stages built against it run unchanged.
mod legacy {
    wasmtime::component::bindgen!({
        world: "stage",
        path: "wit/weir-stage-0.1.0",
    });
}

/// `process`, typed with weir's own [`Event`] and [`StageError`] (which derive
/// the WIT's `event` and `stage-error`) rather than the bindings' copies of
/// them: events cross into the sandbox and back without conversion, and
/// their payloads (`bytes::Bytes`) without a copy on the host.
type Process<'a> = wasmtime::component::TypedFunc<(&'a [Event],), (Vec<StageResult>,)>;

/// `tick` of a stateful stage: the time, and the events it emits or why not.
type Tick = wasmtime::component::TypedFunc<(u64,), (Result<Vec<Event>, String>,)>;

/// `init`: the configuration as JSON, and whether the stage accepts it.
type Init<'a> = wasmtime::component::TypedFunc<(&'a str,), (Result<(), String>,)>;

/// How often the epoch advances: the resolution of deadlines.
const TICK: Duration = Duration::from_millis(1);

/// How long `init` may run: it may load a model, so it gets far more than a
/// call to `process`, but an endless loop in it still ends.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The world every plugin must implement.
pub const WORLD: &str = "weir:stage/stage@0.2.0";

/// The interface a stage imports to keep state: a stage that imports it
/// implements the world `stateful-stage`.
const STATE_IMPORT: &str = "weir:stage/state@";

/// Options for [`Engine::new`].
#[derive(Clone, Default)]
pub struct EngineOptions {
    /// Where compiled code is kept between runs; `None` keeps it in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of compiled code kept in `cache_dir`; `None`: no limit.
    pub cache_size: Option<u64>,
    /// Where granted KV buckets are read from (`weir run`'s mirror); `None`
    /// makes every `kv-get` an error.
    pub kv: Option<Arc<dyn KvSource>>,
}

impl std::fmt::Debug for dyn KvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvSource")
    }
}

/// The shared compiler and linker. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    cache: CodeCache,
    kv: Option<Arc<dyn KvSource>>,
}

impl Engine {
    /// Builds the engine and starts its epoch ticker (a thread that lives as
    /// long as the engine).
    pub fn new(options: &EngineOptions) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        // `cargo build --features weir/profiling` and WEIR_PERFMAP=1: perf
        // can then name the functions of the stages' compiled code.
        #[cfg(feature = "profiling")]
        if std::env::var_os("WEIR_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = wasmtime::Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        // Rust, Python and JavaScript guests import parts of WASI even when
        // they never use it; link the real thing with an empty context rather
        // than stubs (docs/performance.md, 'Facts the code relies on').
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::StatefulStage::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        legacy::Stage::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;

        let weak = engine.weak();
        std::thread::Builder::new().name("weir-epoch".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })?;

        let cache = CodeCache::new(&engine, options.cache_dir.as_deref(), options.cache_size.unwrap_or(u64::MAX));
        Ok(Engine { inner: Arc::new(EngineInner { engine, linker, cache, kv: options.kv.clone() }) })
    }

    /// Loads the plugin at `path`: reads it, compiles it (or takes it from the
    /// cache), checks that it implements the stage world and links it.
    pub fn load(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        self.load_bytes(path, &bytes)
    }

    /// Like [`load`](Self::load) for bytes already in memory; `path` is only
    /// used in messages.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let path = path.to_owned();
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule { path }),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm { head: describe_head(bytes), path }),
        }
        let hash = ContentHash::of(bytes);
        let (component, origin) = self
            .inner
            .cache
            .get_or_compile(&self.inner.engine, &path, hash, bytes)
            .map_err(|e| LoadError::Compile { path: path.clone(), message: chain(&e) })?;
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| LoadError::Imports {
            path: path.clone(),
            missing: unprovided_imports(&self.inner.engine, &component),
            message: chain(&e),
        })?;
        let exports: Vec<String> = component.component_type().exports(&self.inner.engine).map(|(name, _)| name.to_owned()).collect();
        let stateful = component
            .component_type()
            .imports(&self.inner.engine)
            .any(|(name, _)| name.starts_with(STATE_IMPORT));
        for required in ["init", "process"] {
            if !exports.iter().any(|e| e == required) {
                return Err(LoadError::WrongWorld { path: path.clone(), message: format!("no export named `{required}`") });
            }
        }
        let ticks = stateful && exports.iter().any(|e| e == "tick");
        Ok(Plugin { pre, hash, path: path.into(), origin, kv: self.inner.kv.clone(), stateful, ticks })
    }
}

impl Engine {
    /// Forgets the compiled code of every plugin whose hash is not in `used`
    /// (what the running pipelines use), so that a long life of deploys does
    /// not keep every build ever loaded. Returns how many were forgotten.
    pub fn retain_code(&self, used: &std::collections::HashSet<ContentHash>) -> usize {
        self.inner.cache.retain(used)
    }
}

/// A plugin that was compiled, checked and linked: ready to instantiate.
/// Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    pre: wasmtime::component::InstancePre<HostState>,
    hash: ContentHash,
    path: Arc<Path>,
    origin: Origin,
    kv: Option<Arc<dyn KvSource>>,
    /// Imports `state`: the world `stateful-stage`.
    stateful: bool,
    /// A stateful stage that exports `tick`.
    ticks: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("path", &self.path).field("hash", &self.hash).finish()
    }
}

/// What an instance needs to know about its stage.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The pipeline's name, for logs.
    pub pipeline: String,
    /// The stage's name, for logs.
    pub stage: String,
    /// Time budget per event.
    pub timeout: Duration,
    /// Memory cap in bytes.
    pub memory: u64,
    /// The stage's config table as JSON, passed to `init`.
    pub config: String,
    /// Granted directories: (host path, path the stage sees), read-only.
    pub dirs: Vec<(PathBuf, String)>,
    /// Granted KV buckets.
    pub kv: Vec<String>,
    /// Whether the stage reads the real clocks (otherwise they read zero).
    pub clock: bool,
    /// The caps on its state, if it keeps state.
    pub state: StateLimits,
    /// How often its `tick` is called, if it has one.
    pub timer: Option<Duration>,
}

impl Plugin {
    /// The SHA-256 of the plugin's bytes.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }

    /// The file the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the plugin was compiled now or taken from a cache.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether the stage keeps state (it imports `weir:stage/state`).
    pub fn stateful(&self) -> bool {
        self.stateful
    }

    /// Whether the stage keeps state and exports `tick`.
    pub fn ticks(&self) -> bool {
        self.ticks
    }

    /// A fresh instance with `init` already run.
    pub fn instantiate(&self, spec: &StageSpec) -> Result<Instance, InitError> {
        let label = Arc::new(StageLabel { pipeline: spec.pipeline.clone(), stage: spec.stage.clone() });
        let state = HostState::new(label, spec, self.kv.clone()).map_err(|e| InitError::Instantiate(format!("cannot grant a directory: {}", chain(&e))))?;
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(ticks(INIT_TIMEOUT));
        let instantiated = self.pre.instantiate(&mut store).and_then(|instance| {
            // Checks the exports against weir's types now, so that a stage of
            // the wrong shape fails to start rather than on its first batch.
            let init = *instance.get_typed_func::<(&str,), (Result<(), String>,)>(&mut store, "init")?.func();
            let process = *instance.get_typed_func::<(&[Event],), (Vec<StageResult>,)>(&mut store, "process")?.func();
            let tick = if self.ticks { Some(instance.get_typed_func::<(u64,), (Result<Vec<Event>, String>,)>(&mut store, "tick")?) } else { None };
            Ok((init, process, tick))
        });
        let (init, process, tick) = match instantiated {
            Ok(b) => b,
            Err(e) => {
                return Err(match classify(&e, &store, INIT_TIMEOUT) {
                    Some(fault) => InitError::Fault(fault),
                    None => InitError::Instantiate(chain(&e)),
                });
            }
        };
        let called = init
            .typed::<(&str,), (Result<(), String>,)>(&store)
            .and_then(|init: Init<'_>| init.call(&mut store, (&spec.config,)));
        match called {
            Ok((Ok(()),)) => {}
            Ok((Err(message),)) => return Err(InitError::Refused(message)),
            Err(e) => return Err(InitError::Fault(fault(&e, &store, INIT_TIMEOUT))),
        }
        Ok(Instance { store, process, tick, timeout: spec.timeout })
    }
}

/// One live, initialised instance of a plugin. Not shared: each worker owns
/// its instances.
pub struct Instance {
    store: Store<HostState>,
    /// The export `process`, checked against [`Process`] when instantiated.
    process: wasmtime::component::Func,
    /// The export `tick` of a stateful stage.
    tick: Option<Tick>,
    timeout: Duration,
}

impl Instance {
    /// Calls `process` with `events` and returns them back (they are only
    /// lent to the sandbox) with the stage's results, one per event. On a
    /// fault the instance is dead: drop it.
    pub fn process(&mut self, events: Vec<Event>) -> (Vec<Event>, Result<Vec<StageResult>, Fault>) {
        let n = events.len();
        let budget = self.timeout.saturating_mul(n.max(1) as u32);
        self.store.set_epoch_deadline(ticks(budget));
        // A fault's message is what the stage wrote to stderr in this call.
        self.store.data().stderr.clear();
        // The typed view borrows the batch, so it is made per call. Its type
        // check costs about 50-90 ns per call: measurable at batch 1, not at
        // batch 64 (docs/performance.md, "Typed calls, checked per call").
        let process: Process<'_> = match self.process.typed(&self.store) {
            Ok(process) => process,
            Err(e) => return (events, Err(Fault::Trap { message: chain(&e) })),
        };
        let called = process.call(&mut self.store, (&events,)).map(|(results,)| results);
        let results = match called {
            Ok(results) if results.len() == n => Ok(results),
            Ok(results) => {
                Err(Fault::BadOutput { message: format!("returned {} results for {n} events; process must return exactly one per event", results.len()) })
            }
            Err(e) => Err(fault(&e, &self.store, budget)),
        };
        (events, results)
    }

    /// Calls `tick` with the time in milliseconds since the epoch, if the
    /// stage has one (`None` otherwise). Its budget is one `limits.timeout`
    /// per 64 events it may emit, and at least 1 s. On a fault the instance
    /// is dead: drop it.
    pub fn tick(&mut self, now_ms: u64) -> Option<Result<Result<Vec<Event>, String>, Fault>> {
        let tick = self.tick?;
        let budget = self.timeout.saturating_mul(64).max(Duration::from_secs(1));
        self.store.set_epoch_deadline(ticks(budget));
        self.store.data().stderr.clear();
        Some(match tick.call(&mut self.store, (now_ms,)) {
            Ok((result,)) => Ok(result),
            Err(e) => Err(fault(&e, &self.store, budget)),
        })
    }

    /// Lends the stage its state for the next calls (a stateful stage).
    pub fn lend_state(&mut self, state: StateCall) {
        self.store.data_mut().state = Some(state);
    }

    /// The state lent with [`lend_state`](Self::lend_state), in place.
    pub fn state_mut(&mut self) -> Option<&mut StateCall> {
        self.store.data_mut().state.as_mut()
    }

    /// Takes back the state lent with [`lend_state`](Self::lend_state).
    pub fn take_state(&mut self) -> Option<StateCall> {
        self.store.data_mut().state.take()
    }

    /// The most linear memory this instance has held, in bytes, over all
    /// its memories since it was created (`init` included): what
    /// `weir test` checks against a stage's memory budget.
    pub fn peak_memory(&self) -> u64 {
        self.store.data().limiter.peak()
    }
}

/// A call that ended the instance. The message says what happened in words a
/// plugin author can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The guest trapped: a panic, `unreachable`, an out-of-bounds access.
    #[error("trapped: {message}")]
    Trap {
        /// The trap and, for a panic, the panic message the guest printed.
        message: String,
    },
    /// The call ran past its deadline.
    #[error("ran past its deadline of {} ms (limits.timeout times the events in the call)", budget.as_millis())]
    Timeout {
        /// The budget of the call: `limits.timeout` times the batch length.
        budget: Duration,
    },
    /// The guest tried to grow its memory past its limit.
    #[error("tried to grow its memory to {requested} bytes, over its limit of {limit} bytes (limits.memory)")]
    Memory {
        /// Bytes the guest asked for.
        requested: u64,
        /// The limit.
        limit: u64,
    },
    /// The guest returned something that breaks the contract.
    #[error("broke the contract: {message}")]
    BadOutput {
        /// What was wrong.
        message: String,
    },
}

impl Fault {
    /// The dead-letter kind of this fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Fault::Trap { .. } => ErrorKind::Trap,
            Fault::Timeout { .. } => ErrorKind::Timeout,
            Fault::Memory { .. } => ErrorKind::Memory,
            Fault::BadOutput { .. } => ErrorKind::BadOutput,
        }
    }
}

/// A plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {}: {source}", path.display())]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not WebAssembly at all.
    #[error("{} is not a WebAssembly file (it starts with {head}); a plugin is a component built with `cargo build --target wasm32-wasip2`", path.display())]
    NotWasm {
        /// The plugin file.
        path: PathBuf,
        /// Its first bytes, described.
        head: String,
    },
    /// A core module, not a component.
    #[error("{} is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`) so that it implements {WORLD}", path.display())]
    CoreModule {
        /// The plugin file.
        path: PathBuf,
    },
    /// The component did not validate or compile.
    #[error("{} is not a valid WebAssembly component: {message}", path.display())]
    Compile {
        /// The plugin file.
        path: PathBuf,
        /// The compiler's message.
        message: String,
    },
    /// The component imports something weir does not provide.
    #[error("{}", imports_message(path, missing, message))]
    Imports {
        /// The plugin file.
        path: PathBuf,
        /// The interfaces it imports that weir does not provide (empty when
        /// the names are provided but their types differ).
        missing: Vec<String>,
        /// wasmtime's message.
        message: String,
    },
    /// The component does not export what the world requires.
    #[error("{} does not implement {WORLD}: {message}; implement the weir_sdk::Stage trait and call weir_sdk::export_stage!", path.display())]
    WrongWorld {
        /// The plugin file.
        path: PathBuf,
        /// wasmtime's message.
        message: String,
    },
}

/// The interfaces weir links into every stage: its own host interface and
/// these WASI 0.2 packages (sockets are linked but every connection is
/// refused).
pub const PROVIDED: [&str; 8] = ["weir:stage/host", "weir:stage/state", "wasi:cli", "wasi:clocks", "wasi:filesystem", "wasi:io", "wasi:random", "wasi:sockets"];

/// The imports of `component` that no [`PROVIDED`] interface covers, by name
/// (`wasi:http/types@0.2.3`).
fn unprovided_imports(engine: &wasmtime::Engine, component: &wasmtime::component::Component) -> Vec<String> {
    let provided = |name: &str| {
        let unversioned = name.split('@').next().unwrap_or(name);
        PROVIDED
            .iter()
            .any(|p| unversioned == *p || unversioned.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
            || unversioned == "weir:stage/types"
    };
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| !provided(name))
        .collect()
}

fn imports_message(path: &Path, missing: &[String], message: &str) -> String {
    let provided = format!(
        "weir provides {}@0.2.0, {}@0.2.0 (and the host of contract 0.1.0) and the WASI 0.2 interfaces {} (no network is ever granted)",
        PROVIDED[0],
        PROVIDED[1],
        PROVIDED[2..].join(", ")
    );
    if missing.is_empty() {
        return format!(
            "{} imports an interface that weir provides, but with other types: {message}; {provided}. Rebuild the stage against this weir's WIT (sdk/wit/stage.wit), e.g. with `weir build`",
            path.display()
        );
    }
    let advice = if missing.iter().any(|m| m.starts_with("weir:stage/")) {
        format!("the stage was built for another version of the contract than this weir's {WORLD}: rebuild it with this weir's SDK, e.g. with `weir build`")
    } else if missing.iter().any(|m| m.starts_with("wasi:http/")) {
        "a JavaScript stage built with componentize-js imports wasi:http unless its `http` and `fetch-event` features are disabled, which `weir build` does; otherwise remove the code or dependency that needs HTTP".to_owned()
    } else {
        "remove the code or dependency that needs it".to_owned()
    };
    format!("{} imports {}, which weir does not provide; {provided}. What to do: {advice}", path.display(), missing.join(", "))
}

/// A new instance could not be made ready.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InitError {
    /// wasmtime could not instantiate the component.
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// `init` returned an error.
    #[error("init refused the configuration: {0}")]
    Refused(String),
    /// `init` (or the component's start) faulted.
    #[error("init {0}")]
    Fault(Fault),
}

fn ticks(budget: Duration) -> u64 {
    // One more tick than the budget needs: the current tick may be nearly over.
    (budget.as_nanos().div_ceil(TICK.as_nanos()) as u64).saturating_add(1)
}

/// Turns a failed call into a [`Fault`].
fn fault(e: &wasmtime::Error, store: &Store<HostState>, budget: Duration) -> Fault {
    classify(e, store, budget).unwrap_or_else(|| Fault::Trap { message: chain(e) })
}

/// A [`Fault`] when `e` comes from the guest, `None` for host-side errors.
fn classify(e: &wasmtime::Error, store: &Store<HostState>, budget: Duration) -> Option<Fault> {
    if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
        return Some(Fault::Memory { requested: m.requested, limit: m.limit });
    }
    let trap = e.downcast_ref::<Trap>()?;
    if *trap == Trap::Interrupt {
        return Some(Fault::Timeout { budget });
    }
    // A Rust panic prints its message to stderr, then traps with
    // `unreachable`: the message is what the author needs.
    let stderr = store.data().stderr.take();
    let printed = panic_text(&stderr);
    let message = if printed.is_empty() { trap.to_string() } else { format!("{printed} ({trap})") };
    Some(Fault::Trap { message })
}

/// What a stage wrote to stderr before it trapped, on one line, without the
/// advice no one can follow inside a sandbox (Rust's "run with
/// `RUST_BACKTRACE=1`": a stage has no environment to set it in).
fn panic_text(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An error and its causes on one line.
fn chain(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.is_empty() {
            if out.contains(&text) {
                continue;
            }
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn describe_head(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing: the file is empty".into();
    }
    let head = &bytes[..bytes.len().min(16)];
    match std::str::from_utf8(head) {
        Ok(text) if text.chars().all(|c| !c.is_control() || c.is_whitespace()) => format!("{text:?}"),
        _ => head.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::new(&EngineOptions::default()).unwrap()
    }

    fn load_err(bytes: &[u8]) -> String {
        match engine().load_bytes(Path::new("plugins/bad.wasm"), bytes) {
            Ok(_) => panic!("loaded a bad plugin"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_text_file_is_not_wasm() {
        let e = load_err(b"#!/bin/sh\necho hi\n");
        assert!(e.starts_with("plugins/bad.wasm is not a WebAssembly file (it starts with \"#!/bin/sh\\necho h\")"), "{e}");
        assert!(load_err(b"").contains("the file is empty"));
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        let e = load_err(&wat::parse_str("(module)").unwrap());
        assert!(e.contains("is a core WebAssembly module, not a component"), "{e}");
        assert!(e.contains("wasm32-wasip2"), "{e}");
    }

    #[test]
    fn a_broken_component_is_a_compile_error() {
        let mut bytes = wat::parse_str("(component)").unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        let e = load_err(&bytes);
        assert!(e.starts_with("plugins/bad.wasm is not a valid WebAssembly component"), "{e}");
    }

    #[test]
    fn a_component_of_another_world_is_refused() {
        let e = load_err(&wat::parse_str("(component)").unwrap());
        assert!(e.contains("does not implement weir:stage/stage@0.2.0"), "{e}");
        assert!(e.contains("init"), "{e}");
    }

    /// A component that exports `init` (accepting any config) but no `process`.
    const INIT_ONLY: &str = r#"
        (component
          (core module $m
            (memory (export "memory") 1)
            (global $next (mut i32) (i32.const 1024))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
              (local $p i32)
              (local.set $p (global.get $next))
              (global.set $next (i32.add (global.get $next) (local.get 3)))
              (local.get $p))
            ;; result<_, string> is returned through memory: zeroes mean ok.
            (func (export "init") (param i32 i32) (result i32) (i32.const 16)))
          (core instance $i (instantiate $m))
          (func (export "init") (param "config" string) (result (result (error string)))
            (canon lift (core func $i "init") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc")))))
    "#;

    #[test]
    fn a_missing_process_export_is_named() {
        let e = load_err(&wat::parse_str(INIT_ONLY).unwrap());
        assert!(e.contains("does not implement weir:stage/stage@0.2.0"), "{e}");
        assert!(e.contains("process"), "{e}");
    }

    #[test]
    fn a_component_importing_the_unknown_is_refused() {
        let bytes = wat::parse_str(r#"(component (import "acme:secret/door" (instance (export "open" (func)))))"#).unwrap();
        let e = load_err(&bytes);
        assert!(e.contains("imports acme:secret/door, which weir does not provide"), "{e}");
        assert!(
            e.contains(
                "weir provides weir:stage/host@0.2.0, weir:stage/state@0.2.0 (and the host of contract 0.1.0) and the WASI 0.2 interfaces wasi:cli, wasi:clocks"
            ),
            "{e}"
        );
        assert!(e.contains("What to do: remove the code or dependency that needs it"), "{e}");
    }

    #[test]
    fn a_component_importing_wasi_http_is_told_what_to_turn_off() {
        let bytes = wat::parse_str(
            r#"(component
                (import "wasi:http/types@0.2.3" (instance (export "f" (func))))
                (import "wasi:http/outgoing-handler@0.2.3" (instance (export "handle" (func)))))"#,
        )
        .unwrap();
        let e = load_err(&bytes);
        assert!(e.contains("imports wasi:http/types@0.2.3, wasi:http/outgoing-handler@0.2.3, which weir does not provide"), "{e}");
        assert!(e.contains("`http` and `fetch-event` features are disabled, which `weir build` does"), "{e}");
    }

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(ticks(Duration::from_millis(20)), 21);
        assert_eq!(ticks(Duration::from_micros(1500)), 3);
    }
}
