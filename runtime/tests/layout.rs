//! The module rules of docs/architecture.md, checked on the source: no
//! cycle between modules, wasmtime's types only in `engine` (and the derives
//! of `event`), async-nats's only in `nats`, and `config` using nothing else
//! of weir's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every file of `runtime/src` as (module path, code without comments and
/// without its `#[cfg(test)]` module).
fn modules() -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<Vec<String>, String>) {
        for entry in std::fs::read_dir(dir).expect("runtime/src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).expect("under the root").with_extension("");
            let mut module: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if module.last().is_some_and(|m| m == "mod") || module == ["lib"] || module == ["main"] {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
            let code: Vec<&str> = text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect();
            out.insert(module, code.join("\n"));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The modules a file uses, through `crate::a::b` and `super::a` paths. A
/// folder's `pub use child::X` re-exports are its face, not a dependency.
fn dependencies(all: &BTreeMap<Vec<String>, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let resolve = |path: &[String]| (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| all.contains_key(p));
    let mut edges = BTreeMap::new();
    for (module, code) in all {
        let mut used = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("pub use ")) {
            for (prefix, base) in [("crate::", Vec::new()), ("super::", module[..module.len().saturating_sub(1)].to_vec())] {
                for (at, _) in line.match_indices(prefix) {
                    if line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    let rest = &line[at + prefix.len()..];
                    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
                    let mut path = base.clone();
                    path.extend(rest[..end].split("::").filter(|s| !s.is_empty()).map(str::to_owned));
                    let target = resolve(&path).unwrap_or(base.clone());
                    if !target.is_empty() && &target != module {
                        used.insert(target);
                    }
                }
            }
        }
        edges.insert(module.clone(), used);
    }
    edges
}

fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if !done.insert(node.clone()) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

fn show(cycle: &[Vec<String>]) -> String {
    cycle.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" -> ")
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let all = modules();
    let files = dependencies(&all);
    assert!(files.contains_key(&vec!["run".to_owned()]) && files.len() > 20, "the source was found");
    if let Some(cycle) = find_cycle(&files) {
        panic!("import cycle between files: {}", show(&cycle));
    }
    let mut top: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, used) in &files {
        let Some(first) = module.first() else { continue };
        let entry = top.entry(vec![first.clone()]).or_default();
        entry.extend(used.iter().filter(|u| u[0] != *first).map(|u| vec![u[0].clone()]));
    }
    if let Some(cycle) = find_cycle(&top) {
        panic!("import cycle between modules: {}", show(&cycle));
    }
    // The cycle this layout removed stays removed.
    assert!(!files[&vec!["reload".to_owned()]].contains(&vec!["run".to_owned()]), "reload must not use run");
}

#[test]
fn foreign_types_stay_in_their_modules() {
    for (module, code) in modules() {
        let first = module.first().map_or("lib", String::as_str);
        if code.contains("async_nats::") {
            assert_eq!(first, "nats", "{} uses async-nats; only nats/ may", module.join("::"));
        }
        if code.contains("wasmtime::") || code.contains("wasmtime_wasi::") {
            assert!(["engine", "event"].contains(&first), "{} uses wasmtime; only engine/ may (and event.rs its derives)", module.join("::"));
        }
        if first == "config" {
            // `event` is weir's own data (events, error kinds), which test
            // files describe; it uses nothing else of weir's.
            for foreign in ["crate::engine", "crate::nats", "crate::metrics", "crate::pipeline", "crate::exec", "tokio::"] {
                assert!(!code.contains(foreign), "{} uses {foreign}: config reads files and nothing else", module.join("::"));
            }
        }
    }
}
