//! Route patterns and matching, against a model of the router written here from its
//! documentation (src/app/router.rs).
//!
//! Input: lines separated by `\n`. Every line but the last is a route, `METHOD PATTERN`
//! (a line without a space is a pattern for GET); the last is the request, `METHOD PATH`.
//! A method of one byte stands for GET, POST, HEAD or DELETE (by its value modulo 4), so that
//! methods meet. At most 8 routes, paths of at most 512 bytes.
//!
//! Checks:
//! - no panic;
//! - a route is accepted alone exactly when the model says its method is a token and its
//!   pattern well formed (segments of visible ASCII without `?`, `{`, `}`, none empty but the
//!   last; `{name}` and, last, `{*name}` with names of letters, digits and `_`, none twice, 8
//!   at most); a table is accepted exactly when all its routes are and no method is routed
//!   twice on one pattern;
//! - the lookup is the model's: patterns tried literal first, then with parameters, then
//!   catch-alls, more segments first, then in the order added; the first pattern matching the
//!   path with a handler for the method (HEAD falling back on GET) wins, with the same
//!   parameters; a path some pattern matches but no handler takes gets the same `Allow` list;
//! - every raw parameter value is a substring of the path, one of a `{name}` parameter is
//!   non-empty and holds no `/`, and the decoded value is `decode_text(raw, false)`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::internals::{decode_text, Router};

/// The router leaks its parameter names on purpose (`Box::leak`: a route table is built once
/// and its names live as long as the program), and this target builds tables by the
/// million: LeakSanitizer's check after each input is turned off for this target alone
/// (AddressSanitizer reads these defaults at start-up).
#[no_mangle]
pub extern "C" fn __asan_default_options() -> *const std::ffi::c_char {
    c"detect_leaks=0".as_ptr()
}

#[derive(Clone, Debug)]
enum Seg {
    Literal(Vec<u8>),
    Param(String),
}

#[derive(Clone, Debug)]
struct Model {
    segments: Vec<Seg>,
    rest: Option<String>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn valid_method(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(is_tchar)
}

fn model(pattern: &str) -> Option<Model> {
    let body = pattern.strip_prefix('/')?;
    let parts: Vec<&str> = if body.is_empty() {
        vec![]
    } else {
        body.split('/').collect()
    };
    let mut segments = Vec::new();
    let mut rest = None;
    let mut names: Vec<&str> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let bytes = part.as_bytes();
        if bytes.len() >= 2 && bytes[0] == b'{' && bytes[bytes.len() - 1] == b'}' {
            let inner = &part[1..part.len() - 1];
            let (catch_all, name) = match inner.strip_prefix('*') {
                Some(name) => (true, name),
                None => (false, inner),
            };
            let name_ok = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !name_ok || names.contains(&name) || (catch_all && !last) {
                return None;
            }
            names.push(name);
            if catch_all {
                rest = Some(name.to_string());
            } else {
                segments.push(Seg::Param(name.to_string()));
            }
        } else {
            let visible = bytes
                .iter()
                .all(|&b| (0x21..=0x7e).contains(&b) && !b"?{}".contains(&b));
            if !visible || (bytes.is_empty() && !last) {
                return None;
            }
            segments.push(Seg::Literal(bytes.to_vec()));
        }
    }
    (names.len() <= 8).then_some(Model { segments, rest })
}

impl Model {
    fn rank(&self) -> (u8, std::cmp::Reverse<usize>) {
        let params = self.segments.iter().any(|s| matches!(s, Seg::Param(_)));
        let class = match (self.rest.is_some(), params) {
            (false, false) => 0,
            (false, true) => 1,
            (true, _) => 2,
        };
        (class, std::cmp::Reverse(self.segments.len()))
    }

    /// The parameters (name, start, end) if `path` matches.
    fn matches(&self, path: &[u8]) -> Option<Vec<(String, usize, usize)>> {
        let body = path.strip_prefix(b"/")?;
        // Each segment of the path with where it starts.
        let mut parts: Vec<(usize, &[u8])> = Vec::new();
        if !body.is_empty() {
            let mut start = 1;
            for part in body.split(|&b| b == b'/') {
                parts.push((start, part));
                start += part.len() + 1;
            }
        }
        let n = self.segments.len();
        match self.rest {
            None if parts.len() != n => return None,
            Some(_) if parts.len() < n => return None,
            _ => {}
        }
        let mut params = Vec::new();
        for (segment, &(start, part)) in self.segments.iter().zip(&parts) {
            match segment {
                Seg::Literal(literal) if literal == part => {}
                Seg::Param(name) if !part.is_empty() => {
                    params.push((name.clone(), start, start + part.len()))
                }
                _ => return None,
            }
        }
        if let Some(name) = &self.rest {
            let start = parts.get(n).map_or(path.len(), |&(start, _)| start);
            params.push((name.clone(), start, path.len()));
        }
        Some(params)
    }
}

const METHODS: [&str; 4] = ["GET", "POST", "HEAD", "DELETE"];

fn method_of(text: &str) -> String {
    match text.as_bytes() {
        [b] => METHODS[usize::from(*b % 4)].to_string(),
        _ => text.to_string(),
    }
}

