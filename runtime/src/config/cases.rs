//! Test files (`*.test.toml`): cases that run a pipeline over given events
//! and say what must come out of it, read by `weir test`.
//!
//! ```toml
//! pipeline = "../orders.toml"          # every case's pipeline, unless it names its own
//!
//! [[case]]
//! name = "paid orders are stamped and routed"
//! [[case.input]]
//! subject = "shop.orders.created"
//! payload = { id = 1, status = "paid", total = 10, country = "DE" }
//! [[case.output]]
//! subject = "processed.orders.DE.paid"
//! paths = { schema = 2, pipeline = "orders" }
//! [case.budget]
//! per_event = "500us"
//! memory = "32MiB"
//! ```
//!
//! Like pipeline files, the file is read in two steps: serde reads the `Raw*`
//! shape (unknown keys and wrong types are reported by the `toml` crate with
//! their spans), then [`RawFile::validate`] checks what needs several values
//! or other files (the pipeline exists and has the stage a case names, input
//! and golden files, budgets) and reports it at the offending key.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use toml::Spanned;

use super::error::{ConfigError, Location, SourceFile};
use super::json::{JsonObject, JsonValue};
use super::subject::Subject;
use super::table::Table;
use super::units::{format_size, parse_duration, parse_size};
use super::{Pipeline, load_pipeline};
use crate::event::{ErrorKind, Event};

/// A KV bucket's entries: key, and value as JSON bytes.
pub type KvEntries = Vec<(String, Vec<u8>)>;

/// One test file: its cases, in the order written.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The file as given.
    pub file: PathBuf,
    /// `[[case]]` entries.
    pub cases: Vec<Case>,
}

/// One `[[case]]`: a pipeline (or one of its stages), events in, what must
/// come out, and what the stages may cost.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique within its file.
    pub name: String,
    /// Where the case's table starts.
    pub location: Location,
    /// The pipeline under test, as its file says.
    pub pipeline: Pipeline,
    /// `stage = "tag"`: run that stage alone, with the pipeline's config for
    /// it; its outputs keep the subjects the stage gave them.
    pub stage: Option<String>,
    /// `input_file`: a JSON-lines file of envelopes (the form `weir exec`
    /// reads); its events come before the inline ones.
    pub input_file: Option<PathBuf>,
    /// The subject of bare-payload lines in `input_file` and of inline inputs
    /// without one.
    pub subject: Option<String>,
    /// `[[case.input]]` events.
    pub inputs: Vec<Event>,
    /// `kv_files`: JSON files of key to value, each filling the bucket named
    /// after it, as `weir exec --kv` reads them.
    pub kv_files: Vec<PathBuf>,
    /// `kv`: buckets written inline, `(bucket, [(key, value as JSON bytes)])`;
    /// their keys are added to (or replace those of) `kv_files`.
    pub kv: Vec<(String, KvEntries)>,
    /// `dirs`: a directory to grant in place of the pipeline's own, by the
    /// name the stage sees it under: `("/models", fixtures/models)`.
    pub dirs: Vec<(String, PathBuf)>,
    /// What must come out.
    pub expect: Expect,
    /// Per-stage budgets.
    pub budgets: Vec<Budget>,
}

impl Case {
    /// The stages this case runs, in order.
    pub fn stages(&self) -> Vec<&str> {
        match &self.stage {
            Some(stage) => vec![stage.as_str()],
            None => self.pipeline.stages.iter().map(|s| s.name.as_str()).collect(),
        }
    }
}

/// A case's expectations.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Outputs, dropped inputs and dead letters, as the case lists them.
    Listed {
        /// `[[case.output]]`: every output, no more.
        outputs: Vec<OutputExpect>,
        /// `ordered` (default true): outputs come in the order listed.
        ordered: bool,
        /// `dropped`: 1-based numbers of the inputs that must produce nothing.
        dropped: Vec<usize>,
        /// `[[case.dead_letter]]`: every dead letter, no more.
        dead_letters: Vec<DeadLetterExpect>,
    },
    /// `golden`: compared line by line with what `weir test --update` wrote.
    Golden(PathBuf),
}

