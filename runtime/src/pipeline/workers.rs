//! The worker pool: OS threads that run chains, so that WebAssembly (CPU
//! work) never blocks the async reactor.
//!
//! Each worker owns one [`Chain`] per pipeline, with its own instances: no
//! locks on the hot path. Each worker has a short bounded queue; when every
//! queue is full, [`Workers::dispatch`] waits, which slows the source down
//! instead of growing memory. A batch goes to the worker with the fewest
//! batches in hand (queued or being processed), so that an idle worker is
//! never passed over for a busy one.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::blueprint::Blueprint;
use super::chain::{Chain, Outcome};
use crate::event::Event;
use crate::state::Commit;

/// Batches a worker may have queued: enough to keep it busy while the next
/// is dispatched, few enough to bound the memory held by slow sinks.
const QUEUE: usize = 2;

/// A batch for a worker: the events, and `tickets` (one per event, opaque to
/// the worker: acknowledgement handles) that travel with the outcomes.
pub struct Job<T> {
    blueprint: Blueprint,
    events: Vec<Event>,
    tickets: Vec<T>,
    /// A tick at this time (ms since the epoch) instead of a batch.
    tick: Option<u64>,
    reply: mpsc::Sender<Done<T>>,
}

/// What a worker's queue carries.
enum Message<T> {
    /// A batch to process.
    Batch(Job<T>),
    /// A pipeline that stopped: drop its chain and instances.
    Forget(Arc<str>),
}

/// A processed batch: one outcome per event, with the event's ticket.
pub struct Done<T> {
    /// `(outcome, ticket)` in the order the events were dispatched.
    pub results: Vec<(Outcome, T)>,
    /// The version of the pipeline that processed them.
    pub version: Arc<str>,
    /// What a tick emitted, through the stages after the ticking one.
    pub ticked: Vec<Outcome>,
    /// The batch's (or tick's) state writes, to commit before anything is
    /// published.
    pub commit: Option<Commit>,
}

impl<T> Done<T> {
    /// A batch's outcomes, with no tick and no state to commit.
    pub fn outcomes(results: Vec<(Outcome, T)>, version: Arc<str>) -> Self {
        Done { results, version, ticked: Vec::new(), commit: None }
    }

    /// About how many bytes what this batch produced takes in a state
    /// marker, which lists it.
    pub fn output_bytes(&self) -> usize {
        let events = self.results.iter().map(|(o, _)| o).chain(&self.ticked).filter_map(|o| match o {
            Outcome::Done(events) => Some(events),
            Outcome::Dead(_) => None,
        });
        events
            .flatten()
            .map(|e| e.subject.len() + e.payload.len() + e.headers.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>() + 16)
            .sum()
    }

    /// Takes `later`, processed after this one by the same version, into
    /// this one, so that their state writes commit as one (a group commit:
    /// fewer, larger atomic batches). Gives `later` back when either has
    /// nothing to commit or the commits cannot be merged.
    pub fn absorb(&mut self, mut later: Done<T>) -> Result<(), Done<T>> {
        if later.version != self.version {
            return Err(later);
        }
        let Some(commit) = self.commit.as_mut().filter(|c| !c.is_empty()) else { return Err(later) };
        let Some(next) = later.commit.take_if(|c| !c.is_empty()) else { return Err(later) };
        if let Err(next) = commit.merge(next) {
            later.commit = Some(next);
            return Err(later);
        }
        self.results.append(&mut later.results);
        self.ticked.append(&mut later.ticked);
        Ok(())
    }
}

