//! A chain of stages with live instances: runs a batch of input events
//! through every stage and says what became of each input.

use std::sync::Arc;

use super::blueprint::Blueprint;
use super::candidate::{CandidateSlot, Failed, Ran, Version};
use crate::engine::{Instance, Plugin, StageSpec, StateCall, StateView, StateWrite};
use crate::event::{DeadLetter, ErrorKind, Event, StageError};
use crate::metrics::StageMetrics;
use crate::state::Commit;

/// What became of one input event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed: the events to publish, with their final subjects (none: the
    /// event was filtered out).
    Done(Vec<Event>),
    /// Failed: the original event and why.
    Dead(DeadLetter),
}

/// A blueprint's stages with live instances, owned by one worker.
pub struct Chain {
    blueprint: Blueprint,
    stages: Vec<Slot>,
    /// The state writes of the last batch or tick, staged on the
    /// pipeline's state, to commit (under `weir run`).
    commit: Option<Commit>,
    /// Per stage, its candidate's instances (`[stages.candidate]`).
    candidates: Vec<Option<CandidateSlot<Slot>>>,
}

struct Slot {
    spec: StageSpec,
    plugin: Plugin,
    instance: Option<Instance>,
    /// The linear memory the instance held after `init`: recycling looks at
    /// what it grew by since.
    memory_at_init: u64,
    restarts: u64,
    metrics: Option<StageMetrics>,
    /// A stateful stage's state during a batch (lent to the instance for
    /// each call).
    state: Option<StateCall>,
    /// Whether the stage has a `tick`.
    ticks: bool,
}

/// Why one event failed in one stage.
struct StageFailure {
    kind: ErrorKind,
    message: String,
}

type SlotResult = Result<Vec<Event>, StageFailure>;

impl Blueprint {
    /// A chain with its own instances. Instances are created lazily, on the
    /// first batch, so this never fails.
    pub fn chain(&self) -> Chain {
        let stages = self
            .inner
            .stages
            .iter()
            .enumerate()
            .map(|(index, (spec, plugin))| Slot {
                spec: spec.clone(),
                plugin: plugin.clone(),
                instance: None,
                memory_at_init: 0,
                restarts: 0,
                metrics: self.inner.metrics.as_ref().map(|m| m[index].clone()),
                state: plugin
                    .stateful()
                    .then(|| StateCall::new(self.inner.state.clone() as Arc<dyn StateView>, &spec.stage, spec.state)),
                ticks: plugin.ticks(),
            })
            .collect();
        let candidates = self
            .inner
            .candidates
            .iter()
            .map(|c| {
                c.as_ref()
                    .map(|(spec, plugin, state)| CandidateSlot::new(Slot::new(spec, plugin, None), state.clone()))
            })
            .collect();
        Chain { blueprint: self.clone(), stages, candidates, commit: None }
    }
}

impl Chain {
    /// The blueprint this chain runs.
    pub fn blueprint(&self) -> &Blueprint {
        &self.blueprint
    }

