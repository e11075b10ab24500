//! One connection's HTTP/1.1 exchange as a state machine without I/O: bytes in, responses out.
//!
//! [`Session::process`] takes whatever input is buffered, answers every complete request in
//! it (in order, appending the responses to one output buffer) and says how many input bytes
//! it used and whether the connection must close. The caller (the engine) owns the socket,
//! buffers and timers; this file owns framing, persistence and the order of responses, which
//! is what makes it testable and fuzzable without sockets.
//!
//! A request is answered once it is complete: its head and its whole body. A body that
//! arrived with its head is handed over where it lies; one that arrives over several reads
//! (or chunked) is gathered, with a copy of its head, in a buffer the session keeps for the
//! next such request. A body the service does not want (no route takes it) is consumed and
//! dropped instead.
//!
//! The session knows nothing of routes: it asks a [`Service`] to answer each request, so the
//! same session runs under the server, a test, a fuzz target or a bench with any service. A
//! service may leave part of an answer for later (a [`Service::Deferred`]): a file's bytes
//! behind a head already written, or a whole response that an async handler is still
//! making. The session then stops answering until the caller has dealt with it, so responses
//! always leave in request order.

use super::chunked::ChunkedDecoder;
use super::error::HttpError;
use super::request::{parse_head, Framing, Limits, Method, RawRequest, RequestHead, Version};
use super::response::{Persistence, ResponseWriter, CONTINUE};
pub use super::service::{Deferral, Progress, Service};
use super::status::Status;

/// Output bytes past which `process` stops answering and lets the caller write, so that a
/// client pipelining thousands of requests cannot make one batch grow without bound.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// A gathering buffer that grew past this is freed after its request rather than kept for
/// the connection's next one (an idle connection should hold next to nothing).
const HELD_KEEP_BYTES: usize = 4 * 1024;

/// Where the exchange stands. A byte: how far a body has come is kept with the request
/// being gathered ([`Held`]), not in every connection's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading the body of the request in [`Session::held`].
    Body,
    /// A response said `Connection: close`; nothing more is read.
    Closed,
}

/// A request whose body is arriving over several reads: its head, copied, then the body.
#[derive(Debug)]
struct Held {
    head: RequestHead,
    /// The head's bytes, then the body's.
    bytes: Vec<u8>,
    /// The service wants the body; otherwise it is dropped as it comes.
    gather: bool,
    /// How far its body has come.
    body: BodyLeft,
}

/// What is left of a body being read.
#[derive(Clone, Copy, Debug)]
enum BodyLeft {
    /// Of a Content-Length body, this many bytes.
    Length(u64),
    /// A chunked body, to its last chunk and trailer.
    Chunked(ChunkedDecoder),
}

impl Held {
    /// Takes the body's bytes at the start of `input` (gathering them if wanted). Returns the
    /// bytes used and whether the body is complete.
    fn read_body(&mut self, input: &[u8]) -> Result<(usize, bool), HttpError> {
        let sink = self.gather.then_some(&mut self.bytes);
        match &mut self.body {
            BodyLeft::Length(remaining) => {
                let take = (*remaining).min(input.len() as u64);
                *remaining -= take;
                if let Some(bytes) = sink {
                    bytes.extend_from_slice(&input[..take as usize]);
                }
                Ok((take as usize, *remaining == 0))
            }
            BodyLeft::Chunked(decoder) => decoder
                .feed(input, sink)
                .map(|used| (used, decoder.is_done())),
        }
    }
}

/// How a deferred response is to be written, as decided when its request was answered.
#[derive(Clone, Copy, Debug)]
struct DeferredFraming {
    head_only: bool,
    http10: bool,
    persistence: Persistence,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// Requests answered.
    served: u64,
    /// How far the search for the head's end got (≤ `http.max_request_head_bytes`, ≤ 1 MiB).
    scanned: u32,
    /// The request being gathered, and the buffer kept for the next one.
    held: Option<Box<Held>>,
    /// A whole response the service deferred, to be written ([`Session::answer_deferred`]).
    deferred_framing: Option<DeferredFraming>,
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

impl Session {
    /// A new connection's session.
    pub fn new() -> Session {
        Session {
            state: State::Head,
            served: 0,
            scanned: 0,
            held: None,
            deferred_framing: None,
        }
    }

