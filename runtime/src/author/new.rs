//! `weir new stage NAME --lang rust|python|js`: a project that builds and
//! runs as generated: the stage, a native test, a pipeline that uses it,
//! sample events and a README that says what to run.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Lang;

/// One template file: its path in the project, and its text with
/// `{{name}}`, `{{module}}` and `{{sdk}}` to fill.
type Template = (&'static str, &'static str);

const RUST: &[Template] = &[
    ("Cargo.toml", include_str!("../../../sdk/templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../sdk/templates/rust/src/lib.rs")),
    ("pipeline.toml", include_str!("../../../sdk/templates/rust/pipeline.toml")),
    ("events.jsonl", include_str!("../../../sdk/templates/rust/events.jsonl")),
    ("README.md", include_str!("../../../sdk/templates/rust/README.md")),
    (".gitignore", "/target\n/*.wasm\n/.weir-build\n"),
];

const PYTHON: &[Template] = &[
    ("app.py", include_str!("../../../sdk/templates/python/app.py")),
    ("test_app.py", include_str!("../../../sdk/templates/python/test_app.py")),
    ("conftest.py", include_str!("../../../sdk/templates/python/conftest.py")),
    ("pyproject.toml", include_str!("../../../sdk/templates/python/pyproject.toml")),
    ("pipeline.toml", include_str!("../../../sdk/templates/python/pipeline.toml")),
    ("events.jsonl", include_str!("../../../sdk/templates/python/events.jsonl")),
    ("README.md", include_str!("../../../sdk/templates/python/README.md")),
    (".gitignore", "/*.wasm\n/.weir-build\n__pycache__/\n.pytest_cache/\n"),
];

const JS: &[Template] = &[
    ("stage.js", include_str!("../../../sdk/templates/js/stage.js")),
    ("stage.test.js", include_str!("../../../sdk/templates/js/stage.test.js")),
    ("package.json", include_str!("../../../sdk/templates/js/package.json")),
    ("pipeline.toml", include_str!("../../../sdk/templates/js/pipeline.toml")),
    ("events.jsonl", include_str!("../../../sdk/templates/js/events.jsonl")),
    ("README.md", include_str!("../../../sdk/templates/js/README.md")),
    (".gitignore", "/*.wasm\n/.weir-build\nnode_modules/\n"),
];

fn templates(lang: Lang) -> &'static [Template] {
    match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    }
}

/// Checks a stage name: it becomes a directory, a package, a pipeline and a
/// subject token, so it is kept to what all of those accept.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        anyhow::bail!(
            "\"{name}\" cannot name a stage: use lowercase letters, digits and single dashes, starting with a letter (e.g. \"traffic-channel\"); it names the directory, the package, the pipeline and a subject token"
        );
    }
    Ok(())
}

/// Writes a new project for stage `name` in `lang` into `dir` (which must
/// not exist, or be empty). Returns the files written.
pub fn create(name: &str, lang: Lang, dir: &Path, sdk: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        anyhow::bail!("{} already exists and is not empty; choose another name or directory (--dir)", dir.display());
    }
    let module = name.replace('-', "_");
    let sdk = sdk.to_string_lossy();
    let mut written = Vec::new();
    for (path, text) in templates(lang) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text.replace("{{name}}", name).replace("{{module}}", &module).replace("{{sdk}}", &sdk);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "traffic-channel", "tag2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Tagger", "2tag", "tag-", "a--b", "a_b", "a.b", "a b"] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains("lowercase letters, digits and single dashes"), "{bad}: {error}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let dir = std::env::temp_dir().join(format!("weir-new-test-{}-{lang:?}", std::process::id()));
            let project = dir.join("my-stage");
            let files = create("my-stage", lang, &project, Path::new("/opt/weir/sdk")).unwrap();
            assert!(files.iter().any(|f| f.ends_with("pipeline.toml")), "{lang}");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                assert!(!text.contains("{{"), "{lang}: {} keeps a placeholder", file.display());
            }
            let again = create("my-stage", lang, &project, Path::new("/opt/weir/sdk")).unwrap_err().to_string();
            assert!(again.contains("already exists and is not empty"), "{again}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
