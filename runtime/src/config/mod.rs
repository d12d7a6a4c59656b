//! Configuration: TOML files in, validated types out.
//!
//! This module owns the pipeline file format (`pipelines/*.toml` → [`Pipeline`]), the
//! global `weir.toml` (→ [`Global`]), the value types they are made of (names, subjects,
//! subject templates, durations, sizes), and the errors an operator sees when a file is
//! wrong ([`ConfigError`]: file, line, column, key, what is wrong and what would be valid).
//! It does no I/O beyond reading config files and checking that plugin files exist;
//! nothing here knows about NATS connections or wasmtime.
//!
//! Layout:
//! - `pipeline`: the pipeline types and the checks across their fields
//! - `global`: `weir.toml`
//! - `subject`, `names`, `units`: validated value types
//! - `json`: a stage's `config` table as JSON
//! - `candidate`: `[stages.candidate]`, a new version of a stage run beside it
//! - `error`: [`ConfigError`] and turning `toml` errors into it
//! - `table`: a struct that must be written as a table
//! - `cases`: test files (`*.test.toml`) for `weir test`

// `ConfigError` is large (file, position, key, message, help, snippet) by design: it is
// what an operator reads, it is built only when a file is wrong, and callers report it
// rather than pass it around.
#![allow(clippy::result_large_err)]

mod candidate;
mod cases;
mod error;
mod global;
mod json;
mod loops;
mod names;
mod pipeline;
mod subject;
mod table;
mod units;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use candidate::{CanaryKey, Candidate, Decide, Mode, Rules};
pub use cases::{Budget, Case, DeadLetterExpect, Expect, OutputExpect, PayloadCheck, TestFile};
pub use error::{ConfigError, InvalidValue, Location, Snippet};
pub use global::{Global, MetricsConfig, NatsAuth, NatsConfig, TlsConfig};
pub use loops::{Feedback, MAX_HOPS, cycles, subjects_overlap};
pub use names::Name;
pub use pipeline::{DeadLetterConfig, Deliver, Grants, JetStreamConfig, Limits, Pipeline, SinkConfig, SourceConfig, StageConfig};
pub use subject::{Subject, SubjectTemplate};
pub use units::{format_duration, format_size, parse_duration, parse_size};

use error::SourceFile;

/// Parses one pipeline file. `file` is used for messages and to resolve relative plugin
/// paths (which must exist).
pub fn parse_pipeline(text: &str, file: &Path) -> Result<Pipeline, ConfigError> {
    parse_pipeline_located(text, file).map(|(pipeline, _)| pipeline)
}

/// Like [`parse_pipeline`], also returning the span of the `name` value, for errors that
/// involve several files.
fn parse_pipeline_located(text: &str, file: &Path) -> Result<(Pipeline, Range<usize>), ConfigError> {
    let source = SourceFile::new(file, text);
    let raw: pipeline::RawPipeline = deserialize(&source)?;
    let name_span = raw.name_span();
    raw.validate(&source).map(|p| (p, name_span))
}

/// Reads and parses one pipeline file.
pub fn load_pipeline(file: &Path) -> Result<Pipeline, ConfigError> {
    let text = read(file)?;
    parse_pipeline(&text, file)
}

/// The suffix of test files (`weir test`). A directory of pipelines skips them, so that
/// a test file may sit beside the pipelines it tests.
pub const TEST_FILE_SUFFIX: &str = ".test.toml";

/// Parses one test file (`*.test.toml`); `file` is used for messages and to resolve the
/// relative paths in it (pipelines, inputs, KV and golden files).
pub fn parse_test_file(text: &str, file: &Path) -> Result<TestFile, ConfigError> {
    let source = SourceFile::new(file, text);
    let raw: cases::RawFile = deserialize(&source)?;
    raw.validate(&source)
}

/// Reads and parses one test file.
pub fn load_test_file(file: &Path) -> Result<TestFile, ConfigError> {
    let text = read(file)?;
    parse_test_file(&text, file)
}

