//! Pipeline files: the validated [`Pipeline`] types, and the TOML shape they are read from.
//!
//! Reading happens in two steps. Serde deserializes `RawPipeline*` structs, where every newtype
//! validates its own value (so the `toml` crate reports it with its span), and the keys
//! that checks across fields need are kept [`Spanned`]. Then [`RawPipeline::validate`] applies
//! those checks (stream needs durable, unique stage names, plugin files exist) and builds
//! the public types.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use super::candidate::{Candidate, RawCandidate};
use super::error::{ConfigError, InvalidValue, Location, SourceFile};
use super::json::{JsonObject, TOML_DATETIME_KEY, instant};
use super::names::{Name, NatsName, QueueGroup};
use super::subject::{PublishSubject, Subject, SubjectTemplate};
use super::table::Table;
use super::units::{AckWait, BatchSize, MemoryLimit, PositiveCount, Sequence, StageTimeout, StateLimit, StateValueLimit, TimerInterval};

/// One pipeline: a source, a chain of stages, a sink and an optional dead-letter subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Unique among the loaded pipelines.
    pub name: Name,
    /// The file it was read from, as given.
    pub file: PathBuf,
    /// Most events handed to a stage in one call (`batch_size`, 1..=4096, default 64).
    pub batch_size: usize,
    /// Keep events with the same subject in order (`ordered`, default false).
    pub ordered: bool,
    pub source: SourceConfig,
    /// `[[stages]]`, in order; empty for a pure relay.
    pub stages: Vec<StageConfig>,
    pub sink: SinkConfig,
    pub dead_letter: Option<DeadLetterConfig>,
    /// Load the pipeline even when its sink or dead letter can feed its own
    /// source, or other pipelines' sources in a cycle (`allow_loops`, default
    /// false): for stages that always change the subject. The hop limit
    /// still stops an event that loops.
    pub allow_loops: bool,
    /// `[state]`: where stateful stages keep their state.
    pub state: StateConfig,
}

/// `[state]`: the NATS KV bucket of the pipeline's stateful stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// Replicas of the bucket when weir creates it (1..=5, default 1).
    pub replicas: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { replicas: 1 }
    }
}

/// Where events come from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// The subject to subscribe to; may contain wildcards.
    pub subject: Subject,
    /// Core NATS queue group, to share events among weir processes.
    pub queue: Option<String>,
    /// Set when the source reads a JetStream stream (at-least-once).
    pub jetstream: Option<JetStreamConfig>,
}

impl SourceConfig {
    /// The subject a JetStream consumer filters on: `filter_subject` if set, else `subject`.
    pub fn filter_subject(&self) -> &Subject {
        self.jetstream.as_ref().and_then(|js| js.filter_subject.as_ref()).unwrap_or(&self.subject)
    }
}

/// A durable JetStream consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct JetStreamConfig {
    pub stream: String,
    pub durable: String,
    /// `None`: filter on the source subject (see [`SourceConfig::filter_subject`]).
    pub filter_subject: Option<Subject>,
    pub ack_wait: Option<Duration>,
    /// At least 1.
    pub max_deliver: Option<i64>,
    /// At least 1.
    pub max_ack_pending: Option<i64>,
    pub deliver: Deliver,
}

/// Where a new durable consumer starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Deliver {
    /// Every message in the stream.
    #[default]
    All,
    /// Only messages published after the consumer is created.
    New,
    /// From this stream sequence (at least 1).
    StartSequence(u64),
    /// From this instant, RFC 3339 with an offset.
    StartTime(String),
}

/// One `[[stages]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StageConfig {
    pub name: Name,
    /// The component file, relative paths joined to the pipeline file's directory.
    pub plugin: PathBuf,
    pub limits: Limits,
    /// The stage's `config` table as a JSON object (`{}` when absent), passed to `init`.
    pub config: serde_json::Value,
    /// What the stage may reach beyond its sandbox.
    pub grants: Grants,
    /// How often weir calls a stateful stage's `tick` (`timer`); `None`:
    /// never.
    pub timer: Option<Duration>,
    /// Where the stage's table starts, for runtime errors about the stage.
    pub location: Location,
    /// `[stages.candidate]`: a new version run beside this one.
    pub candidate: Option<Candidate>,
}

