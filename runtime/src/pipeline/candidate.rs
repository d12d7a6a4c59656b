//! A candidate version of a stage (`[stages.candidate]`), run beside the
//! live one, compared with it and judged by the rules.
//!
//! Each worker's chain has its own instances of the candidate (a
//! [`CandidateSlot`]), and every worker counts into the one
//! [`CandidateState`] of the blueprint, where the rules read the figures and
//! the first decision wins. A decision stops the candidate in every worker
//! at its next batch; `reload/` then replaces the blueprint: the candidate's
//! plugin becomes the live one (promoted) or is left out (rolled back).
//!
//! - **shadow**: the live version processes the batch, then the candidate a
//!   copy of its share of it; its results are compared with the live ones
//!   and dropped. Whatever the candidate does (fails, traps, times out,
//!   blows its memory), the live results go on unchanged.
//! - **canary**: the events whose key hashes below the share go to the
//!   candidate, the rest to the live version; an event the candidate fails
//!   is processed by the live version instead, so a candidate never
//!   dead-letters an event: its failures count against it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::config::{CanaryKey, Decide, Mode, Rules};
use crate::control::{CandidateReport, Decision, Figures};
use crate::event::{ErrorKind, Event};
use crate::metrics::{CandidateMetrics, Metrics};

/// One version of a stage in a worker's chain, as the candidate code needs
/// it: `chain.rs`'s slot (live or candidate instances), kept behind this
/// trait so that the chain uses this module and not the reverse.
pub(super) trait Version {
    /// Why one event failed.
    type Failure: Failed;
    /// Runs `events` in calls of at most `batch`; the events lent back and
    /// one result per event.
    fn run(&mut self, events: Vec<Event>, batch: usize) -> Ran<Self::Failure>;
    /// Whether an instance is ready, so that a call times the stage and not
    /// its start.
    fn has_instance(&self) -> bool;
}

/// A failure of one event in one version.
pub(super) trait Failed {
    /// Its kind.
    fn kind(&self) -> ErrorKind;
    /// Its message.
    fn message(&self) -> &str;
}

/// What one version made of one event.
type Result1<F> = Result<Vec<Event>, F>;
/// The events of a run, lent back, and one result per event.
pub(super) type Ran<F> = (Vec<Event>, Vec<Result1<F>>);

/// How two results of one event differ, as counted and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// One version dropped the event, the other made outputs.
    Drop,
    /// One version failed the event, or both failed it with different kinds.
    Error,
    /// Both made outputs, not as many.
    Count,
    /// An output's subject.
    Subject,
    /// An output's headers.
    Headers,
    /// An output's payload (JSON compared as JSON where both are).
    Payload,
}

impl Difference {
    /// Every kind, in the order they are checked.
    pub const ALL: [Difference; 6] = [Difference::Drop, Difference::Error, Difference::Count, Difference::Subject, Difference::Headers, Difference::Payload];

    /// The kind's name, in metrics, status and samples.
    pub fn as_str(self) -> &'static str {
        match self {
            Difference::Drop => "drop",
            Difference::Error => "error",
            Difference::Count => "count",
            Difference::Subject => "subject",
            Difference::Headers => "headers",
            Difference::Payload => "payload",
        }
    }
}

/// How the live and the candidate results of one event compare: `None` when
/// they agree.
pub(super) fn compare<F: Failed>(live: &Result1<F>, candidate: &Result1<F>) -> Option<Difference> {
    match (live, candidate) {
        (Err(a), Err(b)) => (a.kind() != b.kind()).then_some(Difference::Error),
        (Err(_), Ok(_)) | (Ok(_), Err(_)) => Some(Difference::Error),
        (Ok(a), Ok(b)) if a.is_empty() != b.is_empty() => Some(Difference::Drop),
        (Ok(a), Ok(b)) if a.len() != b.len() => Some(Difference::Count),
        (Ok(a), Ok(b)) => {
            let mut found: Option<Difference> = None;
            for (x, y) in a.iter().zip(b) {
                let kind = if x.subject != y.subject {
                    Difference::Subject
                } else if x.headers != y.headers {
                    Difference::Headers
                } else if !same_payload(&x.payload, &y.payload) {
                    Difference::Payload
                } else {
                    continue;
                };
                // The first kind in `ALL` order names the event's difference.
                let rank = |d: Difference| Difference::ALL.iter().position(|&k| k == d);
                if found.is_none_or(|f| rank(kind) < rank(f)) {
                    found = Some(kind);
                }
            }
            found
        }
    }
}

