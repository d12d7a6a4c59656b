//! A pipeline's version: what it does, as 12 hex digits.
//!
//! The hash covers a canonical serialisation of the pipeline's settings (JSON
//! with sorted keys, written out field by field here rather than taken from
//! `Debug`, whose format may change between Rust versions) and the SHA-256 of
//! each stage's plugin bytes. Where the files live is not what the pipeline
//! does: plugin paths are left out (their bytes count), granted directories
//! count by the name the stage sees them under, and the pipeline file's own
//! path and line numbers are left out. Moving the pipelines directory
//! elsewhere keeps every version.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::{Candidate, Decide, Deliver, Grants, Pipeline};
use crate::engine::ContentHash;

/// The version of `pipeline` whose stages' plugins have the contents hashed
/// in `plugins`, in stage order, followed by those of the candidates
/// (`[stages.candidate]`), in stage order.
pub fn version(pipeline: &Pipeline, plugins: &[ContentHash]) -> String {
    let mut h = Sha256::new();
    h.update(canonical(pipeline, plugins).to_string().as_bytes());
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The settings that make up the version, as JSON with sorted keys.
pub fn canonical(pipeline: &Pipeline, plugins: &[ContentHash]) -> Value {
    let source = &pipeline.source;
    let jetstream = source.jetstream.as_ref().map(|js| {
        let deliver = match &js.deliver {
            Deliver::All => json!("all"),
            Deliver::New => json!("new"),
            Deliver::StartSequence(n) => json!({ "start_sequence": n }),
            Deliver::StartTime(t) => json!({ "start_time": t }),
        };
        json!({
            "stream": js.stream,
            "durable": js.durable,
            "filter_subject": js.filter_subject.as_ref().map(|s| s.as_str()),
            "ack_wait_ns": js.ack_wait.map(|d| d.as_nanos() as u64),
            "max_deliver": js.max_deliver,
            "max_ack_pending": js.max_ack_pending,
            "deliver": deliver,
        })
    });
    let mut candidates = pipeline.stages.len();
    let stages: Vec<Value> = pipeline
        .stages
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let mut value = json!({
                "name": stage.name.as_str(),
                "plugin_sha256": plugins.get(i).map(ContentHash::to_hex),
                "timeout_ns": stage.limits.timeout.as_nanos() as u64,
                "memory": stage.limits.memory,
                "config": sorted(&stage.config),
                "grants": grants(&stage.grants),
            });
            // Written only when they differ from the defaults (or are set),
            // so that pipelines from before state existed keep their versions.
            let defaults = crate::config::Limits::default();
            if stage.limits.state != defaults.state {
                value["state_limit"] = json!(stage.limits.state);
            }
            if stage.limits.state_value != defaults.state_value {
                value["state_value_limit"] = json!(stage.limits.state_value);
            }
            if let Some(timer) = stage.timer {
                value["timer_ns"] = json!(timer.as_nanos() as u64);
            }
            // Written only when there is one, so that the versions of
            // pipelines without candidates stay what they were.
            if let Some(c) = &stage.candidate {
                value["candidate"] = candidate(c, plugins.get(candidates));
                candidates += 1;
            }
            value
        })
        .collect();
    sorted(&json!({
        "name": pipeline.name.as_str(),
        "batch_size": pipeline.batch_size,
        "ordered": pipeline.ordered,
        "source": {
            "subject": source.subject.as_str(),
            "queue": source.queue,
            "jetstream": jetstream,
        },
        "stages": stages,
        "sink": {
            "subject": pipeline.sink.subject.as_str(),
            "stream": pipeline.sink.stream,
            "stamp": pipeline.sink.stamp,
        },
        "dead_letter": pipeline.dead_letter.as_ref().map(|d| json!({ "subject": d.subject.as_str(), "stream": d.stream })),
    }))
}

fn grants(g: &Grants) -> Value {
    let mut grants = json!({
        "dirs": g.dirs.iter().map(|d| Grants::guest_path(d)).collect::<Vec<_>>(),
        "kv": g.kv,
    });
    // Written only when granted, so that the versions of pipelines from
    // before the grant existed stay what they were.
    if g.clock {
        grants["clock"] = json!(true);
    }
    grants
}