/// `grants = { dirs = [...], kv = [...], clock = true }`: nothing unless listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// Directories the stage may read (not write), resolved from the
    /// pipeline file's directory. The stage sees each at
    /// [`Grants::guest_path`], e.g. `../models` as `/models`.
    pub dirs: Vec<PathBuf>,
    /// NATS KV buckets the stage may read with `kv-get`.
    pub kv: Vec<String>,
    /// Whether the stage may read the real wall and monotonic clocks.
    /// Without the grant both read zero: a stage's output then depends only
    /// on its events and its config, which is what replays, `weir test`'s
    /// golden files and deduplication rely on.
    pub clock: bool,
}

impl Grants {
    /// Where the stage sees the granted directory `dir`: `/` plus its last
    /// component (`../models` is `/models`), so a plugin's config can name
    /// files the same way on every machine.
    pub fn guest_path(dir: &Path) -> String {
        format!("/{}", dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    }
}

/// Per-stage resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time budget of one event (1ms..=60s, default 100ms).
    pub timeout: Duration,
    /// Memory cap of one instance, in bytes (1 MiB..=4 GiB, default 64 MiB).
    pub memory: u64,
    /// Most bytes of keys and values in a stateful stage's state (default 64 MiB).
    pub state: u64,
    /// Most bytes of one state value (default 64 KiB, at most 512 KiB).
    pub state_value: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { timeout: Duration::from_millis(100), memory: 64 * 1024 * 1024, state: 64 * 1024 * 1024, state_value: 64 * 1024 }
    }
}

/// Where results go.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub subject: SubjectTemplate,
    /// Publish with JetStream acks into this stream.
    pub stream: Option<String>,
    /// Add `weir-pipeline` and `weir-version` to every output (the default).
    /// Turning it off is a deliberate trade: on a simple relay the two
    /// headers cost 25–47% of the throughput (nats-server and every consumer
    /// parse them; docs/performance.md). Dead letters
    /// are always stamped.
    pub stamp: bool,
}

/// Where failed events go.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterConfig {
    /// A concrete subject (no wildcards).
    pub subject: Subject,
    pub stream: Option<String>,
}

pub(crate) const DEFAULT_BATCH_SIZE: usize = 64;

// ---- the TOML shape ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    name: Spanned<Name>,
    batch_size: Option<BatchSize>,
    ordered: Option<bool>,
    source: Table<RawSource>,
    #[serde(default)]
    stages: Vec<Spanned<Table<RawStage>>>,
    sink: Table<RawSink>,
    dead_letter: Option<Table<RawDeadLetter>>,
    allow_loops: Option<bool>,
    state: Option<Table<RawState>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    replicas: Option<Replicas>,
}

/// `[state] replicas`: as NATS allows, 1 to 5.
struct Replicas(usize);

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(deserializer)?;
        if (1..=5).contains(&n) {
            Ok(Replicas(n as usize))
        } else {
            Err(InvalidValue::new(format!("{n} replicas"))
                .with_help("NATS keeps 1 to 5 replicas of a bucket".to_owned())
                .into_de())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    subject: Subject,
    queue: Option<Spanned<QueueGroup>>,
    stream: Option<Spanned<NatsName>>,
    durable: Option<Spanned<NatsName>>,
    filter_subject: Option<Spanned<Subject>>,
    ack_wait: Option<Spanned<AckWait>>,
    max_deliver: Option<Spanned<PositiveCount>>,
    max_ack_pending: Option<Spanned<PositiveCount>>,
    deliver: Option<Spanned<Deliver>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Spanned<Name>,
    plugin: Spanned<String>,
    limits: Option<Table<RawLimits>>,
    grants: Option<Table<RawGrants>>,
    config: Option<JsonObject>,
    timer: Option<TimerInterval>,
    candidate: Option<Table<RawCandidate<RawLimits, RawGrants>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrants {
    #[serde(default)]
    dirs: Vec<Spanned<String>>,
    #[serde(default)]
    kv: Vec<NatsName>,
    #[serde(default)]
    clock: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    timeout: Option<StageTimeout>,
    memory: Option<MemoryLimit>,
    state: Option<StateLimit>,
    state_value: Option<StateValueLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    subject: SubjectTemplate,
    stream: Option<NatsName>,
    stamp: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadLetter {
    subject: PublishSubject,
    stream: Option<NatsName>,
}

const DELIVER_HELP: &str = r#"use deliver = "all", "new", { start_sequence = 42 } or { start_time = 2024-05-01T00:00:00Z }"#;

impl<'de> Deserialize<'de> for Deliver {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DeliverVisitor)
    }
}

