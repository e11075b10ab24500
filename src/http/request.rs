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

/// Splits a request-target into path and query, checking it on the way (RFC 9112 section
/// 3.2): origin-form (`/path?query`), absolute-form (`http://authority/path?query`, `https`
/// too), or asterisk-form (`*`, OPTIONS only). Authority-form is CONNECT's, which percore
/// refuses before this. Every byte must be allowed by [`TARGET_BYTES`].
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
        absolute_form_path(bytes)?
    };
    let (path, query) = match find_query(head, path_and_query)? {
        Some(q) => (&path_and_query[..q], Some(&path_and_query[q + 1..])),
        None => (path_and_query, None),
    };
    Ok((
        Span::of(head, path),
        query.map(|q| Span::of(head, q)),
        false,
    ))
}

/// The path and query of an absolute-form target (`scheme "://" authority [path-abempty]
/// ["?" query]`), its authority checked. Rare at an origin server, so kept out of the way
/// of the origin-form path every request takes.
#[cold]
fn absolute_form_path(bytes: &[u8]) -> Result<&[u8], HttpError> {
    let rest = strip_prefix_ignore_case(bytes, b"http://")
        .or_else(|| strip_prefix_ignore_case(bytes, b"https://"))
        .ok_or(HttpError::InvalidTarget)?;
    let authority_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    // RFC 9110 section 4.2.1: an http(s) URI with an empty host is invalid.
    if !is_valid_authority(&rest[..authority_end]) {
        return Err(HttpError::InvalidTarget);
    }
    Ok(&rest[authority_end..])
}

/// Index in `part` (a slice of `head`) of its first `?`, having checked that every byte of
/// it is one [`TARGET_BYTES`] allows (`?` is allowed in a query, so what follows the first
/// needs no other check).
///
/// Every request's target passes through here, so it goes sixteen bytes at a time:
/// [`target_mask`] marks exactly the bytes that are refused or `?`, and only those (usually
/// the one `?`) are looked at. Chunks are read from `head`, which goes on past the target
/// (the version and a line end at least follow it), and the bits past `part` are masked
/// off. A byte loop here cost about a fifth of a whole `parse_head`.
fn find_query(head: &[u8], part: &[u8]) -> Result<Option<usize>, HttpError> {
    let start = part.as_ptr() as usize - head.as_ptr() as usize;
    let mut query = None;
    let mut at = 0;
    while at < part.len() {
        let Some(chunk) = head.get(start + at..start + at + 16) else {
            // Fewer than sixteen bytes left in the head (a short target at the very end of
            // a head without fields): the rest a byte at a time, to the same answer.
            for (i, &b) in part.iter().enumerate().skip(at) {
                if !TARGET_BYTES[usize::from(b)] {
                    return Err(HttpError::InvalidTarget);
                }
                if b == b'?' && query.is_none() {
                    query = Some(i);
                }
            }
            return Ok(query);
        };
        let mut mask = target_mask(chunk.try_into().expect("sixteen bytes"));
        let left = part.len() - at;
        if left < 16 {
            mask &= (1 << left) - 1;
        }
        while mask != 0 {
            let i = at + mask.trailing_zeros() as usize;
            if part[i] != b'?' {
                return Err(HttpError::InvalidTarget);
            }
            query = query.or(Some(i));
            mask &= mask - 1;
        }
        at += 16;
    }
    Ok(query)
}

/// Bit `i` set for each byte `i` of `chunk` that is `?` or a byte [`TARGET_BYTES`] refuses
/// (below 0x21, 0x7f and up, `"`, `#`, `<`, `>`), and for no other: SSE2, which every
/// x86_64 processor has, compares all sixteen at once.
#[cfg(target_arch = "x86_64")]
fn target_mask(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is enabled on every x86_64 target (it is part of the architecture's
    // baseline), and the load reads the sixteen bytes of `chunk` (unaligned is allowed).
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        // Signed bytes: below 0x21, and 0x80 and up (negative), in one comparison.
        let outside = _mm_cmplt_epi8(v, _mm_set1_epi8(0x21));
        let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
        // `"` and `#` differ only in the lowest bit, as do `>` and `?`.
        let odd = _mm_or_si128(v, _mm_set1_epi8(1));
        let quote_or_hash = _mm_cmpeq_epi8(odd, _mm_set1_epi8(b'#' as i8));
        let angle_or_question = _mm_or_si128(
            _mm_cmpeq_epi8(odd, _mm_set1_epi8(b'?' as i8)),
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b'<' as i8)),
        );
        let flagged = _mm_or_si128(
            _mm_or_si128(outside, del),
            _mm_or_si128(quote_or_hash, angle_or_question),
        );
        _mm_movemask_epi8(flagged) as u32
    }
}

/// [`target_mask`] where there is no SSE2: the same marks, eight bytes at a time in a
/// `u64` ([`target_flags`]), packed into one bit per byte.
#[cfg(not(target_arch = "x86_64"))]
fn target_mask(chunk: &[u8; 16]) -> u32 {
    target_mask_portable(chunk)
}

