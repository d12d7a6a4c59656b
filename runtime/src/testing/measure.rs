//! What each stage costs in a case: time per event and peak memory.
//!
//! The pipeline's own [`Chain`](crate::pipeline::Chain) says what came out;
//! it does not time stages one by one, so this module runs the case's events
//! through the stages again, one stage at a time, each on an instance of its
//! own:
//!
//! 1. a pass over the case's events in batches of the pipeline's batch size,
//!    which finds the events that reach each stage (the outputs of the stage
//!    before it) and leaves out those that fault (a trap, a timeout, memory),
//!    which would kill the instance;
//! 2. one warm-up batch, then timed batches of exactly `batch_size` events,
//!    cycling through the events that reached the stage, until
//!    [`MAX_BATCHES`] are timed, or [`MIN_BATCHES`] are and
//!    [`TIME_CAP`] has passed.
//!
//! The time per event of a batch is the call's wall time divided by the
//! batch's length; a stage's figure is the median over its batches, which a
//! slow batch (a page fault, another process taking the core) does not move.
//! Memory is the instance's peak linear memory (init included), from its
//! store's limiter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Pipeline;
use crate::engine::{Engine, Instance, MemoryState, Plugin, StageSpec, StateCall};
use crate::event::Event;

/// Timed batches at least (unless the stage got no event).
pub const MIN_BATCHES: usize = 5;
/// Timed batches at most.
pub const MAX_BATCHES: usize = 31;
/// Stop timing a stage after this long, once [`MIN_BATCHES`] are in.
pub const TIME_CAP: Duration = Duration::from_millis(100);

/// What one stage cost in one case.
#[derive(Debug, Clone)]
pub struct StageFigures {
    /// The stage.
    pub stage: String,
    /// Nanoseconds per event, one figure per timed batch.
    pub samples: Vec<f64>,
    /// Events per timed batch: the pipeline's batch size.
    pub batch_size: usize,
    /// Distinct events that reached the stage without faulting.
    pub events: usize,
    /// The most linear memory an instance of the stage held, in bytes.
    pub memory: u64,
}

impl StageFigures {
    /// The median time per event, if any batch was timed.
    pub fn per_event(&self) -> Option<Duration> {
        median(&self.samples).map(|ns| Duration::from_nanos(ns.round() as u64))
    }
}

/// The median of `values`; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
}

/// Measures every stage of `pipeline` (the pipeline as the case runs it) over
/// `inputs`. A stage whose plugin does not load or start gets no figures.
pub fn measure(engine: &Engine, pipeline: &Pipeline, inputs: &[Event]) -> Vec<StageFigures> {
    let batch = pipeline.batch_size.max(1);
    let mut current: Vec<Event> = inputs.to_vec();
    let mut figures = Vec::with_capacity(pipeline.stages.len());
    for stage in &pipeline.stages {
        let mut f = StageFigures { stage: stage.name.as_str().to_owned(), samples: Vec::new(), batch_size: batch, events: 0, memory: 0 };
        let spec = crate::pipeline::stage_spec(pipeline, stage);
        let Ok(plugin) = engine.load(&stage.plugin) else {
            figures.push(f);
            current.clear();
            continue;
        };
        let mut stage_run = StageRun { plugin, spec, instance: None, memory: 0 };
        let (passing, next) = stage_run.pass(std::mem::take(&mut current), batch);
        f.events = passing.len();
        if !passing.is_empty() {
            f.samples = stage_run.time(&passing, batch);
        }
        f.memory = stage_run.peak();
        figures.push(f);
        current = next;
    }
    figures
}

struct StageRun {
    plugin: Plugin,
    spec: StageSpec,
    instance: Option<Instance>,
    /// The peak of instances already thrown away.
    memory: u64,
}

impl StageRun {
    /// The live instance (made if needed), ready for a call of `events`
    /// events: a stateful stage keeps its state in memory, from empty at
    /// each call (what is measured is the stage's work on one batch).
    fn instance(&mut self, events: usize) -> Option<&mut Instance> {
        if self.instance.is_none() {
            let mut instance = self.plugin.instantiate(&self.spec).ok()?;
            if self.plugin.stateful() {
                instance.lend_state(StateCall::new(Arc::new(MemoryState::default()), &self.spec.stage, self.spec.state));
            }
            self.instance = Some(instance);
        }
        let instance = self.instance.as_mut()?;
        if let Some(state) = instance.state_mut() {
            state.take_writes();
            state.set_call(0, events);
        }
        Some(instance)
    }

    /// Drops an instance that faulted. Its memory does not count: a stage
    /// that tried to take too much already failed its event.
    fn lose(&mut self) {
        self.instance = None;
    }

    fn retire(&mut self) {
        if let Some(i) = self.instance.take() {
            self.memory = self.memory.max(i.peak_memory());
        }
    }

    fn peak(&mut self) -> u64 {
        self.retire();
        self.memory
    }

    /// Runs `events` through the stage in batches; returns the events that
    /// did not fault and the outputs of those that passed.
    fn pass(&mut self, events: Vec<Event>, batch: usize) -> (Vec<Event>, Vec<Event>) {
        let mut passing = Vec::with_capacity(events.len());
        let mut next = Vec::with_capacity(events.len());
        let mut rest = events.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Event> = rest.by_ref().take(batch).collect();
            let Some(instance) = self.instance(chunk.len()) else {
                return (passing, next);
            };
            let (chunk, called) = instance.process(chunk);
            match called {
                Ok(results) => {
                    for (event, result) in chunk.into_iter().zip(results) {
                        passing.push(event);
                        if let Ok(outputs) = result {
                            next.extend(outputs);
                        }
                    }
                }
                Err(_) => {
                    self.lose();
                    // One at a time, to keep all but the culprits.
                    for event in chunk {
                        let Some(instance) = self.instance(1) else {
                            return (passing, next);
                        };
                        let (mut back, called) = instance.process(vec![event]);
                        match called {
                            Ok(mut results) => {
                                passing.push(back.remove(0));
                                if let Some(Ok(outputs)) = results.pop() {
                                    next.extend(outputs);
                                }
                            }
                            Err(_) => self.lose(),
                        }
                    }
                }
            }
        }
        (passing, next)
    }

    /// Times full batches cycling through `events`: one warm-up, then
    /// [`MIN_BATCHES`]..[`MAX_BATCHES`]. Nanoseconds per event, per batch.
    fn time(&mut self, events: &[Event], batch: usize) -> Vec<f64> {
        let mut cycle = events.iter().cycle();
        let mut samples = Vec::with_capacity(MAX_BATCHES);
        let started = Instant::now();
        let mut calls = 0;
        // Each faulting call is skipped; give up after as many as batches.
        while samples.len() < MAX_BATCHES && calls < MAX_BATCHES * 2 + 1 {
            if samples.len() >= MIN_BATCHES && started.elapsed() >= TIME_CAP {
                break;
            }
            calls += 1;
            let chunk: Vec<Event> = cycle.by_ref().take(batch).cloned().collect();
            let Some(instance) = self.instance(chunk.len()) else {
                break;
            };
            let begun = Instant::now();
            let (_, called) = instance.process(chunk);
            let elapsed = begun.elapsed();
            if called.is_err() {
                self.lose();
                continue;
            }
            // The first call of an instance pays for its first page faults.
            if calls > 1 {
                samples.push(elapsed.as_nanos() as f64 / batch as f64);
            }
        }
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, 1.0, 1000.0]), Some(5.0), "one slow batch does not move it");
    }
}
