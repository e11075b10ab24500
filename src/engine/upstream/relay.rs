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

use std::time::Instant;

use io_uring::{cqueue, opcode, squeue, types};
use socket2::{Domain, SockAddr, Socket, Type};

use super::super::background::DeferredLog;
use super::super::buffer_ring::RECV_GROUP;
use super::super::buffers::Flight;
use super::super::conn::{Conn, Deferring};
use super::super::connections::Connections;
use super::super::token::{token, Key, Op, NO_KEY};
use super::super::turn::Turn;
use super::super::Application;
use super::{Link, LinkOp, LinkState};
use crate::config::ServerAddr;
use crate::http::chunked::ChunkedDecoder;
use crate::http::response::{OwnFields, ResponseWriter};
use crate::http::session::OUTPUT_HIGH_WATER;
use crate::http::status::Status;
use crate::http::upstream_head::{parse_upstream_head, reason_of, write_end_to_end, BodyFraming};

/// Longest response head accepted from an upstream server.
const MAX_UPSTREAM_HEAD: usize = 64 * 1024;

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
}

/// Where a relay stands.
#[derive(Debug)]
enum Stage {
    /// Its link is connecting.
    Connect,
    /// Its request is sent (or being sent); the response head is awaited.
    Head,
    /// The response head went to the client; its body follows.
    Body(Body),
}

/// A response body on its way to the client.
#[derive(Debug)]
struct Body {
    framing: BodyFraming,
    /// Of a `Length` body, the bytes still to come.
    left: u64,
    /// Of a `Chunked` body, where its coding stands.
    chunks: ChunkedDecoder,
    /// The client gets it chunked (the server gave no length, the client speaks 1.1).
    chunked_out: bool,
    /// The client wants no body (a HEAD request).
    dropped: bool,
    /// The server's connection may carry another request once this body is through.
    reusable: bool,
}

/// A client connection's request at an upstream.
pub(in crate::engine) struct Relay {
    call: Box<ProxyCall>,
    /// The link carrying it.
    link: Option<Key>,
    server: usize,
    stage: Stage,
    /// Sends of the request so far.
    tries: u8,
    /// Its link came from the pool.
    reused: bool,
    /// The request is all sent (the read timeout runs, not the send timeout).
    sent: bool,
    /// When the current wait began (ms since start): the connect, the send, the last read.
    since: u64,
    /// When the request's bytes were reaped (for the latency).
    read_at: Instant,
    /// What the access log will say of it.
    log: Option<Box<DeferredLog>>,
}

impl Relay {
    /// When its current wait ends, in ms since start.
    pub(in crate::engine) fn deadline(&self, settings: &super::pool::GroupSettings) -> u64 {
        self.since
            + match self.stage {
                Stage::Connect => settings.connect_timeout_ms,
                Stage::Head if !self.sent => settings.send_timeout_ms,
                Stage::Head | Stage::Body(_) => settings.read_timeout_ms,
            }
    }

    /// Its upstream.
    pub(in crate::engine) fn upstream(&self) -> usize {
        self.call.upstream
    }

    /// The response head has gone to the client.
    fn head_sent(&self) -> bool {
        matches!(self.stage, Stage::Body(_))
    }
}

/// The relay of `conn`, which has one.
fn relay_of(conn: &mut Conn) -> &mut Relay {
    match &mut conn.deferring {
        Deferring::Proxy(relay) => relay,
        _ => unreachable!("the connection has a relay"),
    }
}

