//! A client's pipelined requests through the proxy, sent upstream as a batch: while a relay
//! waits for its response, the session answers the client's next complete `GET`s and
//! `HEAD`s that a proxy route takes (`Service::queues`) with proxy calls queued behind it
//! (`Relay::queue`, at most `MAX_DEFERRED` in all). Those for the same upstream go out on
//! the relay's link in one send as soon as it has none in flight, so the server sees them
//! pipelined too. Each response, once through, hands the rest of the bytes read to the
//! next queued call, which becomes the relay's own; responses reach the client in request
//! order, one deferred answer after the other.
//!
//! When the link cannot carry the rest (the server closes it after a response, frames one
//! to the close, or the next call is for another upstream), the queued calls go out again
//! from the next one on, on another connection: they are all idempotent. A relay that
//! fails answers its current request (502, 504) and goes on with the next one; one that is
//! cut (its response's head went out) ends the client connection, queued calls and all.

use super::super::background::DeferredLog;
use super::super::conn::{Conn, Deferring};
use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::Link;
use super::relay::{ProxyCall, Queued, Stage};
use crate::http::session::DeferredFraming;

/// What a finished response leaves the relay to do.
pub(super) enum Next {
    /// The client's requests are all answered: the caller goes on with its next ones.
    Through,
    /// The next queued call's response is due on the same link: the last `rest` bytes read
    /// are its.
    Continue { rest: usize },
    /// The next queued call needs a connection of its own: the caller sends it
    /// (`relay_go`) once the link is back in its table (it may be the very one it takes
    /// from the pool).
    Go,
}

impl<A: Application> Connections<A> {
    /// Queues `call` (a pipelined request of `conn`'s) behind its relay, and sends it if it
    /// can go now.
    pub(in crate::engine) fn queue_proxy(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        call: ProxyCall,
        log: Option<Box<DeferredLog>>,
        framing: DeferredFraming,
    ) {
        let read_at = turn.now.clock.instant(conn.read_at);
        conn.relay().queue.push_back(Queued {
            call,
            log,
            read_at,
            framing,
            sent: false,
        });
        if let Some(mut link) = conn.relay().link.and_then(|k| self.upstreams.links.take(k)) {
            self.pipeline(turn, conn, &mut link);
            self.upstreams.links.put(link);
        }
    }

    /// Sends the queued calls not sent yet, for the relay's upstream and in order, on its
    /// link in one send, once the link is connected and has no send in flight.
    pub(super) fn pipeline(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, link: &mut Link) {
        let Deferring::Proxy(relay) = &mut conn.deferring else {
            return;
        };
        let ready = matches!(relay.stage, Stage::Head | Stage::Body(_));
        if !ready || link.send.is_some() || link.ended || relay.queue.is_empty() {
            return;
        }
        let upstream = relay.call.upstream;
        let mut batch = self.buffers.writes.take();
        let mut count = 0;
        for queued in relay.queue.iter_mut() {
            if queued.call.upstream != upstream {
                // Another upstream's: it waits for the calls before it.
                break;
            }
            if !queued.sent {
                batch.extend_from_slice(&queued.call.request);
                queued.sent = true;
                count += 1;
            }
        }
        if count == 0 {
            return self.buffers.writes.give(batch);
        }
        link.served += count;
        self.send_owned(turn, link, batch);
        self.count_server(turn, upstream, relay.server, |c| {
            c.requests += count;
            c.reused += count;
        });
    }

    /// The relay's current response is through (`reusable`: its framing lets the link carry
    /// another; `rest`: bytes read after it). The next queued call becomes the current one.
    pub(super) fn relay_done(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        link: &mut Link,
        reusable: bool,
        rest: usize,
    ) -> Next {
        if conn.session.is_closed() {
            // The response closed the client connection: nothing queued will be answered.
            conn.relay().queue.clear();
        }
        let relay = conn.relay();
        let next_on_link = relay.queue.front().is_some_and(|q| q.sent);
        // A server that answered before the request's streamed body was all sent: its
        // connection is mid-request, and carries nothing more.
        let body_left = relay.body_open || !relay.body_out.is_empty();
        let reusable = reusable && !body_left;
        let carries_next = next_on_link && reusable && !link.ended;
        if !carries_next {
            // What was sent behind this response is sent again from the next call on.
            relay.unsend_queue();
            let keep = reusable && !link.ended && rest == 0 && !next_on_link;
            self.release_link(turn, link, keep);
        }
        let Deferring::Proxy(mut relay) =
            std::mem::replace(&mut conn.deferring, Deferring::Nothing)
        else {
            return Next::Through;
        };
        self.log_relay(turn, &relay);
        let Some(framing) = relay.promote(turn.now.ms) else {
            self.retire_relay(relay);
            return Next::Through;
        };
        conn.session.take_turn(framing);
        conn.deferring = Deferring::Proxy(relay);
        if carries_next {
            let relay = conn.relay();
            relay.tries = 1;
            relay.reused = true;
            relay.sent = link.send.is_none();
            relay.stage = Stage::Head;
            relay.sent_at = turn.now.reaped_at;
            relay.first_sent = Some(relay.sent_at);
            relay.link = Some(link.key);
            return Next::Continue { rest };
        }
        Next::Go
    }

    /// After a response: a relay whose next call needs a connection of its own gets one.
    pub(in crate::engine) fn relay_next(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        if let Deferring::Proxy(relay) = &conn.deferring {
            if relay.link.is_none() && relay.tries == 0 {
                self.relay_go(turn, conn, None);
            }
        }
    }
}
