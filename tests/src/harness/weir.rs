//! The `weir run` process under test, over a temporary directory holding its
//! `weir.toml` and a `pipelines/` directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::output::{Output, WaitError};
use super::server::{Auth, NatsServer};
use super::{READY_TIMEOUT, TempDir, toml_str};

/// The `weir` binary the tests run, built first if cargo runs the tests (see
/// the [module documentation](super)).
pub fn weir_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(find_or_build_weir).clone()
}

fn find_or_build_weir() -> PathBuf {
    if let Some(bin) = std::env::var_os("WEIR_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "WEIR_BIN={} is not a file", bin.display());
        return bin;
    }
    // The test runs as target/<profile>/deps/<test>-<hash>; the binary is
    // target/<profile>/weir.
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()))
        .to_path_buf();
    let bin = profile_dir.join(format!("weir{}", std::env::consts::EXE_SUFFIX));
    if let (Some(cargo), Some(target_dir), Some(profile)) = (std::env::var_os("CARGO"), profile_dir.parent(), profile_dir.file_name()) {
        build_weir(&cargo, target_dir, &profile.to_string_lossy());
    }
    assert!(bin.is_file(), "the weir binary is missing at {}: run `cargo build --release -p weir` (or set WEIR_BIN)", bin.display());
    bin
}

/// `cargo build -p weir --bin weir` in the running test's profile and target
/// directory. Cargo releases its build lock before it runs tests, so this does
/// not deadlock; it waits if another build holds the lock.
fn build_weir(cargo: &OsString, target_dir: &Path, profile: &str) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace");
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(["-p", "weir", "--bin", "weir"]);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    // Variables cargo set for this test, not meant for another build. OUT_DIR
    // above all: build scripts (ring's) rerun when it changes, so leaving it
    // would rebuild weir here and again in every plain `cargo build`.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_BIN_EXE_")
            || ["OUT_DIR", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "CARGO_BIN_NAME"].contains(&key.as_ref())
        {
            command.env_remove(key.as_ref());
        }
    }
    eprintln!("[harness] building the weir binary ({profile}) in {}", target_dir.display());
    let started = Instant::now();
    let out = command.output().unwrap_or_else(|e| panic!("cannot run cargo to build weir: {e}"));
    assert!(
        out.status.success(),
        "`cargo build -p weir --bin weir` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("[harness] weir binary ready after {:.1?}", started.elapsed());
}

/// Configuration of a [`Weir`] process: the `weir.toml` it gets and the
/// pipeline files written into its `pipelines/` directory.
#[derive(Debug, Clone)]
pub struct WeirBuilder {
    label: String,
    url: Option<String>,
    auth: Auth,
    instance: Option<String>,
    workers: Option<usize>,
    shutdown_timeout: Option<String>,
    global: Vec<String>,
    nats: Vec<String>,
    pipelines: Vec<(String, String)>,
    args: Vec<String>,
    metrics: Option<String>,
    cache_dir: Option<PathBuf>,
}

impl WeirBuilder {
    /// A weir with no NATS settings (its defaults apply) and no pipelines.
    pub fn new() -> WeirBuilder {
        WeirBuilder {
            label: "weir".into(),
            url: None,
            auth: Auth::None,
            instance: None,
            workers: None,
            shutdown_timeout: None,
            global: Vec::new(),
            nats: Vec::new(),
            pipelines: Vec::new(),
            args: Vec::new(),
            metrics: None,
            cache_dir: None,
        }
    }

    /// The prefix of this process's forwarded log lines (`[weir:<label>]`),
    /// to tell two processes apart.
    pub fn label(mut self, label: &str) -> Self {
        self.label = format!("weir:{label}");
        self
    }

    /// `[nats] url`.
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The `[nats]` authentication keys.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// `instance`.
    pub fn instance(mut self, instance: &str) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// `workers`.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// `shutdown_timeout`, e.g. `"5s"`.
    pub fn shutdown_timeout(mut self, timeout: &str) -> Self {
        self.shutdown_timeout = Some(timeout.into());
        self
    }

