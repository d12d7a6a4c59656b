//! The answers of a running weir's control subjects
//! (`weir.control.<instance>.status` and `.reload`), as JSON: one set of
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
