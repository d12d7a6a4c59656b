//! The dotted key path (`stages[1].limits.timeout`) of a byte span, found in a spanned
//! parse tree: the `toml` crate's serde errors carry a span but no usable path.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// What [`find_key`] found at a span.
#[derive(Default)]
pub(super) struct Found {
    /// Dotted path of the innermost key or value containing the span.
    pub(super) path: Option<String>,
    /// The TOML type of the value, when the span is a value rather than a key.
    pub(super) value_type: Option<&'static str>,
}

/// Finds the innermost key or value whose span contains `span`. Between equal spans, one
/// whose type is `prefer` wins, else the deepest (an array of tables shares its span with
/// its first table).
///
/// Every table is searched, not only those whose span contains the target: a `[table]`
/// header's span covers the header only, and its keys follow it.
pub(super) fn find_key(root: &DeTable<'_>, span: &Range<usize>, prefer: Option<&str>) -> Option<Found> {
    struct Best {
        path: String,
        len: usize,
        depth: usize,
        value_type: Option<&'static str>,
    }
    fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        if inner.is_empty() { outer.start <= inner.start && inner.start < outer.end } else { outer.start <= inner.start && inner.end <= outer.end }
    }
    struct Search<'a> {
        target: &'a Range<usize>,
        prefer: Option<&'a str>,
    }
    fn consider(best: &mut Option<Best>, search: &Search<'_>, candidate: Range<usize>, path: &str, depth: usize, value_type: Option<&'static str>) {
        if !contains(&candidate, search.target) {
            return;
        }
        let len = candidate.len();
        let preferred = |t: Option<&str>| search.prefer.is_some() && t == search.prefer;
        let better = match best {
            None => true,
            Some(b) if len != b.len => len < b.len,
            Some(b) if preferred(value_type) != preferred(b.value_type) => preferred(value_type),
            Some(b) => depth > b.depth,
        };
        if better {
            *best = Some(Best { path: path.to_owned(), len, depth, value_type });
        }
    }
    fn walk_value(value: &toml::Spanned<DeValue<'_>>, path: &str, depth: usize, search: &Search<'_>, best: &mut Option<Best>) {
        match value.get_ref() {
            DeValue::Table(table) => walk_table(table, path, depth + 1, search, best),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    consider(best, search, item.span(), &item_path, depth + 1, Some(item.get_ref().type_str()));
                    walk_value(item, &item_path, depth + 1, search, best);
                }
            }
            _ => {}
        }
    }
    fn walk_table(table: &DeTable<'_>, prefix: &str, depth: usize, search: &Search<'_>, best: &mut Option<Best>) {
        for (key, value) in table.iter() {
            let path = join_key(prefix, key.get_ref());
            consider(best, search, key.span(), &path, depth, None);
            consider(best, search, value.span(), &path, depth, Some(value.get_ref().type_str()));
            walk_value(value, &path, depth, search, best);
        }
    }
    let mut best = None;
    let search = Search { target: span, prefer };
    walk_table(root, "", 0, &search, &mut best);
    best.map(|b| Found { path: Some(b.path), value_type: b.value_type })
}

/// Appends a key to a dotted path, quoting keys that are not bare TOML keys.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_owned() } else { format!("{key:?}") };
    if prefix.is_empty() { key } else { format!("{prefix}.{key}") }
}

pub(super) fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths() {
        let text = "name = \"x\"\n[sink]\nsubject = \"a\"\n[[stages]]\nname = \"a\"\n[[stages]]\nname = \"b\"\nlimits = { timeout = \"fast\" }\n";
        let tree = DeTable::parse(text).expect("valid TOML");
        let at = |needle: &str| {
            let start = text.rfind(needle).expect("needle in text");
            find_key(tree.get_ref(), &(start..start + needle.len()), None).and_then(|f| f.path)
        };
        assert_eq!(at("\"fast\"").as_deref(), Some("stages[1].limits.timeout"));
        assert_eq!(at("[sink]").as_deref(), Some("sink"));
        assert_eq!(at("\"b\"").as_deref(), Some("stages[1].name"));
        let subject = text.find("= \"a\"").map_or(0, |i| i + 2);
        let found = find_key(tree.get_ref(), &(subject..subject + 3), None).and_then(|f| f.path);
        assert_eq!(found.as_deref(), Some("sink.subject"));
        assert_eq!(join_key("config", "my key"), "config.\"my key\"");
        assert_eq!(strip_indices("stages[12].limits"), "stages[].limits");
    }
}
