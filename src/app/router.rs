//! The route table: patterns, matching, and what a path that matches no method gets.
//!
//! A pattern is a path whose segments are literal (`users`), a parameter (`{id}`: one
//! non-empty segment) or, last, a catch-all (`{*rest}`: whatever follows, slashes included,
//! possibly nothing). Patterns are tried most specific first: all-literal ones, then those
//! with parameters, then catch-alls, longer prefixes first; among equals, in the order they
//! were added. The first pattern that matches the path *and* has a handler for the method
//! wins, so `GET /files/{*path}` still serves `/files/upload` when only `POST /files/upload`
//! is exact. A path that some pattern matches but no handler takes gets 405 with `Allow`
//! naming every method the matching patterns take (HEAD with GET, and OPTIONS, always).

use crate::http::is_tchar;

/// Path parameters one pattern may have.
pub const MAX_PARAMS: usize = 8;

/// The parameters a matched pattern took from the path: names and where their values lie
/// in it. Fixed-size, so matching allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    names: [&'static str; MAX_PARAMS],
    spans: [(u32, u32); MAX_PARAMS],
    len: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            names: [""; MAX_PARAMS],
            spans: [(0, 0); MAX_PARAMS],
            len: 0,
        }
    }
}

impl Params {
    fn push(&mut self, name: &'static str, start: usize, end: usize) {
        self.names[self.len] = name;
        self.spans[self.len] = (start as u32, end as u32);
        self.len += 1;
    }

    /// The raw (still percent-encoded) value of `name` within `path`.
    pub fn get<'p>(&self, path: &'p [u8], name: &str) -> Option<&'p [u8]> {
        self.iter(path).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every parameter's name and raw value within `path`, in pattern order.
    pub fn iter<'s, 'p: 's>(
        &'s self,
        path: &'p [u8],
    ) -> impl Iterator<Item = (&'static str, &'p [u8])> + 's {
        (0..self.len).map(move |i| {
            let (start, end) = self.spans[i];
            (self.names[i], &path[start as usize..end as usize])
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<[u8]>),
    Param(&'static str),
}

/// A parsed pattern.
#[derive(Clone, Debug)]
struct Pattern {
    text: Box<str>,
    segments: Vec<Segment>,
    /// The catch-all's name, when the pattern ends in one.
    rest: Option<&'static str>,
    /// The whole path, for a pattern of literal segments only: one comparison matches it.
    exact: Option<Box<[u8]>>,
}

impl Pattern {
    /// Parses `text`, or says what is wrong with it.
    fn parse(text: &str) -> Result<Pattern, String> {
        let Some(body) = text.strip_prefix('/') else {
            return Err(format!("route pattern {text:?} must start with '/'"));
        };
        let mut segments = Vec::new();
        let mut rest = None;
        let mut names: Vec<&str> = Vec::new();
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (catch_all, name) = match name.strip_prefix('*') {
                    Some(name) => (true, name),
                    None => (false, name),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!(
                        "route pattern {text:?}: parameter names are letters, digits and '_'"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("route pattern {text:?} names {name:?} twice"));
                }
                names.push(name);
                if names.len() > MAX_PARAMS {
                    return Err(format!(
                        "route pattern {text:?} has more than {MAX_PARAMS} parameters"
                    ));
                }
                // Names live as long as the program: a route table is built once.
                let name: &'static str = Box::leak(name.into());
                if catch_all {
                    if i + 1 != parts.len() {
                        return Err(format!(
                            "route pattern {text:?}: a catch-all must be the last segment"
                        ));
                    }
                    rest = Some(name);
                } else {
                    segments.push(Segment::Param(name));
                }
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "route pattern {text:?}: a parameter must be a whole segment"
                ));
            } else if part.is_empty() && i + 1 != parts.len() {
                return Err(format!("route pattern {text:?} has an empty segment"));
            } else if !part.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'?') {
                return Err(format!(
                    "route pattern {text:?}: literal segments are visible ASCII without '?'"
                ));
            } else {
                segments.push(Segment::Literal(part.as_bytes().into()));
            }
        }
        let literal = rest.is_none() && segments.iter().all(|s| matches!(s, Segment::Literal(_)));
        Ok(Pattern {
            text: text.into(),
            segments,
            rest,
            exact: literal.then(|| text.as_bytes().into()),
        })
    }

    /// Sort key: literal patterns first, then parameters, then catch-alls by length.
    fn rank(&self) -> (u8, std::cmp::Reverse<usize>) {
        let params = self.segments.iter().any(|s| matches!(s, Segment::Param(_)));
        let class = match (self.rest.is_some(), params) {
            (false, false) => 0,
            (false, true) => 1,
            (true, _) => 2,
        };
        (class, std::cmp::Reverse(self.segments.len()))
    }

    /// Whether `path` matches; the parameters taken go to `params`.
    fn matches(&self, path: &[u8], params: &mut Params) -> bool {
        params.len = 0;
        if let Some(exact) = &self.exact {
            return **exact == *path;
        }
        let Some(body) = path.strip_prefix(b"/") else {
            return false;
        };
        // `remaining` is None once no segment is left: "/" has none, "/a/" has "a" and "".
        let mut remaining = (!body.is_empty()).then_some(body);
        let mut at = 1;
        for segment in &self.segments {
            let Some(rest) = remaining else {
                return false;
            };
            let (current, next) = match rest.iter().position(|&b| b == b'/') {
                Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
                None => (rest, None),
            };
            match segment {
                Segment::Literal(literal) if **literal == *current => {}
                Segment::Param(name) if !current.is_empty() => {
                    params.push(name, at, at + current.len())
                }
                _ => return false,
            }
            at += current.len() + 1;
            remaining = next;
        }
        match (self.rest, remaining) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(name), None) => {
                let end = path.len();
                params.push(name, end, end);
                true
            }
            (Some(name), Some(rest)) => {
                params.push(name, at, at + rest.len());
                true
            }
        }
    }
}

