//! The `state` import of stateful stages: reads through the pipeline's
//! state (a [`StateView`]), writes into a per-call overlay that the chain
//! takes back after the call.
//!
//! The chain moves a [`StateCall`] into the instance's store before each
//! call and takes it back after it. Writes are logged with the value they
//! replaced, so that the writes of a call that faulted can be undone
//! ([`StateCall::undo_to`]) and the writes of an event that failed later in
//! the pipeline left out of the commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

/// The longest key a stage may write, in bytes.
pub const MAX_KEY: usize = 1024;

/// What a stage's state looks like before this batch's writes: the
/// pipeline's local copy of its state bucket, committed and pending writes.
pub trait StateView: Send + Sync {
    /// The value of `key` in `stage`'s state.
    fn get(&self, stage: &str, key: &str) -> Option<Bytes> {
        self.read(stage, key).0
    }
    /// The value of `key` in `stage`'s state, and what it was read at: a
    /// write based on it is committed only if the key is still there.
    fn read(&self, stage: &str, key: &str) -> (Option<Bytes>, ReadAt);
    /// Keys of `stage` starting with `prefix`, in byte order, at most `limit`.
    fn keys(&self, stage: &str, prefix: &str, limit: usize) -> Vec<String>;
    /// Bytes of keys and values `stage` holds.
    fn size(&self, stage: &str) -> u64;
}

/// The caps on a stage's state (`limits.state`, `limits.state_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Most bytes of keys and values in all.
    pub total: u64,
    /// Most bytes of one value.
    pub value: u64,
}

/// What a value was read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAt {
    /// This committed revision of the key (0: the key had no value).
    Revision(u64),
    /// A write of an earlier batch, not yet committed.
    Pending,
}

/// One write a stage made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// The event it was made for: its index among the events the chain
    /// passed to the stage in this batch (for a tick, 0).
    pub event: usize,
    /// The stage's key.
    pub key: String,
    /// The new value; `None` deletes.
    pub value: Option<Bytes>,
    /// What the key was first read at in this batch (`None`: the stage
    /// wrote it without reading it).
    pub read: Option<ReadAt>,
}

/// A stage's state during the calls of one batch.
pub struct StateCall {
    view: Arc<dyn StateView>,
    stage: String,
    limits: StateLimits,
    /// Values written in this batch, by key; `None`: deleted.
    overlay: BTreeMap<String, Option<Bytes>>,
    /// Every write, with the overlay entry it replaced (for undo).
    log: Vec<(StateWrite, Option<Option<Bytes>>)>,
    /// Bytes added (or, negative, freed) by the writes in the overlay.
    delta: i64,
    /// What each key read from the view in this batch was read at (the
    /// first read counts).
    reads: std::cell::RefCell<std::collections::HashMap<String, ReadAt>>,
    /// The index, in the batch, of the first event of the current call, and
    /// how many events the call has.
    offset: usize,
    events: usize,
}

impl StateCall {
    /// An empty overlay over `view` for `stage`.
    pub fn new(view: Arc<dyn StateView>, stage: &str, limits: StateLimits) -> Self {
        StateCall {
            view,
            stage: stage.to_owned(),
            limits,
            overlay: BTreeMap::new(),
            log: Vec::new(),
            delta: 0,
            reads: Default::default(),
            offset: 0,
            events: 1,
        }
    }

    /// The next call passes the batch's events `offset..offset + events`.
    pub fn set_call(&mut self, offset: usize, events: usize) {
        self.offset = offset;
        self.events = events.max(1);
    }

    /// How many writes are logged: a mark for [`undo_to`](Self::undo_to).
    pub fn mark(&self) -> usize {
        self.log.len()
    }

