//! Which subjects a JetStream stream captures.
//!
//! A core publish to a subject that a stream captures is stored by the
//! stream, but the publisher is not told whether it was: while the stream
//! has no leader (an election after a node is lost) the server drops the
//! message, and a flush still succeeds. weir would then acknowledge the input
//! of an output or a dead letter that was never stored. So a sink looks up,
//! for each subject it publishes to with core NATS, whether a stream captures
//! it; if one does, it publishes with JetStream acknowledgements instead (and
//! `Nats-Msg-Id`, so a retry is not stored twice).
//!
//! The streams' subjects are read when the sink starts and again every
//! [`REFRESH`]: a stream created later is seen within that time. Answers are
//! kept per subject (at most [`REMEMBERED`] of them), so the lookup costs a
//! hash-map probe per output, and nothing at all while no stream exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::Nats;

/// How often the streams' subjects are read again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Subjects whose answer is remembered; beyond it the memory starts over
/// (a sink template can make any number of subjects).
const REMEMBERED: usize = 16_384;

/// The subjects every stream captures, kept current in the background.
#[derive(Clone, Default)]
pub struct Captures {
    inner: Arc<Inner>,
}

/// Every stream with its subject filters.
type Streams = Arc<Vec<(String, Vec<String>)>>;

#[derive(Default)]
struct Inner {
    /// (stream, its subject filters).
    streams: RwLock<Streams>,
    remembered: Mutex<HashMap<String, Option<Arc<str>>>>,
}

impl Captures {
    /// Reads the streams now, then every [`REFRESH`] until `stop`.
    pub async fn watch(nats: &Nats, stop: CancellationToken) -> Captures {
        let captures = Captures::default();
        captures.refresh(nats).await;
        let (watcher, nats) = (captures.clone(), nats.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(REFRESH) => watcher.refresh(&nats).await,
                }
            }
        });
        captures
    }

    /// Reads every stream's subjects. On failure (no JetStream on the
    /// server, a lost connection) the last known answer stands.
    pub async fn refresh(&self, nats: &Nats) {
        let mut streams = Vec::new();
        let mut list = nats.js.streams();
        while let Some(info) = list.next().await {
            match info {
                Ok(info) => streams.push((info.config.name, info.config.subjects)),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list JetStream streams; keeping what was known of their subjects");
                    return;
                }
            }
        }
        streams.sort();
        let changed = **self.inner.streams.read().unwrap_or_else(std::sync::PoisonError::into_inner) != streams;
        if changed {
            *self.inner.streams.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(streams);
            self.inner.remembered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        }
    }

    /// The stream that captures `subject`, if any.
    pub fn stream_for(&self, subject: &str) -> Option<Arc<str>> {
        let streams = self.inner.streams.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if streams.is_empty() {
            return None;
        }
        let mut remembered = self.inner.remembered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(answer) = remembered.get(subject) {
            return answer.clone();
        }
        let answer = streams
            .iter()
            .find(|(_, filters)| filters.iter().any(|f| matches(f, subject)))
            .map(|(name, _)| Arc::from(name.as_str()));
        if remembered.len() >= REMEMBERED {
            remembered.clear();
        }
        remembered.insert(subject.to_owned(), answer.clone());
        answer
    }
}

/// Whether a message on `subject` (no wildcards) falls under `filter`.
fn matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for part in filter.split('.') {
        match (part, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_nats_wildcards() {
        assert!(matches("dlq.>", "dlq.orders"));
        assert!(matches("dlq.>", "dlq.a.b"));
        assert!(!matches("dlq.>", "dlq"));
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*.c", "a.b.d"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(matches(">", "anything.at.all"));
    }

    #[test]
    fn the_capturing_stream_is_found_and_remembered() {
        let captures = Captures::default();
        assert_eq!(captures.stream_for("dlq.orders"), None, "no streams: nothing captured");
        *captures.inner.streams.write().unwrap() = Arc::new(vec![("DLQ".into(), vec!["dlq.>".into()]), ("OUT".into(), vec!["out.*".into()])]);
        assert_eq!(captures.stream_for("dlq.orders").as_deref(), Some("DLQ"));
        assert_eq!(captures.stream_for("out.x").as_deref(), Some("OUT"));
        assert_eq!(captures.stream_for("out.x.y"), None);
        assert_eq!(captures.inner.remembered.lock().unwrap().len(), 3);
    }
}
