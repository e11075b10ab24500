//! Response encoding straight into a connection's output buffer, and the cached Date.
//!
//! Every response percore writes goes through a [`ResponseWriter`]: status line, `Server`,
//! `Date`, the fields, `Content-Length`, and the `Connection` field when persistence needs to
//! be spelled out. The writer holds the connection's output buffer while one request is
//! answered (the session lends it and takes it back), so that whoever answers, the protocol
//! layer or a handler, writes into the same bytes with the same rules. Nothing is allocated
//! per response once the buffer has grown to its working size. Routing and parsing live
//! elsewhere.

use std::cell::RefCell;

use super::status::Status;
use crate::support::civil_time::imf_fixdate;

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

/// The `Content-Type` of plain-text bodies.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Fields a handler may give itself in place of percore's ([`ResponseWriter::own`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnFields {
    /// The handler wrote `Server`.
    pub server: bool,
    /// The handler wrote `Date`.
    pub date: bool,
}

/// One response being written at the end of the connection's output buffer.
#[derive(Debug)]
pub struct ResponseWriter {
    out: Vec<u8>,
    head_only: bool,
    http10: bool,
    persistence: Persistence,
    sent: Option<Status>,
    /// Where this response starts in `out`. Fields staged before the head
    /// (`out[start..]`) end up behind the status line.
    start: usize,
    own: OwnFields,
    failed: bool,
    /// The body came from a cache of small files.
    from_cache: bool,
    /// The body's content coding, and the bytes it saved over the identity body.
    coded: Option<Coded>,
}

/// What a coded body's response tells the core's books: the coding's token, and the bytes
/// the coding saved (the identity body's length less the coded one's, when the whole body
/// went out; 0 for a part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coded {
    /// `gzip`, `br`, `zstd`.
    pub coding: &'static str,
    /// Body bytes not sent thanks to the coding.
    pub saved: u64,
}

impl ResponseWriter {
    /// A response to be appended to `out`, for a HEAD request when `head_only` (the fields of
    /// the GET response, no body), to an HTTP/1.0 client when `http10`.
    pub fn new(out: Vec<u8>, head_only: bool, http10: bool, persistence: Persistence) -> Self {
        let start = out.len();
        ResponseWriter {
            out,
            head_only,
            http10,
            persistence,
            sent: None,
            start,
            own: OwnFields::default(),
            failed: false,
            from_cache: false,
            coded: None,
        }
    }

    /// The output buffer, given back.
    pub fn into_out(self) -> Vec<u8> {
        self.out
    }

    /// The output buffer, to append a body to once the head is written.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// The status written, once the head is.
    pub fn sent(&self) -> Option<Status> {
        self.sent
    }

    /// What the `Connection` field will say.
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// The connection closes after this response (`Connection: close`); too late once the
    /// head is written.
    pub fn close(&mut self) {
        if self.sent.is_none() {
            self.persistence = Persistence::Close;
        }
    }

    /// Where this response starts in the output buffer (after any interim response).
    pub fn start(&self) -> usize {
        self.start
    }

    /// The fields staged for the head to come (each `Name: value` and CRLF), before the head
    /// is written.
    pub fn staged(&self) -> &[u8] {
        &self.out[self.start..]
    }

    /// Whether the request was a `HEAD` (the head of the GET response goes out, no body).
    pub fn head_only(&self) -> bool {
        self.head_only
    }

    /// Bytes of this response written so far (staged fields included).
    pub fn written(&self) -> usize {
        self.out.len() - self.start
    }

    /// The service failed to make this response (a handler panicked).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Marks the body as taken from a cache of small files (the core counts such answers).
    pub fn mark_from_cache(&mut self) {
        self.from_cache = true;
    }

    /// Whether the body was taken from a cache of small files.
    pub fn is_from_cache(&self) -> bool {
        self.from_cache
    }

    /// Marks the body as sent in `coding` (its token), which saved `saved` bytes (the core
    /// counts coded responses, and the access log names the coding).
    pub fn mark_coded(&mut self, coding: &'static str, saved: u64) {
        self.coded = Some(Coded { coding, saved });
    }

    /// The body's coding, if it was coded.
    pub fn coded(&self) -> Option<Coded> {
        self.coded
    }

