//! What a synchronous handler answers with: [`Response`], written in place into the
//! connection's output. It checks what it is given: a field name must be a token, a value or
//! reason phrase must not hold CR, LF, NUL or another control byte, and `Content-Length`,
//! `Transfer-Encoding` and `Connection` are percore's to write.

use std::fmt;

use super::compress::{Compressor, Traits};
use super::request::Request;
use super::Files;
use crate::files::FileBody;
use crate::http::is_tchar;
use crate::http::request::RawRequest;
use crate::http::response::{OwnFields, ResponseWriter, TEXT_PLAIN};
use crate::http::status::Status;

/// Why a header field, reason phrase or status was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The field name is empty or not a token.
    InvalidName,
    /// The value (or reason phrase) holds CR, LF, NUL or another control byte.
    InvalidValue,
    /// `Content-Length`, `Transfer-Encoding` and `Connection` are written by percore.
    Reserved,
    /// The response's head has already been written (a file was served).
    TooLate,
    /// A status [`Response::interim`] does not take: a final one, or `101 Switching
    /// Protocols`.
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

/// Checks a field; returns the fields of percore's it replaces, if any.
pub(crate) fn check_field(name: &str, value: &str) -> Result<OwnFields, HeaderError> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(HeaderError::InvalidName);
    }
    check_text(value)?;
    let reserved = ["content-length", "transfer-encoding", "connection"];
    if reserved.iter().any(|r| name.eq_ignore_ascii_case(r)) {
        return Err(HeaderError::Reserved);
    }
    Ok(OwnFields {
        server: name.eq_ignore_ascii_case("server"),
        date: name.eq_ignore_ascii_case("date"),
    })
}

/// A field value or reason phrase: tabs, visible bytes and spaces only (RFC 9110 section 5.5).
pub(crate) fn check_text(value: &str) -> Result<(), HeaderError> {
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
    writer: &'a mut ResponseWriter,
    scratch: &'a mut Scratch,
    status: Status,
    /// A `Content-Type` field was staged.
    typed: bool,
    /// `Content-Type: text/plain; charset=utf-8` goes with the head (none was staged).
    plain: bool,
    custom_reason: bool,
    body: Body,
    file: Option<FileBody>,
    /// Where the staged `Content-Type` value lies in the staged fields: offset and length.
    type_at: Option<(u32, u32)>,
    /// Not to be compressed: the handler set `Content-Encoding`, or opted out.
    exempt: bool,
}

impl<'a> Response<'a> {
    pub(crate) fn new(writer: &'a mut ResponseWriter, scratch: &'a mut Scratch) -> Response<'a> {
        scratch.body.clear();
        Response {
            writer,
            scratch,
            status: Status::OK,
            typed: false,
            plain: false,
            custom_reason: false,
            body: Body::Scratch,
            file: None,
            type_at: None,
            exempt: false,
        }
    }

    /// Sets the final status (200 unless set): a constant such as [`Status::NOT_FOUND`], or
    /// any code 200–599 through [`Status::new`]. An interim (1xx) status is not a final one
    /// (those go out through [`Response::interim`]): a handler that leaves one set has failed
    /// like one that panics, and its request gets a 500 and its connection closed.
    pub fn status(&mut self, status: Status) -> &mut Self {
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
        if self.writer.sent().is_some() {
            return Err(HeaderError::TooLate);
        }
        let own = check_field(name, value)?;
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-type") {
            self.typed = true;
            self.plain = false;
            let at = self.writer.staged().len() + name.len() + 2;
            self.type_at = Some((at as u32, value.len() as u32));
        }
        self.exempt |= name.eq_ignore_ascii_case("content-encoding");
        self.writer.own(own);
        self.writer.stage_field(name, value);
        Ok(self)
    }

    /// Sends this response's body as it is, whatever the request accepts: for a page that
    /// mixes a secret (a CSRF token, a session's data) with text an attacker can put into
    /// it, which compression would let them guess a byte at a time over TLS (BREACH). A
    /// handler that sets `Content-Encoding` itself is not compressed either.
    pub fn no_compression(&mut self) -> &mut Self {
        self.exempt = true;
        self
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
        self.writer.close();
        self
    }

    /// Sends an interim (1xx) response at once, ahead of the final one: `103 Early Hints`
    /// with its `Link` fields, for instance. An HTTP/1.0 client is sent none (RFC 9110
    /// section 15.2: it would take it for the final response); the call still succeeds.
    pub fn interim(&mut self, status: Status, fields: &[(&str, &str)]) -> Result<(), HeaderError> {
        if !status.is_interim() || status == Status::SWITCHING_PROTOCOLS {
            return Err(HeaderError::InvalidStatus);
        }
        if self.writer.sent().is_some() {
            return Err(HeaderError::TooLate);
        }
        for (name, value) in fields {
            check_field(name, value)?;
        }
        self.writer.interim(status, fields);
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
        if self.writer.sent().is_some() {
            return;
        }
        self.file = crate::files::serve(&mut files.0, &request.inner, self.writer, path, encoded);
    }

    /// Writes the head and body (compressed as `compressor` chooses for `request`), unless
    /// a file's head was written already. Returns the file body still to send, if any.
    pub(crate) fn finish(
        mut self,
        compressor: &mut Compressor,
        request: &RawRequest<'_>,
    ) -> Option<FileBody> {
        if self.writer.sent().is_some() {
            return self.file.take();
        }
        if self.status.is_interim() {
            self.writer.fail();
            return None;
        }
        let body: &[u8] = match self.body {
            Body::Scratch => &self.scratch.body,
            Body::Static(bytes) => bytes,
        };
        let reason = self.custom_reason.then_some(self.scratch.reason.as_bytes());
        let content_type = self.plain.then_some(TEXT_PLAIN);
        let staged = self.writer.staged();
        let typed = match self.type_at {
            Some((at, len)) => staged
                .get(at as usize..(at + len) as usize)
                .and_then(|value| std::str::from_utf8(value).ok()),
            None => content_type,
        };
        let traits = Traits {
            status: self.status,
            content_type: typed,
            exempt: self.exempt,
            len: Some(body.len()),
        };
        let choice = compressor.choose(traits, self.writer.head_only(), || {
            compressor.ranked(request)
        });
        let head = (self.status, reason, content_type);
        compressor.send_whole(self.writer, choice, head, body);
        None
    }
}
