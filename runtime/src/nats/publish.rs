//! Sending events: to core NATS, or to JetStream with the server's
//! acknowledgement to wait for.

use async_nats::HeaderMap;
use async_nats::HeaderName;
use async_nats::jetstream;

use super::Nats;
use crate::event::Event;

/// The NATS headers of an output: `headers` in order, then `stamp`, which
/// replaces any of the event's own headers of the same names. Built straight
/// from the pairs, with the stamp's names static, as this runs once per
/// published event.
fn header_map(headers: Vec<(String, String)>, stamp: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if !stamp.iter().any(|(n, _)| *n == name) {
            map.append(name, value);
        }
    }
    for (name, value) in stamp {
        map.insert(HeaderName::from_static(name), *value);
    }
    map
}

/// Publishes events, to core NATS or to JetStream with acknowledgements.
#[derive(Clone)]
pub struct Publisher {
    nats: Nats,
}

/// A publish that was sent; await it for the server's acknowledgement
/// (JetStream) or nothing (core).
pub enum Published {
    /// Core NATS: sent (queued on the connection).
    Sent,
    /// JetStream: the server's acknowledgement is pending.
    Pending(jetstream::context::PublishAckFuture),
}

impl Published {
    /// Waits for the server's acknowledgement, if there is one to wait for.
    pub async fn confirmed(self) -> Result<(), String> {
        match self {
            Published::Sent => Ok(()),
            Published::Pending(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        }
    }
}

impl Publisher {
    /// A publisher on `nats`.
    pub fn new(nats: &Nats) -> Self {
        Publisher { nats: nats.clone() }
    }

    /// Publishes `event` with the headers of `stamp` set (replacing the
    /// event's own of those names); with `jetstream` the server must
    /// acknowledge it (await [`Published::confirmed`]). `msg_id` becomes
    /// `Nats-Msg-Id`.
    pub async fn publish(&self, event: Event, stamp: &[(&'static str, &str)], msg_id: Option<&str>, jetstream: bool) -> Result<Published, String> {
        let mut headers = header_map(event.headers, stamp);
        if let Some(id) = msg_id {
            headers.insert(HeaderName::from_static("Nats-Msg-Id"), id);
        }
        let payload = event.payload;
        if jetstream {
            let ack = self
                .nats
                .js
                .publish_with_headers(event.subject, headers, payload)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Published::Pending(ack))
        } else {
            self.nats
                .client
                .publish_with_headers(event.subject, headers, payload)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Published::Sent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(map: &HeaderMap, name: &str) -> Vec<String> {
        map.get_all(name).map(|v| v.as_str().to_owned()).collect()
    }

    #[test]
    fn the_stamp_replaces_the_events_own_headers_of_its_names() {
        let headers = vec![("trace".to_owned(), "t1".to_owned()), ("weir-version".to_owned(), "old".to_owned()), ("trace".to_owned(), "t2".to_owned())];
        let map = header_map(headers, &[("weir-pipeline", "p"), ("weir-version", "abc123")]);
        assert_eq!(values(&map, "trace"), ["t1", "t2"]);
        assert_eq!(values(&map, "weir-pipeline"), ["p"]);
        assert_eq!(values(&map, "weir-version"), ["abc123"]);
        assert_eq!(map.len(), 3);
    }
}
