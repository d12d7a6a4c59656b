//! The event: weir's own representation of a message, shared by every module.
//!
//! Sources produce [`Event`]s, the pipeline hands them to stages and back, and
//! sinks publish them. Neither wasmtime's nor async-nats's types appear here;
//! the derives let wasmtime move an [`Event`] and a [`StageError`] in and out
//! of the sandbox as they are, shaped as the WIT's `event` and `stage-error`,
//! with no conversion.

use std::fmt;

use bytes::Bytes;
use wasmtime::component::{ComponentType, Lift, Lower};

/// One message: its subject, its headers in order (a name may repeat) and its
/// payload bytes, which weir never interprets.
///
/// The payload is shared, not copied: a message's payload from the NATS
/// client becomes the event's payload as it is, and cloning an event (the
/// outputs of a pipeline without stages, the input a dead letter keeps) does
/// not copy it. A stage gets its own copy inside its sandbox, and what it
/// returns is a new buffer, published as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default, ComponentType, Lift, Lower)]
#[component(record)]
pub struct Event {
    /// The NATS subject the event arrived on or will be published to.
    pub subject: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The payload, untouched.
    pub payload: Bytes,
}

impl Event {
    /// An event with no headers.
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Event { subject: subject.into(), headers: Vec::new(), payload: payload.into() }
    }

    /// The first value of header `name` (header names compare case-sensitively,
    /// as NATS does).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Checks that the event can be published as a NATS message: header
    /// names of printable ASCII without `:` or spaces, values on one line.
    pub fn check_publishable(&self) -> Result<(), String> {
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(format!("header name {name:?} is not allowed: use printable ASCII without ':' or spaces"));
            }
            if value.contains(['\r', '\n']) {
                return Err(format!("header {name:?} has a line break in its value"));
            }
        }
        Ok(())
    }

    /// How many weir pipelines the event has passed through: its `weir-hops`
    /// header; else 1 if it carries `weir-pipeline` (it is the output of a
    /// pipeline that stamps); else 0. Outputs carry `weir-hops` only from
    /// their second hop on (or when `weir-pipeline` is not stamped), so the
    /// common single hop costs no extra header.
    pub fn hops(&self) -> u32 {
        let mut pipeline = false;
        for (name, value) in &self.headers {
            if name == headers::HOPS {
                return value.parse().unwrap_or(0);
            }
            pipeline |= name == headers::PIPELINE;
        }
        u32::from(pipeline)
    }

    /// Replaces every value of header `name` by `value`.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_owned(), value.into()));
    }
}

/// A stage's refusal of one event, as the stage returned it.
#[derive(Debug, Clone, PartialEq, Eq, ComponentType, Lift, Lower)]
#[component(variant)]
pub enum StageError {
    /// The event is bad for this stage: dead-letter it, never retry.
    #[component(name = "invalid")]
    Invalid(String),
    /// A transient failure: redeliver where the source can, else dead-letter.
    #[component(name = "retry")]
    Retry(String),
}

/// What one stage made of one event.
pub type StageResult = Result<Vec<Event>, StageError>;

/// Why an event was dead-lettered, as the `weir-error-kind` header says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The stage returned `invalid`.
    Invalid,
    /// The stage returned `retry` and the source cannot redeliver (or gave up).
    Retry,
    /// The stage trapped (panic, `unreachable`, out-of-bounds access).
    Trap,
    /// The stage ran past its deadline.
    Timeout,
    /// The stage tried to grow its memory past its limit.
    Memory,
    /// The stage returned something weir cannot use (wrong number of results,
    /// an output subject that is not a valid NATS subject).
    BadOutput,
    /// A fresh instance of the stage could not be created to process the event.
    Init,
    /// The input itself could not be read (a malformed `weir exec` line).
    Malformed,
    /// The event passed through weir pipelines `MAX_HOPS` (16) times: pipelines
    /// feed each other (or themselves) in a loop.
    Loop,
}

