//! Matching what a pipeline produced against what a case expects: JSON
//! (exact, subset, values at paths, numbers within a tolerance), subjects
//! with wildcards, headers, dead letters, and outputs in order or not.
//!
//! Every function returns the problems it found, in words that name the
//! place (`output 2: payload at /shop/country: expected "DE", got "FR"`);
//! no problems means a match.

use serde_json::Value;

use crate::config::{DeadLetterExpect, OutputExpect, PayloadCheck};
use crate::event::{DeadLetter, Event};

/// One output the pipeline produced, and the input it came from (1-based).
#[derive(Debug, Clone)]
pub struct Produced {
    /// The 1-based input number.
    pub input: usize,
    /// The output, with its final subject.
    pub event: Event,
}

/// Problems of `actual` against `expect`, each prefixed with nothing: the
/// caller says which output it is.
pub fn output_problems(expect: &OutputExpect, actual: &Produced) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(input) = expect.input
        && input != actual.input
    {
        problems.push(format!("comes from input {}, expected from input {input}", actual.input));
    }
    if let Some(subject) = &expect.subject
        && !subject.matches(&actual.event.subject)
    {
        problems.push(format!("subject {:?}, expected {:?}", actual.event.subject, subject.as_str()));
    }
    for (name, value) in &expect.headers {
        let values: Vec<&str> = actual.event.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        if !values.contains(&value.as_str()) {
            if values.is_empty() {
                problems.push(format!("header {name:?} is missing, expected {value:?}"));
            } else {
                problems.push(format!("header {name:?} is {}, expected {value:?}", quoted(&values)));
            }
        }
    }
    if expect.payload.is_empty() {
        return problems;
    }
    let parsed: Result<Value, _> = serde_json::from_slice(&actual.event.payload);
    for check in &expect.payload {
        match check {
            PayloadCheck::Text(text) => {
                if actual.event.payload != text.as_bytes() {
                    problems.push(format!("payload is {}, expected the text {text:?}", describe_payload(&actual.event.payload)));
                }
            }
            PayloadCheck::Bytes(bytes) => {
                if actual.event.payload != bytes[..] {
                    problems.push(format!("payload is {}, expected {} bytes given in base64", describe_payload(&actual.event.payload), bytes.len()));
                }
            }
            PayloadCheck::Json(_) | PayloadCheck::Subset(_) | PayloadCheck::Paths(_) => {
                let Ok(value) = &parsed else {
                    problems.push(format!("payload is not JSON: {}", describe_payload(&actual.event.payload)));
                    continue;
                };
                match check {
                    PayloadCheck::Json(expected) => json_equal(expected, value, expect.tolerance, "", &mut problems),
                    PayloadCheck::Subset(expected) => json_subset(expected, value, expect.tolerance, "", &mut problems),
                    PayloadCheck::Paths(paths) => {
                        for (path, expected) in paths {
                            let pointer = pointer(path);
                            match value.pointer(&pointer) {
                                Some(found) => json_equal(expected, found, expect.tolerance, &pointer, &mut problems),
                                None => problems.push(format!("payload has nothing at {path}, expected {expected}")),
                            }
                        }
                    }
                    _ => unreachable!(),
                }
            }
        }
    }
    problems
}

/// Problems of a dead letter against what the case expects of it.
pub fn dead_letter_problems(expect: &DeadLetterExpect, input: usize, actual: &DeadLetter) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(n) = expect.input
        && n != input
    {
        problems.push(format!("is input {input}, expected input {n}"));
    }
    if let Some(stage) = &expect.stage
        && stage != &actual.stage
    {
        problems.push(format!("came from stage {:?}, expected {stage:?}", actual.stage));
    }
    if let Some(kind) = expect.kind
        && kind != actual.kind
    {
        problems.push(format!("kind {:?}, expected {:?}", actual.kind.as_str(), kind.as_str()));
    }
    if let Some(text) = &expect.message
        && !actual.message.contains(text.as_str())
    {
        problems.push(format!("message {:?} does not contain {text:?}", actual.message));
    }
    problems
}

/// A dotted path (`shop.country`, `tags.0.tag`) or a JSON pointer
/// (`/shop/country`) as a JSON pointer.
pub fn pointer(path: &str) -> String {
    if path.starts_with('/') || path.is_empty() {
        return path.to_owned();
    }
    path.split('.').map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1"))).collect()
}

/// `expected` and `actual` are the same JSON, numbers within `tolerance`.
pub fn json_equal(expected: &Value, actual: &Value, tolerance: f64, at: &str, problems: &mut Vec<String>) {
    compare(expected, actual, tolerance, at, false, problems);
}

/// Every key of `expected` is in `actual` with a matching value (objects
/// recursively); arrays have the same length and match element by element.
pub fn json_subset(expected: &Value, actual: &Value, tolerance: f64, at: &str, problems: &mut Vec<String>) {
    compare(expected, actual, tolerance, at, true, problems);
}

