//! `weir test`: runs the cases of test files (`*.test.toml`) without NATS,
//! checks what came out against what each case expects, measures each
//! stage's time per event and memory against its budget, and reports.
//!
//! A case runs the real plugins in the real pipeline: the pipeline file is
//! parsed and built as `weir run` builds it ([`Blueprint`]), and its
//! [`Chain`](crate::pipeline::Chain) processes the case's events in batches
//! of the pipeline's batch size. Each plugin is compiled once per run (the
//! engine's code cache; on disk, warm runs compile nothing). One case that
//! fails, even by a trap, never stops the others.
//!
//! Layout:
//! - `matcher`: expected against actual (JSON, subjects, headers, dead letters)
//! - `golden`: golden files and their diff
//! - `measure`: time per event and peak memory per stage
//! - `junit`: the JUnit XML report
//! - `command`: the `weir test` and `weir record` command lines

pub mod command;
mod golden;
mod junit;
pub mod matcher;
pub mod measure;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::{self, Case, Expect, SubjectTemplate, TestFile};
use crate::engine::{Engine, EngineOptions, KvSource};
use crate::event::{DeadLetter, ErrorKind, Event};
use crate::pipeline::{Blueprint, Outcome};
use matcher::Produced;
use measure::StageFigures;

pub use golden::diff;

/// How `weir test` runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Rewrite golden files from what the cases produce now.
    pub update: bool,
    /// Run only cases whose name or file contains this text.
    pub filter: Option<String>,
    /// Run only cases whose `input_file` is this file (`weir record --update`).
    pub input_file: Option<PathBuf>,
}

/// How one case ended.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The test file.
    pub file: PathBuf,
    /// The case's name.
    pub name: String,
    /// What is wrong; empty when the case passed.
    pub problems: Vec<String>,
    /// A golden file written (`--update`).
    pub updated: Option<PathBuf>,
    /// Wall time of the case, measuring included.
    pub elapsed: Duration,
    /// The pipeline, for the table.
    pub pipeline: String,
    /// What each stage cost.
    pub figures: Vec<StageFigures>,
}

impl CaseReport {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A whole run.
#[derive(Debug, Default)]
pub struct Report {
    /// Every case, in order.
    pub cases: Vec<CaseReport>,
    /// Test files that could not be read, with why.
    pub broken: Vec<(PathBuf, String)>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Report {
    /// Whether anything failed.
    pub fn failed(&self) -> bool {
        !self.broken.is_empty() || self.cases.iter().any(|c| !c.passed())
    }
}

/// KV buckets of the case being run, swapped before each case: the engine
/// (and its plugins) are built once, the buckets differ from case to case.
#[derive(Default)]
pub struct CaseKv {
    buckets: RwLock<HashMap<String, HashMap<String, Vec<u8>>>>,
}

impl CaseKv {
    fn set(&self, buckets: HashMap<String, HashMap<String, Vec<u8>>>) {
        *self.buckets.write().unwrap_or_else(std::sync::PoisonError::into_inner) = buckets;
    }
}

impl KvSource for CaseKv {
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        let buckets = self.buckets.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match buckets.get(bucket) {
            Some(keys) => Ok(keys.get(key).cloned()),
            None => Err(format!(
                "KV bucket \"{bucket}\" is not loaded: give the case kv_files = [\"{bucket}.json\"] or kv = {{ {bucket} = {{ ... }} }}"
            )),
        }
    }
}

/// The engine `weir test` runs cases with, and its switchable KV.
pub fn engine(cache_dir: Option<PathBuf>) -> anyhow::Result<(Engine, Arc<CaseKv>)> {
    let kv = Arc::new(CaseKv::default());
    let engine = Engine::new(&EngineOptions { cache_dir, cache_size: None, kv: Some(kv.clone() as Arc<dyn KvSource>) })?;
    Ok((engine, kv))
}

/// Test files under `paths`: a file is itself; a directory is every
/// `*.test.toml` below it, at any depth (hidden directories, `target` and
/// `node_modules` skipped), sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    walk(&path, out)?;
                }
            } else if name.ends_with(config::TEST_FILE_SUFFIX) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let mut found = Vec::new();
                walk(path, &mut found).map_err(|e| format!("{}: cannot read directory: {e}", path.display()))?;
                // `weir test` in a directory shows `tests/a.test.toml`, not `./tests/a.test.toml`.
                let found = found.into_iter().map(|f| f.strip_prefix("./").map(Path::to_path_buf).unwrap_or(f));
                let mut found: Vec<PathBuf> = found.collect();
                found.sort();
                files.extend(found);
            }
            Ok(_) => files.push(path.clone()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    files.dedup();
    Ok(files)
}