/// One pattern and the handlers of its methods.
#[derive(Clone, Debug)]
struct Route<H> {
    pattern: Pattern,
    methods: Vec<(Box<str>, H)>,
    /// [`method_key`] of each method, in the same order.
    keys: Vec<u64>,
}

impl<H> Route<H> {
    fn handler(&self, method: &[u8]) -> Option<&H> {
        let find = |m: &[u8]| {
            let key = method_key(m);
            let at = self
                .keys
                .iter()
                .zip(&self.methods)
                .position(|(&k, (token, _))| k == key && (key != LONG || token.as_bytes() == m))?;
            Some(&self.methods[at].1)
        };
        find(method).or_else(|| (method == b"HEAD").then(|| find(b"GET")).flatten())
    }

    /// The methods for `Allow`, HEAD after GET, OPTIONS last.
    fn allowed(&self) -> impl Iterator<Item = &str> {
        self.methods
            .iter()
            .flat_map(|(token, _)| {
                let head = &**token == "GET" && !self.methods.iter().any(|(t, _)| &**t == "HEAD");
                std::iter::once(&**token).chain(head.then_some("HEAD"))
            })
            .chain(std::iter::once("OPTIONS"))
    }
}

/// What a request's method and path found.
#[derive(Debug)]
pub enum Lookup<'r, H> {
    /// The handler to call (its parameters are in the `Params` given).
    Handler(&'r H),
    /// Some pattern matches but none takes the method: 405, or 204 for OPTIONS, with the
    /// `Allow` value written into the buffer given.
    NotAllowed,
    /// No pattern matches: 404.
    NotFound,
}

/// Patterns in matching order, each with its handlers.
#[derive(Clone, Debug)]
pub struct Router<H> {
    routes: Vec<Route<H>>,
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<H> Router<H> {
    /// Adds `handler` for `method` on `pattern`. Errors name the problem: a malformed
    /// pattern, a method that is not a token, a method already routed on that pattern.
    pub fn add(&mut self, method: &str, pattern: &str, handler: H) -> Result<(), String> {
        if method.is_empty() || !method.bytes().all(is_tchar) {
            return Err(format!("route method {method:?} is not an HTTP token"));
        }
        let parsed = Pattern::parse(pattern)?;
        let at = match self
            .routes
            .iter()
            .position(|r| r.pattern.text == parsed.text)
        {
            Some(at) => at,
            None => {
                // Stable: the new pattern goes after every one ranked the same or higher.
                let rank = parsed.rank();
                let at = self
                    .routes
                    .iter()
                    .position(|r| r.pattern.rank() > rank)
                    .unwrap_or(self.routes.len());
                self.routes.insert(
                    at,
                    Route {
                        pattern: parsed,
                        methods: Vec::new(),
                        keys: Vec::new(),
                    },
                );
                at
            }
        };
        let route = &mut self.routes[at];
        if route.methods.iter().any(|(m, _)| &**m == method) {
            return Err(format!("{method} {pattern} is routed twice"));
        }
        route.methods.push((method.into(), handler));
        route.keys.push(method_key(method.as_bytes()));
        Ok(())
    }

    /// Finds the handler for `method` on `path`; the parameters go to `params`. When the
    /// answer is [`Lookup::NotAllowed`], `allow` holds the `Allow` value.
    pub fn find(
        &self,
        method: &[u8],
        path: &[u8],
        params: &mut Params,
        allow: &mut String,
    ) -> Lookup<'_, H> {
        let mut matched = false;
        for route in &self.routes {
            if !route.pattern.matches(path, params) {
                continue;
            }
            matched = true;
            if let Some(handler) = route.handler(method) {
                return Lookup::Handler(handler);
            }
        }
        params.len = 0;
        if !matched {
            return Lookup::NotFound;
        }
        self.allow(path, params, allow);
        Lookup::NotAllowed
    }

    /// Writes into `allow` the methods of every pattern matching `path`.
    #[cold]
    #[inline(never)]
    fn allow(&self, path: &[u8], params: &mut Params, allow: &mut String) {
        allow.clear();
        for route in &self.routes {
            if route.pattern.matches(path, params) {
                push_methods(allow, route.allowed());
            }
        }
        params.len = 0;
    }

