//! Property tests of every parser of operator or untrusted text: pipeline
//! files and `weir.toml`, subjects and subject templates, durations and
//! sizes, and `weir exec`'s input lines.
//!
//! Inputs are the snapshot tests' files (`tests/config_errors/`) mutated
//! (bytes changed, files cut short, lines inserted, values replaced),
//! arbitrary text, and values built to be valid. Whatever the input: no
//! panic, and a rejection is an error that says what is wrong, and where
//! for a file.
//!
//! Each property runs 256 cases by default; set `PROPTEST_CASES` for more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use weir::config::{self, ConfigError, Subject, SubjectTemplate};
use weir::event::Event;
use weir::exec;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/config_errors");

// ---- files: mutations of the snapshot tests' inputs --------------------------------------

/// The snapshot tests' inputs: (path, text, read as weir.toml).
fn seeds() -> Vec<(PathBuf, String, bool)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DIR)
        .expect("fixture directory")
        .chain(std::fs::read_dir(Path::new(DIR).join("valid")).expect("valid fixtures"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture text");
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let global = name.starts_with("global-") || name.starts_with("weir-");
            (path, text, global)
        })
        .collect()
}

/// Keys a pipeline file or weir.toml may hold, and some it may not.
const KEYS: &[&str] = &[
    "name",
    "batch_size",
    "ordered",
    "subject",
    "queue",
    "stream",
    "durable",
    "filter_subject",
    "ack_wait",
    "max_deliver",
    "max_ack_pending",
    "deliver",
    "plugin",
    "limits",
    "timeout",
    "memory",
    "config",
    "grants",
    "dirs",
    "kv",
    "stamp",
    "instance",
    "pipelines",
    "workers",
    "io_threads",
    "shutdown_timeout",
    "cache_dir",
    "url",
    "creds",
    "nkey",
    "token",
    "user",
    "password",
    "ca",
    "cert",
    "key",
    "required",
    "address",
    "enabled",
    "source",
    "sink",
    "stages",
    "dead_letter",
    "nats",
    "metrics",
    "tls",
    "unknown",
];

const HEADERS: &[&str] = &["[source]", "[[stages]]", "[sink]", "[dead_letter]", "[nats]", "[nats.tls]", "[metrics]", "[limits]", "[[sink]]", "[stages]"];

/// A TOML value, often of the right kind for some key, sometimes not.
fn value() -> impl Strategy<Value = String> {
    let text = "[a-zA-Z0-9_.*>{}:/@ -]{0,12}";
    prop_oneof![
        text.prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "65",
            "10000000",
            "9223372036854775807",
            "1.5",
            "-0.0",
            "nan",
            "inf",
            "true",
            "false",
            "\"20ms\"",
            "\"0s\"",
            "\"61s\"",
            "\"1h\"",
            "\"64MiB\"",
            "\"5GiB\"",
            "\"1.5MiB\"",
            "\"mb\"",
            "\"\"",
            "\"out.{subject}\"",
            "\"out.{9}\"",
            "\"{input}\"",
            "\"a.>\"",
            "\">\"",
            "\"a..b\"",
            "\"all\"",
            "\"new\"",
            "{ start_sequence = 42 }",
            "{ start_time = 2024-05-01T00:00:00Z }",
            "{}",
            "[]",
            "[1, \"a\"]",
            "{ timeout = \"20ms\", memory = \"32MiB\" }",
            "{ dirs = [\".\"] }",
            "2024-05-01T00:00:00Z",
            "2024-05-01",
            "10:30:00",
            "\"127.0.0.1:0\"",
            "\"nats://u:p@h:4222\"",
            "'''multi\nline'''",
            "\"\\u00e9\"",
            "\"tab\\there\"",
            "{ a = { b = { c = [[1]] } } }",
        ])
        .prop_map(str::to_owned),
    ]
}