/// A candidate's settings; [`candidate_id`] hashes the part that says what
/// the candidate is (not how it is judged).
fn candidate(c: &Candidate, plugin: Option<&ContentHash>) -> Value {
    let mut value = what_candidate_is(c, plugin);
    value["mode"] = json!(c.mode.as_str());
    value["share"] = json!(c.share);
    value["key"] = json!(c.key.as_str());
    value["decide"] = json!(matches!(c.decide, Decide::Auto));
    value["rules"] = json!({
        "min_events": c.rules.min_events,
        "max_diff_rate": c.rules.max_diff_rate,
        "max_error_rate": c.rules.max_error_rate,
        "max_slowdown": c.rules.max_slowdown,
    });
    value["diff_subject"] = json!(c.diff_subject.as_ref().map(|s| s.as_str()));
    value
}

fn what_candidate_is(c: &Candidate, plugin: Option<&ContentHash>) -> Value {
    json!({
        "plugin_sha256": plugin.map(ContentHash::to_hex),
        "timeout_ns": c.limits.timeout.as_nanos() as u64,
        "memory": c.limits.memory,
        "config": sorted(&c.config),
        "grants": grants(&c.grants),
    })
}

/// 12 hex digits naming what a candidate is: its plugin's bytes, config,
/// limits and grants. A decision (promoted, rolled back) is remembered
/// under it, so that a changed candidate is judged afresh.
pub fn candidate_id(c: &Candidate, plugin: &ContentHash) -> String {
    let mut h = Sha256::new();
    h.update(sorted(&what_candidate_is(c, Some(plugin))).to_string().as_bytes());
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// `value` with every object's keys in sorted order, whatever order the
/// TOML had them in.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_pipeline;

    const TEXT: &str = r#"
name = "views"
batch_size = 32
[source]
subject = "in.>"
stream = "IN"
durable = "d"
ack_wait = "5s"
[[stages]]
name = "map"
plugin = "plugin.wasm"
limits = { timeout = "20ms", memory = "32MiB" }
config = { b = 1, a = { y = 2, x = [3, 4] } }
[sink]
subject = "out.{subject}"
[dead_letter]
subject = "dlq.views"
"#;

    fn parse(text: &str, dir: &Path) -> Pipeline {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("plugin.wasm"), b"\0asm").unwrap();
        parse_pipeline(text, &dir.join("views.toml")).unwrap()
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("weir-version-{}-{name}", std::process::id()))
    }

    #[test]
    fn moving_the_pipelines_directory_keeps_the_version() {
        let hash = [ContentHash::of(b"plugin")];
        let here = parse(TEXT, &temp("here"));
        let there = parse(TEXT, &temp("there/deeper"));
        assert_ne!(here.stages[0].plugin, there.stages[0].plugin);
        assert_eq!(version(&here, &hash), version(&there, &hash));
    }

    #[test]
    fn layout_comments_and_key_order_do_not_count() {
        let hash = [ContentHash::of(b"plugin")];
        let dir = temp("layout");
        let reordered = TEXT
            .replace("config = { b = 1, a = { y = 2, x = [3, 4] } }", "# the map's settings\nconfig = { a = { x = [3, 4], y = 2 }, b = 1 }")
            .replace("batch_size = 32\n", "\n\nbatch_size   =   32\n");
        assert_eq!(version(&parse(TEXT, &dir), &hash), version(&parse(&reordered, &dir), &hash));
    }

    #[test]
    fn what_the_pipeline_does_counts() {
        let dir = temp("counts");
        let base = parse(TEXT, &dir);
        let hash = [ContentHash::of(b"plugin")];
        let v = version(&base, &hash);
        assert_eq!(v.len(), 12);
        assert_ne!(v, version(&base, &[ContentHash::of(b"another build")]), "the plugin's bytes");
        for (from, to) in [("b = 1", "b = 2"), ("batch_size = 32", "batch_size = 16"), ("ack_wait = \"5s\"", "ack_wait = \"6s\""), ("dlq.views", "dlq.other")] {
            let changed = parse(&TEXT.replace(from, to), &dir);
            assert_ne!(v, version(&changed, &hash), "{from} -> {to}");
        }
    }

    #[test]
    fn the_canonical_form_is_stable() {
        // A change here changes every running pipeline's version on upgrade:
        // make it on purpose.
        let dir = temp("stable");
        let canonical = canonical(&parse(TEXT, &dir), &[ContentHash::of(b"plugin")]).to_string();
        assert!(
            canonical.starts_with(r#"{"batch_size":32,"dead_letter":{"stream":null,"subject":"dlq.views"},"name":"views","#),
            "{canonical}"
        );
        assert!(canonical.contains(r#""config":{"a":{"x":[3,4],"y":2},"b":1}"#), "{canonical}");
    }
}
