//! What a handler answers with: [`Response`], written in place by a synchronous handler,
//! and [`Reply`], the owned answer of an async one. Both check what they are given: a field
//! name must be a token, a value or reason phrase must not hold CR, LF, NUL or another
//! control byte, and `Content-Length`, `Transfer-Encoding` and `Connection` are percore's to
//! write.

use std::fmt;

use super::request::Request;
use super::router::is_tchar;
use super::Files;
use crate::http::response::{self, Persistence, Status, OWN_DATE, OWN_SERVER, TEXT_PLAIN};
use crate::routes::static_files::{self, FileBody};

/// Why a header field, reason phrase or status was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The field name is empty or not a token.
    InvalidName,
    /// The value (or reason phrase) holds CR, LF, NUL or another control byte.
    InvalidValue,
    /// `Content-Length`, `Transfer-Encoding` and `Connection` are written by percore.
    Reserved,
    /// The response's head has already been written (a file was served).
    TooLate,
    /// A status outside what the call takes (final: 200–599; interim: 100–199).
    InvalidStatus,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderError::InvalidName => "header name is not an HTTP token",
            HeaderError::InvalidValue => "header value holds CR, LF, NUL or a control byte",
            HeaderError::Reserved => {
                "Content-Length, Transfer-Encoding and Connection are written by percore"
            }
            HeaderError::TooLate => "the response head was already written",
            HeaderError::InvalidStatus => "status code out of range for this call",
        })
    }
}

impl std::error::Error for HeaderError {}

/// Checks a field; returns the [`response::Response::own`] flag it sets, if any.
fn check_field(name: &str, value: &str) -> Result<u8, HeaderError> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(HeaderError::InvalidName);
    }
    check_text(value)?;
    let reserved = ["content-length", "transfer-encoding", "connection"];
    if reserved.iter().any(|r| name.eq_ignore_ascii_case(r)) {
        return Err(HeaderError::Reserved);
    }
    Ok(if name.eq_ignore_ascii_case("server") {
        OWN_SERVER
    } else if name.eq_ignore_ascii_case("date") {
        OWN_DATE
    } else {
        0
    })
}

/// A field value or reason phrase: tabs, visible bytes and spaces only (RFC 9110 section 5.5).
fn check_text(value: &str) -> Result<(), HeaderError> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        Ok(())
    } else {
        Err(HeaderError::InvalidValue)
    }
}

/// Per-core buffers responses reuse, so answering allocates nothing once they have grown.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub(crate) body: Vec<u8>,
    pub(crate) reason: String,
}

/// Where the body comes from.
#[derive(Clone, Copy, Debug)]
enum Body {
    /// The core's reusable buffer ([`Response::body_mut`]).
    Scratch,
    /// A `'static` slice, copied once into the output.
    Static(&'static [u8]),
}

/// The response a synchronous handler writes: status (200 unless set), header fields, body.
///
/// Fields go straight into the connection's output buffer, the body into a buffer the core
/// reuses; percore writes the status line, `Server`, `Date` (unless the handler gave its
/// own), `Content-Length` and `Connection` once the handler returns. HEAD requests get the
/// head of what GET would get.
///
/// ```
/// # use percore::{App, Request, Response, Status};
/// fn created(request: &Request<'_>, response: &mut Response<'_>, _: &()) {
///     response
///         .status(Status::CREATED)
///         .header("Location", "/things/1")
///         .unwrap()
///         .text("made it\n");
///     // A value with a line break is refused, never sent.
///     assert!(response.header("X-Bad", "a\r\nSet-Cookie: x").is_err());
/// }
/// let app = App::new(|_| Ok(())).post("/things", created);
/// ```
pub struct Response<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) scratch: &'a mut Scratch,
    /// Where this response starts in `out` (its staged fields follow).
    pub(crate) start: usize,
    pub(crate) head_only: bool,
    pub(crate) persistence: Persistence,
    pub(crate) status: Status,
    pub(crate) own: u8,
    /// A `Content-Type` field was staged.
    typed: bool,
    /// `Content-Type: text/plain; charset=utf-8` goes with the head (none was staged).
    plain: bool,
    custom_reason: bool,
    body: Body,
    /// The head went out already (a file was served): nothing more is written.
    pub(crate) written: Option<Status>,
    /// The request is HTTP/1.0, which knows no interim responses.
    pub(crate) http10: bool,
    pub(crate) file: Option<FileBody>,
}