    /// Undoes the writes logged after `mark` (a call that faulted).
    pub fn undo_to(&mut self, mark: usize) {
        while self.log.len() > mark {
            let (write, previous) = self.log.pop().expect("longer than mark");
            let now = self.overlay.get(&write.key).cloned().flatten();
            match previous {
                Some(value) => {
                    self.delta += entry_size(&write.key, value.as_ref()) - entry_size(&write.key, now.as_ref());
                    self.overlay.insert(write.key, value);
                }
                None => {
                    let base = self.view.get(&self.stage, &write.key);
                    self.delta += entry_size(&write.key, base.as_ref()) - entry_size(&write.key, now.as_ref());
                    self.overlay.remove(&write.key);
                }
            }
        }
    }

    /// Takes the logged writes, in order, and empties the overlay: the
    /// chain hands the writes of the events that succeeded to the state.
    pub fn take_writes(&mut self) -> Vec<StateWrite> {
        self.overlay.clear();
        self.delta = 0;
        let reads = std::mem::take(&mut *self.reads.borrow_mut());
        self.log
            .drain(..)
            .map(|(mut write, _)| {
                write.read = reads.get(&write.key).copied();
                write
            })
            .collect()
    }

    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        match self.overlay.get(key) {
            Some(value) => value.clone(),
            None => {
                let (value, at) = self.view.read(&self.stage, key);
                self.reads.borrow_mut().entry(key.to_owned()).or_insert(at);
                value
            }
        }
    }

    pub(crate) fn keys(&self, prefix: &str, limit: usize) -> Vec<String> {
        let mut keys: BTreeMap<String, bool> = self
            .view
            .keys(&self.stage, prefix, limit.saturating_add(self.overlay.len()))
            .into_iter()
            .map(|k| (k, true))
            .collect();
        for (key, value) in self.overlay.range(prefix.to_owned()..).take_while(|(k, _)| k.starts_with(prefix)) {
            keys.insert(key.clone(), value.is_some());
        }
        keys.into_iter().filter(|(_, present)| *present).map(|(k, _)| k).take(limit).collect()
    }

    /// Applies one event's writes, all or none.
    pub(crate) fn apply(&mut self, event: u32, writes: Vec<(String, Option<Bytes>)>) -> Result<(), String> {
        let event = event as usize;
        if event >= self.events {
            return Err(format!("state.apply for event {event}, but this call has {} events (indices 0..{})", self.events, self.events));
        }
        let mut delta = 0i64;
        let mut seen: BTreeMap<&str, Option<&Bytes>> = BTreeMap::new();
        for (key, value) in &writes {
            if key.is_empty() || key.len() > MAX_KEY {
                return Err(format!("state key of {} bytes: a key must have 1 to {MAX_KEY} bytes", key.len()));
            }
            if let Some(v) = value
                && v.len() as u64 > self.limits.value
            {
                return Err(format!(
                    "state value for key \"{}\" has {} bytes, over this stage's limits.state_value of {} bytes",
                    shorten(key),
                    v.len(),
                    self.limits.value
                ));
            }
            let before = match seen.get(key.as_str()) {
                Some(v) => v.cloned(),
                None => self.get(key),
            };
            delta += entry_size(key, value.as_ref()) - entry_size(key, before.as_ref());
            seen.insert(key, value.as_ref());
        }
        let used = self.view.size(&self.stage) as i64 + self.delta;
        if delta > 0 && (used + delta) as u64 > self.limits.total {
            return Err(format!(
                "state of stage \"{}\" would grow to {} bytes, over its limits.state of {} bytes; raise the limit, or have the stage delete what it no longer needs",
                self.stage,
                used + delta,
                self.limits.total
            ));
        }
        self.delta += delta;
        for (key, value) in writes {
            let previous = self.overlay.insert(key.clone(), value.clone());
            self.log.push((StateWrite { event: self.offset + event, key, value, read: None }, previous));
        }
        Ok(())
    }
}

/// What a key and its value count against `limits.state`.
pub fn entry_size(key: &str, value: Option<&Bytes>) -> i64 {
    value.map_or(0, |v| (key.len() + v.len()) as i64)
}

fn shorten(key: &str) -> &str {
    match key.char_indices().nth(64) {
        Some((i, _)) => &key[..i],
        None => key,
    }
}