    /// Instances thrown away after a fault, per stage, since the chain was made.
    pub fn restarts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.stages.iter().map(|s| (s.spec.stage.as_str(), s.restarts))
    }

    /// The state writes of the last [`process`](Self::process) or
    /// [`tick`](Self::tick), staged on the pipeline's state: what the sink
    /// commits before it publishes (none in memory, or when nothing changed).
    pub fn take_commit(&mut self) -> Option<Commit> {
        self.commit.take()
    }

    /// Runs `inputs` through every stage and says, for each input in order,
    /// what became of it. The state writes of the inputs that succeeded are
    /// kept; those of inputs that failed anywhere are dropped.
    pub fn process(&mut self, inputs: Vec<Event>) -> Vec<Outcome> {
        let epoch = self.blueprint.inner.state.epoch();
        let (outcomes, writes) = self.run_from(0, inputs);
        self.commit = self.blueprint.inner.state.stage(epoch, writes);
        outcomes
    }

    /// Calls `tick` on every stage that has one, in order; what a stage
    /// emits goes through the stages after it, and comes out as outcomes
    /// (of inputs that are the emitted events).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Outcome> {
        let epoch = self.blueprint.inner.state.epoch();
        let mut outcomes = Vec::new();
        let mut writes = Vec::new();
        for index in 0..self.stages.len() {
            if !self.stages[index].ticks {
                continue;
            }
            let (emitted, tick_writes) = self.stages[index].tick(now_ms);
            let stage = self.stages[index].spec.stage.clone();
            writes.extend(tick_writes.into_iter().map(|w| (stage.clone(), w)));
            if !emitted.is_empty() {
                let (more, more_writes) = self.run_from(index + 1, emitted);
                outcomes.extend(more);
                writes.extend(more_writes);
            }
        }
        self.commit = self.blueprint.inner.state.stage(epoch, writes);
        outcomes
    }

    /// Runs `inputs` through the stages from `start` on; returns the
    /// outcomes and the state writes of the inputs that succeeded.
    fn run_from(&mut self, start: usize, inputs: Vec<Event>) -> (Vec<Outcome>, Vec<(String, StateWrite)>) {
        let n = inputs.len();
        let batch = self.blueprint.inner.batch_size;
        let mut failed: Vec<Option<(usize, StageFailure)>> = (0..n).map(|_| None).collect();
        let mut owners: Vec<usize> = (0..n).collect();
        let mut current = inputs;
        let mut originals: Option<Vec<Event>> = None;
        // What each input became after the last stage. The last stage's list
        // for an input is taken as it is when it is the input's only one (a
        // map or a filter): no new list per event.
        let mut outputs: Vec<Vec<Event>> = (0..n).map(|_| Vec::new()).collect();
        let last = self.stages.len().saturating_sub(1);
        // State writes, with the input each was made for.
        let mut writes: Vec<(usize, String, StateWrite)> = Vec::new();

        for (index, slot) in self.stages.iter_mut().enumerate().skip(start) {
            let (lent, results) = match &mut self.candidates[index] {
                Some(candidate) => candidate.run(slot, current, batch),
                None => slot.run(current, batch),
            };
            if let Some(state) = slot.state.as_mut() {
                for write in state.take_writes() {
                    writes.push((owners[write.event], slot.spec.stage.clone(), write));
                }
            }
            if index == start {
                originals = Some(lent);
            }
            if index == last {
                for (result, &owner) in results.into_iter().zip(&owners) {
                    if failed[owner].is_some() {
                        continue;
                    }
                    match result {
                        Ok(events) if outputs[owner].is_empty() => outputs[owner] = events,
                        Ok(events) => outputs[owner].extend(events),
                        Err(failure) => failed[owner] = Some((index, failure)),
                    }
                }
                current = Vec::new();
                break;
            }
            let mut next = Vec::with_capacity(results.len());
            let mut next_owners = Vec::with_capacity(results.len());
            for (result, &owner) in results.into_iter().zip(&owners) {
                if failed[owner].is_some() {
                    continue;
                }
                match result {
                    Ok(outputs) => {
                        next_owners.extend(std::iter::repeat_n(owner, outputs.len()));
                        next.extend(outputs);
                    }
                    Err(failure) => failed[owner] = Some((index, failure)),
                }
            }
            // A sibling that failed later in this stage fails its whole input.
            if next_owners.iter().any(|&o| failed[o].is_some()) {
                let keep: Vec<bool> = next_owners.iter().map(|&o| failed[o].is_none()).collect();
                let mut k = keep.iter();
                next.retain(|_| *k.next().expect("one flag per event"));
                next_owners.retain(|&o| failed[o].is_none());
            }
            current = next;
            owners = next_owners;
        }
        // No stage at all: every input is its own output.
        let originals = originals.unwrap_or_else(|| {
            for (output, event) in outputs.iter_mut().zip(&current) {
                output.push(event.clone());
            }
            current
        });

        // Render the sink subject of every output; an output that cannot be
        // published (bad subject or headers) fails its input like any stage would.
        let sink = &self.blueprint.inner.sink;
        // Each subject is rendered into the buffer of the one it replaces:
        // no allocation per event once the buffers are large enough.
        let mut scratch = String::new();
        for ((events, failure), original) in outputs.iter_mut().zip(&mut failed).zip(&originals) {
            if failure.is_some() {
                events.clear();
                continue;
            }
            for event in events.iter_mut() {
                let rendered = sink
                    .render_into(&mut scratch, &event.subject, &original.subject)
                    .map_err(|message| format!("output subject {:?}: {message}", event.subject))
                    .and_then(|()| event.check_publishable());
                match rendered {
                    Ok(()) => std::mem::swap(&mut event.subject, &mut scratch),
                    Err(message) => {
                        *failure = Some((usize::MAX, StageFailure { kind: ErrorKind::BadOutput, message }));
                        break;
                    }
                }
            }
            if failure.is_some() {
                events.clear();
            }
        }

        let kept = writes
            .into_iter()
            .filter(|(owner, _, _)| failed[*owner].is_none())
            .map(|(_, stage, write)| (stage, write))
            .collect();
        let outcomes = originals
            .into_iter()
            .zip(failed)
            .zip(outputs)
            .map(|((event, failure), outputs)| match failure {
                None => Outcome::Done(outputs),
                Some((stage, StageFailure { kind, message })) => Outcome::Dead(DeadLetter {
                    event,
                    stage: self.stages.get(stage).map_or_else(|| "sink".to_owned(), |s| s.spec.stage.clone()),
                    kind,
                    message,
                }),
            })
            .collect();
        (outcomes, kept)
    }
}

