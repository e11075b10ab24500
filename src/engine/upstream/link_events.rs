//! What an upstream connection's events mean for the relay it carries: connected (the
//! request goes out), sent (the read timeout starts), bytes (the response, `response`),
//! closed or failed (the request goes again, or the relay fails), and the connection's
//! return to its pool when the response is through. A link carrying a task's call hands
//! its events to `calls`.

use super::super::conn::{Conn, Deferring};
use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::{Link, LinkState};
use super::pipeline::Next;
use super::relay::Stage;
use super::response::Fed;
use crate::http::status::Status;
use crate::http::upstream_head::BodyFraming;

impl<A: Application> Connections<A> {
    /// The client connection whose request the link carries, taken from the table; when it
    /// is gone, the link is retired (what it carries is of no use) and none is returned.
    fn client_of(&mut self, turn: &mut Turn<'_>, link: &mut Link) -> Option<Box<Conn>> {
        let conn = link.client.and_then(|key| self.table.take(key));
        if conn.is_none() {
            link.client = None;
            self.retire(turn, link);
        }
        conn
    }

    /// The link's connect completed: its client's request goes out.
    pub(super) fn link_connected(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if link.call.is_some() {
            return self.call_connected(turn, link);
        }
        if link.stream.is_some() {
            return self.stream_connected(turn, link);
        }
        let Some(mut conn) = self.client_of(turn, link) else {
            return;
        };
        let relay = conn.relay();
        relay.stage = Stage::Head;
        relay.since = turn.now.ms;
        relay.sent_at = turn.now.reaped_at;
        relay.first_sent.get_or_insert(relay.sent_at);
        self.send_request(turn, link, &relay.call.request);
        self.settle(turn, conn);
    }

    /// A send on the link completed (`result` bytes, or an error).
    pub(super) fn link_sent(&mut self, turn: &mut Turn<'_>, link: &mut Link, result: i32) {
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
        // TLS may have more to send (the request behind the handshake, a reply).
        self.link_tls_flush(turn, link);
        if link.call.is_some() {
            // A call's timeout is its task's.
            return;
        }
        if link.stream.is_some() {
            return self.stream_sent(turn, link);
        }
        // The request is out: the read timeout runs from now.
        if let Some(mut conn) = link.client.and_then(|key| self.table.take(key)) {
            if let Deferring::Proxy(relay) = &mut conn.deferring {
                match relay.stage {
                    Stage::Head => {
                        relay.sent = true;
                        relay.since = turn.now.ms;
                    }
                    // The client's next bytes may go.
                    Stage::Tunnel(_) => self.tunnel_push(turn, &mut conn, link),
                    _ => {}
                }
                // A streamed body's bytes follow the head (what the client's input holds
                // is read first: it may have waited for room); pipelined requests queued
                // meanwhile go out together.
                if conn.session.is_streaming() {
                    self.pump(turn, &mut conn, &[]);
                }
                self.push_body(turn, &mut conn, link);
                self.pipeline(turn, &mut conn, link);
            }
            self.settle(turn, conn);
        }
    }

    /// Bytes from the link's server. Returns the client connection when its response is
    /// through.
    pub(super) fn link_data(
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
        if link.call.is_some() {
            self.call_data(turn, link, data);
            return None;
        }
        if link.stream.is_some() {
            self.stream_data(turn, link, data);
            return None;
        }
        let mut conn = self.client_of(turn, link)?;
        let mut data = data;
        loop {
            let fed = self.feed_relay(turn, &mut conn, link, data);
            match self.relay_outcome(turn, &mut conn, link, fed) {
                None => break,
                Some(Next::Through | Next::Go) => return Some(conn),
                // The next pipelined response may have begun in these very bytes.
                Some(Next::Continue { rest }) => {
                    data = &data[data.len() - rest..];
                    if data.is_empty() {
                        break;
                    }
                }
            }
        }
        self.settle(turn, conn);
        None
    }

    /// The link's server closed it, or it failed. Returns the client connection when its
    /// response is through.
    pub(super) fn link_ended(&mut self, turn: &mut Turn<'_>, link: &mut Link) -> Option<Box<Conn>> {
        if link.state != LinkState::Busy {
            return None;
        }
        if link.call.is_some() {
            self.call_ended(turn, link);
            return None;
        }
        if link.stream.is_some() {
            self.stream_ended(turn, link, false);
            return None;
        }
        let mut conn = self.client_of(turn, link)?;
        let relay = conn.relay();
        let fed = match &mut relay.stage {
            Stage::Body(body) if body.framing == BodyFraming::UntilClose => {
                if body.chunked_out && !body.dropped {
                    self.buffers.writes.lend(&mut conn.out);
                    conn.out.extend_from_slice(b"0\r\n\r\n");
                }
                Fed::Done {
                    reusable: false,
                    rest: 0,
                }
            }
            // Cut short: the client must see it truncated.
            Stage::Body(_) => Fed::Failed(Status::BAD_GATEWAY),
            Stage::Tunnel(_) => self.tunnel_closed(&mut conn),
            Stage::Head | Stage::Connect if link.input.is_empty() => {
                link.client = None;
                self.detach(turn, link);
                self.relay_retry_or_fail(turn, &mut conn, false);
                self.settle(turn, conn);
                return None;
            }
            Stage::Head | Stage::Connect => Fed::Failed(Status::BAD_GATEWAY),
        };
        if self.relay_outcome(turn, &mut conn, link, fed).is_some() {
            return Some(conn);
        }
        self.settle(turn, conn);
        None
    }

    /// The link failed before any response byte (its connect, or its send): the request
    /// goes again or the client gets a 502.
    pub(super) fn link_failed(&mut self, turn: &mut Turn<'_>, link: &mut Link, connect: bool) {
        if link.call.is_some() {
            return self.call_link_failed(turn, link, connect);
        }
        if link.stream.is_some() {
            return self.stream_ended(turn, link, true);
        }
        let Some(mut conn) = self.client_of(turn, link) else {
            return;
        };
        link.client = None;
        self.detach(turn, link);
        self.relay_retry_or_fail(turn, &mut conn, connect);
        self.settle(turn, conn);
    }

    /// The link no longer carries a request: it is closed (its response was not complete).
    pub(super) fn detach(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        self.upstreams.groups[link.group].set_busy(link.server, false);
        self.shut_link(turn, link);
    }

    /// A busy link whose client is gone: closed (what it carried is of no use).
    pub(super) fn retire(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if link.state == LinkState::Busy || link.state == LinkState::Connecting {
            self.detach(turn, link);
        }
    }

    /// The link's response is through: back to its server's pool when it may carry
    /// another request and there is room, closed otherwise.
    pub(super) fn release_link(&mut self, turn: &mut Turn<'_>, link: &mut Link, reusable: bool) {
        let group = &mut self.upstreams.groups[link.group];
        group.set_busy(link.server, false);
        link.client = None;
        link.call = None;
        let young = turn.now.ms.saturating_sub(link.opened) < group.settings.keepalive_time_ms;
        let keep = reusable
            && young
            && link.send.is_none()
            && link.served < group.settings.keepalive_requests
            && group.has_room(link.server);
        link.paused = false;
        if keep {
            link.state = LinkState::Idle;
            link.since = turn.now.ms;
            group.keep_idle(link.server, link.key);
        } else {
            self.shut_link(turn, link);
        }
    }
}