/// Runs every case of `files`, printing one line per case (and a failure's
/// problems) to `out` as it goes.
pub fn run(engine: &Engine, kv: &CaseKv, files: &[PathBuf], options: &Options, out: &mut dyn Write) -> std::io::Result<Report> {
    let started = Instant::now();
    let mut report = Report::default();
    let wanted_input = options.input_file.as_ref().map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()));
    for file in files {
        let test_file = match config::load_test_file(file) {
            Ok(t) => t,
            Err(e) => {
                writeln!(out, "{}\n  error: {}", file.display(), indent(&e.to_string(), "    ").trim_start())?;
                report.broken.push((file.clone(), e.to_string()));
                continue;
            }
        };
        let TestFile { cases, .. } = test_file;
        let selected: Vec<Case> = cases
            .into_iter()
            .filter(|c| match &options.filter {
                Some(text) => c.name.contains(text.as_str()) || file.to_string_lossy().contains(text.as_str()),
                None => true,
            })
            .filter(|c| match &wanted_input {
                Some(wanted) => c.input_file.as_ref().is_some_and(|f| std::fs::canonicalize(f).ok().as_ref() == Some(wanted)),
                None => true,
            })
            .collect();
        if selected.is_empty() {
            continue;
        }
        writeln!(out, "{}", file.display())?;
        for case in &selected {
            let result = run_case(engine, kv, file, case, options);
            let mark = if result.passed() { "ok  " } else { "FAIL" };
            let updated = result.updated.as_ref().map(|p| format!(" (wrote {})", p.display())).unwrap_or_default();
            writeln!(out, "  {mark}  {} ({}){updated}", case.name, millis(result.elapsed))?;
            for problem in &result.problems {
                writeln!(out, "{}", indent(problem, "        "))?;
            }
            out.flush()?;
            report.cases.push(result);
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn run_case(engine: &Engine, kv: &CaseKv, file: &Path, case: &Case, options: &Options) -> CaseReport {
    let started = Instant::now();
    let mut report = CaseReport {
        file: file.to_owned(),
        name: case.name.clone(),
        problems: Vec::new(),
        updated: None,
        elapsed: Duration::ZERO,
        pipeline: case.pipeline.name.as_str().to_owned(),
        figures: Vec::new(),
    };
    if let Err(problem) = check_case(engine, kv, case, options, &mut report) {
        report.problems.push(problem);
    }
    report.elapsed = started.elapsed();
    report
}

/// Runs one case and records its problems in `report`; `Err` for a case
/// that could not run at all.
fn check_case(engine: &Engine, kv: &CaseKv, case: &Case, options: &Options, report: &mut CaseReport) -> Result<(), String> {
    let entries = inputs(case)?;
    kv.set(buckets(case)?);
    let pipeline = pipeline_under_test(case)?;
    let (blueprint, _) = Blueprint::build(engine, &pipeline).map_err(|e| format!("the pipeline does not build: {e}"))?;
    let mut chain = blueprint.chain();
    let inputs: Vec<Event> = entries.iter().filter_map(|e| e.as_ref().ok().cloned()).collect();
    let mut processed = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(pipeline.batch_size.max(1)) {
        processed.extend(chain.process(chunk.to_vec()));
    }
    let mut processed = processed.into_iter();
    let mut outcomes: Vec<Outcome> = entries
        .into_iter()
        .map(|entry| match entry {
            Ok(_) => processed.next().expect("one outcome per input"),
            Err(letter) => Outcome::Dead(letter),
        })
        .collect();
    // A last tick at the end of time closes every window a stage keeps
    // open; what it emits follows the inputs' outcomes.
    outcomes.extend(chain.tick(crate::exec::END_OF_TIME_MS));
    let dead_subject = pipeline.dead_letter.as_ref().map(|d| d.subject.as_str().to_owned());
    let actual = golden::render(&outcomes, pipeline.name.as_str(), dead_subject.as_deref());

    match &case.expect {
        Expect::Golden(path) => {
            if options.update {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                std::fs::write(path, &actual).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                report.updated = Some(path.clone());
            } else {
                match std::fs::read_to_string(path) {
                    Ok(expected) => {
                        if let Some(d) = diff(&expected, &actual, 2) {
                            report.problems.push(format!("differs from {} (- expected, + actual):\n{d}", path.display()));
                        }
                    }
                    Err(e) => report.problems.push(format!(
                        "golden file {} cannot be read ({e}): run `weir test --update` to write it from what the case produces now",
                        path.display()
                    )),
                }
            }
        }
        Expect::Listed { outputs, ordered, dropped, dead_letters } => {
            let n = outcomes.len();
            let mut problems = Vec::new();
            for (what, number) in outputs
                .iter()
                .filter_map(|o| o.input.map(|i| ("an output", i)))
                .chain(dropped.iter().map(|&i| ("dropped", i)))
                .chain(dead_letters.iter().filter_map(|d| d.input.map(|i| ("a dead letter", i))))
            {
                if number > n {
                    problems.push(format!("{what} names input {number}, but the case has {n} input{}", plural(n)));
                }
            }
            let mut produced = Vec::new();
            let mut letters = Vec::new();
            let mut nothing = Vec::new();
            for (index, outcome) in outcomes.iter().enumerate() {
                match outcome {
                    Outcome::Done(events) if events.is_empty() => nothing.push(index + 1),
                    Outcome::Done(events) => produced.extend(events.iter().map(|e| Produced { input: index + 1, event: e.clone() })),
                    Outcome::Dead(letter) => letters.push((index + 1, letter.clone())),
                }
            }
            check_outputs(outputs, *ordered, &produced, &mut problems);
            for input in &nothing {
                if !dropped.contains(input) {
                    problems.push(format!("input {input} was dropped (no output, no dead letter); if that is right, add it to dropped = [...]"));
                }
            }
            for input in dropped {
                if *input <= n && !nothing.contains(input) {
                    let became = match &outcomes[input - 1] {
                        Outcome::Dead(l) => format!("was dead-lettered by stage \"{}\" ({}): {}", l.stage, l.kind, l.message),
                        Outcome::Done(events) => {
                            format!("produced {} output{}", events.len(), plural(events.len()))
                        }
                    };
                    problems.push(format!("input {input} should be dropped, but it {became}"));
                }
            }
            let got = matcher::assign(dead_letters.len(), letters.len(), |e, a| {
                matcher::dead_letter_problems(&dead_letters[e], letters[a].0, &letters[a].1).is_empty()
            });
            for (e, found) in got.iter().enumerate() {
                if found.is_none() {
                    let expect = &dead_letters[e];
                    let closest = letters
                        .iter()
                        .map(|(input, l)| matcher::dead_letter_problems(expect, *input, l))
                        .min_by_key(Vec::len)
                        .map(|p| format!("; the closest dead letter {}", p.join(", ")))
                        .unwrap_or_else(|| "; there was no dead letter".to_owned());
                    problems.push(format!("expected dead letter {} (line {}) did not happen{closest}", e + 1, expect.location.line));
                }
            }
            // An unexpected dead letter (a trap, a refusal) usually explains
            // the missing outputs: it comes first.
            let mut unexpected = Vec::new();
            for (a, (input, letter)) in letters.iter().enumerate() {
                if !got.contains(&Some(a)) {
                    unexpected.push(format!("input {input} was dead-lettered by stage \"{}\" ({}): {}", letter.stage, letter.kind, letter.message));
                }
            }
            problems.splice(0..0, unexpected);
            if !problems.is_empty() {
                problems.push(format!("what came out (outputs, then dead letters with weir-error-* headers):\n{}", indent(actual.trim_end(), "  ")));
            }
            report.problems.extend(problems);
        }
    }

    // Budgets, and the figures for the table.
    report.figures = measure::measure(engine, &pipeline, &inputs);
    for budget in &case.budgets {
        let Some(f) = report.figures.iter().find(|f| f.stage == budget.stage) else {
            continue;
        };
        let Some(per_event) = f.per_event() else {
            report.problems.push(format!(
                "budget of stage \"{}\" (line {}) cannot be measured: no event of this case reached the stage without failing; add inputs that pass the stages before it",
                budget.stage, budget.location.line
            ));
            continue;
        };
        if let Some(limit) = budget.per_event
            && per_event > limit
        {
            report.problems.push(format!(
                "stage \"{}\" took {} per event (median of {} batches of {}), over its budget of {} (line {})",
                budget.stage,
                format_time(per_event),
                f.samples.len(),
                f.batch_size,
                format_time(limit),
                budget.location.line
            ));
        }
        if let Some(limit) = budget.memory
            && f.memory > limit
        {
            report.problems.push(format!(
                "stage \"{}\" held {} of memory at its peak, over its budget of {} (line {})",
                budget.stage,
                format_bytes(f.memory),
                format_bytes(limit),
                budget.location.line
            ));
        }
    }
    Ok(())
}

/// Compares outputs in order, or as a best assignment when unordered.
fn check_outputs(expected: &[config::OutputExpect], ordered: bool, actual: &[Produced], problems: &mut Vec<String>) {
    if expected.len() != actual.len() {
        problems.push(format!("expected {} output{}, got {}", expected.len(), plural(expected.len()), actual.len()));
    }
    if ordered {
        for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
            for p in matcher::output_problems(e, a) {
                problems.push(format!("output {} (line {}): {p}", i + 1, e.location.line));
            }
        }
        for (i, e) in expected.iter().enumerate().skip(actual.len()) {
            problems.push(format!("output {} (line {}) is missing", i + 1, e.location.line));
        }
        for (i, a) in actual.iter().enumerate().skip(expected.len()) {
            problems.push(format!("output {} is not expected: {} (from input {})", i + 1, crate::exec::envelope(&a.event), a.input));
        }
        return;
    }
    let got = matcher::assign(expected.len(), actual.len(), |e, a| matcher::output_problems(&expected[e], &actual[a]).is_empty());
    for (i, found) in got.iter().enumerate() {
        if found.is_some() {
            continue;
        }
        let e = &expected[i];
        // The closest unclaimed output, to say what differs.
        let closest = actual
            .iter()
            .enumerate()
            .filter(|(a, _)| !got.contains(&Some(*a)))
            .map(|(a, produced)| (a, matcher::output_problems(e, produced)))
            .min_by_key(|(_, p)| p.len());
        match closest {
            Some((a, p)) => problems.push(format!(
                "expected output {} (line {}) matches no output; the closest, output {}: {}",
                i + 1,
                e.location.line,
                a + 1,
                p.join("; ")
            )),
            None => problems.push(format!("expected output {} (line {}) is missing", i + 1, e.location.line)),
        }
    }
    for (a, produced) in actual.iter().enumerate() {
        if !got.contains(&Some(a)) {
            problems.push(format!("output {} is not expected: {} (from input {})", a + 1, crate::exec::envelope(&produced.event), produced.input));
        }
    }
}

/// The case's events: `input_file`'s lines, then the inline ones. A line
/// that cannot be read is dead-lettered by stage `input` (kind `malformed`),
/// as `weir exec` does, so that recorded traffic with a bad message in it
/// still makes a case.
fn inputs(case: &Case) -> Result<Vec<Result<Event, DeadLetter>>, String> {
    let mut events = Vec::new();
    if let Some(file) = &case.input_file {
        let text = std::fs::read(file).map_err(|e| format!("cannot read input file {}: {e}", file.display()))?;
        for (number, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            events.push(crate::exec::parse_line(line, case.subject.as_deref()).map_err(|message| {
                let mut raw = line.to_vec();
                while raw.last().is_some_and(|b| *b == b'\r') {
                    raw.pop();
                }
                DeadLetter {
                    event: Event::new(case.subject.clone().unwrap_or_default(), raw),
                    stage: "input".into(),
                    kind: ErrorKind::Malformed,
                    // The line number alone, as `weir exec` says it: a golden
                    // file must not depend on where `weir test` runs from.
                    message: format!("line {}: {message}", number + 1),
                }
            }));
        }
    }
    events.extend(case.inputs.iter().cloned().map(Ok));
    if events.is_empty() {
        return Err("the case has no inputs: its input_file is empty".to_owned());
    }
    Ok(events)
}

/// The case's KV buckets: `kv_files`, then `kv`'s keys on top.
fn buckets(case: &Case) -> Result<HashMap<String, HashMap<String, Vec<u8>>>, String> {
    let mut buckets: HashMap<String, HashMap<String, Vec<u8>>> = HashMap::new();
    for file in &case.kv_files {
        let (bucket, entries) = read_kv_file(file)?;
        buckets.entry(bucket).or_default().extend(entries);
    }
    for (bucket, entries) in &case.kv {
        buckets.entry(bucket.clone()).or_default().extend(entries.iter().cloned());
    }
    Ok(buckets)
}

/// A KV file as `weir exec --kv` reads it: an object of key to value, for
/// the bucket named after the file.
pub fn read_kv_file(file: &Path) -> Result<(String, crate::exec::KvEntries), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read KV file {}: {e}", file.display()))?;
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| format!("{}: expected a JSON object of key to value: {e}", file.display()))?;
    let bucket = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
    let entries = object
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_vec(v).expect("JSON values serialise")))
        .collect();
    Ok((bucket, entries))
}

