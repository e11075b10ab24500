//! One connection's HTTP/1.1 exchange as a state machine without I/O: bytes in, responses out.
//!
//! [`Session::process`] takes whatever input is buffered, answers every complete request in
//! it (in order, appending the responses to one output buffer) and says how many input bytes
//! it used and whether the connection must close. The caller (`driver`) owns the socket,
//! buffers and timers; this file owns framing, persistence and the order of responses, which
//! is what makes it testable and fuzzable without sockets.
//!
//! A request with a body is routed as soon as its head is parsed, but its response stays
//! *uncommitted* (not to be written) until the body has been consumed: if the body turns out
//! to be malformed, the response is replaced by the error.
//!
//! The session knows nothing of routes: it asks a [`Service`] to answer each request, so the
//! same session runs under the server, a test, a fuzz target or a bench with any service.

use super::chunked::ChunkedDecoder;
use super::error::HttpError;
use super::request::{parse_head, Framing, Limits, Method, Request, Version};
use super::response::{Persistence, Response, Status, CONTINUE};

/// The application behind a session: answers one parsed request at a time.
pub trait Service {
    /// A body the service cannot write inline (a file to read), which the caller sends after
    /// the response head the service wrote.
    type Deferred;

    /// Writes the response to `request` into `response`; returns a deferred body when the
    /// head written promises bytes that are still to be read.
    fn call(
        &mut self,
        request: &Request<'_>,
        response: &mut Response<'_>,
    ) -> Option<Self::Deferred>;
}

/// Output bytes past which `process` stops answering and lets the caller write, so that a
/// client pipelining thousands of requests cannot make one batch grow without bound.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Skipping a Content-Length body.
    Body { remaining: u64 },
    /// Decoding a chunked body.
    Chunked(ChunkedDecoder),
    /// A response said `Connection: close`; nothing more is read.
    Closed,
}

/// What one call to [`Session::process`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used; the caller drops them from its buffer.
    pub consumed: usize,
    /// Responses completed (final responses, not `100 Continue`).
    pub responses: u32,
    /// Of those, how many were errors that end the connection.
    pub errors: u32,
    /// Final responses by status class: index 1 for 1xx … 5 for 5xx.
    pub by_class: [u32; 6],
}

/// The protocol state of one connection; `D` is its service's deferred body.
#[derive(Debug)]
pub struct Session<D> {
    state: State,
    limits: Limits,
    max_requests: u64,
    served: u64,
    scanned: usize,
    closing: bool,
    uncommitted_from: Option<usize>,
    /// Status of the routed response whose body is still being read.
    pending_status: Status,
    /// A deferred body (a file) whose bytes follow the last response head, for the caller.
    file: Option<D>,
    /// Where the head of the response that `file` completes starts in the output buffer.
    file_head: usize,
}

impl<D> Session<D> {
    /// A new connection's session. `max_requests` of 0 means no limit.
    pub fn new(limits: Limits, max_requests: u64) -> Session<D> {
        Session {
            state: State::Head,
            limits,
            max_requests,
            served: 0,
            scanned: 0,
            closing: false,
            uncommitted_from: None,
            pending_status: Status::OK,
            file: None,
            file_head: 0,
        }
    }

