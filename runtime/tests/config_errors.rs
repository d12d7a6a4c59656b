//! Config errors as an operator sees them, snapshot-tested.
//!
//! Each `tests/config_errors/*.toml` is an invalid file; the `.err` file next to it holds
//! the exact `Display` of the error it produces. Files named `global-*.toml` are read as
//! `weir.toml`, the others as pipelines. Run with `UPDATE_SNAPSHOTS=1` to rewrite the
//! `.err` files after a deliberate change, then read the diff.
//!
//! Paths are passed relative to the crate root (the working directory of `cargo test`),
//! so that messages, and therefore snapshots, contain no absolute paths.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir::config::{self, Deliver, NatsAuth};

const DIR: &str = "tests/config_errors";

/// `cargo test` runs integration tests from the crate root; make sure of it, since every
/// path below is relative to it.
fn at_crate_root() {
    let root = env!("CARGO_MANIFEST_DIR");
    if std::env::current_dir().ok().as_deref() != Some(Path::new(root)) {
        std::env::set_current_dir(root).expect("cannot enter the crate directory");
    }
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1")
}

/// Compares `actual` with the snapshot at `expected`, or rewrites it when updating.
/// Returns a description of the mismatch.
fn check_snapshot(expected: &Path, actual: &str) -> Option<String> {
    let actual = format!("{actual}\n");
    if updating() {
        std::fs::write(expected, &actual).expect("cannot write snapshot");
        return None;
    }
    match std::fs::read_to_string(expected) {
        Ok(text) if text == actual => None,
        Ok(text) => Some(format!("{}: snapshot differs\n--- expected\n{text}--- actual\n{actual}", expected.display())),
        Err(_) => Some(format!("{}: no snapshot; run with UPDATE_SNAPSHOTS=1 to create it\n--- actual\n{actual}", expected.display())),
    }
}

