//! The command line: argument parsing and the small amount of glue that turns
//! each command into library calls and human-readable output.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Pipeline};
use crate::control::{ReloadReport, StatusReport};
use crate::engine::{Engine, EngineOptions, Origin};
use crate::exec::{self, ExecOptions};
use crate::pipeline::{Blueprint, StageReport};

/// weir: a WebAssembly stream processor for NATS.
///
/// weir reads events from NATS subjects, passes each through a chain of
/// sandboxed WebAssembly stages configured in TOML, and publishes the results.
#[derive(Debug, Parser)]
#[command(name = "weir", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    /// The process configuration (NATS connection, workers, cache); every
    /// field has a default, so the file is optional.
    #[arg(long, short, global = true, env = "WEIR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check pipeline files: parse them, compile every plugin and run every
    /// stage's init. Exits 1 with every problem found, 0 with a summary line
    /// per pipeline.
    Validate(ValidateArgs),
    /// Run one pipeline over events read from a file or stdin, without NATS,
    /// and print what it would publish. The plugin author's test loop.
    Exec(ExecArgs),
    /// Connect to NATS and run pipelines until SIGINT or SIGTERM (then finish
    /// in-flight events and exit; a second signal exits at once).
    Run(RunArgs),
    /// Ask a running weir (over NATS) to reload its pipelines now, and print
    /// what was added, changed, removed, left unchanged, or failed. Exits 1
    /// when something failed to reload.
    Reload(ControlArgs),
    /// Print the pipelines a running weir runs, with their version, uptime
    /// and counters, and each stage candidate's live comparison (over NATS).
    Status(StatusArgs),
    /// Promote a stage's candidate (`[stages.candidate]`) on a running weir:
    /// its plugin becomes the stage's, and weir remembers it across reloads
    /// and restarts.
    Promote(DecideArgs),
    /// Roll back a stage's candidate on a running weir: the stage runs its
    /// live version alone, and weir remembers it across reloads and restarts.
    Rollback(DecideArgs),
    /// NATS KV buckets: reference data that stages read with `kv-get`.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Run test files' cases without NATS: expected outputs, dead letters
    /// and per-stage budgets of time and memory. Exits 1 on any failure.
    Test(crate::testing::command::TestArgs),
    /// Capture events (with headers) from NATS or a JetStream stream into a
    /// JSON-lines file that test cases read; --update rewrites their golden files.
    Record(crate::testing::command::RecordArgs),
    /// Make a new project: `weir new stage NAME --lang rust|python|js`.
    #[command(subcommand)]
    New(NewCommand),
    /// Build the stage project in DIR (default: here) into a component, with
    /// its language's toolchain; --watch builds again on every save.
    Build(BuildArgs),
}

#[derive(Debug, Subcommand)]
enum NewCommand {
    /// A stage project that builds and runs as generated: the stage, a
    /// native test, a pipeline that uses it, sample events and a README.
    #[command(
        after_help = "Example:\n  weir new stage traffic-channel --lang python\n  cd traffic-channel && weir build && weir exec pipeline.toml --input events.jsonl"
    )]
    Stage(NewStageArgs),
}

#[derive(Debug, Args)]
struct NewStageArgs {
    /// The stage's name: lowercase letters, digits and dashes.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    lang: crate::author::Lang,
    /// Where to create it; default: ./NAME.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// weir's `sdk` directory, which the project depends on; default: the
    /// one of the checkout this weir was built from.
    #[arg(long, env = "WEIR_SDK", value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The project: a directory with Cargo.toml (Rust), pyproject.toml or
    /// app.py (Python), or package.json (JavaScript).
    #[arg(default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// Where to write the component; default: DIR/NAME.wasm.
    #[arg(long, short, value_name = "FILE.wasm")]
    output: Option<PathBuf>,
    /// Build again on every change to the project's files, until Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// weir's `sdk` directory (the Python and JavaScript SDKs and build
    /// helpers); default: the one of the checkout this weir was built from.
    #[arg(long, env = "WEIR_SDK", value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Load JSON files into KV buckets, creating the buckets that are
    /// missing. Each file is a JSON object of key to value; it fills the
    /// bucket named after the file (`shops.json` -> `shops`) unless
    /// --bucket is given. Each value is stored as compact JSON; existing
    /// keys are overwritten, other keys are kept.
    #[command(after_help = "Example:\n  weir kv load pipelines/reference/shops.json pipelines/reference/rates.json")]
    Load(KvLoadArgs),
}