impl<'a> Response<'a> {
    pub(crate) fn new(
        out: &'a mut Vec<u8>,
        scratch: &'a mut Scratch,
        head_only: bool,
        persistence: Persistence,
    ) -> Response<'a> {
        scratch.body.clear();
        let start = out.len();
        Response {
            out,
            scratch,
            start,
            head_only,
            persistence,
            status: Status::OK,
            own: 0,
            typed: false,
            plain: false,
            custom_reason: false,
            body: Body::Scratch,
            written: None,
            http10: false,
            file: None,
        }
    }

    /// Sets the final status, 200–599 (200 unless set). 1xx responses are
    /// [`Response::interim`]; any other code is a bug in the handler, which panics (and
    /// its request gets a 500).
    pub fn status(&mut self, status: impl Into<Status>) -> &mut Self {
        let status = status.into();
        assert!(
            (200..=599).contains(&status.0),
            "final status {} is not 200-599",
            status.0
        );
        self.status = status;
        self
    }

    /// The status set so far.
    pub fn status_code(&self) -> Status {
        self.status
    }

    /// Replaces the registered reason phrase of the status (checked like a field value).
    pub fn reason(&mut self, reason: &str) -> Result<&mut Self, HeaderError> {
        check_text(reason)?;
        self.scratch.reason.clear();
        self.scratch.reason.push_str(reason);
        self.custom_reason = true;
        Ok(self)
    }

    /// Adds a header field. A name that is not a token, a value with CR, LF, NUL or another
    /// control byte, and the fields percore writes itself are refused; `Server` and `Date`
    /// replace percore's own.
    pub fn header(&mut self, name: &str, value: &str) -> Result<&mut Self, HeaderError> {
        if self.written.is_some() {
            return Err(HeaderError::TooLate);
        }
        self.own |= check_field(name, value)?;
        if name.eq_ignore_ascii_case("content-type") {
            self.typed = true;
            self.plain = false;
        }
        let out = &mut *self.out;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.trim_matches([' ', '\t']).as_bytes());
        out.extend_from_slice(b"\r\n");
        Ok(self)
    }

    /// Sets `Content-Type`.
    pub fn content_type(&mut self, value: &str) -> Result<&mut Self, HeaderError> {
        self.header("Content-Type", value)
    }

    /// Sets the body to a copy of `bytes`.
    pub fn body(&mut self, bytes: &[u8]) -> &mut Self {
        self.scratch.body.clear();
        self.scratch.body.extend_from_slice(bytes);
        self.body = Body::Scratch;
        self
    }

    /// Sets the body to a `'static` slice (copied once, into the output).
    pub fn body_static(&mut self, bytes: &'static [u8]) -> &mut Self {
        self.body = Body::Static(bytes);
        self
    }

    /// The body buffer, to append to (`write!` works on it through `std::io::Write`); it
    /// starts empty and is reused by the core's next response.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        if let Body::Static(bytes) = self.body {
            self.scratch.body.clear();
            self.scratch.body.extend_from_slice(bytes);
            self.body = Body::Scratch;
        }
        &mut self.scratch.body
    }

    /// Sets a text body, with `Content-Type: text/plain; charset=utf-8` unless a type was
    /// given.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.plain();
        self.body(text.as_bytes())
    }

    /// Adds `Content-Type: text/plain; charset=utf-8` unless a type was given.
    pub fn plain(&mut self) -> &mut Self {
        // Written with the head rather than staged: nothing to move behind the status line.
        self.plain = !self.typed;
        self
    }

    /// Closes the connection after this response (`Connection: close`). Once a file's head
    /// has been written ([`Response::file`]) it is too late, and this does nothing.
    pub fn close(&mut self) -> &mut Self {
        if self.written.is_none() {
            self.persistence = Persistence::Close;
        }
        self
    }

    /// Sends an interim (1xx) response at once, ahead of the final one: `103 Early Hints`
    /// with its `Link` fields, for instance. An HTTP/1.0 client is sent none (RFC 9110
    /// section 15.2: it would take it for the final response); the call still succeeds.
    pub fn interim(
        &mut self,
        status: impl Into<Status>,
        fields: &[(&str, &str)],
    ) -> Result<(), HeaderError> {
        let status = status.into();
        if !(100..=199).contains(&status.0) || status.0 == 101 {
            return Err(HeaderError::InvalidStatus);
        }
        if self.written.is_some() {
            return Err(HeaderError::TooLate);
        }
        for (name, value) in fields {
            check_field(name, value)?;
        }
        if self.http10 {
            return Ok(());
        }
        let staged = self.out.len() - self.start;
        let mut inner = response::Response::new(self.out, self.head_only, self.persistence);
        inner.own = OWN_SERVER | OWN_DATE;
        inner.send_head(status, None, fields, 0);
        // The interim response goes before the fields staged for the final one.
        let written = self.out.len() - self.start - staged;
        self.out[self.start..].rotate_right(written);
        self.start += written;
        Ok(())
    }

    /// Answers with the file at `path` (relative to the root of `files`, not
    /// percent-encoded) through percore's static-file machinery: `ETag` and
    /// `Last-Modified`, conditional requests, byte ranges, the per-core cache of small
    /// files, reads that do not stall the core. A missing file is a 404, a path leaving the
    /// root a 403 or 400. Fields already added are kept; status and body set here are not
    /// used.
    pub fn file(&mut self, files: &mut Files, request: &Request<'_>, path: &str) {
        self.serve_file(files, request, path.as_bytes(), false);
    }

    pub(crate) fn serve_file(
        &mut self,
        files: &mut Files,
        request: &Request<'_>,
        path: &[u8],
        encoded: bool,
    ) {
        if self.written.is_some() {
            return;
        }
        let mut inner = response::Response {
            out: &mut *self.out,
            head_only: self.head_only,
            persistence: self.persistence,
            sent: None,
            start: self.start,
            own: self.own,
            failed: false,
        };
        self.file = static_files::serve(&mut files.0, &request.inner, &mut inner, path, encoded);
        self.written = inner.sent;
    }

    /// Writes the head and body, unless a file's head was written already. Returns the
    /// status sent.
    pub(crate) fn finish(&mut self) -> Status {
        if let Some(status) = self.written {
            return status;
        }
        let status = self.status;
        let body: &[u8] = match self.body {
            Body::Scratch => &self.scratch.body,
            Body::Static(bytes) => bytes,
        };
        let reason = self.custom_reason.then_some(self.scratch.reason.as_bytes());
        let content_type = self.plain.then_some(TEXT_PLAIN);
        let mut inner = response::Response {
            out: &mut *self.out,
            head_only: self.head_only,
            persistence: self.persistence,
            sent: None,
            start: self.start,
            own: self.own,
            failed: false,
        };
        inner.send_head_as(status, reason, content_type, &[], body.len() as u64);
        if inner.body_wanted() {
            inner.out.extend_from_slice(body);
        }
        self.written = Some(status);
        status
    }
}