/// Equal bytes, or both JSON and equal as JSON (key order and spacing do
/// not count; numbers compare by value).
fn same_payload(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match (serde_json::from_slice::<Value>(a), serde_json::from_slice::<Value>(b)) {
        (Ok(x), Ok(y)) => json_equal(&x, &y),
        _ => false,
    }
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().is_some_and(|x| y.as_f64() == Some(x)),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w))),
        _ => a == b,
    }
}

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Verdict {
    /// Running beside the live version.
    Running = 0,
    /// Promoted: its plugin becomes the live one.
    Promoted = 1,
    /// Rolled back: the live version goes on alone.
    RolledBack = 2,
}

impl Verdict {
    /// `running`, `promoted` or `rolled_back`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Running => "running",
            Verdict::Promoted => "promoted",
            Verdict::RolledBack => "rolled_back",
        }
    }

    fn from_u8(v: u8) -> Verdict {
        match v {
            1 => Verdict::Promoted,
            2 => Verdict::RolledBack,
            _ => Verdict::Running,
        }
    }
}

/// Samples of differing events published per second, at most: enough to
/// read, too few to load NATS when a candidate differs on every event.
const SAMPLES_PER_SECOND: u32 = 10;
/// Samples kept for `weir status --diff`.
const RECENT_SAMPLES: usize = 10;
/// Samples waiting to be published, at most (the rest are dropped).
const UNPUBLISHED_SAMPLES: usize = 100;

/// One candidate's figures and decision, shared by every worker's chain.
pub struct CandidateState {
    pipeline: String,
    stage: String,
    id: String,
    plugin: String,
    mode: Mode,
    share: f64,
    key: CanaryKey,
    decide: Decide,
    rules: Rules,
    diff_subject: Option<String>,
    started: Instant,
    counts: Counts,
    verdict: AtomicU8,
    deciding: Mutex<()>,
    decision: OnceLock<Decision>,
    samples: Mutex<Samples>,
    metrics: OnceLock<CandidateMetrics>,
    /// The weir process that runs it, recorded with its decisions.
    instance: OnceLock<String>,
}

#[derive(Default)]
struct Counts {
    /// Events the candidate processed.
    candidate: AtomicU64,
    /// Events the live version processed while the candidate ran.
    live: AtomicU64,
    agreed: AtomicU64,
    differences: [AtomicU64; 6],
    candidate_errors: AtomicU64,
    live_errors: AtomicU64,
    /// Time and events of the calls that did not start an instance.
    candidate_ns: AtomicU64,
    candidate_timed: AtomicU64,
    live_ns: AtomicU64,
    live_timed: AtomicU64,
}

#[derive(Default)]
struct Samples {
    recent: VecDeque<Value>,
    unpublished: Vec<Value>,
    second: u64,
    in_second: u32,
}

/// What makes a candidate, for [`CandidateState::new`].
pub struct CandidateSettings<'a> {
    /// The pipeline.
    pub pipeline: &'a str,
    /// The stage.
    pub stage: &'a str,
    /// The candidate's id (see `candidate_id`).
    pub id: String,
    /// Its plugin file, for status.
    pub plugin: String,
    /// The candidate table.
    pub candidate: &'a crate::config::Candidate,
}

