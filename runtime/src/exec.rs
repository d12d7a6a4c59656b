//! `weir exec`: one pipeline over events read from a file or stdin, no NATS.
//!
//! This is the plugin author's test loop. Input is one event per line, either
//! an envelope or a bare JSON payload:
//!
//! ```text
//! {"subject": "orders.new", "headers": {"id": "7"}, "payload": {"price": 12}}
//! {"price": 12}                       (with --subject orders.new)
//! ```
//!
//! An envelope's payload is `payload` (any JSON, published as written),
//! `payload_text` (a string, published as its UTF-8 bytes) or
//! `payload_base64` (any bytes). Outputs and dead letters are written as
//! envelopes in the same form, exactly what `weir run` would publish, so the
//! output of one `exec` can feed another.

use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::event::{DeadLetter, ErrorKind, Event};
use crate::pipeline::{Blueprint, Outcome};

/// How `weir exec` reads its input.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Subject for bare payload lines, and for envelopes without one.
    pub subject: Option<String>,
    /// Subject of dead letters; `None` keeps the input's subject (the
    /// `weir-error-*` headers still explain the failure).
    pub dead_letter_subject: Option<String>,
}

/// What `weir exec` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Input events read (malformed lines included).
    pub inputs: u64,
    /// Output events written.
    pub outputs: u64,
    /// Inputs that produced no output.
    pub dropped: u64,
    /// Inputs dead-lettered (malformed lines included).
    pub dead_lettered: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} in, {} out, {} dropped, {} dead-lettered in {:.1} ms",
            self.inputs,
            self.outputs,
            self.dropped,
            self.dead_lettered,
            secs * 1000.0
        )?;
        if secs > 0.0 && self.inputs > 0 {
            write!(f, " ({:.0} events/s)", self.inputs as f64 / secs)?;
        }
        Ok(())
    }
}

/// The contents of one KV bucket: `(key, value)`.
pub type KvEntries = Vec<(String, Vec<u8>)>;

/// KV buckets served from files, for `weir exec --kv`: the plugin author's
/// stand-in for weir run's mirror of NATS KV.
#[derive(Debug, Default)]
pub struct FileKv {
    buckets: std::collections::HashMap<String, std::collections::HashMap<String, Vec<u8>>>,
}

impl FileKv {
    /// Builds the buckets from `(bucket, [(key, value)])`.
    pub fn load(buckets: &[(String, KvEntries)]) -> FileKv {
        FileKv {
            buckets: buckets
                .iter()
                .map(|(bucket, entries)| (bucket.clone(), entries.iter().cloned().collect()))
                .collect(),
        }
    }
}

impl crate::engine::KvSource for FileKv {
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.buckets.get(bucket) {
            Some(keys) => Ok(keys.get(key).cloned()),
            None => Err(format!("KV bucket \"{bucket}\" is not loaded: give it to weir exec with --kv {bucket}.json")),
        }
    }
}

/// The time `weir exec` and `weir test` give the last `tick`, after the
/// inputs (ms since the epoch, 2^53: about the year 287,000): every window
/// a stage keeps open is over by then.
pub const END_OF_TIME_MS: u64 = 1 << 53;