impl ErrorKind {
    /// Every kind, for metrics and docs.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Invalid,
        ErrorKind::Retry,
        ErrorKind::Trap,
        ErrorKind::Timeout,
        ErrorKind::Memory,
        ErrorKind::BadOutput,
        ErrorKind::Init,
        ErrorKind::Malformed,
        ErrorKind::Loop,
    ];

    /// The kind as it appears in the `weir-error-kind` header.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Retry => "retry",
            ErrorKind::Trap => "trap",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Memory => "memory",
            ErrorKind::BadOutput => "bad-output",
            ErrorKind::Init => "init",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Loop => "loop",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header names weir sets on what it publishes.
pub mod headers {
    /// The pipeline that produced an output or a dead letter.
    pub const PIPELINE: &str = "weir-pipeline";
    /// The version of the pipeline that processed the event.
    pub const VERSION: &str = "weir-version";
    /// The stage that refused the event.
    pub const ERROR_STAGE: &str = "weir-error-stage";
    /// The [`ErrorKind`](super::ErrorKind) of the failure.
    pub const ERROR_KIND: &str = "weir-error-kind";
    /// The failure, in words.
    pub const ERROR: &str = "weir-error";
    /// The subject the dead-lettered event arrived on.
    pub const SUBJECT: &str = "weir-subject";
    /// How many weir pipelines the event has passed through, when more than
    /// `weir-pipeline` already tells (see [`Event::hops`](super::Event::hops)).
    pub const HOPS: &str = "weir-hops";
}

/// An input event that failed, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The input event exactly as it arrived.
    pub event: Event,
    /// The stage that failed it (`input` for unreadable input, `sink` for an
    /// output subject that could not be rendered).
    pub stage: String,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The failure in words: the stage's message or the fault.
    pub message: String,
}

impl DeadLetter {
    /// The message to publish on the dead-letter `subject`: the original
    /// payload and headers plus headers that explain the failure.
    pub fn to_event(&self, pipeline: &str, subject: &str) -> Event {
        let mut out = Event { subject: subject.to_owned(), headers: self.event.headers.clone(), payload: self.event.payload.clone() };
        out.set_header(headers::PIPELINE, pipeline);
        out.set_header(headers::ERROR_STAGE, header_safe(&self.stage));
        out.set_header(headers::ERROR_KIND, self.kind.as_str());
        out.set_header(headers::ERROR, header_safe(&self.message));
        out.set_header(headers::SUBJECT, self.event.subject.as_str());
        out
    }
}

/// NATS header values are one line: fold line breaks and keep them short
/// enough that a runaway message cannot bloat every dead letter.
fn header_safe(text: &str) -> String {
    const MAX: usize = 1024;
    let mut out = String::with_capacity(text.len().min(MAX));
    for c in text.chars() {
        if out.len() + c.len_utf8() > MAX {
            out.push('…');
            break;
        }
        out.push(if c == '\r' || c == '\n' { ' ' } else { c });
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_event_keeps_the_original_and_explains() {
        let mut event = Event::new("orders.new", b"{}".to_vec());
        event.headers.push(("trace".into(), "abc".into()));
        let dl = DeadLetter { event, stage: "tag".into(), kind: ErrorKind::Trap, message: "panicked at src/lib.rs:3:5:\nboom".into() };
        let out = dl.to_event("views", "weir.dlq.views");
        assert_eq!(out.subject, "weir.dlq.views");
        assert_eq!(out.payload, &b"{}"[..]);
        assert_eq!(out.header("trace"), Some("abc"));
        assert_eq!(out.header("weir-error-kind"), Some("trap"));
        assert_eq!(out.header("weir-error"), Some("panicked at src/lib.rs:3:5: boom"));
        assert_eq!(out.header("weir-subject"), Some("orders.new"));
    }

    #[test]
    fn unpublishable_headers_are_named() {
        let mut e = Event::new("a", Vec::new());
        e.headers.push(("ok-name".into(), "fine".into()));
        assert!(e.check_publishable().is_ok());
        e.headers.push(("bad name".into(), "v".into()));
        assert!(e.check_publishable().unwrap_err().contains("\"bad name\""));
        e.headers.pop();
        e.headers.push(("x".into(), "two\nlines".into()));
        assert!(e.check_publishable().unwrap_err().contains("line break"));
    }

    #[test]
    fn header_values_are_capped() {
        let long = "x".repeat(5000);
        assert!(header_safe(&long).len() <= 1024 + '…'.len_utf8());
    }
}