impl CandidateState {
    /// A candidate not yet judged.
    pub fn new(s: CandidateSettings<'_>) -> CandidateState {
        let c = s.candidate;
        CandidateState {
            pipeline: s.pipeline.to_owned(),
            stage: s.stage.to_owned(),
            id: s.id,
            plugin: s.plugin,
            mode: c.mode,
            share: c.share,
            key: c.key.clone(),
            decide: c.decide,
            rules: c.rules,
            diff_subject: c.diff_subject.as_ref().map(|s| s.as_str().to_owned()),
            started: Instant::now(),
            counts: Counts::default(),
            verdict: AtomicU8::new(Verdict::Running as u8),
            deciding: Mutex::new(()),
            decision: OnceLock::new(),
            samples: Mutex::default(),
            metrics: OnceLock::new(),
            instance: OnceLock::new(),
        }
    }

    /// Names the weir process that runs it, for its decisions.
    pub fn set_instance(&self, instance: &str) {
        let _ = self.instance.set(instance.to_owned());
    }

    /// Counts into `metrics` from now on.
    pub fn instrument(&self, metrics: &Metrics) {
        let _ = self.metrics.set(metrics.candidate(&self.pipeline, &self.stage));
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The stage.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// What the candidate is: 12 hex digits over its plugin and settings.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where samples of differing events go.
    pub fn diff_subject(&self) -> Option<&str> {
        self.diff_subject.as_deref()
    }

    /// Where it stands.
    pub fn verdict(&self) -> Verdict {
        Verdict::from_u8(self.verdict.load(Ordering::Acquire))
    }

    /// The decision, once made.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.get()
    }

