//! The state of a pipeline's stateful stages: a local copy that stages read
//! and write, and (under `weir run`) the NATS KV bucket it is committed to.
//!
//! One bucket per pipeline, `weir-state-<pipeline>`, each stage's keys under
//! its name (`<stage>.<key>`): a batch's writes in every stage of the
//! pipeline commit as one atomic batch, which buckets per stage could not
//! give. A commit also writes a marker, `_weir.<instance>.<slot>`, listing
//! the JetStream inputs it applied and what they and the tick produced: an
//! input delivered again after its state was committed is not applied
//! again, and what it produced is published again (the JetStream sink drops
//! the copy by its message id).
//!
//! Exactly once, step by step, for a batch from a JetStream source: the
//! stages run on the local copy (one worker runs all the pipeline's batches,
//! in order); the batch's writes and marker are committed atomically, each
//! key guarded by the revision it was read at; then outputs are published;
//! then inputs acknowledged; then the marker's slot is free again. (Batches
//! that wait for the sink while a commit is in flight commit as one: see
//! [`Commit::merge`].) A key
//! another process changed refuses the commit: the local copy is refreshed,
//! the batch is handed back for redelivery, and every batch staged after it
//! too (they read what the refused batch wrote).
//!
//! Two processes on one durable consumer: an input not acknowledged within
//! the consumer's `ack_wait` is delivered again, maybe to the other
//! process, while the first still holds it; and an acknowledgement that
//! arrives late still counts. Whichever commits second either read the
//! state before the first commit (its revisions are stale: refused) or
//! after it, and then it has the first commit's marker, which lists the
//! input (the marker is the first message of the commit, and the watch
//! delivers in order): refused too. A marker goes once the ack floor passes
//! its inputs; its inputs are still known as applied for a while after
//! ([`retired`]), and a batch older than that is refused on its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::engine::{ReadAt, StateView, StateWrite, entry_size_of};
use crate::event::Event;
use crate::nats::{Change, CommitError, KvWrite, MAX_BATCH_WRITES, StateBucket, TOMBSTONE_TTL};

mod marker;
mod retired;

pub use marker::Marker;
use retired::Retired;

/// The bucket's name for `pipeline`.
pub fn bucket_name(pipeline: &str) -> String {
    format!("weir-state-{pipeline}")
}

/// Prefix of marker keys.
const MARKERS: &str = "_weir.";

/// How much longer than the source's `ack_wait` the inputs of a deleted
/// marker are still known as applied.
const RETIRED_MARGIN: Duration = Duration::from_secs(10);

/// A pipeline's state. Shared by the worker that runs its batches, its sink
/// and the bucket's watch.
pub struct Store {
    inner: Mutex<Inner>,
    nats: Option<Nats>,
}

struct Nats {
    bucket: StateBucket,
    /// Markers of this process's instance: `_weir.<instance>.`.
    instance: String,
    /// This store's marker keys: `_weir.<instance>.<run>.`, `run` new for
    /// every store (a restarted pipeline, a new process).
    prefix: String,
    /// How long after its pull request an input may still be committed:
    /// the source's `ack_wait`. Later, it may have been delivered to another
    /// process, applied and acknowledged, and its marker be gone.
    deadline: Option<Duration>,
}

struct Inner {
    stages: BTreeMap<String, BTreeMap<String, Entry>>,
    sizes: HashMap<String, u64>,
    /// Bumped when a commit is refused: what was staged before is void.
    epoch: u64,
    /// Markers in the bucket by key, and which marker applied each input.
    markers: HashMap<String, Marker>,
    applied: HashMap<u64, String>,
    /// The last revision seen of each marker key, and when it was deleted
    /// if it was: a marker read from the server (after a refused commit)
    /// that the watch has seen replaced or deleted since is not taken.
    marker_revisions: HashMap<String, (u64, Option<Instant>)>,
    /// Inputs applied by commits whose markers are gone.
    retired: Retired,
    /// JetStream inputs handed to the workers and not yet settled, with
    /// when the pull request that brought them was made.
    in_flight: HashMap<u64, Instant>,
    /// Marker slots of this store in use, with the last input their marker
    /// lists (`None`: only a tick's events). A slot with inputs is free
    /// again once the consumer's ack floor passes them, whatever the sink
    /// believes of its acknowledgements (an ack can be lost with the server).
    slots: HashMap<usize, Option<u64>>,
    /// Why the state cannot be committed any more (its bucket was deleted):
    /// the pipeline stops taking events.
    broken: Option<String>,
    /// Marker keys no longer needed, to be deleted by the next commit.
    to_clear: Vec<String>,
}

