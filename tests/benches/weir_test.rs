//! `weir test` over the shipped pipelines' cases (`pipelines/tests/`): the
//! wall time from start to the report, with a cold code cache (every plugin
//! compiled, ml-tagger's model loaded) and a warm one (compiled code read
//! from the cache directory), next to the floor of starting the binary at
//! all (`weir --version`).
//!
//! The pipelines directory is copied to a temporary directory with its
//! plugin paths pointed at the plugins this crate's build script built, so
//! the bench needs no `./dev plugins` first. The cache directory is set with
//! a `weir.toml` (`cache_dir`); a cold run gets an empty one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use weir_tests::harness::{TempDir, repo_root, toml_str, weir_binary};
use weir_tests::plugins;

// A cold run compiles every plugin (ml-tagger is 15 MB of WebAssembly): tens of
// seconds each.
const COLD_RUNS: usize = 2;
const WARM_RUNS: usize = 7;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// The shipped pipelines, with their plugins at the built paths.
fn pipelines(dir: &Path) -> PathBuf {
    let to = dir.join("pipelines");
    copy_dir(&repo_root().join("pipelines"), &to);
    for entry in std::fs::read_dir(&to).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let mut text = std::fs::read_to_string(&path).expect("read");
            for (name, built) in plugins::ALL {
                text = text.replace(&format!("\"../plugins/{name}.wasm\""), &toml_str(built));
            }
            std::fs::write(&path, text).expect("write");
        }
    }
    to
}

fn time(dir: &Path, config: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(weir_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("weir runs");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "weir {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn row(what: &str, mut runs: Vec<Duration>) {
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<34} {:>5} {:>10.0} {:>10.0} {:>10.0}",
        runs.len(),
        ms(runs[runs.len() / 2]),
        ms(runs[0]),
        ms(runs[runs.len() - 1])
    );
}

fn main() {
    let dir = TempDir::new("weir-test-bench");
    let pipelines = pipelines(dir.path());
    let config = |name: &str| {
        let cache = dir.path().join(name);
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, format!("cache_dir = {}\n", toml_str(&cache.display().to_string()))).expect("write");
        (cache, file)
    };
    let target = pipelines.display().to_string();
    let args = ["test", target.as_str()];

    let floor: Vec<Duration> = (0..WARM_RUNS).map(|_| time(dir.path(), &config("floor").1, &["--version"])).collect();
    let cold: Vec<Duration> = (0..COLD_RUNS)
        .map(|i| {
            let (cache, file) = config(&format!("cold-{i}"));
            assert!(!cache.exists(), "a cold run starts with no cache");
            time(dir.path(), &file, &args)
        })
        .collect();
    let (_, warm_config) = config("warm");
    time(dir.path(), &warm_config, &args);
    let warm: Vec<Duration> = (0..WARM_RUNS).map(|_| time(dir.path(), &warm_config, &args)).collect();

    let cases = std::fs::read_dir(pipelines.join("tests"))
        .expect("tests")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".test.toml"))
        .map(|e| std::fs::read_to_string(e.path()).expect("read").matches("[[case]]").count())
        .sum::<usize>();
    println!("\nweir test pipelines/ ({cases} cases), start to report, wall time in ms");
    println!("{:<34} {:>5} {:>10} {:>10} {:>10}", "", "runs", "median", "min", "max");
    row("floor: weir --version", floor);
    row("cold code cache (empty cache_dir)", cold);
    row("warm code cache", warm);
}