struct DeliverVisitor;

impl<'de> Visitor<'de> for DeliverVisitor {
    type Value = Deliver;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#""all", "new", { start_sequence = N } or { start_time = T }"#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Deliver, E> {
        match v {
            "all" => Ok(Deliver::All),
            "new" => Ok(Deliver::New),
            _ => Err(InvalidValue::new(format!("unknown deliver policy {v:?}")).with_help(DELIVER_HELP).into_de()),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Deliver, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(InvalidValue::new("deliver table is empty").with_help(DELIVER_HELP).into_de());
        };
        let deliver = match key.as_str() {
            "start_sequence" => Deliver::StartSequence(map.next_value::<Sequence>()?.0),
            "start_time" => Deliver::StartTime(map.next_value::<StartTime>()?.0),
            TOML_DATETIME_KEY => {
                return Err(InvalidValue::new("deliver cannot be a bare datetime")
                    .with_help("write deliver = { start_time = 2024-05-01T00:00:00Z }")
                    .into_de());
            }
            _ => {
                return Err(de::Error::unknown_field(&key, &["start_sequence", "start_time"]));
            }
        };
        if map.next_key::<String>()?.is_some() {
            return Err(InvalidValue::new("deliver takes one of start_sequence or start_time, not both")
                .with_help(DELIVER_HELP)
                .into_de());
        }
        Ok(deliver)
    }
}

/// `start_time`: a TOML offset datetime, or a string holding an RFC 3339 timestamp.
struct StartTime(String);

impl<'de> Deserialize<'de> for StartTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                instant(v).map_err(InvalidValue::into_de)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) if key == TOML_DATETIME_KEY => {
                        let text: String = map.next_value()?;
                        instant(&text).map_err(InvalidValue::into_de)
                    }
                    _ => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
                }
            }
        }
        deserializer.deserialize_any(V).map(StartTime)
    }
}

// ---- checks across fields ------------------------------------------------------------

impl RawPipeline {
    /// Where the `name` value is, for errors about names clashing across files.
    pub(crate) fn name_span(&self) -> std::ops::Range<usize> {
        self.name.span()
    }