/// The pipeline as the case runs it: one stage alone (its outputs keep the
/// subjects the stage gave them), directories replaced by the case's.
fn pipeline_under_test(case: &Case) -> Result<config::Pipeline, String> {
    let mut pipeline = case.pipeline.clone();
    if let Some(stage) = &case.stage {
        pipeline.stages.retain(|s| s.name.as_str() == stage);
        pipeline.sink.subject = SubjectTemplate::new("{subject}").map_err(|e| e.to_string())?;
    }
    for stage in &mut pipeline.stages {
        for dir in &mut stage.grants.dirs {
            let guest = config::Grants::guest_path(dir);
            if let Some((_, replacement)) = case.dirs.iter().find(|(g, _)| *g == guest) {
                // The stage must still see it under the same name.
                if config::Grants::guest_path(replacement) != guest {
                    return Err(format!(
                        "dirs: {} would be seen as {}, not {guest}: name the directory {}",
                        replacement.display(),
                        config::Grants::guest_path(replacement),
                        guest.trim_start_matches('/')
                    ));
                }
                *dir = replacement.clone();
            }
        }
    }
    Ok(pipeline)
}

/// One row of the table: a stage of a pipeline over every case that ran it.
#[derive(Debug, Clone)]
pub struct StageRow {
    /// The pipeline.
    pub pipeline: String,
    /// The stage.
    pub stage: String,
    /// Median time per event over every timed batch of every case.
    pub per_event: Option<Duration>,
    /// Timed batches.
    pub batches: usize,
    /// Events per batch.
    pub batch_size: usize,
    /// The highest peak memory of any case.
    pub memory: u64,
    /// Cases that ran the stage.
    pub cases: usize,
}

