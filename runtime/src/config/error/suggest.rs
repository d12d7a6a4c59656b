//! "Did you mean …?" for misspelt keys, placeholders and secret names.

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0 => return None,
        1..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance, in characters: Levenshtein plus adjacent
/// transpositions, which are the commonest typo ("tmieout" is 1 from "timeout", where
/// plain Levenshtein says 2).
pub(super) fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("tmieout", "timeout"), 1);
        assert_eq!(distance("plugn", "plugin"), 1);
        assert_eq!(distance("", "abc"), 3);
        // Characters, not bytes.
        assert_eq!(distance("dürée", "duree"), 2);
        assert_eq!(suggest("tmieout", &["timeout", "memory"]), Some("timeout"));
        assert_eq!(suggest("colour", &["timeout", "memory"]), None);
        // The nearest wins, and a tie goes to the first candidate.
        assert_eq!(suggest("sbuject", &["subjects", "subject"]), Some("subject"));
        assert_eq!(suggest("ab", &["ax", "ay"]), Some("ax"));
        assert_eq!(suggest("", &["a"]), None);
    }
}
