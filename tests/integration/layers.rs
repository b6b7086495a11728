//! The module graph follows the architecture (`docs/architecture.md`, "Layers"): every
//! `crate::` path in `src/` names a module of the same top-level module or of a lower layer.
//! A backward import (a lower layer reaching up) is how an import cycle starts, so this test
//! fails on the first one, naming the file and line.
//!
//! The check reads the source text: `use crate::…` lines, grouped `use crate::{a, b::c}`
//! lists, and `crate::x::…` paths in code. Comments (doc links included) are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules, highest first. A module may use those after it, never those before.
const LAYERS: &[&str] = &[
    "server", "metrics", "pgwire", "sql", "source", "sink", "dataflow", "catalog", "state", "change", "types", "ident",
    "alloc", "error", "sync",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a piece of code names through `crate::`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // `headwater_crate::`, not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            found.push(first_segment(&item));
        } else {
            found.push(first_segment(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn first_segment(s: &str) -> String {
    s.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

#[test]
fn imports_follow_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut graph: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue; // the crate root declares every module
        }
        let Some(own) = rank(&top) else {
            violations.push(format!(
                "src/{}: module `{top}` is not in LAYERS (tests/integration/layers.rs)",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for used in crate_paths(code) {
                if used == top || used == "self" || used == "super" {
                    continue;
                }
                graph.entry(top.clone()).or_default().insert(used.clone());
                match rank(&used) {
                    None => violations.push(format!(
                        "src/{}:{}: `crate::{used}` is not a module in LAYERS",
                        relative.display(),
                        n + 1
                    )),
                    Some(r) if r < own => violations.push(format!(
                        "src/{}:{}: `{top}` uses `crate::{used}`, a higher layer ({})",
                        relative.display(),
                        n + 1,
                        line.trim()
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layers {LAYERS:?}:\n{}\n(move the shared item down, e.g. to src/change.rs, or pass it in \
         through a trait the lower layer defines)",
        violations.join("\n")
    );
    // What the check saw, so a run shows the graph (`cargo test layers -- --nocapture`).
    for (from, to) in &graph {
        println!("{from} -> {to:?}");
    }
}

#[test]
fn crate_paths_are_found() {
    assert_eq!(crate_paths("use crate::state::TableState;"), ["state"]);
    assert_eq!(crate_paths("use crate::{change::ChangeBatch, error::{Error, Result}};"), ["change", "error"]);
    assert_eq!(crate_paths("let x = crate::ident::quote_ident(&n) + crate::sql::f();"), ["ident", "sql"]);
    assert!(crate_paths("use headwater::sql::Engine;").is_empty());
}
