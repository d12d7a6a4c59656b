//! What was decided about stage candidates (`[stages.candidate]`), kept so
//! that a decision outlives the process and is shared by the fleet.
//!
//! A decision is stored under `<pipeline>.<stage>.<candidate id>` in the
//! NATS KV bucket [`BUCKET`] (created when a pipeline first has a
//! candidate), and mirrored by every weir that runs candidates. When a
//! pipeline file is read, each candidate with a decision is applied before
//! the version is computed: a promoted candidate's plugin, config, limits
//! and grants become the stage's, a rolled-back one is left out. So the
//! file that still names the candidate keeps running what was decided,
//! across reloads and restarts and on every weir of the fleet, until the
//! candidate changes (a new plugin or config is a new id, judged afresh).
//!
//! Without JetStream, decisions are kept in memory for the life of the
//! process, and weir says so.

use std::collections::HashMap;

use crate::config::Pipeline;
use crate::control::{CandidateReport, Decision};
use crate::engine::{ContentHash, KvSource};
use crate::nats::{KvMirror, Nats, load_kv};
use crate::pipeline::candidate_id;

/// The KV bucket of candidate decisions.
pub const BUCKET: &str = "weir-candidates";

/// Decisions made here, and the fleet's through the KV mirror.
#[derive(Default)]
pub(crate) struct Decisions {
    local: HashMap<String, Decision>,
    /// `Some(true)` once the bucket is mirrored, `Some(false)` when it cannot
    /// be (said once).
    shared: Option<bool>,
}

/// The key of a candidate's decision.
pub(crate) fn key(pipeline: &str, stage: &str, candidate: &str) -> String {
    format!("{pipeline}.{stage}.{candidate}")
}

impl Decisions {
    /// Mirrors the bucket (creating it when missing), once.
    pub(crate) async fn share(&mut self, nats: &Nats, kv: &KvMirror, stop: tokio_util::sync::CancellationToken) {
        if self.shared.is_some() {
            return;
        }
        let mirrored = match load_kv(nats, BUCKET, &[]).await {
            Ok(_) => kv.mirror(nats, BUCKET, stop).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &mirrored {
            tracing::warn!(
                bucket = BUCKET,
                "cannot keep candidate decisions in NATS KV ({e}); they are remembered by this process only: after a restart, a candidate still in its pipeline file runs again until it is decided anew or the file is changed"
            );
        }
        self.shared = Some(mirrored.is_ok());
    }

    /// The decision about a candidate: made here, or by any weir of the fleet.
    pub(crate) fn get(&self, kv: &KvMirror, key: &str) -> Option<Decision> {
        if let Some(d) = self.local.get(key) {
            return Some(d.clone());
        }
        if self.shared != Some(true) {
            return None;
        }
        let bytes = kv.get(BUCKET, key).ok().flatten()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remembers a decision here and in the bucket.
    pub(crate) async fn remember(&mut self, nats: &Nats, key: String, decision: &Decision) {
        self.local.insert(key.clone(), decision.clone());
        if self.shared != Some(true) {
            return;
        }
        let value = serde_json::to_vec(decision).unwrap_or_default();
        if let Err(e) = load_kv(nats, BUCKET, &[(key.clone(), value)]).await {
            tracing::warn!(bucket = BUCKET, key, "cannot store the candidate decision in NATS KV ({e}); this process remembers it");
        }
    }

    /// Applies the remembered decisions to `pipeline`, whose stages' and
    /// candidates' plugins hash to `hashes` (stages first, then candidates);
    /// returns what was applied: a line for the log, and what `weir status`
    /// shows of it.
    pub(crate) fn apply(&self, kv: &KvMirror, pipeline: &mut Pipeline, hashes: &[ContentHash]) -> Vec<(String, CandidateReport)> {
        let mut applied = Vec::new();
        let mut next = pipeline.stages.len();
        for index in 0..pipeline.stages.len() {
            let Some(candidate) = &pipeline.stages[index].candidate else { continue };
            let Some(hash) = hashes.get(next) else { break };
            next += 1;
            let id = candidate_id(candidate, hash);
            let stage = pipeline.stages[index].name.to_string();
            let Some(decision) = self.get(kv, &key(pipeline.name.as_str(), &stage, &id)) else { continue };
            let promoted = decision.decision == "promoted";
            let report = CandidateReport {
                stage: stage.clone(),
                candidate: id.clone(),
                plugin: candidate.plugin.display().to_string(),
                mode: candidate.mode.as_str().to_owned(),
                share: candidate.share,
                decide: if candidate.decide == crate::config::Decide::Auto { "auto" } else { "manual" }.to_owned(),
                state: decision.decision.clone(),
                judgement: format!("decided earlier, remembered in KV bucket {BUCKET}"),
                running_seconds: 0,
                figures: decision.figures.clone(),
                decision: Some(decision.clone()),
                samples: Vec::new(),
            };
            apply(pipeline, index, promoted);
            let line = format!(
                "stage \"{stage}\": candidate {id} was {} by {}{} ({}); {}",
                if promoted { "promoted" } else { "rolled back" },
                decision.by,
                decision.instance.as_deref().map(|i| format!(" on weir {i}")).unwrap_or_default(),
                decision.reason,
                if promoted { "its plugin runs as the stage" } else { "the stage runs alone" },
            );
            applied.push((line, report));
        }
        applied
    }
}

/// `pipeline` with the candidate of stage `index` promoted (its plugin,
/// config, limits and grants become the stage's) or rolled back (left out).
pub(crate) fn apply(pipeline: &mut Pipeline, index: usize, promoted: bool) {
    let stage = &mut pipeline.stages[index];
    let Some(candidate) = stage.candidate.take() else { return };
    if promoted {
        stage.plugin = candidate.plugin;
        stage.config = candidate.config;
        stage.limits = candidate.limits;
        stage.grants = candidate.grants;
    }
}
