//! The NATS KV bucket that holds a pipeline's state: created by weir with
//! atomic batch publishes allowed, watched into the pipeline's local copy,
//! and written one atomic batch per commit, each key guarded by the
//! revision it was read at.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::kv::Operation;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{Nats, SourceError};

/// How long a deletion's marker stays in the bucket (so that watching copies
/// see it) before the server drops it: deleted keys do not pile up.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(600);

/// The most messages one atomic batch may hold (the server's limit).
pub const MAX_BATCH_WRITES: usize = 1000;

/// One message of a commit.
#[derive(Debug, Clone)]
pub struct KvWrite {
    /// The bucket's key.
    pub key: String,
    /// The value; `None` deletes the key.
    pub value: Option<Bytes>,
    /// The revision the key must still be at (0: the key has no message);
    /// `None`: no check.
    pub expected: Option<u64>,
}

/// A commit that did not go through.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// A key was not at the revision expected: another writer changed it.
    #[error("a key changed since it was read (another weir process wrote it): {0}")]
    Conflict(String),
    /// Refused by weir before it was sent: the batch may have read state
    /// that already counts one of its inputs.
    #[error("{0}")]
    Refused(String),
    /// Anything else: the server is unreachable, the bucket is gone ...
    #[error("{0}")]
    Failed(String),
}

/// What the watch reports for one key.
pub struct Change {
    /// The bucket's key.
    pub key: String,
    /// The value; `None`: deleted.
    pub value: Option<Bytes>,
    /// The key's revision (the stream sequence of its message).
    pub revision: u64,
}

/// A state bucket. Cheap to clone.
#[derive(Clone)]
pub struct StateBucket {
    nats: Nats,
    name: String,
}