/// Loads pipelines from files and directories: a directory stands for every `*.toml` file
/// directly in it (except test files, `*.test.toml`), sorted by name. Returns every pipeline that parsed and every error, so
/// that `weir validate` can report all problems at once. Two files declaring the same
/// pipeline name is an error naming both; the first one is kept.
pub fn load_pipelines(paths: &[PathBuf]) -> (Vec<Pipeline>, Vec<ConfigError>) {
    let mut pipelines = Vec::new();
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        match expand(path) {
            Ok(found) => files.extend(found),
            Err(error) => errors.push(error),
        }
    }
    // The same file given twice (`pipelines/ pipelines/a.toml`) is loaded once rather
    // than reported as clashing with itself.
    let mut seen_files = Vec::new();
    let mut names: HashMap<Name, Location> = HashMap::new();
    let mut texts: Vec<String> = Vec::new();
    for file in files {
        let identity = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if seen_files.contains(&identity) {
            continue;
        }
        seen_files.push(identity);
        let text = match read(&file) {
            Ok(text) => text,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        match parse_pipeline_located(&text, &file) {
            Ok((pipeline, name_span)) => {
                let source = SourceFile::new(&file, &text);
                if let Some(first) = names.get(&pipeline.name) {
                    errors.push(source.error_at(
                        name_span,
                        "name",
                        format!("pipeline name \"{}\" is already used by {first}", pipeline.name),
                        Some("pipeline names must be unique across all pipeline files: rename one of them (this file was not loaded)".to_owned()),
                    ));
                } else {
                    names.insert(pipeline.name.clone(), source.location(&name_span));
                    pipelines.push(pipeline);
                    texts.push(text);
                }
            }
            Err(error) => errors.push(error),
        }
    }
    let looping = loop_errors(&pipelines, &texts);
    let mut index = 0;
    pipelines.retain(|_| {
        index += 1;
        !looping.iter().any(|(i, _)| *i == index - 1)
    });
    errors.extend(looping.into_iter().map(|(_, e)| e));
    (pipelines, errors)
}

/// The pipelines that publish into a loop through subjects (see `loops`),
/// each with an error at its `[sink]` or `[dead_letter]` subject; those with
/// `allow_loops = true` are left out (see [`allowed_loops`]).
fn loop_errors(pipelines: &[Pipeline], texts: &[String]) -> Vec<(usize, ConfigError)> {
    let refs: Vec<&Pipeline> = pipelines.iter().collect();
    let mut out: Vec<(usize, ConfigError)> = Vec::new();
    for cycle in loops::cycles(&refs) {
        let path = describe_cycle(&cycle);
        for edge in &cycle {
            let Some(index) = pipelines.iter().position(|p| p.name.as_str() == edge.from) else { continue };
            let pipeline = &pipelines[index];
            if pipeline.allow_loops || out.iter().any(|(i, _)| *i == index) {
                continue;
            }
            let source = SourceFile::new(&pipeline.file, &texts[index]);
            let (message, help) = if cycle.len() == 1 {
                (
                    format!(
                        "pipeline \"{}\" feeds itself: its [{}] can publish to {}, which its own [source] reads ({}); every event would come back as an input",
                        edge.from, edge.key, edge.publishes, edge.reads
                    ),
                    format!(
                        "publish to a subject the source does not read{}; if the stages always change the subject so that nothing comes back, set allow_loops = true (an event is then stopped after {} hops)",
                        if edge.key == "sink" { ", like \"processed.{subject}\"" } else { "" },
                        loops::MAX_HOPS
                    ),
                )
            } else {
                (
                    format!("pipelines form a loop through their subjects: {path}"),
                    format!(
                        "make one of them publish to a subject the next does not read; if the stages always change the subject so that nothing comes back, set allow_loops = true in each (an event is then stopped after {} hops)",
                        loops::MAX_HOPS
                    ),
                )
            };
            let key = format!("{}.subject", edge.key);
            let span = key_span(&texts[index], edge.key, "subject");
            out.push((index, source.error(span, Some(key), message, Some(help))));
        }
    }
    out
}

/// The loops that pipelines with `allow_loops = true` take part in, for a
/// loud warning when they are loaded.
pub fn allowed_loops(pipelines: &[Pipeline]) -> Vec<String> {
    let refs: Vec<&Pipeline> = pipelines.iter().collect();
    loops::cycles(&refs).iter().map(|c| describe_cycle(c)).collect()
}

