//! The core's layers, as the README's layout section draws them: a module imports only from
//! its own layer or those below, and no modules import each other in a circle. Read from
//! the code's own `crate::` paths (in `use` lines and inline, comments left out) of every
//! file under `src/`; test code (`tests.rs` files, a file's `mod tests`) may use the test
//! harness and is not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module of the crate not named here fails the test: a new one is placed
/// on purpose.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "util",
            "fsutil",
            "digest",
            "reference",
            "model",
            "error",
            "ipnet",
            "http",
            "tls",
        ],
    ),
    ("stores", &["db", "content", "mount", "etcd"]),
    ("layers", &["snapshot", "diff"]),
    ("state", &["state", "events"]),
    ("resources", &["image", "volume", "network"]),
    ("containers", &["runtime"]),
    ("producers", &["registry", "build", "cluster"]),
    ("facade", &["engine", "api", "system"]),
    ("wire", &["client", "server"]),
    ("harness", &["fuzzing", "testutil"]),
];

/// Imports that break the drawing, each to go: the test fails on any import not allowed
/// and not listed here, and on a listed one that is gone. Empty: the code is as drawn, and
/// an import that breaks it is a failure, not an entry here.
const KNOWN: &[(&str, &str)] = &[];

/// The layer of each module, by index.
fn layer_of() -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for (i, (_, modules)) in LAYERS.iter().enumerate() {
        for m in *modules {
            assert!(out.insert(*m, i).is_none(), "{m} is in two layers");
        }
    }
    out
}

/// The text of a source file without its test modules (`#[cfg(test)] mod NAME { ... }`)
/// and comments.
fn code_of(text: &str) -> String {
    let mut kept = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]\nmod ") {
        kept.push_str(&rest[..i]);
        let module = &rest[i..];
        // To the brace that closes the module's (braces in strings are rare enough here).
        let mut depth = 0;
        let mut end = module.len();
        for (j, c) in module.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    // `mod tests;`: the module is a file of its own.
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &module[end..];
    }
    kept.push_str(rest);
    kept.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| match l.find(" // ") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules that `code` names after `crate::` (`crate::a::b`, and each of
/// `crate::{a, b::c}`).
fn named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `$crate::` and `my_crate::` are not this crate's paths.
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        start = false;
                        let m = ident(&group[j..]);
                        if !m.is_empty() && m != "self" {
                            out.insert(m);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let m = ident(rest);
            if !m.is_empty() {
                out.insert(m);
            }
        }
    }
    out
}

/// The names `lib.rs` re-exports at the crate's root (`pub use error::{Error, Result};`),
/// each with the module it comes from: `crate::Error` is an import of `error`.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = name.trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.to_string());
            }
        }
    }
    out
}

/// Every source file under `src` but `lib.rs` and test files, as (path relative to `src`,
/// its code without tests and comments).
fn sources(src: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !rel.ends_with(".rs")
                || rel == "lib.rs"
                || name.ends_with("tests.rs")
                || name == "testsuite.rs"
            {
                continue;
            }
            let code = code_of(&std::fs::read_to_string(&path).unwrap());
            out.push((rel, code));
        }
    }
    out.sort();
    out
}

