//! The shape of the code, checked (ARCHITECTURE.md): no import cycles between the files of
//! `core/src` nor between its top-level modules, no library file over 600 lines and no function
//! over 100 lines (test modules excluded), and every "docs/spec.md section N" citation names a
//! section the specification has.
//!
//! Imports are read from the source text: every `crate::`, `super::` and `self::` path in the
//! non-test code of a file (in `use` trees and inline), resolved to the file of the longest
//! module prefix it names; a name that a `mod.rs` re-exports (`pub use child::Name`) resolves to
//! the file that defines it, so a facade does not hide a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The largest library file, in lines without its test module.
const MAX_FILE_LINES: usize = 600;
/// The longest function, in lines from its signature to its closing brace.
const MAX_FN_LINES: usize = 100;

type ModPath = Vec<String>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text before the first `#[cfg(test)]` (test modules sit at the end of every file here),
/// with comments blanked out line by line (strings kept: they hold no paths we follow).
fn library_part(src: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for line in src.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        lines.push(code.to_string());
    }
    lines
}

/// The module path of a file under `core/src`: `model/attach/mod.rs` -> `model::attach`.
fn module_of(root: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::");
    // A `}` before the `{`: not a use tree (text that happened to follow the word `use`).
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    items.push(cur);
    items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .flat_map(|i| expand(i))
        .map(|p| {
            if p == "self" {
                prefix.to_string()
            } else {
                format!("{prefix}::{p}")
            }
        })
        .collect()
}

/// Every `crate::`/`super::`/`self::` path of a file's library code, as written.
fn paths_of(lines: &[String]) -> Vec<String> {
    let text = lines.join("\n");
    let mut paths = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree: String = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        paths.extend(
            expand(&tree)
                .into_iter()
                .map(|p| p.split(" as ").next().unwrap().trim().to_string()),
        );
    }
    for root in ["crate::", "super::", "self::"] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                paths.push(tail[..len].trim_end_matches(':').to_string());
            }
            rest = &rest[i + root.len()..];
        }
    }
    paths
}

struct Tree {
    /// Module path -> its file's library lines.
    files: BTreeMap<ModPath, Vec<String>>,
    /// (module, re-exported name) -> the module path the name comes from.
    reexports: BTreeMap<(ModPath, String), ModPath>,
}

impl Tree {
    fn read(root: &Path) -> Self {
        let mut list = Vec::new();
        rust_files(root, &mut list);
        let mut files = BTreeMap::new();
        for f in list {
            let src = std::fs::read_to_string(&f).unwrap();
            files.insert(module_of(root, &f), library_part(&src));
        }
        let mut tree = Tree {
            files,
            reexports: BTreeMap::new(),
        };
        let mut reexports = BTreeMap::new();
        for (module, lines) in &tree.files {
            for line in lines
                .iter()
                .filter(|l| l.trim_start().starts_with("pub use "))
            {
                let body = line.trim_start().trim_start_matches("pub use ");
                let body = body.trim_end_matches(';');
                for p in expand(body) {
                    let segs: Vec<&str> = p.split("::").collect();
                    let (Some(name), true) = (segs.last(), segs.len() > 1) else {
                        continue;
                    };
                    let base = if segs[0] == "crate" {
                        segs[1..segs.len() - 1]
                            .iter()
                            .map(|s| s.to_string())
                            .collect()
                    } else {
                        let mut m = module.clone();
                        m.extend(segs[..segs.len() - 1].iter().map(|s| s.to_string()));
                        m
                    };
                    reexports.insert((module.clone(), name.to_string()), base);
                }
            }
        }
        tree.reexports = reexports;
        tree
    }

    /// The file a path names: the longest module prefix, through re-exports of a `mod.rs`.
    fn resolve(&self, mut path: ModPath) -> Option<ModPath> {
        for _ in 0..8 {
            // n = 0 is the crate root (`lib.rs`), reached only through its re-exports.
            let n = (0..=path.len())
                .rev()
                .find(|&n| self.files.contains_key(&path[..n]))?;
            let module = path[..n].to_vec();
            let Some(next) = path.get(n) else {
                return (n > 0).then_some(module);
            };
            match self.reexports.get(&(module.clone(), next.clone())) {
                Some(source) if *source != module => {
                    let mut p = source.clone();
                    p.extend(path[n..].iter().cloned());
                    path = p;
                }
                _ => return (n > 0).then_some(module),
            }
        }
        None
    }

