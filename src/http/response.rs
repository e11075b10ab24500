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
    /// 201 Created.
    pub const CREATED: Status = Status(201);
    /// 202 Accepted.
    pub const ACCEPTED: Status = Status(202);
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

    /// The status line, CRLF included, for the statuses percore itself sends (others are
    /// written from [`Status::reason`] by [`Response::send_head`]); a 500's for any other.
    pub fn line(self) -> &'static str {
        self.known_line()
            .unwrap_or("HTTP/1.1 500 Internal Server Error\r\n")
    }

    /// The status line, CRLF included, if it is one of those percore keeps ready.
    fn known_line(self) -> Option<&'static str> {
        Some(match self.0 {
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
            500 => "HTTP/1.1 500 Internal Server Error\r\n",
            505 => "HTTP/1.1 505 HTTP Version Not Supported\r\n",
            _ => return None,
        })
    }

    /// The reason phrase: the one the IANA registry gives the code (RFC 9110 section 15 and
    /// later RFCs), or an empty one for an unregistered code, which RFC 9112 allows.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            102 => "Processing",
            103 => "Early Hints",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            203 => "Non-Authoritative Information",
            204 => "No Content",
            205 => "Reset Content",
            206 => "Partial Content",
            207 => "Multi-Status",
            208 => "Already Reported",
            226 => "IM Used",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            305 => "Use Proxy",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            421 => "Misdirected Request",
            422 => "Unprocessable Content",
            423 => "Locked",
            424 => "Failed Dependency",
            425 => "Too Early",
            426 => "Upgrade Required",
            428 => "Precondition Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            451 => "Unavailable For Legal Reasons",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            506 => "Variant Also Negotiates",
            507 => "Insufficient Storage",
            508 => "Loop Detected",
            511 => "Network Authentication Required",
            _ => "",
        }
    }

    /// Whether the code is one HTTP defines a class for (100 to 599).
    pub fn is_valid(self) -> bool {
        (100..=599).contains(&self.0)
    }

    /// Whether a response with this status carries no body and no `Content-Length`
    /// (1xx, 204 and 304).
    pub fn has_no_body(self) -> bool {
        self.0 < 200 || self.0 == 204 || self.0 == 304
    }
}

impl From<u16> for Status {
    fn from(code: u16) -> Status {
        Status(code)
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
    /// Where this response starts in `out`. Header fields a handler staged there before the
    /// head was written (`out[start..]`) end up behind the status line.
    pub start: usize,
    /// The staged fields include `Server` ([`OWN_SERVER`]) or `Date` ([`OWN_DATE`]), which
    /// percore then leaves out.
    pub own: u8,
    /// The service failed to make the response (a handler panicked): it is a 500 and the
    /// connection closes.
    pub failed: bool,
}

/// [`Response::own`]: the handler gave its own `Server` field.
pub const OWN_SERVER: u8 = 1;
/// [`Response::own`]: the handler gave its own `Date` field.
pub const OWN_DATE: u8 = 2;

/// The `Content-Type` of plain-text bodies.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

impl<'a> Response<'a> {
    /// A response to be appended to `out`.
    pub fn new(out: &'a mut Vec<u8>, head_only: bool, persistence: Persistence) -> Response<'a> {
        let start = out.len();
        Response {
            out,
            head_only,
            persistence,
            sent: None,
            start,
            own: 0,
            failed: false,
        }
    }

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
    /// (unless [`Response::body_wanted`] says no body goes out). 1xx, 204 and 304 carry no
    /// `Content-Length`.
    pub fn send_head(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
        content_length: u64,
    ) {
        self.send_head_as(status, None, content_type, extra, content_length);
    }

    /// [`Response::send_head`] with a reason phrase of the handler's (already checked) in
    /// place of the registered one.
    pub fn send_head_as(
        &mut self,
        status: Status,
        reason: Option<&[u8]>,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
        content_length: u64,
    ) {
        self.sent = Some(status);
        let out = &mut *self.out;
        let staged = out.len() - self.start.min(out.len());
        match (reason, status.known_line()) {
            (None, Some(line)) => out.extend_from_slice(line.as_bytes()),
            _ => {
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(&status_digits(status));
                out.push(b' ');
                out.extend_from_slice(reason.unwrap_or(status.reason().as_bytes()));
                out.extend_from_slice(b"\r\n");
            }
        }
        if self.own & OWN_SERVER == 0 {
            out.extend_from_slice(b"Server: percore\r\n");
        }
        if self.own & OWN_DATE == 0 {
            out.extend_from_slice(b"Date: ");
            with_date(|date| out.extend_from_slice(date));
            out.extend_from_slice(b"\r\n");
        }
        if staged > 0 {
            // The handler's fields were written first: the status line goes before them.
            let written = out.len() - self.start - staged;
            out[self.start..].rotate_right(written);
        }
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
        if !status.has_no_body() {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, content_length);
            out.extend_from_slice(b"\r\n");
        }
        if status.0 < 200 {
            // An interim response: the connection's fate is for the final one to say.
            out.extend_from_slice(b"\r\n");
            return;
        }
        out.extend_from_slice(match self.persistence {
            Persistence::Default => b"\r\n".as_slice(),
            Persistence::KeepAlive => b"Connection: keep-alive\r\n\r\n",
            Persistence::Close => b"Connection: close\r\n\r\n",
        });
    }

    /// Whether the body of a response goes out (not for HEAD, nor for 204 and 304).
    pub fn body_wanted(&self) -> bool {
        !self.head_only && !self.sent.is_some_and(Status::has_no_body)
    }

    /// Writes a short plain-text response whose body is the reason phrase.
    pub fn send_status(&mut self, status: Status, extra: &[(&str, &str)]) {
        let reason = status.reason().as_bytes();
        self.send(status, Some(TEXT_PLAIN), extra, &[reason, b"\n"]);
    }
}

/// The three digits of a status code (codes past 999 cannot be made by a handler: they are
/// refused before they get here).
fn status_digits(status: Status) -> [u8; 3] {
    let code = status.0.min(999);
    [
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]
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
        let mut response = Response::new(&mut out, true, Persistence::KeepAlive);
        response.send(Status::OK, Some(TEXT_PLAIN), &[], &[b"Hi, x!"]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nServer: percore\r\nDate: "));
        assert!(text.ends_with("Content-Length: 6\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn staged_fields_follow_the_status_line() {
        let mut out = b"earlier".to_vec();
        let mut response = Response::new(&mut out, false, Persistence::Default);
        response
            .out
            .extend_from_slice(b"X-One: 1\r\nServer: mine\r\n");
        response.own = OWN_SERVER;
        response.send(Status(299), None, &[], &[b"ok"]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("earlierHTTP/1.1 299 \r\nDate: "), "{text}");
        assert!(text.contains("GMT\r\nX-One: 1\r\nServer: mine\r\nContent-Length: 2\r\n\r\nok"));
        assert!(!text.contains("percore"));
    }
}
