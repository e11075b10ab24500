//! A request a proxy route answers, on its way to an upstream server and its response on
//! its way back to the client.
//!
//! The application hands the request over whole, as it is to be forwarded (`ProxyCall`,
//! written by `http::forward`); the client connection then holds a [`Relay`] and answers
//! nothing more until the response is through (its later requests wait, so responses leave
//! in order). The relay takes an idle connection from its server's pool, or opens one with
//! a connect on the ring, and sends the request. The response head is read as
//! `http::upstream_head` reads it; its end-to-end fields go to the client behind percore's
//! own status line and framing (the length the server gave, or chunked when it gave none).
//! The body follows as it arrives: a client that does not read stops percore reading the
//! server (the link's receive is cancelled past the output's high-water mark and armed
//! again once the client's send completes), so a large response passes in bounded memory.
//!
//! Failures: a connect refused or a connection reset before any response byte sends the
//! request again, once, when that cannot make it happen twice (nothing of it was sent, the
//! connection was a pooled one the server had closed while idle, or the method is
//! idempotent); otherwise the client gets a 502. No response within the timeouts: 504. A
//! response that does not parse, or frames itself ambiguously: 502, and its connection is
//! closed. A response cut short after its head went out closes the client connection
//! without the chunked body's end, so the client sees it truncated.

use std::collections::VecDeque;
use std::time::Instant;

use super::super::background::DeferredLog;
use super::super::token::Key;
use super::pool::GroupSettings;
use crate::access_log::{LogBuffer, UpstreamEntry};
use crate::config::ServerAddr;
use crate::http::chunked::ChunkedDecoder;
use crate::http::session::{DeferredFraming, MAX_DEFERRED};
use crate::http::upstream_head::BodyFraming;

/// Longest response head accepted from an upstream server.
pub(super) const MAX_UPSTREAM_HEAD: usize = 64 * 1024;

/// A request for an upstream, as the application hands it to the engine.
pub(crate) struct ProxyCall {
    /// Which `[[upstream]]` (its place in the configuration).
    pub(crate) upstream: usize,
    /// The request as it is forwarded: head and body.
    pub(crate) request: Vec<u8>,
    /// It is a HEAD request (its response has no body).
    pub(crate) head_request: bool,
    /// Sending it twice would do no harm (GET, HEAD, OPTIONS, PUT, DELETE).
    pub(crate) idempotent: bool,
    /// It asks to switch protocols: a `101` from the server makes the exchange a tunnel.
    pub(crate) upgrade: bool,
    /// How its body goes: whole in `request`, or after it as it arrives.
    pub(crate) body: ForwardBody,
}

/// How a forwarded request's body goes upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ForwardBody {
    /// Whole, in the request's bytes.
    Whole,
    /// As it arrives, behind the client's `Content-Length`.
    Length,
    /// As it arrives, chunked.
    Chunked,
}

/// Where a relay stands.
#[derive(Debug)]
pub(super) enum Stage {
    /// Its link is connecting.
    Connect,
    /// Its request is sent (or being sent); the response head is awaited.
    Head,
    /// The response head went to the client; its body follows.
    Body(Body),
    /// The server switched protocols (`101`): bytes pass unparsed both ways until either
    /// side closes (`tunnel`).
    Tunnel(Tunnel),
}

/// Where a tunnel stands.
#[derive(Debug, Default)]
pub(super) struct Tunnel {
    /// The client's side is closed and all it sent is out: the server's side is shut for
    /// writing.
    pub(super) shut_up: bool,
}

/// A response body on its way to the client.
#[derive(Debug)]
pub(super) struct Body {
    pub(super) framing: BodyFraming,
    /// Of a `Length` body, the bytes still to come.
    pub(super) left: u64,
    /// Of a `Chunked` body, where its coding stands.
    pub(super) chunks: ChunkedDecoder,
    /// The client gets it chunked (the server gave no length, the client speaks 1.1).
    pub(super) chunked_out: bool,
    /// The client wants no body (a HEAD request).
    pub(super) dropped: bool,
    /// The server's connection may carry another request once this body is through.
    pub(super) reusable: bool,
    /// Of a `Chunked` body relayed chunked, its trailer section's field lines so far.
    pub(super) trailer: Vec<u8>,
}

