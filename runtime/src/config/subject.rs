//! NATS subjects: validated subscription subjects (with wildcards), publish subjects
//! (without), and the sink's subject templates with `{subject}`-style placeholders.
//!
//! Templates are parsed once at load time into segments, because `render` runs for every
//! output event.

use std::fmt;
use std::str::FromStr;

use serde::de::{Deserialize, Deserializer};

use super::error::{InvalidValue, suggest};
use super::names::StrVisitor;

const SUBJECT_HELP: &str = r#"a subject is tokens separated by single dots, like "orders.created""#;

/// Checks one subject. `wildcards` says whether `*` and `>` are allowed (subscriptions) or
/// not (publishing). Returns whether the subject has a wildcard.
fn check_subject(subject: &str, wildcards: bool) -> Result<bool, InvalidValue> {
    if subject.is_empty() {
        return Err(InvalidValue::new("subject is empty").with_help(SUBJECT_HELP));
    }
    if let Some(bad) = subject.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidValue::new(format!("invalid subject {subject:?}: {bad:?} is not allowed in a subject"))
            .with_help("subjects cannot contain whitespace or control characters"));
    }
    let mut has_wildcards = false;
    let count = subject.split('.').count();
    for (i, token) in subject.split('.').enumerate() {
        if token.is_empty() {
            let what = if i == 0 {
                "starts with a dot"
            } else if i + 1 == count {
                "ends with a dot"
            } else {
                "has an empty token (two dots in a row)"
            };
            return Err(InvalidValue::new(format!("invalid subject {subject:?}: it {what}")).with_help(SUBJECT_HELP));
        }
        let is_wildcard = token == "*" || token == ">";
        if !is_wildcard && token.contains(['*', '>']) {
            return Err(InvalidValue::new(format!("invalid subject {subject:?}: wildcards must be whole tokens, found {token:?}"))
                .with_help(r#""*" matches one token and ">" the rest, each alone between dots, like "orders.*.created""#));
        }
        if is_wildcard {
            if !wildcards {
                return Err(InvalidValue::new(format!("subject {subject:?} contains the wildcard {token:?}"))
                    .with_help("messages are published to this subject, so it must name one subject, without \"*\" or \">\""));
            }
            if token == ">" && i + 1 != count {
                return Err(InvalidValue::new(format!("invalid subject {subject:?}: \">\" must be the last token"))
                    .with_help(r#"">" matches all remaining tokens, like "orders.>"; use "*" to match a single token in the middle"#));
            }
            has_wildcards = true;
        }
    }
    Ok(has_wildcards)
}

/// A NATS subject to subscribe to: dot-separated tokens, where a token may be the wildcard
/// `*` (one token) or, last, `>` (one or more tokens).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    text: String,
    wildcards: bool,
}

impl Subject {
    /// Validates a subscription subject (wildcards allowed).
    pub fn new(subject: impl Into<String>) -> Result<Self, InvalidValue> {
        let text = subject.into();
        let wildcards = check_subject(&text, true)?;
        Ok(Self { text, wildcards })
    }

    /// Validates a publish subject (no wildcards).
    pub fn publish(subject: impl Into<String>) -> Result<Self, InvalidValue> {
        let text = subject.into();
        check_subject(&text, false)?;
        Ok(Self { text, wildcards: false })
    }

    /// The subject as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the subject contains `*` or `>`.
    pub fn has_wildcards(&self) -> bool {
        self.wildcards
    }

    /// Whether a message published on `subject` is delivered to a subscription on `self`,
    /// following NATS wildcard rules.
    pub fn matches(&self, subject: &str) -> bool {
        if !self.wildcards {
            return self.text == subject;
        }
        let mut pattern = self.text.split('.');
        let mut tokens = subject.split('.');
        loop {
            match (pattern.next(), tokens.next()) {
                // `>` needs at least one token, and any token will do.
                (Some(">"), Some(token)) => return !token.is_empty(),
                (Some("*"), Some(token)) if !token.is_empty() => {}
                (Some(p), Some(token)) if p == token => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for Subject {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl FromStr for Subject {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor { expecting: "a NATS subject", parse: Self::new })
    }
}

/// A subject that messages are published to: no wildcards. Deserializes into a [`Subject`].
pub(crate) struct PublishSubject(pub(crate) Subject);

impl<'de> Deserialize<'de> for PublishSubject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(StrVisitor { expecting: "a NATS subject without wildcards", parse: Subject::publish })
            .map(PublishSubject)
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// The event's subject as it leaves the last stage.
    Subject,
    /// The subject the input event arrived on.
    Input,
    /// The N-th token (1-based) of the input subject.
    Token(usize),
}

const PLACEHOLDERS: &[&str] = &["subject", "input"];
const TEMPLATE_HELP: &str =
    "placeholders are {subject} (the event's subject after the stages), {input} (the subject it arrived on) and {1}, {2}, ... (a token of the input subject)";

/// The sink's subject: a publish subject whose tokens may contain placeholders, rendered
/// for each output event. See [`SubjectTemplate::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    text: String,
    segments: Vec<Segment>,
    /// Bytes of literal text, to size the output buffer in one allocation.
    literal_len: usize,
}

impl SubjectTemplate {
    /// Parses and validates a template such as `processed.{subject}` or `out.{2}.{input}`.
    pub fn new(template: impl Into<String>) -> Result<Self, InvalidValue> {
        let text = template.into();
        if text.is_empty() {
            return Err(InvalidValue::new("subject is empty").with_help(SUBJECT_HELP));
        }
        // Validate the literal structure with each placeholder replaced by a plain token,
        // so that "a..{subject}" and "a.*" are rejected with the subject's own messages.
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut skeleton = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(InvalidValue::new(format!("unmatched \"}}\" in subject template {text:?}")).with_help(TEMPLATE_HELP));
            }
            literal.push_str(&rest[..open]);
            skeleton.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = match after.find(['{', '}']) {
                Some(close) if after[close..].starts_with('}') => close,
                _ => {
                    return Err(InvalidValue::new(format!("unclosed \"{{\" in subject template {text:?}"))
                        .with_help("close each placeholder with \"}\", like \"processed.{subject}\""));
                }
            };
            let name = &after[..close];
            let segment = match name {
                "subject" => Segment::Subject,
                "input" => Segment::Input,
                _ => match name.parse::<usize>() {
                    Ok(n) if n >= 1 && name.bytes().all(|b| b.is_ascii_digit()) => Segment::Token(n),
                    _ => {
                        let mut help = String::new();
                        if let Some(close_match) = suggest(name, PLACEHOLDERS) {
                            help = format!("did you mean {{{close_match}}}? ");
                        } else if name == "0" {
                            help = "tokens are numbered from 1. ".to_owned();
                        }
                        help.push_str(TEMPLATE_HELP);
                        return Err(InvalidValue::new(format!("unknown placeholder \"{{{name}}}\" in subject template {text:?}")).with_help(help));
                    }
                },
            };
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal).into()));
            }
            segments.push(segment);
            skeleton.push('x');
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        skeleton.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal.into()));
        }
        check_subject(&skeleton, false).map_err(|e| {
            // Report the template as written, not the skeleton.
            InvalidValue { message: e.message.replace(&format!("{skeleton:?}"), &format!("{text:?}")), help: e.help }
        })?;
        let literal_len = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.len(),
                _ => 0,
            })
            .sum();
        Ok(Self { text, segments, literal_len })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the template has any placeholder (if not, every event goes to one subject).
    pub fn is_static(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Renders the subject for one output event: `subject` is the event's subject after the
    /// last stage, `input` the subject the input event arrived on. Fails if a `{N}` token
    /// is missing from `input` or the result is not a valid publish subject.
    pub fn render(&self, subject: &str, input: &str) -> Result<String, String> {
        let mut out = String::new();
        self.render_into(&mut out, subject, input)?;
        Ok(out)
    }

    /// [`render`](Self::render) into `out`, which is cleared first: a caller
    /// rendering many subjects reuses one buffer instead of allocating each.
    pub fn render_into(&self, out: &mut String, subject: &str, input: &str) -> Result<(), String> {
        out.clear();
        // Exactly what the result needs (a token counts as the whole input):
        // a buffer that already holds a subject of that size does not grow.
        let needed = self.segments.iter().fold(self.literal_len, |n, segment| match segment {
            Segment::Literal(_) => n,
            Segment::Subject => n + subject.len(),
            Segment::Input | Segment::Token(_) => n + input.len(),
        });
        out.reserve(needed);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Subject => out.push_str(subject),
                Segment::Input => out.push_str(input),
                Segment::Token(n) => match input.split('.').nth(n - 1) {
                    Some(token) => out.push_str(token),
                    None => {
                        return Err(format!(
                            "subject template {:?} uses {{{n}}} but the input subject {input:?} has only {} tokens",
                            self.text,
                            input.split('.').count()
                        ));
                    }
                },
            }
        }
        if is_publish_subject(out) {
            Ok(())
        } else {
            Err(format!("subject template {:?} rendered {out:?}, which is not a valid subject to publish to", self.text))
        }
    }
}

