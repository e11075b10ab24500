//! The shape of `src/`, kept by a test: folders are layers and imports point down.
//!
//! Every `crate::` and `super::` path outside `#[cfg(test)]` code, comments and literals is
//! an import of the file it resolves to (the deepest existing module file). A module's own
//! `mod.rs` may use its children (it is their interface); any other cycle between files
//! fails, as does a cycle between top-level modules or an import from a lower layer into a
//! higher one. Files stay under [`MAX_FILE_LINES`] and `impl` blocks under
//! [`MAX_IMPL_LINES`]. The checker itself is tested on a small made-up tree first, so that
//! a checker that finds nothing cannot pass for a clean tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first: a module may import its own layer's and lower ones.
const LAYERS: &[&[&str]] = &[
    &["support"],
    &["http", "proxy_protocol"],
    &["config"],
    &["files", "metrics", "access_log", "report", "tls"],
    &["engine"],
    &["server"],
    &["app"],
    &["internals", "lib"],
];

/// Types whose fields are private to the file that defines them: the core's loop (`Shard`)
/// and the engine's pieces that own their state. Anything else reaches that state only
/// through their methods.
const OWNED: &[(&str, &str)] = &[
    ("engine/shard.rs", "Shard"),
    ("engine/background.rs", "Background"),
    ("engine/bodies.rs", "BodyBudget"),
    ("engine/buffers.rs", "BufferPool"),
    ("engine/buffers.rs", "BoxPool"),
    ("engine/buffer_ring.rs", "Received"),
    ("engine/handshakes.rs", "HandshakeGate"),
    ("engine/listeners.rs", "Listeners"),
    ("engine/park.rs", "Parking"),
    ("engine/table.rs", "Table"),
    ("engine/transport.rs", "TlsLink"),
    ("engine/wheel.rs", "Wheel"),
];

const MAX_FILE_LINES: usize = 600;
const MAX_IMPL_LINES: usize = 400;