/// One change to a file's text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at (an offset modulo the length) with another.
    Byte(usize, u8),
    /// Cut the text at an offset.
    Truncate(usize),
    /// Insert a line (`key = value` or a table header) before a line.
    Insert(usize, String),
    /// Give the n-th `key = value` line another value.
    Value(usize, String),
    /// Delete a line.
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let line = prop_oneof![
        (prop::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        prop::sample::select(HEADERS).prop_map(str::to_owned),
        "[ -~]{0,20}",
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Byte(at, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), line).prop_map(|(at, l)| Mutation::Insert(at, l)),
        (any::<usize>(), value()).prop_map(|(at, v)| Mutation::Value(at, v)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn apply(text: &str, mutation: &Mutation) -> String {
    match mutation {
        Mutation::Byte(at, b) => {
            let mut bytes = text.as_bytes().to_vec();
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = *b;
            }
            // The parsers take text: a file that is not UTF-8 is refused
            // before them, when read.
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Mutation::Truncate(at) => {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text[..at].to_owned()
        }
        Mutation::Insert(at, line) => {
            let mut lines: Vec<&str> = text.lines().collect();
            let at = at % (lines.len() + 1);
            lines.insert(at, line);
            lines.join("\n")
        }
        Mutation::Value(at, value) => {
            let lines: Vec<&str> = text.lines().collect();
            let assignments: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains('=')).collect();
            if assignments.is_empty() {
                return text.to_owned();
            }
            let target = assignments[at % assignments.len()];
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| match l.split_once('=') {
                    Some((key, _)) if i == target => format!("{key}= {value}"),
                    _ => (*l).to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Mutation::Delete(at) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let at = at % lines.len();
                lines.remove(at);
            }
            lines.join("\n")
        }
    }
}

/// What every rejection of a file must be: about that file, with a message,
/// and when it has a line, one that exists, shown as it is in the file.
fn check_file_error(error: &ConfigError, file: &Path, text: &str) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    prop_assert_eq!(&error.file, file);
    prop_assert!(!error.message.trim().is_empty(), "empty message: {}", shown);
    prop_assert!(shown.starts_with(&file.display().to_string()), "{}", shown);
    let lines = text.split('\n').count();
    match error.line {
        Some(line) => {
            prop_assert!(line >= 1 && line <= lines, "line {} of {}: {}", line, lines, shown);
            prop_assert!(error.column.is_some_and(|c| c >= 1), "{}", shown);
            prop_assert!(shown.contains(&format!(":{line}:")), "{}", shown);
            let snippet = error.snippet.as_ref().expect("a snippet with every line");
            prop_assert_eq!(snippet.line, line);
            prop_assert!(snippet.width >= 1);
        }
        // Without a line, the error is about the file as a whole: a table
        // or key that is missing, a plugin path, or two files.
        None => prop_assert!(error.message.contains("missing") || error.key.is_none(), "no line for: {}", shown),
    }
    Ok(())
}

#[allow(clippy::result_large_err)] // what an operator reads; built only when a file is wrong
fn parse(text: &str, file: &Path, global: bool) -> Result<(), ConfigError> {
    if global { config::parse_global(text, file).map(|_| ()) } else { config::parse_pipeline(text, file).map(|_| ()) }
}

proptest! {
    /// Changed snapshot inputs, pipelines and weir.toml alike: parsed or
    /// rejected with a located error, never a panic.
    #[test]
    fn mutated_config_files_are_parsed_or_rejected_clearly(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds();
        let (file, text, global) = &seeds[seed.index(seeds.len())];
        let text = mutations.iter().fold(text.clone(), |text, m| apply(&text, m));
        if let Err(error) = parse(&text, file, *global) {
            check_file_error(&error, file, &text)?;
        }
    }

    /// Any text at all, as a pipeline file and as weir.toml.
    #[test]
    fn any_text_is_parsed_or_rejected_clearly(text in "(?s).{0,200}", global in any::<bool>()) {
        let file = Path::new(DIR).join("valid/any.toml");
        if let Err(error) = parse(&text, &file, global) {
            check_file_error(&error, &file, &text)?;
        }
    }

    /// weir.toml's secrets stay out of its error messages, wherever the
    /// error is.
    #[test]
    fn weir_toml_errors_do_not_show_the_password(mutations in prop::collection::vec(mutation(), 1..3)) {
        let file = Path::new(DIR).join("valid/weir-full.toml");
        let text = std::fs::read_to_string(&file).expect("fixture");
        let text = mutations.iter().fold(text, |text, m| apply(&text, m));
        // Only while the password is still written as the value of a key
        // that names a secret: a mutation may turn it into something else.
        let written = text.lines().any(|l| l.contains("password = \"hunter2\""));
        if let (true, Err(error)) = (written, config::parse_global(&text, &file)) {
            let shown = error.to_string();
            prop_assert!(!shown.contains("hunter2"), "{}", shown);
        }
    }
}