    /// A raw top-level line of `weir.toml`.
    pub fn global_line(mut self, line: &str) -> Self {
        self.global.push(line.into());
        self
    }

    /// A raw line of `weir.toml`'s `[nats]` table.
    pub fn nats_line(mut self, line: &str) -> Self {
        self.nats.push(line.into());
        self
    }

    /// Serve metrics on `address` (by default the harness turns them off, so
    /// that parallel tests do not fight over weir's default port).
    pub fn metrics(mut self, address: &str) -> Self {
        self.metrics = Some(address.into());
        self
    }

    /// Writes `pipelines/<file_name>` with `toml` in it.
    pub fn pipeline(mut self, file_name: &str, toml: &str) -> Self {
        self.pipelines.push((file_name.into(), toml.into()));
        self
    }

    /// Extra arguments after `weir run --config <file>` (pipeline names).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Keeps compiled plugins in `dir` instead of a fresh cache per weir:
    /// for tests of large plugins (ml-tagger takes seconds to compile).
    pub fn cache_dir(mut self, dir: &Path) -> Self {
        self.cache_dir = Some(dir.to_owned());
        self
    }

    /// The `weir.toml` this builder writes.
    pub fn weir_toml(&self) -> String {
        let mut toml = String::new();
        if let Some(instance) = &self.instance {
            toml += &format!("instance = {}\n", toml_str(instance));
        }
        toml += "pipelines = \"pipelines\"\n";
        if let Some(workers) = self.workers {
            toml += &format!("workers = {workers}\n");
        }
        if let Some(timeout) = &self.shutdown_timeout {
            toml += &format!("shutdown_timeout = {}\n", toml_str(timeout));
        }
        match &self.cache_dir {
            Some(dir) => toml += &format!("cache_dir = {}\n", toml_str(dir.to_str().expect("UTF-8 paths"))),
            None => toml += "cache_dir = \"cache\"\n",
        }
        for line in &self.global {
            toml += line;
            toml += "\n";
        }
        toml += "\n[nats]\n";
        if let Some(url) = &self.url {
            toml += &format!("url = {}\n", toml_str(url));
        }
        toml += &self.auth.weir_toml();
        for line in &self.nats {
            toml += line;
            toml += "\n";
        }
        match &self.metrics {
            Some(address) => toml += &format!("\n[metrics]\naddress = {}\n", toml_str(address)),
            None => toml += "\n[metrics]\nenabled = false\n",
        }
        toml
    }

    /// Writes the files and starts `weir run` without waiting for it.
    pub fn spawn(self) -> Weir {
        let dir = TempDir::new("weir");
        std::fs::write(dir.path().join("weir.toml"), self.weir_toml()).expect("write weir.toml");
        let pipelines = dir.path().join("pipelines");
        std::fs::create_dir_all(&pipelines).expect("create pipelines/");
        for (name, toml) in &self.pipelines {
            std::fs::write(pipelines.join(name), toml).expect("write a pipeline file");
        }
        let mut weir = Weir { child: None, stderr: None, stdout: None, dir, label: self.label, args: self.args };
        weir.spawn_process();
        weir
    }

    /// [`spawn`](Self::spawn)s and waits for the readiness line.
    pub fn start(self) -> Weir {
        let weir = self.spawn();
        weir.wait_ready();
        weir
    }
}

impl Default for WeirBuilder {
    fn default() -> Self {
        WeirBuilder::new()
    }
}

/// A `weir run` process. Killed on drop.
pub struct Weir {
    child: Option<Child>,
    stderr: Option<Output>,
    stdout: Option<Output>,
    dir: TempDir,
    label: String,
    args: Vec<String>,
}