#[cfg(any(test, not(target_arch = "x86_64")))]
fn target_mask_portable(chunk: &[u8; 16]) -> u32 {
    // Moves the high bit of byte i to bit 56 + i, so the top byte holds one bit per byte.
    const PACK: u64 = 0x0102_0408_1020_4080;
    let pack = |word: &[u8]| {
        let flags = target_flags(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        ((flags >> 7).wrapping_mul(PACK) >> 56) as u32
    };
    pack(&chunk[..8]) | pack(&chunk[8..]) << 8
}

/// The high bit of each byte of `word` (little-endian) that is `?` or a byte [`TARGET_BYTES`]
/// refuses, and of no other. Each test works on the low seven bits of a byte, so no carry
/// crosses into the next byte and no byte is flagged by mistake.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn target_flags(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = ONES * 0x80;
    const LOW7: u64 = ONES * 0x7f;
    // High bit set exactly where a byte is zero.
    let zero = |t: u64| !(((t & LOW7) + LOW7) | t) & HIGH;
    let low7 = word & LOW7;
    // 0x7f (its low seven bits overflow into the high bit) and 0x80 and up.
    let del_or_high = (word | (low7 + ONES)) & HIGH;
    // Below 0x21: adding 0x5f leaves the high bit clear.
    let ctl_or_space = !(word | (low7 + ONES * 0x5f)) & HIGH;
    // `"` and `#` differ only in the lowest bit, as do `>` and `?`.
    let quote_or_hash = zero((word | ONES) ^ (ONES * u64::from(b'#')));
    let angle_or_question =
        zero((word | ONES) ^ (ONES * u64::from(b'?'))) | zero(word ^ (ONES * u64::from(b'<')));
    del_or_high | ctl_or_space | quote_or_hash | angle_or_question
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &bytes[prefix.len()..])
}

/// Which bytes a request-target may hold, as a table because every target is checked byte
/// by byte.
///
/// Refused (400): controls, space, DEL and bytes from 0x80 (the target is ASCII; anything
/// else must arrive percent-encoded), `#` (a fragment is never sent, RFC 9112 section 3.2),
/// and `"`, `<`, `>`. That is exactly what the WHATWG URL standard percent-encodes in every
/// path and query, so no browser or conforming client sends them raw.
///
/// Allowed although RFC 3986 has no place for them: `[`, `]` outside an IP literal, and
/// `\`, `^`, `` ` ``, `{`, `|`, `}`. Browsers send these raw in query strings (a GraphQL
/// query in a GET, `a[]=1` form arrays), and `|`, `[` and `]` in paths too; refusing them
/// would close connections of real clients for bytes that mean nothing to the framing, and
/// routes see them as they came.
///
/// Percent escapes are not checked here: `%zz` is not a parse error. It leaves the framing
/// in no doubt, and what an escape means is up to whoever decodes the path or query (the
/// echo and static routes answer a bad one with 400 on a connection that stays open, the
/// App hands it to handlers undecoded); a parse error would close the connection instead.
const TARGET_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = true;
        b += 1;
    }
    let refused = b"\"#<>";
    let mut i = 0;
    while i < refused.len() {
        table[refused[i] as usize] = false;
        i += 1;
    }
    table
};

/// RFC 9110 section 5.6.2 `tchar`: what a method, a field name or a chunk extension's name
/// is made of.
pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