impl StateBucket {
    /// Opens the bucket `name`, creating it when it is missing with
    /// `replicas` replicas. Atomic batch publishes need nats-server 2.12 or
    /// later; an older server is told apart with a message saying so.
    pub async fn open(nats: &Nats, name: &str, replicas: usize) -> Result<StateBucket, SourceError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| SourceError::JetStream { what: format!("{what} state bucket \"{name}\""), message: e.to_string() };
        let version = nats.client.server_info().version;
        if !at_least(&version, 2, 12) {
            return Err(SourceError::JetStream {
                what: format!("opening state bucket \"{name}\""),
                message: format!(
                    "stateful stages need nats-server 2.12 or later (they commit state with atomic batch publishes); this server is {version}: upgrade it, or run this pipeline without its stateful stages"
                ),
            });
        }
        let config = async_nats::jetstream::stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: replicas,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            allow_atomic_publish: true,
            allow_message_ttl: true,
            description: Some("weir: state of a pipeline's stateful stages".to_owned()),
            ..Default::default()
        };
        match nats.js.get_stream(format!("KV_{name}")).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(|e| failed("reading", &e))?;
                if !info.config.allow_atomic_publish || !info.config.allow_message_ttl {
                    let mut updated = info.config.clone();
                    updated.allow_atomic_publish = true;
                    updated.allow_message_ttl = true;
                    nats.js.update_stream(updated).await.map_err(|e| failed("updating", &e))?;
                }
            }
            Err(_) => {
                nats.js.create_stream(config).await.map_err(|e| failed("creating", &e))?;
                tracing::info!(bucket = %name, replicas, "created the state bucket");
            }
        }
        Ok(StateBucket { nats: nats.clone(), name: name.to_owned() })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Watches every key (the current value of each first) and hands each
    /// change to `apply`; returns once the current values are applied.
    pub async fn watch(&self, stop: CancellationToken, apply: impl Fn(Change) + Send + 'static) -> Result<(), SourceError> {
        let failed = |e: &dyn std::fmt::Display| SourceError::JetStream { what: format!("watching state bucket \"{}\"", self.name), message: e.to_string() };
        let store = self.nats.js.get_key_value(&self.name).await.map_err(|e| failed(&e))?;
        let lag = "the local copy may lag (a commit against a stale key is refused and retried)";
        let loaded_rx = super::kv::follow(&store, &self.name, stop, lag, move |entry| {
            let value = match entry.operation {
                Operation::Put => Some(entry.value),
                Operation::Delete | Operation::Purge => None,
            };
            apply(Change { key: entry.key, value, revision: entry.revision });
        })
        .await
        .map_err(|e| failed(&e))?;
        tokio::time::timeout(Duration::from_secs(60), loaded_rx)
            .await
            .map_err(|_| failed(&"the current values did not load within 60 s"))?
            .map_err(|_| failed(&"the watch ended while loading"))?;
        Ok(())
    }

    /// Whether the bucket's stream still exists (`Err`: the server did not
    /// say).
    pub async fn exists(&self) -> Result<bool, String> {
        match self.nats.js.get_stream(format!("KV_{}", self.name)).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(_)) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every key starting with `prefix`, its value and revision, as the
    /// server has them now (not through the watch).
    pub async fn markers(&self, prefix: &str) -> Result<Vec<(String, Bytes, u64)>, String> {
        let stream = self.nats.js.get_stream(format!("KV_{}", self.name)).await.map_err(|e| e.to_string())?;
        let subject_prefix = format!("$KV.{}.", self.name);
        let mut subjects = stream.info_with_subjects(format!("{subject_prefix}{prefix}>")).await.map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _) = subject.map_err(|e| e.to_string())?;
            if let Some(key) = subject.strip_prefix(&subject_prefix) {
                keys.push(key.to_owned());
            }
        }
        let mut markers = Vec::with_capacity(keys.len());
        for key in keys {
            if let (Some(value), revision) = self.entry(&key).await? {
                markers.push((key, value, revision));
            }
        }
        Ok(markers)
    }

    /// The current value and revision of `key` (revision 0: no message).
    pub async fn entry(&self, key: &str) -> Result<(Option<Bytes>, u64), String> {
        let store = self.nats.js.get_key_value(&self.name).await.map_err(|e| e.to_string())?;
        match store.entry(key).await.map_err(|e| e.to_string())? {
            None => Ok((None, 0)),
            Some(entry) => Ok((matches!(entry.operation, Operation::Put).then_some(entry.value), entry.revision)),
        }
    }

    /// Writes `writes` as one atomic batch: all of them or none. Returns
    /// the revision of each, in order.
    pub async fn commit(&self, writes: &[KvWrite]) -> Result<Vec<u64>, CommitError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        if writes.len() > MAX_BATCH_WRITES {
            return Err(CommitError::Failed(format!(
                "{} writes in one commit, over the {MAX_BATCH_WRITES} of an atomic batch; lower the pipeline's batch_size",
                writes.len()
            )));
        }
        let batch = format!("weir-{}", next_batch_id());
        let last = writes.len() - 1;
        let timeout = Duration::from_secs(10);
        let losses = self.nats.losses();
        for (index, write) in writes.iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Batch-Id", batch.as_str());
            headers.insert("Nats-Batch-Sequence", (index + 1).to_string().as_str());
            if let Some(expected) = write.expected {
                headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
            }
            if write.value.is_none() {
                headers.insert("KV-Operation", "DEL");
                headers.insert("Nats-TTL", format!("{}s", TOMBSTONE_TTL.as_secs()).as_str());
            }
            let subject = format!("$KV.{}.{}", self.name, write.key);
            let payload = write.value.clone().unwrap_or_default();
            // Only the commit is a request: the server's answer to it says
            // whether the whole batch was stored (a batch it never started
            // is refused there too).
            if index == last {
                headers.insert("Nats-Batch-Commit", "1");
                let request = tokio::time::timeout(timeout, self.nats.client.request_with_headers(subject, headers, payload));
                // A connection lost meanwhile loses the answer too: say so
                // at once rather than after the timeout, while the batch's
                // inputs wait.
                let lost = async {
                    while self.nats.losses() == losses {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                let reply = tokio::select! {
                    reply = request => reply
                        .map_err(|_| CommitError::Failed("no answer to a state commit within 10 s".to_owned()))?
                        .map_err(|e| CommitError::Failed(e.to_string()))?,
                    () = lost => return Err(CommitError::Failed("the connection to NATS was lost during a state commit; whether it was stored is not known, so the batch is processed again".to_owned())),
                };
                let answer: serde_json::Value = if reply.payload.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::from_slice(&reply.payload).map_err(|e| CommitError::Failed(format!("unreadable answer to a state commit: {e}")))?
                };
                if let Some(error) = answer.get("error") {
                    let code = error.get("err_code").and_then(serde_json::Value::as_u64).unwrap_or(0);
                    let text = error.get("description").and_then(serde_json::Value::as_str).unwrap_or("").to_owned();
                    // 10071: wrong last sequence (a key changed since it was read).
                    return Err(if code == 10071 || text.contains("wrong last sequence") {
                        CommitError::Conflict(text)
                    } else {
                        CommitError::Failed(format!("{text} (error {code})"))
                    });
                }
                if index == last {
                    let seq = answer
                        .get("seq")
                        .and_then(serde_json::Value::as_u64)
                        .ok_or_else(|| CommitError::Failed(format!("the server's answer to a state commit has no sequence: {answer}")))?;
                    let count = answer.get("count").and_then(serde_json::Value::as_u64).unwrap_or(writes.len() as u64);
                    if count != writes.len() as u64 {
                        return Err(CommitError::Failed(format!("the server stored {count} of a state commit's {} writes", writes.len())));
                    }
                    let first = seq + 1 - count;
                    return Ok((0..count).map(|i| first + i).collect());
                }
            } else {
                self.nats
                    .client
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(|e| CommitError::Failed(e.to_string()))?;
            }
        }
        unreachable!("the last write returns")
    }
}

/// Whether the server `version` ("2.12.1") is at least `major.minor`.
fn at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-']).map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

fn next_batch_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:x}-{:x}-{n}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_versions_compare() {
        assert!(super::at_least("2.12.0", 2, 12));
        assert!(super::at_least("2.15.1", 2, 12));
        assert!(super::at_least("3.0.0", 2, 12));
        assert!(!super::at_least("2.9.10", 2, 12));
        assert!(!super::at_least("2.11.4-beta", 2, 12));
    }
}