/// Runs `blueprint` over every line of `input`, writing outputs to `out` and
/// dead letters to `dead`, one JSON envelope per line. Stages with a timer
/// get one last `tick` at [`END_OF_TIME_MS`] after the last line.
///
/// Lines are read on their own thread and handed over in batches of whatever
/// is waiting (up to the pipeline's batch size), so an interactive session
/// sees each event's result at once while a file is processed in full batches.
pub fn run(
    blueprint: &Blueprint,
    options: &ExecOptions,
    input: impl BufRead + Send + 'static,
    out: &mut dyn Write,
    dead: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut chain = blueprint.chain();
    let mut summary = Summary::default();
    let (tx, rx) = mpsc::sync_channel::<io::Result<(usize, Vec<u8>)>>(blueprint.batch_size() * 4);
    std::thread::Builder::new().name("weir-exec-input".into()).spawn(move || {
        for (index, line) in input.split(b'\n').enumerate() {
            let stop = line.is_err();
            if tx.send(line.map(|l| (index + 1, l))).is_err() || stop {
                return;
            }
        }
    })?;

    let dead_subject = |event: &Event| options.dead_letter_subject.clone().unwrap_or_else(|| event.subject.clone());
    while let Ok(first) = rx.recv() {
        let mut lines = vec![first?];
        // Lines already read make the batch; a line still on its way (the
        // reader thread was not scheduled yet) gets a few milliseconds, so
        // that a file is batched the same way on a busy machine. From an
        // interactive stdin this adds at most that to a batch.
        while lines.len() < blueprint.batch_size() {
            match rx.recv_timeout(std::time::Duration::from_millis(5)) {
                Ok(line) => lines.push(line?),
                Err(_) => break,
            }
        }
        let mut events = Vec::with_capacity(lines.len());
        for (number, line) in lines {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            summary.inputs += 1;
            match parse_line(&line, options.subject.as_deref()) {
                Ok(event) => events.push(event),
                Err(message) => {
                    summary.dead_lettered += 1;
                    let letter = DeadLetter {
                        event: Event::new(options.subject.clone().unwrap_or_default(), trim_newline(line).to_vec()),
                        stage: "input".into(),
                        kind: ErrorKind::Malformed,
                        message: format!("line {number}: {message}"),
                    };
                    let subject = dead_subject(&letter.event);
                    write_line(dead, &letter.to_event(blueprint.name(), &subject))?;
                }
            }
        }
        for outcome in chain.process(events) {
            if matches!(&outcome, Outcome::Done(outputs) if outputs.is_empty()) {
                summary.dropped += 1;
            }
            write_outcome(outcome, &mut summary, out, dead, &dead_subject, blueprint.name())?;
        }
        out.flush()?;
        dead.flush()?;
    }
    // The end of the input is the end of time: stages with a timer tick once
    // more, so that every window still open closes and is printed.
    for outcome in chain.tick(END_OF_TIME_MS) {
        write_outcome(outcome, &mut summary, out, dead, &dead_subject, blueprint.name())?;
    }
    out.flush()?;
    dead.flush()?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Writes what became of one input: its outputs to `out`, or its dead
/// letter to `dead`, and counts them in `summary`.
fn write_outcome(
    outcome: Outcome,
    summary: &mut Summary,
    out: &mut dyn Write,
    dead: &mut dyn Write,
    dead_subject: &dyn Fn(&Event) -> String,
    pipeline: &str,
) -> io::Result<()> {
    match outcome {
        Outcome::Done(outputs) => {
            summary.outputs += outputs.len() as u64;
            for event in &outputs {
                write_line(out, event)?;
            }
        }
        Outcome::Dead(letter) => {
            summary.dead_lettered += 1;
            let subject = dead_subject(&letter.event);
            write_line(dead, &letter.to_event(pipeline, &subject))?;
        }
    }
    Ok(())
}

fn trim_newline(mut line: Vec<u8>) -> Vec<u8> {
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    line
}

/// Envelope keys; an object with a payload key and nothing but these is an
/// envelope, anything else is a bare payload.
const ENVELOPE_KEYS: [&str; 5] = ["subject", "headers", "payload", "payload_text", "payload_base64"];

/// Reads one input line into an event.
pub fn parse_line(line: &[u8], default_subject: Option<&str>) -> Result<Event, String> {
    let line = trim_newline(line.to_vec());
    let value: Value = serde_json::from_slice(&line).map_err(|e| format!("not JSON: {e}"))?;
    let envelope = match &value {
        Value::Object(map)
            if map.keys().all(|k| ENVELOPE_KEYS.contains(&k.as_str()))
                && ["payload", "payload_text", "payload_base64"].iter().any(|k| map.contains_key(*k)) =>
        {
            Some(map)
        }
        _ => None,
    };
    let Some(map) = envelope else {
        let subject =
            default_subject.ok_or("not an envelope ({\"subject\": ..., \"headers\": {...}, \"payload\": ...}); pass --subject to read bare payloads")?;
        return Ok(Event::new(subject, line));
    };

    let subject = match map.get("subject") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => return Err(format!("\"subject\" must be a non-empty string, not {other}")),
        None => default_subject.ok_or("the envelope has no \"subject\" and no --subject was given")?.to_owned(),
    };
    let headers = match map.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => read_headers(h)?,
        Some(other) => return Err(format!("\"headers\" must be an object of strings, not {other}")),
    };
    let present: Vec<&str> = ["payload", "payload_text", "payload_base64"].into_iter().filter(|k| map.contains_key(*k)).collect();
    if present.len() > 1 {
        return Err(format!("the envelope has both {:?} and {:?}; give one payload", present[0], present[1]));
    }
    let payload = match (present[0], &map[present[0]]) {
        // As written, byte for byte (key order and all), not re-serialised.
        ("payload", _) => raw_payload(&line)?,
        ("payload_text", Value::String(s)) => s.clone().into_bytes(),
        ("payload_base64", Value::String(s)) => BASE64.decode(s).map_err(|e| format!("\"payload_base64\" is not base64: {e}"))?,
        (key, other) => return Err(format!("{key:?} must be a string, not {other}")),
    };
    Ok(Event { subject, headers, payload: payload.into() })
}

fn raw_payload(line: &[u8]) -> Result<Vec<u8>, String> {
    #[derive(serde::Deserialize)]
    struct PayloadOnly<'a> {
        #[serde(borrow)]
        payload: &'a serde_json::value::RawValue,
    }
    let raw: PayloadOnly<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    Ok(raw.payload.get().as_bytes().to_vec())
}

fn read_headers(h: &Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::with_capacity(h.len());
    for (name, value) in h {
        match value {
            Value::String(v) => headers.push((name.clone(), v.clone())),
            Value::Array(values) => {
                for v in values {
                    let Value::String(v) = v else {
                        return Err(format!("header {name:?}: values must be strings, not {v}"));
                    };
                    headers.push((name.clone(), v.clone()));
                }
            }
            other => return Err(format!("header {name:?}: value must be a string or a list of strings, not {other}")),
        }
    }
    Ok(headers)
}

