//! The answers of a running weir's control subjects
//! (`weir.control.<instance>.status`, `.reload` and `.decide`), as JSON: one set of
//! types, serialised by the serving side and read back by `weir status` and
//! `weir reload`, so that the two cannot drift apart.

use serde::{Deserialize, Serialize};

/// `weir status`: the process and what it runs right now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The instance name.
    pub instance: String,
    /// weir's own version.
    pub version: String,
    /// Seconds since the process started.
    pub uptime_seconds: u64,
    /// Every pipeline that runs.
    pub pipelines: Vec<PipelineReport>,
    /// Set instead of the rest when the request could not be served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One running pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// Its name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// The version that runs.
    pub version: String,
    /// Seconds since this version started.
    pub uptime_seconds: u64,
    /// Inputs taken.
    pub events_in: u64,
    /// Outputs published.
    pub events_out: u64,
    /// Inputs that produced no output.
    pub dropped: u64,
    /// Inputs sent to the dead letter.
    pub dead_lettered: u64,
    /// Redeliveries asked for.
    pub retried: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Candidate versions of its stages (`[stages.candidate]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateReport>,
}

/// A stage's candidate version, compared with the live one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateReport {
    /// The stage.
    pub stage: String,
    /// What the candidate is: 12 hex digits over its plugin and settings.
    pub candidate: String,
    /// Its plugin file.
    pub plugin: String,
    /// `shadow` or `canary`.
    pub mode: String,
    /// The share of events it sees.
    pub share: f64,
    /// `auto` (the rules decide) or `manual` (`weir promote`, `weir rollback`).
    pub decide: String,
    /// `running`, `promoted` or `rolled_back`.
    pub state: String,
    /// What the rules say of the figures now, in words.
    pub judgement: String,
    /// Seconds since this candidate started.
    pub running_seconds: u64,
    /// The live comparison.
    pub figures: Figures,
    /// The decision, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Recent differing events (`weir status --diff`): input, live result,
    /// candidate result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<serde_json::Value>,
}

/// A candidate against the live version, since the candidate started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Events the candidate processed.
    pub candidate_events: u64,
    /// Events the live version processed meanwhile.
    pub live_events: u64,
    /// Shadow: events both processed and compared.
    pub compared: u64,
    /// Shadow: compared events on which they agreed.
    pub agreed: u64,
    /// Shadow: compared events on which they differed, by kind (`drop`,
    /// `error`, `count`, `subject`, `headers`, `payload`).
    pub differences: std::collections::BTreeMap<String, u64>,
    /// Differing events per compared event.
    pub diff_rate: f64,
    /// Events the candidate failed.
    pub candidate_errors: u64,
    /// Events the live version failed meanwhile.
    pub live_errors: u64,
    /// The candidate's failures per event.
    pub candidate_error_rate: f64,
    /// The live version's failures per event.
    pub live_error_rate: f64,
    /// The candidate's time per event, in microseconds.
    pub candidate_us_per_event: f64,
    /// The live version's time per event, in microseconds.
    pub live_us_per_event: f64,
    /// The candidate's time per event over the live version's (0 until both are measured).
    pub slowdown: f64,
}

/// A candidate promoted or rolled back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `promoted` or `rolled_back`.
    pub decision: String,
    /// `rules` or `operator`.
    pub by: String,
    /// Why, in words.
    pub reason: String,
    /// The weir process that decided, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// When, in seconds since the Unix epoch.
    pub at_unix: u64,
    /// The figures it was decided on.
    pub figures: Figures,
}

/// `weir promote` and `weir rollback`: which candidate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecideRequest {
    /// The pipeline.
    pub pipeline: String,
    /// The stage whose candidate is decided on.
    pub stage: String,
    /// `promoted` or `rolled_back`.
    pub decision: String,
}

/// The answer to `weir promote` and `weir rollback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecideReport {
    /// The decision as recorded, with its figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The candidate decided on.
    #[serde(default)]
    pub candidate: String,
    /// Set when nothing was decided, with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `weir reload`: what the reload did, pipeline by pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Pipelines started.
    pub added: Vec<String>,
    /// Pipelines replaced by a new version.
    pub changed: Vec<String>,
    /// Pipelines stopped because their file is gone.
    pub removed: Vec<String>,
    /// Pipelines left as they were.
    pub unchanged: Vec<String>,
    /// What could not be reloaded; the running version, if any, goes on.
    pub failed: Vec<ReloadFailure>,
    /// The plan the reload followed, with the reason of each step.
    #[serde(default)]
    pub plan: Vec<Step>,
    /// Set instead of the rest when the request could not be served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReloadReport {
    /// A reply saying the request could not be served.
    pub fn error(message: impl Into<String>) -> Self {
        ReloadReport { error: Some(message.into()), ..Default::default() }
    }

    /// `ok`, `failed`, or `rolled_back` (a new version failed to start and
    /// the old one was brought back), for `weir_reloads_total{result}`.
    pub fn result(&self) -> &'static str {
        if self.failed.iter().any(|f| f.rolled_back) {
            "rolled_back"
        } else if self.failed.is_empty() {
            "ok"
        } else {
            "failed"
        }
    }
}

/// One pipeline file that could not be reloaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadFailure {
    /// The pipeline, when the file could be read that far.
    pub pipeline: Option<String>,
    /// The file.
    pub file: String,
    /// Why, with file and line for TOML errors.
    pub error: String,
    /// The new version stopped the old one and then failed to start, and the
    /// old version was started again.
    #[serde(default)]
    pub rolled_back: bool,
}

/// What a reload does to one pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing changed: it goes on as it is.
    Unchanged,
    /// Its file no longer loads: the running version goes on.
    Kept,
    /// A new version with the same source, sink, dead letter and ordering:
    /// the source is kept and the next batch runs on the new version.
    Swap,
    /// A new version that reads or writes elsewhere: the new one is built and
    /// checked, then replaces the old one.
    Restart,
    /// A new pipeline: built and started.
    Add,
    /// Its file is gone: drained and stopped, after every new pipeline started.
    Remove,
}

impl Action {
    /// The word `weir reload` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Unchanged => "unchanged",
            Action::Kept => "kept",
            Action::Swap => "swap",
            Action::Restart => "restart",
            Action::Add => "add",
            Action::Remove => "remove",
        }
    }
}

/// One pipeline's step, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The pipeline.
    pub pipeline: String,
    /// What happens to it.
    pub action: Action,
    /// Why, in words for the operator.
    pub reason: String,
}