#[derive(Clone, Default)]
struct Entry {
    /// What stages read: committed, then pending writes.
    value: Option<Bytes>,
    /// The value at `revision`.
    committed: Option<Bytes>,
    /// The key's revision as last known (0: no message).
    revision: u64,
    /// The revision this store's own last commit of the key produced: what
    /// a write staged on a pending value expects (the watch may have moved
    /// `revision` on since, which must refuse that write).
    own: u64,
    /// When the deletion at `revision` drops out of the bucket.
    tombstone_expires: Option<Instant>,
    /// Staged writes not yet committed.
    pending: u32,
}

/// The writes of one batch (or tick), staged on the local copy, to commit.
pub struct Commit {
    epoch: u64,
    /// The batch read state that a refused commit voided while it ran: it
    /// must be processed again.
    stale: bool,
    writes: Vec<Write>,
}

/// One key's write in a commit.
struct Write {
    stage: String,
    key: String,
    value: Option<Bytes>,
    /// The revision read; `None` when the key's last write is an earlier
    /// staged commit of this process.
    read: Option<u64>,
    /// How many staged writes of the key it stands for (commits merged).
    staged: u32,
}

/// The most writes a merged commit may hold: one atomic batch takes 1000
/// messages, and the marker and cleared markers need some.
const MAX_MERGED_WRITES: usize = 800;

impl Commit {
    /// Whether there is nothing to commit (nor to refuse).
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && !self.stale
    }

    /// Adds `later`, staged after this one, to this commit: both commit as
    /// one atomic batch, each key written once with its last value and
    /// checked against what the first of them read. Gives `later` back when
    /// they cannot be merged: another epoch, a void one, or too many writes.
    pub fn merge(&mut self, later: Commit) -> Result<(), Commit> {
        if self.stale || later.stale || self.epoch != later.epoch || self.writes.len() + later.writes.len() > MAX_MERGED_WRITES {
            return Err(later);
        }
        let mut at: HashMap<(String, String), usize> = self.writes.iter().enumerate().map(|(i, w)| ((w.stage.clone(), w.key.clone()), i)).collect();
        for write in later.writes {
            match at.get(&(write.stage.clone(), write.key.clone())) {
                Some(&i) => {
                    self.writes[i].value = write.value;
                    self.writes[i].staged += write.staged;
                }
                None => {
                    at.insert((write.stage.clone(), write.key.clone()), self.writes.len());
                    self.writes.push(write);
                }
            }
        }
        Ok(())
    }
}

/// A committed batch's marker slot: free it once its inputs are settled.
#[derive(Debug)]
pub struct Slot(Option<usize>);

/// Whether an input was already applied.
pub enum Applied {
    /// No: process it.
    No,
    /// Yes: its state is committed; these are its outputs, to publish again.
    Yes(Vec<Event>),
    /// It is being processed right now (a redelivery overtook it): ask for
    /// it again later.
    InFlight,
}

impl Store {
    /// A state in memory only: `weir exec`, `weir test`, `weir validate`.
    pub fn memory() -> Arc<Store> {
        Arc::new(Store { inner: Mutex::new(Inner::new(Duration::ZERO)), nats: None })
    }

