//! Request heads: finding where a head ends, parsing it with httparse, and deciding its
//! framing (no body, Content-Length or chunked) and persistence.
//!
//! The result, [`RequestHead`], is `Copy` and holds offsets into the head's bytes rather
//! than borrows, so a connection can keep it across reads. Everything RFC 9112 says a server
//! must refuse in a head is refused here, with the [`HttpError`] that names why. Body bytes
//! are not touched (see `session` and `chunked`).

use std::mem::MaybeUninit;

use super::error::HttpError;

/// Upper bound on [`Limits::max_headers`]: the parser keeps header slots on the stack.
pub const MAX_HEADERS_LIMIT: usize = 256;

/// The limits a request is checked against (the configuration's `[http]` table builds them).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `http.max_request_head_bytes`.
    pub max_head_bytes: usize,
    /// `http.max_headers`.
    pub max_headers: usize,
    /// `http.max_target_bytes`.
    pub max_target_bytes: usize,
    /// `http.max_body_bytes`.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    /// The defaults of `[http]`.
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_target_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// A request's method: the ones the protocol layer treats specially have their own variant,
/// every other token (`PURGE`, `MKCOL`, ...) is [`Method::Other`] and reaches the routes all
/// the same ([`RawRequest::method`] gives its text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// TRACE
    Trace,
    /// Any other token.
    Other,
}

impl Method {
    fn from_token(token: &str) -> Result<Method, HttpError> {
        Ok(match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            "TRACE" => Method::Trace,
            // percore is not a proxy: CONNECT (and its authority-form target) is refused.
            "CONNECT" => return Err(HttpError::UnknownMethod),
            // httparse has checked that it is a token.
            _ => Method::Other,
        })
    }
}

/// HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`, n > 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A byte range within the request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(head: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - head.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// The bytes this span covers in `head`.
    pub fn get(self, head: &[u8]) -> &[u8] {
        &head[self.start as usize..self.end as usize]
    }
}

/// A parsed request head. Offsets refer to the head's own bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The version.
    pub version: Version,
    /// The path of an origin-form or absolute-form target (empty for `*`).
    pub path: Span,
    /// The query, without its `?`, if the target had one.
    pub query: Option<Span>,
    /// The target was `*` (OPTIONS only).
    pub asterisk: bool,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// How the body is delimited.
    pub framing: Framing,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// Bytes of the head, final blank line included.
    pub len: usize,
}

/// A parsed head with the bytes its offsets refer to, and the request's body: what the
/// service is asked to answer (the library's `Request` is a view of it).
#[derive(Clone, Copy, Debug)]
pub struct RawRequest<'a> {
    /// The parsed head.
    pub head: &'a RequestHead,
    /// The head's bytes.
    pub bytes: &'a [u8],
    /// The whole body (Content-Length bytes, or the chunks' data), empty when none was sent
    /// or the service did not ask for it.
    pub body: &'a [u8],
}

impl<'a> RawRequest<'a> {
    /// The request line, without its line end.
    pub fn line(&self) -> &'a [u8] {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(self.bytes.len());
        &self.bytes[..end]
    }

    /// The method token as sent.
    pub fn method(&self) -> &'a [u8] {
        let end = self.bytes.iter().position(|&b| b == b' ').unwrap_or(0);
        &self.bytes[..end]
    }

    /// The path; `/` when an absolute-form target had none.
    pub fn path(&self) -> &'a [u8] {
        match self.head.path.get(self.bytes) {
            [] => b"/",
            path => path,
        }
    }

    /// The query without its `?`, if any.
    pub fn query(&self) -> Option<&'a [u8]> {
        self.head.query.map(|span| span.get(self.bytes))
    }

    /// The values of every field named `name` (ASCII case-insensitive), in order, with
    /// surrounding whitespace removed. The head was validated by the parser, so each line
    /// after the request line is a `name: value` field.
    pub fn headers<'n>(&self, name: &'n [u8]) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.bytes
            .split(|&b| b == b'\n')
            .skip(1)
            .filter_map(move |line| {
                let colon = line.iter().position(|&b| b == b':')?;
                line[..colon]
                    .eq_ignore_ascii_case(name)
                    .then(|| line[colon + 1..].trim_ascii())
            })
    }

    /// The value of the field `name` if it appears exactly once.
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        let mut values = self.headers(name);
        let first = values.next()?;
        values.next().is_none().then_some(first)
    }
}

