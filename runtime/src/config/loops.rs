//! Loops through subjects: a pipeline whose outputs or dead letters can come
//! back to its own source, and pipelines that feed each other in a cycle.
//!
//! What a pipeline publishes to is known only in part before it runs: the
//! sink's template is fixed, but `{subject}` is whatever subject the last
//! stage gave the event. The check assumes the stages keep the input's
//! subject (what every stage but a router does), which turns each template
//! into a subject pattern: `processed.{subject}` on source `shop.>` can
//! publish to `processed.shop.>`. Two patterns that some subject matches both
//! overlap. A loop this check cannot see (a router that sends events back to
//! the source) is stopped at run time by the hop count (`weir-hops`).

use super::{Pipeline, Subject, SubjectTemplate};

/// The most weir pipelines an event may pass through: one that arrives having
/// passed through this many is dead-lettered (kind `loop`) instead of being
/// processed again. Chains of pipelines are far shorter; a loop through
/// subjects (a pipeline whose outputs come back to its own source, directly
/// or through others) reaches it in a few milliseconds.
pub const MAX_HOPS: u32 = 16;

/// One token of a subject pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// Exactly this text.
    Literal(String),
    /// Any one token (`*`).
    One,
    /// One or more tokens, the rest of the subject (`>`).
    Rest,
}

/// The tokens of a subscription subject.
pub(crate) fn subject_pattern(subject: &Subject) -> Vec<Token> {
    subject
        .as_str()
        .split('.')
        .map(|t| match t {
            "*" => Token::One,
            ">" => Token::Rest,
            literal => Token::Literal(literal.to_owned()),
        })
        .collect()
}

/// The subjects `template` can render for inputs arriving on `source`,
/// assuming the stages keep each event's subject.
pub(crate) fn template_pattern(template: &SubjectTemplate, source: &Subject) -> Vec<Token> {
    let input = subject_pattern(source);
    let mut out = Vec::new();
    for token in template.as_str().split('.') {
        if !token.contains('{') {
            out.push(Token::Literal(token.to_owned()));
            continue;
        }
        match token {
            // The whole input subject, as the source's pattern.
            "{subject}" | "{input}" => out.extend(input.iter().cloned()),
            _ => {
                let whole_input = token.contains("{subject}") || token.contains("{input}");
                if whole_input {
                    // Text glued to a whole subject: its dots make any number
                    // of tokens.
                    out.push(Token::Rest);
                    break;
                }
                // `{N}` alone is the N-th token of the input when the source
                // fixes it; anything else is some single token.
                let n = token.strip_prefix('{').and_then(|t| t.strip_suffix('}')).and_then(|n| n.parse::<usize>().ok());
                match n.and_then(|n| input.get(n - 1)) {
                    Some(Token::Literal(text)) => out.push(Token::Literal(text.clone())),
                    _ => out.push(Token::One),
                }
            }
        }
        if matches!(out.last(), Some(Token::Rest)) {
            break;
        }
    }
    out
}

/// Whether some subject matches both patterns.
pub(crate) fn overlap(a: &[Token], b: &[Token]) -> bool {
    match (a.first(), b.first()) {
        (None, None) => true,
        (Some(Token::Rest), Some(_)) | (Some(_), Some(Token::Rest)) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Token::Literal(x)), Some(Token::Literal(y))) if x != y => false,
        (Some(_), Some(_)) => overlap(&a[1..], &b[1..]),
    }
}

/// Whether some subject matches both subscription subjects.
pub fn subjects_overlap(a: &Subject, b: &Subject) -> bool {
    overlap(&subject_pattern(a), &subject_pattern(b))
}

/// Renders a pattern as a subject with wildcards, for messages.
pub(crate) fn show(pattern: &[Token]) -> String {
    pattern
        .iter()
        .map(|t| match t {
            Token::Literal(text) => text.as_str(),
            Token::One => "*",
            Token::Rest => ">",
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Where a pipeline's events can go back to a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The pipeline that publishes.
    pub from: String,
    /// `sink` or `dead_letter`.
    pub key: &'static str,
    /// What it can publish to.
    pub publishes: String,
    /// The pipeline whose source reads it.
    pub to: String,
    /// That source's subject.
    pub reads: String,
}

impl std::fmt::Display for Feedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\" [{}] publishes to {} which \"{}\" reads ({})", self.from, self.key, self.publishes, self.to, self.reads)
    }
}

/// Every edge from a pipeline's sink or dead letter to a source, its own
/// included.
pub(crate) fn edges(pipelines: &[&Pipeline]) -> Vec<(usize, usize, Feedback)> {
    let mut edges = Vec::new();
    for (i, from) in pipelines.iter().enumerate() {
        let source = from.source.filter_subject();
        let mut outs = vec![("sink", template_pattern(&from.sink.subject, source))];
        if let Some(dead) = &from.dead_letter {
            outs.push(("dead_letter", subject_pattern(&dead.subject)));
        }
        for (j, to) in pipelines.iter().enumerate() {
            let reads = to.source.filter_subject();
            for (key, pattern) in &outs {
                if overlap(pattern, &subject_pattern(reads)) {
                    edges.push((
                        i,
                        j,
                        Feedback { from: from.name.to_string(), key, publishes: show(pattern), to: to.name.to_string(), reads: reads.as_str().to_owned() },
                    ));
                }
            }
        }
    }
    edges
}

