//! A [`ConfigError`] as a terminal shows it: `file:line:column: key: message`, the help,
//! and the offending line with carets under the value.

use std::fmt;

use super::ConfigError;

pub(super) fn render(e: &ConfigError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}", e.file.display())?;
    if let Some(line) = e.line {
        write!(f, ":{line}")?;
        if let Some(column) = e.column {
            write!(f, ":{column}")?;
        }
    }
    f.write_str(": ")?;
    if let Some(key) = &e.key {
        write!(f, "{key}: ")?;
    }
    f.write_str(&e.message)?;
    if let Some(help) = &e.help {
        write!(f, "\n  help: {help}")?;
    }
    if let Some(snippet) = &e.snippet {
        let gutter = snippet.line.to_string().len();
        write!(f, "\n{:gutter$} |", "")?;
        write!(f, "\n{} | {}", snippet.line, snippet.text)?;
        write!(f, "\n{:gutter$} | {:pad$}{}", "", "", "^".repeat(snippet.width.max(1)), pad = snippet.column.saturating_sub(1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{ConfigError, SourceFile};

    #[test]
    fn display() {
        let text = "[[stages]]\nlimits = { timeout = \"fast\", memory = \"64MiB\" }\n";
        let source = SourceFile::new(Path::new("pipelines/views.toml"), text);
        let start = text.find("\"fast\"").unwrap_or_default();
        let error = source.error_at(start..start + 6, "stages[0].limits.timeout", "invalid duration \"fast\"", Some("write a number and a unit".to_owned()));
        assert_eq!(
            error.to_string(),
            "pipelines/views.toml:2:22: stages[0].limits.timeout: invalid duration \"fast\"\n  help: write a number and a unit\n  |\n2 | limits = { timeout = \"fast\", memory = \"64MiB\" }\n  |                      ^^^^^^"
        );
        let io = ConfigError::io(Path::new("x.toml"), "file", &std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(io.to_string(), "x.toml: cannot read file: entity not found");
    }
}