/// A client connection's request at an upstream.
pub(in crate::engine) struct Relay {
    pub(super) call: ProxyCall,
    /// The link carrying it.
    pub(super) link: Option<Key>,
    pub(super) server: usize,
    pub(super) stage: Stage,
    /// Sends of the request so far.
    pub(super) tries: u8,
    /// Its link came from the pool.
    pub(super) reused: bool,
    /// The request is all sent (the read timeout runs, not the send timeout).
    pub(super) sent: bool,
    /// When the current wait began (ms since start): the connect, the send, the last read.
    pub(super) since: u64,
    /// When the request's bytes were reaped (for the latency).
    pub(super) read_at: Instant,
    /// When the request was last handed to a link (for the upstream's latency).
    pub(super) sent_at: Instant,
    /// What the access log will say of it, written when the response is through (or cut).
    pub(super) log: Option<Box<DeferredLog>>,
    /// The status the client got, once its head is written.
    pub(super) answered: Option<crate::http::status::Status>,
    /// The status the server answered, once its head came.
    pub(super) upstream_status: Option<u16>,
    /// When the request first went to a server (for the access log's upstream time).
    pub(super) first_sent: Option<Instant>,
    /// Bytes of the response written for the client so far.
    pub(super) bytes: u64,
    /// The client's pipelined requests behind this one, in order (`pipeline`).
    pub(super) queue: VecDeque<Queued>,
    /// Of a body streamed upstream (`request_body`): bytes framed and not sent yet, and
    /// whether more are to come.
    pub(super) body_out: Vec<u8>,
    pub(super) body_open: bool,
}

/// A pipelined request waiting behind the relay's current one.
pub(super) struct Queued {
    pub(super) call: ProxyCall,
    pub(super) log: Option<Box<DeferredLog>>,
    /// When its bytes were reaped.
    pub(super) read_at: Instant,
    /// How its deferred response is to be written (`Session::take_turn`).
    pub(super) framing: DeferredFraming,
    /// It went out on the relay's link, behind the requests before it.
    pub(super) sent: bool,
}

impl Relay {
    /// Writes its access log line (into `log`, the core's), with what the client got and
    /// what the server at `addr` (the last that had the request) did.
    pub(in crate::engine) fn log_line(&self, log: Option<&mut LogBuffer>, addr: &ServerAddr) {
        if let (Some(line), Some(log), Some(status)) = (&self.log, log, self.answered) {
            let upstream = UpstreamEntry {
                addr,
                status: self.upstream_status,
                micros: self
                    .first_sent
                    .map_or(0, |at| at.elapsed().as_micros() as u64),
            };
            line.record(log, status, self.bytes, Some(upstream));
        }
    }

    /// When its current wait ends, in ms since start.
    pub(in crate::engine) fn deadline(&self, settings: &GroupSettings) -> u64 {
        self.since
            + match self.stage {
                Stage::Connect => settings.connect_timeout_ms,
                Stage::Head if !self.sent => settings.send_timeout_ms,
                Stage::Head | Stage::Body(_) | Stage::Tunnel(_) => settings.read_timeout_ms,
            }
    }

    /// Its upstream.
    pub(in crate::engine) fn upstream(&self) -> usize {
        self.call.upstream
    }

    /// The response head has gone to the client.
    pub(super) fn head_sent(&self) -> bool {
        matches!(self.stage, Stage::Body(_) | Stage::Tunnel(_))
    }

    /// Makes the next queued call the relay's own (its request, log line and clock), not
    /// sent yet, with no link; returns its response's framing for the session (none when
    /// nothing is queued).
    pub(super) fn promote(&mut self, now_ms: u64) -> Option<DeferredFraming> {
        let next = self.queue.pop_front()?;
        self.call = next.call;
        self.log = next.log;
        self.read_at = next.read_at;
        self.answered = None;
        self.upstream_status = None;
        self.bytes = 0;
        self.first_sent = None;
        self.tries = 0;
        self.since = now_ms;
        self.link = None;
        self.stage = Stage::Connect;
        Some(next.framing)
    }

    /// Its request's body is streamed upstream and not all read yet.
    pub(in crate::engine) fn body_open(&self) -> bool {
        self.body_open
    }

    /// The queued calls sent behind the current one will go again (the connection that
    /// carried them cannot answer them).
    pub(super) fn unsend_queue(&mut self) {
        self.queue.iter_mut().for_each(|q| q.sent = false);
    }

    /// More of the client's pipelined requests may be queued behind this one.
    pub(in crate::engine) fn takes_more(&self) -> bool {
        !self.tunnels() && self.queue.len() + 1 < MAX_DEFERRED
    }

    /// The exchange has become a tunnel: the client's bytes are the server's, unparsed.
    pub(in crate::engine) fn tunnels(&self) -> bool {
        matches!(self.stage, Stage::Tunnel(_))
    }
}
