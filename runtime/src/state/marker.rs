//! A commit's marker: the JetStream inputs it applied and the events they
//! (and a tick) produced, in a small binary form (lengths are u32, big
//! endian; sequences u64, with `u64::MAX` for "from a tick").

use bytes::{BufMut, Bytes, BytesMut};

use crate::event::Event;

/// What one commit applied and produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Marker {
    /// Stream sequences of the inputs whose state it committed.
    pub inputs: Vec<u64>,
    /// Each input's (or, `None`, a tick's) events, as they are published.
    pub outputs: Vec<(Option<u64>, Vec<Event>)>,
}

const VERSION: u8 = 1;

impl Marker {
    /// The events input `seq` produced.
    pub fn outputs_of(&self, seq: u64) -> Vec<Event> {
        self.outputs
            .iter()
            .filter(|(s, _)| *s == Some(seq))
            .flat_map(|(_, events)| events.iter().cloned())
            .collect()
    }

    /// The bytes stored in the bucket.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(VERSION);
        out.put_u32(self.inputs.len() as u32);
        for seq in &self.inputs {
            out.put_u64(*seq);
        }
        out.put_u32(self.outputs.len() as u32);
        for (seq, events) in &self.outputs {
            out.put_u64(seq.unwrap_or(u64::MAX));
            out.put_u32(events.len() as u32);
            for event in events {
                put_bytes(&mut out, event.subject.as_bytes());
                out.put_u32(event.headers.len() as u32);
                for (name, value) in &event.headers {
                    put_bytes(&mut out, name.as_bytes());
                    put_bytes(&mut out, value.as_bytes());
                }
                put_bytes(&mut out, &event.payload);
            }
        }
        out.freeze()
    }

    /// Reads a marker; `None` when the bytes are not one (of this version).
    pub fn decode(bytes: &[u8]) -> Option<Marker> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let inputs = (0..r.u32()?).map(|_| r.u64()).collect::<Option<Vec<_>>>()?;
        let mut outputs = Vec::new();
        for _ in 0..r.u32()? {
            let seq = r.u64()?;
            let mut events = Vec::new();
            for _ in 0..r.u32()? {
                let subject = r.string()?;
                let headers = (0..r.u32()?).map(|_| Some((r.string()?, r.string()?))).collect::<Option<Vec<_>>>()?;
                let payload = Bytes::copy_from_slice(r.bytes()?);
                events.push(Event { subject, headers, payload });
            }
            outputs.push(((seq != u64::MAX).then_some(seq), events));
        }
        Some(Marker { inputs, outputs })
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back() {
        let event = Event { subject: "metrics.view".into(), headers: vec![("a".into(), "1".into())], payload: Bytes::from_static(b"{}") };
        let marker = Marker { inputs: vec![7, 9], outputs: vec![(Some(7), vec![event.clone()]), (None, vec![event.clone(), event])] };
        assert_eq!(Marker::decode(&marker.encode()), Some(marker.clone()));
        assert_eq!(marker.outputs_of(7).len(), 1);
        assert_eq!(marker.outputs_of(9).len(), 0);
        assert_eq!(Marker::decode(b"\x02"), None);
        assert_eq!(Marker::decode(&marker.encode()[..10]), None);
    }
}
