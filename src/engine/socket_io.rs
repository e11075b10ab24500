//! What the loop does with a WebSocket connection (see `socket`): the `101` written, the
//! client's bytes read into frames as they come (what followed the handshake first), each
//! message handed to the handler, pings answered, the close handshake kept both ways, an
//! idle connection pinged and then closed, and the handler told when it all ends.
//!
//! Backpressure: frames are read only while the connection's output is below the session's
//! high-water mark; past it the bytes wait in the connection's input (which stops the
//! receives at its cap) until a send drains the output.

use super::conn::{Conn, Deferring};
use super::connections::Connections;
use super::socket::{CoreDeflate, Socket, SocketMessage, SocketOut, SocketStart};
use super::turn::Turn;
use super::Application;
use crate::http::session::OUTPUT_HIGH_WATER;
use crate::http::status::Status;
use crate::http::websocket::decoder::{Decoder, Failure, Incoming};
use crate::http::websocket::deflate::{InflateError, MessageDeflate};
use crate::http::websocket::frame::{opcode, write_close, write_frame};

impl<A: Application> Connections<A> {
    /// The handshake was accepted: the `101` goes out and the connection speaks WebSocket.
    pub(super) fn open_socket(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, start: SocketStart) {
        self.buffers.writes.lend(&mut conn.out);
        let out = &mut conn.out;
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: ",
        );
        out.extend_from_slice(&start.accept);
        if let Some(protocol) = start.protocol {
            out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
            out.extend_from_slice(protocol.as_bytes());
        }
        if let Some(deflate) = &start.deflate {
            out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
            deflate.write_response(out);
        }
        out.extend_from_slice(b"\r\n\r\n");
        let class = Status::SWITCHING_PROTOCOLS.class();
        let read_at = turn.now.clock.instant(conn.read_at);
        turn.reporting
            .metrics
            .record_one(class, false, Some(read_at));
        let ws = &self.settings.websocket;
        if start.deflate.is_some() && self.ws_deflate.is_none() {
            self.ws_deflate = Some(Box::new(CoreDeflate {
                codec: MessageDeflate::new(ws.deflate_level),
                packed: Vec::new(),
                inflated: Vec::new(),
            }));
        }
        conn.deferring = Deferring::Socket(Box::new(Socket {
            decoder: Decoder::new(ws.max_message_bytes, start.deflate.is_some()),
            handler: start.handler,
            closing: false,
            quiet_since: turn.now.ms,
            pinged: false,
            deflate: start.deflate.map(|d| d.server_window_bits),
        }));
    }

    /// The client's bytes: `fresh` from a receive, after what the connection's input holds.
    pub(super) fn socket_input(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, fresh: &[u8]) {
        if !fresh.is_empty() {
            self.buffers.reads.lend(&mut conn.input.buf);
            conn.input.buf.extend_from_slice(fresh);
        }
        let max_queue = self.settings.websocket.max_send_queue_bytes;
        let max_message = self.settings.websocket.max_message_bytes;
        let in_flight = conn.in_flight();
        let Deferring::Socket(socket) = &mut conn.deferring else {
            return;
        };
        let mut input: &[u8] = &conn.input.buf;
        let before = input.len();
        let mut ended = None;
        while conn.out.len() < OUTPUT_HIGH_WATER && ended.is_none() {
            let next = socket.decoder.next(&mut input);
            if input.len() < before {
                socket.quiet_since = turn.now.ms;
                socket.pinged = false;
            }
            let (mut deflate, inflated) = match (self.ws_deflate.as_deref_mut(), socket.deflate) {
                (Some(core), Some(bits)) => (
                    Some((&mut core.codec, &mut core.packed, bits)),
                    Some(&mut core.inflated),
                ),
                _ => (None, None),
            };
            // A compressed message is inflated first (within the message limit), and its
            // text checked then.
            let next = match (next, &mut deflate, inflated) {
                (
                    Ok(Some(Incoming::Compressed { text, bytes })),
                    Some((codec, _, _)),
                    Some(inflated),
                ) => inflate_message(codec, inflated, text, bytes, max_message).map(Some),
                (next, _, _) => next,
            };
            let mut out = SocketOut {
                out: &mut conn.out,
                in_flight,
                max_queue,
                closing: &mut socket.closing,
                deflate,
            };
            match next {
                Ok(None) => break,
                // Messages after our close frame are read and dropped (RFC 6455 §5.5.1).
                Ok(Some(Incoming::Text(_) | Incoming::Binary(_))) if *out.closing => {}
                // Only with permessage-deflate agreed is RSV1 allowed: inflated above.
                Ok(Some(Incoming::Compressed { .. })) => {}
                Ok(Some(Incoming::Text(bytes))) => {
                    // SAFETY: the decoder checked the text as it came (uncompressed).
                    let text = unsafe { std::str::from_utf8_unchecked(bytes) };
                    socket.handler.message(SocketMessage::Text(text), &mut out);
                }
                Ok(Some(Incoming::Binary(bytes))) => {
                    socket
                        .handler
                        .message(SocketMessage::Binary(bytes), &mut out);
                }
                Ok(Some(Incoming::Ping(payload))) => out.pong(payload),
                Ok(Some(Incoming::Pong(_))) => {}
                Ok(Some(Incoming::Close(code, reason))) => {
                    if !*out.closing {
                        // Answered with the same code (an empty close with an empty one).
                        *out.closing = true;
                        match code {
                            Some(code) => write_close(out.out, code, ""),
                            None => write_frame(out.out, opcode::CLOSE, &[]),
                        }
                    }
                    socket.handler.closed(code, reason);
                    ended = Some(());
                }
                Err(failure) => {
                    if !*out.closing {
                        *out.closing = true;
                        write_close(out.out, failure.code, failure.reason);
                    }
                    socket.handler.closed(None, "");
                    ended = Some(());
                }
            }
        }
        let used = before - input.len();
        conn.input.consume(used);
        if conn.input.pending() == 0 {
            self.buffers.reads.give(std::mem::take(&mut conn.input.buf));
        }
        if ended.is_some() {
            self.finish_socket(conn);
        }
        self.flush(turn, conn);
    }

    /// The WebSocket is over (its handler told): the connection closes once what is queued
    /// (the close frame last) has gone out.
    fn finish_socket(&mut self, conn: &mut Conn) {
        conn.deferring = Deferring::Nothing;
        conn.session.abort();
        conn.input.clear();
    }

    /// The connection's deadline passed: an idle one is pinged, then closed with 1001; one
    /// whose close went unanswered is cut.
    pub(super) fn socket_timed_out(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let ws = &self.settings.websocket;
        let (ping_ms, timeout_ms) = (ws.idle_ping_ms, ws.idle_timeout_ms);
        let Deferring::Socket(socket) = &mut conn.deferring else {
            return;
        };
        self.buffers.writes.lend(&mut conn.out);
        let now = turn.now.ms;
        if socket.closing {
            socket.handler.closed(None, "");
            self.finish_socket(conn);
            return conn.cut();
        }
        if ping_ms > 0 && !socket.pinged && now < socket.quiet_since + timeout_ms {
            socket.pinged = true;
            write_frame(&mut conn.out, opcode::PING, b"");
        } else {
            socket.closing = true;
            socket.quiet_since = now;
            write_close(&mut conn.out, 1001, "idle");
        }
        self.flush(turn, conn);
    }

    /// The connection ended under the WebSocket (the client left, a write failed, the
    /// drain's deadline): its handler is told.
    pub(super) fn socket_abandoned(&mut self, conn: &mut Conn) {
        if let Deferring::Socket(socket) = &mut conn.deferring {
            socket.handler.closed(None, "");
            conn.deferring = Deferring::Nothing;
        }
    }
}

/// Inflates a compressed message into `inflated` (within `limit` bytes) and checks its text.
fn inflate_message<'a>(
    codec: &mut MessageDeflate,
    inflated: &'a mut Vec<u8>,
    text: bool,
    bytes: &[u8],
    limit: usize,
) -> Result<Incoming<'a>, Failure> {
    inflated.clear();
    match codec.inflate(bytes, limit, inflated) {
        Err(InflateError::TooBig) => Err(Failure {
            code: 1009,
            reason: "message too big",
        }),
        Err(InflateError::Invalid) => Err(Failure {
            code: 1007,
            reason: "invalid compressed data",
        }),
        Ok(()) if !text => Ok(Incoming::Binary(inflated)),
        Ok(()) if std::str::from_utf8(inflated).is_ok() => Ok(Incoming::Text(inflated)),
        Ok(()) => Err(Failure {
            code: 1007,
            reason: "text is not UTF-8",
        }),
    }
}