    /// Checks what serde cannot see one value at a time, and builds the [`Pipeline`].
    pub(crate) fn validate(self, source: &SourceFile<'_>) -> Result<Pipeline, ConfigError> {
        let Self { name, batch_size, ordered, source: raw_source, stages: raw_stages, sink, dead_letter, allow_loops, state } = self;
        let pipeline_source = validate_source(raw_source.0, source)?;

        let base = source.path.parent().unwrap_or(Path::new(""));
        let mut stages = Vec::with_capacity(raw_stages.len());
        let mut seen: HashMap<Name, usize> = HashMap::new();
        for (index, raw) in raw_stages.into_iter().enumerate() {
            let table_span = raw.span();
            let raw = raw.into_inner().0;
            let name_span = raw.name.span();
            let stage_name = raw.name.into_inner();
            if let Some(first_line) = seen.get(&stage_name) {
                return Err(source.error_at(
                    name_span,
                    format!("stages[{index}].name"),
                    format!("duplicate stage name \"{stage_name}\", already used on line {first_line}"),
                    Some("stage names must be unique within a pipeline: rename one of the stages".to_owned()),
                ));
            }
            seen.insert(stage_name.clone(), source.location(&name_span).line);

            let plugin = resolve_plugin(raw.plugin, index, base, source, "plugin")?;
            let limits = resolve_limits(raw.limits, Limits::default());
            let grants = match raw.grants {
                None => Grants::default(),
                Some(g) => resolve_grants(g.0, index, "grants", base, source)?,
            };
            let config = serde_json::Value::Object(raw.config.map(|c| c.0).unwrap_or_default());
            let candidate = match raw.candidate {
                None => None,
                Some(c) => {
                    let mut c = c.0;
                    // What the candidate does not say, it takes from the stage.
                    let plugin = resolve_plugin(c.plugin.clone(), index, base, source, "candidate.plugin")?;
                    let c_limits = resolve_limits(c.limits.take(), limits);
                    let c_grants = match c.grants.take() {
                        None => grants.clone(),
                        Some(g) => resolve_grants(g.0, index, "candidate.grants", base, source)?,
                    };
                    let c_config = match c.config.take() {
                        None => config.clone(),
                        Some(object) => serde_json::Value::Object(object.0),
                    };
                    Some(c.finish(index, source, plugin, c_config, c_limits, c_grants)?)
                }
            };
            stages.push(StageConfig {
                name: stage_name,
                plugin,
                limits,
                grants,
                config,
                timer: raw.timer.map(|t| t.0),
                location: source.location(&table_span),
                candidate,
            });
        }

        Ok(Pipeline {
            name: name.into_inner(),
            file: source.path.to_owned(),
            batch_size: batch_size.map_or(DEFAULT_BATCH_SIZE, |b| b.0),
            ordered: ordered.unwrap_or(false),
            source: pipeline_source,
            stages,
            sink: SinkConfig { subject: sink.0.subject, stream: sink.0.stream.map(|s| s.0), stamp: sink.0.stamp.unwrap_or(true) },
            dead_letter: dead_letter
                .map(|d| d.0)
                .map(|d| DeadLetterConfig { subject: d.subject.0, stream: d.stream.map(|s| s.0) }),
            allow_loops: allow_loops.unwrap_or(false),
            state: StateConfig { replicas: state.and_then(|s| s.0.replicas).map_or(1, |r| r.0) },
        })
    }
}

/// Joins a stage's plugin path to the pipeline file's directory and checks that the file
/// exists, so that `weir validate` catches a wrong path before a deploy. Relative to the
/// file rather than the working directory, so that a pipelines directory can be moved
/// together with its plugins.
fn resolve_dir(written: Spanned<String>, stage: usize, table: &str, index: usize, base: &Path, source: &SourceFile<'_>) -> Result<PathBuf, ConfigError> {
    let span = written.span();
    let written = written.into_inner();
    let dir = base.join(&written);
    if dir.is_dir() {
        return Ok(dir);
    }
    Err(source.error_at(
        span,
        format!("stages[{stage}].{table}.dirs[{index}]"),
        format!("directory {written:?} not found (resolved to {})", dir.display()),
        Some("grant an existing directory; relative paths are resolved from the directory of the pipeline file".to_owned()),
    ))
}

/// `limits`, each key defaulting to `defaults`'.
fn resolve_limits(raw: Option<Table<RawLimits>>, defaults: Limits) -> Limits {
    raw.map(|l| l.0).map_or(defaults, |l| Limits {
        timeout: l.timeout.map_or(defaults.timeout, |t| t.0),
        memory: l.memory.map_or(defaults.memory, |m| m.0),
        state: l.state.map_or(defaults.state, |m| m.0),
        state_value: l.state_value.map_or(defaults.state_value, |m| m.0),
    })
}

/// `grants` (of a stage, or of its candidate: `table` says which).
fn resolve_grants(g: RawGrants, stage: usize, table: &str, base: &Path, source: &SourceFile<'_>) -> Result<Grants, ConfigError> {
    Ok(Grants {
        dirs: g
            .dirs
            .into_iter()
            .enumerate()
            .map(|(i, dir)| resolve_dir(dir, stage, table, i, base, source))
            .collect::<Result<_, _>>()?,
        kv: g.kv.into_iter().map(|b| b.0).collect(),
        clock: g.clock,
    })
}