/// Finds the end of a request head in `buf` (which must not start with blank lines) and
/// parses it. `Ok(None)` means more bytes are needed; `scanned` remembers how far the search
/// for the end got, so a head arriving byte by byte is scanned once, not once per byte.
pub fn parse_head(
    buf: &[u8],
    scanned: &mut usize,
    limits: &Limits,
) -> Result<Option<RequestHead>, HttpError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let Some(end) = find_head_end(window, *scanned)? else {
        if buf.len() >= limits.max_head_bytes {
            return Err(if window.contains(&b'\n') {
                HttpError::HeadTooLarge
            } else {
                HttpError::TargetTooLong
            });
        }
        *scanned = window.len();
        return Ok(None);
    };
    *scanned = 0;
    parse_complete(&buf[..end], limits).map(Some)
}

/// Index just past the blank line that ends a head (CRLFCRLF, or LF-only line ends, which
/// httparse also accepts), looking at the bytes from `from` on (less the three that could
/// start the terminator across reads).
///
/// Each byte is looked at once, however the head is split, and control bytes that no head
/// may contain are refused on sight: garbage such as a TLS hello is answered at once, not
/// after the header timeout, and the answer does not depend on how the bytes arrived.
///
/// Only bytes below 0x20 matter here, and a head has few (CR, LF, perhaps a tab per line), so
/// the scan reads eight bytes at a time and looks only at the bytes of a word flagged as
/// below 0x20.
fn find_head_end(buf: &[u8], from: usize) -> Result<Option<usize>, HttpError> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut at = from.saturating_sub(3);
    while at < buf.len() {
        if let Some(word) = buf.get(at..at + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            // A high bit set for every byte below 0x20 (and at most a few others: a borrow
            // can flag a 0x20 byte after a flagged one), lowest byte first.
            let mut flags = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
            while flags != 0 {
                let i = at + (flags.trailing_zeros() / 8) as usize;
                if let Some(found) = head_byte(buf, i, from) {
                    return found.map(Some);
                }
                flags &= flags - 1;
            }
            at += 8;
            continue;
        }
        let stop = (at + 8).min(buf.len());
        for i in at..stop {
            if let Some(found) = head_byte(buf, i, from) {
                return found.map(Some);
            }
        }
        at = stop;
    }
    Ok(None)
}

/// What the byte at `i` says about the head: it ends just past this line feed (the index
/// returned), or it is a control byte no head may hold (if at or after `from`), or nothing.
fn head_byte(buf: &[u8], i: usize, from: usize) -> Option<Result<usize, HttpError>> {
    match buf[i] {
        b'\n' => match buf.get(i + 1) {
            Some(b'\n') => Some(Ok(i + 2)),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => Some(Ok(i + 3)),
            _ => None,
        },
        0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f if i >= from => Some(Err(HttpError::Malformed)),
        _ => None,
    }
}