    /// The figures so far.
    pub fn figures(&self) -> Figures {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Workers count while this reads: read each count after the ones it
        // bounds (errors before events, which are counted first), and derive
        // `compared` from its parts, so that no rate ever exceeds 1.
        let (candidate_errors, live_errors) = (get(&c.candidate_errors), get(&c.live_errors));
        let (candidate, live) = (get(&c.candidate), get(&c.live));
        let agreed = get(&c.agreed);
        let rate = |n: u64, of: u64| if of == 0 { 0.0 } else { n.min(of) as f64 / of as f64 };
        let per_event_us = |ns: u64, n: u64| if n == 0 { 0.0 } else { ns as f64 / n as f64 / 1000.0 };
        let differences: BTreeMap<String, u64> = Difference::ALL
            .iter()
            .zip(&c.differences)
            .map(|(kind, n)| (kind.as_str().to_owned(), get(n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let differed: u64 = differences.values().sum();
        let compared = agreed + differed;
        let candidate_us = per_event_us(get(&c.candidate_ns), get(&c.candidate_timed));
        let live_us = per_event_us(get(&c.live_ns), get(&c.live_timed));
        Figures {
            candidate_events: candidate,
            live_events: live,
            compared,
            agreed,
            differences,
            diff_rate: rate(differed, compared),
            candidate_errors,
            live_errors,
            candidate_error_rate: rate(candidate_errors, candidate),
            live_error_rate: rate(live_errors, live),
            candidate_us_per_event: candidate_us,
            live_us_per_event: live_us,
            slowdown: if live_us > 0.0 && candidate_us > 0.0 { candidate_us / live_us } else { 0.0 },
        }
    }

    /// The first limit the figures break, in words.
    fn broken(&self, f: &Figures) -> Option<String> {
        let r = &self.rules;
        if self.mode == Mode::Shadow && f.diff_rate > r.max_diff_rate {
            return Some(format!("difference rate {:.4} > max_diff_rate {}", f.diff_rate, r.max_diff_rate));
        }
        if f.candidate_error_rate > f.live_error_rate + r.max_error_rate {
            return Some(format!(
                "error rate {:.4} > the live version's {:.4} + max_error_rate {}",
                f.candidate_error_rate, f.live_error_rate, r.max_error_rate
            ));
        }
        if f.slowdown > r.max_slowdown {
            return Some(format!(
                "{:.2} µs per event, {:.2}× the live version's {:.2} µs > max_slowdown {}",
                f.candidate_us_per_event, f.slowdown, f.live_us_per_event, r.max_slowdown
            ));
        }
        None
    }

    /// What the rules say now, in words, whoever decides.
    fn judgement(&self, f: &Figures) -> String {
        let judged = f.candidate_events.max(f.compared);
        match self.broken(f) {
            _ if judged < self.rules.judge_after() => format!("collecting: {judged} of {} events", self.rules.min_events),
            Some(limit) => format!("limit broken: {limit}"),
            None if judged < self.rules.min_events => format!("within limits so far: {judged} of {} events", self.rules.min_events),
            None => "within limits".to_owned(),
        }
    }

    /// Applies the rules after a batch, when they decide.
    fn judge(&self) {
        if self.decide == Decide::Manual || self.verdict() != Verdict::Running {
            return;
        }
        let f = self.figures();
        let judged = f.candidate_events.max(f.compared);
        if judged < self.rules.judge_after() {
            return;
        }
        match self.broken(&f) {
            Some(limit) => {
                self.decide(Verdict::RolledBack, "rules", &limit, None);
            }
            None if judged >= self.rules.min_events => {
                let reason = format!("{judged} events within every limit");
                self.decide(Verdict::Promoted, "rules", &reason, None);
            }
            None => {}
        }
    }

    /// Promotes or rolls back, once: the first decision wins, later ones
    /// return false. `instance` is the weir process that decided, when it
    /// is known. Logs the decision with its figures and counts it.
    pub fn decide(&self, verdict: Verdict, by: &str, reason: &str, instance: Option<&str>) -> bool {
        // One decider at a time; the decision is set before the verdict, so
        // whoever sees a verdict finds its decision.
        let _deciding = self.deciding.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if verdict == Verdict::Running || self.verdict() != Verdict::Running {
            return false;
        }
        let figures = self.figures();
        let decision = Decision {
            decision: verdict.as_str().to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
            instance: instance.or(self.instance.get().map(String::as_str)).map(str::to_owned),
            at_unix: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs(),
            figures,
        };
        let f = &decision.figures;
        let message = format!(
            "candidate {} of stage \"{}\" {} by {}: {}; {} candidate events, {} compared, difference rate {:.4}, error rate {:.4} (live {:.4}), {:.2} µs per event (live {:.2})",
            self.id,
            self.stage,
            if verdict == Verdict::Promoted { "promoted" } else { "rolled back" },
            by,
            reason,
            f.candidate_events,
            f.compared,
            f.diff_rate,
            f.candidate_error_rate,
            f.live_error_rate,
            f.candidate_us_per_event,
            f.live_us_per_event,
        );
        if verdict == Verdict::Promoted {
            tracing::info!(pipeline = %self.pipeline, stage = %self.stage, candidate = %self.id, "{message}");
        } else {
            tracing::warn!(pipeline = %self.pipeline, stage = %self.stage, candidate = %self.id, "{message}");
        }
        if let Some(m) = self.metrics.get() {
            m.decision(verdict.as_str(), by);
        }
        let _ = self.decision.set(decision);
        self.verdict.store(verdict as u8, Ordering::Release);
        true
    }

    /// What `weir status` shows; with `diff`, the recent samples too.
    pub fn report(&self, diff: bool) -> CandidateReport {
        let figures = self.figures();
        CandidateReport {
            stage: self.stage.clone(),
            candidate: self.id.clone(),
            plugin: self.plugin.clone(),
            mode: self.mode.as_str().to_owned(),
            share: self.share,
            decide: match self.decide {
                Decide::Auto => "auto",
                Decide::Manual => "manual",
            }
            .to_owned(),
            state: self.verdict().as_str().to_owned(),
            judgement: self.judgement(&figures),
            running_seconds: self.started.elapsed().as_secs(),
            figures,
            decision: self.decision().cloned(),
            samples: if diff { self.lock_samples().recent.iter().cloned().collect() } else { Vec::new() },
        }
    }

    /// Takes the samples not yet published.
    pub fn take_samples(&self) -> Vec<Value> {
        std::mem::take(&mut self.lock_samples().unpublished)
    }

    fn lock_samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sample<F: Failed>(&self, kind: Difference, input: &Event, live: &Result1<F>, candidate: &Result1<F>) {
        let second = self.started.elapsed().as_secs();
        let mut samples = self.lock_samples();
        if samples.second != second {
            samples.second = second;
            samples.in_second = 0;
        }
        if samples.in_second >= SAMPLES_PER_SECOND {
            return;
        }
        samples.in_second += 1;
        let sample = json!({
            "pipeline": self.pipeline,
            "stage": self.stage,
            "candidate": self.id,
            "difference": kind.as_str(),
            "input": envelope(input),
            "live": result_json(live),
            "candidate_result": result_json(candidate),
        });
        if samples.recent.len() == RECENT_SAMPLES {
            samples.recent.pop_front();
        }
        samples.recent.push_back(sample.clone());
        if self.diff_subject.is_some() && samples.unpublished.len() < UNPUBLISHED_SAMPLES {
            samples.unpublished.push(sample);
        }
    }

    fn count_live<F>(&self, results: &[Result1<F>], elapsed: Option<Duration>) {
        let c = &self.counts;
        let n = results.len() as u64;
        let errors = results.iter().filter(|r| r.is_err()).count() as u64;
        c.live.fetch_add(n, Ordering::Relaxed);
        c.live_errors.fetch_add(errors, Ordering::Relaxed);
        if let Some(elapsed) = elapsed {
            c.live_ns.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
            c.live_timed.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(m) = self.metrics.get() {
            m.live_events.inc_by(n);
            m.live_errors.inc_by(errors);
        }
    }

    fn count_candidate(&self, events: u64, errors: u64, elapsed: Option<Duration>) {
        let c = &self.counts;
        c.candidate.fetch_add(events, Ordering::Relaxed);
        c.candidate_errors.fetch_add(errors, Ordering::Relaxed);
        if let Some(elapsed) = elapsed {
            c.candidate_ns.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
            c.candidate_timed.fetch_add(events, Ordering::Relaxed);
        }
        if let Some(m) = self.metrics.get() {
            m.candidate_events.inc_by(events);
            m.candidate_errors.inc_by(errors);
        }
    }

    fn count_comparison(&self, difference: Option<Difference>) {
        let c = &self.counts;
        match difference {
            None => {
                c.agreed.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = self.metrics.get() {
                    m.agreed.inc();
                }
            }
            Some(kind) => {
                let index = Difference::ALL.iter().position(|&k| k == kind).expect("every kind is in ALL");
                c.differences[index].fetch_add(1, Ordering::Relaxed);
                if let Some(m) = self.metrics.get() {
                    m.differed(kind.as_str());
                }
            }
        }
    }

    /// Whether the event goes to the candidate (canary): a stable hash of
    /// its key, so that one key always gets one version.
    fn canary_picks(&self, event: &Event) -> bool {
        let hash = match &self.key {
            CanaryKey::Subject => fnv1a(event.subject.as_bytes()),
            CanaryKey::Field(path) => match serde_json::from_slice::<Value>(&event.payload).ok().as_ref().and_then(|v| field(v, path)) {
                Some(Value::String(s)) => fnv1a(s.as_bytes()),
                Some(value) => fnv1a(value.to_string().as_bytes()),
                None => return false,
            },
        };
        ((hash % 1_000_000) as f64) < self.share * 1_000_000.0
    }
}

/// FNV-1a, 64 bits: the same on every machine and every weir version, which
/// `std`'s hasher does not promise.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A dotted path into a JSON value (`user.id`, `items.0.sku`).
fn field<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// An event as JSON, in `weir exec`'s envelope form.
fn envelope(event: &Event) -> Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &event.headers {
        headers.entry(name.clone()).or_insert_with(|| Value::String(value.clone()));
    }
    let mut out = json!({ "subject": event.subject, "headers": headers });
    match (serde_json::from_slice::<Value>(&event.payload), std::str::from_utf8(&event.payload)) {
        (Ok(payload), _) => out["payload"] = payload,
        (_, Ok(text)) => out["payload_text"] = json!(text),
        _ => out["payload_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&event.payload)),
    }
    out
}

fn result_json<F: Failed>(result: &Result1<F>) -> Value {
    match result {
        Ok(events) => json!({ "outputs": events.iter().map(envelope).collect::<Vec<_>>() }),
        Err(failure) => json!({ "error": { "kind": failure.kind().as_str(), "message": failure.message() } }),
    }
}

/// A candidate's instances in one worker's chain, beside its stage's.
pub(super) struct CandidateSlot<S> {
    slot: S,
    state: Arc<CandidateState>,
    /// Shadow: the share accumulated since the last event picked, so that
    /// exactly `share` of the events are copied.
    owed: f64,
}

impl<S: Version> CandidateSlot<S> {
    pub(super) fn new(slot: S, state: Arc<CandidateState>) -> CandidateSlot<S> {
        CandidateSlot { slot, state, owed: 0.0 }
    }

    /// Runs `events` through the live stage `live` and, while it is
    /// undecided, the candidate, as its mode says. Returns what the live
    /// version would: the events (lent back) and one result per event.
    pub(super) fn run(&mut self, live: &mut S, events: Vec<Event>, batch: usize) -> Ran<S::Failure> {
        if self.state.verdict() != Verdict::Running || events.is_empty() {
            return live.run(events, batch);
        }
        let out = match self.state.mode {
            Mode::Shadow => self.shadow(live, events, batch),
            Mode::Canary => self.canary(live, events, batch),
        };
        self.state.judge();
        out
    }

    fn shadow(&mut self, live: &mut S, events: Vec<Event>, batch: usize) -> Ran<S::Failure> {
        let (timed, started) = (live.has_instance(), Instant::now());
        let (lent, results) = live.run(events, batch);
        self.state.count_live(&results, timed.then(|| started.elapsed()));

        let mut picked = Vec::with_capacity(lent.len());
        for index in 0..lent.len() {
            self.owed += self.state.share;
            if self.owed >= 1.0 - 1e-9 {
                self.owed -= 1.0;
                picked.push(index);
            }
        }
        if picked.is_empty() {
            return (lent, results);
        }
        let copies: Vec<Event> = picked.iter().map(|&i| lent[i].clone()).collect();
        let (timed, started) = (self.slot.has_instance(), Instant::now());
        let (_, candidate) = self.slot.run(copies, batch);
        let elapsed = timed.then(|| started.elapsed());
        let errors = candidate.iter().filter(|r| r.is_err()).count() as u64;
        self.state.count_candidate(candidate.len() as u64, errors, elapsed);
        for (&index, theirs) in picked.iter().zip(&candidate) {
            let difference = compare(&results[index], theirs);
            self.state.count_comparison(difference);
            if let Some(kind) = difference {
                self.state.sample(kind, &lent[index], &results[index], theirs);
            }
        }
        (lent, results)
    }

    fn canary(&mut self, live: &mut S, events: Vec<Event>, batch: usize) -> Ran<S::Failure> {
        let n = events.len();
        let mut to_candidate = (Vec::new(), Vec::new());
        let mut to_live = (Vec::new(), Vec::new());
        for (index, event) in events.into_iter().enumerate() {
            let part = if self.state.canary_picks(&event) { &mut to_candidate } else { &mut to_live };
            part.0.push(index);
            part.1.push(event);
        }
        let mut lent: Vec<Option<Event>> = (0..n).map(|_| None).collect();
        let mut results: Vec<Option<Result1<S::Failure>>> = (0..n).map(|_| None).collect();

        let mut fallback = (Vec::new(), Vec::new());
        if !to_candidate.1.is_empty() {
            let (timed, started) = (self.slot.has_instance(), Instant::now());
            let (back, theirs) = self.slot.run(to_candidate.1, batch);
            let elapsed = timed.then(|| started.elapsed());
            let errors = theirs.iter().filter(|r| r.is_err()).count() as u64;
            self.state.count_candidate(theirs.len() as u64, errors, elapsed);
            for ((index, event), result) in to_candidate.0.into_iter().zip(back).zip(theirs) {
                if let Err(failure) = &result {
                    // The live version takes over the event: a candidate
                    // never dead-letters one.
                    tracing::debug!(pipeline = %self.state.pipeline, stage = %self.state.stage, kind = %failure.kind(), "canary candidate failed an event; the live version processes it: {}", failure.message());
                    fallback.0.push(index);
                    fallback.1.push(event);
                    continue;
                }
                lent[index] = Some(event);
                results[index] = Some(result);
            }
        }
        to_live.0.extend(fallback.0);
        to_live.1.extend(fallback.1);
        if !to_live.1.is_empty() {
            let (timed, started) = (live.has_instance(), Instant::now());
            let (back, ours) = live.run(to_live.1, batch);
            self.state.count_live(&ours, timed.then(|| started.elapsed()));
            for ((index, event), result) in to_live.0.into_iter().zip(back).zip(ours) {
                lent[index] = Some(event);
                results[index] = Some(result);
            }
        }
        (
            lent.into_iter().map(|e| e.expect("every event went through one version")).collect(),
            results.into_iter().map(|r| r.expect("every event has a result")).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Failure(ErrorKind);

    impl Failed for Failure {
        fn kind(&self) -> ErrorKind {
            self.0
        }
        fn message(&self) -> &str {
            "no"
        }
    }

    fn ok(payloads: &[&str]) -> Result1<Failure> {
        Ok(payloads.iter().map(|p| Event::new("out", p.as_bytes().to_vec())).collect())
    }

    #[test]
    fn json_payloads_compare_as_json() {
        assert_eq!(compare(&ok(&[r#"{"a":1,"b":[1,2]}"#]), &ok(&[r#"{ "b": [1, 2], "a": 1.0 }"#])), None);
        assert_eq!(compare(&ok(&[r#"{"a":1}"#]), &ok(&[r#"{"a":2}"#])), Some(Difference::Payload));
        assert_eq!(compare(&ok(&["text"]), &ok(&["text "])), Some(Difference::Payload));
    }

    #[test]
    fn each_kind_of_difference() {
        let fail = |kind| Err(Failure(kind));
        assert_eq!(compare(&ok(&["1"]), &ok(&[])), Some(Difference::Drop));
        assert_eq!(compare(&ok(&["1"]), &ok(&["1", "1"])), Some(Difference::Count));
        assert_eq!(compare(&ok(&["1"]), &fail(ErrorKind::Trap)), Some(Difference::Error));
        assert_eq!(compare(&fail(ErrorKind::Invalid), &fail(ErrorKind::Trap)), Some(Difference::Error));
        assert_eq!(compare(&fail(ErrorKind::Invalid), &fail(ErrorKind::Invalid)), None);
        let mut routed = ok(&["1"]);
        routed.as_mut().unwrap()[0].subject = "elsewhere".into();
        assert_eq!(compare(&ok(&["1"]), &routed), Some(Difference::Subject));
        let mut stamped = ok(&["1"]);
        stamped.as_mut().unwrap()[0].set_header("x", "y");
        assert_eq!(compare(&ok(&["1"]), &stamped), Some(Difference::Headers));
    }

    #[test]
    fn the_canary_hash_is_stable() {
        // Changing it moves keys between versions on upgrade: on purpose only.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let v: Value = serde_json::from_str(r#"{"user":{"id":7},"items":[{"sku":"x"}]}"#).unwrap();
        assert_eq!(field(&v, "user.id"), Some(&json!(7)));
        assert_eq!(field(&v, "items.0.sku"), Some(&json!("x")));
        assert_eq!(field(&v, "user.name"), None);
    }
}
