//! The command-line face of `weir test` and `weir record`: their arguments
//! and the glue from them to [`super::run`] and [`crate::nats::record`].

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::Global;
use crate::nats::{RecordOptions, RecordStart};

/// `weir test`.
#[derive(Debug, Args)]
#[command(after_help = "\
A test file (*.test.toml) holds cases: events in, what must come out (outputs, dropped inputs,
dead letters, or a golden file) and per-stage budgets of time per event and memory. See
docs/testing.md.

Example:
  weir test pipelines/
  weir test pipelines/tests/orders.test.toml --filter routed --junit report.xml")]
pub struct TestArgs {
    /// Test files, or directories searched for *.test.toml at any depth.
    #[arg(value_name = "PATH", default_value = ".")]
    paths: Vec<PathBuf>,
    /// Write golden files from what the cases produce now (cases without a
    /// golden file run as usual).
    #[arg(long)]
    update: bool,
    /// Run only the cases whose name (or test file) contains TEXT.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

/// `weir record`.
#[derive(Debug, Args)]
#[command(after_help = "\
Events are written as envelopes, one per line, with their headers: the form `weir exec` and a
test case's input_file read. With --update, the cases whose input_file is OUT (found under
--tests) are run and their golden files rewritten from what the pipeline produces now.

Example:
  weir record --subject 'tracking.product.>' --count 1000 --out pipelines/tests/recorded/products.jsonl
  weir record --subject 'tracking.product.>' --stream TRACKING --start-time 2026-12-01T00:00:00Z \\
      --count 1000 --out pipelines/tests/recorded/products.jsonl --update")]
pub struct RecordArgs {
    /// The subject to record (wildcards allowed).
    #[arg(long, value_name = "SUBJECT")]
    subject: String,
    /// Stop after this many events.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// The file to write (JSON lines; replaced).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Read what this JetStream stream holds instead of what core NATS
    /// delivers from now on.
    #[arg(long, value_name = "STREAM")]
    stream: Option<String>,
    /// With --stream: start at this stream sequence.
    #[arg(long, value_name = "N", requires = "stream", conflicts_with = "start_time")]
    start_seq: Option<u64>,
    /// With --stream: start at this time (RFC 3339).
    #[arg(long, value_name = "TIME", requires = "stream")]
    start_time: Option<String>,
    /// Stop after this long even with fewer events.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Then rewrite the golden files of the cases that read OUT.
    #[arg(long)]
    update: bool,
    /// Where to look for those cases (with --update).
    #[arg(long, value_name = "PATH", default_value = ".")]
    tests: Vec<PathBuf>,
}

/// Runs `weir test`.
pub fn test(global: &Global, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let options = super::Options { update: args.update, filter: args.filter.clone(), input_file: None };
    run_tests(global, &args.paths, &options, args.junit.as_ref())
}

fn run_tests(global: &Global, paths: &[PathBuf], options: &super::Options, junit: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let files = super::discover(paths).map_err(|e| anyhow::anyhow!("{e}"))?;
    if files.is_empty() {
        anyhow::bail!(
            "no test files (*{}) found in {}; write one beside your pipelines (see docs/testing.md)",
            crate::config::TEST_FILE_SUFFIX,
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let (engine, kv) = super::engine(Some(global.cache_dir.clone())).context("cannot start the WebAssembly engine")?;
    let mut out = std::io::stdout().lock();
    let report = super::run(&engine, &kv, &files, options, &mut out)?;
    super::print_summary(&report, &mut out)?;
    out.flush()?;
    if let Some(path) = junit {
        super::write_junit(&report, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if report.cases.is_empty() && report.broken.is_empty() {
        anyhow::bail!("no case matched: check --filter, or (weir record --update) that a case reads the recorded file as its input_file");
    }
    Ok(if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Runs `weir record`.
pub fn record(global: &Global, args: &RecordArgs) -> anyhow::Result<ExitCode> {
    if args.count == 0 {
        anyhow::bail!("--count 0 records nothing: give the number of events to record");
    }
    let start = match (&args.start_seq, &args.start_time) {
        (Some(seq), _) => RecordStart::Sequence(*seq),
        (None, Some(time)) => RecordStart::Time(time.clone()),
        (None, None) => RecordStart::All,
    };
    let options = RecordOptions { subject: args.subject.clone(), count: args.count, stream: args.stream.clone(), start, wait: args.wait };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let events = runtime.block_on(async {
        let give_up = CancellationToken::new();
        let timer = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            timer.cancel();
        });
        let nats = crate::nats::connect(&global.nats, &give_up, None).await?;
        if args.stream.is_none() {
            eprintln!(
                "recording {} from {} (up to {} events or {})",
                args.subject,
                nats.url(),
                args.count,
                humantime::format_duration(args.wait)
            );
        }
        crate::nats::record(&nats, &options).await.map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    if events.is_empty() {
        anyhow::bail!(
            "no event on {} within {}; nothing written to {}",
            args.subject,
            humantime::format_duration(args.wait),
            args.out.display()
        );
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut text = String::new();
    for event in &events {
        text.push_str(&crate::exec::envelope(event));
        text.push('\n');
    }
    std::fs::write(&args.out, text).with_context(|| format!("cannot write {}", args.out.display()))?;
    let short = if events.len() < args.count {
        format!(" (fewer than {}: nothing more came within {})", args.count, humantime::format_duration(args.wait))
    } else {
        String::new()
    };
    eprintln!("recorded {} event{} to {}{short}", events.len(), if events.len() == 1 { "" } else { "s" }, args.out.display());
    if !args.update {
        return Ok(ExitCode::SUCCESS);
    }
    let options = super::Options { update: true, filter: None, input_file: Some(args.out.clone()) };
    run_tests(global, &args.tests, &options, None)
}
