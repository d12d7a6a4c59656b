//! `weir build [DIR] [--watch]`: builds a stage project into a component
//! with its language's toolchain, and prints where it went, its size and
//! how long it took. `--watch` builds again on every save; the component is
//! replaced in one rename, so a `weir run` that uses it hot-reloads a whole
//! file, never half of one.

use std::ffi::OsString;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Lang, Project, STAGE_WIT};

/// A component that was built.
#[derive(Debug)]
pub struct Built {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// How long the build took.
    pub elapsed: Duration,
}

impl std::fmt::Display for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "built {} ({:.1} MB) in {:.1} s", self.path.display(), self.size as f64 / 1e6, self.elapsed.as_secs_f64())
    }
}

/// Builds `project` into the component `output`.
pub fn build(project: &Project, output: &Path, sdk: Option<&Path>) -> anyhow::Result<Built> {
    let started = Instant::now();
    let work = scratch(output)?;
    let staged = work.join("stage.wasm");
    let _ = std::fs::remove_file(&staged);
    match project.lang {
        Lang::Rust => build_rust(project, &staged)?,
        Lang::Python => build_python(project, &work, &staged, sdk)?,
        Lang::Js => build_js(project, &work, &staged, sdk)?,
    }
    // One rename: a watching `weir run` sees the old file or the new one.
    std::fs::rename(&staged, output).with_context(|| format!("cannot move the component to {}", output.display()))?;
    let size = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    Ok(Built { path: output.to_owned(), size, elapsed: started.elapsed() })
}

/// A directory beside `output` for the build's own files (the contract's
/// WIT, intermediate files), on the same file system so that the finished
/// component moves into place with a rename.
fn scratch(output: &Path) -> anyhow::Result<PathBuf> {
    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = absolute(&parent.join(".weir-build"));
    std::fs::create_dir_all(dir.join("wit")).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("wit/stage.wit"), STAGE_WIT).with_context(|| format!("cannot write {}", dir.join("wit/stage.wit").display()))?;
    std::fs::write(dir.join(".gitignore"), "*\n").ok();
    Ok(dir)
}

/// Runs a toolchain command with its output on the terminal; a command that
/// is not installed gets one line that says how to install it.
fn run(command: &mut Command, what: &str, install: &str) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = match command.status() {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!("{program} is not installed ({what}): {install}"),
        Err(e) => return Err(e).with_context(|| format!("cannot run {program}")),
    };
    if !status.success() {
        anyhow::bail!("{what} failed ({status}); its messages are above");
    }
    Ok(())
}

fn build_rust(project: &Project, staged: &Path) -> anyhow::Result<()> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    let sysroot = match sysroot {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        _ => anyhow::bail!(
            "rustc is not installed (the Rust toolchain builds Rust stages): install Rust with rustup (https://rustup.rs), then run `rustup target add wasm32-wasip2`"
        ),
    };
    if !sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        anyhow::bail!("the wasm32-wasip2 Rust target is not installed (Rust stages are built for it): run `rustup target add wasm32-wasip2`");
    }
    // JSON messages on stdout name the artifact wherever the target
    // directory is (CARGO_TARGET_DIR, a workspace's); diagnostics still go
    // to the terminal.
    let mut child = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format", "json-render-diagnostics", "--manifest-path"])
        .arg(project.dir.join("Cargo.toml"))
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let mut wasm = None;
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.context("cannot read cargo's messages")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["reason"] == "compiler-artifact" && message["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")) {
            wasm = message["filenames"]
                .as_array()
                .and_then(|f| f.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(".wasm")).map(PathBuf::from));
        }
    }
    let status = child.wait().context("cannot wait for cargo")?;
    if !status.success() {
        anyhow::bail!("cargo build failed ({status}); its messages are above");
    }
    let wasm = wasm
        .with_context(|| format!("cargo built no component: {}/Cargo.toml needs `crate-type = [\"cdylib\", \"rlib\"]` under [lib]", project.dir.display()))?;
    std::fs::copy(&wasm, staged).with_context(|| format!("cannot copy {}", wasm.display()))?;
    Ok(())
}

/// A toolchain directory: `$VAR`, else `~/.cache/weir/NAME` (where
/// `./dev setup` installs it).
fn toolchain(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weir").join(name),
    }
}

/// The Python that runs a stage's native tests: the toolchain's (where
/// `./dev setup` installs pytest and the SDK), else `python3` from PATH.
pub fn python() -> PathBuf {
    let venv = toolchain("WEIR_PY_TOOLCHAIN", "py-toolchain").join("bin/python");
    if venv.is_file() { venv } else { PathBuf::from("python3") }
}