    /// Answers the complete requests at the start of `input`, appending to `out`, under
    /// `limits` (the same for every call: they are the core's, not kept in each session).
    ///
    /// Stops when input runs out mid-request, when the connection must close, when the
    /// service left something to finish (returned in [`Progress::deferred`]), or when `out`
    /// passes [`OUTPUT_HIGH_WATER`] (call again after writing). With `draining` set, the next
    /// response says `Connection: close` and ends the session.
    pub fn process<S: Service>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        service: &mut S,
        limits: &Limits,
        draining: bool,
    ) -> Progress<S::Deferred> {
        let mut progress = Progress::default();
        let mut pos = 0;
        loop {
            if progress.deferred.is_some() || self.deferred_framing.is_some() {
                break;
            }
            // The high-water mark applies between requests only: a body is read to its end
            // once started, so that its request can be answered.
            if self.state == State::Head && out.len() >= OUTPUT_HIGH_WATER {
                break;
            }
            let rest = &input[pos..];
            let step = match self.state {
                State::Closed => break,
                State::Head => self.read_head(rest, out, service, limits, draining, &mut progress),
                State::Body => {
                    let held = self.held.as_mut().expect("a request being gathered");
                    held.read_body(rest)
                }
            };
            match step {
                Ok((used, finished)) => {
                    pos += used;
                    if finished && self.state == State::Body {
                        self.answer_held(out, service, limits, draining, &mut progress);
                    } else if !finished && (used == 0 || pos == input.len()) {
                        break;
                    }
                }
                Err(error) => {
                    self.fail(error, out);
                    progress.error = Some(error.status());
                    progress.responses += 1;
                    progress.by_class[error.status().class()] += 1;
                    progress.errors += 1;
                    break;
                }
            }
        }
        progress.consumed = pos;
        progress
    }