#[derive(Debug, Args)]
struct KvLoadArgs {
    /// JSON files, one object of key to value each.
    #[arg(required = true, value_name = "FILE.json")]
    files: Vec<PathBuf>,
    /// The bucket to fill (only with a single file); default: the file's name
    /// without `.json`.
    #[arg(long, value_name = "NAME")]
    bucket: Option<String>,
}

#[derive(Debug, Args)]
struct ControlArgs {
    /// The weir to ask; default: `instance` of weir.toml.
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// How long to wait for the answer (a reload compiles new plugins).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// Also print recent samples of events on which a candidate differed
    /// from the live version: input, live result, candidate result.
    #[arg(long)]
    diff: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  weir promote orders route --instance edge-1")]
struct DecideArgs {
    /// The pipeline.
    pipeline: String,
    /// The stage whose candidate is decided on.
    stage: String,
    #[command(flatten)]
    control: ControlArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Pipeline files or directories; default: the `pipelines` directory of
    /// weir.toml (./pipelines without one).
    #[arg(value_name = "PIPELINES")]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// Pipeline files, or directories whose *.toml files are pipelines.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Input is one event per line, either an envelope
  {\"subject\": \"orders.new\", \"headers\": {\"id\": \"7\"}, \"payload\": {\"price\": 12}}
or, with --subject, a bare JSON payload
  {\"price\": 12}
Envelopes may carry \"payload_text\" (a string) or \"payload_base64\" (bytes) instead of
\"payload\". Outputs are written to stdout as envelopes, one per line; dead letters
likewise to stderr or --dead-letter, with weir-error-* headers saying why.

Example:
  echo '{\"price\": 12}' | weir exec pipelines/orders.toml --subject orders.new
  weir exec pipelines/products.toml --input pipelines/samples/products.jsonl \\
      --kv pipelines/reference/shops.json --kv pipelines/reference/rates.json")]
struct ExecArgs {
    /// The pipeline file.
    #[arg(value_name = "PIPELINE.toml")]
    pipeline: PathBuf,
    /// Read events from FILE ("-" for stdin).
    #[arg(long, short, default_value = "-", value_name = "FILE")]
    input: String,
    /// Subject of bare-payload lines (and of envelopes without one).
    #[arg(long, short, value_name = "SUBJECT")]
    subject: Option<String>,
    /// Write dead letters to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Serve a KV bucket from a JSON file (an object of key to value, as for
    /// `weir kv load`; the bucket is named after the file). Repeat it for
    /// several buckets. Without it, `kv-get` fails: there is no NATS here.
    #[arg(long, value_name = "FILE.json")]
    kv: Vec<PathBuf>,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `weir test` reports faults in its cases itself; the log would repeat them.
    init_logging(cli.log_format, if matches!(cli.command, Command::Test(_)) { "error" } else { "info,async_nats=warn" });
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = config::load_global(cli.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = || {
        Engine::new(&EngineOptions { cache_dir: Some(global.cache_dir.clone()), cache_size: Some(global.cache_size), kv: None })
            .context("cannot start the WebAssembly engine")
    };
    match cli.command {
        Command::Validate(args) => validate(&engine()?, &args.paths),
        Command::Exec(args) => {
            let kv = exec::FileKv::load(&args.kv.iter().map(|f| read_kv_file(f, None)).collect::<anyhow::Result<Vec<_>>>()?);
            let kv = (!args.kv.is_empty()).then(|| std::sync::Arc::new(kv) as std::sync::Arc<dyn crate::engine::KvSource>);
            let engine = Engine::new(&EngineOptions { cache_dir: Some(global.cache_dir.clone()), cache_size: Some(global.cache_size), kv })
                .context("cannot start the WebAssembly engine")?;
            exec(&engine, args)
        }
        Command::Reload(args) => control(&global, &args, "reload", false),
        Command::Status(args) => control(&global, &args.control, "status", args.diff),
        Command::Promote(args) => decide(&global, &args, "promoted"),
        Command::Rollback(args) => decide(&global, &args, "rolled_back"),
        Command::Kv(KvCommand::Load(args)) => kv_load(&global, &args),
        Command::Test(args) => crate::testing::command::test(&global, &args),
        Command::Record(args) => crate::testing::command::record(&global, &args),
        Command::New(NewCommand::Stage(args)) => new_stage(&args),
        Command::Build(args) => build_stage(&args),
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(global.io_threads)
                .enable_all()
                .thread_name("weir-io")
                .build()?;
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(signals(shutdown.clone()));
                crate::run::run(&global, &args.paths, shutdown).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `weir new stage`: writes the project and says what to do next.
fn new_stage(args: &NewStageArgs) -> anyhow::Result<ExitCode> {
    let sdk = crate::author::sdk_dir(args.sdk.as_deref())?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    let files = crate::author::new::create(&args.name, args.lang, &dir, &sdk)?;
    println!("created a {} stage in {}:", args.lang, dir.display());
    for file in &files {
        println!("  {}", file.strip_prefix(&dir).unwrap_or(file).display());
    }
    let test = match args.lang {
        crate::author::Lang::Rust => "cargo test".to_owned(),
        crate::author::Lang::Python => format!("{} -m pytest", crate::author::build::python().display()),
        crate::author::Lang::Js => "npm install && node --test".to_owned(),
    };
    println!("next (README.md says more):");
    for (command, what) in [
        (format!("cd {}", dir.display()), String::new()),
        (test, "the native tests".to_owned()),
        ("weir build".to_owned(), format!("the component, {}.wasm", args.name)),
        ("weir exec pipeline.toml --input events.jsonl".to_owned(), "the pipeline over the samples, no NATS".to_owned()),
    ] {
        let comment = if what.is_empty() { String::new() } else { format!("# {what}") };
        println!("  {command:<46}{comment}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir build`: one build, or a build on every save.
fn build_stage(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let project = crate::author::Project::detect(&args.dir)?;
    let output = args.output.clone().unwrap_or_else(|| project.default_output());
    let sdk = match project.lang {
        crate::author::Lang::Rust => None,
        _ => Some(crate::author::sdk_dir(args.sdk.as_deref())?),
    };
    eprintln!("building the {} stage {} in {}", project.lang, project.name, project.dir.display());
    if args.watch {
        crate::author::build::watch(&project, &output, sdk.as_deref())?;
    } else {
        println!("{}", crate::author::build::build(&project, &output, sdk.as_deref())?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir reload` and `weir status`: one request to the running weir's
/// control subject, printed for a person.
fn control(global: &config::Global, args: &ControlArgs, verb: &str, diff: bool) -> anyhow::Result<ExitCode> {
    let instance = args.instance.clone().unwrap_or_else(|| global.instance.to_string());
    let reply = request(global, args, verb, if diff { b"diff".to_vec() } else { Vec::new() })?;
    let unreadable = |e: serde_json::Error| anyhow::anyhow!("weir {instance} answered something this weir cannot read ({e}); are both the same version?");
    if verb == "status" {
        let status: StatusReport = serde_json::from_value(reply).map_err(unreadable)?;
        if let Some(error) = status.error {
            anyhow::bail!("weir {instance}: {error}");
        }
        println!("weir {} (version {}), up {}s", status.instance, status.version, status.uptime_seconds);
        for p in &status.pipelines {
            println!(
                "{} {} ({}): up {}s, {} in, {} out, {} dropped, {} dead-lettered, {} retried",
                p.name, p.version, p.file, p.uptime_seconds, p.events_in, p.events_out, p.dropped, p.dead_lettered, p.retried,
            );
            for c in &p.candidates {
                print_candidate(c, diff);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report: ReloadReport = serde_json::from_value(reply).map_err(unreadable)?;
    if let Some(error) = report.error {
        anyhow::bail!("weir {instance}: {error}");
    }
    for (key, names) in [("added", &report.added), ("changed", &report.changed), ("removed", &report.removed), ("unchanged", &report.unchanged)] {
        for name in names {
            println!("{key}: {name}");
        }
    }
    for f in &report.failed {
        println!("failed: {} ({}): {}", f.pipeline.as_deref().unwrap_or("-"), f.file, f.error.replace('\n', "\n    "));
    }
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One request to the running weir's control subject `verb`, its JSON reply.
fn request(global: &config::Global, args: &ControlArgs, verb: &str, body: Vec<u8>) -> anyhow::Result<serde_json::Value> {
    let instance = args.instance.clone().unwrap_or_else(|| global.instance.to_string());
    let subject = format!("weir.control.{instance}.{verb}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let nats = connect_briefly(global, std::time::Duration::from_secs(5)).await?;
        nats.request_json_with(&subject, body, args.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{e}; is `weir run` with instance \"{instance}\" running on {}?", global.nats.url))
    })
}

/// A candidate's lines in `weir status`.
fn print_candidate(c: &crate::control::CandidateReport, diff: bool) {
    let f = &c.figures;
    println!(
        "  stage {} candidate {} ({}, {}, share {}, decide {}): {}, up {}s; {}",
        c.stage,
        c.candidate,
        c.plugin,
        c.mode,
        c.share,
        c.decide,
        c.state.replace('_', " "),
        c.running_seconds,
        c.judgement
    );
    let differences: Vec<String> = f.differences.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
    if c.mode == "shadow" {
        println!(
            "    compared {}: agreed {}, differed {} ({:.2}%){}{}",
            f.compared,
            f.agreed,
            f.compared - f.agreed,
            f.diff_rate * 100.0,
            if differences.is_empty() { "" } else { ": " },
            differences.join(", ")
        );
    }
    println!(
        "    candidate: {} events, {} failed ({:.2}%), {:.2} µs/event; live: {} events, {} failed ({:.2}%), {:.2} µs/event",
        f.candidate_events,
        f.candidate_errors,
        f.candidate_error_rate * 100.0,
        f.candidate_us_per_event,
        f.live_events,
        f.live_errors,
        f.live_error_rate * 100.0,
        f.live_us_per_event
    );
    if let Some(d) = &c.decision {
        println!(
            "    {} by {}{}: {}",
            d.decision.replace('_', " "),
            d.by,
            d.instance.as_deref().map(|i| format!(" on weir {i}")).unwrap_or_default(),
            d.reason
        );
    }
    if diff {
        if c.samples.is_empty() {
            println!("    no differing events sampled");
        }
        for sample in &c.samples {
            println!("    {}", serde_json::to_string(sample).unwrap_or_default());
        }
    }
}

/// `weir promote` and `weir rollback`.
fn decide(global: &config::Global, args: &DecideArgs, decision: &str) -> anyhow::Result<ExitCode> {
    let instance = args.control.instance.clone().unwrap_or_else(|| global.instance.to_string());
    let asked = crate::control::DecideRequest { pipeline: args.pipeline.clone(), stage: args.stage.clone(), decision: decision.to_owned() };
    let reply = request(global, &args.control, "decide", serde_json::to_vec(&asked)?)?;
    let report: crate::control::DecideReport = serde_json::from_value(reply)
        .map_err(|e| anyhow::anyhow!("weir {instance} answered something this weir cannot read ({e}); are both the same version?"))?;
    if let Some(error) = report.error {
        anyhow::bail!("weir {instance}: {error}");
    }
    let Some(d) = report.decision else { anyhow::bail!("weir {instance} answered without a decision") };
    let f = &d.figures;
    println!(
        "{} {}: candidate {} {} ({} candidate events, difference rate {:.4}, error rate {:.4} against live {:.4}, {:.2} µs/event against live {:.2})",
        args.pipeline,
        args.stage,
        report.candidate,
        d.decision.replace('_', " "),
        f.candidate_events,
        f.diff_rate,
        f.candidate_error_rate,
        f.live_error_rate,
        f.candidate_us_per_event,
        f.live_us_per_event
    );
    Ok(ExitCode::SUCCESS)
}

/// Connects for a one-off command, retrying (and saying so) for at most
/// `patience`.
async fn connect_briefly(global: &config::Global, patience: std::time::Duration) -> anyhow::Result<crate::nats::Nats> {
    let give_up = CancellationToken::new();
    let timer = give_up.clone();
    tokio::spawn(async move {
        tokio::time::sleep(patience).await;
        timer.cancel();
    });
    Ok(crate::nats::connect(&global.nats, &give_up, None).await?)
}

/// `weir kv load`: reads every file first, so that a malformed one loads
/// nothing, then fills the buckets.
fn kv_load(global: &config::Global, args: &KvLoadArgs) -> anyhow::Result<ExitCode> {
    if args.bucket.is_some() && args.files.len() > 1 {
        anyhow::bail!("--bucket names the bucket of a single file; give one file, or name the files after their buckets");
    }
    let loads = args
        .files
        .iter()
        .map(|file| Ok((file, read_kv_file(file, args.bucket.as_deref())?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let nats = connect_briefly(global, std::time::Duration::from_secs(10)).await?;
        for (file, (bucket, entries)) in &loads {
            let loaded = crate::nats::load_kv(&nats, bucket, entries).await?;
            println!(
                "{bucket}: {} key{} from {}{}",
                loaded.keys,
                if loaded.keys == 1 { "" } else { "s" },
                file.display(),
                if loaded.created { " (bucket created)" } else { "" }
            );
        }
        nats.flush().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a KV file: a JSON object of key to value, for the bucket named
/// `bucket` or after the file. Values become compact JSON bytes.
fn read_kv_file(file: &std::path::Path, bucket: Option<&str>) -> anyhow::Result<(String, exec::KvEntries)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).with_context(|| format!("{}: expected a JSON object of key to value", file.display()))?;
    let bucket = match bucket {
        Some(bucket) => bucket.to_owned(),
        None => file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned(),
    };
    if bucket.is_empty() || !bucket.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        anyhow::bail!("{}: \"{bucket}\" is not a valid bucket name: name the file after its bucket (letters, digits, - and _)", file.display());
    }
    let entries = object
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::to_vec(value).expect("JSON values serialise")))
        .collect();
    Ok((bucket, entries))
}

/// The first SIGINT or SIGTERM asks for a graceful shutdown; the second
/// exits at once.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::error!("cannot listen for signals; stop weir with SIGKILL");
        return;
    };
    for round in 0.. {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if round == 0 {
            tracing::info!("signal received: draining (send it again to exit at once)");
            shutdown.cancel();
        } else {
            eprintln!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}

fn validate(engine: &Engine, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (pipelines, errors) = config::load_pipelines(paths);
    let mut failures: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let total = pipelines.len() + errors.len();
    for pipeline in &pipelines {
        match build(engine, pipeline) {
            Ok((_, reports)) => println!("{}", summary_line(pipeline, &reports)),
            Err(e) => failures.push(format!("{}: {e}", pipeline.file.display())),
        }
    }
    if total == 0 {
        anyhow::bail!("no pipeline files found in {}; pipelines are *.toml files", join(paths));
    }
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    eprintln!("{} of {total} pipeline files are invalid", failures.len());
    Ok(ExitCode::FAILURE)
}

fn exec(engine: &Engine, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let pipeline = config::load_pipeline(&args.pipeline).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (blueprint, _) = build(engine, &pipeline)?;
    let input: Box<dyn BufRead + Send> = if args.input == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.input).with_context(|| format!("cannot read input {}", args.input))?;
        Box::new(BufReader::new(file))
    };
    let mut dead: Box<dyn Write> = match &args.dead_letter {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot write dead letters to {}", path.display()))?,
        )),
        None => Box::new(std::io::stderr()),
    };
    let options = ExecOptions { subject: args.subject, dead_letter_subject: pipeline.dead_letter.as_ref().map(|d| d.subject.as_str().to_owned()) };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let summary = exec::run(&blueprint, &options, input, &mut stdout, &mut *dead)?;
    stdout.flush()?;
    dead.flush()?;
    eprintln!("{}: {summary}", pipeline.name);
    Ok(ExitCode::SUCCESS)
}

/// Builds a pipeline, showing what is compiled and how long it takes (the
/// first compile of a large plugin can take seconds).
fn build(engine: &Engine, pipeline: &Pipeline) -> anyhow::Result<(Blueprint, Vec<StageReport>)> {
    let started = Instant::now();
    tracing::debug!(pipeline = %pipeline.name, stages = pipeline.stages.len(), "building");
    let built = Blueprint::build(engine, pipeline)?;
    for r in &built.1 {
        if r.origin == Origin::Compiled {
            tracing::info!(pipeline = %pipeline.name, stage = %r.stage, plugin = %r.plugin.display(), "compiled in {} ms", r.elapsed.as_millis());
        }
    }
    tracing::debug!(pipeline = %pipeline.name, "built in {} ms", started.elapsed().as_millis());
    Ok(built)
}

fn summary_line(pipeline: &Pipeline, reports: &[StageReport]) -> String {
    let stages: Vec<String> = reports
        .iter()
        .map(|r| {
            let how = match r.origin {
                Origin::Compiled => "compiled",
                Origin::Disk | Origin::Memory => "cached",
            };
            format!("{} ({how}, {} ms)", r.stage, r.elapsed.as_millis())
        })
        .collect();
    format!(
        "ok {} ({}): {} -> {}; {} stage{}{}{}",
        pipeline.name,
        pipeline.file.display(),
        pipeline.source.subject.as_str(),
        pipeline.sink.subject,
        pipeline.stages.len(),
        if pipeline.stages.len() == 1 { "" } else { "s" },
        if stages.is_empty() { "" } else { ": " },
        stages.join(", ")
    )
}

fn join(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