impl Weir {
    /// A builder connected to `server` (its URL and authentication).
    pub fn builder(server: &NatsServer) -> WeirBuilder {
        WeirBuilder::new().url(&server.url()).auth(server.auth().clone())
    }

    fn spawn_process(&mut self) {
        let mut command = Command::new(weir_binary());
        command
            .arg("run")
            .arg("--config")
            .arg(self.dir.path().join("weir.toml"))
            .args(&self.args)
            .current_dir(self.dir.path())
            .env_remove("NATS_URL")
            .env_remove("WEIR_CONFIG")
            .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", weir_binary().display()));
        let prefix = format!("[{}]", self.label);
        self.stderr = Some(Output::capture(child.stderr.take().expect("piped stderr"), prefix.clone()));
        self.stdout = Some(Output::capture(child.stdout.take().expect("piped stdout"), format!("{prefix}(stdout)")));
        self.child = Some(child);
    }

    /// The directory holding `weir.toml` and `pipelines/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `pipelines/` directory.
    pub fn pipelines_dir(&self) -> PathBuf {
        self.dir.path().join("pipelines")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("weir was started").id()
    }

    /// Everything weir wrote to stderr since its last start.
    pub fn stderr(&self) -> String {
        self.stderr.as_ref().map(Output::text).unwrap_or_default()
    }

    /// Everything weir wrote to stdout since its last start.
    pub fn stdout(&self) -> String {
        self.stdout.as_ref().map(Output::text).unwrap_or_default()
    }

    /// Blocks until weir's stderr satisfies `found` (true), or weir exits or
    /// `timeout` passes (false).
    pub fn wait_for_stderr(&self, timeout: Duration, found: impl Fn(&str) -> bool) -> bool {
        self.stderr.as_ref().expect("weir was started").wait_for(timeout, found).is_ok()
    }

    /// Blocks until weir prints its readiness line (`ready:` on stderr).
    /// Panics with its stderr if it exits first or takes longer than
    /// [`READY_TIMEOUT`].
    pub fn wait_ready(&self) {
        let output = self.stderr.as_ref().expect("weir was started");
        match output.wait_for(READY_TIMEOUT, |text| text.contains("ready:")) {
            Ok(()) => {}
            Err(WaitError::Closed) => {
                // Give the exit status a moment to be reported.
                let _ = output.wait_closed(Duration::from_millis(200));
                panic!("[{}] weir exited before it printed `ready:`; its stderr:\n{}", self.label, self.stderr())
            }
            Err(WaitError::Timeout) => panic!("[{}] weir did not print `ready:` within {READY_TIMEOUT:?}; its stderr:\n{}", self.label, self.stderr()),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the child is
        // ours and not yet reaped (we hold its `Child`), so the pid is its.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        self.signal(libc::SIGINT);
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    /// Panics (after killing it) if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_exit(timeout) {
            Some(status) => status,
            None => {
                self.kill();
                panic!("[{}] weir did not exit within {timeout:?}; its stderr:\n{}", self.label, self.stderr());
            }
        }
    }

