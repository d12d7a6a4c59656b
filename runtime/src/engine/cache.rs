//! Compiled code, kept so that nothing is compiled twice: in memory for the
//! life of the process (a reload of an unchanged plugin is free), and on disk
//! between runs (a restart loads native code in milliseconds instead of
//! compiling for up to seconds).
//!
//! Entries are keyed by the SHA-256 of the component's bytes; the directory is
//! keyed by the engine's compatibility hash (wasmtime version, target and
//! settings), so code from another build of weir is never loaded.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// The SHA-256 of a plugin's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex()[..12])
    }
}

/// Plugins at least this large get a progress line before they compile.
const LARGE_PLUGIN: usize = 2 << 20;

pub(crate) struct CodeCache {
    memory: Mutex<HashMap<ContentHash, Component>>,
    dir: Option<PathBuf>,
}

impl CodeCache {
    pub(crate) fn new(engine: &wasmtime::Engine, dir: Option<&Path>) -> Self {
        let dir = dir.map(|dir| {
            let mut h = DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            dir.join(format!("wasmtime-{:016x}", h.finish()))
        });
        CodeCache { memory: Mutex::new(HashMap::new()), dir }
    }

    /// The compiled component for `bytes`, compiling it only when neither the
    /// memory nor the disk cache has it. `compiled` tells whether it was built
    /// now (for progress messages).
    pub(crate) fn get_or_compile(
        &self,
        engine: &wasmtime::Engine,
        path: &std::path::Path,
        hash: ContentHash,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        if let Some(c) = self.lock().get(&hash) {
            return Ok((c.clone(), Origin::Memory));
        }
        let file = self.dir.as_ref().map(|d| d.join(format!("{}.cwasm", hash.to_hex())));
        if let Some(file) = file.as_deref().filter(|f| f.is_file()) {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (the directory name);
            // wasmtime also checks the header and refuses a mismatch. The
            // cache directory belongs to the user running weir.
            match unsafe { Component::deserialize_file(engine, file) } {
                Ok(c) => {
                    self.lock().insert(hash, c.clone());
                    return Ok((c, Origin::Disk));
                }
                Err(e) => tracing::warn!(file = %file.display(), error = %e, "ignoring unusable cached code; recompiling"),
            }
        }
        if bytes.len() >= LARGE_PLUGIN {
            // Seconds of silence otherwise (an ML stage of 15 MB takes 10-30 s).
            tracing::info!(
                plugin = %path.display(),
                "compiling {:.1} MB of WebAssembly; this takes a while the first time, then the compiled code comes from the cache",
                bytes.len() as f64 / 1e6
            );
        }
        let component = Component::new(engine, bytes)?;
        if let Some(file) = file
            && let Err(e) = store(&component, &file)
        {
            tracing::warn!(file = %file.display(), error = %e, "cannot write the compiled-code cache; restarts will recompile");
        }
        self.lock().insert(hash, component.clone());
        Ok((component, Origin::Compiled))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Component>> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled just now.
    Compiled,
    /// Loaded from the on-disk cache.
    Disk,
    /// Already in memory.
    Memory,
}

/// Writes atomically (temporary file, then rename) so that a crash or a
/// concurrent weir never leaves a torn file behind.
fn store(component: &Component, file: &Path) -> anyhow::Result<()> {
    let dir = file.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), file.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}