/// Source text with comments, string and char literals blanked (a small Rust lexer).
fn lex(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 1;
            i += 2;
            while i < b.len() && depth > 0 {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if let Some(skip) = raw_string(&b[i..], i == 0 || is_ident(b[i - 1])) {
            out.push_str(&"\n".repeat(b[i..i + skip].iter().filter(|&&c| c == b'\n').count()));
            out.push_str("\"\"");
            i += skip;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            match char_literal(&b[i..]) {
                Some(len) => {
                    out.push_str("' '");
                    i += len;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let len = utf8_len(b[i]);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The length of a raw string literal (`r"…"`, `br#"…"#`) at the start of `b`.
fn raw_string(b: &[u8], boundary: bool) -> Option<usize> {
    if !boundary {
        return None;
    }
    let mut i = usize::from(b.first() == Some(&b'b'));
    if b.get(i) != Some(&b'r') {
        return None;
    }
    i += 1;
    let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
    i += hashes;
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let end = b[i + 1..].windows(close.len()).position(|w| w == close)?;
    Some(i + 1 + end + close.len())
}

/// The length of a char literal at the start of `b` (not a lifetime).
fn char_literal(b: &[u8]) -> Option<usize> {
    if b.get(1) == Some(&b'\\') {
        let end = b[2..].iter().take(10).position(|&c| c == b'\'')?;
        return Some(end + 3);
    }
    let len = utf8_len(*b.get(1)?);
    (b.get(1 + len) == Some(&b'\'')).then_some(len + 2)
}

/// The code outside `#[cfg(test)]` items.
fn strip_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let open = item.find('{');
        let semi = item.find(';');
        let end = match (open, semi) {
            (Some(open), Some(semi)) if semi < open => semi + 1,
            (Some(open), _) => matching_brace(item, open) + 1,
            (None, Some(semi)) => semi + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The index of the brace closing the one at `open`.
fn matching_brace(text: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    text.len() - 1
}

/// The module path of a file: `engine/shard.rs` → `[engine, shard]`, `app/mod.rs` → `[app]`.
fn module_of(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into paths.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let body = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&body[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&body[start..], &base, out);
        return;
    }
    let mut path = prefix.to_vec();
    for segment in tree.split("::") {
        let segment = segment.split(" as ").next().unwrap_or("").trim();
        if !segment.is_empty() && segment != "self" && segment != "*" {
            path.push(segment.to_string());
        }
    }
    if !tree.is_empty() {
        out.push(path);
    }
}

/// The absolute module paths a file's code refers to (`crate::…` and `super::…`).
fn references(code: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    // `super` in a mod.rs or a plain file means the parent of the module the file is.
    let parent = |levels: usize| -> Option<Vec<String>> {
        let _ = is_mod_file;
        module
            .len()
            .checked_sub(levels)
            .map(|n| module[..n].to_vec())
    };
    let mut paths = Vec::new();
    let mut i = 0;
    while let Some(at) = code[i..].find("use ") {
        let start = i + at;
        i = start + 4;
        if start > 0 && is_ident(code.as_bytes()[start - 1]) {
            continue;
        }
        let Some(end) = code[start..].find(';') else {
            break;
        };
        let tree = code[start + 4..start + end].trim();
        let (base, rest) = if let Some(rest) = tree.strip_prefix("crate::") {
            (Some(Vec::new()), rest)
        } else if tree.starts_with("super::") {
            let levels = tree.matches("super::").count();
            (parent(levels), tree.trim_start_matches("super::"))
        } else {
            continue;
        };
        if let Some(base) = base {
            expand(rest, &base, &mut paths);
        }
    }
    // Paths used in the code itself: `crate::a::b(…)`, `super::c::D`.
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(anchor) {
            let start = from + at;
            from = start + anchor.len();
            if start > 0
                && (is_ident(code.as_bytes()[start - 1]) || code.as_bytes()[start - 1] == b':')
            {
                continue;
            }
            let mut end = start;
            let bytes = code.as_bytes();
            while end < bytes.len() && (is_ident(bytes[end]) || bytes[end] == b':') {
                end += 1;
            }
            let text = &code[start..end];
            let (base, rest) = if let Some(rest) = text.strip_prefix("crate::") {
                (Some(Vec::new()), rest)
            } else {
                let levels = text.matches("super::").count();
                (parent(levels), text.trim_start_matches("super::"))
            };
            if let Some(mut base) = base {
                base.extend(rest.split("::").filter(|s| !s.is_empty()).map(String::from));
                paths.push(base);
            }
        }
    }
    paths
}

/// What the checker finds wrong with a tree of `path → source` files.
fn problems(files: &BTreeMap<String, String>) -> Vec<String> {
    let modules: BTreeMap<Vec<String>, String> =
        files.keys().map(|p| (module_of(p), p.clone())).collect();
    let resolve = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .find_map(|n| modules.get(&path[..n]).cloned())
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut found = Vec::new();
    for (path, text) in files {
        let module = module_of(path);
        let code = strip_tests(&lex(text));
        let mod_file = path.ends_with("mod.rs") || path == "lib.rs";
        for reference in references(&code, &module, mod_file) {
            let Some(target) = resolve(&reference) else {
                continue;
            };
            let target_module = module_of(&target);
            // A module's own file may use its descendants: it is their interface.
            let descendant =
                target_module.len() > module.len() && target_module.starts_with(&module);
            if target != *path && !(mod_file && descendant) {
                edges.entry(path.clone()).or_default().insert(target);
            }
        }
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            found.push(format!("{path}: {lines} lines (at most {MAX_FILE_LINES})"));
        }
        for (line, length) in impl_blocks(&code) {
            if length > MAX_IMPL_LINES {
                found.push(format!(
                    "{path}:{line}: an impl of {length} lines (at most {MAX_IMPL_LINES})"
                ));
            }
        }
    }
    for cycle in cycles(&edges) {
        found.push(format!("file cycle: {}", cycle.join(" ")));
    }
    let top = |path: &str| {
        module_of(path)
            .first()
            .cloned()
            .unwrap_or_else(|| "lib".into())
    };
    let rank = |module: &str| LAYERS.iter().position(|layer| layer.contains(&module));
    let mut module_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &edges {
        for to in targets {
            let (a, b) = (top(from), top(to));
            if a == b {
                continue;
            }
            module_edges.entry(a.clone()).or_default().insert(b.clone());
            match (rank(&a), rank(&b)) {
                (Some(x), Some(y)) if x < y => found.push(format!(
                    "upward import: {from} (layer {x}) uses {to} (layer {y})"
                )),
                (None, _) => found.push(format!("{from}: module {a} is in no layer")),
                (_, None) => found.push(format!("{to}: module {b} is in no layer")),
                _ => {}
            }
        }
    }
    for cycle in cycles(&module_edges) {
        found.push(format!("module cycle: {}", cycle.join(" ")));
    }
    found
}

/// For each of `owned` (a file and a struct it defines), what makes its state visible
/// outside that file: a field marked `pub` in any form, or the struct not being there.
fn exposed(files: &BTreeMap<String, String>, owned: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    for &(path, name) in owned {
        let Some(text) = files.get(path) else {
            found.push(format!("{path}: no such file (for struct {name})"));
            continue;
        };
        let code = strip_tests(&lex(text));
        let Some(body) = struct_body(&code, name) else {
            found.push(format!("{path}: no struct {name} with named fields"));
            continue;
        };
        // Top-level lines of the body only: a field's type may hold braces of its own.
        let mut depth = 0i32;
        for line in body.lines() {
            let trimmed = line.trim_start();
            if depth == 0 && (trimmed.starts_with("pub ") || trimmed.starts_with("pub(")) {
                let field = trimmed.split(':').next().unwrap_or(trimmed);
                found.push(format!("{path}: {name} shows a field: `{field}`"));
            }
            depth += line.matches(['{', '(', '[']).count() as i32;
            depth -= line.matches(['}', ')', ']']).count() as i32;
        }
    }
    found
}

/// The text between the braces of `struct name`'s definition in lexed `code`.
fn struct_body<'a>(code: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("struct {name}");
    let mut from = 0;
    while let Some(at) = code[from..].find(&needle) {
        let start = from + at;
        from = start + needle.len();
        let next = code.as_bytes().get(from).copied().unwrap_or(b';');
        if is_ident(next) {
            continue;
        }
        let rest = &code[from..];
        let open = rest.find(['{', ';', '('])?;
        if !rest[open..].starts_with('{') {
            return None;
        }
        let open = from + open;
        let close = matching_brace(code, open);
        return Some(&code[open + 1..close]);
    }
    None
}

/// Each `impl` block's first line and length in lines.
fn impl_blocks(code: &str) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("impl") {
        let start = from + at;
        from = start + 4;
        let bytes = code.as_bytes();
        let word_start = start == 0 || !is_ident(bytes[start - 1]);
        let word_end = bytes
            .get(start + 4)
            .is_some_and(|&c| c == b'<' || c == b' ');
        if !(word_start && word_end) {
            continue;
        }
        let Some(open) = code[start..].find('{').map(|o| start + o) else {
            break;
        };
        if code[start..open].contains(';') {
            continue;
        }
        let close = matching_brace(code, open);
        let first = code[..start].matches('\n').count() + 1;
        let length = code[start..close].matches('\n').count() + 1;
        blocks.push((first, length));
        from = close;
    }
    blocks
}

/// Strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Search<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w.as_str()) {
                    let low = self.index[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    let nodes: BTreeSet<&str> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.as_str()).chain(bs.iter().map(String::as_str)))
        .collect();
    for node in nodes {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    search.found
}

fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            // The binaries are crates of their own on the public API.
            if relative != "bin" {
                read_tree(root, &path, files);
            }
        } else if relative.ends_with(".rs") {
            files.insert(relative, std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn the_checker_finds_cycles_upward_imports_and_large_impls() {
    let tree: BTreeMap<String, String> = [
        ("lib.rs", "mod http; mod engine; mod support;"),
        (
            "http/mod.rs",
            "pub mod a; pub mod b; use crate::engine::Shard;",
        ),
        ("http/a.rs", "use super::b::B; pub struct A;"),
        (
            "http/b.rs",
            "use super::{a::A, c}; pub struct B; // use crate::support::x;",
        ),
        ("engine/mod.rs", "use crate::http::a::A; pub struct Shard;"),
        (
            "support/mod.rs",
            "#[cfg(test)] mod tests { use crate::engine::Shard; }",
        ),
    ]
    .iter()
    .map(|(p, t)| (p.to_string(), t.to_string()))
    .collect();
    let found = problems(&tree);
    let file_cycle = |f: &&String| {
        f.starts_with("file cycle:") && f.contains("http/a.rs") && f.contains("http/b.rs")
    };
    assert!(found.iter().any(|f| file_cycle(&f)), "{found:#?}");
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("upward import: http/mod.rs (layer 1) uses engine/mod.rs")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("module cycle: engine http")),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|f| f.contains("support")),
        "test code and comments do not count: {found:#?}"
    );
    let big = format!(
        "impl A {{\n{}}}\n",
        "    fn f() {}\n".repeat(MAX_IMPL_LINES + 1)
    );
    let mut one: BTreeMap<String, String> = BTreeMap::new();
    one.insert("support/mod.rs".into(), big);
    let owner = "/// The loop.\npub(super) struct Shard<A: App> {\n    ring: Ring,\n    \
                 // pub(super) note: a comment\n    tasks: Vec<Box<dyn Fn() -> u8>>,\n    \
                 pub(super) table: Table,\n}\nstruct Other { pub x: u8 }\n";
    let mut owned: BTreeMap<String, String> = BTreeMap::new();
    owned.insert("engine/shard.rs".into(), owner.into());
    let shown = exposed(&owned, &[("engine/shard.rs", "Shard")]);
    assert_eq!(
        shown,
        ["engine/shard.rs: Shard shows a field: `pub(super) table`"],
        "only the visible field of Shard counts"
    );
    let hidden = owner.replace("pub(super) table", "table");
    owned.insert("engine/shard.rs".into(), hidden);
    assert!(exposed(&owned, &[("engine/shard.rs", "Shard")]).is_empty());
    assert_eq!(exposed(&owned, &[("engine/shard.rs", "Gone")]).len(), 1);
    assert!(
        problems(&one).iter().any(|f| f.contains("an impl of")),
        "{:?}",
        problems(&one)
    );
}

#[test]
fn src_has_no_cycle_no_upward_import_and_no_oversized_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&root, &root, &mut files);
    assert!(
        files.len() > 40,
        "found only {} files under src/",
        files.len()
    );
    let found = problems(&files);
    assert!(
        found.is_empty(),
        "the shape of src/ is broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_loop_and_the_engine_pieces_keep_their_fields_to_their_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&root, &root, &mut files);
    let found = exposed(&files, OWNED);
    assert!(
        found.is_empty(),
        "state visible outside its file:\n{}",
        found.join("\n")
    );
}
