//! A relay's client side: the request sent (on a pooled connection, or a new one), sent
//! again when that is safe, and what the client gets when it cannot be answered (a 502 or
//! 504, or a response cut short). See `relay` for the whole exchange.

use super::super::background::DeferredLog;
use super::super::conn::{Conn, Deferring};
use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::LinkState;
use super::relay::{ForwardBody, ProxyCall, Relay, Stage};

/// Relay boxes a core keeps for its next proxied requests.
const SPARE_RELAYS: usize = 256;
use crate::http::session::OUTPUT_HIGH_WATER;
use crate::http::status::Status;

impl<A: Application> Connections<A> {
    /// Starts relaying `call` for `conn` (which answers nothing more until it is through).
    pub(in crate::engine) fn start_proxy(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        call: ProxyCall,
        log: Option<Box<DeferredLog>>,
    ) {
        let read_at = turn.now.clock.instant(conn.read_at);
        let body_open = call.body != ForwardBody::Whole;
        let relay = Relay {
            call,
            link: None,
            server: 0,
            stage: Stage::Connect,
            tries: 0,
            reused: false,
            sent: false,
            since: turn.now.ms,
            read_at,
            sent_at: read_at,
            log,
            answered: None,
            upstream_status: None,
            first_sent: None,
            queue: std::collections::VecDeque::new(),
            body_open,
            body_out: Vec::new(),
            bytes: 0,
        };
        // A relay's box from those that ended, if any: a proxied request allocates none.
        let relay = match self.upstreams.spare_relays.pop() {
            Some(mut boxed) => {
                let (queue, body_out) = (
                    std::mem::take(&mut boxed.queue),
                    std::mem::take(&mut boxed.body_out),
                );
                *boxed = Relay {
                    queue,
                    body_out,
                    ..relay
                };
                boxed
            }
            None => Box::new(relay),
        };
        conn.deferring = Deferring::Proxy(relay);
        self.relay_go(turn, conn, None);
    }

    /// A relay that ended: its box (and its queue's and body's room) kept for the next one,
    /// up to [`SPARE_RELAYS`]; its request's bytes freed.
    pub(super) fn retire_relay(&mut self, mut relay: Box<Relay>) {
        if self.upstreams.spare_relays.len() < SPARE_RELAYS {
            relay.call.request = Vec::new();
            relay.log = None;
            relay.queue.clear();
            relay.body_out.clear();
            self.upstreams.spare_relays.push(relay);
        }
    }

    /// Sends the relay's request: on a pooled connection to the next server (not `avoid`,
    /// if another is up), or a new one.
    pub(super) fn relay_go(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, avoid: Option<usize>) {
        let now = turn.now.ms;
        let relay = conn.relay();
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
        self.count_server(turn, upstream, server, |c| c.requests += 1);
        if let Some(mut link) = self.pooled_link(turn, upstream, server) {
            link.client = Some(conn.key);
            let relay = conn.relay();
            relay.link = Some(link.key);
            relay.reused = true;
            relay.stage = Stage::Head;
            relay.sent_at = turn.now.reaped_at;
            relay.first_sent.get_or_insert(relay.sent_at);
            self.send_request(turn, &mut link, &relay.call.request);
            self.upstreams.links.put(link);
            return;
        }
        match self.open_link(turn, upstream, server) {
            Some(mut link) => {
                link.client = Some(conn.key);
                let relay = conn.relay();
                relay.link = Some(link.key);
                relay.reused = false;
                relay.stage = Stage::Connect;
                self.upstreams.links.put(link);
            }
            None => {
                self.upstreams.groups[upstream].set_busy(server, false);
                self.server_failed(turn, upstream, server);
                self.relay_retry_or_fail(turn, conn, true);
            }
        }
    }

    /// The relay's link failed before any response byte: the request is sent again (once)
    /// when that cannot make it happen twice, otherwise the client gets a 502.
    pub(super) fn relay_retry_or_fail(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        nothing_sent: bool,
    ) {
        let relay = conn.relay();
        let (upstream, server, reused) = (relay.call.upstream, relay.server, relay.reused);
        relay.link = None;
        // Pipelined requests sent behind it on that connection go again behind it.
        relay.unsend_queue();
        let again = relay.tries < 2 && (nothing_sent || reused || relay.call.idempotent);
        if !again {
            return self.relay_failed(turn, conn, Status::BAD_GATEWAY);
        }
        turn.reporting
            .metrics
            .counters
            .borrow_mut()
            .upstream_retries += 1;
        self.count_server(turn, upstream, server, |c| c.retries += 1);
        // A pooled connection the server closed while idle is no fault of the server's:
        // the same server may take the request again.
        let avoid = (!reused).then_some(server);
        self.relay_go(turn, conn, avoid);
    }

    /// The relay cannot go on: a `status` response if its head has not gone out, a cut
    /// otherwise (the client must see the response truncated).
    pub(super) fn relay_failed(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, status: Status) {
        let Deferring::Proxy(mut relay) =
            std::mem::replace(&mut conn.deferring, Deferring::Nothing)
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
            self.log_relay(turn, &relay);
            self.retire_relay(relay);
            conn.session.abort();
            conn.input_ended = true;
            return self.flush(turn, conn);
        }
        self.buffers.writes.lend(&mut conn.out);
        let before = conn.out.len();
        let draining = !turn.serving();
        let (answered, _, _) = conn
            .session
            .answer_deferred(&mut conn.out, draining, |w| w.send_status(status, &[]));
        relay.answered = Some(answered);
        relay.bytes = (conn.out.len() - before) as u64;
        self.log_relay(turn, &relay);
        turn.reporting
            .metrics
            .record_one(answered.class(), false, Some(relay.read_at));
        // Pipelined requests behind it go on, on a connection of their own (unless this
        // answer closed the client connection).
        if conn.session.is_closed() {
            relay.queue.clear();
        }
        relay.unsend_queue();
        match relay.promote(turn.now.ms) {
            Some(framing) => {
                conn.session.take_turn(framing);
                conn.deferring = Deferring::Proxy(relay);
                self.relay_go(turn, conn, None);
            }
            None => self.retire_relay(relay),
        }
        self.pump(turn, conn, &[]);
        self.flush(turn, conn);
    }

    /// Writes the relay's access log line, naming the server that last had its request.
    pub(super) fn log_relay(&self, turn: &mut Turn<'_>, relay: &Relay) {
        let group = &self.upstreams.groups[relay.call.upstream];
        relay.log_line(
            turn.reporting.log.as_mut(),
            &group.server(relay.server).addr,
        );
    }

    /// The relay's wait passed its timeout: 504, or a cut once the head has gone out.
    pub(in crate::engine) fn relay_timed_out(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let relay = conn.relay();
        let (group, server) = (relay.call.upstream, relay.server);
        self.drop_link(turn, relay);
        self.server_failed(turn, group, server);
        self.relay_failed(turn, conn, Status::GATEWAY_TIMEOUT);
    }

    /// The client connection of a relay is going: its link, if any, is closed.
    pub(in crate::engine) fn relay_abandoned(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        if let Deferring::Proxy(relay) = &mut conn.deferring {
            self.drop_link(turn, relay);
        }
    }

    /// The relay's link, if it has one, carries its request no further: it is closed.
    fn drop_link(&mut self, turn: &mut Turn<'_>, relay: &mut Relay) {
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
}
