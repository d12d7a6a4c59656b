//! Builds the shipped plugins and the test fixtures for `wasm32-wasip2` and
//! writes their paths to `$OUT_DIR/plugins.rs`, which `src/lib.rs` includes
//! as `weir_tests::plugins`.
//!
//! The plugins are built by a nested `cargo build --profile plugin` with its
//! own target directory: the outer build holds the lock on its own, so
//! sharing it would deadlock.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

/// (constant in `weir_tests::plugins`, package, directory)
const PLUGINS: &[(&str, &str, &str)] = &[
    ("FILTER", "weir-filter", "plugins/filter"),
    ("ROUTER", "weir-router", "plugins/router"),
    ("NOOP", "weir-noop", "plugins/noop"),
    ("JSON_MAP", "weir-json-map", "plugins/json-map"),
    ("BI_ENRICH", "weir-bi-enrich", "plugins/bi-enrich"),
    ("ML_TAGGER", "weir-ml-tagger", "plugins/ml-tagger"),
    ("DEDUPE", "weir-dedupe", "plugins/dedupe"),
    ("WINDOW_COUNT", "weir-window-count", "plugins/window-count"),
    ("SESSIONIZE", "weir-sessionize", "plugins/sessionize"),
    ("CHAOS", "weir-fixture-chaos", "tests/fixtures/chaos"),
    ("TALLY", "weir-fixture-tally", "tests/fixtures/tally"),
];

/// The packages whose components use keyed state, and so import
/// `weir:stage/state`. Every other plugin must not: weir runs a component
/// without that import as a plain stage, and the SDK takes care that a stage
/// that never calls `weir_sdk::state` does not import it (see
/// `sdk/src/state.rs`); this check keeps it so.
const STATEFUL: &[&str] = &["weir-dedupe", "weir-window-count", "weir-sessionize", "weir-fixture-tally"];

/// The name of the import, as it appears in a component's bytes.
const STATE_IMPORT: &[u8] = b"weir:stage/state@";

/// What a WebAssembly component starts with: the magic, then the component
/// layer's version (a core module has `01 00 00 00` there).
const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().expect("tests/ is inside the workspace").to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    for path in ["Cargo.toml", "Cargo.lock", "sdk/Cargo.toml", "sdk/src", "sdk/wit"] {
        rerun_if_changed(&root.join(path));
    }
    for (_, _, dir) in PLUGINS {
        rerun_if_changed(&root.join(dir).join("Cargo.toml"));
        rerun_if_changed(&root.join(dir).join("src"));
    }
    // Shared by the stateful plugins.
    rerun_if_changed(&root.join("plugins/keyed"));

    check_target_installed();

    let target_dir = plugin_target_dir(&out_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--profile", PROFILE, "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, package, _) in PLUGINS {
        command.args(["-p", package]);
    }
    // Settings meant for the outer build (flags for the host, coverage,
    // clippy as the compiler, the outer target) must not leak into this one.
    // CARGO_MAKEFLAGS stays: the nested build shares the outer job server.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    command.stdout(Stdio::null());

    let output = command.output().expect("could not run cargo to build the plugins");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("may not be installed") || stderr.contains("can't find crate for `core`") {
            missing_target();
        }
        panic!("building the plugins for {TARGET} failed:\n{stderr}");
    }

    let artifacts = target_dir.join(TARGET).join(PROFILE);
    let mut source = String::from("// Written by tests/build.rs.\n");
    for (constant, package, dir) in PLUGINS {
        let file = artifacts.join(format!("{}.wasm", package.replace('-', "_")));
        let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{package} was built but {} is unreadable: {e}", file.display()));
        if !bytes.starts_with(&COMPONENT_HEADER) {
            panic!("{} is not a WebAssembly component", file.display());
        }
        let imports_state = bytes.windows(STATE_IMPORT.len()).any(|window| window == STATE_IMPORT);
        match (imports_state, STATEFUL.contains(package)) {
            (true, false) => panic!(
                "{} imports weir:stage/state though {package} is not a stateful stage: weir would run it as one. \
                 Does it call weir_sdk::state, or does the SDK's default batch loop reach state.apply directly?",
                file.display()
            ),
            (false, true) => panic!("{} does not import weir:stage/state, though {package} keeps state", file.display()),
            _ => {}
        }
        let path = file.to_str().expect("the target directory's path is UTF-8");
        source.push_str(&format!(
            "/// `{dir}` (package `{package}`), built for {TARGET} with `--profile {PROFILE}`.\n\
             pub const {constant}: &str = {path:?};\n"
        ));
    }
    source.push_str("/// Every one of them, by the name of its directory (`ml-tagger`, `chaos`).\npub const ALL: &[(&str, &str)] = &[\n");
    for (constant, _, dir) in PLUGINS {
        let name = dir.rsplit('/').next().expect("a directory name");
        source.push_str(&format!("    ({name:?}, {constant}),\n"));
    }
    source.push_str("];\n");
    fs::write(out_dir.join("plugins.rs"), source).expect("could not write plugins.rs");
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// `<target-dir>/wasm-plugins`, from `OUT_DIR` =
/// `<target-dir>[/<triple>]/<profile>/build/<package>-<hash>/out`, so that
/// every profile of the outer build shares one plugin build.
fn plugin_target_dir(out_dir: &Path) -> PathBuf {
    let profile_dir = out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(Path::parent)
        .unwrap_or(out_dir);
    profile_dir.parent().unwrap_or(profile_dir).join("wasm-plugins")
}

/// Fails early, with the fix, when the Rust standard library for the target
/// is missing from the toolchain.
fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output();
    if let Ok(output) = sysroot {
        let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && !Path::new(&sysroot).join("lib/rustlib").join(TARGET).is_dir() {
            missing_target();
        }
    }
}

fn missing_target() -> ! {
    panic!(
        "the Rust target {TARGET} is not installed, and the test plugins are built for it; \
         run: rustup target add {TARGET}"
    );
}
