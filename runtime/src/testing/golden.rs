//! Golden files: what a case produced, one envelope per line, and a
//! readable line diff against what it produced before.
//!
//! The lines follow the inputs in order: each input's outputs (as `weir exec`
//! writes them to stdout), then its dead letter if it failed (as `weir exec`
//! writes dead letters: the input with `weir-error-*` headers saying which
//! stage, what kind and why). A dropped input leaves no line. The file is
//! what `weir exec` would print, so it can be read, grepped and fed to
//! another `weir exec`.

use crate::exec::envelope;
use crate::pipeline::Outcome;

/// The golden text of a case's outcomes.
pub fn render(outcomes: &[Outcome], pipeline: &str, dead_letter_subject: Option<&str>) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Done(events) => {
                for event in events {
                    out.push_str(&envelope(event));
                    out.push('\n');
                }
            }
            Outcome::Dead(letter) => {
                let subject = dead_letter_subject.unwrap_or(&letter.event.subject);
                out.push_str(&envelope(&letter.to_event(pipeline, subject)));
                out.push('\n');
            }
        }
    }
    out
}

/// A line diff of `expected` against `actual`: unchanged lines start with
/// two spaces, removed ones with `- `, added ones with `+ `; runs of more
/// than `context` unchanged lines are elided. `None` when they are equal.
pub fn diff(expected: &str, actual: &str, context: usize) -> Option<String> {
    if expected == actual {
        return None;
    }
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // Longest common subsequence, by dynamic programming: golden files are
    // small (a case's outputs), and the table is (n+1)·(m+1) counters.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut lines: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            lines.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals before additions, as `diff -u` shows a changed line.
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    if lines.iter().all(|(c, _)| *c == ' ') {
        // Only line endings differ.
        return Some("  (the files differ only in line endings or a final newline)".to_owned());
    }
    let near = |k: usize| {
        let lo = k.saturating_sub(context);
        let hi = (k + context + 1).min(lines.len());
        lines[lo..hi].iter().any(|(c, _)| *c != ' ')
    };
    let mut out = Vec::new();
    let mut skipped = 0;
    for (k, (c, line)) in lines.iter().enumerate() {
        if *c == ' ' && !near(k) {
            skipped += 1;
            continue;
        }
        if skipped > 0 {
            out.push(format!("  … {skipped} unchanged line{}", if skipped == 1 { "" } else { "s" }));
            skipped = 0;
        }
        out.push(format!("{c} {line}"));
    }
    if skipped > 0 {
        out.push(format!("  … {skipped} unchanged line{}", if skipped == 1 { "" } else { "s" }));
    }
    Some(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(diff("a\nb\n", "a\nb\n", 2), None);
    }

    #[test]
    fn a_changed_line_is_removed_and_added() {
        let d = diff("a\nb\nc\n", "a\nB\nc\n", 2).unwrap();
        assert_eq!(d, "  a\n- b\n+ B\n  c");
    }

    #[test]
    fn far_unchanged_lines_are_elided() {
        let expected: String = (0..20).map(|i| format!("{i}\n")).collect();
        let actual = expected.replace("10\n", "ten\n");
        let d = diff(&expected, &actual, 1).unwrap();
        assert_eq!(d, "  … 9 unchanged lines\n  9\n- 10\n+ ten\n  11\n  … 8 unchanged lines");
    }

    #[test]
    fn missing_and_extra_lines() {
        assert_eq!(diff("a\nb\n", "a\n", 3).unwrap(), "  a\n- b");
        assert_eq!(diff("a\n", "a\nz\n", 3).unwrap(), "  a\n+ z");
        assert!(diff("a", "a\n", 3).unwrap().contains("line endings"));
    }
}
