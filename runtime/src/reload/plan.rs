//! The reload plan: what to do with each pipeline, computed from the running
//! configuration and the wanted one, without NATS and without compiling.
//!
//! A pipeline's version is a hash of its settings and its plugins' bytes
//! ([`crate::pipeline::version`]), so comparing versions tells whether
//! anything it does changed; comparing its source, sink, dead letter and
//! ordering tells whether the change can be swapped in place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
pub use crate::control::{Action, Step};

/// A running or wanted pipeline, with its version.
#[derive(Debug, Clone, Copy)]
pub struct Versioned<'a> {
    /// Its settings.
    pub pipeline: &'a Pipeline,
    /// Its version (settings and plugins).
    pub version: &'a str,
}

/// The steps of a reload, in the order they are applied: in-place swaps,
/// restarts and additions first (new before old), removals last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// One step per pipeline, running or wanted.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The steps that do `action`.
    pub fn with(&self, action: Action) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.action == action)
    }
}

/// Computes the plan. `running` is what runs now; `wanted` what the files
/// say now; `kept` names the running pipelines whose files no longer load
/// (they stay as they are).
pub fn plan(running: &[Versioned<'_>], wanted: &[Versioned<'_>], kept: &[String]) -> Plan {
    let running_by_name: BTreeMap<&str, &Versioned<'_>> = running.iter().map(|r| (r.pipeline.name.as_str(), r)).collect();
    let wanted_by_name: BTreeMap<&str, &Versioned<'_>> = wanted.iter().map(|w| (w.pipeline.name.as_str(), w)).collect();
    let mut steps = Vec::new();
    for w in wanted {
        let name = w.pipeline.name.as_str();
        let step = |action, reason: String| Step { pipeline: name.to_owned(), action, reason };
        steps.push(match running_by_name.get(name) {
            None => step(Action::Add, format!("new in {}", w.pipeline.file.display())),
            Some(r) if r.version == w.version => step(Action::Unchanged, format!("version {} as before", w.version)),
            Some(r) => match endpoint_change(r.pipeline, w.pipeline) {
                None => step(Action::Swap, format!("version {} -> {}: {}", r.version, w.version, what_changed(r.pipeline, w.pipeline))),
                Some(what) => step(Action::Restart, format!("version {} -> {}: {what} changed", r.version, w.version)),
            },
        });
    }
    for r in running {
        let name = r.pipeline.name.as_str();
        if wanted_by_name.contains_key(name) {
            continue;
        }
        let step = if kept.iter().any(|k| k == name) {
            Step {
                pipeline: name.to_owned(),
                action: Action::Kept,
                reason: format!("{} does not load; version {} goes on", r.pipeline.file.display(), r.version),
            }
        } else {
            let replaced_by = wanted
                .iter()
                .find(|w| !running_by_name.contains_key(w.pipeline.name.as_str()) && same_source(r.pipeline, w.pipeline));
            let reason = match replaced_by {
                Some(w) => format!(
                    "{} is gone; \"{}\" ({}) reads the same source and starts first",
                    r.pipeline.file.display(),
                    w.pipeline.name,
                    w.pipeline.file.display()
                ),
                None => format!("{} is gone", r.pipeline.file.display()),
            };
            Step { pipeline: name.to_owned(), action: Action::Remove, reason }
        };
        steps.push(step);
    }
    // New before old: everything that starts comes before what stops.
    steps.sort_by_key(|s| match s.action {
        Action::Unchanged | Action::Kept => 0,
        Action::Swap => 1,
        Action::Restart => 2,
        Action::Add => 3,
        Action::Remove => 4,
    });
    Plan { steps }
}

/// Which of the parts that a running source and sink are opened with
/// differ, if any.
fn endpoint_change(old: &Pipeline, new: &Pipeline) -> Option<&'static str> {
    if old.source != new.source {
        Some("[source]")
    } else if old.sink != new.sink {
        Some("[sink]")
    } else if old.dead_letter != new.dead_letter {
        Some("[dead_letter]")
    } else if old.ordered != new.ordered {
        Some("ordered")
    } else {
        None
    }
}

/// Whether two pipelines read the same subject the same way.
fn same_source(a: &Pipeline, b: &Pipeline) -> bool {
    a.source == b.source
}