/// One `[[case.output]]`.
#[derive(Debug, Clone)]
pub struct OutputExpect {
    /// Where it is written, for messages.
    pub location: Location,
    /// The 1-based input it must come from.
    pub input: Option<usize>,
    /// The subject, exact or with `*` and `>` wildcards.
    pub subject: Option<Subject>,
    /// Headers that must be present with these values (others may be too).
    pub headers: Vec<(String, String)>,
    /// Checks on the payload; all must hold.
    pub payload: Vec<PayloadCheck>,
    /// How far numbers may be from the expected ones.
    pub tolerance: f64,
}

/// One check on an output's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadCheck {
    /// `payload`: equal JSON (numbers within the tolerance).
    Json(Value),
    /// `payload_subset`: every key given is present with a matching value;
    /// arrays match element by element.
    Subset(Value),
    /// `paths`: the values at these paths (`a.b.0` or a JSON pointer `/a/b/0`).
    Paths(Vec<(String, Value)>),
    /// `payload_text`: exactly this text.
    Text(String),
    /// `payload_base64`: exactly these bytes.
    Bytes(Vec<u8>),
}

/// One `[[case.dead_letter]]`. Unset fields match anything.
#[derive(Debug, Clone)]
pub struct DeadLetterExpect {
    /// Where it is written, for messages.
    pub location: Location,
    /// The 1-based input.
    pub input: Option<usize>,
    /// The stage that refused it (`sink` for an unpublishable output).
    pub stage: Option<String>,
    /// The kind, as the `weir-error-kind` header says it.
    pub kind: Option<ErrorKind>,
    /// Text the message must contain.
    pub message: Option<String>,
}

/// What one stage may cost in one case.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// The stage.
    pub stage: String,
    /// The most time per event (median over the case's batches).
    pub per_event: Option<Duration>,
    /// The most linear memory an instance may hold.
    pub memory: Option<u64>,
    /// Where the budget is written.
    pub location: Location,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = self.per_event {
            parts.push(format!("per_event = {:?}", super::format_duration(t)));
        }
        if let Some(m) = self.memory {
            parts.push(format!("memory = {:?}", format_size(m)));
        }
        write!(f, "{}", parts.join(", "))
    }
}

// ---- the TOML shape ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pipeline: Option<Spanned<String>>,
    #[serde(default)]
    case: Vec<Spanned<Table<RawCase>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Spanned<String>,
    pipeline: Option<Spanned<String>>,
    stage: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    input_file: Option<Spanned<String>>,
    #[serde(default)]
    input: Vec<Spanned<Table<RawInput>>>,
    #[serde(default)]
    kv_files: Vec<Spanned<String>>,
    kv: Option<BTreeMap<String, JsonObject>>,
    dirs: Option<BTreeMap<String, Spanned<String>>>,
    ordered: Option<bool>,
    tolerance: Option<Spanned<f64>>,
    dropped: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    output: Vec<Spanned<Table<RawOutput>>>,
    #[serde(default)]
    dead_letter: Vec<Spanned<Table<RawDeadLetter>>>,
    golden: Option<Spanned<String>>,
    budget: Option<BTreeMap<Spanned<String>, Spanned<BudgetValue>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    subject: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, Headers>>,
    payload: Option<JsonValue>,
    payload_text: Option<String>,
    payload_base64: Option<Spanned<String>>,
    payload_json: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    input: Option<Spanned<i64>>,
    subject: Option<Subject>,
    headers: Option<BTreeMap<String, Headers>>,
    payload: Option<JsonValue>,
    payload_subset: Option<JsonValue>,
    paths: Option<BTreeMap<String, JsonValue>>,
    payload_text: Option<String>,
    payload_base64: Option<Spanned<String>>,
    payload_json: Option<Spanned<String>>,
    tolerance: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadLetter {
    input: Option<Spanned<i64>>,
    stage: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    message: Option<String>,
}

/// A header's value: one string or several.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
enum Headers {
    One(String),
    Many(Vec<String>),
}

fn headers(map: Option<BTreeMap<String, Headers>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, values) in map.unwrap_or_default() {
        match values {
            Headers::One(v) => out.push((name, v)),
            Headers::Many(vs) => out.extend(vs.into_iter().map(|v| (name.clone(), v))),
        }
    }
    out
}

