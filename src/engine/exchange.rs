//! The exchange: received bytes through the connection's session, which asks the
//! application (through [`Exchange`], the engine's side of `http::session::Service`) to
//! answer each complete request, and the responses into the connection's output buffer.
//!
//! Here too the engine keeps its own books on each answer: the access log line (written
//! when the response is made, or, for an async handler's, when its deferred response is), the
//! metrics, the error line for a request refused for a protocol error, and the memory
//! bodies being gathered hold.

use std::fmt;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::background::DeferredLog;
use super::conn::{Conn, Deferring, Ending, NEVER};
use super::connections::Connections;
use super::turn::Turn;
use super::{Application, Deferred, DeferredAnswer, Peer};
use crate::access_log::{Entry, LogBuffer};
use crate::http::request::RawRequest;
use crate::http::response::ResponseWriter;
use crate::http::session::{Deferral, Service, OUTPUT_HIGH_WATER};
use crate::http::status::Status;
use crate::support::stderr::error_line;

/// The session's service while one connection's bytes are processed: the application,
/// who is at the other end, and the core's access log.
pub(crate) struct Exchange<'a, A> {
    pub(crate) app: &'a mut A,
    pub(crate) peer: Peer<'a>,
    pub(crate) log: Option<&'a mut LogBuffer>,
    /// When the bytes being answered were reaped (for the log's durations).
    pub(crate) read_at: Instant,
}

impl<A: Application> Service for Exchange<'_, A> {
    type Deferred = DeferredAnswer;

    fn wants_body(&mut self, request: &RawRequest<'_>) -> bool {
        self.app.wants_body(request)
    }

    fn queues(&mut self, request: &RawRequest<'_>) -> bool {
        self.app.queues(&self.peer, request)
    }

    fn streams_body(&mut self, request: &RawRequest<'_>) -> bool {
        self.app.streams_body(&self.peer, request)
    }

    fn call(
        &mut self,
        request: &RawRequest<'_>,
        response: &mut ResponseWriter,
    ) -> Option<DeferredAnswer> {
        let deferred = self.app.answer(&self.peer, request, response);
        let (peer, read_at) = (self.peer, self.read_at);
        let log = match self.log.as_deref_mut() {
            Some(log) => log_answer(log, peer, read_at, request, response, deferred.as_ref()),
            None => None,
        };
        deferred.map(|what| DeferredAnswer { what, log })
    }
}

/// Logs the answer to `request`, or, for an async handler's, keeps what the line will say.
#[inline(never)]
fn log_answer(
    log: &mut LogBuffer,
    peer: Peer<'_>,
    read_at: Instant,
    request: &RawRequest<'_>,
    response: &ResponseWriter,
    deferred: Option<&Deferred>,
) -> Option<Box<DeferredLog>> {
    let referer = request.header(b"referer");
    let user_agent = request.header(b"user-agent");
    // Lines written when the response ends: an async handler's, a proxied request's, a
    // WebSocket's (when it closes), and a body coded as it is read (its length known only
    // at its end).
    let later = match deferred {
        Some(Deferred::Task(_) | Deferred::Proxy(_) | Deferred::Socket(_)) => Some(None),
        Some(Deferred::File(body)) if body.coder.is_some() => {
            Some(response.coded().map(|coded| coded.coding))
        }
        _ => None,
    };
    if let Some(coding) = later {
        return Some(Box::new(DeferredLog {
            request: request.line().to_vec(),
            referer: referer.map(<[u8]>::to_vec),
            user_agent: user_agent.map(<[u8]>::to_vec),
            client: peer.client,
            tls: tls_of(&peer),
            read_at,
            coding,
        }));
    }
    let file = match deferred {
        Some(Deferred::File(body)) => body.len,
        _ => 0,
    };
    log.record(&Entry {
        client: peer.client,
        request: request.line(),
        status: response.sent().map_or(500, |s| s.0),
        bytes: response.written() as u64 + file,
        referer,
        user_agent,
        micros: read_at.elapsed().as_micros() as u64,
        tls: tls_of(&peer),
        upstream: None,
        websocket: None,
        coding: response.coded().map(|coded| coded.coding),
    });
    None
}

