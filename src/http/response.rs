//! Response encoding straight into a connection's output buffer, and the cached Date.
//!
//! Every response percore writes goes through [`Response::send`]: status line, `Server`,
//! `Date`, optional `Content-Type` and extra fields, `Content-Length`, and the `Connection`
//! field when persistence needs to be spelled out. Nothing is allocated per response once the
//! output buffer has grown to its working size. Routing and parsing live elsewhere.

use std::cell::RefCell;

use super::date::format_imf_fixdate;

/// A status code with its reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// 100 Continue.
    pub const CONTINUE: Status = Status(100);
    /// 200 OK.
    pub const OK: Status = Status(200);
    /// 204 No Content.
    pub const NO_CONTENT: Status = Status(204);
    /// 206 Partial Content.
    pub const PARTIAL_CONTENT: Status = Status(206);
    /// 301 Moved Permanently.
    pub const MOVED_PERMANENTLY: Status = Status(301);
    /// 304 Not Modified.
    pub const NOT_MODIFIED: Status = Status(304);
    /// 400 Bad Request.
    pub const BAD_REQUEST: Status = Status(400);
    /// 403 Forbidden.
    pub const FORBIDDEN: Status = Status(403);
    /// 404 Not Found.
    pub const NOT_FOUND: Status = Status(404);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: Status = Status(408);
    /// 412 Precondition Failed.
    pub const PRECONDITION_FAILED: Status = Status(412);
    /// 413 Content Too Large.
    pub const CONTENT_TOO_LARGE: Status = Status(413);
    /// 414 URI Too Long.
    pub const URI_TOO_LONG: Status = Status(414);
    /// 416 Range Not Satisfiable.
    pub const RANGE_NOT_SATISFIABLE: Status = Status(416);
    /// 417 Expectation Failed.
    pub const EXPECTATION_FAILED: Status = Status(417);
    /// 431 Request Header Fields Too Large.
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: Status = Status(501);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    /// 505 HTTP Version Not Supported.
    pub const HTTP_VERSION_NOT_SUPPORTED: Status = Status(505);

    /// The status line, CRLF included.
    pub fn line(self) -> &'static str {
        match self.0 {
            100 => "HTTP/1.1 100 Continue\r\n",
            200 => "HTTP/1.1 200 OK\r\n",
            204 => "HTTP/1.1 204 No Content\r\n",
            206 => "HTTP/1.1 206 Partial Content\r\n",
            301 => "HTTP/1.1 301 Moved Permanently\r\n",
            304 => "HTTP/1.1 304 Not Modified\r\n",
            400 => "HTTP/1.1 400 Bad Request\r\n",
            403 => "HTTP/1.1 403 Forbidden\r\n",
            404 => "HTTP/1.1 404 Not Found\r\n",
            405 => "HTTP/1.1 405 Method Not Allowed\r\n",
            408 => "HTTP/1.1 408 Request Timeout\r\n",
            412 => "HTTP/1.1 412 Precondition Failed\r\n",
            413 => "HTTP/1.1 413 Content Too Large\r\n",
            414 => "HTTP/1.1 414 URI Too Long\r\n",
            416 => "HTTP/1.1 416 Range Not Satisfiable\r\n",
            417 => "HTTP/1.1 417 Expectation Failed\r\n",
            431 => "HTTP/1.1 431 Request Header Fields Too Large\r\n",
            501 => "HTTP/1.1 501 Not Implemented\r\n",
            503 => "HTTP/1.1 503 Service Unavailable\r\n",
            505 => "HTTP/1.1 505 HTTP Version Not Supported\r\n",
            _ => "HTTP/1.1 500 Internal Server Error\r\n",
        }
    }

    /// The reason phrase alone, used as the body of error responses.
    pub fn reason(self) -> &'static str {
        let line = self.line();
        &line["HTTP/1.1 200 ".len()..line.len() - 2]
    }
}

/// What the `Connection` field of a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: persistent, no field needed.
    Default,
    /// HTTP/1.0 client that asked for keep-alive: say yes explicitly.
    KeepAlive,
    /// The connection closes after this response.
    Close,
}

/// A response being written into the output buffer.
pub struct Response<'a> {
    /// The connection's output buffer.
    pub out: &'a mut Vec<u8>,
    /// HEAD request: write the fields of the GET response but no body.
    pub head_only: bool,
    /// What to put in the `Connection` field.
    pub persistence: Persistence,
    /// The status of the response written, once written.
    pub sent: Option<Status>,
}

/// The `Content-Type` of plain-text bodies.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

impl Response<'_> {
    /// Writes a complete response whose body is the concatenation of `body`.
    pub fn send(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
        body: &[&[u8]],
    ) {
        let len: usize = body.iter().map(|part| part.len()).sum();
        self.send_head(status, content_type, extra, len as u64);
        if self.body_wanted() {
            for part in body {
                self.out.extend_from_slice(part);
            }
        }
    }

    /// Writes the head of a response whose `content_length` body bytes the caller sends
    /// (unless [`Response::body_wanted`] says no body goes out). 204 and 304 carry no
    /// `Content-Length`.
    pub fn send_head(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
        content_length: u64,
    ) {
        self.sent = Some(status);
        let out = &mut *self.out;
        out.extend_from_slice(status.line().as_bytes());
        out.extend_from_slice(b"Server: percore\r\nDate: ");
        with_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
        if let Some(content_type) = content_type {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(content_type.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in extra {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if status != Status::NO_CONTENT && status != Status::NOT_MODIFIED {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, content_length);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(match self.persistence {
            Persistence::Default => b"\r\n".as_slice(),
            Persistence::KeepAlive => b"Connection: keep-alive\r\n\r\n",
            Persistence::Close => b"Connection: close\r\n\r\n",
        });
    }

    /// Whether the body of a response goes out (not for HEAD, nor for 204 and 304).
    pub fn body_wanted(&self) -> bool {
        !self.head_only && !matches!(self.sent, Some(Status::NO_CONTENT | Status::NOT_MODIFIED))
    }

    /// Writes a short plain-text response whose body is the reason phrase.
    pub fn send_status(&mut self, status: Status, extra: &[(&str, &str)]) {
        let reason = status.reason().as_bytes();
        self.send(status, Some(TEXT_PLAIN), extra, &[reason, b"\n"]);
    }
}

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The Date field value, re-rendered at most once a second per core.
struct DateCache {
    second: i64,
    text: [u8; 29],
}

thread_local! {
    static DATE: RefCell<DateCache> = const {
        RefCell::new(DateCache { second: i64::MIN, text: [b' '; 29] })
    };
}

/// Calls `f` with the current IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
///
/// Reads the coarse realtime clock (a vDSO read, no system call) and renders only when the
/// second has changed.
pub fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    DATE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.second != now.tv_sec {
            cache.second = now.tv_sec;
            cache.text = format_imf_fixdate(now.tv_sec);
        }
        f(&cache.text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_renders_edges() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, u64::MAX);
        assert_eq!(out, b"0 18446744073709551615");
    }

    #[test]
    fn head_response_keeps_content_length_but_no_body() {
        let mut out = Vec::new();
        let mut response = Response {
            out: &mut out,
            head_only: true,
            persistence: Persistence::KeepAlive,
            sent: None,
        };
        response.send(Status::OK, Some(TEXT_PLAIN), &[], &[b"Hi, x!"]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nServer: percore\r\nDate: "));
        assert!(text.ends_with("Content-Length: 6\r\nConnection: keep-alive\r\n\r\n"));
    }
}