    /// Every method some route takes, for `OPTIONS *`.
    pub fn all_methods(&self, allow: &mut String) {
        allow.clear();
        for route in &self.routes {
            push_methods(allow, route.allowed());
        }
        if allow.is_empty() {
            allow.push_str("OPTIONS");
        }
    }
}

/// Appends the methods not yet in the comma-separated `allow`.
fn push_methods<'m>(allow: &mut String, methods: impl Iterator<Item = &'m str>) {
    for method in methods {
        if !allow.split(", ").any(|m| m == method) {
            if !allow.is_empty() {
                allow.push_str(", ");
            }
            allow.push_str(method);
        }
    }
}

/// [`method_key`] of every token longer than seven bytes (those are compared in full).
const LONG: u64 = u64::MAX;

/// A method token of up to seven bytes as one number (its bytes and its length), so that
/// finding a route's method is one comparison rather than a call to compare bytes.
fn method_key(token: &[u8]) -> u64 {
    if token.len() > 7 {
        return LONG;
    }
    let mut bytes = [0u8; 8];
    bytes[..token.len()].copy_from_slice(token);
    bytes[7] = token.len() as u8;
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router<usize> {
        let mut router = Router::default();
        for (i, (method, pattern)) in routes.iter().enumerate() {
            router.add(method, pattern, i).unwrap();
        }
        router
    }

    fn find(
        router: &Router<usize>,
        method: &str,
        path: &str,
    ) -> (Option<usize>, String, Vec<(String, String)>) {
        let mut params = Params::default();
        let mut allow = String::new();
        let found = router.find(method.as_bytes(), path.as_bytes(), &mut params, &mut allow);
        let taken = params
            .iter(path.as_bytes())
            .map(|(n, v)| (n.to_string(), String::from_utf8(v.to_vec()).unwrap()))
            .collect();
        match found {
            Lookup::Handler(&h) => (Some(h), String::new(), taken),
            Lookup::NotAllowed => (None, allow, taken),
            Lookup::NotFound => (None, "404".into(), taken),
        }
    }

    #[test]
    fn literal_param_and_catch_all_in_order_of_specificity() {
        let r = router(&[
            ("GET", "/files/{*path}"),
            ("GET", "/hello/{name}"),
            ("GET", "/hello/world"),
            ("POST", "/files/upload"),
            ("GET", "/"),
        ]);
        assert_eq!(find(&r, "GET", "/hello/world").0, Some(2));
        let (h, _, p) = find(&r, "GET", "/hello/Abc%20d");
        assert_eq!(h, Some(1));
        assert_eq!(p, vec![("name".into(), "Abc%20d".into())]);
        assert_eq!(find(&r, "GET", "/hello/").1, "404");
        assert_eq!(find(&r, "GET", "/hello").1, "404");
        assert_eq!(find(&r, "GET", "/hello/a/b").1, "404");
        assert_eq!(find(&r, "GET", "/").0, Some(4));
        let (h, _, p) = find(&r, "GET", "/files/a/b.txt");
        assert_eq!(h, Some(0));
        assert_eq!(p, vec![("path".into(), "a/b.txt".into())]);
        assert_eq!(
            find(&r, "GET", "/files").2,
            vec![("path".into(), "".into())]
        );
        assert_eq!(
            find(&r, "GET", "/files/").2,
            vec![("path".into(), "".into())]
        );
        // The exact pattern does not take GET: the catch-all does.
        assert_eq!(find(&r, "GET", "/files/upload").0, Some(0));
        assert_eq!(find(&r, "POST", "/files/upload").0, Some(3));
        assert_eq!(find(&r, "HEAD", "/hello/x").0, Some(1));
    }

    #[test]
    fn wrong_method_lists_what_every_matching_pattern_takes() {
        let r = router(&[
            ("GET", "/files/{*path}"),
            ("POST", "/files/upload"),
            ("PURGE", "/files/upload"),
        ]);
        assert_eq!(
            find(&r, "DELETE", "/files/upload").1,
            "POST, PURGE, OPTIONS, GET, HEAD"
        );
        assert_eq!(find(&r, "DELETE", "/files/x").1, "GET, HEAD, OPTIONS");
        assert_eq!(find(&r, "GET", "/other").1, "404");
        let mut all = String::new();
        r.all_methods(&mut all);
        assert_eq!(all, "POST, PURGE, OPTIONS, GET, HEAD");
    }

    #[test]
    fn bad_patterns_and_duplicates_are_refused() {
        let mut r: Router<()> = Router::default();
        for bad in [
            "nope",
            "/a/{}",
            "/a/{x-y}",
            "/a/{*rest}/b",
            "/a/x{y}",
            "/a//b",
            "/{x}/{x}",
            "/a?b",
        ] {
            assert!(r.add("GET", bad, ()).is_err(), "{bad}");
        }
        assert!(r.add("G ET", "/", ()).is_err());
        r.add("GET", "/a", ()).unwrap();
        assert!(r.add("GET", "/a", ()).is_err());
        r.add("X-CUSTOM", "/a", ()).unwrap();
    }
}