/// The TLS version and cipher suite the access log names.
fn tls_of(peer: &Peer<'_>) -> Option<(&'static str, &'static str)> {
    peer.tls.map(|tls| (tls.version, tls.cipher_suite))
}

/// A client's address in an error line, or `-`.
struct Client(Option<SocketAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{}", addr.ip()),
            None => f.write_str("-"),
        }
    }
}

impl<A: Application> Connections<A> {
    /// Answers what is buffered: `fresh` bytes from a receive buffer, after any input the
    /// connection kept. Stops when a request is incomplete, the output is at its high-water
    /// mark between requests, the connection waits for a file or a handler, or the session
    /// has ended. Unprocessed fresh bytes are copied into the connection's input buffer.
    pub(super) fn pump(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, mut fresh: &[u8]) {
        if conn.tunnels() {
            // No HTTP any more: the bytes are the upstream server's.
            return self.tunnel_up(turn, conn, fresh);
        }
        if conn.sockets() {
            // No HTTP any more: WebSocket frames.
            return self.socket_input(turn, conn, fresh);
        }
        if conn.input.pending() > 0 && !fresh.is_empty() {
            conn.input.buf.extend_from_slice(fresh);
            fresh = &[];
        }
        loop {
            // The high-water mark applies between requests only, as in the session: a body
            // must be read to its end even when the response waiting for it is large, or
            // that response could never be committed and sent.
            let full = conn.out.len() >= OUTPUT_HIGH_WATER && conn.session.is_between_requests();
            // A relay under way lets the session answer pipelined requests it can queue.
            let waiting = match &conn.deferring {
                Deferring::Nothing => false,
                // Its streamed body is read as the link takes it.
                Deferring::Proxy(_) if conn.session.is_streaming() => !Self::body_has_room(conn),
                Deferring::Proxy(relay) => !relay.takes_more(),
                _ => true,
            };
            if waiting || conn.session.is_closed() || full {
                break;
            }
            let from_fresh = conn.input.pending() == 0;
            let input = if from_fresh {
                fresh
            } else {
                conn.input.bytes()
            };
            if input.is_empty() {
                break;
            }
            self.buffers.writes.lend(&mut conn.out);
            let draining = !turn.serving();
            let client = conn.client.as_deref().copied();
            let tls = conn.transport.info();
            let read_at = turn.now.clock.instant(conn.read_at);
            let mut exchange = Exchange {
                app: &mut self.app,
                peer: Peer {
                    fd: conn.fd,
                    client,
                    tls,
                },
                log: turn.reporting.log.as_mut(),
                read_at,
            };
            let session = &mut conn.session;
            let held = session.held_bytes();
            let out = &mut conn.out;
            let limits = &self.settings.limits;
            let answer = catch_unwind(AssertUnwindSafe(|| {
                session.process(input, out, &mut exchange, limits, draining)
            }));
            // The core's total follows what the session holds for a body being gathered.
            let over = self.bodies.update(held, conn.session.held_bytes());
            let Ok(progress) = answer else {
                // The session itself panicked (handlers' panics are caught closer to them):
                // this connection ends, the core and its other connections go on.
                conn.input.clear();
                return conn.cut();
            };
            if from_fresh {
                fresh = &fresh[progress.consumed..];
            } else {
                conn.input.consume(progress.consumed);
            }
            if over {
                self.refuse_body(turn, conn);
            }
            if progress.responses > 0 {
                conn.head_started = NEVER;
                let metrics = &turn.reporting.metrics;
                metrics.record_batch(&progress.by_class, progress.errors, read_at);
                if progress.failures > 0 || progress.cache_hits > 0 || progress.coded > 0 {
                    let mut counters = metrics.counters.borrow_mut();
                    counters.handler_panics += u64::from(progress.failures);
                    counters.file_cache_hits += u64::from(progress.cache_hits);
                    counters.coded_responses += u64::from(progress.coded);
                    counters.coding_bytes_saved += progress.coding_saved;
                }
            }
            if let Some(status) = progress.error {
                self.refused(turn, conn, status);
                // A streamed body turned out malformed: its error response took the place
                // of the relay's, whose upstream connection (half a request on it) goes.
                if let Deferring::Proxy(_) = conn.deferring {
                    self.relay_abandoned(turn, conn);
                    conn.deferring = Deferring::Nothing;
                }
            }
            if let Some(Deferral { what, head, queued }) = progress.deferred {
                match what.what {
                    Deferred::File(body) => self.start_transfer(conn, body, head, what.log),
                    Deferred::Task(task) => {
                        conn.head_started = NEVER;
                        self.spawn_task(turn, conn, task, what.log);
                    }
                    Deferred::Socket(start) => {
                        conn.head_started = NEVER;
                        self.open_socket(turn, conn, start, what.log);
                    }
                    Deferred::Proxy(call) => {
                        conn.head_started = NEVER;
                        turn.reporting
                            .metrics
                            .counters
                            .borrow_mut()
                            .upstream_requests += 1;
                        match queued {
                            // Behind the relay under way (only proxy calls queue).
                            Some(framing) => self.queue_proxy(turn, conn, call, what.log, framing),
                            None => self.start_proxy(turn, conn, call, what.log),
                        }
                    }
                }
            }
            if conn.session.is_streaming() || conn.relay_body_open() {
                self.stream_body(turn, conn);
            }
            if progress.consumed == 0 {
                break;
            }
        }
        if !fresh.is_empty() {
            self.buffers.reads.lend(&mut conn.input.buf);
            conn.input.buf.extend_from_slice(fresh);
        }
        if conn.sockets() {
            // Frames the client sent right behind its handshake.
            return self.socket_input(turn, conn, &[]);
        }
        if conn.input.pending() == 0 {
            self.buffers.reads.give(std::mem::take(&mut conn.input.buf));
        }
        if conn.out.is_empty() {
            // Nothing to send: an idle connection, or one waiting for the rest of a request,
            // holds no output buffer.
            self.buffers.writes.give(std::mem::take(&mut conn.out));
        }
        // The head timeout starts once a head's first bytes could be parsed: not while
        // processing waits for a file, a handler or the output to drain.
        let blocked = !matches!(conn.deferring, Deferring::Nothing)
            || (conn.out.len() >= OUTPUT_HIGH_WATER && conn.session.is_between_requests());
        if conn.input.pending() > 0
            && conn.head_started == NEVER
            && !conn.session.is_reading_body()
            && !blocked
        {
            conn.head_started = turn.now.ms;
        }
    }

