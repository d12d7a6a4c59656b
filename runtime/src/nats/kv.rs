//! The in-memory mirror of NATS KV buckets that stages read with `kv-get`.
//!
//! Each granted bucket is watched (last value of every key first, then every
//! change), so a lookup is a local map read and an update made with any NATS
//! client reaches the stages within a round trip, without a reload.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
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
            None => Err(format!("KV bucket \"{bucket}\" is not mirrored (yet); weir mirrors the buckets granted in pipelines when it starts or reloads them")),
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
            what: format!("opening KV bucket \"{bucket}\" (weir never creates buckets: create it with `nats kv add {bucket}`)"),
            message: e.to_string(),
        })?;
        let mut watch = store.watch_with_history(">").await.map_err(|e| SourceError::JetStream {
            what: format!("watching KV bucket \"{bucket}\""),
            message: e.to_string(),
        })?;
        self.buckets.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(bucket.to_owned(), HashMap::new());

        // Apply the history (the last value of every key) before saying the
        // bucket is ready, so the first events already see it.
        let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
        let mut loaded_tx = Some(loaded_tx);
        let mirror = self.clone();
        let name = bucket.to_owned();
        let empty = store.status().await.map(|s| s.values() == 0).unwrap_or(false);
        if empty {
            let _ = loaded_tx.take().map(|tx| tx.send(()));
        }
        tokio::spawn(async move {
            loop {
                let entry = tokio::select! {
                    _ = stop.cancelled() => return,
                    entry = watch.next() => entry,
                };
                match entry {
                    Some(Ok(entry)) => {
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
                        // delta 0: the history is replayed; the bucket is ready.
                        if entry.delta == 0
                            && let Some(tx) = loaded_tx.take()
                        {
                            let _ = tx.send(());
                        }
                    }
                    Some(Err(e)) => tracing::warn!(bucket = %name, error = %e, "KV watch error; the mirror may lag"),
                    None => {
                        tracing::warn!(bucket = %name, "KV watch ended; the mirror keeps its last values");
                        return;
                    }
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(10), loaded_rx).await;
        Ok(())
    }
}
