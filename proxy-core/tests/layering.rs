//! The core reads from the bottom up (`proxy-core/ARCHITECTURE.md`): the store imports
//! nothing built on it. This test reads the crate's sources, collects which top-level module
//! each file refers to (`crate::NAME`, outside comments and test modules), and fails on any
//! circle of references that passes through `store`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules a layer above the store may use but the store may never reach back to.
const ABOVE_THE_STORE: &[&str] = &["proxy", "owned", "future", "lifetimes", "registry"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        // Test files (`tests.rs`, declared `#[cfg(test)] mod tests;`) are not the crate.
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|name| name != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`connectors/zmq/mod.rs` -> `connectors`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The code of a file without comments (line and doc comments) and without its test module.
fn code(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::NAME` a piece of code refers to, including inside `use crate::{a, b}`.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// The items `lib.rs` re-exports at the crate root (`pub use store::{Store, ...}`), each with
/// the module it comes from, so that `crate::Store` counts as a reference to `store`.
fn root_items(lib: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    for statement in code(lib).split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        let names = rest.trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.trim().rsplit("::").next().unwrap_or_default().trim();
            if !name.is_empty() {
                items.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    items
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let items = root_items(&lib);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).expect("read a source file");
        let edges = graph.entry(module.clone()).or_default();
        for target in references(&code(&text)) {
            // An item re-exported at the crate root (`crate::Store`) stands for its module.
            let target = items.get(&target).cloned().unwrap_or(target);
            if target != module && modules.contains(&target) {
                edges.insert(target);
            }
        }
    }
    graph
}

/// The modules reachable from `from`.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(module) = todo.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

#[test]
fn the_store_imports_nothing_built_on_it() {
    let graph = graph();
    assert!(
        graph.contains_key("store"),
        "no store module found: {graph:?}"
    );
    let below = reachable(&graph, "store");
    assert!(
        !below.contains("store"),
        "a circle of imports passes through store.rs; the store reaches {below:?}, and the graph is {graph:#?}"
    );
    for above in ABOVE_THE_STORE {
        assert!(
            !below.contains(*above),
            "store.rs reaches `{above}`, which is built on the store: {below:?}"
        );
        assert!(
            reachable(&graph, above).contains("store"),
            "`{above}` no longer uses the store: update ABOVE_THE_STORE and ARCHITECTURE.md"
        );
    }
}

#[test]
fn root_re_exports_map_to_their_modules() {
    let items =
        root_items("pub use store::{Store, StoreBuilder};\npub use key::Key;\n// pub use x::Y;");
    assert_eq!(items.get("Store").map(String::as_str), Some("store"));
    assert_eq!(items.get("StoreBuilder").map(String::as_str), Some("store"));
    assert_eq!(items.get("Key").map(String::as_str), Some("key"));
    assert!(!items.contains_key("Y"));
}

#[test]
fn the_reference_reader_sees_grouped_and_plain_paths_but_not_comments() {
    let sample = "use crate::{key::Key, error};\n// crate::proxy in a comment\nlet x = crate::cache::Cache::new();";
    let found = references(&code(sample));
    assert_eq!(
        found,
        ["cache", "error", "key"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