    /// The files each file's library code imports (itself excluded).
    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges = BTreeMap::new();
        for (module, lines) in &self.files {
            let mut targets = BTreeSet::new();
            for p in paths_of(lines) {
                let segs: Vec<String> = p.split("::").map(str::to_string).collect();
                let supers = segs.iter().take_while(|s| *s == "super").count();
                let abs: ModPath = match segs[0].as_str() {
                    "crate" => segs[1..].to_vec(),
                    "self" => module
                        .iter()
                        .cloned()
                        .chain(segs[1..].iter().cloned())
                        .collect(),
                    "super" if supers <= module.len() => module[..module.len() - supers]
                        .iter()
                        .cloned()
                        .chain(segs[supers..].iter().cloned())
                        .collect(),
                    _ => continue,
                };
                if let Some(t) = self.resolve(abs)
                    && t != *module
                {
                    targets.insert(t);
                }
            }
            edges.insert(module.clone(), targets);
        }
        edges
    }
}

/// The strongly connected components with more than one node (Tarjan).
fn cycles<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on: BTreeSet<N>,
        out: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(v: &N, e: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        let i = s.index.len();
        s.index.insert(v.clone(), i);
        s.low.insert(v.clone(), i);
        s.stack.push(v.clone());
        s.on.insert(v.clone());
        for w in e.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, e, s);
                let l = s.low[w].min(s.low[v]);
                s.low.insert(v.clone(), l);
            } else if s.on.contains(w) {
                let l = s.index[w].min(s.low[v]);
                s.low.insert(v.clone(), l);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(&w);
                comp.push(w.clone());
                if w == *v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(v, edges, &mut s);
        }
    }
    s.out
}

fn core_src() -> PathBuf {
    repo().join("core/src")
}

#[test]
fn no_import_cycles_between_files_or_top_level_modules() {
    let tree = Tree::read(&core_src());
    let edges = tree.edges();
    let file_cycles: Vec<String> = cycles(&edges)
        .iter()
        .map(|c| {
            let mut names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
            names.sort();
            names.join(" <-> ")
        })
        .collect();
    assert!(file_cycles.is_empty(), "file cycles: {file_cycles:#?}");

    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &edges {
        let Some(a) = from.first() else { continue };
        for b in targets.iter().filter_map(|t| t.first()) {
            if a != b {
                top.entry(a.clone()).or_default().insert(b.clone());
            }
        }
    }
    let module_cycles = cycles(&top);
    assert!(
        module_cycles.is_empty(),
        "top-level module cycles: {module_cycles:?}"
    );
}

#[test]
fn the_checker_sees_a_cycle_through_a_reexport() {
    // A two-file tree where `a` uses `b` through the crate root's re-export and `b` uses `a`.
    let mut files = BTreeMap::new();
    let lines = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    files.insert(vec![], lines("pub mod a;\npub mod b;\npub use b::Thing;"));
    files.insert(vec!["a".to_string()], lines("use crate::Thing;"));
    files.insert(
        vec!["b".to_string()],
        lines("use crate::a::f;\npub struct Thing;"),
    );
    let mut tree = Tree {
        files,
        reexports: BTreeMap::new(),
    };
    tree.reexports
        .insert((vec![], "Thing".to_string()), vec!["b".to_string()]);
    let found = cycles(&tree.edges());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(expand("a::{b, c::{d, e}}"), ["a::b", "a::c::d", "a::c::e"]);
}

/// The library files of the workspace's crates.
fn library_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["core/src", "native/src", "web/src", "shaders/src"] {
        rust_files(&repo().join(dir), &mut files);
    }
    files.sort();
    files
}