fn compare(expected: &Value, actual: &Value, tolerance: f64, at: &str, subset: bool, problems: &mut Vec<String>) {
    let place = if at.is_empty() { "payload".to_owned() } else { format!("payload at {at}") };
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            let equal = match (e.as_i64(), a.as_i64()) {
                (Some(e), Some(a)) if tolerance == 0.0 => e == a,
                _ => {
                    let (e, a) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
                    (e - a).abs() <= tolerance
                }
            };
            if !equal {
                let within = if tolerance > 0.0 { format!(" (within {tolerance})") } else { String::new() };
                problems.push(format!("{place}: expected {expected}{within}, got {actual}"));
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let path = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match a.get(key) {
                    Some(av) => compare(ev, av, tolerance, &path, subset, problems),
                    None => problems.push(format!("payload at {path}: missing, expected {ev}")),
                }
            }
            if !subset {
                for (key, av) in a {
                    if !e.contains_key(key) {
                        problems.push(format!("payload at {at}/{key}: not expected, got {av}"));
                    }
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                problems.push(format!("{place}: expected {} elements, got {}: {actual}", e.len(), a.len()));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                compare(ev, av, tolerance, &format!("{at}/{i}"), subset, problems);
            }
        }
        _ if expected == actual => {}
        _ => problems.push(format!("{place}: expected {expected}, got {actual}")),
    }
}

