//! Compiled code, kept so that nothing is compiled twice: in memory for the
//! life of the process (a reload of an unchanged plugin is free), and on disk
//! between runs (a restart loads native code in milliseconds instead of
//! compiling for up to seconds).
//!
//! Entries are keyed by the SHA-256 of the component's bytes; the directory is
//! keyed by the engine's compatibility hash (wasmtime version, target and
//! settings), so code from another build of weir is never loaded.

use std::collections::{HashMap, HashSet};
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
    /// Most bytes of compiled code kept in `dir`.
    limit: u64,
}

impl CodeCache {
    pub(crate) fn new(engine: &wasmtime::Engine, dir: Option<&Path>, limit: u64) -> Self {
        let dir = dir.map(|dir| {
            let mut h = DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            dir.join(format!("wasmtime-{:016x}", h.finish()))
        });
        CodeCache { memory: Mutex::new(HashMap::new()), dir, limit }
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
            match load(engine, file) {
                Ok(c) => {
                    // Used now: the last to be evicted.
                    touch(file);
                    self.lock().insert(hash, c.clone());
                    return Ok((c, Origin::Disk));
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), "cached compiled code is unusable ({e:#}); recompiling {}", path.display());
                    remove(file);
                }
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
        if let Some(file) = file {
            match store(&component, &file) {
                Ok(()) => self.evict(&file),
                Err(e) => tracing::warn!(file = %file.display(), error = %e, "cannot write the compiled-code cache; restarts will recompile"),
            }
        }
        self.lock().insert(hash, component.clone());
        Ok((component, Origin::Compiled))
    }

    /// Forgets the compiled code of every plugin not in `used`. Its memory is
    /// freed once the last instance and blueprint that hold it are gone; a
    /// later load of the same bytes comes from the disk cache.
    pub(crate) fn retain(&self, used: &HashSet<ContentHash>) -> usize {
        let mut memory = self.lock();
        let before = memory.len();
        memory.retain(|hash, _| used.contains(hash));
        before - memory.len()
    }

    /// Removes the least recently used entries until the directory holds at
    /// most `limit` bytes; `keep` (just written) stays whatever its size.
    fn evict(&self, keep: &Path) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let sum = sidecar(&e.path()).metadata().map_or(0, |m| m.len());
                Some((meta.modified().ok()?, meta.len() + sum, e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, size, _)| size).sum();
        if total <= self.limit {
            return;
        }
        files.sort();
        for (_, size, file) in files {
            if total <= self.limit {
                break;
            }
            if file == keep {
                continue;
            }
            remove(&file);
            total -= size;
            tracing::info!(file = %file.display(), "compiled-code cache over its cache_size of {} MiB: removed the least recently used entry", self.limit >> 20);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Component>> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The checksum file beside a cache entry: `<len> <crc32>` of the entry's
/// bytes. wasmtime checks that an entry was made by a compatible engine, but
/// not that its code is intact: a torn or flipped byte in compiled code
/// would run. The checksum catches that before anything is loaded.
fn sidecar(file: &Path) -> PathBuf {
    file.with_extension("sum")
}

fn checksum(bytes: &[u8]) -> String {
    format!("{} {:08x}", bytes.len(), crc32fast::hash(bytes))
}

/// Reads an entry, checks it against its checksum, and loads it.
fn load(engine: &wasmtime::Engine, file: &Path) -> anyhow::Result<Component> {
    let expected = std::fs::read_to_string(sidecar(file)).map_err(|e| anyhow::anyhow!("no checksum beside it: {e}"))?;
    let bytes = std::fs::read(file)?;
    let actual = checksum(&bytes);
    anyhow::ensure!(expected.trim() == actual, "its checksum is {actual}, not {}: the file is corrupt", expected.trim());
    // SAFETY: the bytes were written by `Component::serialize` of an engine
    // with the same compatibility hash (the directory's name), and match the
    // checksum written with them; wasmtime also checks the header and
    // refuses a mismatch. The cache directory belongs to the user running
    // weir.
    Ok(unsafe { Component::deserialize(engine, &bytes) }?)
}

/// Marks an entry as used now, for least-recently-used eviction.
fn touch(file: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(file) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

fn remove(file: &Path) {
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(sidecar(file));
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

/// Writes atomically (temporary files, then renames: the checksum last, so
/// that an entry without one is never trusted) so that a crash or a
/// concurrent weir never leaves a torn file behind.
fn store(component: &Component, file: &Path) -> anyhow::Result<()> {
    let dir = file.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("x");
    let tmp = dir.join(format!(".{}.{name}.tmp", std::process::id()));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, file)?;
    let tmp_sum = dir.join(format!(".{}.{name}.sum.tmp", std::process::id()));
    std::fs::write(&tmp_sum, checksum(&bytes))?;
    std::fs::rename(&tmp_sum, sidecar(file))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> wasmtime::Engine {
        wasmtime::Engine::default()
    }

    fn component(n: u32) -> Vec<u8> {
        // Distinct components: each exports a function returning its own number.
        wat::parse_str(format!(
            r#"(component (core module $m (func (export "f") (result i32) (i32.const {n}))) (core instance (instantiate $m)))"#
        ))
        .unwrap()
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn entries(cache: &CodeCache) -> usize {
        std::fs::read_dir(cache.dir.as_ref().unwrap())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm"))
            .count()
    }

    #[test]
    fn a_corrupt_entry_is_recompiled_not_trusted() {
        let engine = engine();
        let dir = temp("corrupt");
        let bytes = component(1);
        let hash = ContentHash::of(&bytes);
        let first = CodeCache::new(&engine, Some(&dir), 1 << 30);
        assert_eq!(first.get_or_compile(&engine, Path::new("p.wasm"), hash, &bytes).unwrap().1, Origin::Compiled);
        let second = CodeCache::new(&engine, Some(&dir), 1 << 30);
        assert_eq!(second.get_or_compile(&engine, Path::new("p.wasm"), hash, &bytes).unwrap().1, Origin::Disk);

        // One flipped byte in the middle of the compiled code.
        let file = second.dir.as_ref().unwrap().join(format!("{}.cwasm", hash.to_hex()));
        let mut code = std::fs::read(&file).unwrap();
        let middle = code.len() / 2;
        code[middle] ^= 0xff;
        std::fs::write(&file, code).unwrap();
        let third = CodeCache::new(&engine, Some(&dir), 1 << 30);
        assert_eq!(third.get_or_compile(&engine, Path::new("p.wasm"), hash, &bytes).unwrap().1, Origin::Compiled);
        // ... and written again, whole.
        let fourth = CodeCache::new(&engine, Some(&dir), 1 << 30);
        assert_eq!(fourth.get_or_compile(&engine, Path::new("p.wasm"), hash, &bytes).unwrap().1, Origin::Disk);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_disk_cache_keeps_under_its_size_by_dropping_the_least_recently_used() {
        let engine = engine();
        let dir = temp("lru");
        let components: Vec<Vec<u8>> = (0..6).map(component).collect();
        let probe = CodeCache::new(&engine, Some(&dir), u64::MAX);
        probe
            .get_or_compile(&engine, Path::new("p.wasm"), ContentHash::of(&components[0]), &components[0])
            .unwrap();
        let one: u64 = std::fs::read_dir(probe.dir.as_ref().unwrap())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        // Room for three entries.
        let cache = CodeCache::new(&engine, Some(&dir), one * 3 + one / 2);
        for (i, c) in components.iter().enumerate().skip(1) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            cache.get_or_compile(&engine, Path::new("p.wasm"), ContentHash::of(c), c).unwrap();
            if i == 3 {
                // Entry 1 is used again: it outlives 2.
                let again = CodeCache::new(&engine, Some(&dir), one * 3 + one / 2);
                std::thread::sleep(std::time::Duration::from_millis(20));
                assert_eq!(
                    again
                        .get_or_compile(&engine, Path::new("p.wasm"), ContentHash::of(&components[1]), &components[1])
                        .unwrap()
                        .1,
                    Origin::Disk
                );
            }
        }
        assert_eq!(entries(&cache), 3);
        let on_disk = |i: usize| {
            cache
                .dir
                .as_ref()
                .unwrap()
                .join(format!("{}.cwasm", ContentHash::of(&components[i]).to_hex()))
                .is_file()
        };
        assert!(on_disk(1) && on_disk(4) && on_disk(5), "the three most recently used stay");
        assert!(!on_disk(0) && !on_disk(2) && !on_disk(3));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn retain_forgets_code_no_pipeline_uses() {
        let engine = engine();
        let cache = CodeCache::new(&engine, None, u64::MAX);
        let (a, b) = (component(1), component(2));
        cache.get_or_compile(&engine, Path::new("a.wasm"), ContentHash::of(&a), &a).unwrap();
        cache.get_or_compile(&engine, Path::new("b.wasm"), ContentHash::of(&b), &b).unwrap();
        assert_eq!(cache.retain(&[ContentHash::of(&a)].into_iter().collect()), 1);
        assert_eq!(cache.get_or_compile(&engine, Path::new("a.wasm"), ContentHash::of(&a), &a).unwrap().1, Origin::Memory);
        assert_eq!(cache.get_or_compile(&engine, Path::new("b.wasm"), ContentHash::of(&b), &b).unwrap().1, Origin::Compiled);
    }
}