fn describe_cycle(cycle: &[Feedback]) -> String {
    cycle.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Where `[table] key`'s value is in `text`.
fn key_span(text: &str, table: &str, key: &str) -> Option<Range<usize>> {
    let tree = toml::de::DeTable::parse(text).ok()?;
    let table = tree.get_ref().get(table)?;
    match table.get_ref() {
        toml::de::DeValue::Table(t) => t.get(key).map(toml::Spanned::span),
        _ => None,
    }
}

/// A file is itself; a directory is its `*.toml` files, sorted by name.
fn expand(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::io(path, "file", &e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| ConfigError::io(path, "directory", &e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::io(path, "directory", &e))?;
        let file = entry.path();
        let is_toml = file.extension().is_some_and(|ext| ext == "toml") && !file.to_string_lossy().ends_with(TEST_FILE_SUFFIX);
        // Follow symlinks: a pipeline file may be linked in from elsewhere.
        if is_toml && std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses the global `weir.toml`. Relative paths in it are joined to `file`'s directory.
pub fn parse_global(text: &str, file: &Path) -> Result<Global, ConfigError> {
    let source = SourceFile::with_secrets(file, text);
    let raw: global::RawGlobal = deserialize(&source)?;
    raw.validate(&source)
}

/// Reads the global config file, or returns all defaults when there is none.
pub fn load_global(file: Option<&Path>) -> Result<Global, ConfigError> {
    match file {
        None => Ok(Global::default()),
        Some(file) => parse_global(&read(file)?, file),
    }
}

fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|e| ConfigError::io(file, "file", &e))
}

/// Parses TOML and deserializes it, turning syntax and type errors into [`ConfigError`]s.
fn deserialize<T: serde::de::DeserializeOwned>(source: &SourceFile<'_>) -> Result<T, ConfigError> {
    // Parse first, separately, so that syntax errors and type errors get their own wording.
    let tree = toml::de::DeTable::parse(source.text).map_err(|e| source.toml_error(&e, true))?;
    T::deserialize(toml::de::Deserializer::from(tree)).map_err(|e| source.toml_error(&e, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_pipeline_defaults() {
        let text = "name = \"relay\"\n[source]\nsubject = \"in.>\"\n[sink]\nsubject = \"out.{subject}\"\n";
        let p = parse_pipeline(text, Path::new("pipelines/relay.toml")).expect("valid");
        assert_eq!(p.name.as_str(), "relay");
        assert_eq!(p.batch_size, 64);
        assert!(!p.ordered);
        assert!(p.stages.is_empty());
        assert_eq!(p.source.queue, None);
        assert_eq!(p.source.jetstream, None);
        assert_eq!(p.sink.stream, None);
        assert_eq!(p.dead_letter, None);
        assert_eq!(p.file, PathBuf::from("pipelines/relay.toml"));
    }

    #[test]
    fn limits_defaults() {
        let limits = Limits::default();
        assert_eq!(limits.timeout, std::time::Duration::from_millis(100));
        assert_eq!(limits.memory, 64 * 1024 * 1024);
    }

    #[test]
    fn global_relative_paths() {
        let g = parse_global("cache_dir = \"cache\"\n[nats]\ncreds = \"/abs/x.creds\"\n", Path::new("etc/weir.toml")).expect("valid");
        assert_eq!(g.pipelines, PathBuf::from("etc/pipelines"));
        assert_eq!(g.cache_dir, PathBuf::from("etc/cache"));
        assert_eq!(g.nats.auth, NatsAuth::Creds(PathBuf::from("/abs/x.creds")));
        assert_eq!(g.file.as_deref(), Some(Path::new("etc/weir.toml")));
    }

    #[test]
    fn empty_global_is_defaults() {
        let g = parse_global("", Path::new("weir.toml")).expect("valid");
        let d = Global::default();
        assert_eq!(g.instance, d.instance);
        assert_eq!(g.workers, d.workers);
        assert_eq!(g.pipelines, PathBuf::from("pipelines"));
        assert!(load_global(None).is_ok());
    }

    #[test]
    fn missing_file() {
        let err = load_pipeline(Path::new("does/not/exist.toml")).expect_err("no file");
        assert_eq!(err.to_string(), "does/not/exist.toml: cannot read file: No such file or directory");
    }
}
