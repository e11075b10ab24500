//! A request body streamed upstream as it arrives: a proxied request whose body did not
//! come with its head is answered at its head (`http::Service::streams_body`), its head
//! forwarded with the client's `Content-Length` or as chunked, and its body taken from the
//! session as it is read (decoded from the client's chunks, framed again as percore's own
//! chunks) and sent behind the head, one send in flight at a time.
//!
//! Bounded: past [`OUTPUT_HIGH_WATER`] bytes waiting to go, the session reads no more of
//! the body (the client's input fills to its cap and is read no further) until the link's
//! send completes. Once body bytes have gone, the request is not sent again on another
//! connection. When the response ends the relay first (the server answered early), the rest
//! of the body is read and dropped.

use super::super::conn::{Conn, Deferring};
use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::Link;
use super::relay::{ForwardBody, Stage};
use crate::http::session::OUTPUT_HIGH_WATER;

impl<A: Application> Connections<A> {
    /// Takes what the session read of a streamed body: framed for the relay's link and sent
    /// when it can go, or dropped when no relay waits for it.
    pub(in crate::engine) fn stream_body(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let mut piece = self.buffers.reads.take();
        conn.session.take_streamed(&mut piece);
        let streaming = conn.session.is_streaming();
        if let Deferring::Proxy(relay) = &mut conn.deferring {
            if relay.body_open {
                let chunked = relay.call.body == ForwardBody::Chunked;
                let out = &mut relay.body_out;
                if chunked && !piece.is_empty() {
                    use std::io::Write;
                    let _ = write!(out, "{:x}\r\n", piece.len());
                    out.extend_from_slice(&piece);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(&piece);
                }
                if !streaming {
                    relay.body_open = false;
                    if chunked {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                }
                if let Some(mut link) = relay.link.and_then(|k| self.upstreams.links.take(k)) {
                    self.push_body(turn, conn, &mut link);
                    self.upstreams.links.put(link);
                }
            }
        }
        piece.clear();
        self.buffers.reads.give(piece);
    }

    /// Sends the relay's body bytes waiting, once its head is out and no send is in flight.
    pub(super) fn push_body(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, link: &mut Link) {
        let Deferring::Proxy(relay) = &mut conn.deferring else {
            return;
        };
        let ready = matches!(relay.stage, Stage::Head | Stage::Body(_));
        if !ready || relay.body_out.is_empty() || link.send.is_some() {
            return;
        }
        // Body bytes on their way: the request cannot be sent again elsewhere.
        relay.tries = relay.tries.max(2);
        self.send_bytes(turn, link, &relay.body_out);
        relay.body_out.clear();
    }

    /// Whether the session may read more of the relay's streamed body (not too much of it
    /// waits to go).
    pub(in crate::engine) fn body_has_room(conn: &Conn) -> bool {
        match &conn.deferring {
            Deferring::Proxy(relay) if relay.body_open => relay.body_out.len() < OUTPUT_HIGH_WATER,
            _ => true,
        }
    }
}