    /// Opens the pipeline's bucket (creating it), loads it and keeps the
    /// copy up to date; `instance` names this process's markers; `ack_wait`
    /// is the source's (JetStream).
    pub async fn open(
        nats: &crate::nats::Nats,
        pipeline: &str,
        instance: &str,
        replicas: usize,
        ack_wait: Option<Duration>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Store>, crate::nats::SourceError> {
        let bucket = StateBucket::open(nats, &bucket_name(pipeline), replicas).await?;
        let instance = format!("{MARKERS}{}.", encode_key(instance));
        let run = format!("{:08x}", rand_u32());
        let prefix = format!("{instance}{run}.");
        // Kept past the deadline: a delivery made before its input's
        // acknowledgement is committed before the deadline or refused.
        let keep = ack_wait.unwrap_or_default() + RETIRED_MARGIN;
        let store = Arc::new(Store { inner: Mutex::new(Inner::new(keep)), nats: Some(Nats { bucket: bucket.clone(), instance, prefix, deadline: ack_wait }) });
        let weak = Arc::downgrade(&store);
        bucket
            .watch(stop, move |change| {
                if let Some(store) = weak.upgrade() {
                    store.remote(change);
                }
            })
            .await?;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bucket, under `weir run`.
    pub fn bucket(&self) -> Option<&str> {
        self.nats.as_ref().map(|n| n.bucket.name())
    }

    /// Why the pipeline must stop taking events, if it must.
    pub fn broken(&self) -> Option<String> {
        self.lock().broken.clone()
    }

    /// After a commit failed for another reason than a conflict: if the
    /// bucket is gone, the pipeline stops taking events (nothing can be
    /// acknowledged any more) and the log says why, once.
    pub async fn check_bucket(&self) {
        let Some(nats) = &self.nats else { return };
        if let Ok(false) = nats.bucket.exists().await {
            let mut inner = self.lock();
            if inner.broken.is_none() {
                let why = format!(
                    "the state bucket \"{}\" was deleted: this pipeline's state is gone, so it stops taking events (none is acknowledged without its state). Restore the bucket, or to start counting afresh delete the pipeline's durable consumer too; then `weir reload`",
                    nats.bucket.name()
                );
                tracing::error!("{why}");
                inner.broken = Some(why);
            }
        }
    }

    /// A change seen by the watch (someone's commit, ours included).
    fn remote(&self, change: Change) {
        let mut inner = self.lock();
        if change.key.starts_with(MARKERS) {
            inner.marker_changed(change.key, change.value, change.revision);
            return;
        }
        let Some((stage, key)) = split_key(&change.key) else { return };
        let inner = &mut *inner;
        let entries = inner.stages.entry(stage.clone()).or_default();
        let entry = entries.entry(key.clone()).or_default();
        if change.revision <= entry.revision {
            return;
        }
        entry.revision = change.revision;
        entry.committed = change.value.clone();
        entry.tombstone_expires = change.value.is_none().then(|| Instant::now() + TOMBSTONE_TTL);
        if entry.pending == 0 {
            let size = inner.sizes.entry(stage).or_default();
            *size = (*size as i64 + entry_size_of(&key, change.value.as_ref()) - entry_size_of(&key, entry.value.as_ref())).max(0) as u64;
            entry.value = change.value;
        }
    }

    /// The current epoch: what a batch reads before it runs, and hands to
    /// [`stage`](Self::stage) after.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps `writes` (stage, write), in order, on the local copy. In memory
    /// they are final; under `weir run` they are pending until the returned
    /// commit is committed. `read_at`: the epoch when the batch started; if a
    /// refused commit voided what it read since, nothing is kept and the
    /// commit returned is refused by the sink.
    pub fn stage(&self, read_at: u64, writes: Vec<(String, StateWrite)>) -> Option<Commit> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if self.nats.is_some() && read_at != inner.epoch {
            return Some(Commit { epoch: read_at, stale: true, writes: Vec::new() });
        }
        if writes.is_empty() {
            return None;
        }
        let epoch = inner.epoch;
        // The last write of each key is what commits; what the key was
        // first read at is what it is checked against.
        let mut last: BTreeMap<(String, String), (Option<Bytes>, Option<ReadAt>)> = BTreeMap::new();
        for (stage, write) in writes {
            let read = write.read;
            last.entry((stage, write.key))
                .and_modify(|e| e.0 = write.value.clone())
                .or_insert((write.value, read));
        }
        let mut commit = Vec::with_capacity(last.len());
        for ((stage, key), (value, read)) in last {
            let entries = inner.stages.entry(stage.clone()).or_default();
            let entry = entries.entry(key.clone()).or_default();
            let size = inner.sizes.entry(stage.clone()).or_default();
            *size = (*size as i64 + entry_size_of(&key, value.as_ref()) - entry_size_of(&key, entry.value.as_ref())).max(0) as u64;
            entry.value = value.clone();
            if self.nats.is_some() {
                let read = match read {
                    Some(ReadAt::Revision(revision)) => Some(revision),
                    Some(ReadAt::Pending) => None,
                    // Written without being read: checked against what the
                    // copy holds now.
                    None if entry.pending == 0 => Some(entry.expected()),
                    None => None,
                };
                entry.pending += 1;
                commit.push(Write { stage, key, value, read, staged: 1 });
            } else {
                entry.committed = value;
            }
        }
        if self.nats.is_none() {
            inner.stages.retain(|_, keys| {
                keys.retain(|_, e| e.value.is_some());
                !keys.is_empty()
            });
            return None;
        }
        Some(Commit { epoch, stale: false, writes: commit })
    }

    /// Notes that these JetStream inputs (sequence, and when the pull
    /// request that brought it was made) were handed to the workers, and
    /// says of each whether it was applied already. Inputs that are not
    /// [`Applied::No`] are not noted.
    pub fn admit(&self, inputs: &[Option<(u64, Instant)>]) -> Vec<Applied> {
        let mut inner = self.lock();
        inputs
            .iter()
            .map(|input| {
                let Some((seq, pulled)) = *input else { return Applied::No };
                if let Some(key) = inner.applied.get(&seq) {
                    let outputs = inner.markers.get(key).map(|m| m.outputs_of(seq)).unwrap_or_default();
                    return Applied::Yes(outputs);
                }
                // Its marker is gone because it was acknowledged, which
                // only happens once what it produced is published.
                if inner.retired.contains(seq) {
                    return Applied::Yes(Vec::new());
                }
                if inner.in_flight.contains_key(&seq) {
                    return Applied::InFlight;
                }
                inner.in_flight.insert(seq, pulled);
                Applied::No
            })
            .collect()
    }

    /// These inputs are settled (acknowledged or handed back).
    pub fn settled(&self, sequences: impl IntoIterator<Item = u64>) {
        let mut inner = self.lock();
        for seq in sequences {
            inner.in_flight.remove(&seq);
        }
    }

    /// Commits `commit` with a marker of `inputs` (JetStream sequences) and
    /// the events they and the tick produced. Refused when the state it was
    /// staged on was voided by an earlier refusal, or when a key changed:
    /// then the local copy is refreshed and everything staged since is void.
    pub async fn commit(&self, commit: Commit, inputs: Vec<u64>, outputs: Vec<(Option<u64>, Vec<Event>)>) -> Result<Slot, CommitError> {
        let Some(nats) = &self.nats else { return Ok(Slot(None)) };
        let (writes, slot, keys, cleared) = {
            let mut inner = self.lock();
            if commit.stale || commit.epoch != inner.epoch {
                drop(inner);
                return Err(CommitError::Refused("staged on state that an earlier refused commit voided".to_owned()));
            }
            // An input that another commit applied since it was admitted (a
            // redelivery that overtook its first delivery in another
            // process): the batch may have read that commit's state, which
            // already counts it. Refused, it comes back and is known.
            if let Some(seq) = inputs.iter().find(|seq| inner.applied.contains_key(seq) || inner.retired.contains(**seq)) {
                let why = format!("input {seq} of the batch was applied by another commit meanwhile (it was delivered again while this process held it)");
                inner.void();
                drop(inner);
                return Err(CommitError::Refused(why));
            }
            // An input past its ack wait may have been delivered again and
            // applied elsewhere, and its marker be gone by now.
            if let Some(deadline) = nats.deadline {
                let now = Instant::now();
                if let Some(held) = inputs
                    .iter()
                    .filter_map(|seq| inner.in_flight.get(seq))
                    .map(|pulled| now.duration_since(*pulled))
                    .max()
                    && held > deadline
                {
                    let why = format!(
                        "the batch reached its commit {:.1} s after its inputs were asked for, past the source's ack_wait ({:.1} s): they may have been delivered again and applied by another process. If batches are this slow, raise ack_wait",
                        held.as_secs_f64(),
                        deadline.as_secs_f64()
                    );
                    inner.void();
                    drop(inner);
                    return Err(CommitError::Refused(why));
                }
            }
            let slot = (0..).find(|s| !inner.slots.contains_key(s)).expect("a free slot");
            let mut writes = Vec::with_capacity(commit.writes.len() + 2);
            let mut keys = Vec::with_capacity(commit.writes.len());
            // The marker goes first: a copy that has the batch's state (the
            // watch delivers in order) has its marker too.
            let marker = Marker { inputs, outputs };
            let has_marker = !marker.inputs.is_empty() || marker.outputs.iter().any(|(_, o)| !o.is_empty());
            let slot_key = format!("{}{slot}", nats.prefix);
            if has_marker {
                writes.push(KvWrite { key: slot_key.clone(), value: Some(marker.encode()), expected: None });
                inner.slots.insert(slot, marker.inputs.iter().max().copied());
            }
            for Write { stage, key, value, read, staged } in commit.writes {
                let expected = match read {
                    Some(revision) => revision,
                    None => inner.stages.get(&stage).and_then(|k| k.get(&key)).map_or(0, |e| e.own),
                };
                writes.push(KvWrite { key: full_key(&stage, &key), value: value.clone(), expected: Some(expected) });
                keys.push((stage, key, value, staged));
            }
            // Markers no longer needed, as many as the atomic batch has
            // room for; the rest go with the next commit.
            if has_marker {
                inner.to_clear.retain(|k| *k != slot_key);
            }
            let room = MAX_BATCH_WRITES.saturating_sub(writes.len()).min(inner.to_clear.len());
            let cleared: Vec<String> = inner.to_clear.drain(..room).collect();
            writes.extend(cleared.iter().map(|key| KvWrite { key: key.clone(), value: None, expected: None }));
            (writes, has_marker.then_some(slot), keys, cleared)
        };
        match nats.bucket.commit(&writes).await {
            Ok(revisions) => {
                let mut inner = self.lock();
                let revisions = revisions.into_iter().skip(usize::from(slot.is_some()));
                for ((stage, key, value, staged), revision) in keys.into_iter().zip(revisions) {
                    let entry = inner.stages.entry(stage).or_default().entry(key).or_default();
                    entry.pending = entry.pending.saturating_sub(staged);
                    entry.own = revision;
                    if revision > entry.revision {
                        entry.revision = revision;
                        entry.tombstone_expires = value.is_none().then(|| Instant::now() + TOMBSTONE_TTL);
                        entry.committed = value;
                    }
                }
                Ok(Slot(slot))
            }
            Err(e) => {
                let stale: Vec<(String, String)> = keys.into_iter().map(|(s, k, _, _)| (s, k)).collect();
                {
                    let mut inner = self.lock();
                    // Still to be cleared.
                    inner.to_clear.extend(cleared);
                    // A refused batch stored nothing: its slot is free. After
                    // another failure the marker may be stored (an answer
                    // lost with the server): it stays until its inputs are
                    // acknowledged.
                    if let (Some(slot), CommitError::Conflict(_)) = (slot, &e) {
                        inner.slots.remove(&slot);
                    }
                    inner.void();
                }
                if matches!(e, CommitError::Conflict(_)) {
                    // The markers as the server has them: an input applied by a
                    // commit whose answer was lost (a server restart), or by
                    // another process, is then known when it comes back.
                    match nats.bucket.markers(MARKERS).await {
                        Ok(markers) => self.lock().merge_markers(markers),
                        Err(error) => tracing::warn!(bucket = nats.bucket.name(), %error, "cannot read the state markers"),
                    }
                    // Read the refused keys again: the copy may not know
                    // their revision (a deletion that dropped out).
                    for (stage, key) in stale {
                        if let Ok((value, revision)) = nats.bucket.entry(&full_key(&stage, &key)).await {
                            let mut inner = self.lock();
                            let inner = &mut *inner;
                            let entry = inner.stages.entry(stage.clone()).or_default().entry(key.clone()).or_default();
                            let size = inner.sizes.entry(stage).or_default();
                            *size = (*size as i64 + entry_size_of(&key, value.as_ref()) - entry_size_of(&key, entry.value.as_ref())).max(0) as u64;
                            entry.revision = revision;
                            entry.tombstone_expires = None;
                            entry.committed = value.clone();
                            entry.value = value;
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// A committed batch's outputs are published and its inputs settled. A
    /// marker of a tick alone is no longer needed; one of inputs is, until
    /// the consumer's ack floor passes them ([`acked_through`](Self::acked_through)).
    pub fn release(&self, slot: Slot) {
        if let (Some(slot), Some(nats)) = (slot.0, &self.nats) {
            let mut inner = self.lock();
            if inner.slots.get(&slot) == Some(&None) {
                inner.slots.remove(&slot);
                inner.to_clear.push(format!("{}{slot}", nats.prefix));
            }
        }
    }

    /// What ticks produced in markers that earlier runs of this instance
    /// left (a crash, or a pipeline restarted, between a commit and its
    /// publishes), to publish again (their message ids let a JetStream sink
    /// drop what did arrive); the markers are deleted by the next commit.
    /// Their inputs' outputs are published again when the inputs come back.
    pub fn leftovers(&self) -> Vec<Event> {
        let Some(nats) = &self.nats else { return Vec::new() };
        let mut inner = self.lock();
        let earlier: Vec<String> = inner
            .markers
            .keys()
            .filter(|k| k.starts_with(&nats.instance) && !k.starts_with(&nats.prefix))
            .cloned()
            .collect();
        let mut outputs = Vec::new();
        for key in earlier {
            let Some(marker) = inner.markers.get(&key) else { continue };
            outputs.extend(
                marker
                    .outputs
                    .iter()
                    .filter(|(seq, _)| seq.is_none())
                    .flat_map(|(_, events)| events.iter().cloned()),
            );
            // A marker of inputs stays until they are all acknowledged
            // ([`acked_through`](Self::acked_through)): they may come back.
            if marker.inputs.is_empty() {
                inner.to_clear.push(key);
            }
        }
        outputs
    }

    /// The source's consumer has acknowledged every input up to `floor`:
    /// the markers of this instance whose inputs are all at or below it are
    /// no longer needed, this store's and earlier runs'. (Called every
    /// second: it also forgets what is kept for a while.)
    pub fn acked_through(&self, floor: u64) {
        let Some(nats) = &self.nats else { return };
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.forget_old(Instant::now());
        let done: Vec<usize> = inner
            .slots
            .iter()
            .filter(|(_, last)| last.is_some_and(|l| l <= floor))
            .map(|(slot, _)| *slot)
            .collect();
        for slot in done {
            inner.slots.remove(&slot);
            inner.to_clear.push(format!("{}{slot}", nats.prefix));
        }
        let earlier: Vec<String> = inner
            .markers
            .iter()
            .filter(|(key, marker)| {
                key.starts_with(&nats.instance) && !key.starts_with(&nats.prefix) && !marker.inputs.is_empty() && marker.inputs.iter().all(|s| *s <= floor)
            })
            .map(|(key, _)| key.clone())
            .filter(|key| !inner.to_clear.contains(key))
            .collect();
        inner.to_clear.extend(earlier);
    }
}

impl Inner {
    fn new(keep: Duration) -> Inner {
        Inner {
            stages: BTreeMap::new(),
            sizes: HashMap::new(),
            epoch: 0,
            markers: HashMap::new(),
            applied: HashMap::new(),
            marker_revisions: HashMap::new(),
            retired: Retired::new(keep),
            in_flight: HashMap::new(),
            slots: HashMap::new(),
            broken: None,
            to_clear: Vec::new(),
        }
    }

    /// A marker key's new value (`None`: deleted) at `revision`, from the
    /// watch or read from the server; ignored if an as new one was seen.
    fn marker_changed(&mut self, key: String, value: Option<Bytes>, revision: u64) {
        let now = Instant::now();
        let known = self.marker_revisions.get(&key).map_or(0, |(r, _)| *r);
        if revision <= known {
            // Superseded already, so its inputs were acknowledged.
            if let Some(marker) = value.and_then(|v| Marker::decode(&v)) {
                for seq in marker.inputs {
                    if !self.applied.contains_key(&seq) {
                        self.retired.insert(seq, now);
                    }
                }
            }
            return;
        }
        // Whatever the key held before is gone: a marker is deleted or its
        // slot reused only once the ack floor passed its inputs.
        if let Some(old) = self.markers.remove(&key) {
            for seq in old.inputs {
                if self.applied.get(&seq).is_some_and(|k| *k == key) {
                    self.applied.remove(&seq);
                    self.retired.insert(seq, now);
                }
            }
        }
        let marker = value.filter(|v| !v.is_empty()).and_then(|v| Marker::decode(&v));
        self.marker_revisions.insert(key.clone(), (revision, marker.is_none().then_some(now)));
        if let Some(marker) = marker {
            for seq in &marker.inputs {
                self.applied.insert(*seq, key.clone());
            }
            self.markers.insert(key, marker);
        }
    }

    /// The markers as read from the server (after a refused commit): those
    /// the watch has not delivered yet are taken now.
    fn merge_markers(&mut self, markers: Vec<(String, Bytes, u64)>) {
        for (key, value, revision) in markers {
            self.marker_changed(key, Some(value), revision);
        }
    }

    /// Forgets retired inputs and deleted markers' revisions once they can
    /// no longer matter.
    fn forget_old(&mut self, now: Instant) {
        self.retired.prune(now);
        let keep = self.retired.keep();
        self.marker_revisions
            .retain(|_, (_, deleted)| deleted.is_none_or(|at| now.duration_since(at) < keep));
    }

    /// A commit was refused: pending writes go back to their committed
    /// values, and what was staged on them is void.
    fn void(&mut self) {
        self.epoch += 1;
        for (stage, keys) in &mut self.stages {
            let size = self.sizes.entry(stage.clone()).or_default();
            for (key, entry) in keys.iter_mut() {
                if entry.pending > 0 {
                    *size = (*size as i64 + entry_size_of(key, entry.committed.as_ref()) - entry_size_of(key, entry.value.as_ref())).max(0) as u64;
                    entry.value = entry.committed.clone();
                    entry.pending = 0;
                }
            }
        }
    }
}

impl Entry {
    /// The revision a write must expect: the last known one, or 0 once a
    /// deletion has dropped out of the bucket.
    fn expected(&self) -> u64 {
        match self.tombstone_expires {
            Some(at) if Instant::now() > at + Duration::from_secs(5) => 0,
            _ => self.revision,
        }
    }
}

impl StateView for Store {
    fn read(&self, stage: &str, key: &str) -> (Option<Bytes>, ReadAt) {
        let inner = self.lock();
        match inner.stages.get(stage).and_then(|keys| keys.get(key)) {
            None => (None, ReadAt::Revision(0)),
            Some(entry) if entry.pending > 0 => (entry.value.clone(), ReadAt::Pending),
            Some(entry) => (entry.value.clone(), ReadAt::Revision(entry.expected())),
        }
    }

    fn keys(&self, stage: &str, prefix: &str, limit: usize) -> Vec<String> {
        let inner = self.lock();
        let Some(keys) = inner.stages.get(stage) else { return Vec::new() };
        keys.range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.value.is_some())
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn size(&self, stage: &str) -> u64 {
        self.lock().sizes.get(stage).copied().unwrap_or(0)
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// `<stage>.<key>`, the key made safe for NATS KV.
fn full_key(stage: &str, key: &str) -> String {
    format!("{stage}.{}", encode_key(key))
}

fn split_key(full: &str) -> Option<(String, String)> {
    let (stage, key) = full.split_once('.')?;
    Some((stage.to_owned(), decode_key(key)?))
}

/// A key as one KV token: letters, digits, `-`, `_` and `/` stay, every
/// other byte becomes `=XX` (so `.` does not split it and the name stays
/// readable in `nats kv ls`).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

fn decode_key(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_one_readable_token() {
        for key in ["w/1700000000000/p1|s1", "a.b c", "é=x", ""] {
            let encoded = encode_key(key);
            assert!(!encoded.contains('.') && !encoded.contains(' '), "{encoded}");
            assert_eq!(decode_key(&encoded).as_deref(), Some(key));
        }
        assert_eq!(encode_key("w/17/p1"), "w/17/p1");
        assert_eq!(split_key("count.a=2Eb"), Some(("count".into(), "a.b".into())));
    }

    fn marker(inputs: &[u64], output: &str) -> Bytes {
        let outputs = inputs
            .iter()
            .map(|seq| (Some(*seq), vec![Event { subject: output.into(), headers: Vec::new(), payload: Bytes::new() }]))
            .collect();
        Marker { inputs: inputs.to_vec(), outputs }.encode()
    }

    fn verdicts(store: &Store, seqs: &[u64]) -> Vec<String> {
        let inputs: Vec<_> = seqs.iter().map(|s| Some((*s, Instant::now()))).collect();
        let verdicts = store.admit(&inputs);
        store.settled(seqs.iter().copied());
        verdicts
            .into_iter()
            .map(|v| match v {
                Applied::No => "no".to_owned(),
                Applied::InFlight => "in flight".to_owned(),
                Applied::Yes(outputs) => format!("yes {:?}", outputs.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>()),
            })
            .collect()
    }

    fn change(key: &str, value: Option<Bytes>, revision: u64) -> Change {
        Change { key: key.into(), value, revision }
    }

    #[test]
    fn inputs_stay_applied_after_their_marker_is_deleted() {
        let store = Store::memory();
        store.remote(change("_weir.a.1.0", Some(marker(&[5, 6], "out")), 10));
        assert_eq!(verdicts(&store, &[5, 6, 7]), ["yes [\"out\"]", "yes [\"out\"]", "no"]);
        // The ack floor passed 5 and 6; a delivery the server sent before
        // that may still arrive: it is applied, its outputs were published.
        store.remote(change("_weir.a.1.0", None, 11));
        assert_eq!(verdicts(&store, &[5, 6, 7]), ["yes []", "yes []", "no"]);
        // The slot reused by a later commit: the earlier inputs stay applied.
        store.remote(change("_weir.a.1.1", Some(marker(&[8], "out")), 12));
        store.remote(change("_weir.a.1.1", Some(marker(&[9], "again")), 13));
        assert_eq!(verdicts(&store, &[8, 9]), ["yes []", "yes [\"again\"]"]);
        // An input being processed is not handed out twice.
        let now = Instant::now();
        assert!(matches!(store.admit(&[Some((20, now))])[..], [Applied::No]));
        assert!(matches!(store.admit(&[Some((20, now))])[..], [Applied::InFlight]));
    }

    #[test]
    fn markers_read_from_the_server_do_not_undo_what_the_watch_gave() {
        let store = Store::memory();
        store.remote(change("_weir.a.1.0", Some(marker(&[5], "out")), 10));
        store.remote(change("_weir.a.1.0", None, 12));
        store.remote(change("_weir.b.1.0", Some(marker(&[7], "out")), 15));
        // Read from the server before the watch's last changes: an older
        // copy of the deleted marker, and not yet the newest one.
        store
            .lock()
            .merge_markers(vec![("_weir.a.1.0".into(), marker(&[5], "out"), 10), ("_weir.c.1.0".into(), marker(&[9], "new"), 16)]);
        assert!(!store.lock().markers.contains_key("_weir.a.1.0"), "a deleted marker came back");
        assert_eq!(verdicts(&store, &[5, 7, 9]), ["yes []", "yes [\"out\"]", "yes [\"new\"]"]);
        // The watch then delivers what the read gave already: no change.
        store.remote(change("_weir.c.1.0", Some(marker(&[9], "new")), 16));
        assert_eq!(verdicts(&store, &[9]), ["yes [\"new\"]"]);
    }

    fn write(key: &str, value: &'static str, read: Option<u64>) -> Write {
        Write { stage: "count".into(), key: key.into(), value: Some(Bytes::from_static(value.as_bytes())), read, staged: 1 }
    }

    #[test]
    fn merged_commits_write_each_key_once() {
        let mut first = Commit { epoch: 3, stale: false, writes: vec![write("a", "1", Some(10)), write("b", "1", Some(11))] };
        let later = Commit { epoch: 3, stale: false, writes: vec![write("a", "2", None), write("c", "1", Some(0))] };
        assert!(first.merge(later).is_ok());
        let got: Vec<_> = first
            .writes
            .iter()
            .map(|w| (w.key.as_str(), w.value.as_deref().unwrap(), w.read, w.staged))
            .collect();
        // "a": its last value, checked against what the first commit read,
        // standing for both staged writes.
        assert_eq!(got, [("a", &b"2"[..], Some(10), 2), ("b", &b"1"[..], Some(11), 1), ("c", &b"1"[..], Some(0), 1)]);

        let other_epoch = Commit { epoch: 4, stale: false, writes: vec![write("d", "1", Some(0))] };
        assert!(first.merge(other_epoch).is_err(), "staged after a refusal voided the first");
        let void = Commit { epoch: 3, stale: true, writes: Vec::new() };
        assert!(first.merge(void).is_err());
        let many = Commit { epoch: 3, stale: false, writes: (0..MAX_MERGED_WRITES).map(|i| write(&format!("k{i}"), "1", Some(0))).collect() };
        assert!(first.merge(many).is_err(), "more than one atomic batch takes");
    }

    #[test]
    fn memory_state_applies_at_once() {
        let store = Store::memory();
        let write = |key: &str, value: Option<&'static [u8]>| {
            ("count".to_owned(), StateWrite { event: 0, key: key.into(), value: value.map(Bytes::from_static), read: None })
        };
        assert!(
            store
                .stage(0, vec![write("a", Some(b"1")), write("b", Some(b"2")), write("a", Some(b"3"))])
                .is_none()
        );
        assert_eq!(store.get("count", "a").as_deref(), Some(&b"3"[..]));
        assert_eq!(store.keys("count", "", 10), ["a", "b"]);
        assert_eq!(store.size("count"), 4);
        store.stage(0, vec![write("a", None)]);
        assert_eq!(store.keys("count", "", 10), ["b"]);
        assert_eq!(store.size("count"), 2);
    }
}