/// A fast byte-level check of a rendered subject: non-empty tokens, no whitespace or
/// control characters, no wildcards.
fn is_publish_subject(subject: &str) -> bool {
    let mut token_len = 0usize;
    for b in subject.bytes() {
        match b {
            b'.' if token_len == 0 => return false,
            b'.' => token_len = 0,
            b'*' | b'>' => return false,
            b if b.is_ascii_whitespace() || b.is_ascii_control() => return false,
            _ => token_len += 1,
        }
    }
    token_len > 0
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for SubjectTemplate {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for SubjectTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor { expecting: "a NATS subject, optionally with placeholders", parse: Self::new })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T: fmt::Debug>(result: Result<T, InvalidValue>) -> String {
        result.expect_err("should be invalid").message
    }

    #[test]
    fn valid_subjects() {
        for s in ["a", "orders.created", "a.*.c", "a.>", ">", "*", "*.*", "tracking.product.viewed"] {
            assert!(Subject::new(s).is_ok(), "{s}");
        }
        assert!(!Subject::new("a.b").map(|s| s.has_wildcards()).unwrap_or(true));
        assert!(Subject::new("a.*").map(|s| s.has_wildcards()).unwrap_or(false));
    }

    #[test]
    fn invalid_subjects() {
        assert_eq!(message(Subject::new("a..b")), r#"invalid subject "a..b": it has an empty token (two dots in a row)"#);
        assert_eq!(message(Subject::new(".a")), r#"invalid subject ".a": it starts with a dot"#);
        assert_eq!(message(Subject::new("a.")), r#"invalid subject "a.": it ends with a dot"#);
        assert_eq!(message(Subject::new("a.>.b")), r#"invalid subject "a.>.b": ">" must be the last token"#);
        assert_eq!(message(Subject::new("a b")), r#"invalid subject "a b": ' ' is not allowed in a subject"#);
        assert_eq!(message(Subject::new("a.b*")), r#"invalid subject "a.b*": wildcards must be whole tokens, found "b*""#);
        assert_eq!(message(Subject::new("")), "subject is empty");
        assert_eq!(message(Subject::publish("a.*")), r#"subject "a.*" contains the wildcard "*""#);
        assert!(Subject::publish("weir.dlq.views").is_ok());
    }

    #[test]
    fn matching() {
        let m = |pattern: &str, subject: &str| Subject::new(pattern).map(|p| p.matches(subject)).unwrap_or(false);
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.c"));
        assert!(m("a.*", "a.b"));
        assert!(!m("a.*", "a"));
        assert!(!m("a.*", "a.b.c"));
        assert!(m("a.*.c", "a.b.c"));
        assert!(m("a.>", "a.b"));
        assert!(m("a.>", "a.b.c.d"));
        assert!(!m("a.>", "a"));
        assert!(m(">", "a"));
        assert!(m(">", "a.b"));
        assert!(m("*.>", "a.b"));
        assert!(!m("*.>", "a"));
        assert!(!m("a.*", "a."));
    }

    #[test]
    fn template_render() {
        let t = |s: &str| SubjectTemplate::new(s).expect("valid template");
        assert_eq!(t("processed.{subject}").render("x.y", "in.z"), Ok("processed.x.y".to_owned()));
        assert_eq!(t("out.{input}").render("x", "in.z"), Ok("out.in.z".to_owned()));
        assert_eq!(t("out.{2}.{1}").render("x", "in.z"), Ok("out.z.in".to_owned()));
        assert_eq!(t("p-{1}-q").render("x", "in.z"), Ok("p-in-q".to_owned()));
        assert_eq!(t("static.subject").render("x", "y"), Ok("static.subject".to_owned()));
        assert!(t("static.subject").is_static());
        assert!(!t("a.{1}").is_static());
        assert_eq!(
            t("out.{3}").render("x", "in.z"),
            Err(r#"subject template "out.{3}" uses {3} but the input subject "in.z" has only 2 tokens"#.to_owned())
        );
        assert!(t("out.{subject}").render("", "in").is_err());
        assert!(t("out.{subject}").render("a b", "in").is_err());
        assert!(t("out.{subject}").render("a.*", "in").is_err());
        assert!(t("out.{subject}").render("a..b", "in").is_err());
        assert!(t("{subject}").render("a.", "in").is_err());
    }

    #[test]
    fn template_errors() {
        assert_eq!(
            message(SubjectTemplate::new("processed.{sujbect}")),
            r#"unknown placeholder "{sujbect}" in subject template "processed.{sujbect}""#
        );
        assert_eq!(
            SubjectTemplate::new("a.{sujbect}")
                .expect_err("typo")
                .help
                .map(|h| h.starts_with("did you mean {subject}?")),
            Some(true)
        );
        assert_eq!(message(SubjectTemplate::new("a.{0}")), r#"unknown placeholder "{0}" in subject template "a.{0}""#);
        assert_eq!(message(SubjectTemplate::new("a.{}")), r#"unknown placeholder "{}" in subject template "a.{}""#);
        assert_eq!(message(SubjectTemplate::new("a.{subject")), r#"unclosed "{" in subject template "a.{subject""#);
        assert_eq!(message(SubjectTemplate::new("a.{{subject}")), r#"unclosed "{" in subject template "a.{{subject}""#);
        assert_eq!(message(SubjectTemplate::new("a.subject}")), r#"unmatched "}" in subject template "a.subject}""#);
        assert_eq!(
            message(SubjectTemplate::new("a..{subject}")),
            r#"invalid subject "a..{subject}": it has an empty token (two dots in a row)"#
        );
        assert_eq!(message(SubjectTemplate::new("a.*")), r#"subject "a.*" contains the wildcard "*""#);
        assert_eq!(message(SubjectTemplate::new("")), "subject is empty");
    }
}
