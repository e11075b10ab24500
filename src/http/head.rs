//! A parsed request head: its method, version, target (as offsets into the head's own
//! bytes, so that a connection can keep it across reads) and framing.

use super::error::HttpError;

/// A request's method: the ones the protocol layer treats specially have their own variant,
/// every other token (`PURGE`, `MKCOL`, ...) is [`Method::Other`] and reaches the routes all
/// the same (`RawRequest::method` gives its text).
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
    pub(super) fn from_token(token: &str) -> Result<Method, HttpError> {
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
#[non_exhaustive]
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
    pub(super) fn of(head: &[u8], part: &[u8]) -> Span {
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