/// A short account of what differs between two versions with the same
/// endpoints.
fn what_changed(old: &Pipeline, new: &Pipeline) -> String {
    let mut parts = Vec::new();
    if old.batch_size != new.batch_size {
        parts.push("batch_size".to_owned());
    }
    let old_names: Vec<&str> = old.stages.iter().map(|s| s.name.as_str()).collect();
    let new_names: Vec<&str> = new.stages.iter().map(|s| s.name.as_str()).collect();
    if old_names != new_names {
        parts.push(format!("stages [{}] -> [{}]", old_names.join(", "), new_names.join(", ")));
    } else {
        for (o, n) in old.stages.iter().zip(&new.stages) {
            if o.config != n.config || o.limits != n.limits || o.grants != n.grants || o.plugin != n.plugin {
                parts.push(format!("stage \"{}\" settings", n.name));
            }
        }
    }
    if parts.is_empty() {
        // Same settings: a plugin's bytes changed.
        "a plugin was rebuilt".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_pipeline;

    fn pipeline(name: &str, source: &str, sink: &str, batch: usize) -> Pipeline {
        let text = format!("name = \"{name}\"\nbatch_size = {batch}\n[source]\nsubject = \"{source}\"\n[sink]\nsubject = \"{sink}\"\n");
        parse_pipeline(&text, Path::new(&format!("pipelines/{name}.toml"))).unwrap()
    }

    fn actions(plan: &Plan) -> Vec<(String, Action)> {
        plan.steps.iter().map(|s| (s.pipeline.clone(), s.action)).collect()
    }

    fn v<'a>(pipeline: &'a Pipeline, version: &'a str) -> Versioned<'a> {
        Versioned { pipeline, version }
    }

    #[test]
    fn same_version_is_unchanged() {
        let a = pipeline("a", "in.>", "out.{subject}", 64);
        let plan = plan(&[v(&a, "v1")], &[v(&a, "v1")], &[]);
        assert_eq!(actions(&plan), [("a".into(), Action::Unchanged)]);
    }

    #[test]
    fn a_new_version_with_the_same_endpoints_is_swapped_in_place() {
        let old = pipeline("a", "in.>", "out.{subject}", 64);
        let new = pipeline("a", "in.>", "out.{subject}", 32);
        let plan = plan(&[v(&old, "v1")], &[v(&new, "v2")], &[]);
        assert_eq!(actions(&plan), [("a".into(), Action::Swap)]);
        assert_eq!(plan.steps[0].reason, "version v1 -> v2: batch_size");
    }

    #[test]
    fn the_same_settings_with_a_new_version_means_a_rebuilt_plugin() {
        let a = pipeline("a", "in.>", "out.{subject}", 64);
        let plan = plan(&[v(&a, "v1")], &[v(&a, "v2")], &[]);
        assert_eq!(plan.steps[0].action, Action::Swap);
        assert!(plan.steps[0].reason.ends_with("a plugin was rebuilt"), "{:?}", plan.steps[0]);
    }

    #[test]
    fn another_source_or_sink_restarts() {
        let old = pipeline("a", "in.>", "out.{subject}", 64);
        let source = pipeline("a", "other.>", "out.{subject}", 64);
        let sink = pipeline("a", "in.>", "elsewhere.{subject}", 64);
        assert_eq!(plan(&[v(&old, "v1")], &[v(&source, "v2")], &[]).steps[0].action, Action::Restart);
        let step = &plan(&[v(&old, "v1")], &[v(&sink, "v2")], &[]).steps[0];
        assert_eq!((step.action, step.reason.as_str()), (Action::Restart, "version v1 -> v2: [sink] changed"));
    }

    #[test]
    fn a_renamed_file_starts_the_new_pipeline_before_removing_the_old() {
        let old = pipeline("old-name", "in.>", "out.{subject}", 64);
        let new = pipeline("new-name", "in.>", "out.{subject}", 64);
        let plan = plan(&[v(&old, "v1")], &[v(&new, "v1b")], &[]);
        assert_eq!(actions(&plan), [("new-name".into(), Action::Add), ("old-name".into(), Action::Remove)]);
        assert!(plan.steps[1].reason.contains("\"new-name\""), "{:?}", plan.steps[1]);
    }

    #[test]
    fn a_file_that_no_longer_loads_keeps_its_pipeline() {
        let a = pipeline("a", "in.>", "out.{subject}", 64);
        let b = pipeline("b", "b.>", "out.{subject}", 64);
        let plan = plan(&[v(&a, "v1"), v(&b, "v2")], &[v(&b, "v2")], &["a".to_owned()]);
        assert_eq!(actions(&plan), [("b".into(), Action::Unchanged), ("a".into(), Action::Kept)]);
    }

    #[test]
    fn everything_that_starts_comes_before_what_stops() {
        let gone = pipeline("gone", "g.>", "out.{subject}", 64);
        let swapped_old = pipeline("s", "s.>", "out.{subject}", 64);
        let swapped_new = pipeline("s", "s.>", "out.{subject}", 8);
        let restarted_old = pipeline("r", "r.>", "out.{subject}", 64);
        let restarted_new = pipeline("r", "r2.>", "out.{subject}", 64);
        let added = pipeline("n", "n.>", "out.{subject}", 64);
        let plan = plan(
            &[v(&gone, "1"), v(&swapped_old, "2"), v(&restarted_old, "3")],
            &[v(&added, "4"), v(&restarted_new, "5"), v(&swapped_new, "6")],
            &[],
        );
        let order: Vec<Action> = plan.steps.iter().map(|s| s.action).collect();
        assert_eq!(order, [Action::Swap, Action::Restart, Action::Add, Action::Remove]);
    }
}