/// Every import between two modules of `src`: (from, to) → the files that make it.
fn imports(src: &Path) -> BTreeMap<(String, String), BTreeSet<String>> {
    let roots = reexports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources(src) {
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs");
        for to in named(&code) {
            let to = roots.get(&to).cloned().unwrap_or(to);
            if to != module {
                out.entry((module.to_string(), to))
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    out
}

/// What is wrong with `imports` under the layers and the known list, one line each.
fn faults(
    imports: &BTreeMap<(String, String), BTreeSet<String>>,
    known: &[(&str, &str)],
) -> Vec<String> {
    let layer = layer_of();
    let mut out = Vec::new();
    let mut allowed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for ((from, to), files) in imports {
        let files = files.iter().cloned().collect::<Vec<_>>().join(", ");
        let (Some(&lf), Some(&lt)) = (layer.get(from.as_str()), layer.get(to.as_str())) else {
            out.push(format!(
                "{from} -> {to} ({files}): a module in no layer; place it in LAYERS"
            ));
            continue;
        };
        let listed = known.contains(&(from.as_str(), to.as_str()));
        if lt > lf && !listed {
            out.push(format!(
                "{from} ({}) imports {to} ({}), a layer above it, in {files}",
                LAYERS[lf].0, LAYERS[lt].0
            ));
        }
        if !listed {
            allowed.entry(from).or_default().push(to);
        }
    }
    for (from, to) in known {
        if !imports.contains_key(&(from.to_string(), to.to_string())) {
            out.push(format!("{from} no longer imports {to}: take it off KNOWN"));
        }
    }
    // Circles among the imports the layers allow: a depth-first walk from each module.
    let mut reported = BTreeSet::new();
    for start in allowed.keys() {
        let mut path = vec![*start];
        let mut next = vec![allowed.get(start).cloned().unwrap_or_default()];
        while let Some(todo) = next.last_mut() {
            match todo.pop() {
                None => {
                    next.pop();
                    path.pop();
                }
                Some(m) if m == *start => {
                    let mut circle = path.clone();
                    let key: BTreeSet<&str> = circle.iter().copied().collect();
                    if reported.insert(key.into_iter().collect::<Vec<_>>()) {
                        circle.push(m);
                        out.push(format!("a circle: {}", circle.join(" -> ")));
                    }
                }
                Some(m) if path.contains(&m) => {}
                Some(m) => {
                    path.push(m);
                    next.push(allowed.get(m).cloned().unwrap_or_default());
                }
            }
        }
    }
    out
}

/// The files other than `state.rs` that give the opened root an operation of its own
/// (`impl State`): each resource's work is its own service's, over the root.
fn operations_on_state(src: &Path) -> Vec<String> {
    sources(src)
        .into_iter()
        .filter(|(rel, code)| rel != "state.rs" && code.lines().any(is_impl_of_state))
        .map(|(rel, _)| format!("{rel} gives State an operation: put it on its resource's service"))
        .collect()
}

/// `impl State {` and `impl<...> State {`, not `impl ... for State` or `impl OtherState`.
fn is_impl_of_state(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix("impl") else {
        return false;
    };
    let rest = match rest.strip_prefix('<') {
        Some(generic) => generic.split_once('>').map_or("", |(_, r)| r),
        None => rest,
    };
    let rest = rest.trim_start();
    rest.strip_prefix("State")
        .or_else(|| rest.strip_prefix("crate::state::State"))
        .is_some_and(|r| r.trim_start().starts_with('{'))
}

#[test]
fn the_core_is_layered_as_drawn() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = imports(&src);
    let mut faults = faults(&found, KNOWN);
    faults.extend(operations_on_state(&src));
    assert!(
        faults.is_empty(),
        "the core's layers (core/tests/architecture.rs, README):\n{}",
        faults.join("\n")
    );
}

/// The test fails as it should: on a resource importing the facade, on a circle, on a
/// module no layer names, and on a known import that is gone.
#[test]
fn the_check_fails_as_it_should() {
    let edge = |a: &str, b: &str, file: &str| {
        (
            (a.to_string(), b.to_string()),
            BTreeSet::from([file.to_string()]),
        )
    };
    let found = BTreeMap::from([
        edge("image", "engine", "image/mod.rs"),
        edge("image", "volume", "image/mod.rs"),
        edge("volume", "image", "volume/mod.rs"),
        edge("shiny", "db", "shiny.rs"),
        edge("db", "util", "db/mod.rs"),
    ]);
    let got = faults(&found, &[("diff", "image")]);
    assert_eq!(
        got,
        [
            "image (resources) imports engine (facade), a layer above it, in image/mod.rs",
            "shiny -> db (shiny.rs): a module in no layer; place it in LAYERS",
            "diff no longer imports image: take it off KNOWN",
            "a circle: image -> volume -> image",
        ],
    );
    assert!(is_impl_of_state("impl State {"));
    assert!(is_impl_of_state("impl<'a> crate::state::State {"));
    assert!(!is_impl_of_state("impl Drop for State {"));
    assert!(!is_impl_of_state("impl StateError {"));
    assert!(!is_impl_of_state("impl Images<'_> {"));
    assert_eq!(
        named("use crate::{a::b, c, d::{e, f}};\nlet x = crate::g::h(); my_crate::i; $crate::j"),
        BTreeSet::from(["a", "c", "d", "g"].map(String::from))
    );
    assert_eq!(
        reexports("pub mod a;\npub use engine::{Engine, Options};\npub use error::Error;"),
        BTreeMap::from(
            [
                ("Engine", "engine"),
                ("Options", "engine"),
                ("Error", "error")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        )
    );
    assert_eq!(
        code_of(
            "use crate::a; // crate::b\n// crate::c\n#[cfg(test)]\nmod shim_tests {\nuse crate::d;\nfn f() {}\n}\nuse crate::e;\n#[cfg(test)]\nmod tests;"
        ),
        "use crate::a;\n\nuse crate::e;"
    );
}