/// The answer of an async handler, owned since it is made after the request's buffers
/// have gone back: status, checked header fields, body.
///
/// ```
/// # use percore::{Reply, Status};
/// let reply = Reply::text("done\n").header("Cache-Control", "no-store").unwrap();
/// let missing = Reply::status(Status::NOT_FOUND);
/// assert!(Reply::new().header("X-Bad", "a\nb").is_err());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Reply {
    status: Option<Status>,
    reason: Option<String>,
    fields: Vec<(String, String)>,
    own: u8,
    body: Vec<u8>,
    close: bool,
}

impl Reply {
    /// An empty 200.
    pub fn new() -> Reply {
        Reply::default()
    }

    /// An empty response with `status` (200–599; others panic, which answers 500).
    pub fn status(status: impl Into<Status>) -> Reply {
        Reply::new().with_status(status)
    }

    /// A 200 with a text body (`text/plain; charset=utf-8`).
    pub fn text(text: impl Into<String>) -> Reply {
        let mut reply = Reply::new();
        reply
            .fields
            .push(("Content-Type".into(), TEXT_PLAIN.into()));
        reply.body = text.into().into_bytes();
        reply
    }

    /// A 200 with `body`.
    pub fn bytes(body: impl Into<Vec<u8>>) -> Reply {
        Reply::new().with_body(body)
    }

    /// Sets the status (200–599; others panic, which answers 500).
    pub fn with_status(mut self, status: impl Into<Status>) -> Reply {
        let status = status.into();
        assert!(
            (200..=599).contains(&status.0),
            "final status {} is not 200-599",
            status.0
        );
        self.status = Some(status);
        self
    }

    /// Replaces the registered reason phrase (checked like a field value).
    pub fn with_reason(mut self, reason: &str) -> Result<Reply, HeaderError> {
        check_text(reason)?;
        self.reason = Some(reason.into());
        Ok(self)
    }

    /// Adds a header field, checked as [`Response::header`] checks it.
    pub fn header(mut self, name: &str, value: &str) -> Result<Reply, HeaderError> {
        self.own |= check_field(name, value)?;
        if name.eq_ignore_ascii_case("content-type") {
            self.fields
                .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        }
        self.fields
            .push((name.into(), value.trim_matches([' ', '\t']).into()));
        Ok(self)
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// Closes the connection after this response.
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }

    /// Writes it as the late response `response` stands for.
    pub(crate) fn write(&self, response: &mut response::Response<'_>) {
        let fields: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if self.close {
            response.persistence = Persistence::Close;
        }
        response.own = self.own;
        let status = self.status.unwrap_or(Status::OK);
        let reason = self.reason.as_deref().map(str::as_bytes);
        response.send_head_as(status, reason, None, &fields, self.body.len() as u64);
        if response.body_wanted() {
            response.out.extend_from_slice(&self.body);
        }
    }
}