/// Pairs expected with actual items so that as many as possible match
/// (`ok(e, a)`): a maximum bipartite matching, by augmenting paths. Returns,
/// per expected item, the actual item it got.
pub fn assign(expected: usize, actual: usize, ok: impl Fn(usize, usize) -> bool) -> Vec<Option<usize>> {
    let fits: Vec<Vec<usize>> = (0..expected).map(|e| (0..actual).filter(|&a| ok(e, a)).collect()).collect();
    let mut owner: Vec<Option<usize>> = vec![None; actual];
    fn augment(e: usize, fits: &[Vec<usize>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
        for &a in &fits[e] {
            if seen[a] {
                continue;
            }
            seen[a] = true;
            if owner[a].is_none_or(|other| augment(other, fits, owner, seen)) {
                owner[a] = Some(e);
                return true;
            }
        }
        false
    }
    for e in 0..expected {
        let mut seen = vec![false; actual];
        augment(e, &fits, &mut owner, &mut seen);
    }
    let mut got = vec![None; expected];
    for (a, e) in owner.iter().enumerate() {
        if let Some(e) = e {
            got[*e] = Some(a);
        }
    }
    got
}

fn quoted(values: &[&str]) -> String {
    values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
}

/// A payload in a message: its text (shortened), or its size when binary.
pub fn describe_payload(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) if text.chars().count() > 200 => {
            format!("{:?}…", text.chars().take(200).collect::<String>())
        }
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("{} bytes of binary", payload.len()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{Location, Subject};
    use crate::event::ErrorKind;

    fn expect(payload: Vec<PayloadCheck>) -> OutputExpect {
        OutputExpect {
            location: Location { file: "t.test.toml".into(), line: 1, column: 1 },
            input: None,
            subject: None,
            headers: Vec::new(),
            payload,
            tolerance: 0.0,
        }
    }

    fn produced(subject: &str, payload: Value) -> Produced {
        Produced { input: 1, event: Event::new(subject, serde_json::to_vec(&payload).unwrap()) }
    }

    #[test]
    fn exact_json_names_every_difference() {
        let e = expect(vec![PayloadCheck::Json(json!({"a": 1, "b": {"c": "x"}}))]);
        assert!(output_problems(&e, &produced("s", json!({"b": {"c": "x"}, "a": 1.0}))).is_empty(), "1 equals 1.0, key order is free");
        let problems = output_problems(&e, &produced("s", json!({"a": 2, "b": {"c": "y"}, "extra": true})));
        assert_eq!(
            problems,
            vec!["payload at /a: expected 1, got 2", "payload at /b/c: expected \"x\", got \"y\"", "payload at /extra: not expected, got true"]
        );
    }

    #[test]
    fn a_subset_ignores_other_keys_but_not_array_lengths() {
        let e = expect(vec![PayloadCheck::Subset(json!({"shop": {"country": "DE"}, "tags": [{"tag": "jeans"}]}))]);
        let ok = json!({"shop": {"country": "DE", "name": "x"}, "tags": [{"tag": "jeans", "score": 0.9}], "more": 1});
        assert!(output_problems(&e, &produced("s", ok)).is_empty());
        let problems = output_problems(&e, &produced("s", json!({"shop": {}, "tags": []})));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0], "payload at /shop/country: missing, expected \"DE\"");
        assert!(problems[1].starts_with("payload at /tags: expected 1 elements, got 0"), "{problems:?}");
    }

    #[test]
    fn paths_are_dotted_or_pointers() {
        assert_eq!(pointer("shop.country"), "/shop/country");
        assert_eq!(pointer("tags.0.tag"), "/tags/0/tag");
        assert_eq!(pointer("/a~1b"), "/a~1b");
        let e = expect(vec![PayloadCheck::Paths(vec![
            ("tags.0.tag".into(), json!("jeans")),
            ("/price".into(), json!(10)),
            ("gone".into(), json!(1)),
        ])]);
        let problems = output_problems(&e, &produced("s", json!({"tags": [{"tag": "jeans"}], "price": 11})));
        assert_eq!(problems, vec!["payload at /price: expected 10, got 11", "payload has nothing at gone, expected 1"]);
    }

    #[test]
    fn numbers_within_a_tolerance() {
        let mut e = expect(vec![PayloadCheck::Paths(vec![("score".into(), json!(0.9))])]);
        e.tolerance = 0.01;
        assert!(output_problems(&e, &produced("s", json!({"score": 0.905}))).is_empty());
        let problems = output_problems(&e, &produced("s", json!({"score": 0.95})));
        assert_eq!(problems, vec!["payload at /score: expected 0.9 (within 0.01), got 0.95"]);
        e.tolerance = 0.0;
        assert_eq!(output_problems(&e, &produced("s", json!({"score": 0.905}))).len(), 1);
    }

    #[test]
    fn subjects_match_exactly_or_by_wildcard() {
        let mut e = expect(Vec::new());
        e.subject = Some(Subject::new("processed.*.DE").unwrap());
        assert!(output_problems(&e, &produced("processed.view.DE", json!({}))).is_empty());
        assert_eq!(
            output_problems(&e, &produced("processed.view.FR", json!({}))),
            vec!["subject \"processed.view.FR\", expected \"processed.*.DE\""]
        );
        e.subject = Some(Subject::new("processed.>").unwrap());
        assert!(output_problems(&e, &produced("processed.a.b.c", json!({}))).is_empty());
        e.subject = Some(Subject::new("processed.a").unwrap());
        assert_eq!(output_problems(&e, &produced("processed.a.b", json!({}))).len(), 1);
    }

    #[test]
    fn headers_text_and_bytes() {
        let mut e = expect(vec![PayloadCheck::Text("hello".into())]);
        e.headers = vec![("trace".into(), "t1".into())];
        let mut p = Produced { input: 1, event: Event::new("s", b"hello".to_vec()) };
        p.event.headers = vec![("trace".into(), "t0".into()), ("trace".into(), "t1".into())];
        assert!(output_problems(&e, &p).is_empty(), "any value of a repeated header may match");
        p.event.headers.clear();
        p.event.payload = b"bye".to_vec().into();
        assert_eq!(
            output_problems(&e, &p),
            vec!["header \"trace\" is missing, expected \"t1\"", "payload is \"bye\", expected the text \"hello\""]
        );
        let e = expect(vec![PayloadCheck::Bytes(vec![0xff, 0])]);
        p.event.payload = vec![0xff, 1].into();
        assert_eq!(output_problems(&e, &p), vec!["payload is 2 bytes of binary, expected 2 bytes given in base64"]);
        let e = expect(vec![PayloadCheck::Json(json!({}))]);
        assert_eq!(output_problems(&e, &p), vec!["payload is not JSON: 2 bytes of binary"]);
    }

    #[test]
    fn unordered_outputs_find_the_best_assignment() {
        // Expected 0 fits actual 0 and 1; expected 1 fits only actual 0: a
        // greedy pass would give actual 0 to expected 0 and leave 1 unmatched.
        let fits = [[true, true], [true, false]];
        assert_eq!(assign(2, 2, |e, a| fits[e][a]), vec![Some(1), Some(0)]);
        assert_eq!(assign(2, 1, |_, _| true).iter().filter(|a| a.is_some()).count(), 1);
        assert_eq!(assign(0, 3, |_, _| true), Vec::<Option<usize>>::new());
    }

    #[test]
    fn dead_letters_by_stage_kind_and_message() {
        let letter =
            DeadLetter { event: Event::new("s", Vec::new()), stage: "route".into(), kind: ErrorKind::Invalid, message: "field \"country\" is missing".into() };
        let mut e = DeadLetterExpect {
            location: Location { file: "t".into(), line: 1, column: 1 },
            input: Some(2),
            stage: Some("route".into()),
            kind: Some(ErrorKind::Invalid),
            message: Some("country".into()),
        };
        assert!(dead_letter_problems(&e, 2, &letter).is_empty());
        e.stage = Some("tag".into());
        e.kind = Some(ErrorKind::Trap);
        e.message = Some("price".into());
        assert_eq!(
            dead_letter_problems(&e, 3, &letter),
            vec![
                "is input 3, expected input 2",
                "came from stage \"route\", expected \"tag\"",
                "kind \"invalid\", expected \"trap\"",
                "message \"field \\\"country\\\" is missing\" does not contain \"price\""
            ]
        );
    }
}