/// The cycles among `pipelines` through their subjects, each as the edges
/// that make it (a pipeline feeding itself is a cycle of one edge). Each
/// cycle is reported once, starting at its first pipeline in `pipelines`.
pub fn cycles(pipelines: &[&Pipeline]) -> Vec<Vec<Feedback>> {
    let edges = edges(pipelines);
    let mut found: Vec<Vec<Feedback>> = Vec::new();
    let mut seen: Vec<Vec<usize>> = Vec::new();
    // Pipelines are few (tens): a search from each node is plenty.
    for start in 0..pipelines.len() {
        let mut path: Vec<usize> = Vec::new();
        walk(start, start, &edges, &mut path, &mut found, &mut seen);
    }
    found
}

fn walk(start: usize, at: usize, edges: &[(usize, usize, Feedback)], path: &mut Vec<usize>, found: &mut Vec<Vec<Feedback>>, seen: &mut Vec<Vec<usize>>) {
    for (index, (from, to, _)) in edges.iter().enumerate() {
        if *from != at || path.contains(&index) {
            continue;
        }
        path.push(index);
        if *to == start {
            // One cycle, whichever edge it is entered by: keep the set of nodes
            // in order from its smallest one.
            let mut nodes: Vec<usize> = path.iter().map(|&e| edges[e].0).collect();
            let min = nodes.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
            nodes.rotate_left(min);
            if nodes[0] == start && !seen.contains(&nodes) {
                seen.push(nodes);
                found.push(path.iter().map(|&e| edges[e].2.clone()).collect());
            }
        } else if !path.iter().any(|&e| edges[e].0 == *to) && path.len() < 16 {
            walk(start, *to, edges, path, found, seen);
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn pattern(template: &str, source: &str) -> String {
        show(&template_pattern(&SubjectTemplate::new(template).unwrap(), &Subject::new(source).unwrap()))
    }

    fn overlaps(a: &str, b: &str) -> bool {
        overlap(&subject_pattern(&Subject::new(a).unwrap()), &subject_pattern(&Subject::new(b).unwrap()))
    }

    #[test]
    fn templates_become_patterns_of_what_they_can_publish() {
        assert_eq!(pattern("processed.{subject}", "shop.events.>"), "processed.shop.events.>");
        assert_eq!(pattern("{subject}", "shop.events.>"), "shop.events.>");
        assert_eq!(pattern("out.{2}.{1}", "shop.*.created"), "out.*.shop");
        assert_eq!(pattern("out.x{input}.y", "a.b"), "out.>");
        assert_eq!(pattern("fixed.subject", "a.>"), "fixed.subject");
    }

    #[test]
    fn overlap_follows_nats_wildcards() {
        assert!(overlaps("a.b", "a.b"));
        assert!(!overlaps("a.b", "a.c"));
        assert!(overlaps("a.*", "a.b"));
        assert!(overlaps("a.>", "a.b.c"));
        assert!(!overlaps("a.>", "a"));
        assert!(overlaps("*.b", "a.*"));
        assert!(!overlaps("a.*", "a.b.c"));
        assert!(overlaps(">", "x"));
    }

    fn pipeline(name: &str, source: &str, sink: &str, dead: Option<&str>) -> Pipeline {
        let mut text = format!("name = \"{name}\"\n[source]\nsubject = \"{source}\"\n[sink]\nsubject = \"{sink}\"\n");
        if let Some(dead) = dead {
            text += &format!("[dead_letter]\nsubject = \"{dead}\"\n");
        }
        super::super::parse_pipeline(&text, Path::new("p.toml")).unwrap()
    }

    #[test]
    fn a_pipeline_feeding_itself_is_a_cycle() {
        let p = pipeline("echo", "shop.events.>", "{subject}", None);
        let cycles = cycles(&[&p]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0][0].to_string(), "\"echo\" [sink] publishes to shop.events.> which \"echo\" reads (shop.events.>)");
    }

    #[test]
    fn a_dead_letter_read_by_its_own_source_is_a_cycle() {
        let p = pipeline("p", "shop.>", "out.{subject}", Some("shop.dlq"));
        let cycles = cycles(&[&p]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0][0].key, "dead_letter");
    }

    #[test]
    fn two_pipelines_feeding_each_other_are_one_cycle() {
        let a = pipeline("a", "x.>", "y.{subject}", None);
        let b = pipeline("b", "y.>", "x.{2}", None);
        let c = pipeline("c", "z.>", "done.{subject}", None);
        let cycles = cycles(&[&a, &b, &c]);
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(cycles[0].iter().map(|f| f.from.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_chain_is_not_a_cycle() {
        let a = pipeline("a", "in.>", "mid.{subject}", Some("dlq.a"));
        let b = pipeline("b", "mid.>", "out.{subject}", Some("dlq.b"));
        assert!(cycles(&[&a, &b]).is_empty());
    }
}