#[test]
fn invalid_files_match_their_snapshots() {
    at_crate_root();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(DIR)
        .expect("fixture directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    let globals = cases.iter().filter(|p| is_global(p)).count();
    assert!(cases.len() - globals >= 16, "too few pipeline cases");
    assert!(globals >= 4, "too few weir.toml cases");

    let mut failures = Vec::new();
    for case in &cases {
        let result = if is_global(case) { config::load_global(Some(case)).map(|_| ()) } else { config::load_pipeline(case).map(|_| ()) };
        let actual = match result {
            Ok(()) => {
                failures.push(format!("{}: parsed, but should be invalid", case.display()));
                continue;
            }
            Err(error) => error.to_string(),
        };
        assert!(!actual.contains(env!("CARGO_MANIFEST_DIR")), "{}: absolute path in message", case.display());
        if let Some(failure) = check_snapshot(&case.with_extension("err"), &actual) {
            failures.push(failure);
        }
    }

    // Every snapshot belongs to a case (or to a directory case below).
    for entry in std::fs::read_dir(DIR).expect("fixture directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "err") && !path.with_extension("toml").is_file() && !path.with_extension("").is_dir() {
            failures.push(format!("{}: snapshot without a case", path.display()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn is_global(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("global-"))
}

#[test]
fn duplicate_pipeline_names_across_files() {
    at_crate_root();
    let dir = Path::new(DIR).join("duplicate-names");
    let (pipelines, errors) = config::load_pipelines(std::slice::from_ref(&dir));
    // The first file (by name) wins; the second is reported and not loaded.
    assert_eq!(pipelines.len(), 1);
    assert_eq!(pipelines[0].file, dir.join("a-views.toml"));
    let actual: Vec<String> = errors.iter().map(ToString::to_string).collect();
    if let Some(failure) = check_snapshot(&Path::new(DIR).join("duplicate-names.err"), &actual.join("\n")) {
        panic!("{failure}");
    }
}

#[test]
fn load_pipelines_reports_every_error_and_loads_the_rest() {
    at_crate_root();
    let paths = [
        Path::new(DIR).join("valid/pipeline-full.toml"),
        Path::new(DIR).join("bad-name.toml"),
        Path::new(DIR).join("missing.toml"),
        Path::new(DIR).join("duplicate-names"),
        // The same file twice is loaded once, not reported as a clash with itself.
        Path::new(DIR).join("duplicate-names/a-views.toml"),
    ];
    let (pipelines, errors) = config::load_pipelines(&paths);
    let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["product-views", "views"]);
    let messages: Vec<String> = errors.iter().map(|e| e.to_string().lines().next().unwrap_or_default().to_owned()).collect();
    assert_eq!(
        messages,
        [
            "tests/config_errors/missing.toml: cannot read file: No such file or directory",
            "tests/config_errors/bad-name.toml:1:8: name: invalid character ' ' in name \"product views\"",
            "tests/config_errors/duplicate-names/b-views-copy.toml:2:8: name: pipeline name \"views\" is already used by tests/config_errors/duplicate-names/a-views.toml:1:8",
        ]
    );
}

#[test]
fn full_pipeline_parses_to_expected_values() {
    at_crate_root();
    let file = Path::new(DIR).join("valid/pipeline-full.toml");
    let p = config::load_pipeline(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name.as_str(), "product-views");
    assert_eq!(p.file, file);
    assert_eq!(p.batch_size, 128);
    assert!(p.ordered);

    assert_eq!(p.source.subject.as_str(), "tracking.product.*");
    assert!(p.source.subject.has_wildcards());
    assert_eq!(p.source.queue, None);
    let js = p.source.jetstream.as_ref().expect("a JetStream source");
    assert_eq!(js.stream, "TRACKING");
    assert_eq!(js.durable, "weir-product-views");
    assert_eq!(js.filter_subject.as_ref().map(|s| s.as_str()), Some("tracking.product.viewed"));
    assert_eq!(p.source.filter_subject().as_str(), "tracking.product.viewed");
    assert_eq!(js.ack_wait, Some(Duration::from_secs(45)));
    assert_eq!(js.max_deliver, Some(5));
    assert_eq!(js.max_ack_pending, Some(1000));
    assert_eq!(js.deliver, Deliver::StartTime("2024-05-01T00:00:00Z".to_owned()));

    assert_eq!(p.stages.len(), 2);
    let tag = &p.stages[0];
    assert_eq!(tag.name.as_str(), "tag");
    assert_eq!(tag.plugin, Path::new(DIR).join("valid/../plugins/dummy.wasm"));
    assert_eq!(tag.limits.timeout, Duration::from_millis(20));
    assert_eq!(tag.limits.memory, 32 * 1024 * 1024);
    assert_eq!(
        tag.config,
        serde_json::json!({
            "model": "fashion.onnx",
            "min_score": 0.5,
            "labels": ["shoe", "bag"],
            "since": "2024-05-01T10:30:00+02:00",
            "nested": { "on": true, "n": 3 }
        })
    );
    assert_eq!(tag.location.to_string(), "tests/config_errors/valid/pipeline-full.toml:16:1");
    let enrich = &p.stages[1];
    assert_eq!(enrich.limits, config::Limits::default());
    assert_eq!(enrich.config, serde_json::json!({}));
    assert_eq!(enrich.location.line, 22);

    assert_eq!(p.sink.subject.as_str(), "processed.{1}.{subject}");
    assert_eq!(p.sink.subject.render("views.shoe", "tracking.product.viewed"), Ok("processed.tracking.views.shoe".to_owned()));
    assert_eq!(p.sink.stream.as_deref(), Some("PROCESSED"));
    let dlq = p.dead_letter.as_ref().expect("a dead letter");
    assert_eq!(dlq.subject.as_str(), "weir.dlq.product-views");
    assert_eq!(dlq.stream.as_deref(), Some("DLQ"));
}

#[test]
fn deliver_forms() {
    at_crate_root();
    let parse = |deliver: &str| {
        let text = format!("name = \"d\"\n[source]\nsubject = \"a\"\nstream = \"S\"\ndurable = \"d\"\ndeliver = {deliver}\n[sink]\nsubject = \"b\"\n");
        config::parse_pipeline(&text, Path::new("d.toml"))
            .map(|p| p.source.jetstream.map(|js| js.deliver))
            .map_err(|e| e.to_string())
    };
    assert_eq!(parse("\"all\""), Ok(Some(Deliver::All)));
    assert_eq!(parse("\"new\""), Ok(Some(Deliver::New)));
    assert_eq!(parse("{ start_sequence = 42 }"), Ok(Some(Deliver::StartSequence(42))));
    assert_eq!(
        parse("{ start_time = \"2024-05-01T02:00:00+02:00\" }"),
        Ok(Some(Deliver::StartTime("2024-05-01T02:00:00+02:00".to_owned())))
    );
    assert!(parse("{ start_sequence = 0 }").is_err());
    assert!(parse("{ start_sequence = 1, start_time = 2024-05-01T00:00:00Z }").is_err());
    assert!(parse("{ start_seq = 1 }").is_err());
    assert!(parse("{}").is_err());
    assert!(parse("{ start_time = \"tomorrow\" }").is_err());
}

#[test]
fn full_global_parses_to_expected_values() {
    at_crate_root();
    let file = Path::new(DIR).join("valid/weir-full.toml");
    let g = config::load_global(Some(&file)).unwrap_or_else(|e| panic!("{e}"));
    let base = Path::new(DIR).join("valid");
    assert_eq!(g.instance.as_str(), "weir-1");
    assert_eq!(g.pipelines, base.join("../pipelines"));
    assert_eq!(g.workers, 3);
    assert_eq!(g.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(g.cache_dir, base.join("cache"));
    assert_eq!(g.cache_size, 512 << 20);
    assert_eq!(g.nats.url, "nats://a.internal:4222, nats://b.internal:4222");
    assert_eq!(g.nats.urls().collect::<Vec<_>>(), ["nats://a.internal:4222", "nats://b.internal:4222"]);
    assert_eq!(g.nats.name, "weir-edge");
    assert_eq!(g.nats.auth, NatsAuth::UserPassword { user: "weir".to_owned(), password: "hunter2".to_owned() });
    let tls = g.nats.tls.as_ref().expect("TLS settings");
    assert_eq!(tls.ca, Some(base.join("certs/ca.pem")));
    assert_eq!(tls.cert, Some(base.join("certs/client.pem")));
    assert_eq!(tls.key, Some(base.join("certs/client.key")));
    assert!(tls.required);
    assert_eq!(g.metrics.address.to_string(), "0.0.0.0:9100");
    assert!(!g.metrics.enabled);
    assert_eq!(g.file.as_deref(), Some(file.as_path()));
}

#[test]
fn shipped_example_pipelines_parse() {
    at_crate_root();
    // The examples point at plugins that a build produces; only check the TOML shape
    // when they are there, and otherwise that the only complaint is the missing plugin.
    let (_, errors) = config::load_pipelines(&[PathBuf::from("../pipelines")]);
    for error in errors {
        assert!(error.message.starts_with("plugin file "), "unexpected error in an example pipeline:\n{error}");
    }
}