    /// Appends a field for the head to come (checked by the caller: a token name, a value
    /// without CR, LF or NUL).
    pub fn stage_field(&mut self, name: &str, value: &str) {
        let out = &mut self.out;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// Marks `Server` or `Date` as given by the handler, which percore then leaves out.
    pub fn own(&mut self, fields: OwnFields) {
        self.own.server |= fields.server;
        self.own.date |= fields.date;
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

    /// Writes a short plain-text response whose body is the reason phrase.
    pub fn send_status(&mut self, status: Status, extra: &[(&str, &str)]) {
        let reason = status.reason().as_bytes();
        self.send(status, Some(TEXT_PLAIN), extra, &[reason, b"\n"]);
    }

    /// Writes the head of a response whose `content_length` body bytes the caller appends
    /// (unless [`ResponseWriter::body_wanted`] says no body goes out). 1xx, 204 and 304 carry
    /// no `Content-Length`.
    pub fn send_head(
        &mut self,
        status: Status,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
        content_length: u64,
    ) {
        self.send_head_as(status, None, content_type, extra, content_length);
    }

    /// [`ResponseWriter::send_head`] with a reason phrase of the handler's (already checked)
    /// in place of the registered one.
    pub fn send_head_as(
        &mut self,
        status: Status,
        reason: Option<&[u8]>,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
        content_length: u64,
    ) {
        self.open_head(status, reason);
        let out = &mut self.out;
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
        self.close_head();
    }

    /// Starts the head: the status line (with `Server` and `Date`), before any fields the
    /// handler staged.
    #[inline]
    fn open_head(&mut self, status: Status, reason: Option<&[u8]>) {
        self.sent = Some(status);
        let staged = self.out.len() - self.start;
        self.status_line(status, reason);
        if staged > 0 {
            // The handler's fields were written first: the status line goes before them.
            let written = self.out.len() - self.start - staged;
            self.out[self.start..].rotate_right(written);
        }
    }

    /// Ends the head: `Connection` as the persistence says, and the blank line.
    #[inline]
    fn close_head(&mut self) {
        self.out.extend_from_slice(match self.persistence {
            Persistence::Default => b"\r\n".as_slice(),
            Persistence::KeepAlive => b"Connection: keep-alive\r\n\r\n",
            Persistence::Close => b"Connection: close\r\n\r\n",
        });
    }

    /// Writes the head of a response whose length is not known before its body is made: to
    /// an HTTP/1.1 client the body goes in the chunked coding (the caller writes the chunks
    /// and the last, empty one), to an HTTP/1.0 client up to the connection's close (the
    /// response closes it). Returns whether the caller is to write chunks: false when no
    /// body goes out (HEAD, 1xx, 204, 304) or it is delimited by the close.
    pub fn send_head_unsized(&mut self, status: Status, reason: Option<&[u8]>) -> bool {
        let body = !status.has_no_body();
        let chunked = body && !self.http10;
        if body && self.http10 {
            self.persistence = Persistence::Close;
        }
        self.open_head(status, reason);
        if chunked {
            self.out
                .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        self.close_head();
        chunked && !self.head_only
    }

    /// The status line, `Server` and `Date` (unless the handler gave its own).
    fn status_line(&mut self, status: Status, reason: Option<&[u8]>) {
        let out = &mut self.out;
        match (reason, status.line()) {
            (None, Some(line)) => out.extend_from_slice(line.as_bytes()),
            _ => {
                out.extend_from_slice(b"HTTP/1.1 ");
                push_decimal(out, u64::from(status.0.min(999)));
                out.push(b' ');
                out.extend_from_slice(reason.unwrap_or(status.reason().as_bytes()));
                out.extend_from_slice(b"\r\n");
            }
        }
        if !self.own.server {
            out.extend_from_slice(b"Server: percore\r\n");
        }
        if !self.own.date {
            out.extend_from_slice(b"Date: ");
            with_date(|date| out.extend_from_slice(date));
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Whether the body of the response goes out (not for HEAD, nor for 204 and 304).
    pub fn body_wanted(&self) -> bool {
        !self.head_only && !self.sent.is_some_and(Status::has_no_body)
    }

    /// Sends an interim (1xx) response ahead of this one, before the fields already staged
    /// for it. An HTTP/1.0 client gets none (RFC 9110 section 15.2: it would take it for the
    /// final response). Returns whether it was written.
    pub fn interim(&mut self, status: Status, fields: &[(&str, &str)]) -> bool {
        if self.http10 || self.sent.is_some() {
            return false;
        }
        let staged = self.out.len() - self.start;
        // No `Server` or `Date`: those belong to the final response.
        match status.line() {
            Some(line) => self.out.extend_from_slice(line.as_bytes()),
            None => {
                self.out.extend_from_slice(b"HTTP/1.1 ");
                push_decimal(&mut self.out, u64::from(status.0));
                self.out.extend_from_slice(b" \r\n");
            }
        }
        for (name, value) in fields {
            self.stage_field(name, value);
        }
        self.out.extend_from_slice(b"\r\n");
        let written = self.out.len() - self.start - staged;
        self.out[self.start..].rotate_right(written);
        self.start += written;
        true
    }

    /// The service failed to make this response: what it wrote is dropped and a 500 that
    /// closes the connection takes its place.
    pub fn fail(&mut self) {
        self.out.truncate(self.start);
        self.sent = None;
        self.persistence = Persistence::Close;
        self.own = OwnFields::default();
        self.failed = true;
        self.coded = None;
        self.send_status(Status::INTERNAL_SERVER_ERROR, &[]);
    }
}

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

/// The Date field value, rendered again at most once a second per core.
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
            cache.text = imf_fixdate(now.tv_sec);
        }
        f(&cache.text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(writer: ResponseWriter) -> String {
        String::from_utf8(writer.into_out()).unwrap()
    }

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
        let mut writer = ResponseWriter::new(Vec::new(), true, false, Persistence::KeepAlive);
        writer.send(Status::OK, Some(TEXT_PLAIN), &[], &[b"Hi, x!"]);
        let text = text(writer);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nServer: percore\r\nDate: "));
        assert!(text.ends_with("Content-Length: 6\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn staged_fields_follow_the_status_line() {
        let mut writer =
            ResponseWriter::new(b"earlier".to_vec(), false, false, Persistence::Default);
        writer.stage_field("X-One", "1");
        writer.stage_field("Server", "mine");
        writer.own(OwnFields {
            server: true,
            date: false,
        });
        writer.send(Status(299), None, &[], &[b"ok"]);
        let text = text(writer);
        assert!(text.starts_with("earlierHTTP/1.1 299 \r\nDate: "), "{text}");
        assert!(text.contains("GMT\r\nX-One: 1\r\nServer: mine\r\nContent-Length: 2\r\n\r\nok"));
        assert!(!text.contains("percore"));
    }

    #[test]
    fn an_interim_response_goes_before_the_staged_fields_and_not_to_http_1_0() {
        let mut writer = ResponseWriter::new(Vec::new(), false, false, Persistence::Default);
        writer.stage_field("X-Final", "yes");
        assert!(writer.interim(Status::EARLY_HINTS, &[("Link", "</a.css>")]));
        writer.send(Status::OK, None, &[], &[b"x"]);
        let text = text(writer);
        assert!(text.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{text}");
        let final_at = text.find("HTTP/1.1 200 OK\r\n").unwrap();
        assert!(text[..final_at].contains("Link: </a.css>\r\n\r\n"));
        assert!(text[final_at..].contains("X-Final: yes\r\n"));
        let mut old = ResponseWriter::new(Vec::new(), false, true, Persistence::Default);
        assert!(!old.interim(Status::EARLY_HINTS, &[]));
    }

    #[test]
    fn a_failed_response_is_replaced_by_a_500_that_closes() {
        let mut writer =
            ResponseWriter::new(b"before".to_vec(), false, false, Persistence::Default);
        writer.stage_field("X-Half", "done");
        writer.fail();
        let text = text(writer);
        assert!(
            text.starts_with("beforeHTTP/1.1 500 Internal Server Error\r\n"),
            "{text}"
        );
        assert!(text.contains("Connection: close\r\n") && !text.contains("X-Half"));
    }
}