/// Where the model says a request goes: `Ok(Some((index, params)))`, `Ok(None)` for no
/// pattern, `Err(allow)` for no handler.
type Expected = Result<Option<(usize, Vec<(String, usize, usize)>)>, String>;

fn expected(routes: &[(String, String)], method: &[u8], path: &[u8]) -> Expected {
    // Patterns in order of first appearance, each with its methods and their indices.
    let mut groups: Vec<(Model, &str, Vec<(&str, usize)>)> = Vec::new();
    for (index, (m, p)) in routes.iter().enumerate() {
        match groups.iter_mut().find(|g| g.1 == p) {
            Some(group) => group.2.push((m, index)),
            None => groups.push((model(p).unwrap(), p, vec![(m, index)])),
        }
    }
    groups.sort_by_key(|g| g.0.rank());
    let mut matched = Vec::new();
    for (model, _, methods) in &groups {
        let Some(params) = model.matches(path) else {
            continue;
        };
        let handler = |m: &[u8]| {
            methods
                .iter()
                .find(|(t, _)| t.as_bytes() == m)
                .map(|&(_, i)| i)
        };
        let found =
            handler(method).or_else(|| (method == b"HEAD").then(|| handler(b"GET")).flatten());
        if let Some(index) = found {
            return Ok(Some((index, params)));
        }
        matched.push(methods);
    }
    if matched.is_empty() {
        return Ok(None);
    }
    let mut allow: Vec<&str> = Vec::new();
    for methods in matched {
        let mut list: Vec<&str> = Vec::new();
        for &(m, _) in methods.iter() {
            list.push(m);
            if m == "GET" && !methods.iter().any(|&(t, _)| t == "HEAD") {
                list.push("HEAD");
            }
        }
        list.push("OPTIONS");
        for m in list {
            if !allow.contains(&m) {
                allow.push(m);
            }
        }
    }
    Err(allow.join(", "))
}

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let (request, routes) = lines.split_last().unwrap();
    if routes.len() > 8 || request.len() > 600 {
        return;
    }
    let routes: Vec<(String, String)> = routes
        .iter()
        .map(|line| {
            let line = String::from_utf8_lossy(line);
            match line.split_once(' ') {
                Some((m, p)) => (method_of(m), p.to_string()),
                None => ("GET".to_string(), line.into_owned()),
            }
        })
        .collect();
    let (method, path) = match request.iter().position(|&b| b == b' ') {
        Some(space) => (&request[..space], &request[space + 1..]),
        None => (&b"GET"[..], &request[..]),
    };
    // The request's method as raw bytes: a client may send any.
    let method: Vec<u8> = match method {
        [b] => METHODS[usize::from(*b % 4)].as_bytes().to_vec(),
        other => other.to_vec(),
    };

    // Each route alone: accepted exactly when the model says so.
    let mut valid = Vec::new();
    let mut all_ok = true;
    for (m, p) in &routes {
        let alone = Router::new(&[(m.as_str(), p.as_str())]);
        let ok = valid_method(m) && model(p).is_some();
        assert_eq!(alone.is_ok(), ok, "{m:?} {p:?}: {:?}", alone.err());
        if !ok {
            all_ok = false;
            continue;
        }
        if valid.iter().any(|(vm, vp)| vm == m && vp == p) {
            all_ok = false;
            continue;
        }
        valid.push((m.clone(), p.clone()));
    }
    let table: Vec<(&str, &str)> = routes.iter().map(|(m, p)| (m.as_str(), p.as_str())).collect();
    assert_eq!(Router::new(&table).is_ok(), all_ok, "{table:?}");

    let table: Vec<(&str, &str)> = valid.iter().map(|(m, p)| (m.as_str(), p.as_str())).collect();
    let router = Router::new(&table).expect("every route valid, none twice");
    let found = router.find(&method, path);
    let model = expected(&valid, &method, path);
    match (&found, &model) {
        (Ok(Some((index, params))), Ok(Some((want, spans)))) => {
            assert_eq!(index, want, "{table:?} {method:?} {path:?}");
            assert_eq!(params.len(), spans.len());
            for ((name, raw, decoded), (want_name, start, end)) in params.iter().zip(spans) {
                assert_eq!(name, want_name);
                assert_eq!(raw.as_slice(), &path[*start..*end], "{table:?} {path:?}");
                assert!(
                    path.windows(raw.len().max(1)).any(|w| w == raw.as_slice()) || raw.is_empty()
                );
                assert_eq!(*decoded, decode_text(raw, false));
            }
            // `{name}` parameters: one whole non-empty segment.
            let (_, pattern) = table[*index];
            let model = self::model(pattern).unwrap();
            let singles = model.segments.iter().filter(|s| matches!(s, Seg::Param(_))).count();
            for (_, raw, _) in &params[..singles] {
                assert!(!raw.is_empty() && !raw.contains(&b'/'), "{raw:?}");
            }
        }
        (Ok(None), Ok(None)) => {}
        (Err(allow), Err(want)) => assert_eq!(allow, want, "{table:?} {method:?} {path:?}"),
        _ => panic!("router {found:?}, model {model:?}: {table:?} {method:?} {path:?}"),
    }
});
