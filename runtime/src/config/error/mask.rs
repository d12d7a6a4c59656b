//! Secrets kept out of error messages and snippets: errors end up in logs.

use super::suggest::distance;

/// Masks the value of a line that sets a secret (or a likely typo of one: `tokn = "…"`),
/// and the credentials in URLs. Every `=` of the line counts, not only the first: two
/// lines joined by a lost line break (`user = "app"password = "…"`) are one line.
pub(super) fn mask_line(line: &str) -> String {
    let line = mask_urls(line);
    let mut from = 0;
    while let Some(at) = line[from..].find('=') {
        let eq = from + at;
        let before = line[..eq].trim_end();
        let name_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '"' | '\'')))
            .map_or(0, |i| i + c_len(before, i));
        let name = before[name_start..].trim_matches(['"', '\'']).to_ascii_lowercase();
        let secret = ["token", "password", "secret"].iter().any(|s| name.contains(s) || distance(&name, s) <= 2);
        let value = &line[eq + 1..];
        if secret && !value.trim().is_empty() {
            let indent = &value[..value.len() - value.trim_start().len()];
            return format!("{}={indent}\"***\"", &line[..eq]);
        }
        from = eq + 1;
    }
    line
}

/// The length of the character at byte `i` of `text`.
fn c_len(text: &str, i: usize) -> usize {
    text[i..].chars().next().map_or(1, char::len_utf8)
}

/// Replaces the user and password of every `scheme://user:pass@host` with `***`.
pub(crate) fn mask_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail.find(|c: char| matches!(c, '/' | '"' | '\'' | ',') || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                rest = &tail[userinfo_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        assert_eq!(mask_line("token = \"s3cret\""), "token = \"***\"");
        assert_eq!(mask_line("tokn = \"s3cret\""), "tokn = \"***\"");
        assert_eq!(mask_line("  password=\"x\""), "  password=\"***\"");
        assert_eq!(mask_line("user = \"weir\""), "user = \"weir\"");
        assert_eq!(mask_line("url = \"nats://u:p@a:4222, tls://b:4222\""), "url = \"nats://***@a:4222, tls://b:4222\"");
        assert_eq!(mask_urls("nats://a:4222"), "nats://a:4222");
    }

    #[test]
    fn a_secret_after_another_key_on_the_line_is_masked() {
        // Two lines joined by a lost line break.
        assert_eq!(mask_line("user = \"app\"password = \"hunter2\""), "user = \"app\"password = \"***\"");
        assert_eq!(mask_line("user = \"app\" token=\"t\""), "user = \"app\" token=\"***\"");
        assert_eq!(mask_line("name = \"a=b\""), "name = \"a=b\"");
        assert_eq!(mask_line("é = 1, password = \"x\""), "é = 1, password = \"***\"");
    }
}