/// The table of time and memory per stage, in the order stages first ran.
pub fn stage_rows(report: &Report) -> Vec<StageRow> {
    let mut rows: Vec<(StageRow, Vec<f64>)> = Vec::new();
    for case in &report.cases {
        for f in &case.figures {
            let at = rows.iter().position(|(r, _)| r.pipeline == case.pipeline && r.stage == f.stage);
            let (row, samples) = match at {
                Some(i) => &mut rows[i],
                None => {
                    rows.push((
                        StageRow {
                            pipeline: case.pipeline.clone(),
                            stage: f.stage.clone(),
                            per_event: None,
                            batches: 0,
                            batch_size: f.batch_size,
                            memory: 0,
                            cases: 0,
                        },
                        Vec::new(),
                    ));
                    rows.last_mut().expect("just pushed")
                }
            };
            samples.extend(&f.samples);
            row.batches += f.samples.len();
            row.memory = row.memory.max(f.memory);
            row.cases += 1;
        }
    }
    rows.into_iter()
        .map(|(mut row, samples)| {
            row.per_event = measure::median(&samples).map(|ns| Duration::from_nanos(ns.round() as u64));
            row
        })
        .collect()
}

/// Prints the table and the summary line.
pub fn print_summary(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let rows = stage_rows(report);
    if !rows.is_empty() {
        let mut table =
            vec![["pipeline".to_owned(), "stage".to_owned(), "per event".to_owned(), "batches".to_owned(), "memory".to_owned(), "cases".to_owned()]];
        for r in &rows {
            table.push([
                r.pipeline.clone(),
                r.stage.clone(),
                r.per_event.map_or_else(|| "-".to_owned(), format_time),
                format!("{}×{}", r.batches, r.batch_size),
                if r.memory == 0 { "-".to_owned() } else { format_bytes(r.memory) },
                r.cases.to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..6).map(|c| table.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
        writeln!(out, "\ntime per event (median over batches of the pipeline's batch size) and peak memory, per stage:")?;
        for row in &table {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c >= 2 {
                    let _ = write!(line, "  {}{cell}", " ".repeat(pad));
                } else {
                    let _ = write!(line, "{}{cell}{}", if c == 0 { "" } else { "  " }, " ".repeat(pad));
                }
            }
            writeln!(out, "  {}", line.trim_end())?;
        }
    }
    let passed = report.cases.iter().filter(|c| c.passed()).count();
    let failed = report.cases.len() - passed;
    write!(out, "\n{} case{}: {passed} passed, {failed} failed", report.cases.len(), plural(report.cases.len()))?;
    if !report.broken.is_empty() {
        write!(out, ", {} test file{} unreadable", report.broken.len(), plural(report.broken.len()))?;
    }
    writeln!(out, " ({:.2} s)", report.elapsed.as_secs_f64())?;
    Ok(())
}

/// Writes the JUnit XML report.
pub fn write_junit(report: &Report, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, junit::render(report))
}

/// A duration per event, in the unit that reads best.
pub fn format_time(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Bytes in MiB or KiB.
pub fn format_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 { format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64) } else { format!("{:.0} KiB", bytes as f64 / 1024.0) }
}

fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_well() {
        assert_eq!(format_time(Duration::from_nanos(850)), "850 ns");
        assert_eq!(format_time(Duration::from_nanos(12_340)), "12.3 µs");
        assert_eq!(format_time(Duration::from_micros(2_500)), "2.50 ms");
        assert_eq!(format_bytes(1_572_864), "1.5 MiB");
        assert_eq!(format_bytes(65_536), "64 KiB");
    }
}