impl Slot {
    /// A slot without an instance yet (a candidate's: not counted in the
    /// stage's metrics).
    fn new(spec: &StageSpec, plugin: &Plugin, metrics: Option<StageMetrics>) -> Slot {
        Slot { spec: spec.clone(), plugin: plugin.clone(), instance: None, memory_at_init: 0, restarts: 0, metrics, state: None, ticks: false }
    }

    /// Runs `events` through this stage in batches of at most `batch`;
    /// returns the events (lent, not consumed) and one result per event.
    fn run(&mut self, events: Vec<Event>, batch: usize) -> (Vec<Event>, Vec<SlotResult>) {
        if events.len() <= batch {
            return self.call(events, 0);
        }
        let mut lent = Vec::with_capacity(events.len());
        let mut results = Vec::with_capacity(events.len());
        let mut rest = events.into_iter();
        loop {
            let chunk: Vec<Event> = rest.by_ref().take(batch).collect();
            if chunk.is_empty() {
                break;
            }
            let (back, r) = self.call(chunk, lent.len());
            lent.extend(back);
            results.extend(r);
        }
        (lent, results)
    }

    /// One call; on a fault, replays the batch one event at a time on fresh
    /// instances so that only the culprit fails.
    /// `offset`: the index of the first of `events` among the events this
    /// stage is given in this batch (what its state writes are counted by).
    fn call(&mut self, events: Vec<Event>, offset: usize) -> (Vec<Event>, Vec<SlotResult>) {
        if events.is_empty() {
            return (events, Vec::new());
        }
        let timed = self.metrics.as_ref().is_some_and(|m| m.calls.is_some());
        let mut state = self.state.take();
        let instance = match self.instance() {
            Ok(i) => i,
            Err(failure) => {
                self.state = state;
                let results = events
                    .iter()
                    .map(|_| Err(StageFailure { kind: failure.kind, message: failure.message.clone() }))
                    .collect();
                return (events, results);
            }
        };
        let mark = state.as_mut().map(|s| {
            s.set_call(offset, events.len());
            s.mark()
        });
        if let Some(s) = state {
            instance.lend_state(s);
        }
        let started = timed.then(std::time::Instant::now);
        let (events, called) = instance.process(events);
        let mut state = instance.take_state();
        if let Some(m) = &self.metrics {
            m.events.inc_by(events.len() as u64);
            if let (Some(calls), Some(started)) = (&m.calls, started) {
                calls.observe(started.elapsed().as_secs_f64());
            }
        }
        match called {
            Ok(results) => {
                self.state = state;
                self.recycle_if_full();
                (events, results.into_iter().map(|r| r.map_err(StageFailure::from)).collect())
            }
            Err(fault) => {
                // What the faulted call wrote is undone.
                if let (Some(s), Some(mark)) = (state.as_mut(), mark) {
                    s.undo_to(mark);
                }
                self.state = state;
                self.lose_instance(&fault.to_string(), events.len());
                if events.len() == 1 {
                    return (events, vec![Err(StageFailure { kind: fault.kind(), message: fault.to_string() })]);
                }
                let mut lent = Vec::with_capacity(events.len());
                let mut results = Vec::with_capacity(events.len());
                for event in events {
                    let (mut back, mut r) = self.call(vec![event], offset + lent.len());
                    lent.append(&mut back);
                    results.append(&mut r);
                }
                (lent, results)
            }
        }
    }