// ---- subjects -----------------------------------------------------------------------------

/// A token of a subject as a test writes it: short, from a small alphabet,
/// so that patterns and subjects often match.
fn token() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab", "c1", "-", "_"]).prop_map(str::to_owned)
}

/// A valid subscription subject: tokens, `*` anywhere, `>` last.
fn pattern() -> impl Strategy<Value = String> {
    (prop::collection::vec(prop_oneof![3 => token(), 1 => Just("*".to_owned())], 0..5), prop::bool::weighted(0.3)).prop_filter_map(
        "a subject has a token",
        |(mut tokens, tail)| {
            if tail {
                tokens.push(">".to_owned());
            }
            (!tokens.is_empty()).then(|| tokens.join("."))
        },
    )
}

fn publish_subject() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..6).prop_map(|t| t.join("."))
}

/// NATS matching, written from its rules: `*` takes one token, `>` one or
/// more, any other token itself.
fn reference_matches(pattern: &[&str], subject: &[&str]) -> bool {
    match (pattern.split_first(), subject.split_first()) {
        (Some((&">", _)), Some(_)) => true,
        (Some((&"*", p)), Some((_, s))) => reference_matches(p, s),
        (Some((literal, p)), Some((token, s))) => literal == token && reference_matches(p, s),
        (None, None) => true,
        _ => false,
    }
}

/// A subscription subject's rules, written out: non-empty tokens without
/// whitespace or control characters, wildcards as whole tokens, `>` last.
fn reference_valid(subject: &str, wildcards: bool) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    !subject.is_empty()
        && !subject.chars().any(|c| c.is_whitespace() || c.is_control())
        && tokens.iter().enumerate().all(|(i, t)| {
            !t.is_empty()
                && match *t {
                    "*" => wildcards,
                    ">" => wildcards && i + 1 == tokens.len(),
                    _ => !t.contains(['*', '>']),
                }
        })
}

/// Text that is often almost a subject.
fn subject_like() -> impl Strategy<Value = String> {
    prop_oneof!["[ab.*> \t{}0-9]{0,12}", "(?s).{0,16}", pattern()]
}

proptest! {
    /// Any text is a subject or a clear error, by the rules written out.
    #[test]
    fn subjects_follow_their_rules(text in subject_like()) {
        for wildcards in [true, false] {
            let parsed = if wildcards { Subject::new(text.clone()) } else { Subject::publish(text.clone()) };
            prop_assert_eq!(parsed.is_ok(), reference_valid(&text, wildcards), "{:?}: {:?}", text, parsed);
            match parsed {
                Ok(subject) => {
                    prop_assert_eq!(subject.as_str(), text.as_str());
                    prop_assert_eq!(subject.to_string(), text.clone());
                    prop_assert_eq!(subject.has_wildcards(), text.split('.').any(|t| t == "*" || t == ">"));
                    prop_assert_eq!(text.parse::<Subject>().ok(), Subject::new(text.clone()).ok());
                }
                Err(error) => {
                    prop_assert!(!error.message.is_empty());
                    if !text.is_empty() {
                        let quoted = format!("{text:?}");
                        prop_assert!(error.message.contains(&quoted), "{}", error.message);
                    }
                }
            }
        }
    }

    /// `matches` agrees with NATS's rules, written out.
    #[test]
    fn matching_follows_nats_rules(pattern in pattern(), subject in publish_subject()) {
        let parsed = Subject::new(pattern.clone()).expect("valid by construction");
        let p: Vec<&str> = pattern.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        prop_assert_eq!(parsed.matches(&subject), reference_matches(&p, &s), "{} on {}", pattern, subject);
    }

    /// Matching text that is no subject at all does not panic, and never
    /// matches a subject with an empty token.
    #[test]
    fn matching_odd_text_is_safe(pattern in pattern(), text in "[ab.]{0,8}") {
        let parsed = Subject::new(pattern).expect("valid by construction");
        let matched = parsed.matches(&text);
        if text.split('.').all(|t| !t.is_empty()) {
            let p: Vec<&str> = parsed.as_str().split('.').collect();
            let s: Vec<&str> = text.split('.').collect();
            prop_assert_eq!(matched, reference_matches(&p, &s));
        } else if !parsed.as_str().ends_with('>') {
            prop_assert!(!matched, "{} matched {:?}", parsed, text);
        }
    }
}