    /// Answers the complete requests at the start of `input`, appending to `out`.
    ///
    /// Stops when input runs out mid-request, when the connection must close, or when `out`
    /// passes [`OUTPUT_HIGH_WATER`] (call again after writing). With `draining` set, the next
    /// response says `Connection: close` and ends the session.
    pub fn process<S: Service<Deferred = D>>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        service: &mut S,
        draining: bool,
    ) -> Progress {
        let mut progress = Progress::default();
        let mut pos = 0;
        loop {
            // The high-water mark applies between requests only: a body must be read to the
            // end even when the response waiting for it is large, or nothing could be
            // written (it is uncommitted) and the connection would stall.
            if matches!(self.state, State::Head) && out.len() >= OUTPUT_HIGH_WATER {
                break;
            }
            let rest = &input[pos..];
            let step = match self.state {
                State::Closed => break,
                State::Head => self.read_head(rest, out, service, draining),
                State::Body { remaining } => {
                    let take = remaining.min(rest.len() as u64);
                    let remaining = remaining - take;
                    self.state = State::Body { remaining };
                    Ok((take as usize, remaining == 0))
                }
                State::Chunked(ref mut decoder) => {
                    decoder.feed(rest).map(|used| (used, decoder.is_done()))
                }
            };
            match step {
                Ok((used, finished)) => {
                    pos += used;
                    if finished {
                        self.finish_request();
                        progress.responses += 1;
                        progress.by_class[class_of(self.pending_status)] += 1;
                        if self.file.is_some() {
                            // The file's bytes go out before any later response.
                            break;
                        }
                    } else if used == 0 || pos == input.len() {
                        break;
                    }
                }
                Err(error) => {
                    self.fail(error, out);
                    progress.responses += 1;
                    progress.by_class[class_of(error.status())] += 1;
                    progress.errors += 1;
                    break;
                }
            }
        }
        progress.consumed = pos;
        progress
    }

    /// Parses a head at the start of `input` and routes it. Returns the bytes used and
    /// whether the request is complete (it is not while its body is outstanding).
    fn read_head<S: Service<Deferred = D>>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        service: &mut S,
        draining: bool,
    ) -> Result<(usize, bool), HttpError> {
        // RFC 9112 section 2.2: blank lines before a request line are ignored.
        let mut skip = 0;
        while let Some(&b) = input.get(skip) {
            match b {
                b'\n' => skip += 1,
                b'\r' if input.get(skip + 1) == Some(&b'\n') => skip += 2,
                _ => break,
            }
        }
        if skip > 0 {
            // Only a lone CR can have been scanned before: the scan starts afresh.
            self.scanned = 0;
        }
        let Some(head) = parse_head(&input[skip..], &mut self.scanned, &self.limits)? else {
            return Ok((skip, false));
        };
        let bytes = &input[skip..skip + head.len];
        let after_head = &input[skip + head.len..];

        self.closing = !head.keep_alive
            || draining
            || (self.max_requests != 0 && self.served + 1 >= self.max_requests);
        let persistence = match (self.closing, head.version) {
            (true, _) => Persistence::Close,
            (false, Version::Http10) => Persistence::KeepAlive,
            (false, Version::Http11) => Persistence::Default,
        };
        let has_body = head.framing != Framing::Empty;
        if head.expect_continue && has_body && after_head.is_empty() {
            out.extend_from_slice(CONTINUE);
        }
        let response_start = out.len();
        let mut response = Response {
            out,
            head_only: head.method == Method::Head,
            persistence,
            sent: None,
        };
        self.file = service.call(&Request { head: &head, bytes }, &mut response);
        self.pending_status = response.sent.unwrap_or(Status::OK);
        self.file_head = response_start;
        self.state = match head.framing {
            Framing::Empty => return Ok((skip + head.len, true)),
            Framing::Length(n) => State::Body { remaining: n },
            Framing::Chunked => State::Chunked(ChunkedDecoder::new(
                self.limits.max_body_bytes,
                self.limits.max_head_bytes,
            )),
        };
        self.uncommitted_from = Some(response_start);
        Ok((skip + head.len, false))
    }

    fn finish_request(&mut self) {
        self.served += 1;
        self.uncommitted_from = None;
        self.state = if self.closing {
            State::Closed
        } else {
            State::Head
        };
    }

    /// Replaces any uncommitted response with the error's and ends the session.
    fn fail(&mut self, error: HttpError, out: &mut Vec<u8>) {
        if let Some(start) = self.uncommitted_from.take() {
            out.truncate(start);
        }
        self.close_with(error.status(), out);
    }

    /// Appends a short `status` response that closes the connection, and ends the session.
    fn close_with(&mut self, status: Status, out: &mut Vec<u8>) {
        self.file = None;
        let mut response = Response {
            out,
            head_only: false,
            persistence: Persistence::Close,
            sent: None,
        };
        response.send_status(status, &[]);
        self.state = State::Closed;
    }

    /// The client took too long: answer 408 if a request was under way and end the session.
    /// Returns whether a response was written. `partial_input` says whether bytes of a head
    /// not yet complete are buffered.
    pub fn time_out(&mut self, out: &mut Vec<u8>, partial_input: bool) -> bool {
        let under_way = partial_input || !matches!(self.state, State::Head | State::Closed);
        if under_way {
            self.fail(HttpError::Timeout, out);
        } else {
            self.state = State::Closed;
        }
        under_way
    }

    /// The file whose bytes must follow the output written so far, once its request is
    /// complete (`process` stops answering after such a response), with the offset in the
    /// output buffer where that response's head starts.
    pub fn take_file(&mut self) -> Option<(D, usize)> {
        match self.uncommitted_from {
            None => self.file.take().map(|file| (file, self.file_head)),
            Some(_) => None,
        }
    }

    /// The file of the last response could not be read: its head, from `head` on, is
    /// replaced by a 500 and the session ends, so that the responses before it still go out.
    pub fn fail_file(&mut self, out: &mut Vec<u8>, head: usize) {
        out.truncate(head);
        self.close_with(Status::INTERNAL_SERVER_ERROR, out);
    }

    /// Bytes at the start of `out` that form complete responses and may be written now.
    pub fn committed(&self, out: &[u8]) -> usize {
        self.uncommitted_from.unwrap_or(out.len())
    }

    /// Tells the session that the first `written` bytes of its output buffer were removed.
    pub fn output_drained(&mut self, written: usize) {
        if let Some(start) = self.uncommitted_from.as_mut() {
            *start -= written;
        }
        self.file_head = self.file_head.saturating_sub(written);
    }

    /// No more requests will be read: a response said `Connection: close` or an error ended
    /// the exchange.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Between requests (no head or body under way), the state in which idle timeouts apply.
    pub fn is_between_requests(&self) -> bool {
        matches!(self.state, State::Head)
    }

    /// Reading a body (body timeouts apply rather than the header timeout).
    pub fn is_reading_body(&self) -> bool {
        matches!(self.state, State::Body { .. } | State::Chunked(_))
    }
}