    /// A request was refused for a protocol error (its response is written): the access
    /// log and the error line say so.
    #[inline(never)]
    fn refused(&mut self, turn: &mut Turn<'_>, conn: &Conn, status: Status) {
        let client = conn.client.as_deref().copied();
        if let Some(log) = turn.reporting.log.as_mut() {
            log.record(&Entry {
                client,
                request: b"-",
                status: status.0,
                bytes: 0,
                referer: None,
                user_agent: None,
                micros: turn.now.clock.instant(conn.read_at).elapsed().as_micros() as u64,
                tls: None,
                upstream: None,
                websocket: None,
                coding: None,
            });
        }
        let core = turn.reporting.links.cpu;
        error_line(Some(core), format_args!("{status} to {}", Client(client)));
    }

    /// A connection whose body took the core's total of gathered body bytes past
    /// `http.body_buffer_bytes_per_core` gets a 503 and closes.
    fn refuse_body(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let held = conn.session.held_bytes();
        let refused = conn
            .session
            .abandon_body(&mut conn.out, Status::SERVICE_UNAVAILABLE);
        if refused {
            let class = Status::SERVICE_UNAVAILABLE.class();
            turn.reporting.metrics.record_one(class, false, None);
            conn.ending = Ending::Linger;
            self.bodies.release(held);
        }
    }
}
