//! Request heads: finding where a head ends, parsing it with httparse, and deciding its
//! framing (no body, Content-Length or chunked) and persistence.
//!
//! The result, [`RequestHead`], is `Copy` and holds offsets into the head's bytes rather
//! than borrows, so a connection can keep it across reads. Everything RFC 9112 says a server
//! must refuse in a head is refused here, with the [`HttpError`] that names why. Body bytes
//! are not touched (see `session` and `chunked`).
//!
//! httparse finds the request line's parts and the header fields; it is lenient about the
//! request-target (it takes any byte from `!` on, `#` and non-ASCII included), so the target
//! is checked again here against RFC 9112 section 3.2, byte by byte through a table, in the
//! same pass that finds its `?`. See `TARGET_BYTES` for which bytes are refused and why
//! percent escapes are left to whoever decodes them.

use std::mem::MaybeUninit;

use super::error::HttpError;
use super::fields::{head_fields, is_tchar, list_items, parse_content_length, Codings};
pub use super::head::{Framing, Method, RequestHead, Version};
use super::head_end::find_head_end;
use super::target::{is_valid_authority, split_target, TARGET_BYTES};

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
    /// `http.max_requests_per_connection`: the response to the request that reaches it says
    /// `Connection: close`; 0 means no limit.
    pub max_requests: u64,
}

impl Default for Limits {
    /// The defaults of `[http]`.
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_target_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            max_requests: 0,
        }
    }
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
    /// Its body is not here: it follows as it arrives (`Service::streams_body`), and
    /// `body` is empty.
    pub streamed: bool,
}

impl<'a> RawRequest<'a> {
    /// A request whose body (if any) is all in `body`.
    pub fn whole(head: &'a RequestHead, bytes: &'a [u8], body: &'a [u8]) -> RawRequest<'a> {
        RawRequest {
            head,
            bytes,
            body,
            streamed: false,
        }
    }

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
        head_fields(self.bytes)
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
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
                unended_request_line(window)
            });
        }
        *scanned = window.len();
        return Ok(None);
    };
    *scanned = 0;
    parse_complete(&buf[..end], limits).map(Some)
}

/// Why a request line that fills the whole head window without ending is refused: only a
/// long request-target is a 414 (RFC 9112 section 3 names it so); a method that never ends
/// is a method longer than any percore implements (501, the same section), and anything
/// else (a byte no target may hold, or a line running on past its target) is a request
/// line that does not parse (400).
#[cold]
fn unended_request_line(window: &[u8]) -> HttpError {
    let method = window.iter().take_while(|&&b| is_tchar(b)).count();
    let Some(&after_method) = window.get(method) else {
        return HttpError::MethodTooLong;
    };
    if method == 0 || after_method != b' ' {
        return HttpError::Malformed;
    }
    let target = &window[method + 1..];
    if target.iter().all(|&b| TARGET_BYTES[usize::from(b)]) {
        HttpError::TargetTooLong
    } else {
        HttpError::Malformed
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
                if !is_valid_authority(value) {
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
/// unsupported `HTTP/x.y` (505) from garbage (400). httparse also stops at the first space
/// after the target and calls whatever follows the version, so `GET /pa th HTTP/1.1` would
/// look like version `th`: the whole line is checked before a 505 is given.
#[cold]
fn map_httparse_error(error: httparse::Error, buf: &[u8]) -> HttpError {
    match error {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::Version => {
            let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
            let line = &buf[..line_end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if is_request_line_with_any_version(line) {
                HttpError::UnsupportedVersion
            } else {
                HttpError::Malformed
            }
        }
        _ => HttpError::Malformed,
    }
}

/// Whether `line` (without its line end) is `method SP request-target SP HTTP-version`
/// exactly (RFC 9112 section 3), whatever the digits of the version: one space each side of
/// the target, no other whitespace, and a version of `HTTP/` DIGIT `.` DIGIT, nothing more.
fn is_request_line_with_any_version(line: &[u8]) -> bool {
    let method = line.iter().take_while(|&&b| is_tchar(b)).count();
    if method == 0 || line.get(method) != Some(&b' ') {
        return false;
    }
    let rest = &line[method + 1..];
    let target = rest
        .iter()
        .take_while(|&&b| TARGET_BYTES[usize::from(b)])
        .count();
    if target == 0 || rest.get(target) != Some(&b' ') {
        return false;
    }
    matches!(
        rest[target + 1..],
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn request_lines_that_do_not_parse_are_400_not_505() {
        for line in [
            "GET /pa th HTTP/1.1",
            "GET  / HTTP/1.1",
            "GET /  HTTP/1.1",
            "GET / HTTP/1.1 ",
            "GET\t/ HTTP/1.1",
            "GET /\tHTTP/1.1",
            "GET / HTTP/1.1\t",
            " GET / HTTP/1.1",
            "GET / HTTP/1.1 extra",
            "GET /",
            "GET / ",
            "GET HTTP/1.1",
            "/ HTTP/1.1",
            "GET / http/1.1",
            "GET / HTTP/1.10",
            "GET / HTTP/01.1",
            "GET / HTTP/1",
            "GET / HTTP/1.",
            "GET / HTTP/11",
            "GET / HTTP/1.1.1",
            "GET / HTTPS/1.1",
            "GET / HTTP/a.b",
            "GET /pa th HTTP/2.0",
            "GET /a#b HTTP/2.0",
            "G@T / HTTP/1.1",
        ] {
            let text = format!("{line}\r\nHost: a\r\n\r\n");
            assert_eq!(parse(&text), Err(HttpError::Malformed), "{line:?}");
        }
    }

    #[test]
    fn well_formed_unsupported_versions_are_505() {
        for version in ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/9.9"] {
            let text = format!("GET /a?b HTTP/{}\r\nHost: a\r\n\r\n", &version[5..]);
            assert_eq!(
                parse(&text),
                Err(HttpError::UnsupportedVersion),
                "{version}"
            );
        }
    }

    #[test]
    fn a_line_that_fills_the_head_limit_is_refused_for_what_it_is() {
        let limits = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let refuse = |text: String| parse_head(text.as_bytes(), &mut 0, &limits);
        assert_eq!(refuse("A".repeat(100)), Err(HttpError::MethodTooLong));
        assert_eq!(refuse("A".repeat(64)), Err(HttpError::MethodTooLong));
        assert_eq!(
            refuse(format!("GET /{}", "a".repeat(100))),
            Err(HttpError::TargetTooLong)
        );
        assert_eq!(
            refuse(format!("GET {}", "a".repeat(100))),
            Err(HttpError::TargetTooLong)
        );
        for garbage in [
            format!("A{{{}", "A".repeat(100)),
            format!("GET /a#{}", "a".repeat(100)),
            format!("GET /a\"{}", "a".repeat(100)),
            format!("GET  /{}", "a".repeat(100)),
            format!(" GET /{}", "a".repeat(100)),
            format!("GET / HTTP/1.1{}", "1".repeat(100)),
            format!("GET /\r{}", "a".repeat(100)),
        ] {
            assert_eq!(
                refuse(garbage.clone()),
                Err(HttpError::Malformed),
                "{garbage:?}"
            );
        }
        // Shorter than the limit: more bytes may still end the line.
        assert_eq!(
            parse_head("A".repeat(63).as_bytes(), &mut 0, &limits),
            Ok(None)
        );
        // A line end within the limit makes it the head that is too large.
        assert_eq!(
            refuse(format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(100))),
            Err(HttpError::HeadTooLarge)
        );
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