/// Writes `len` as a chunk-size line (hex digits, CRLF) into `line`; returns its length.
fn chunk_line(len: usize, line: &mut [u8; 18]) -> usize {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in line[..digits].iter_mut().enumerate() {
        let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
        *digit = b"0123456789abcdef"[nibble];
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    digits + 2
}

/// What a link's bytes did to its relay.
enum Fed {
    /// More is to come.
    More,
    /// The response is complete; `clean`: nothing followed it.
    Done { reusable: bool },
    /// The response cannot be relayed: the client gets `status` (502) if its head has not
    /// gone out, and is cut otherwise.
    Failed(Status),
}

impl<A: Application> Connections<A> {
    /// Starts relaying `call` for `conn` (which answers nothing more until it is through).
    pub(in crate::engine) fn start_proxy(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        call: Box<ProxyCall>,
        log: Option<Box<DeferredLog>>,
    ) {
        let read_at = turn.now.clock.instant(conn.read_at);
        conn.deferring = Deferring::Proxy(Box::new(Relay {
            call,
            link: None,
            server: 0,
            stage: Stage::Connect,
            tries: 0,
            reused: false,
            sent: false,
            since: turn.now.ms,
            read_at,
            log,
        }));
        self.relay_go(turn, conn, None);
    }

    /// Sends the relay's request: on a pooled connection to the next server (not `avoid`,
    /// if another is up), or a new one.
    fn relay_go(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, avoid: Option<usize>) {
        let now = turn.now.ms;
        let relay = relay_of(conn);
        relay.tries += 1;
        let upstream = relay.call.upstream;
        let group = &mut self.upstreams.groups[upstream];
        let Some(server) = group.choose(now, avoid) else {
            return self.relay_failed(turn, conn, Status::BAD_GATEWAY);
        };
        relay.server = server;
        relay.since = now;
        relay.sent = false;
        group.set_busy(server, true);
        while let Some(key) = self.upstreams.groups[upstream].take_idle(server) {
            let Some(mut link) = self.upstreams.links.take(key) else {
                continue;
            };
            if link.state != LinkState::Idle || link.ended {
                self.close_link(turn, link);
                continue;
            }
            link.state = LinkState::Busy;
            link.client = Some(conn.key);
            let relay = relay_of(conn);
            relay.link = Some(key);
            relay.reused = true;
            relay.stage = Stage::Head;
            self.send_request(turn, &mut link, &relay.call.request);
            self.upstreams.links.put(link);
            return;
        }
        match self.open_link(turn, upstream, server, conn.key) {
            Some(key) => {
                let relay = relay_of(conn);
                relay.link = Some(key);
                relay.reused = false;
                relay.stage = Stage::Connect;
            }
            None => {
                self.upstreams.groups[upstream].set_busy(server, false);
                self.upstreams.groups[upstream].failed(server, now);
                self.relay_retry_or_fail(turn, conn, true);
            }
        }
    }

    /// Opens a connection to server `server` of upstream `group` for client `client`: its
    /// socket, and a connect on the ring. None if no socket could be made.
    fn open_link(
        &mut self,
        turn: &mut Turn<'_>,
        group: usize,
        server: usize,
        client: Key,
    ) -> Option<Key> {
        let addr = self.upstreams.groups[group].server(server).addr.clone();
        let (domain, sockaddr) = match &*addr {
            ServerAddr::Tcp(addr) => (Domain::for_address(*addr), SockAddr::from(*addr)),
            ServerAddr::Unix(path) => (Domain::UNIX, SockAddr::unix(path).ok()?),
        };
        let socket = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None).ok()?;
        if matches!(*addr, ServerAddr::Tcp(_)) {
            let _ = socket.set_nodelay(true);
        }
        let fd = std::os::fd::IntoRawFd::into_raw_fd(socket);
        let key = self.upstreams.links.new_key();
        let link = Box::new(Link {
            fd,
            key,
            state: LinkState::Connecting,
            group,
            server,
            client: Some(client),
            addr: sockaddr,
            connecting: true,
            receiving: false,
            recv_epoch: 0,
            paused: false,
            send: None,
            ended: false,
            input: Vec::new(),
            served: 0,
            since: turn.now.ms,
        });
        let connect =
            opcode::Connect::new(types::Fd(fd), link.addr.as_ptr().cast(), link.addr.len())
                .build()
                .user_data(token(Op::Upstream, key, LinkOp::Connect.bits()));
        // SAFETY: the address lives in the boxed link, which is kept until this connect
        // completes (`close_link` waits for it).
        unsafe { turn.ring.push(&connect) };
        self.upstreams.links.put(link);
        turn.reporting
            .metrics
            .counters
            .borrow_mut()
            .upstream_connects += 1;
        Some(key)
    }

    /// Queues the send of `request` on `link` (one send in flight per link; the request is
    /// copied into a pooled buffer the link keeps until the send completes).
    fn send_request(&mut self, turn: &mut Turn<'_>, link: &mut Link, request: &[u8]) {
        let mut buf = self.buffers.writes.take();
        buf.extend_from_slice(request);
        let mut flight = self.buffers.flights.take();
        *flight = Flight {
            buf,
            sent: 0,
            chunk: false,
            since: turn.now.ms,
        };
        link.send = Some(flight);
        link.served += 1;
        self.submit_link_send(turn, link);
        self.arm_link_recv(turn, link);
    }

    fn submit_link_send(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        let Some(flight) = &link.send else {
            return;
        };
        let rest = &flight.buf[flight.sent..];
        let send = opcode::Send::new(types::Fd(link.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(Op::Upstream, link.key, LinkOp::Send.bits()));
        // SAFETY: the buffer stays in the link, untouched, until this send completes; a link
        // closed meanwhile waits for it (`close_link`), and a core leaving cancels and reaps
        // it first, or leaks the buffer.
        unsafe { turn.ring.push(&send) };
    }

    fn arm_link_recv(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if link.receiving || link.ended || link.paused {
            return;
        }
        link.recv_epoch = link.recv_epoch.wrapping_add(1) & 3;
        let recv = opcode::RecvMulti::new(types::Fd(link.fd), RECV_GROUP)
            .build()
            .user_data(token(
                Op::Upstream,
                link.key,
                LinkOp::Recv(link.recv_epoch).bits(),
            ));
        turn.push_plain(&recv);
        link.receiving = true;
    }

    fn cancel_link_recv(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if link.receiving {
            turn.ring.cancel(token(
                Op::Upstream,
                link.key,
                LinkOp::Recv(link.recv_epoch).bits(),
            ));
            link.receiving = false;
        }
    }

    /// A completion for link `key`.
    pub(in crate::engine) fn on_upstream(
        &mut self,
        turn: &mut Turn<'_>,
        key: Key,
        bits: u8,
        result: i32,
        flags: u32,
    ) {
        let op = LinkOp::of(bits);
        let buffer = cqueue::buffer_select(flags);
        // A client whose response is through, to go on once the link is back in its table
        // (its next request may take this very link from the pool).
        let mut finished = None;
        let Some(mut link) = self.upstreams.links.take(key) else {
            if let Some(bid) = buffer {
                turn.ring.recycle(bid);
            }
            return;
        };
        match op {
            LinkOp::Connect => {
                link.connecting = false;
                if link.state == LinkState::Closing {
                } else if result < 0 {
                    link.ended = true;
                    let now = turn.now.ms;
                    self.upstreams.groups[link.group].failed(link.server, now);
                    self.link_failed(turn, &mut link, true);
                } else {
                    link.state = LinkState::Busy;
                    self.link_connected(turn, &mut link);
                }
            }
            LinkOp::Send => self.link_sent(turn, &mut link, result),
            LinkOp::Recv(epoch) => {
                if !cqueue::more(flags) && epoch == link.recv_epoch {
                    link.receiving = false;
                }
                match (result, buffer) {
                    (n, Some(bid)) if n > 0 => {
                        // SAFETY: the completion just reaped names this buffer with `n`
                        // bytes, taken once here; it goes back when `received` is dropped.
                        let mut received = unsafe { turn.ring.received(bid, n as usize) };
                        turn.reporting
                            .metrics
                            .counters
                            .borrow_mut()
                            .upstream_bytes_in += n as u64;
                        finished = self.link_data(turn, &mut link, received.bytes());
                    }
                    (n, _) if n == -libc::ENOBUFS && epoch == link.recv_epoch => {
                        self.upstreams.starved.push(key);
                    }
                    (n, _) if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
                    (n, _) if n <= 0 => {
                        link.ended = true;
                        finished = self.link_ended(turn, &mut link);
                    }
                    _ => {}
                }
                if let Some(bid) = buffer.filter(|_| result <= 0) {
                    turn.ring.recycle(bid);
                }
            }
        }
        self.settle_link(turn, link);
        if let Some(mut conn) = finished {
            self.pump(turn, &mut conn, &[]);
            self.flush(turn, &mut conn);
            self.settle(turn, conn);
        }
    }

    /// After any event: a link being closed goes once the kernel holds nothing of it; an
    /// open one keeps its receive armed.
    fn settle_link(&mut self, turn: &mut Turn<'_>, mut link: Box<Link>) {
        if link.state == LinkState::Closing {
            if link.settled() {
                return self.free_link(turn, link);
            }
            return self.upstreams.links.put(link);
        }
        if link.ended && link.state == LinkState::Idle {
            self.upstreams.groups[link.group].forget_idle(link.server, link.key);
            return self.close_link(turn, link);
        }
        if !link.ended && link.state != LinkState::Connecting {
            self.arm_link_recv(turn, &mut link);
        }
        self.upstreams.links.put(link);
    }

    /// The link's connect completed: its client's request goes out.
    fn link_connected(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        let Some(mut conn) = link.client.and_then(|key| self.table.take(key)) else {
            link.client = None;
            return self.retire(turn, link);
        };
        let relay = relay_of(&mut conn);
        relay.stage = Stage::Head;
        relay.since = turn.now.ms;
        let request = std::mem::take(&mut relay.call.request);
        self.send_request(turn, link, &request);
        relay_of(&mut conn).call.request = request;
        self.settle(turn, conn);
    }

    /// A send on the link completed (`result` bytes, or an error).
    fn link_sent(&mut self, turn: &mut Turn<'_>, link: &mut Link, result: i32) {
        let Some(mut flight) = link.send.take() else {
            return;
        };
        if result <= 0 || link.state == LinkState::Closing {
            self.buffers.writes.give(std::mem::take(&mut flight.buf));
            self.buffers.flights.give(flight);
            if link.state != LinkState::Closing {
                link.ended = true;
                self.link_failed(turn, link, false);
            }
            return;
        }
        flight.sent += result as usize;
        if flight.sent < flight.buf.len() {
            flight.since = turn.now.ms;
            link.send = Some(flight);
            return self.submit_link_send(turn, link);
        }
        self.buffers.writes.give(std::mem::take(&mut flight.buf));
        self.buffers.flights.give(flight);
        // The request is out: the read timeout runs from now.
        if let Some(mut conn) = link.client.and_then(|key| self.table.take(key)) {
            if let Deferring::Proxy(relay) = &mut conn.deferring {
                if matches!(relay.stage, Stage::Head) {
                    relay.sent = true;
                    relay.since = turn.now.ms;
                }
            }
            self.settle(turn, conn);
        }
    }

    /// Bytes from the link's server. Returns the client connection when its response is
    /// through.
    fn link_data(
        &mut self,
        turn: &mut Turn<'_>,
        link: &mut Link,
        data: &[u8],
    ) -> Option<Box<Conn>> {
        if link.state != LinkState::Busy {
            // Bytes nobody asked for (from an idle connection): it cannot be trusted again.
            link.ended = true;
            return None;
        }
        let Some(mut conn) = link.client.and_then(|key| self.table.take(key)) else {
            link.client = None;
            self.retire(turn, link);
            return None;
        };
        let fed = self.feed_relay(turn, &mut conn, link, data);
        if self.relay_outcome(turn, &mut conn, link, fed) {
            return Some(conn);
        }
        self.settle(turn, conn);
        None
    }

    /// The link's server closed it, or it failed. Returns the client connection when its
    /// response is through.
    fn link_ended(&mut self, turn: &mut Turn<'_>, link: &mut Link) -> Option<Box<Conn>> {
        if link.state != LinkState::Busy {
            return None;
        }
        let Some(mut conn) = link.client.and_then(|key| self.table.take(key)) else {
            link.client = None;
            self.retire(turn, link);
            return None;
        };
        let relay = relay_of(&mut conn);
        let fed = match &mut relay.stage {
            Stage::Body(body) if body.framing == BodyFraming::UntilClose => {
                if body.chunked_out && !body.dropped {
                    self.buffers.writes.lend(&mut conn.out);
                    conn.out.extend_from_slice(b"0\r\n\r\n");
                }
                Fed::Done { reusable: false }
            }
            // Cut short: the client must see it truncated.
            Stage::Body(_) => Fed::Failed(Status::BAD_GATEWAY),
            Stage::Head | Stage::Connect if link.input.is_empty() => {
                link.client = None;
                self.detach(turn, link);
                self.relay_retry_or_fail(turn, &mut conn, false);
                self.settle(turn, conn);
                return None;
            }
            Stage::Head | Stage::Connect => Fed::Failed(Status::BAD_GATEWAY),
        };
        if self.relay_outcome(turn, &mut conn, link, fed) {
            return Some(conn);
        }
        self.settle(turn, conn);
        None
    }

    /// The link failed before any response byte (its connect, or its send): the request
    /// goes again or the client gets a 502.
    fn link_failed(&mut self, turn: &mut Turn<'_>, link: &mut Link, connect: bool) {
        let Some(mut conn) = link.client.and_then(|key| self.table.take(key)) else {
            link.client = None;
            return self.retire(turn, link);
        };
        link.client = None;
        self.detach(turn, link);
        self.relay_retry_or_fail(turn, &mut conn, connect);
        self.settle(turn, conn);
    }

    /// The relay's link failed before any response byte: the request is sent again (once)
    /// when that cannot make it happen twice, otherwise the client gets a 502.
    fn relay_retry_or_fail(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, nothing_sent: bool) {
        let relay = relay_of(conn);
        let (server, reused) = (relay.server, relay.reused);
        relay.link = None;
        let again = relay.tries < 2 && (nothing_sent || reused || relay.call.idempotent);
        if !again {
            return self.relay_failed(turn, conn, Status::BAD_GATEWAY);
        }
        turn.reporting
            .metrics
            .counters
            .borrow_mut()
            .upstream_retries += 1;
        // A pooled connection the server closed while idle is no fault of the server's:
        // the same server may take the request again.
        let avoid = (!reused).then_some(server);
        self.relay_go(turn, conn, avoid);
    }

    /// The link no longer carries a request: it is closed (its response was not complete).
    fn detach(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        self.upstreams.groups[link.group].set_busy(link.server, false);
        link.state = LinkState::Closing;
        self.cancel_link_recv(turn, link);
        // SAFETY: shutdown(2) on the link's own socket.
        unsafe { libc::shutdown(link.fd, libc::SHUT_RDWR) };
    }

    /// A busy link whose client is gone: closed (what it carried is of no use).
    fn retire(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if link.state == LinkState::Busy || link.state == LinkState::Connecting {
            self.detach(turn, link);
        }
    }

    /// Feeds a response's bytes to the relay.
    fn feed_relay(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        link: &mut Link,
        mut data: &[u8],
    ) -> Fed {
        relay_of(conn).since = turn.now.ms;
        loop {
            let relay = relay_of(conn);
            let head_request = relay.call.head_request;
            match &relay.stage {
                Stage::Connect => return Fed::Failed(Status::BAD_GATEWAY),
                Stage::Body(_) => return self.feed_body(conn, data),
                Stage::Head => {}
            }
            // A head split over reads is gathered in the link; one that came whole is read
            // where it lies.
            let held = !link.input.is_empty();
            if held {
                link.input.extend_from_slice(data);
                data = &[];
            }
            let input = std::mem::take(&mut link.input);
            let bytes: &[u8] = if held { &input } else { data };
            let head = match parse_upstream_head(bytes, head_request, MAX_UPSTREAM_HEAD) {
                Ok(Some(head)) => head,
                Ok(None) => {
                    link.input = input;
                    if !held {
                        link.input.extend_from_slice(data);
                    }
                    return Fed::More;
                }
                Err(_) => return Fed::Failed(Status::BAD_GATEWAY),
            };
            if head.status == 101 {
                // No upgrade was asked for: the server cannot switch.
                return Fed::Failed(Status::BAD_GATEWAY);
            }
            if (100..200).contains(&head.status) {
                // An interim response: the final one follows.
                if held {
                    link.input = input[head.len..].to_vec();
                } else {
                    data = &data[head.len..];
                }
                continue;
            }
            self.upstreams.groups[link.group].answered(link.server);
            self.write_response_head(turn, conn, &bytes[..head.len], head);
            let fed = self.feed_body(conn, &bytes[head.len..]);
            link.input = input;
            link.input.clear();
            return fed;
        }
    }

    /// Writes the client's response head for an upstream response `head` (its bytes
    /// `bytes`), and turns the relay to its body.
    fn write_response_head(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        bytes: &[u8],
        head: crate::http::upstream_head::UpstreamHead,
    ) {
        self.buffers.writes.lend(&mut conn.out);
        let draining = !turn.serving();
        let before = conn.out.len();
        let mut chunked_out = false;
        let mut dropped = false;
        let status = Status(head.status);
        let reason = reason_of(bytes);
        let (answered, _) =
            conn.session
                .answer_deferred(&mut conn.out, draining, |w: &mut ResponseWriter| {
                    let (server, date) = write_end_to_end(bytes, w.out());
                    w.own(OwnFields { server, date });
                    match head.framing {
                        BodyFraming::Length(n) => {
                            w.send_head_as(status, Some(reason), None, &[], n)
                        }
                        BodyFraming::None => w.send_head_as(
                            status,
                            Some(reason),
                            None,
                            &[],
                            head.declared.unwrap_or(0),
                        ),
                        BodyFraming::Chunked | BodyFraming::UntilClose => {
                            chunked_out = w.send_head_unsized(status, Some(reason));
                        }
                    }
                    dropped = !w.body_wanted();
                });
        let written = (conn.out.len() - before) as u64;
        let relay = relay_of(conn);
        if let (Some(line), Some(log)) = (&relay.log, turn.reporting.log.as_mut()) {
            line.record(log, answered, written);
        }
        let relay = relay_of(conn);
        turn.reporting
            .metrics
            .record_one(answered.class(), false, Some(relay.read_at));
        let left = match head.framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        relay.stage = Stage::Body(Body {
            framing: head.framing,
            left,
            chunks: ChunkedDecoder::new(u64::MAX, MAX_UPSTREAM_HEAD),
            chunked_out,
            dropped: dropped || head.framing == BodyFraming::None,
            reusable: head.reusable,
        });
    }

    /// Body bytes of the response, relayed to the client as it gets them.
    fn feed_body(&mut self, conn: &mut Conn, data: &[u8]) -> Fed {
        self.buffers.writes.lend(&mut conn.out);
        let Deferring::Proxy(relay) = &mut conn.deferring else {
            return Fed::Failed(Status::BAD_GATEWAY);
        };
        let Stage::Body(body) = &mut relay.stage else {
            return Fed::Failed(Status::BAD_GATEWAY);
        };
        let out = &mut conn.out;
        let reusable = body.reusable;
        match body.framing {
            BodyFraming::None => Fed::Done {
                reusable: reusable && data.is_empty(),
            },
            BodyFraming::Length(_) => {
                let take = (body.left as usize).min(data.len());
                if !body.dropped {
                    out.extend_from_slice(&data[..take]);
                }
                body.left -= take as u64;
                match body.left {
                    0 => Fed::Done {
                        reusable: reusable && take == data.len(),
                    },
                    _ => Fed::More,
                }
            }
            BodyFraming::Chunked => {
                let mark = out.len();
                if body.chunked_out {
                    // Room for the size line, written once the chunk's length is known.
                    out.extend_from_slice(&[b'0'; 18]);
                }
                let start = out.len();
                let sink = (!body.dropped).then_some(&mut *out);
                let used = match body.chunks.feed(data, sink) {
                    Ok(used) => used,
                    Err(_) => {
                        out.truncate(mark);
                        return Fed::Failed(Status::BAD_GATEWAY);
                    }
                };
                let len = out.len() - start;
                if body.chunked_out {
                    if len == 0 {
                        out.truncate(mark);
                    } else {
                        let mut line = [0u8; 18];
                        let n = chunk_line(len, &mut line);
                        out.splice(mark..start, line[..n].iter().copied());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                if body.chunks.is_done() {
                    if body.chunked_out {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    return Fed::Done {
                        reusable: reusable && used == data.len(),
                    };
                }
                Fed::More
            }
            BodyFraming::UntilClose => {
                if !data.is_empty() && !body.dropped {
                    if body.chunked_out {
                        let mut line = [0u8; 18];
                        let n = chunk_line(data.len(), &mut line);
                        out.extend_from_slice(&line[..n]);
                        out.extend_from_slice(data);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(data);
                    }
                }
                Fed::More
            }
        }
    }

    /// Acts on what the bytes did. Returns whether the response is through (the client's
    /// next requests are then for the caller to answer, once the link is back).
    fn relay_outcome(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        link: &mut Link,
        fed: Fed,
    ) -> bool {
        match fed {
            Fed::More => {
                self.flush(turn, conn);
                // A client that does not take the response stops its server's reads.
                if conn.out.len() >= OUTPUT_HIGH_WATER {
                    link.paused = true;
                    self.cancel_link_recv(turn, link);
                }
            }
            Fed::Done { reusable } => {
                let keep = reusable && !link.ended;
                self.release_link(turn, link, keep);
                conn.deferring = Deferring::Nothing;
                return true;
            }
            Fed::Failed(status) => {
                link.client = None;
                self.detach(turn, link);
                self.relay_failed(turn, conn, status);
            }
        }
        false
    }

    /// The link's response is through: back to its server's pool when it may carry
    /// another request and there is room, closed otherwise.
    fn release_link(&mut self, turn: &mut Turn<'_>, link: &mut Link, reusable: bool) {
        let group = &mut self.upstreams.groups[link.group];
        group.set_busy(link.server, false);
        link.client = None;
        let keep = reusable
            && link.send.is_none()
            && link.served < group.settings.keepalive_requests
            && group.has_room(link.server);
        link.paused = false;
        if keep {
            link.state = LinkState::Idle;
            link.since = turn.now.ms;
            group.keep_idle(link.server, link.key);
        } else {
            link.state = LinkState::Closing;
            self.cancel_link_recv(turn, link);
            // SAFETY: shutdown(2) on the link's own socket.
            unsafe { libc::shutdown(link.fd, libc::SHUT_RDWR) };
        }
    }

    /// The relay cannot go on: a `status` response if its head has not gone out, a cut
    /// otherwise (the client must see the response truncated).
    fn relay_failed(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, status: Status) {
        let Deferring::Proxy(relay) = std::mem::replace(&mut conn.deferring, Deferring::Nothing)
        else {
            return;
        };
        turn.reporting
            .metrics
            .counters
            .borrow_mut()
            .upstream_failures += 1;
        if relay.head_sent() {
            // What came goes out, then the connection closes: the client sees the body cut
            // short, and no response after it.
            conn.session.abort();
            conn.input_ended = true;
            return self.flush(turn, conn);
        }
        self.buffers.writes.lend(&mut conn.out);
        let before = conn.out.len();
        let draining = !turn.serving();
        let (answered, _) = conn
            .session
            .answer_deferred(&mut conn.out, draining, |w| w.send_status(status, &[]));
        if let (Some(line), Some(log)) = (&relay.log, turn.reporting.log.as_mut()) {
            line.record(log, answered, (conn.out.len() - before) as u64);
        }
        turn.reporting
            .metrics
            .record_one(answered.class(), false, Some(relay.read_at));
        self.pump(turn, conn, &[]);
        self.flush(turn, conn);
    }

    /// The relay's wait passed its timeout: 504, or a cut once the head has gone out.
    pub(in crate::engine) fn relay_timed_out(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let relay = relay_of(conn);
        let (group, server) = (relay.call.upstream, relay.server);
        if let Some(mut link) = relay
            .link
            .take()
            .and_then(|key| self.upstreams.links.take(key))
        {
            link.client = None;
            self.detach(turn, &mut link);
            self.settle_link(turn, link);
        }
        self.upstreams.groups[group].failed(server, turn.now.ms);
        self.relay_failed(turn, conn, Status::GATEWAY_TIMEOUT);
    }

    /// The client connection of a relay is going: its link, if any, is closed.
    pub(in crate::engine) fn relay_abandoned(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let Deferring::Proxy(relay) = &mut conn.deferring else {
            return;
        };
        if let Some(mut link) = relay
            .link
            .take()
            .and_then(|key| self.upstreams.links.take(key))
        {
            link.client = None;
            self.detach(turn, &mut link);
            self.settle_link(turn, link);
        }
    }

    /// The client's send completed: a relay that stopped reading its server for it reads
    /// again.
    pub(in crate::engine) fn relay_resume(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let Deferring::Proxy(relay) = &conn.deferring else {
            return;
        };
        if conn.out.len() >= OUTPUT_HIGH_WATER {
            return;
        }
        let Some(mut link) = relay.link.and_then(|key| self.upstreams.links.take(key)) else {
            return;
        };
        if link.state == LinkState::Busy && link.paused {
            link.paused = false;
            self.arm_link_recv(turn, &mut link);
        }
        self.upstreams.links.put(link);
    }

    /// Closes a link at once if the kernel holds nothing of it, or once it lets go.
    fn close_link(&mut self, turn: &mut Turn<'_>, mut link: Box<Link>) {
        link.state = LinkState::Closing;
        self.cancel_link_recv(turn, &mut link);
        // SAFETY: shutdown(2) on the link's own socket.
        unsafe { libc::shutdown(link.fd, libc::SHUT_RDWR) };
        self.settle_link(turn, link);
    }

    /// Frees a closed link whose operations have all completed.
    fn free_link(&mut self, turn: &mut Turn<'_>, link: Box<Link>) {
        let close = opcode::Close::new(types::Fd(link.fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(token(Op::Ignore, NO_KEY, 0));
        turn.ring.push_quiet(&close);
        self.upstreams.links.release(link.key);
    }

    /// Closes the idle links that waited longer than their upstream's keep-alive timeout,
    /// and arms again the receives of links that ran out of buffers.
    pub(in crate::engine) fn tend_links(&mut self, turn: &mut Turn<'_>) {
        let now = turn.now.ms;
        let mut stale = Vec::new();
        for (g, group) in self.upstreams.groups.iter().enumerate() {
            let timeout = group.settings.keepalive_timeout_ms;
            for (server, key) in group.idle_keys() {
                if let Some(link) = self.upstreams.links.peek(key) {
                    if now.saturating_sub(link.since) >= timeout {
                        stale.push((g, server, key));
                    }
                }
            }
        }
        for (g, server, key) in stale {
            self.upstreams.groups[g].forget_idle(server, key);
            if let Some(link) = self.upstreams.links.take(key) {
                self.close_link(turn, link);
            }
        }
        for key in std::mem::take(&mut self.upstreams.starved) {
            if let Some(mut link) = self.upstreams.links.take(key) {
                if link.state != LinkState::Closing {
                    self.arm_link_recv(turn, &mut link);
                }
                self.upstreams.links.put(link);
            }
        }
    }
}