/// componentize-py with weir's WIT, the project, its vendored packages
/// (`pip install --target deps ...`) and the Python SDK on its path. The
/// app module is `app.py`, ending with `WitWorld = weir_stage.export(...)`.
fn build_python(project: &Project, work: &Path, staged: &Path, sdk: Option<&Path>) -> anyhow::Result<()> {
    let sdk = sdk.context("the Python SDK's directory is needed (--sdk)")?;
    if !project.dir.join("app.py").is_file() {
        anyhow::bail!(
            "{} has no app.py: a Python stage is a module app.py that ends with `WitWorld = weir_stage.export(YourStage)`",
            project.dir.display()
        );
    }
    let venv = toolchain("WEIR_PY_TOOLCHAIN", "py-toolchain");
    let installed = venv.join("bin/componentize-py");
    let program = if installed.is_file() { installed.into_os_string() } else { OsString::from("componentize-py") };
    let dir = project.dir.canonicalize().unwrap_or_else(|_| project.dir.clone());
    let mut command = Command::new(program);
    command
        .current_dir(&dir)
        .env_remove("VIRTUAL_ENV")
        .args(["-q", "-d"])
        .arg(work.join("wit"))
        .args(["-w", "stage", "componentize", "-p"])
        .arg(&dir);
    if dir.join("deps").is_dir() {
        command.arg("-p").arg(dir.join("deps"));
    }
    command.arg("-p").arg(sdk.join("python/src")).arg("-o").arg(staged).arg("app");
    run(
        &mut command,
        "componentize-py builds Python stages",
        &format!(
            "run `./dev setup` in a weir checkout, or `python3 -m venv {0} && {0}/bin/pip install componentize-py==0.25.1` (or set WEIR_PY_TOOLCHAIN to a venv that has it)",
            venv.display()
        ),
    )
}

/// weir's JavaScript build script: esbuild bundles the stage with the SDK,
/// then componentize-js builds it with `wasi:http` turned off.
fn build_js(project: &Project, work: &Path, staged: &Path, sdk: Option<&Path>) -> anyhow::Result<()> {
    let sdk = sdk.context("the JavaScript SDK's directory is needed (--sdk)")?;
    let mut command = Command::new("node");
    command
        .arg(sdk.join("js/build/componentize.mjs"))
        .arg(&project.dir)
        .arg(work.join("wit"))
        .arg(staged);
    run(
        &mut command,
        "Node.js runs componentize-js, which builds JavaScript stages",
        "install Node.js 20 or later (Debian: `apt-get install nodejs npm`), then `./dev setup` in a weir checkout",
    )
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Builds again whenever a file of the project changes, until interrupted.
/// A failed build is reported and the previous component stays in place.
pub fn watch(project: &Project, output: &Path, sdk: Option<&Path>) -> anyhow::Result<()> {
    use notify::Watcher as _;

    let report = |result: anyhow::Result<Built>| match result {
        Ok(built) => eprintln!("{built}; watching {} for changes (Ctrl-C stops)", project.dir.display()),
        Err(e) => eprintln!("error: {e:#}\nwatching {} for changes; the last good component stays in place", project.dir.display()),
    };
    let (changes, changed) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = changes.send(event);
        }
    })
    .context("cannot watch files")?;
    watcher
        .watch(&project.dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", project.dir.display()))?;
    // Watching starts before the first build: a save during it is seen.
    report(build(project, output, sdk));
    let output = output.canonicalize().unwrap_or_else(|_| output.to_owned());
    let interesting = |event: &notify::Event| !event.kind.is_access() && event.paths.iter().any(|p| is_source(&project.dir, &output, p));
    let dir = project.dir.canonicalize().unwrap_or_else(|_| project.dir.clone());
    while let Ok(event) = changed.recv() {
        if !interesting(&event) {
            continue;
        }
        // An editor's save is several events (and temporary files); wait
        // until no source has changed for a moment, then name the files that
        // are still there. Reads of the files (an editor, a test, a tail of
        // a log) do not count: a file read every few hundred milliseconds
        // would otherwise hold the build off for ever.
        let mut paths = event.paths;
        let quiet = Duration::from_millis(300);
        let mut until = Instant::now() + quiet;
        while let Ok(more) = changed.recv_timeout(until.saturating_duration_since(Instant::now())) {
            if interesting(&more) {
                paths.extend(more.paths);
                until = Instant::now() + quiet;
            }
        }
        let mut changed_files: Vec<String> = paths
            .iter()
            .filter(|p| p.is_file() && is_source(&dir, &output, p))
            .map(|p| p.strip_prefix(&dir).unwrap_or(p).display().to_string())
            .collect();
        changed_files.sort();
        changed_files.dedup();
        eprintln!(
            "changed: {}; building",
            if changed_files.is_empty() { "files were removed".to_owned() } else { changed_files.join(", ") }
        );
        report(build(project, &output, sdk));
    }
    Ok(())
}

/// Whether a change to `path` should rebuild: not the component itself,
/// and nothing a build or a package manager writes.
fn is_source(dir: &Path, output: &Path, path: &Path) -> bool {
    const GENERATED: [&str; 8] = ["target", "node_modules", "__pycache__", ".git", ".weir-build", ".pytest_cache", "Cargo.lock", "package-lock.json"];
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let relative = path.strip_prefix(&dir).unwrap_or(path);
    path != output
        // A log the author sends the build's output to, in the project.
        && path.extension().is_none_or(|e| e != "wasm" && e != "log")
        && !relative
            .components()
            .any(|c| GENERATED.iter().any(|g| c.as_os_str() == OsString::from(g).as_os_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_package_managers_do_not_trigger_a_build() {
        let dir = Path::new("/p");
        let out = Path::new("/p/tag.wasm");
        assert!(is_source(dir, out, Path::new("/p/src/lib.rs")));
        assert!(is_source(dir, out, Path::new("/p/app.py")));
        for generated in [
            "/p/tag.wasm",
            "/p/other.wasm",
            "/p/target/release/x",
            "/p/node_modules/a/b.js",
            "/p/__pycache__/app.pyc",
            "/p/Cargo.lock",
            "/p/.weir-build/wit/stage.wit",
        ] {
            assert!(!is_source(dir, out, Path::new(generated)), "{generated}");
        }
    }
}
