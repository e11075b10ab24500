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
//! always leave in request order; the one exception is a pipelined request the service
//! queues ([`Service::queues`]: one it will also answer with a whole deferred response, such
//! as a proxied `GET`), which is answered meanwhile, its deferred response due after the
//! earlier ones (at most [`MAX_DEFERRED`] due at once).

use super::chunked::ChunkedDecoder;
use super::error::HttpError;
use super::request::{parse_head, Framing, Limits, Method, RawRequest, RequestHead, Version};
use super::response::{Coded, Persistence, ResponseWriter, CONTINUE};
pub use super::service::{Deferral, DeferredFraming, Progress, Service};
use super::status::Status;

/// Output bytes past which `process` stops answering and lets the caller write, so that a
/// client pipelining thousands of requests cannot make one batch grow without bound.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// Deferred whole responses a session keeps waiting at once, the first included: how far
/// pipelined requests a service queues ([`Service::queues`]) may run ahead.
pub const MAX_DEFERRED: usize = 16;

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
    /// The head's bytes, then the body's (of a streamed body, its bytes not taken yet).
    bytes: Vec<u8>,
    /// The service wants the body; otherwise it is dropped as it comes.
    gather: bool,
    /// The request was answered at its head and its body goes on as it comes
    /// ([`Session::take_streamed`]); `after` is the state once it is through.
    streams: bool,
    after: State,
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

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// Requests answered.
    served: u32,
    /// How far the search for the head's end got (≤ `http.max_request_head_bytes`, ≤ 1 MiB).
    scanned: u32,
    /// The request being gathered, and the buffer kept for the next one.
    held: Option<Box<Held>>,
    /// A whole response the service deferred, to be written ([`Session::answer_deferred`]).
    deferred_framing: Option<DeferredFraming>,
    /// Deferred responses due after it, of requests the service queued (their framings are
    /// the caller's to keep: a connection's session stays 24 bytes).
    queued: u8,
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
            queued: 0,
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
            if progress.deferred.is_some() {
                break;
            }
            // A streamed body goes on while its request's answer is due.
            if self.deferred_framing.is_some()
                && !self.is_streaming()
                && !self.queues_next(&input[pos..], service, limits)
            {
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
                    if finished && self.is_streaming() {
                        // Its request was answered at its head.
                        self.state = self.held.as_ref().map_or(State::Head, |h| h.after);
                    } else if finished && self.state == State::Body {
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
                let request = RawRequest::whole(&head, bytes, &[]);
                self.answer(request, out, service, limits, draining, progress);
                return Ok((used, true));
            }
            Framing::Length(n) => Some(n),
            Framing::Chunked => None,
        };
        if let Some(n) = length.filter(|&n| n <= after_head.len() as u64) {
            // The whole body came with its head: it is answered where it lies.
            let body = &after_head[..n as usize];
            let request = RawRequest::whole(&head, bytes, body);
            self.answer(request, out, service, limits, draining, progress);
            return Ok((used + n as usize, true));
        }
        if head.expect_continue && after_head.is_empty() {
            out.extend_from_slice(CONTINUE);
        }
        let mut request = RawRequest::whole(&head, bytes, &[]);
        // A body still to come may be streamed; one that is all here already (a chunked one
        // can be whole before its length is known) is gathered as before.
        let streams = !draining
            && service.streams_body(&request)
            && !(length.is_none() && ahead::chunked_within(after_head, limits));
        let gather = streams || service.wants_body(&request);
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
                streams,
                after: State::Head,
                body,
            })
        });
        held.head = head;
        held.gather = gather;
        held.streams = streams;
        held.body = body;
        held.bytes.clear();
        if !streams {
            held.bytes.extend_from_slice(bytes);
            self.state = State::Body;
            return Ok((used, false));
        }
        // Answered now, at its head: its body follows as it comes.
        request.streamed = true;
        self.answer(request, out, service, limits, draining, progress);
        let after = self.state;
        if let Some(held) = self.held.as_mut() {
            held.after = after;
        }
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
        let request = RawRequest::whole(&held.head, bytes, body);
        self.answer(request, out, service, limits, draining, progress);
        if held.bytes.capacity() <= HELD_KEEP_BYTES {
            held.bytes.clear();
            self.held = Some(held);
        }
    }

    /// Asks the service to answer one complete request (or one whose body it streams) and
    /// decides what follows it.
    #[inline(always)]
    fn answer<S: Service>(
        &mut self,
        request: RawRequest<'_>,
        out: &mut Vec<u8>,
        service: &mut S,
        limits: &Limits,
        draining: bool,
        progress: &mut Progress<S::Deferred>,
    ) {
        let head = request.head;
        let max_requests = limits.max_requests;
        let mut closing = !head.keep_alive
            || draining
            || (max_requests != 0 && u64::from(self.served) + 1 >= max_requests);
        let persistence = match (closing, head.version) {
            (true, _) => Persistence::Close,
            (false, Version::Http10) => Persistence::KeepAlive,
            (false, Version::Http11) => Persistence::Default,
        };
        let head_only = head.method == Method::Head;
        let http10 = head.version == Version::Http10;
        // The writer holds the output buffer while the service answers (moved, not copied).
        let mut response = ResponseWriter::new(std::mem::take(out), head_only, http10, persistence);
        let mut queued = None;
        // Nothing is deferred before this: `process` answers nothing more once something is.
        let deferred = service.call(&request, &mut response);
        if response.sent().is_none() && deferred.is_none() {
            // A service must answer; one that did not gets its request a 500.
            response.fail();
        }
        // The service may have asked to close (or failed, which closes).
        closing |= response.persistence() == Persistence::Close;
        self.served = self.served.saturating_add(1);
        let head = response.start();
        if response.failed() {
            progress.failures += 1;
        }
        if response.is_from_cache() {
            progress.cache_hits += 1;
        }
        if let Some(coded) = response.coded() {
            progress.coded += 1;
            progress.coding_saved += coded.saved;
        }
        match response.sent() {
            None => {
                let framing = DeferredFraming {
                    head_only,
                    http10,
                    persistence: response.persistence(),
                };
                match self.deferred_framing {
                    None => self.deferred_framing = Some(framing),
                    Some(_) => {
                        self.queued += 1;
                        queued = Some(framing);
                    }
                }
            }
            Some(status) => {
                progress.responses += 1;
                progress.by_class[status.class()] += 1;
            }
        }
        progress.deferred = deferred.map(|what| Deferral { what, head, queued });
        *out = response.into_out();
        self.state = if closing { State::Closed } else { State::Head };
    }

    /// Writes the deferred response left by the last request ([`Service::call`]) with `write`
    /// (`Connection: close` if `draining`) once [`Session::process`] has handed it over with
    /// no head written; returns its status, whether the service failed to make it, and its
    /// body's coding.
    pub fn answer_deferred(
        &mut self,
        out: &mut Vec<u8>,
        draining: bool,
        write: impl FnOnce(&mut ResponseWriter),
    ) -> (Status, bool, Option<Coded>) {
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
            // The responses queued behind this one will never be written.
            self.state = State::Closed;
            self.queued = 0;
        }
        let answered = (
            response.sent().unwrap_or(Status::INTERNAL_SERVER_ERROR),
            response.failed(),
            response.coded(),
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
        self.queued = 0;
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
        self.queued = 0;
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

mod ahead;
#[cfg(test)]
mod tests;
