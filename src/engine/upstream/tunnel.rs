//! A relay that became a tunnel: the client asked to switch protocols (`Upgrade`, e.g. a
//! WebSocket), the proxy passed the ask on, and the server answered `101`. From then on the
//! connection speaks no HTTP: its bytes pass unparsed both ways, each direction with its
//! own backpressure, until either side closes.
//!
//! Client to server: what the client sends waits in its connection's input until the link
//! has no send in flight, then goes in one send; a client that sends faster than the server
//! reads fills its input to the cap and stops being read. Server to client: as a response
//! body, into the connection's output, the link's reads stopped past the high-water mark.
//! The client's close is passed on as a shutdown of the link's writing side once all it
//! sent is out; the server's close ends the tunnel (what it sent reaches the client first).
//! The read timeout bounds a tunnel with no byte either way.
//!
//! Only a `101` to a request that asked for the upgrade opens a tunnel: any other answer is
//! an ordinary response, and the client's next bytes are parsed as HTTP again.

use super::super::conn::{Conn, Deferring};
use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::Link;
use super::relay::{Stage, Tunnel};
use super::response::Fed;
use crate::http::fields::head_fields;
use crate::http::status::Status;
use crate::http::upstream_head::write_end_to_end;

impl<A: Application> Connections<A> {
    /// The server switched protocols (`head`, the `101`'s bytes; `rest`, what followed it):
    /// the client gets the `101` with its end-to-end fields and the protocol it switched to,
    /// and the relay becomes a tunnel.
    pub(super) fn open_tunnel(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        link: &mut Link,
        head: &[u8],
        rest: &[u8],
    ) -> Fed {
        // RFC 9110 section 15.2.2: a 101 names the protocol it switches to.
        let Some(upgrade) = head_fields(head)
            .find(|(name, _)| name.eq_ignore_ascii_case(b"upgrade"))
            .map(|(_, value)| value)
        else {
            return Fed::Failed(Status::BAD_GATEWAY);
        };
        self.buffers.writes.lend(&mut conn.out);
        let before = conn.out.len();
        let out = &mut conn.out;
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        write_end_to_end(head, out);
        out.extend_from_slice(b"Upgrade: ");
        out.extend_from_slice(upgrade);
        out.extend_from_slice(b"\r\nConnection: upgrade\r\n\r\n");
        out.extend_from_slice(rest);
        let written = (conn.out.len() - before) as u64;
        let relay = conn.relay();
        relay.answered = Some(Status::SWITCHING_PROTOCOLS);
        relay.upstream_status = Some(101);
        relay.bytes = written;
        relay.stage = Stage::Tunnel(Tunnel::default());
        let waited = turn.now.reaped_at.saturating_duration_since(relay.sent_at);
        turn.reporting.metrics.record_upstream(waited);
        let class = Status::SWITCHING_PROTOCOLS.class();
        turn.reporting
            .metrics
            .record_one(class, false, Some(relay.read_at));
        // What the client sent after its request is the new protocol's already.
        self.tunnel_push(turn, conn, link);
        Fed::More
    }

    /// Bytes from the server through the tunnel, for the client.
    pub(super) fn tunnel_down(&mut self, conn: &mut Conn, data: &[u8]) -> Fed {
        self.buffers.writes.lend(&mut conn.out);
        conn.out.extend_from_slice(data);
        conn.relay().bytes += data.len() as u64;
        Fed::More
    }

    /// Bytes from the client through the tunnel (`fresh`, after what waits in its input),
    /// for the server: sent at once if the link has no send in flight.
    pub(in crate::engine) fn tunnel_up(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        fresh: &[u8],
    ) {
        if !fresh.is_empty() {
            self.buffers.reads.lend(&mut conn.input.buf);
            conn.input.buf.extend_from_slice(fresh);
        }
        let Deferring::Proxy(relay) = &conn.deferring else {
            return;
        };
        if let Some(mut link) = relay.link.and_then(|key| self.upstreams.links.take(key)) {
            self.tunnel_push(turn, conn, &mut link);
            self.upstreams.links.put(link);
        }
    }

    /// Sends what the client's input holds on `link` if it has no send in flight; once the
    /// client has closed and all it sent is out, shuts the link's writing side.
    pub(super) fn tunnel_push(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, link: &mut Link) {
        if link.send.is_some() {
            return;
        }
        let now = turn.now.ms;
        if conn.input.pending() > 0 {
            self.send_bytes(turn, link, conn.input.bytes());
            conn.input.clear();
            conn.relay().since = now;
        }
        if conn.input.pending() == 0 {
            self.buffers.reads.give(std::mem::take(&mut conn.input.buf));
        }
        let ended = conn.input_ended;
        let Stage::Tunnel(tunnel) = &mut conn.relay().stage else {
            return;
        };
        if ended && link.send.is_none() && !tunnel.shut_up {
            tunnel.shut_up = true;
            // SAFETY: shutdown(2) on the link's own socket.
            unsafe { libc::shutdown(link.fd, libc::SHUT_WR) };
        }
    }

    /// The server closed its side of the tunnel: what it sent goes to the client, then the
    /// client connection closes.
    pub(super) fn tunnel_closed(&mut self, conn: &mut Conn) -> Fed {
        conn.session.abort();
        conn.input_ended = true;
        conn.input.clear();
        self.buffers.reads.give(std::mem::take(&mut conn.input.buf));
        Fed::Done {
            reusable: false,
            rest: 0,
        }
    }
}
