//! The in-memory mirror of NATS KV buckets that stages read with `kv-get`.
//!
//! Each granted bucket is watched (last value of every key first, then every
//! change), so a lookup is a local map read and an update made with any NATS
//! client reaches the stages within a round trip, without a reload.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Operation};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{Nats, SourceError};
use crate::engine::KvSource;

type Buckets = HashMap<String, HashMap<String, Vec<u8>>>;

/// The mirror. Cheap to clone.
#[derive(Clone, Default)]
pub struct KvMirror {
    buckets: Arc<RwLock<Buckets>>,
}

impl KvSource for KvMirror {
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        let buckets = self.buckets.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match buckets.get(bucket) {
            Some(keys) => Ok(keys.get(key).cloned()),
            None => Err(format!(
                "KV bucket \"{bucket}\" is not mirrored (yet); weir mirrors the buckets granted in pipelines when it starts or reloads them"
            )),
        }
    }
}

impl KvMirror {
    /// Starts mirroring `bucket` (once; later calls are no-ops) and returns
    /// when its current contents are loaded.
    pub async fn mirror(&self, nats: &Nats, bucket: &str, stop: CancellationToken) -> Result<(), SourceError> {
        if self.buckets.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(bucket) {
            return Ok(());
        }
        let store = nats.js.get_key_value(bucket).await.map_err(|e| SourceError::JetStream {
            what: format!("opening KV bucket \"{bucket}\" (`weir run` never creates buckets: load it with `weir kv load {bucket}.json`, or create it with `nats kv add {bucket}`)"),
            message: e.to_string(),
        })?;
        self.buckets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(bucket.to_owned(), HashMap::new());
        let mirror = self.clone();
        let name = bucket.to_owned();
        // The history (the last value of every key) is applied before the
        // bucket is said ready, so the first events already see it.
        let loaded_rx = follow(&store, bucket, stop, "the mirror may lag", move |entry| {
            let mut buckets = mirror.buckets.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let keys = buckets.entry(name.clone()).or_default();
            match entry.operation {
                Operation::Put => {
                    keys.insert(entry.key, entry.value.to_vec());
                }
                Operation::Delete | Operation::Purge => {
                    keys.remove(&entry.key);
                }
            }
        })
        .await
        .map_err(|message| {
            // Not mirrored: the next reload tries again.
            self.buckets.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(bucket);
            SourceError::JetStream { what: format!("watching KV bucket \"{bucket}\""), message }
        })?;
        let _ = tokio::time::timeout(Duration::from_secs(10), loaded_rx).await;
        Ok(())
    }
}

/// Follows every key of `store` (the last value of each first, then every
/// change), handing each entry to `apply` until `stop`. The receiver fires
/// once the last values are applied (at once for an empty bucket); `lag`
/// says in the log what a watch error means for the caller's copy.
pub(super) async fn follow(
    store: &async_nats::jetstream::kv::Store,
    bucket: &str,
    stop: CancellationToken,
    lag: &'static str,
    mut apply: impl FnMut(Entry) + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<()>, String> {
    let mut watch = store.watch_with_history(">").await.map_err(|e| e.to_string())?;
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let mut loaded_tx = Some(loaded_tx);
    if store.status().await.map_err(|e| e.to_string())?.values() == 0 {
        let _ = loaded_tx.take().map(|tx| tx.send(()));
    }
    let name = bucket.to_owned();
    tokio::spawn(async move {
        loop {
            let entry = tokio::select! {
                _ = stop.cancelled() => return,
                entry = watch.next() => entry,
            };
            match entry {
                Some(Ok(entry)) => {
                    // delta 0: the history is replayed.
                    let loaded = entry.delta == 0;
                    apply(entry);
                    if loaded && let Some(tx) = loaded_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Some(Err(e)) => tracing::warn!(bucket = %name, error = %e, "KV watch error; {lag}"),
                None => {
                    tracing::warn!(bucket = %name, "KV watch ended; {lag}");
                    return;
                }
            }
        }
    });
    Ok(loaded_rx)
}

/// What [`load`] did to one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Keys written.
    pub keys: usize,
    /// Whether the bucket had to be created.
    pub created: bool,
}

/// Writes `entries` into KV bucket `bucket`, creating the bucket when it is
/// missing: `weir kv load`, for reference data that stages read with
/// `kv-get`. Existing keys are overwritten; other keys are left alone.
///
/// A missing bucket is created as `nats kv add` would (one value per key,
/// file storage). It is created through its stream, `KV_<bucket>`, rather
/// than with async-nats' `create_key_value`, whose reply parsing fails
/// against nats-server 2.9.
pub async fn load(nats: &Nats, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<Loaded, SourceError> {
    let failed = |what: String| move |e: &dyn std::fmt::Display| SourceError::JetStream { what, message: e.to_string() };
    let (store, created) = match nats.js.get_key_value(bucket).await {
        Ok(store) => (store, false),
        Err(_) => {
            nats.js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: format!("KV_{bucket}"),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: 1,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: async_nats::jetstream::stream::DiscardPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| failed(format!("creating KV bucket \"{bucket}\""))(&e))?;
            let store = nats
                .js
                .get_key_value(bucket)
                .await
                .map_err(|e| failed(format!("opening KV bucket \"{bucket}\""))(&e))?;
            (store, true)
        }
    };
    for (key, value) in entries {
        store
            .put(key, value.clone().into())
            .await
            .map_err(|e| failed(format!("writing key \"{key}\" of KV bucket \"{bucket}\""))(&e))?;
    }
    Ok(Loaded { keys: entries.len(), created })
}