/// The envelope of `event`, as one JSON line. A JSON payload is embedded as
/// it is (key order kept) unless it spans several lines; other payloads
/// become `payload_text` or `payload_base64`.
pub fn envelope(event: &Event) -> String {
    let mut headers = Map::new();
    for (name, value) in &event.headers {
        match headers.get_mut(name) {
            None => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
            Some(Value::Array(values)) => values.push(Value::String(value.clone())),
            Some(first) => {
                let first = first.take();
                headers.insert(name.clone(), Value::Array(vec![first, Value::String(value.clone())]));
            }
        }
    }
    let subject = serde_json::to_string(&event.subject).expect("strings serialise");
    let headers = Value::Object(headers).to_string();
    // JSON is embedded only when `parse_line` reads it back the same: as
    // serde_json reads it into a value (not every syntactically valid text
    // is: `1e400`, `"\ud800"`), and without space around it, which the
    // envelope would not keep.
    let json = serde_json::from_slice::<Value>(&event.payload).ok();
    let payload = match (json, std::str::from_utf8(&event.payload)) {
        (Some(_), Ok(text)) if !text.contains(['\n', '\r']) && text.trim() == text => format!("\"payload\":{text}"),
        (Some(value), Ok(text)) if text.contains(['\n', '\r']) => format!("\"payload\":{value}"),
        (_, Ok(text)) => format!("\"payload_text\":{}", Value::String(text.to_owned())),
        (_, Err(_)) => format!("\"payload_base64\":\"{}\"", BASE64.encode(&event.payload)),
    };
    format!("{{\"subject\":{subject},\"headers\":{headers},{payload}}}")
}

fn write_line(w: &mut dyn Write, event: &Event) -> io::Result<()> {
    w.write_all(envelope(event).as_bytes())?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_and_bare_payloads() {
        let e = parse_line(br#"{"subject":"a.b","headers":{"x":"1","y":["2","3"]},"payload":{"k":1}}"#, None).unwrap();
        assert_eq!(e.subject, "a.b");
        assert_eq!(e.headers, vec![("x".into(), "1".into()), ("y".into(), "2".into()), ("y".into(), "3".into())]);
        assert_eq!(e.payload, &br#"{"k":1}"#[..]);

        let e = parse_line(br#"{"z":1, "a":2}"#, Some("s")).unwrap();
        assert_eq!(e.payload, &br#"{"z":1, "a":2}"#[..], "bare payloads are kept byte for byte");

        let e = parse_line(br#"{"subject":"a","payload_base64":"/wA="}"#, None).unwrap();
        assert_eq!(e.payload, vec![0xff, 0]);
    }

    #[test]
    fn malformed_lines_say_why() {
        assert!(parse_line(b"{nope", None).unwrap_err().starts_with("not JSON"));
        assert!(parse_line(br#"{"price":1}"#, None).unwrap_err().contains("--subject"));
        assert!(
            parse_line(br#"{"subject":"a","payload":1,"payload_text":"x"}"#, None)
                .unwrap_err()
                .contains("give one payload")
        );
        assert!(
            parse_line(br#"{"subject":"a","headers":{"h":1},"payload":1}"#, None)
                .unwrap_err()
                .contains("header \"h\"")
        );
    }

    #[test]
    fn envelope_round_trips_every_kind_of_payload() {
        for payload in [br#"{"z":1,"a":[1,2]}"#.to_vec(), b"plain text".to_vec(), vec![0xff, 0xfe, 0], Vec::new(), b"{\n\"a\": 1\n}".to_vec()] {
            let mut event = Event::new("a.b", payload.clone());
            event.headers = vec![("h".into(), "1".into()), ("h".into(), "2".into())];
            let line = envelope(&event);
            assert!(!line.contains('\n'));
            let back = parse_line(line.as_bytes(), None).unwrap();
            assert_eq!(back.headers, event.headers);
            if payload.starts_with(b"{\n") {
                assert_eq!(back.payload, &br#"{"a":1}"#[..]);
            } else {
                assert_eq!(back.payload, payload, "{line}");
            }
        }
        assert!(envelope(&Event::new("a", br#"{"z":1,"a":2}"#.to_vec())).contains(r#""payload":{"z":1,"a":2}"#));
    }

    /// JSON that serde_json cannot read into a value, or with space around
    /// it, is written as text: read back byte for byte (the first of these
    /// once panicked, the others did not read back).
    #[test]
    fn envelope_keeps_what_it_cannot_embed() {
        for payload in [&b"[\n1e400\n]"[..], b"1e400", br#""\ud800""#, b" {}", b"[1]\t"] {
            let line = envelope(&Event::new("a", payload.to_vec()));
            assert!(line.contains("\"payload_text\":"), "{line}");
            assert_eq!(parse_line(line.as_bytes(), None).unwrap().payload, payload, "{line}");
        }
    }
}
