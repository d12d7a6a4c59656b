//! Test-file errors as a plugin author sees them, snapshot-tested like
//! pipeline errors (`config_errors.rs`).
//!
//! Each `tests/test_files/*.test.toml` other than `valid.test.toml` is an
//! invalid test file; the `.err` file next to it holds the exact `Display`
//! of its error: file, line, column, key, what is wrong and how to fix it.
//! Run with `UPDATE_SNAPSHOTS=1` to rewrite the `.err` files after a
//! deliberate change, then read the diff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir::config::{self, Expect, PayloadCheck};

const DIR: &str = "tests/test_files";

fn at_crate_root() {
    let root = env!("CARGO_MANIFEST_DIR");
    if std::env::current_dir().ok().as_deref() != Some(Path::new(root)) {
        std::env::set_current_dir(root).expect("cannot enter the crate directory");
    }
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1")
}

#[test]
fn invalid_test_files_match_their_snapshots() {
    at_crate_root();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(DIR)
        .expect("fixture directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.toml") && !p.ends_with("valid.test.toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "too few cases: {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let actual = match config::load_test_file(case) {
            Ok(_) => {
                failures.push(format!("{}: parsed, but should be invalid", case.display()));
                continue;
            }
            Err(e) => format!("{e}\n"),
        };
        assert!(!actual.contains(env!("CARGO_MANIFEST_DIR")), "{}: absolute path in message", case.display());
        let snapshot = PathBuf::from(case.to_string_lossy().replace(".test.toml", ".err"));
        if updating() {
            std::fs::write(&snapshot, &actual).expect("cannot write snapshot");
            continue;
        }
        match std::fs::read_to_string(&snapshot) {
            Ok(text) if text == actual => {}
            Ok(text) => failures.push(format!("{}: snapshot differs\n--- expected\n{text}--- actual\n{actual}", snapshot.display())),
            Err(_) => failures.push(format!("{}: no snapshot; run with UPDATE_SNAPSHOTS=1 to create it\n--- actual\n{actual}", snapshot.display())),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_valid_test_file_reads_every_kind_of_expectation() {
    at_crate_root();
    let file = config::load_test_file(&Path::new(DIR).join("valid.test.toml")).expect("valid");
    assert_eq!(file.cases.len(), 2);
    let case = &file.cases[0];
    assert_eq!(case.pipeline.name.as_str(), "views");
    assert_eq!(case.input_file.as_deref(), Some(Path::new("tests/test_files/samples/in.jsonl")));
    assert_eq!(case.inputs.len(), 1);
    assert_eq!(case.inputs[0].subject, "tracking.product.view", "the case's subject is the default");
    assert_eq!(case.inputs[0].payload, &br#"{"type": null}"#[..], "payload_json is sent as written");
    assert_eq!(case.inputs[0].headers, vec![("multi".into(), "a".into()), ("multi".into(), "b".into()), ("trace".into(), "t1".into())]);
    assert_eq!(case.kv, vec![("shops".to_owned(), vec![("s-1".to_owned(), br#"{"country":"DE"}"#.to_vec())])]);
    let Expect::Listed { outputs, ordered, dropped, dead_letters } = &case.expect else { panic!("listed expectations") };
    assert!(!ordered);
    assert_eq!(dropped, &[2]);
    assert_eq!(outputs[0].input, Some(1));
    assert_eq!(outputs[0].tolerance, 0.001, "an output's tolerance overrides the case's");
    assert!(matches!(&outputs[0].payload[1], PayloadCheck::Paths(p) if p.len() == 2));
    assert_eq!(dead_letters[0].kind, Some(weir::event::ErrorKind::Invalid));
    // The case-wide budget applies to every stage; a stage's own overrides it.
    let budgets: Vec<(&str, Option<Duration>, Option<u64>)> = case.budgets.iter().map(|b| (b.stage.as_str(), b.per_event, b.memory)).collect();
    assert_eq!(
        budgets,
        vec![("tag", Some(Duration::from_micros(40)), Some(32 << 20)), ("route", Some(Duration::from_millis(1)), Some(32 << 20)),]
    );
    let alone = &file.cases[1];
    assert_eq!(alone.stage.as_deref(), Some("route"));
    assert_eq!(alone.stages(), vec!["route"]);
    assert!(matches!(&alone.expect, Expect::Golden(p) if p == Path::new("tests/test_files/golden/route.jsonl")));
    assert_eq!(alone.inputs[0].payload, &[0xff, 0][..]);
}

#[test]
fn a_directory_of_pipelines_skips_test_files() {
    at_crate_root();
    let (pipelines, errors) = config::load_pipelines(&[PathBuf::from(DIR)]);
    assert!(errors.is_empty(), "{errors:?}");
    let files: Vec<&Path> = pipelines.iter().map(|p| p.file.as_path()).collect();
    assert_eq!(files, [Path::new("tests/test_files/pipeline.toml")]);
}