/// Whether a Host value or a target's authority is `uri-host [ ":" port ]` (RFC 3986
/// section 3.2.2, 3.2.3) with a host that is not empty. RFC 3986 lets a reg-name be empty,
/// but the target URI of an origin-form or asterisk-form request is rebuilt from Host
/// (RFC 9112 section 3.3), and an http URI with an empty host must be rejected as invalid
/// (RFC 9110 section 4.2.1); an absolute-form target's own authority must not be empty
/// either. Userinfo (`@`) is refused (RFC 9110 section 4.2.4). Percent escapes in a
/// reg-name are let through undecoded, as in the target.
#[inline]
fn is_valid_authority(value: &[u8]) -> bool {
    let host_end = if value.first() == Some(&b'[') {
        // IP-literal: "[" IPv6address / IPvFuture "]"
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b == b':' || REG_NAME[usize::from(b)])
        {
            return false;
        }
        close + 1
    } else {
        let host = value
            .iter()
            .take_while(|&&b| REG_NAME[usize::from(b)])
            .count();
        if host == 0 {
            return false;
        }
        host
    };
    match &value[host_end..] {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Which bytes a reg-name (or IPv4 address) may hold: RFC 3986 unreserved, sub-delims and
/// `%`, as a table because every request's Host is checked byte by byte.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=%";
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
    use crate::http::response::Status;

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

    proptest::proptest! {
        #[test]
        fn target_masks_mark_exactly_the_refused_bytes_and_the_question_mark(
            chunk in proptest::array::uniform16(proptest::num::u8::ANY),
        ) {
            let expected = chunk.iter().enumerate().fold(0u32, |mask, (i, &b)| {
                let flagged = !TARGET_BYTES[usize::from(b)] || b == b'?';
                mask | u32::from(flagged) << i
            });
            proptest::prop_assert_eq!(target_mask(&chunk), expected, "{:?}", chunk);
            proptest::prop_assert_eq!(target_mask_portable(&chunk), expected, "{:?}", chunk);
        }

        #[test]
        fn query_search_agrees_with_the_table(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    6 => 0x21u8..=0x7e,
                    1 => proptest::sample::select(b"?#\"<> ".to_vec()),
                    1 => proptest::num::u8::ANY,
                ],
                0..40,
            ),
            start in 0usize..40,
            len in 0usize..40,
        ) {
            let start = start.min(bytes.len());
            let part = &bytes[start..(start + len).min(bytes.len())];
            let expected = match part.iter().position(|&b| !TARGET_BYTES[usize::from(b)]) {
                Some(_) => Err(HttpError::InvalidTarget),
                None => Ok(part.iter().position(|&b| b == b'?')),
            };
            proptest::prop_assert_eq!(find_query(&bytes, part), expected);
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
    fn targets_with_refused_bytes_are_400() {
        let mut refused: Vec<u8> = (0x00..0x20).chain(0x7f..=0xff).collect();
        refused.extend_from_slice(b"\"#<>");
        for b in refused {
            for target in [
                [b"/a".as_slice(), &[b], b"b"].concat(),
                [b"/a?x=".as_slice(), &[b], b"y"].concat(),
                [b"http://h/a".as_slice(), &[b]].concat(),
                [b"http://h".as_slice(), &[b], b"/"].concat(),
            ] {
                let text = [b"GET ".as_slice(), &target, b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
                let result = parse_head(&text, &mut 0, &Limits::default());
                assert!(
                    matches!(result, Err(HttpError::InvalidTarget | HttpError::Malformed)),
                    "{:?}: {result:?}",
                    String::from_utf8_lossy(&text)
                );
                assert_eq!(result.unwrap_err().status(), Status::BAD_REQUEST);
            }
        }
        // The two classes in the issue, with their exact error.
        assert_eq!(
            parse("GET /path#frag HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(HttpError::InvalidTarget)
        );
        assert_eq!(
            parse("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(HttpError::InvalidTarget)
        );
    }

    #[test]
    fn tolerated_bytes_and_bad_escapes_reach_the_route_as_sent() {
        for target in [
            "/a{b}|c^d`e\\f[g]",
            "/graphql?query={user{id}}",
            "/list?a[]=1&a[]=2|3",
            "/echo?name=%zz",
            "/%",
            "/a?b?c",
            "/?",
            "/!$&'()*+,;=:@-._~%41",
        ] {
            let text = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let head = parse(&text).unwrap().unwrap();
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (target, None),
            };
            assert_eq!(head.path.get(text.as_bytes()), path.as_bytes());
            assert_eq!(
                head.query.map(|q| q.get(text.as_bytes())),
                query.map(str::as_bytes)
            );
        }
    }

    #[test]
    fn hosts_must_name_a_host() {
        for host in [
            "",
            ":80",
            ":",
            "a b",
            "a@b",
            "u@a:80",
            "a:b",
            "a:80:81",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:x",
            "a/b",
            "a?b",
            "a#b",
            "caf\u{e9}",
            "a\"b",
        ] {
            let text = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(parse(&text), Err(HttpError::InvalidHost), "{host:?}");
        }
        for host in [
            "a",
            "a:80",
            "a:",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "[v1.x]",
            "ex-ample.com",
            "%41",
        ] {
            let text = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(parse(&text).unwrap().is_some(), "{host:?}");
        }
        // Asterisk-form rebuilds its target URI from Host too; HTTP/1.0 need not send one,
        // but one it sends must be valid.
        assert_eq!(
            parse("OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n"),
            Err(HttpError::InvalidHost)
        );
        assert_eq!(
            parse("GET / HTTP/1.0\r\nHost:\r\n\r\n"),
            Err(HttpError::InvalidHost)
        );
    }

    #[test]
    fn absolute_form_needs_a_host() {
        for target in [
            "http:///a",
            "http://:80/a",
            "http://",
            "http://?q",
            "http://u@h/a",
            "http://h:x/a",
            "https://[::1/a",
            "ftp://h/a",
        ] {
            let text = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(parse(&text), Err(HttpError::InvalidTarget), "{target:?}");
        }
        let text = "GET HTTPS://[::1]:8443?q=1 HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = parse(text).unwrap().unwrap();
        assert_eq!(head.path.get(text.as_bytes()), b"");
        assert_eq!(head.query.unwrap().get(text.as_bytes()), b"q=1");
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