    /// Calls `tick`; returns what it emitted and its state writes (none
    /// when it failed: the next tick tries again).
    fn tick(&mut self, now_ms: u64) -> (Vec<Event>, Vec<StateWrite>) {
        let mut state = self.state.take();
        let instance = match self.instance() {
            Ok(i) => i,
            Err(failure) => {
                self.state = state;
                tracing::warn!(pipeline = %self.spec.pipeline, stage = %self.spec.stage, "tick skipped: {}", failure.message);
                return (Vec::new(), Vec::new());
            }
        };
        if let Some(s) = state.as_mut() {
            s.set_call(0, 1);
        }
        if let Some(s) = state {
            instance.lend_state(s);
        }
        let called = instance.tick(now_ms);
        state = instance.take_state();
        let writes = state.as_mut().map(StateCall::take_writes).unwrap_or_default();
        self.state = state;
        match called {
            None => (Vec::new(), Vec::new()),
            Some(Ok(Ok(events))) => {
                self.recycle_if_full();
                (events, writes)
            }
            Some(Ok(Err(message))) => {
                tracing::warn!(pipeline = %self.spec.pipeline, stage = %self.spec.stage, "tick failed (its writes and events are dropped; the next tick tries again): {message}");
                (Vec::new(), Vec::new())
            }
            Some(Err(fault)) => {
                self.lose_instance(&format!("tick {fault}"), 1);
                (Vec::new(), Vec::new())
            }
        }
    }

    fn instance(&mut self) -> Result<&mut Instance, StageFailure> {
        if self.instance.is_none() {
            let instance = self
                .plugin
                .instantiate(&self.spec)
                .map_err(|e| StageFailure { kind: ErrorKind::Init, message: format!("cannot start a fresh instance: {e}") })?;
            self.memory_at_init = instance.peak_memory();
            self.instance = Some(instance);
        }
        Ok(self.instance.as_mut().expect("just set"))
    }

    /// Replaces, between batches, an instance that has used three quarters
    /// of the memory it had left after `init`. Linear memory never shrinks,
    /// and the Python and JavaScript toolchains' glue keeps a little of every
    /// call (0.3-2 KiB an event): without this such a stage would hit its
    /// limit every few tens of thousands of events, fault, and have its batch
    /// replayed one event at a time. A fresh instance is an `init` away.
    fn recycle_if_full(&mut self) {
        let Some(instance) = &self.instance else { return };
        let used = instance.peak_memory();
        let headroom = self.spec.memory.saturating_sub(self.memory_at_init);
        if used > self.memory_at_init + headroom / 4 * 3 {
            tracing::debug!(pipeline = %self.spec.pipeline, stage = %self.spec.stage, used, limit = self.spec.memory, "stage instance used most of its memory; replacing it between batches");
            self.instance = None;
        }
    }

    fn lose_instance(&mut self, fault: &str, batch: usize) {
        self.instance = None;
        self.restarts += 1;
        if let Some(m) = &self.metrics {
            m.restarts.inc();
        }
        tracing::warn!(
            pipeline = %self.spec.pipeline,
            stage = %self.spec.stage,
            batch,
            "stage {fault}; replacing its instance{}",
            if batch > 1 { " and replaying the batch one event at a time" } else { "" }
        );
    }
}

impl Version for Slot {
    type Failure = StageFailure;

    fn run(&mut self, events: Vec<Event>, batch: usize) -> Ran<StageFailure> {
        Slot::run(self, events, batch)
    }

    fn has_instance(&self) -> bool {
        self.instance.is_some()
    }
}

impl Failed for StageFailure {
    fn kind(&self) -> ErrorKind {
        self.kind
    }

    fn message(&self) -> &str {
        &self.message
    }
}

impl From<StageError> for StageFailure {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Invalid(message) => StageFailure { kind: ErrorKind::Invalid, message },
            StageError::Retry(message) => StageFailure { kind: ErrorKind::Retry, message },
        }
    }
}