fn class_of(status: Status) -> usize {
    usize::from(status.0 / 100).min(5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Context;

    fn run(input: &[u8]) -> (String, Progress, bool) {
        let mut session = Session::new(Limits::default(), 0);
        let mut out = Vec::new();
        let progress = session.process(input, &mut out, &mut Context::default(), false);
        let text = String::from_utf8_lossy(&out[..session.committed(&out)]).into_owned();
        (text, progress, session.is_closed())
    }

    #[test]
    fn pipelined_requests_answered_in_order() {
        let input = b"GET /echo?name=a HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?name=b HTTP/1.1\r\nHost: x\r\n\r\n";
        let (text, progress, closed) = run(input);
        assert_eq!(progress.responses, 2);
        assert_eq!(progress.consumed, input.len());
        assert!(!closed);
        let a = text.find("Hi, a!").unwrap();
        let b = text.find("Hi, b!").unwrap();
        assert!(a < b);
    }

    #[test]
    fn body_is_consumed_before_next_request() {
        let input = b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nGET /xGET /echo?name=z HTTP/1.1\r\nHost: x\r\n\r\n";
        let (text, progress, _) = run(input);
        assert_eq!(progress.responses, 2);
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.ends_with("Hi, z!"));
    }

    /// Found by fuzzing: a blank line split between its CR and LF was taken for the start of
    /// a head, and the request after it was refused.
    #[test]
    fn blank_line_split_between_cr_and_lf_is_still_skipped() {
        let mut session = Session::new(Limits::default(), 0);
        let mut out = Vec::new();
        let mut context = Context::default();
        let first = session.process(b"\r", &mut out, &mut context, false);
        assert_eq!(first.consumed, 0);
        let input = b"\r\n\r\nGET /echo?name=a HTTP/1.1\r\nHost: h\r\n\r\n";
        let progress = session.process(input, &mut out, &mut context, false);
        assert_eq!(progress.consumed, input.len());
        assert!(String::from_utf8(out).unwrap().ends_with("Hi, a!"));
    }

    #[test]
    fn unreadable_file_response_becomes_a_500_after_the_earlier_ones() {
        let mut session: Session<()> = Session::new(Limits::default(), 0);
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
        let head = out.len();
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n");
        session.fail_file(&mut out, head);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 500 "));
        assert!(text.contains("Connection: close\r\n"));
        assert!(session.is_closed());
    }

    #[test]
    fn response_waits_for_its_body() {
        let mut session = Session::new(Limits::default(), 0);
        let mut out = Vec::new();
        let head = b"POST /echo?name=q HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let progress = session.process(head, &mut out, &mut Context::default(), false);
        assert_eq!(progress.responses, 0);
        assert_eq!(session.committed(&out), 0);
        let progress = session.process(b"zz\r\n", &mut out, &mut Context::default(), false);
        assert_eq!(progress.errors, 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(!text.contains("Hi, q!"));
    }
}