fn parse_complete(head: &[u8], limits: &Limits) -> Result<RequestHead, HttpError> {
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS_LIMIT];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(head, &mut headers[..limits.max_headers]) {
        Ok(httparse::Status::Complete(len)) => len,
        // The terminator was found, so a partial result means the head is malformed.
        Ok(httparse::Status::Partial) => return Err(HttpError::Malformed),
        Err(e) => return Err(map_httparse_error(e, head)),
    };
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::UnsupportedVersion),
    };
    let target = req.path.ok_or(HttpError::Malformed)?;
    if target.len() > limits.max_target_bytes {
        return Err(HttpError::TargetTooLong);
    }
    let method = Method::from_token(req.method.ok_or(HttpError::Malformed)?)?;

    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut codings = Codings::default();
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    for header in req.headers.iter() {
        let name = header.name.as_bytes();
        let value = header.value;
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                hosts += 1;
                if !value.iter().all(|&b| is_authority_byte(b)) {
                    return Err(HttpError::InvalidHost);
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else if version == Version::Http11 {
                    return Err(HttpError::UnsupportedExpectation);
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for option in list_items(value) {
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if content_length.is_some() {
                    return Err(HttpError::InvalidContentLength);
                }
                content_length = Some(parse_content_length(value)?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => codings.add(value)?,
            _ => {}
        }
    }

    match (version, hosts) {
        (_, n) if n > 1 => return Err(HttpError::DuplicateHost),
        (Version::Http11, 0) => return Err(HttpError::MissingHost),
        _ => {}
    }
    let framing = match (codings.present, content_length) {
        (true, Some(_)) => return Err(HttpError::ConflictingFraming),
        (true, None) => {
            if version == Version::Http10 {
                return Err(HttpError::InvalidTransferEncoding);
            }
            codings.framing()?
        }
        (false, Some(0)) | (false, None) => Framing::Empty,
        (false, Some(n)) if n > limits.max_body_bytes => return Err(HttpError::BodyTooLarge),
        (false, Some(n)) => Framing::Length(n),
    };

    let (path, query, asterisk) = split_target(head, target, method)?;
    Ok(RequestHead {
        method,
        version,
        path,
        query,
        asterisk,
        keep_alive: !close && (version == Version::Http11 || keep_alive),
        framing,
        expect_continue: expect_continue && version == Version::Http11,
        len,
    })
}

/// httparse reports every bad version as one error; RFC 9110 separates a well-formed but
/// unsupported `HTTP/x.y` (505) from garbage (400).
fn map_httparse_error(error: httparse::Error, buf: &[u8]) -> HttpError {
    match error {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::Version => {
            let line_end = buf.iter().position(|&b| b == b'\r' || b == b'\n');
            let line = &buf[..line_end.unwrap_or(buf.len())];
            let token = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
            match token {
                [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                    if major.is_ascii_digit() && minor.is_ascii_digit() =>
                {
                    HttpError::UnsupportedVersion
                }
                _ => HttpError::Malformed,
            }
        }
        _ => HttpError::Malformed,
    }
}

fn split_target(
    head: &[u8],
    target: &str,
    method: Method,
) -> Result<(Span, Option<Span>, bool), HttpError> {
    let bytes = target.as_bytes();
    let path_and_query = if bytes.first() == Some(&b'/') {
        bytes
    } else if bytes == b"*" {
        if method != Method::Options {
            return Err(HttpError::InvalidTarget);
        }
        return Ok((Span::of(head, &bytes[..0]), None, true));
    } else {
        // absolute-form: scheme "://" authority [path-abempty] ["?" query]
        let rest = strip_prefix_ignore_case(bytes, b"http://")
            .or_else(|| strip_prefix_ignore_case(bytes, b"https://"))
            .ok_or(HttpError::InvalidTarget)?;
        let authority_end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if authority.is_empty() || !authority.iter().all(|&b| is_authority_byte(b)) {
            return Err(HttpError::InvalidTarget);
        }
        &rest[authority_end..]
    };
    let (path, query) = match path_and_query.iter().position(|&b| b == b'?') {
        Some(q) => (&path_and_query[..q], Some(&path_and_query[q + 1..])),
        None => (path_and_query, None),
    };
    Ok((
        Span::of(head, path),
        query.map(|q| Span::of(head, q)),
        false,
    ))
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &bytes[prefix.len()..])
}

/// Bytes allowed in a Host value or target authority: reg-name, IP literals, port
/// (RFC 3986 section 3.2).
fn is_authority_byte(b: u8) -> bool {
    AUTHORITY_BYTES[usize::from(b)]
}

/// Which bytes an authority (a Host value) may hold: RFC 3986 unreserved, sub-delims, `:`,
/// `[`, `]` and `%`, as a table because every request's Host is checked byte by byte.
const AUTHORITY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=:[]%";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

/// Content-Length = 1*DIGIT; a list, sign or anything else is refused.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::InvalidContentLength);
    }
    Ok(value
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// The elements of a comma-separated field value, trimmed, empty ones skipped.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// Transfer codings that exist but that percore does not decode (501, not "unknown").
const REGISTERED_CODINGS: [&[u8]; 6] = [
    b"gzip",
    b"x-gzip",
    b"deflate",
    b"compress",
    b"x-compress",
    b"identity",
];

/// Transfer codings seen so far, across every Transfer-Encoding line in order.
#[derive(Default)]
struct Codings {
    present: bool,
    count: usize,
    chunked_at: Option<usize>,
    unknown: bool,
    unimplemented: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) -> Result<(), HttpError> {
        self.present = true;
        for item in list_items(value) {
            // A coding may carry parameters (`gzip;q=1`); only its name matters here.
            let name = item.split(|&b| b == b';').next().unwrap_or_default();
            let name = name.trim_ascii();
            if name.eq_ignore_ascii_case(b"chunked") {
                if self.chunked_at.is_some() {
                    return Err(HttpError::InvalidTransferEncoding);
                }
                self.chunked_at = Some(self.count);
            } else if REGISTERED_CODINGS
                .iter()
                .any(|known| name.eq_ignore_ascii_case(known))
            {
                self.unimplemented = true;
            } else {
                self.unknown = true;
            }
            self.count += 1;
        }
        Ok(())
    }

    /// RFC 9112 section 6.3: in a request, chunked must be the final coding or the length
    /// cannot be determined (400); a coding percore cannot decode is 501.
    fn framing(&self) -> Result<Framing, HttpError> {
        if self.unknown {
            return Err(HttpError::UnknownCoding);
        }
        match self.chunked_at {
            Some(at) if at + 1 == self.count => {}
            _ => return Err(HttpError::InvalidTransferEncoding),
        }
        if self.unimplemented {
            return Err(HttpError::UnknownCoding);
        }
        Ok(Framing::Chunked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time scan the word-skipping one must agree with.
    fn find_head_end_bytewise(buf: &[u8], from: usize) -> Result<Option<usize>, HttpError> {
        for i in from.saturating_sub(3)..buf.len() {
            if let Some(found) = head_byte(buf, i, from) {
                return found.map(Some);
            }
        }
        Ok(None)
    }

    proptest::proptest! {
        #[test]
        fn word_skipping_scan_agrees_with_the_bytewise_one(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => 0x20u8..=0x7e,
                    2 => proptest::sample::select(vec![b'\r', b'\n']),
                    1 => proptest::num::u8::ANY,
                ],
                0..64,
            ),
            from in 0usize..64,
        ) {
            let from = from.min(bytes.len());
            proptest::prop_assert_eq!(
                find_head_end(&bytes, from),
                find_head_end_bytewise(&bytes, from)
            );
        }
    }

    fn parse(text: &str) -> Result<Option<RequestHead>, HttpError> {
        parse_head(text.as_bytes(), &mut 0, &Limits::default())
    }

    #[test]
    fn simple_get_is_persistent_with_no_body() {
        let head = parse("GET /echo?name=x HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.method, Method::Get);
        assert!(head.keep_alive);
        assert_eq!(head.framing, Framing::Empty);
        let bytes = b"GET /echo?name=x HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(head.path.get(bytes), b"/echo");
        assert_eq!(head.query.unwrap().get(bytes), b"name=x");
        assert_eq!(head.len, bytes.len());
    }

    #[test]
    fn partial_head_needs_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn absolute_form_is_reduced_to_its_path() {
        let text = "GET http://example.com:80/echo?name=y HTTP/1.1\r\nHost: x\r\n\r\n";
        let head = parse(text).unwrap().unwrap();
        assert_eq!(head.path.get(text.as_bytes()), b"/echo");
    }

    #[test]
    fn framing_errors() {
        let cases = [
            ("GET / HTTP/1.1\r\n\r\n", HttpError::MissingHost),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HttpError::DuplicateHost),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::ConflictingFraming,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                HttpError::InvalidContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
                HttpError::InvalidContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                HttpError::InvalidTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::InvalidTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: bogus\r\n\r\n",
                HttpError::UnknownCoding,
            ),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HttpError::UnsupportedVersion),
            ("GET / HTTP/1.x\r\nHost: a\r\n\r\n", HttpError::Malformed),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", HttpError::Malformed),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", HttpError::Malformed),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::UnknownMethod),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::InvalidTarget),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn head_end_found_across_split_scans() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut scanned = 0;
        for cut in 1..text.len() {
            assert_eq!(
                parse_head(&text[..cut], &mut scanned, &Limits::default()),
                Ok(None)
            );
        }
        assert!(parse_head(text, &mut scanned, &Limits::default())
            .unwrap()
            .is_some());
    }
}