#[test]
fn no_library_file_over_600_lines() {
    let long: Vec<String> = library_files()
        .iter()
        .filter_map(|f| {
            let n = library_part(&std::fs::read_to_string(f).unwrap()).len();
            (n > MAX_FILE_LINES).then(|| format!("{}: {n}", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:#?}"
    );
}

/// The functions of `lines` longer than [`MAX_FN_LINES`]: from a line declaring `fn name` to
/// the line where the braces opened after it close again.
fn long_functions(lines: &[String]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let decl = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "async fn ",
            "const fn ",
            "unsafe fn ",
        ]
        .iter()
        .chain(&["pub unsafe fn ", "pub const fn ", "pub(super) fn "])
        .any(|p| t.starts_with(p));
        if !decl {
            continue;
        }
        let name = t
            .split("fn ")
            .nth(1)
            .unwrap_or("")
            .split(['(', '<'])
            .next()
            .unwrap_or("");
        let (mut depth, mut opened) = (0i64, false);
        for (i, l) in lines[start..].iter().enumerate() {
            // Skip char and string literals holding braces.
            let code = l.replace("'{'", "").replace("'}'", "");
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if !opened && code.trim_end().ends_with(';') {
                break;
            }
            if opened && depth <= 0 {
                if i + 1 > MAX_FN_LINES {
                    out.push((name.to_string(), i + 1));
                }
                break;
            }
        }
    }
    out
}

#[test]
fn no_function_over_100_lines() {
    let mut long = Vec::new();
    for f in library_files() {
        let lines = library_part(&std::fs::read_to_string(&f).unwrap());
        for (name, n) in long_functions(&lines) {
            long.push(format!("{}: fn {name}: {n} lines", f.display()));
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long:#?}"
    );
    // The counter itself: a 3-line function and a 102-line one.
    let short: Vec<String> = ["fn f() {", "    1", "}"].map(str::to_string).to_vec();
    assert!(long_functions(&short).is_empty());
    let mut big = vec!["pub fn g(x: u32) -> u32 {".to_string()];
    big.extend((0..100).map(|i| format!("    let _ = {i};")));
    big.push("}".to_string());
    assert_eq!(long_functions(&big), [("g".to_string(), 102)]);
}

/// The section numbers `docs/spec.md` defines (`## N. Title`).
fn spec_sections() -> BTreeSet<u32> {
    let spec = std::fs::read_to_string(repo().join("docs/spec.md")).unwrap();
    spec.lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|t| t.split('.').next()?.trim().parse().ok())
        .collect()
}

/// Every "docs/spec.md section N" citation in `text`, as (line number, N).
fn citations(text: &str) -> Vec<(usize, u32)> {
    const CITE: &str = "docs/spec.md section ";
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices(CITE) {
            let digits: String = line[at + CITE.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                out.push((i + 1, n));
            }
        }
    }
    out
}

/// Every citation of the specification in code, docs, tests and the page points at a section
/// that `docs/spec.md` has (the repository's own copy, not a file outside it).
#[test]
fn spec_citations_name_existing_sections() {
    let sections = spec_sections();
    assert_eq!(sections, (1..=9).collect(), "docs/spec.md's sections");
    let mut files = library_files();
    for dir in ["tests", "docs", "www", "scripts"] {
        let mut all = Vec::new();
        text_files(&repo().join(dir), &mut all);
        files.extend(all);
    }
    files.push(repo().join("README.md"));
    files.push(repo().join("ARCHITECTURE.md"));
    let mut bad = Vec::new();
    let mut seen = 0;
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for (line, n) in citations(&text) {
            seen += 1;
            if !sections.contains(&n) {
                bad.push(format!("{}:{line}: section {n}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "citations of missing sections: {bad:#?}");
    assert!(
        seen > 50,
        "only {seen} citations found: is the pattern still used?"
    );
    let example = format!("x {0} 12, {0} 3.", "docs/spec.md section");
    assert_eq!(citations(&example), [(1, 12), (1, 3)]);
}

/// The text files under `dir` (sources, docs, scripts), skipping generated folders.
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy();
        if p.is_dir() {
            if !["node_modules", "pkg", "target"].contains(&name.as_ref()) {
                text_files(&p, out);
            }
        } else if ["rs", "md", "js", "mjs", "py", "sh", "html"]
            .iter()
            .any(|x| name.ends_with(&format!(".{x}")))
        {
            out.push(p);
        }
    }
}