    /// Waits up to `timeout` for the process to exit: its status, or `None`
    /// if it is still running.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("weir was started");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                // Let the capture threads read the last lines.
                for output in [&self.stderr, &self.stdout].into_iter().flatten() {
                    output.wait_closed(Duration::from_secs(1));
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `weir run` again over the same directory (same files, same
    /// compiled-code cache) after the previous process exited, and waits for
    /// readiness.
    pub fn restart(&mut self) {
        assert!(!self.is_running(), "restart() needs the previous weir to have exited");
        self.spawn_process();
        self.wait_ready();
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a one-off `weir <args> --config <weir.toml>` printed and how it
/// exited.
#[derive(Debug)]
pub struct CliRun {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl CliRun {
    /// The stdout lines (trimmed) that start with `prefix`.
    pub fn lines_starting(&self, prefix: &str) -> Vec<&str> {
        self.stdout.lines().map(str::trim).filter(|l| l.starts_with(prefix)).collect()
    }
}

impl std::fmt::Display for CliRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// How long a one-off command may take before the test fails.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

impl Weir {
    /// Runs `weir <args> --config <this weir's weir.toml>` (a command such
    /// as `reload`, `status` or `kv load` talking to the same NATS server)
    /// from this weir's directory; killed after [`CLI_TIMEOUT`], and then the
    /// test fails saying so.
    pub async fn cli(&self, args: &[&str]) -> CliRun {
        cli_with_config(&self.dir().join("weir.toml"), self.dir(), args).await
    }
}

/// Runs `weir <args> --config <config>` in `dir`; see [`Weir::cli`].
pub async fn cli_with_config(config: &Path, dir: &Path, args: &[&str]) -> CliRun {
    let line = args.join(" ");
    let child = tokio::process::Command::new(weir_binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .env_remove("NATS_URL")
        .env_remove("WEIR_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `weir {line}`: {e}"));
    match tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let run = CliRun {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            eprintln!("[test] weir {line}: {run}");
            run
        }
        Ok(Err(e)) => panic!("`weir {line}` failed to run: {e}"),
        Err(_) => panic!("`weir {line}` did not exit within {CLI_TIMEOUT:?}"),
    }
}

/// A compile cache shared by the tests that ask for it (next to the `weir`
/// binary): large plugins are compiled once per build, not once per test.
pub fn shared_cache_dir() -> PathBuf {
    weir_binary().parent().expect("the binary is in a directory").join("weir-test-cache")
}

/// How long [`warm_shared_cache`] lets `weir validate` compile.
const WARM_TIMEOUT: Duration = Duration::from_secs(300);

/// Compiles the plugins of `pipeline` (TOML text) into [`shared_cache_dir`]
/// with `weir validate`, once per test process: a weir started afterwards
/// with that cache is ready at once instead of compiling for longer than
/// [`READY_TIMEOUT`]. Concurrent callers wait for the first.
pub fn warm_shared_cache(pipeline: &str) {
    warm_cache(&shared_cache_dir(), pipeline);
}

/// [`warm_shared_cache`] into the cache directory `cache`.
pub fn warm_cache(cache: &Path, pipeline: &str) {
    static WARMED: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let mut warmed = WARMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if warmed.iter().any(|(c, p)| c == cache && p == pipeline) {
        return;
    }
    let dir = TempDir::new("weir-warm");
    std::fs::write(dir.path().join("warm.toml"), pipeline).expect("write the pipeline");
    let config = format!("cache_dir = {}\n", toml_str(cache.to_str().expect("UTF-8 paths")));
    std::fs::write(dir.path().join("weir.toml"), config).expect("write weir.toml");
    let started = Instant::now();
    let mut child = Command::new(weir_binary())
        .args(["validate", "warm.toml", "--config", "weir.toml"])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("weir validate starts");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for weir validate") {
            break status;
        }
        if started.elapsed() > WARM_TIMEOUT {
            let _ = child.kill();
            panic!("`weir validate` did not compile the plugins within {WARM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "`weir validate` of the pipeline to warm the cache failed ({status})");
    eprintln!("[test] plugins compiled into {} in {:.1?}", cache.display(), started.elapsed());
    warmed.push((cache.to_owned(), pipeline.to_owned()));
}

/// Loads KV files into `server` with `weir kv load <files>`; panics with
/// what it printed when it fails.
pub async fn kv_load(server: &NatsServer, files: &[&Path]) -> CliRun {
    let dir = TempDir::new("weir-kv");
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, Weir::builder(server).weir_toml()).expect("write weir.toml");
    let mut args = vec!["kv", "load"];
    args.extend(files.iter().map(|f| f.to_str().expect("UTF-8 paths")));
    let run = cli_with_config(&config, dir.path(), &args).await;
    assert_eq!(run.code, Some(0), "weir kv load failed: {run}");
    run
}