fn resolve_plugin(written: Spanned<String>, index: usize, base: &Path, source: &SourceFile<'_>, what: &str) -> Result<PathBuf, ConfigError> {
    let span = written.span();
    let written = written.into_inner();
    let key = format!("stages[{index}].{what}");
    if written.is_empty() {
        return Err(source.error_at(
            span,
            key,
            "plugin path is empty",
            Some("write the path of the stage's .wasm component, like plugin = \"plugins/enrich.wasm\"".to_owned()),
        ));
    }
    let plugin = base.join(&written);
    match std::fs::metadata(&plugin) {
        Ok(meta) if meta.is_file() => Ok(plugin),
        Ok(_) => Err(source.error_at(
            span,
            key,
            format!("plugin {written:?} is not a file (resolved to {})", plugin.display()),
            Some("point plugin at a .wasm component file".to_owned()),
        )),
        Err(_) => Err(source.error_at(
            span,
            key,
            format!("plugin file {written:?} not found (resolved to {})", plugin.display()),
            Some("relative plugin paths are resolved from the directory of the pipeline file".to_owned()),
        )),
    }
}

fn validate_source(raw: RawSource, file: &SourceFile<'_>) -> Result<SourceConfig, ConfigError> {
    let RawSource { subject, queue, stream, durable, filter_subject, ack_wait, max_deliver, max_ack_pending, deliver } = raw;
    let (stream, durable) = match (stream, durable) {
        (Some(stream), Some(durable)) => (stream, durable),
        (Some(stream), None) => {
            return Err(file.error_at(
                stream.span(),
                "source.stream",
                "a JetStream source needs a durable consumer: \"stream\" is set but \"durable\" is not",
                Some("add durable = \"<consumer name>\" to [source], like durable = \"weir-product-views\"".to_owned()),
            ));
        }
        (None, Some(durable)) => {
            return Err(file.error_at(
                durable.span(),
                "source.durable",
                "\"durable\" is set but \"stream\" is not",
                Some("add the JetStream stream to read from, like stream = \"TRACKING\", or remove durable for a core NATS source".to_owned()),
            ));
        }
        (None, None) => {
            // JetStream-only keys on a core NATS source would be silently ignored.
            let stray = [
                filter_subject.as_ref().map(|s| ("filter_subject", s.span())),
                ack_wait.as_ref().map(|s| ("ack_wait", s.span())),
                max_deliver.as_ref().map(|s| ("max_deliver", s.span())),
                max_ack_pending.as_ref().map(|s| ("max_ack_pending", s.span())),
                deliver.as_ref().map(|s| ("deliver", s.span())),
            ];
            if let Some((key, span)) = stray.into_iter().flatten().min_by_key(|(_, s)| s.start) {
                return Err(file.error_at(
                    span,
                    format!("source.{key}"),
                    format!("\"{key}\" only applies to a JetStream source"),
                    Some("set stream and durable in [source] to read from JetStream, or remove this key".to_owned()),
                ));
            }
            return Ok(SourceConfig { subject, queue: queue.map(|q| q.into_inner().0), jetstream: None });
        }
    };
    if let Some(queue) = queue {
        return Err(file.error_at(
            queue.span(),
            "source.queue",
            "\"queue\" cannot be used together with \"stream\"",
            Some("a JetStream source shares events among weir processes through its durable consumer: remove queue".to_owned()),
        ));
    }
    Ok(SourceConfig {
        subject,
        queue: None,
        jetstream: Some(JetStreamConfig {
            stream: stream.into_inner().0,
            durable: durable.into_inner().0,
            filter_subject: filter_subject.map(Spanned::into_inner),
            ack_wait: ack_wait.map(|a| a.into_inner().0),
            max_deliver: max_deliver.map(|m| m.into_inner().0),
            max_ack_pending: max_ack_pending.map(|m| m.into_inner().0),
            deliver: deliver.map(Spanned::into_inner).unwrap_or_default(),
        }),
    })
}