/// A pool of worker threads.
pub struct Workers<T> {
    queues: Vec<mpsc::Sender<Message<T>>>,
    /// Per worker: batches dispatched to it and not yet processed.
    loads: Vec<Arc<AtomicUsize>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> Workers<T> {
    /// Starts `count` worker threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut queues = Vec::new();
        let mut loads = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let (tx, rx) = mpsc::channel(QUEUE);
            let load = Arc::new(AtomicUsize::new(0));
            queues.push(tx);
            loads.push(load.clone());
            threads.push(std::thread::Builder::new().name(format!("weir-worker-{index}")).spawn(move || work(rx, &load))?);
        }
        Ok(Workers { queues, loads, threads })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Hands a batch to the workers; waits while they are all busy.
    ///
    /// With `ordered`, events with the same subject always go to the same
    /// worker, in order, so their outcomes reach `reply` in order. Otherwise
    /// the whole batch goes to the least busy worker: the one with the
    /// fewest batches in hand (the first of those, on a tie). A channel's free
    /// capacity would not do: it does not count the batch being processed.
    pub async fn dispatch(&self, blueprint: &Blueprint, batch: Vec<(Event, T)>, ordered: bool, reply: &mpsc::Sender<Done<T>>) {
        if blueprint.stateful() {
            // One worker runs every batch of a stateful pipeline, in order:
            // each batch reads what the one before it wrote.
            let (events, tickets) = batch.into_iter().unzip();
            self.send(self.home(blueprint), blueprint, events, tickets, None, reply).await;
            return;
        }
        if !ordered || self.queues.len() == 1 {
            let index = (0..self.loads.len()).min_by_key(|&i| self.loads[i].load(Ordering::Relaxed)).unwrap_or(0);
            let (events, tickets) = batch.into_iter().unzip();
            self.send(index, blueprint, events, tickets, None, reply).await;
            return;
        }
        let mut parts: Vec<(Vec<Event>, Vec<T>)> = (0..self.queues.len()).map(|_| (Vec::new(), Vec::new())).collect();
        for (event, ticket) in batch {
            let mut h = DefaultHasher::new();
            event.subject.hash(&mut h);
            let part = &mut parts[(h.finish() % self.queues.len() as u64) as usize];
            part.0.push(event);
            part.1.push(ticket);
        }
        for (index, (events, tickets)) in parts.into_iter().enumerate() {
            if !events.is_empty() {
                self.send(index, blueprint, events, tickets, None, reply).await;
            }
        }
    }

    /// Has the worker of a stateful pipeline call its stages' `tick` with
    /// the time `now_ms`, after the batches dispatched before.
    pub async fn tick(&self, blueprint: &Blueprint, now_ms: u64, reply: &mpsc::Sender<Done<T>>) {
        self.send(self.home(blueprint), blueprint, Vec::new(), Vec::new(), Some(now_ms), reply).await;
    }

    /// The worker that runs a stateful pipeline.
    fn home(&self, blueprint: &Blueprint) -> usize {
        let mut h = DefaultHasher::new();
        blueprint.name().hash(&mut h);
        (h.finish() % self.queues.len() as u64) as usize
    }

    async fn send(&self, index: usize, blueprint: &Blueprint, events: Vec<Event>, tickets: Vec<T>, tick: Option<u64>, reply: &mpsc::Sender<Done<T>>) {
        let job = Job { blueprint: blueprint.clone(), events, tickets, tick, reply: reply.clone() };
        self.loads[index].fetch_add(1, Ordering::Relaxed);
        if self.queues[index].send(Message::Batch(job)).await.is_err() {
            // Only when a worker thread died, which `work` never lets happen.
            tracing::error!(worker = index, "worker is gone; batch lost");
        }
    }

    /// Has every worker drop its chain (and so its instances) of pipeline
    /// `name`, once the batches queued before are done: for a pipeline that
    /// stopped, whose chains would otherwise stay for the life of the process.
    pub async fn forget(&self, name: &str) {
        let name: Arc<str> = name.into();
        for queue in &self.queues {
            let _ = queue.send(Message::Forget(name.clone())).await;
        }
    }

    /// Stops the workers once their queues are empty.
    pub fn shutdown(self) {
        drop(self.queues);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn work<T>(mut rx: mpsc::Receiver<Message<T>>, load: &AtomicUsize) {
    let mut chains: HashMap<String, Chain> = HashMap::new();
    while let Some(message) = rx.blocking_recv() {
        let job = match message {
            Message::Batch(job) => job,
            Message::Forget(name) => {
                chains.remove(&*name);
                continue;
            }
        };
        // Done with it once its outcomes are handed on, however that ends.
        let _in_hand = InHand(load);
        let Job { blueprint, events, tickets, tick, reply } = job;
        let chain = chains.entry(blueprint.name().to_owned()).or_insert_with(|| blueprint.chain());
        if !chain.blueprint().same(&blueprint) {
            // A new version of the pipeline: fresh instances; the old ones
            // are dropped here, after their last batch.
            *chain = blueprint.chain();
        }
        // A panic in the host would lose the batch and the worker: contain
        // it and dead-letter nothing silently.
        let run = |chain: &mut Chain| match tick {
            Some(now) => (Vec::new(), chain.tick(now), chain.take_commit()),
            None => (chain.process(events), Vec::new(), chain.take_commit()),
        };
        let (outcomes, ticked, commit) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(chain))) {
            Ok(done) => done,
            Err(_) => {
                tracing::error!(pipeline = blueprint.name(), "internal error while processing a batch; its events will not be acknowledged");
                chains.remove(blueprint.name());
                continue;
            }
        };
        let results = outcomes.into_iter().zip(tickets).collect();
        // The receiver is gone only when its pipeline was stopped abruptly.
        let _ = reply.blocking_send(Done { results, version: blueprint.version().into(), ticked, commit });
    }
}

/// Counts a batch out of its worker's load when dropped.
struct InHand<'a>(&'a AtomicUsize);

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