/// A value in `budget`: `per_event` and `memory` are strings (`memory` may
/// be a number of bytes); any other key is a stage's own table.
enum BudgetValue {
    Text(String),
    Bytes(i64),
    Stage(BTreeMap<Spanned<String>, Spanned<BudgetValue>>),
}

impl<'de> Deserialize<'de> for BudgetValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BudgetValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration like "40us", a size like "32MiB", or a stage's table of them"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BudgetValue, E> {
                Ok(BudgetValue::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BudgetValue, E> {
                Ok(BudgetValue::Bytes(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BudgetValue, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<BudgetValue>>()?;
                    out.insert(key, value);
                }
                Ok(BudgetValue::Stage(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

// ---- checks across fields ------------------------------------------------------------

/// What validating one case needs from around it.
struct Context<'a> {
    source: &'a SourceFile<'a>,
    base: &'a Path,
    /// Pipelines already read, by resolved path: many cases share one.
    pipelines: &'a mut HashMap<PathBuf, Pipeline>,
}

impl RawFile {
    pub(crate) fn validate(self, source: &SourceFile<'_>) -> Result<TestFile, ConfigError> {
        let base = source.path.parent().unwrap_or(Path::new(""));
        let mut pipelines = HashMap::new();
        let mut cx = Context { source, base, pipelines: &mut pipelines };
        if self.case.is_empty() {
            return Err(source.error(
                None,
                None,
                "no cases: a test file needs at least one [[case]]",
                Some("add [[case]] with a name, inputs and what must come out; see docs/testing.md".to_owned()),
            ));
        }
        let mut cases: Vec<Case> = Vec::with_capacity(self.case.len());
        for (index, raw) in self.case.into_iter().enumerate() {
            let location = source.location(&raw.span());
            let raw = raw.into_inner().0;
            let name_span = raw.name.span();
            let case = raw.validate(index, location, self.pipeline.as_ref(), &mut cx)?;
            if let Some(first) = cases.iter().find(|c| c.name == case.name) {
                return Err(source.error_at(
                    name_span,
                    format!("case[{index}].name"),
                    format!("duplicate case name \"{}\", already used on line {}", case.name, first.location.line),
                    Some("case names must be unique within a test file: --filter and reports find cases by name".to_owned()),
                ));
            }
            cases.push(case);
        }
        Ok(TestFile { file: source.path.to_owned(), cases })
    }
}

impl RawCase {
    fn validate(self, index: usize, location: Location, file_pipeline: Option<&Spanned<String>>, cx: &mut Context<'_>) -> Result<Case, ConfigError> {
        let source = cx.source;
        let key = |k: &str| format!("case[{index}].{k}");
        let name = self.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err(source.error_at(
                self.name.span(),
                key("name"),
                "the case name is empty",
                Some("name the case after what it proves, like name = \"paid orders are routed by country\"".to_owned()),
            ));
        }

        // The pipeline: the case's own, else the file's.
        let (written, pipeline_key) = match (&self.pipeline, file_pipeline) {
            (Some(p), _) => (p, key("pipeline")),
            (None, Some(p)) => (p, "pipeline".to_owned()),
            (None, None) => {
                return Err(source.error_at(
                    self.name.span(),
                    key("pipeline"),
                    format!("case \"{name}\" names no pipeline"),
                    Some("set pipeline = \"../orders.toml\" at the top of the file (every case) or in the case; the path is relative to this file".to_owned()),
                ));
            }
        };
        let pipeline_file = existing(cx.base, written, &pipeline_key, "pipeline file", false, source)?;
        let pipeline = match cx.pipelines.get(&pipeline_file) {
            Some(p) => p.clone(),
            None => {
                let p = load_pipeline(&pipeline_file)?;
                cx.pipelines.insert(pipeline_file.clone(), p.clone());
                p
            }
        };
        let stage_names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
        let unknown_stage = |span: std::ops::Range<usize>, k: String, stage: &str, what: &str| {
            source.error_at(
                span,
                k,
                format!("{what} \"{stage}\" is not a stage of {} ({})", pipeline.file.display(), pipeline.name),
                Some(if stage_names.is_empty() { "that pipeline has no stages".to_owned() } else { format!("its stages are: {}", stage_names.join(", ")) }),
            )
        };
        let stage = match &self.stage {
            Some(s) if !stage_names.contains(&s.get_ref().as_str()) => {
                return Err(unknown_stage(s.span(), key("stage"), s.get_ref(), "stage"));
            }
            Some(s) => Some(s.get_ref().clone()),
            None => None,
        };
        let tested: Vec<String> = match &stage {
            Some(s) => vec![s.clone()],
            None => stage_names.iter().map(|s| (*s).to_owned()).collect(),
        };

        let subject = match self.subject {
            Some(s) => Some(publish_subject(s, key("subject"), source)?),
            None => None,
        };
        let input_file = match &self.input_file {
            Some(f) => Some(existing(cx.base, f, &key("input_file"), "input file", false, source)?),
            None => None,
        };
        let mut inputs = Vec::with_capacity(self.input.len());
        for (i, raw) in self.input.into_iter().enumerate() {
            let span = raw.span();
            inputs.push(raw.into_inner().0.event(span, &format!("case[{index}].input[{i}]"), subject.as_deref(), source)?);
        }
        if inputs.is_empty() && input_file.is_none() {
            return Err(source.error_at(
                self.name.span(),
                key("input"),
                format!("case \"{name}\" has no inputs"),
                Some("add [[case.input]] events, or input_file = \"samples/events.jsonl\" (one envelope per line, as `weir exec` reads)".to_owned()),
            ));
        }

        let kv_files = self
            .kv_files
            .iter()
            .enumerate()
            .map(|(i, f)| existing(cx.base, f, &format!("case[{index}].kv_files[{i}]"), "KV file", false, source))
            .collect::<Result<Vec<_>, _>>()?;
        let kv = self
            .kv
            .unwrap_or_default()
            .into_iter()
            .map(|(bucket, JsonObject(entries))| {
                let entries = entries
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::to_vec(&v).expect("JSON values serialise")))
                    .collect();
                (bucket, entries)
            })
            .collect();

        let granted: Vec<String> = pipeline
            .stages
            .iter()
            .filter(|s| tested.iter().any(|t| t == s.name.as_str()))
            .flat_map(|s| s.grants.dirs.iter().map(|d| super::Grants::guest_path(d)))
            .collect();
        let mut dirs = Vec::new();
        for (guest, dir) in self.dirs.unwrap_or_default() {
            let k = super::error::join_key(&key("dirs"), &guest);
            let path = existing(cx.base, &dir, &k, "directory", true, source)?;
            let guest = format!("/{}", guest.trim_start_matches('/'));
            if !granted.contains(&guest) {
                return Err(source.error_at(
                    dir.span(),
                    k,
                    format!("no stage under test is granted a directory seen as {guest}"),
                    Some(if granted.is_empty() {
                        "dirs replaces a directory the pipeline grants (grants = { dirs = [...] }); these stages are granted none".to_owned()
                    } else {
                        format!("dirs replaces a directory the pipeline grants; granted here: {}", granted.join(", "))
                    }),
                ));
            }
            dirs.push((guest, path));
        }

        let tolerance = match self.tolerance {
            Some(t) => tolerance(t, key("tolerance"), source)?,
            None => 0.0,
        };
        let expect = match self.golden {
            Some(golden) => {
                let listed = [
                    (!self.output.is_empty()).then_some("output"),
                    (!self.dead_letter.is_empty()).then_some("dead_letter"),
                    self.dropped.as_ref().map(|_| "dropped"),
                    self.ordered.map(|_| "ordered"),
                ];
                if let Some(other) = listed.into_iter().flatten().next() {
                    return Err(source.error_at(
                        golden.span(),
                        key("golden"),
                        format!("a case compares with a golden file or lists what must come out, not both (it also has {other:?})"),
                        Some("remove golden, or move the listed expectations to a case of their own".to_owned()),
                    ));
                }
                let written = golden.get_ref();
                if written.trim().is_empty() {
                    return Err(source.error_at(
                        golden.span(),
                        key("golden"),
                        "the golden file path is empty",
                        Some("write a path relative to this file, like golden = \"golden/orders.jsonl\"; `weir test --update` writes it".to_owned()),
                    ));
                }
                // May not exist yet: `weir test --update` writes it.
                Expect::Golden(cx.base.join(written))
            }
            None => {
                let mut outputs = Vec::with_capacity(self.output.len());
                for (i, raw) in self.output.into_iter().enumerate() {
                    let loc = source.location(&raw.span());
                    outputs.push(raw.into_inner().0.validate(loc, &format!("case[{index}].output[{i}]"), tolerance, source)?);
                }
                let mut dropped = Vec::new();
                if let Some(list) = self.dropped {
                    for (i, n) in list.into_inner().into_iter().enumerate() {
                        dropped.push(input_number(&n, format!("case[{index}].dropped[{i}]"), source)?);
                    }
                }
                let mut dead_letters = Vec::with_capacity(self.dead_letter.len());
                for (i, raw) in self.dead_letter.into_iter().enumerate() {
                    let loc = source.location(&raw.span());
                    let raw = raw.into_inner().0;
                    let k = format!("case[{index}].dead_letter[{i}]");
                    let input = match &raw.input {
                        Some(n) => Some(input_number(n, format!("{k}.input"), source)?),
                        None => None,
                    };
                    if let Some(s) = &raw.stage
                        && !tested.iter().any(|t| t == s.get_ref())
                        && !["sink", "input"].contains(&s.get_ref().as_str())
                    {
                        return Err(unknown_stage(s.span(), format!("{k}.stage"), s.get_ref(), "dead_letter stage"));
                    }
                    let kind = match &raw.kind {
                        Some(kind) => Some(ErrorKind::ALL.into_iter().find(|k| k.as_str() == kind.get_ref()).ok_or_else(|| {
                            source.error_at(
                                kind.span(),
                                format!("{k}.kind"),
                                format!("unknown dead-letter kind {:?}", kind.get_ref()),
                                Some(format!("use one of: {}", ErrorKind::ALL.map(|k| k.as_str()).join(", "))),
                            )
                        })?),
                        None => None,
                    };
                    dead_letters.push(DeadLetterExpect { location: loc, input, stage: raw.stage.map(Spanned::into_inner), kind, message: raw.message });
                }
                Expect::Listed { outputs, ordered: self.ordered.unwrap_or(true), dropped, dead_letters }
            }
        };

        let mut budgets: Vec<Budget> = Vec::new();
        if let Some(table) = self.budget {
            let mut all = Budget { stage: String::new(), per_event: None, memory: None, location: location.clone() };
            let mut own = Vec::new();
            for (k, value) in table {
                let path = super::error::join_key(&key("budget"), k.get_ref());
                match (k.get_ref().as_str(), value.get_ref()) {
                    ("per_event" | "memory", _) => {
                        all.location = source.location(&k.span());
                        limit(&mut all, k.get_ref(), &value, path, source)?;
                    }
                    (stage_name, BudgetValue::Stage(limits)) => {
                        if !tested.iter().any(|t| t == stage_name) {
                            return Err(unknown_stage(k.span(), path, stage_name, "budget stage"));
                        }
                        let mut b = Budget { stage: stage_name.to_owned(), per_event: None, memory: None, location: source.location(&k.span()) };
                        for (lk, lv) in limits {
                            let lpath = super::error::join_key(&path, lk.get_ref());
                            match lk.get_ref().as_str() {
                                "per_event" | "memory" => limit(&mut b, lk.get_ref(), lv, lpath, source)?,
                                other => {
                                    return Err(source.error_at(
                                        lk.span(),
                                        lpath,
                                        format!("unknown budget key {other:?}"),
                                        Some("a stage's budget has per_event (like \"40us\") and memory (like \"32MiB\")".to_owned()),
                                    ));
                                }
                            }
                        }
                        own.push(b);
                    }
                    (other, _) => {
                        return Err(source.error_at(
                            k.span(),
                            path,
                            format!("unknown budget key {other:?}"),
                            Some(format!(
                                "budget has per_event (like \"40us\") and memory (like \"32MiB\") for every stage, or a table per stage ({})",
                                tested.join(", ")
                            )),
                        ));
                    }
                }
            }
            // The case-wide limits apply to every stage, under its own.
            for stage_name in &tested {
                let mine = own.iter().find(|b| &b.stage == stage_name);
                let per_event = mine.and_then(|b| b.per_event).or(all.per_event);
                let memory = mine.and_then(|b| b.memory).or(all.memory);
                if per_event.is_some() || memory.is_some() {
                    let location = mine.map_or_else(|| all.location.clone(), |b| b.location.clone());
                    budgets.push(Budget { stage: stage_name.clone(), per_event, memory, location });
                }
            }
            if tested.is_empty() {
                return Err(source.error(
                    None,
                    Some(key("budget")),
                    "a budget on a pipeline without stages",
                    Some("remove the budget: there is no stage to measure".to_owned()),
                ));
            }
        }

        Ok(Case { name, location, pipeline, stage, input_file, subject, inputs, kv_files, kv, dirs, expect, budgets })
    }
}

impl RawInput {
    fn event(self, span: std::ops::Range<usize>, key: &str, default_subject: Option<&str>, source: &SourceFile<'_>) -> Result<Event, ConfigError> {
        let subject = match self.subject {
            Some(s) => publish_subject(s, format!("{key}.subject"), source)?,
            None => default_subject.map(str::to_owned).ok_or_else(|| {
                source.error_at(
                    span.clone(),
                    format!("{key}.subject"),
                    "the input has no subject",
                    Some("give it subject = \"...\", or set subject = \"...\" on the case for all its inputs".to_owned()),
                )
            })?,
        };
        let payload =
            payload(self.payload, self.payload_text, self.payload_base64, self.payload_json, span, key, true, source)?.expect("an input always has a payload");
        let payload = match payload {
            PayloadCheck::Json(v) => serde_json::to_vec(&v).expect("JSON values serialise"),
            PayloadCheck::Text(t) => t.into_bytes(),
            PayloadCheck::Bytes(b) => b,
            PayloadCheck::Subset(_) | PayloadCheck::Paths(_) => {
                unreachable!("inputs have no subsets")
            }
        };
        Ok(Event { subject, headers: headers(self.headers), payload: payload.into() })
    }
}

impl RawOutput {
    fn validate(self, location: Location, key: &str, default_tolerance: f64, source: &SourceFile<'_>) -> Result<OutputExpect, ConfigError> {
        let tolerance = match self.tolerance {
            Some(t) => tolerance(t, format!("{key}.tolerance"), source)?,
            None => default_tolerance,
        };
        let input = match &self.input {
            Some(n) => Some(input_number(n, format!("{key}.input"), source)?),
            None => None,
        };
        let span = 0..0;
        let mut checks = Vec::new();
        if let Some(exact) = payload(self.payload, self.payload_text, self.payload_base64, self.payload_json, span, key, false, source)? {
            checks.push(exact);
        }
        if let Some(JsonValue(subset)) = self.payload_subset {
            checks.push(PayloadCheck::Subset(subset));
        }
        if let Some(paths) = self.paths {
            checks.push(PayloadCheck::Paths(paths.into_iter().map(|(k, JsonValue(v))| (k, v)).collect()));
        }
        Ok(OutputExpect { location, input, subject: self.subject, headers: headers(self.headers), payload: checks, tolerance })
    }
}

/// The one payload of an input (`required`), or the exact payload of an
/// output: `payload`, `payload_text`, `payload_base64` or `payload_json`.
#[allow(clippy::too_many_arguments)]
fn payload(
    json: Option<JsonValue>,
    text: Option<String>,
    base64: Option<Spanned<String>>,
    raw_json: Option<Spanned<String>>,
    span: std::ops::Range<usize>,
    key: &str,
    required: bool,
    source: &SourceFile<'_>,
) -> Result<Option<PayloadCheck>, ConfigError> {
    let given = [json.is_some(), text.is_some(), base64.is_some(), raw_json.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    let help = "give one of payload (TOML, sent as JSON), payload_json (a JSON string, for null or exact bytes), payload_text or payload_base64";
    if given > 1 {
        let at = base64.as_ref().map(Spanned::span).or(raw_json.as_ref().map(Spanned::span)).unwrap_or(span);
        return Err(source.error_at(at, key.to_owned(), "more than one payload", Some(help.to_owned())));
    }
    if given == 0 {
        if required {
            return Err(source.error_at(span, format!("{key}.payload"), "the input has no payload", Some(help.to_owned())));
        }
        return Ok(None);
    }
    Ok(Some(if let Some(JsonValue(v)) = json {
        PayloadCheck::Json(v)
    } else if let Some(t) = text {
        PayloadCheck::Text(t)
    } else if let Some(b) = base64 {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b.get_ref()).map_err(|e| {
            source.error_at(
                b.span(),
                format!("{key}.payload_base64"),
                format!("not base64: {e}"),
                Some("write standard base64 with padding, like \"/wA=\"".to_owned()),
            )
        })?;
        PayloadCheck::Bytes(bytes)
    } else {
        let raw = raw_json.expect("one payload is given");
        let value: Value = serde_json::from_str(raw.get_ref()).map_err(|e| {
            source.error_at(
                raw.span(),
                format!("{key}.payload_json"),
                format!("not JSON: {e}"),
                Some("payload_json is a string holding JSON, like payload_json = '{\"a\": null}'".to_owned()),
            )
        })?;
        if required {
            // An input's bytes are sent as written.
            PayloadCheck::Bytes(raw.into_inner().into_bytes())
        } else {
            PayloadCheck::Json(value)
        }
    }))
}

fn limit(budget: &mut Budget, key: &str, value: &Spanned<BudgetValue>, path: String, source: &SourceFile<'_>) -> Result<(), ConfigError> {
    let bad = |message: String, help: &str| source.error_at(value.span(), path.clone(), message, Some(help.to_owned()));
    match (key, value.get_ref()) {
        ("per_event", BudgetValue::Text(t)) => {
            let d = parse_duration(t).map_err(|e| bad(e.message, r#"write a number and a unit, like "40us", "2ms" or "1s""#))?;
            if d.is_zero() {
                return Err(bad(format!("per_event {t:?} is zero"), "a budget of zero always fails: give the most time an event may take"));
            }
            budget.per_event = Some(d);
        }
        ("memory", BudgetValue::Text(t)) => {
            budget.memory = Some(parse_size(t).map_err(|e| bad(e.message, r#"write a size like "32MiB""#))?);
        }
        ("memory", BudgetValue::Bytes(n)) if *n > 0 => budget.memory = Some(*n as u64),
        ("per_event", _) => {
            return Err(bad("per_event must be a duration string".to_owned(), r#"write a number and a unit, like "40us""#));
        }
        _ => {
            return Err(bad("memory must be a size".to_owned(), r#"write a size like "32MiB", or a number of bytes"#));
        }
    }
    Ok(())
}

fn tolerance(t: Spanned<f64>, key: String, source: &SourceFile<'_>) -> Result<f64, ConfigError> {
    let v = *t.get_ref();
    if v.is_finite() && v >= 0.0 {
        return Ok(v);
    }
    Err(source.error_at(
        t.span(),
        key,
        format!("tolerance {v} is not a number of zero or more"),
        Some("write how far numbers may be from the expected ones, like tolerance = 0.001".to_owned()),
    ))
}

fn input_number(n: &Spanned<i64>, key: String, source: &SourceFile<'_>) -> Result<usize, ConfigError> {
    match usize::try_from(*n.get_ref()) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(source.error_at(
            n.span(),
            key,
            format!("input {} does not exist", n.get_ref()),
            Some("inputs are numbered from 1, in order: input_file's lines first, then [[case.input]]".to_owned()),
        )),
    }
}

fn publish_subject(s: Spanned<String>, key: String, source: &SourceFile<'_>) -> Result<String, ConfigError> {
    match Subject::publish(s.get_ref().clone()) {
        Ok(subject) => Ok(subject.as_str().to_owned()),
        Err(e) => Err(source.error_at(s.span(), key, e.message, e.help)),
    }
}

/// `written`, joined to the test file's directory, which must exist (as a
/// directory when `dir`).
fn existing(base: &Path, written: &Spanned<String>, key: &str, what: &str, dir: bool, source: &SourceFile<'_>) -> Result<PathBuf, ConfigError> {
    let path = base.join(written.get_ref());
    let ok = std::fs::metadata(&path).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() });
    if ok && !written.get_ref().is_empty() {
        return Ok(path);
    }
    Err(source.error_at(
        written.span(),
        key.to_owned(),
        format!("{what} {:?} not found (resolved to {})", written.get_ref(), path.display()),
        Some("paths in a test file are relative to the test file's directory".to_owned()),
    ))
}