    /// Parses a head at the start of `input`; answers its request when it is complete.
    /// Returns the bytes used and whether a request was answered.
    fn read_head<S: Service>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        service: &mut S,
        limits: &Limits,
        draining: bool,
        progress: &mut Progress<S::Deferred>,
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
        let mut scanned = self.scanned as usize;
        let parsed = parse_head(&input[skip..], &mut scanned, limits);
        self.scanned = scanned as u32;
        let Some(head) = parsed? else {
            return Ok((skip, false));
        };
        let bytes = &input[skip..skip + head.len];
        let after_head = &input[skip + head.len..];
        let used = skip + head.len;
        let length = match head.framing {
            Framing::Empty => {
                self.answer(&head, bytes, &[], out, service, limits, draining, progress);
                return Ok((used, true));
            }
            Framing::Length(n) => Some(n),
            Framing::Chunked => None,
        };
        if let Some(n) = length.filter(|&n| n <= after_head.len() as u64) {
            // The whole body came with its head: it is answered where it lies.
            let body = &after_head[..n as usize];
            self.answer(&head, bytes, body, out, service, limits, draining, progress);
            return Ok((used + n as usize, true));
        }
        if head.expect_continue && after_head.is_empty() {
            out.extend_from_slice(CONTINUE);
        }
        let gather = service.wants_body(&RawRequest {
            head: &head,
            bytes,
            body: &[],
        });
        let body = match length {
            Some(n) => BodyLeft::Length(n),
            None => BodyLeft::Chunked(ChunkedDecoder::new(
                limits.max_body_bytes,
                limits.max_head_bytes,
            )),
        };
        let held = self.held.get_or_insert_with(|| {
            Box::new(Held {
                head,
                bytes: Vec::new(),
                gather,
                body,
            })
        });
        held.head = head;
        held.gather = gather;
        held.body = body;
        held.bytes.clear();
        held.bytes.extend_from_slice(bytes);
        self.state = State::Body;
        Ok((used, false))
    }

    /// Answers the request whose body was gathered.
    fn answer_held<S: Service>(
        &mut self,
        out: &mut Vec<u8>,
        service: &mut S,
        limits: &Limits,
        draining: bool,
        progress: &mut Progress<S::Deferred>,
    ) {
        let mut held = self.held.take().expect("a request being gathered");
        let (bytes, body) = held.bytes.split_at(held.head.len);
        self.answer(
            &held.head, bytes, body, out, service, limits, draining, progress,
        );
        if held.bytes.capacity() <= HELD_KEEP_BYTES {
            held.bytes.clear();
            self.held = Some(held);
        }
    }

    /// Asks the service to answer one complete request and decides what follows it.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn answer<S: Service>(
        &mut self,
        head: &RequestHead,
        bytes: &[u8],
        body: &[u8],
        out: &mut Vec<u8>,
        service: &mut S,
        limits: &Limits,
        draining: bool,
        progress: &mut Progress<S::Deferred>,
    ) {
        let max_requests = limits.max_requests;
        let mut closing =
            !head.keep_alive || draining || (max_requests != 0 && self.served + 1 >= max_requests);
        let persistence = match (closing, head.version) {
            (true, _) => Persistence::Close,
            (false, Version::Http10) => Persistence::KeepAlive,
            (false, Version::Http11) => Persistence::Default,
        };
        let head_only = head.method == Method::Head;
        let http10 = head.version == Version::Http10;
        // The writer holds the output buffer while the service answers (moved, not copied).
        let mut response = ResponseWriter::new(std::mem::take(out), head_only, http10, persistence);
        let request = RawRequest { head, bytes, body };
        // Nothing is deferred before this: `process` answers nothing more once something is.
        let deferred = service.call(&request, &mut response);
        if response.sent().is_none() && deferred.is_none() {
            // A service must answer; one that did not gets its request a 500.
            response.fail();
        }
        // The service may have asked to close (or failed, which closes).
        closing |= response.persistence() == Persistence::Close;
        self.served += 1;
        let head = response.start();
        if response.failed() {
            progress.failures += 1;
        }
        if response.is_from_cache() {
            progress.cache_hits += 1;
        }
        match response.sent() {
            None => {
                self.deferred_framing = Some(DeferredFraming {
                    head_only,
                    http10,
                    persistence: response.persistence(),
                })
            }
            Some(status) => {
                progress.responses += 1;
                progress.by_class[status.class()] += 1;
            }
        }
        progress.deferred = deferred.map(|what| Deferral { what, head });
        *out = response.into_out();
        self.state = if closing { State::Closed } else { State::Head };
    }

    /// Writes the deferred response left by the last request ([`Service::call`]) with `write`
    /// (`Connection: close` if `draining`) once [`Session::process`] has handed it over with
    /// no head written; returns its status and whether the service failed to make it.
    pub fn answer_deferred(
        &mut self,
        out: &mut Vec<u8>,
        draining: bool,
        write: impl FnOnce(&mut ResponseWriter),
    ) -> (Status, bool) {
        let framing = self
            .deferred_framing
            .take()
            .expect("a deferred response is due");
        // A drain that began while the response was being made ends the connection too.
        let persistence = match draining {
            true => Persistence::Close,
            false => framing.persistence,
        };
        let mut response = ResponseWriter::new(
            std::mem::take(out),
            framing.head_only,
            framing.http10,
            persistence,
        );
        write(&mut response);
        if response.sent().is_none() {
            response.fail();
        }
        if response.persistence() == Persistence::Close {
            self.state = State::Closed;
        }
        let answered = (
            response.sent().unwrap_or(Status::INTERNAL_SERVER_ERROR),
            response.failed(),
        );
        *out = response.into_out();
        answered
    }

    /// Writes an error response that ends the session.
    fn fail(&mut self, error: HttpError, out: &mut Vec<u8>) {
        self.close_with(error.status(), out);
    }

    /// Appends a short `status` response that closes the connection, and ends the session.
    fn close_with(&mut self, status: Status, out: &mut Vec<u8>) {
        self.deferred_framing = None;
        if let Some(held) = self.held.as_mut() {
            held.bytes.clear();
        }
        let mut response =
            ResponseWriter::new(std::mem::take(out), false, false, Persistence::Close);
        response.send_status(status, &[]);
        *out = response.into_out();
        self.state = State::Closed;
    }

    /// The client took too long: answer 408 if a request was under way and end the session.
    /// Returns whether a response was written. `partial_input` says whether bytes of a head
    /// not yet complete are buffered.
    pub fn time_out(&mut self, out: &mut Vec<u8>, partial_input: bool) -> bool {
        let under_way = partial_input || self.state == State::Body;
        if under_way {
            self.fail(HttpError::Timeout, out);
        } else {
            self.state = State::Closed;
        }
        under_way
    }

    /// The file of the last response could not be read: its head, from `head` on, is
    /// replaced by a 500 and the session ends, so that the responses before it still go out.
    pub fn fail_file(&mut self, out: &mut Vec<u8>, head: usize) {
        out.truncate(head);
        self.close_with(Status::INTERNAL_SERVER_ERROR, out);
    }

    /// Gives up the body being gathered: a `status` response that closes the connection
    /// takes the request's place and the gathered bytes are freed. Returns whether a body
    /// was being gathered.
    pub fn abandon_body(&mut self, out: &mut Vec<u8>, status: Status) -> bool {
        if !self.is_reading_body() {
            return false;
        }
        self.close_with(status, out);
        self.held = None;
        true
    }

    /// Ends the session: nothing more is read or answered (a response whose body cannot be
    /// finished goes out cut short, and nothing after it).
    pub fn abort(&mut self) {
        self.deferred_framing = None;
        self.state = State::Closed;
    }

    /// Bytes this session holds for a request being gathered (and keeps for the next).
    pub fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |held| held.bytes.capacity())
    }

    /// No more requests will be read: a response said `Connection: close` or an error ended
    /// the exchange.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Between requests (no head or body under way), the state in which idle timeouts apply.
    pub fn is_between_requests(&self) -> bool {
        self.state == State::Head
    }

    /// Reading a body (body timeouts apply rather than the header timeout).
    pub fn is_reading_body(&self) -> bool {
        self.state == State::Body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::TEXT_PLAIN;

    /// A service for the session alone: `GET /echo?name=X` answers `Hi, X!`, `POST /upper`
    /// its body in upper case, anything else 404 (and its body is not gathered).
    struct Stub;

    impl Service for Stub {
        type Deferred = ();

        fn wants_body(&mut self, request: &RawRequest<'_>) -> bool {
            request.path() == b"/upper"
        }

        fn call(&mut self, request: &RawRequest<'_>, response: &mut ResponseWriter) -> Option<()> {
            match (request.path(), request.query()) {
                (b"/echo", Some(query)) => {
                    let name = query.strip_prefix(b"name=").unwrap_or_default();
                    response.send(Status::OK, Some(TEXT_PLAIN), &[], &[b"Hi, ", name, b"!"]);
                }
                (b"/upper", _) => {
                    let body = request.body.to_ascii_uppercase();
                    response.send(Status::OK, None, &[], &[&body]);
                }
                _ => response.send_status(Status::NOT_FOUND, &[]),
            }
            None
        }
    }

    fn service() -> Stub {
        Stub
    }

    fn run(input: &[u8]) -> (String, Progress<()>, bool) {
        let mut session = Session::new();
        let mut out = Vec::new();
        let progress = session.process(input, &mut out, &mut service(), &Limits::default(), false);
        let text = String::from_utf8_lossy(&out).into_owned();
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

    #[test]
    fn a_body_split_over_reads_is_gathered_whole() {
        let mut session = Session::new();
        let mut service = service();
        let mut out = Vec::new();
        let parts: [&[u8]; 4] = [
            b"POST /upper HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            b"c\r\n2\r\nde\r\n0\r\n",
            b"\r\nPOST /upper HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfg",
            b"hij",
        ];
        for part in parts {
            let progress = session.process(part, &mut out, &mut service, &Limits::default(), false);
            assert_eq!(progress.consumed, part.len());
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 5\r\n\r\nABCDE"), "{text}");
        assert!(text.ends_with("Content-Length: 5\r\n\r\nFGHIJ"), "{text}");
    }

    /// Found by fuzzing: a blank line split between its CR and LF was taken for the start of
    /// a head, and the request after it was refused.
    #[test]
    fn blank_line_split_between_cr_and_lf_is_still_skipped() {
        let mut session = Session::new();
        let mut out = Vec::new();
        let mut service = service();
        let first = session.process(b"\r", &mut out, &mut service, &Limits::default(), false);
        assert_eq!(first.consumed, 0);
        let input = b"\r\n\r\nGET /echo?name=a HTTP/1.1\r\nHost: h\r\n\r\n";
        let progress = session.process(input, &mut out, &mut service, &Limits::default(), false);
        assert_eq!(progress.consumed, input.len());
        assert!(String::from_utf8(out).unwrap().ends_with("Hi, a!"));
    }

    #[test]
    fn unreadable_file_response_becomes_a_500_after_the_earlier_ones() {
        let mut session = Session::new();
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
    fn a_malformed_body_is_answered_400_and_its_route_never_runs() {
        let mut session = Session::new();
        let mut out = Vec::new();
        let head = b"POST /upper HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let progress = session.process(head, &mut out, &mut service(), &Limits::default(), false);
        assert_eq!(progress.responses, 0);
        assert!(out.is_empty());
        let progress = session.process(
            b"zz\r\n",
            &mut out,
            &mut service(),
            &Limits::default(),
            false,
        );
        assert_eq!(progress.errors, 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1);
    }
}