/// A state that lives in memory only: `weir exec`, `weir test`, `weir
/// validate`'s first `init`. Each run starts empty.
#[derive(Default)]
pub struct MemoryState {
    stages: std::sync::Mutex<BTreeMap<String, BTreeMap<String, Bytes>>>,
}

impl MemoryState {
    /// Keeps `writes` of `stage`, in order.
    pub fn commit(&self, stage: &str, writes: &[StateWrite]) {
        let mut stages = self.stages.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let keys = stages.entry(stage.to_owned()).or_default();
        for write in writes {
            match &write.value {
                Some(v) => keys.insert(write.key.clone(), v.clone()),
                None => keys.remove(&write.key),
            };
        }
    }
}

impl StateView for MemoryState {
    fn read(&self, stage: &str, key: &str) -> (Option<Bytes>, ReadAt) {
        let stages = self.stages.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (stages.get(stage).and_then(|keys| keys.get(key)).cloned(), ReadAt::Revision(0))
    }

    fn keys(&self, stage: &str, prefix: &str, limit: usize) -> Vec<String> {
        let stages = self.stages.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(keys) = stages.get(stage) else { return Vec::new() };
        keys.range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn size(&self, stage: &str) -> u64 {
        let stages = self.stages.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        stages.get(stage).map_or(0, |keys| keys.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(limits: StateLimits) -> (Arc<MemoryState>, StateCall) {
        let memory = Arc::new(MemoryState::default());
        memory.commit("count", &[StateWrite { event: 0, key: "a".into(), value: Some(Bytes::from_static(b"1")), read: None }]);
        let call = StateCall::new(memory.clone(), "count", limits);
        (memory, call)
    }

    const ROOMY: StateLimits = StateLimits { total: 1 << 20, value: 1 << 10 };

    #[test]
    fn reads_see_earlier_writes_and_the_view_beneath() {
        let (_, mut call) = call(ROOMY);
        call.set_call(0, 2);
        assert_eq!(call.get("a").as_deref(), Some(&b"1"[..]));
        call.apply(0, vec![("a".into(), Some(Bytes::from_static(b"2"))), ("b".into(), Some(Bytes::from_static(b"x")))])
            .unwrap();
        call.apply(1, vec![("a".into(), None)]).unwrap();
        assert_eq!(call.get("a"), None);
        assert_eq!(call.keys("", 10), ["b"]);
        let writes = call.take_writes();
        assert_eq!(writes.iter().map(|w| (w.event, w.key.as_str())).collect::<Vec<_>>(), [(0, "a"), (0, "b"), (1, "a")]);
    }

    #[test]
    fn a_faulted_call_is_undone() {
        let (_, mut call) = call(ROOMY);
        call.set_call(0, 1);
        call.apply(0, vec![("b".into(), Some(Bytes::from_static(b"1")))]).unwrap();
        let mark = call.mark();
        call.set_call(1, 1);
        call.apply(0, vec![("a".into(), None), ("b".into(), Some(Bytes::from_static(b"2")))]).unwrap();
        call.undo_to(mark);
        assert_eq!(call.get("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(call.get("b").as_deref(), Some(&b"1"[..]));
        assert_eq!(call.take_writes().len(), 1);
    }

    #[test]
    fn limits_refuse_the_whole_event() {
        let (_, mut call) = call(StateLimits { total: 8, value: 4 });
        call.set_call(0, 1);
        let e = call.apply(0, vec![("k".into(), Some(Bytes::from_static(b"12345")))]).unwrap_err();
        assert!(e.contains("limits.state_value of 4 bytes"), "{e}");
        // "a1" holds 2 bytes; 2 + 3 + 4 = 9 > 8.
        let e = call
            .apply(0, vec![("ok".into(), Some(Bytes::from_static(b"1"))), ("kkk".into(), Some(Bytes::from_static(b"1234")))])
            .unwrap_err();
        assert!(e.contains("over its limits.state of 8 bytes"), "{e}");
        assert_eq!(call.get("ok"), None, "nothing of a refused event is kept");
        let e = call.apply(3, vec![]).unwrap_err();
        assert!(e.contains("event 3"), "{e}");
    }
}