// ---- subject templates ----------------------------------------------------------------------

/// One part of a template token, and what it renders to.
#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Subject,
    Input,
    Token(usize),
}

fn template_parts() -> impl Strategy<Value = Vec<Vec<Part>>> {
    let part = prop_oneof![
        2 => "[a-z0-9_-]{1,3}".prop_map(Part::Literal),
        1 => Just(Part::Subject),
        1 => Just(Part::Input),
        1 => (1usize..5).prop_map(Part::Token),
    ];
    prop::collection::vec(prop::collection::vec(part, 1..3), 1..4)
}

fn template_text(tokens: &[Vec<Part>]) -> String {
    tokens
        .iter()
        .map(|parts| {
            parts
                .iter()
                .map(|p| match p {
                    Part::Literal(l) => l.clone(),
                    Part::Subject => "{subject}".to_owned(),
                    Part::Input => "{input}".to_owned(),
                    Part::Token(n) => format!("{{{n}}}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The template rendered by substitution; `None` when a token is missing.
fn reference_render(tokens: &[Vec<Part>], subject: &str, input: &str) -> Option<String> {
    let input_tokens: Vec<&str> = input.split('.').collect();
    let mut out = Vec::new();
    for parts in tokens {
        let mut token = String::new();
        for p in parts {
            match p {
                Part::Literal(l) => token.push_str(l),
                Part::Subject => token.push_str(subject),
                Part::Input => token.push_str(input),
                Part::Token(n) => token.push_str(input_tokens.get(n - 1)?),
            }
        }
        out.push(token);
    }
    Some(out.join("."))
}

/// A subject NATS would take to publish to, by its rules: non-empty tokens,
/// no wildcard, no ASCII whitespace or control character.
fn publishable(subject: &str) -> bool {
    subject.split('.').all(|t| !t.is_empty() && !t.contains(['*', '>'])) && !subject.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
}

fn template_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a.{}]{0,4}(\\{(subject|input|sujbect|0|1|2|99999999999999999999999|\\+1|-1|)\\}?)?[a.{}*>]{0,4}",
        "(?s).{0,16}",
        template_parts().prop_map(|t| template_text(&t)),
    ]
}

proptest! {
    /// Any text is a template or a clear error naming it; a template
    /// renders anything to a subject NATS takes, or says why not.
    #[test]
    fn templates_parse_and_render_safely(text in template_like(), subject in "(?s).{0,8}", input in "(?s).{0,8}") {
        match SubjectTemplate::new(text.clone()) {
            Ok(template) => {
                prop_assert_eq!(template.as_str(), text.as_str());
                prop_assert_eq!(template.to_string(), text.clone());
                prop_assert_eq!(template.is_static(), !text.contains('{'));
                match template.render(&subject, &input) {
                    Ok(rendered) => prop_assert!(publishable(&rendered), "{:?} rendered {:?}", text, rendered),
                    Err(message) => {
                        let quoted = format!("{text:?}");
                        prop_assert!(message.contains(&quoted), "{}", message);
                    }
                }
                // Rendering into a reused buffer gives the same.
                let mut buffer = String::from("left over");
                let into = template.render_into(&mut buffer, &subject, &input).map(|()| buffer);
                prop_assert_eq!(into, template.render(&subject, &input));
            }
            Err(error) => {
                prop_assert!(!error.message.is_empty());
                if !text.is_empty() {
                    let quoted = format!("{text:?}");
                    prop_assert!(error.message.contains(&quoted), "{}", error.message);
                }
            }
        }
    }

    /// A template built from valid parts parses, and renders as plain
    /// substitution does.
    #[test]
    fn templates_render_by_substitution(tokens in template_parts(), subject in publish_subject(), input in publish_subject()) {
        let text = template_text(&tokens);
        let template = SubjectTemplate::new(text.clone()).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        match reference_render(&tokens, &subject, &input) {
            Some(expected) => prop_assert_eq!(template.render(&subject, &input), Ok(expected)),
            None => {
                let message = template.render(&subject, &input).expect_err("a missing token");
                prop_assert!(message.contains("has only"), "{}", message);
            }
        }
    }
}

// ---- durations and sizes --------------------------------------------------------------------

fn size_like() -> impl Strategy<Value = String> {
    prop_oneof!["[ 0-9]{0,22}[ .]?(B|KB|MB|GB|KiB|MiB|GiB|kib|mb|b|TiB|x)?[ ]?", any::<u64>().prop_map(|n| n.to_string()), "(?s).{0,12}",]
}

fn duration_like() -> impl Strategy<Value = String> {
    prop_oneof!["[ 0-9]{0,22}[ .]?(ns|us|ms|s|m|h|d|w|M|y|x)?( [0-9]{1,3}(ms|s))?[ ]?", "(?s).{0,12}",]
}

proptest! {
    /// Any text is a size or an error naming it; sizes are exact.
    #[test]
    fn sizes_parse_exactly_or_say_why(text in size_like()) {
        match config::parse_size(&text) {
            Ok(bytes) => {
                let trimmed = text.trim();
                let digits: String = trimmed.chars().take_while(char::is_ascii_digit).collect();
                let factor = match trimmed[digits.len()..].trim() {
                    "" | "B" => 1,
                    "KB" => 1_000,
                    "MB" => 1_000_000,
                    "GB" => 1_000_000_000,
                    "KiB" => 1 << 10,
                    "MiB" => 1 << 20,
                    "GiB" => 1 << 30,
                    unit => return Err(TestCaseError::fail(format!("{text:?}: unit {unit:?} accepted"))),
                };
                prop_assert_eq!(Some(bytes), digits.parse::<u64>().ok().and_then(|n| n.checked_mul(factor)));
            }
            Err(error) => {
                let quoted = format!("{text:?}");
                prop_assert!(error.message.contains(&quoted), "{}", error.message);
                prop_assert!(error.help.as_ref().is_some_and(|h| !h.is_empty()));
            }
        }
    }

    /// Every size is written back in a form that reads as the same size.
    #[test]
    fn sizes_round_trip(bytes in prop_oneof![any::<u64>(), (0u64..1 << 24).prop_map(|n| n << 20), (0u64..1 << 34).prop_map(|n| n << 30)]) {
        prop_assert_eq!(config::parse_size(&config::format_size(bytes)).ok(), Some(bytes));
        prop_assert_eq!(config::parse_size(&bytes.to_string()).ok(), Some(bytes));
    }

    /// Any text is a duration or an error naming it.
    #[test]
    fn durations_parse_or_say_why(text in duration_like()) {
        if let Err(error) = config::parse_duration(&text) {
            let quoted = format!("{text:?}");
            prop_assert!(error.message.contains(&quoted), "{}", error.message);
            prop_assert!(error.help.as_ref().is_some_and(|h| !h.is_empty()));
        }
    }

    /// Every duration is written back in a form that reads as the same.
    #[test]
    fn durations_round_trip(nanos in prop_oneof![any::<u64>(), 0u64..10_000_000_000], seconds in 0u64..10_000_000) {
        for duration in [Duration::from_nanos(nanos), Duration::from_secs(seconds)] {
            let written = config::format_duration(duration);
            prop_assert_eq!(config::parse_duration(&written).ok(), Some(duration), "{}", written);
        }
    }
}

// ---- weir exec's input lines ----------------------------------------------------------------

/// A payload: arbitrary bytes, text, or JSON written compactly or across
/// lines, including numbers serde_json cannot hold and space around values.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let json = prop_oneof![
        Just(serde_json::json!(null)),
        any::<i64>().prop_map(serde_json::Value::from),
        // Quarters: serde_json reads them back exactly (without its
        // float_roundtrip feature, not every float is).
        any::<i32>().prop_map(|n| serde_json::Value::from(f64::from(n) / 4.0)),
        "(?s).{0,8}".prop_map(serde_json::Value::from),
    ]
    .prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z\"\\\\]{0,3}", inner, 0..4).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        "(?s).{0,24}".prop_map(String::into_bytes),
        json.clone().prop_map(|v| serde_json::to_vec(&v).expect("serialises")),
        json.prop_map(|v| serde_json::to_vec_pretty(&v).expect("serialises")),
        prop::sample::select(vec![
            "1e400",
            "[\n1e400\n]",
            "{\"a\":\n-1e999}",
            " {}",
            "{}\n",
            "\t[1] ",
            "\"\\ud800\"",
            "[\n\"\\ud800\"]",
            "123456789012345678901234567890",
            "{\"a\":1,\"a\":2}",
            "[\r\n1]",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (".{1,12}", prop::collection::vec((".{0,6}", ".{0,6}"), 0..4), payload()).prop_map(|(subject, headers, payload)| {
        let mut event = Event::new(subject, payload);
        event.headers = headers;
        event
    })
}

/// Headers by name, each name's values in order: the envelope groups a
/// name's values, so this is what a round trip keeps.
fn by_name(headers: &[(String, String)]) -> BTreeMap<&str, Vec<&str>> {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in headers {
        map.entry(name).or_default().push(value);
    }
    map
}

proptest! {
    /// Any line is an event or a reason, never a panic.
    #[test]
    fn any_line_is_an_event_or_a_reason(
        line in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            "(?s).{0,64}".prop_map(String::into_bytes),
            (event(), any::<usize>(), any::<u8>()).prop_map(|(e, at, b)| {
                let mut line = exec::envelope(&e).into_bytes();
                let at = at % line.len();
                line[at] = b;
                line
            }),
            (event(), any::<usize>()).prop_map(|(e, at)| {
                let line = exec::envelope(&e).into_bytes();
                line[..at % (line.len() + 1)].to_vec()
            }),
        ],
        subject in prop::option::of("[a-z.]{1,8}"),
    ) {
        if let Err(message) = exec::parse_line(&line, subject.as_deref()) {
            prop_assert!(!message.trim().is_empty());
        }
    }

    /// What `weir exec` writes, it reads back as the same event.
    #[test]
    fn envelopes_round_trip(event in event()) {
        let line = exec::envelope(&event);
        prop_assert!(!line.contains(['\n', '\r']), "{}", line);
        let back = exec::parse_line(line.as_bytes(), None).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
        prop_assert_eq!(&back.subject, &event.subject);
        prop_assert_eq!(by_name(&back.headers), by_name(&event.headers));
        let multi_line_json = event.payload.contains(&b'\n') || event.payload.contains(&b'\r');
        match serde_json::from_slice::<serde_json::Value>(&event.payload) {
            // JSON over several lines is written on one: the same value.
            Ok(value) if multi_line_json => {
                prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&back.payload).ok(), Some(value), "{}", line)
            }
            _ => prop_assert_eq!(&back.payload, &event.payload, "{}", line),
        }
    }
}

/// Deep nesting, in a stage's `config` (which becomes JSON) and anywhere
/// else: parsed or refused, never a crash.
#[test]
fn deep_nesting_is_parsed_or_refused() {
    let file = Path::new(DIR).join("valid/nested.toml");
    for depth in [10, 100, 1_000, 10_000] {
        let arrays = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let tables = format!("{}1{}", "{ a = ".repeat(depth), " }".repeat(depth));
        for value in [&arrays, &tables] {
            let pipeline = format!(
                "name = \"n\"\n[source]\nsubject = \"a\"\n[[stages]]\nname = \"s\"\nplugin = \"../plugins/dummy.wasm\"\nconfig = {{ v = {value} }}\n[sink]\nsubject = \"b\"\n"
            );
            if let Err(error) = config::parse_pipeline(&pipeline, &file) {
                assert!(!error.message.is_empty(), "depth {depth}");
            }
            if let Err(error) = config::parse_global(&format!("workers = {value}\n"), &file) {
                assert!(!error.message.is_empty(), "depth {depth}");
            }
        }
    }
}
