//! For stage authors: `weir new stage` (a ready project in Rust, Python or
//! JavaScript, from the templates in `sdk/templates/`) and `weir build` (the
//! right toolchain with the right flags for the project's language, once or
//! on every save).
//!
//! Nothing here runs a stage: a built component goes through `engine` like
//! any other plugin.

pub mod build;
pub mod new;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The languages weir has an SDK for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `weir-sdk` crate.
    Rust,
    /// Python, with the `weir-stage` package and componentize-py.
    Python,
    /// JavaScript, with the `weir-stage` npm package and componentize-js.
    Js,
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        })
    }
}

/// A stage project on disk: its directory, language and name.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project's directory.
    pub dir: PathBuf,
    /// Its language, from the files in it.
    pub lang: Lang,
    /// The stage's name: the package's name, or the directory's.
    pub name: String,
}

impl Project {
    /// Recognises the project in `dir` from its files: `Cargo.toml` is Rust,
    /// `package.json` or `stage.js` JavaScript, `pyproject.toml` or `app.py`
    /// Python.
    pub fn detect(dir: &Path) -> anyhow::Result<Project> {
        if !dir.is_dir() {
            anyhow::bail!("{} is not a directory; give the directory of a stage project (`weir new stage NAME` makes one)", dir.display());
        }
        let dir_name = || {
            dir.canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "stage".into())
        };
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).with_context(|| format!("cannot read {}", dir.join(file).display()));
        let (lang, name) = if dir.join("Cargo.toml").is_file() {
            let manifest: toml::Table = toml::from_str(&read("Cargo.toml")?).with_context(|| format!("{}/Cargo.toml is not valid TOML", dir.display()))?;
            let name = manifest.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()).map(str::to_owned);
            let name =
                name.with_context(|| format!("{}/Cargo.toml has no [package] name; `weir build` builds one stage crate, not a workspace", dir.display()))?;
            (Lang::Rust, name)
        } else if dir.join("package.json").is_file() || dir.join("stage.js").is_file() {
            let package: serde_json::Value =
                serde_json::from_str(&read("package.json")?).with_context(|| format!("{}/package.json is not valid JSON", dir.display()))?;
            let name = package["name"].as_str().map(|n| n.rsplit('/').next().unwrap_or(n).to_owned());
            (Lang::Js, name.unwrap_or_else(dir_name))
        } else if dir.join("pyproject.toml").is_file() || dir.join("app.py").is_file() {
            let name = read("pyproject.toml")
                .ok()
                .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
                .and_then(|t| t.get("project").and_then(|p| p.get("name")).and_then(|n| n.as_str()).map(str::to_owned));
            (Lang::Python, name.unwrap_or_else(dir_name))
        } else {
            anyhow::bail!(
                "cannot tell the language of the stage in {}: it has no Cargo.toml (Rust), package.json or stage.js (JavaScript), pyproject.toml or app.py (Python); `weir new stage NAME --lang rust|python|js` makes a project",
                dir.display()
            );
        };
        Ok(Project { dir: dir.to_owned(), lang, name })
    }

    /// Where the component goes unless told otherwise: `NAME.wasm` in the
    /// project, which the generated `pipeline.toml` names.
    pub fn default_output(&self) -> PathBuf {
        self.dir.join(format!("{}.wasm", self.name))
    }
}

/// weir's own SDK directory (`sdk/` of the checkout weir was built from), or
/// what `WEIR_SDK` names: where `weir new` points projects at the SDKs and
/// `weir build` finds the contract's build helpers.
pub fn sdk_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidate = match given {
        Some(dir) => dir.to_owned(),
        None => match std::env::var_os("WEIR_SDK") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"),
        },
    };
    let sdk = candidate.canonicalize().unwrap_or(candidate);
    if !sdk.join("wit/stage.wit").is_file() {
        anyhow::bail!(
            "cannot find weir's SDK at {}: pass --sdk with the `sdk` directory of a weir checkout (or set WEIR_SDK to it)",
            sdk.display()
        );
    }
    Ok(sdk)
}

/// The contract this weir runs, written into every build so that a stage
/// is always built against the WIT of the weir that builds it.
pub const STAGE_WIT: &str = include_str!("../../../sdk/wit/stage.wit");
