//! What the loop does with a WebSocket connection (see `socket`): the `101` written, the
//! client's bytes read into frames as they come (what followed the handshake first), each
//! message handed to the handler, pings answered, the close handshake kept both ways, an
//! idle connection pinged and then closed, and the handler told when it all ends.
//!
//! Backpressure: frames are read only while the connection's output is below the session's
//! high-water mark; past it the bytes wait in the connection's input (which stops the
//! receives at its cap) until a send drains the output.

use super::background::DeferredLog;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::conn::{Conn, Deferring, Ending};
use super::connections::Connections;
use super::drain::Lifecycle;
use super::socket::{CoreDeflate, Socket, SocketHandler, SocketMessage, SocketOut, SocketStart};
use super::turn::Turn;
use super::Application;
use crate::access_log::WebSocketEntry;
use crate::http::session::OUTPUT_HIGH_WATER;
use crate::http::status::Status;
use crate::http::websocket::decoder::{Decoder, Failure, Incoming};
use crate::http::websocket::deflate::{InflateError, MessageDeflate};
use crate::http::websocket::frame::{opcode, write_close, write_frame};

impl<A: Application> Connections<A> {
    /// The handshake was accepted: the `101` goes out and the connection speaks WebSocket.
    pub(super) fn open_socket(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        start: SocketStart,
        log: Option<Box<DeferredLog>>,
    ) {
        self.buffers.writes.lend(&mut conn.out);
        let before = conn.out.len();
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
        let bytes = (conn.out.len() - before) as u64;
        let class = Status::SWITCHING_PROTOCOLS.class();
        let read_at = turn.now.clock.instant(conn.read_at);
        let metrics = &turn.reporting.metrics;
        metrics.record_one(class, false, Some(read_at));
        metrics.counters.borrow_mut().websocket_opened += 1;
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
            closing_since: None,
            pinged: false,
            deflate: start.deflate.map(|d| d.server_window_bits),
            log,
            entry: WebSocketEntry::default(),
            bytes,
            joined: Vec::new(),
        }));
        if let Deferring::Socket(socket) = &mut conn.deferring {
            socket.handler.opened(self.hub.link(conn.key));
        }
    }

    /// The client's bytes: `fresh` from a receive, after what the connection's input holds.
    pub(super) fn socket_input(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, fresh: &[u8]) {
        // Frames are read where they lie: in `fresh` when nothing waits in the connection's
        // input (what is left of it is kept there after), else in the input with `fresh`
        // appended.
        let direct = conn.input.pending() == 0 && conn.sockets();
        if !direct && !fresh.is_empty() {
            self.buffers.reads.lend(&mut conn.input.buf);
            conn.input.buf.extend_from_slice(fresh);
        }
        let max_queue = self.settings.websocket.max_send_queue_bytes;
        let max_message = self.settings.websocket.max_message_bytes;
        // Answers are written into a pooled buffer (given back below when nothing waits in
        // it, so that an idle WebSocket holds none).
        self.buffers.writes.lend(&mut conn.out);
        let in_flight = conn.in_flight();
        let Deferring::Socket(socket) = &mut conn.deferring else {
            return;
        };
        // Messages are gathered in a pooled buffer, taken back once the connection is idle.
        if !socket.decoder.has_buffer() {
            socket.decoder.lend(self.buffers.reads.take());
        }
        let mut input: &[u8] = if direct { fresh } else { &conn.input.buf };
        let before = input.len();
        let out_before = conn.out.len();
        let mut ended = false;
        let mut linger = false;
        let mut counts = [0u64; 4];
        {
            // What the handler has for the connection first (an async one's sends).
            let mut sent = (0, 0);
            let mut out = SocketOut {
                out: &mut conn.out,
                in_flight,
                max_queue,
                closing: &mut socket.closing,
                sent: &mut sent,
                deflate: match (self.ws_deflate.as_deref_mut(), socket.deflate) {
                    (Some(core), Some(bits)) => Some((&mut core.codec, &mut core.packed, bits)),
                    _ => None,
                },
                groups: &mut self.groups,
                key: conn.key,
                joined: &mut socket.joined,
            };
            let handler = &mut *socket.handler;
            if catch_unwind(AssertUnwindSafe(|| handler.pull(&mut out))).is_err() {
                // The handler failed (its `on_open`, say): its connection ends (1011).
                out.close(1011, "internal error");
                tell_closed(&mut *socket.handler, None, "");
                ended = true;
                linger = true;
                turn.reporting.metrics.counters.borrow_mut().handler_panics += 1;
            }
            counts[2] += sent.0;
            counts[3] += sent.1;
        }
        while conn.out.len() < OUTPUT_HIGH_WATER && !ended && socket.handler.wants_input() {
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
            let mut sent = (0, 0);
            let mut panicked = false;
            let mut out = SocketOut {
                out: &mut conn.out,
                in_flight,
                max_queue,
                closing: &mut socket.closing,
                sent: &mut sent,
                deflate,
                groups: &mut self.groups,
                key: conn.key,
                joined: &mut socket.joined,
            };
            match next {
                Ok(None) => break,
                // Messages after our close frame are read and dropped (RFC 6455 §5.5.1).
                Ok(Some(Incoming::Text(_) | Incoming::Binary(_))) if *out.closing => {}
                // Only with permessage-deflate agreed is RSV1 allowed: inflated above.
                Ok(Some(Incoming::Compressed { .. })) => {}
                Ok(Some(Incoming::Text(bytes))) => {
                    counts[0] += 1;
                    counts[1] += bytes.len() as u64;
                    // SAFETY: the decoder checked the text as it came (or after inflating).
                    let text = unsafe { std::str::from_utf8_unchecked(bytes) };
                    let message = SocketMessage::Text(text);
                    panicked = !deliver(&mut *socket.handler, message, &mut out);
                }
                Ok(Some(Incoming::Binary(bytes))) => {
                    counts[0] += 1;
                    counts[1] += bytes.len() as u64;
                    let message = SocketMessage::Binary(bytes);
                    panicked = !deliver(&mut *socket.handler, message, &mut out);
                }
                Ok(Some(Incoming::Ping(payload))) => out.pong(payload),
                Ok(Some(Incoming::Pong(_))) => {}
                Ok(Some(Incoming::Close(code, reason))) => {
                    socket.entry.close = code;
                    if !*out.closing {
                        // Answered with the same code (an empty close with an empty one).
                        *out.closing = true;
                        match code {
                            Some(code) => write_close(out.out, code, ""),
                            None => write_frame(out.out, opcode::CLOSE, &[]),
                        }
                    }
                    tell_closed(&mut *socket.handler, code, reason);
                    ended = true;
                }
                Err(failure) => {
                    out.close(failure.code, failure.reason);
                    tell_closed(&mut *socket.handler, None, "");
                    ended = true;
                    // The client may still be sending (a frame refused from its head):
                    // read and dropped a while, so that the close frame is not lost to a
                    // reset.
                    linger = true;
                }
            }
            if panicked {
                // The handler failed: its connection ends (1011), the core goes on, and the
                // handler is told it ended (as after a failed `on_open`), to let go of what
                // it holds.
                out.close(1011, "internal error");
                tell_closed(&mut *socket.handler, None, "");
                ended = true;
                linger = true;
                turn.reporting.metrics.counters.borrow_mut().handler_panics += 1;
            }
            counts[2] += sent.0;
            counts[3] += sent.1;
        }
        if socket.closing {
            socket.closing_since.get_or_insert(turn.now.ms);
        }
        if linger {
            conn.ending = Ending::Linger;
        }
        if let Some(buffer) = socket.decoder.take_idle() {
            self.buffers.reads.give(buffer);
        }
        socket.entry.messages_in += counts[0];
        socket.entry.messages_out += counts[2];
        socket.bytes += (conn.out.len() - out_before) as u64;
        {
            let mut counters = turn.reporting.metrics.counters.borrow_mut();
            counters.websocket_messages_in += counts[0];
            counters.websocket_bytes_in += counts[1];
            counters.websocket_messages_out += counts[2];
            counters.websocket_bytes_out += counts[3];
        }
        let left = input.len();
        if !direct {
            conn.input.consume(before - left);
        } else if left > 0 && !ended {
            // Frames left unread (the output is full, or the handler takes no more now).
            self.buffers.reads.lend(&mut conn.input.buf);
            conn.input
                .buf
                .extend_from_slice(&fresh[fresh.len() - left..]);
        }
        if conn.input.pending() == 0 {
            self.buffers.reads.give(std::mem::take(&mut conn.input.buf));
        }
        if ended {
            self.finish_socket(turn, conn);
        }
        if let Some(core) = self.ws_deflate.as_deref_mut() {
            core.shed();
        }
        // The caller sends what was written (after a TLS connection's records are all
        // read, so that the buffer its records are sealed into is not lent again for
        // nothing and kept while the connection idles).
        if conn.out.is_empty() {
            self.buffers.writes.give(std::mem::take(&mut conn.out));
        }
    }

    /// The WebSocket is over (its handler told): it is counted and logged, and the
    /// connection closes once what is queued (the close frame last) has gone out.
    fn finish_socket(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let Deferring::Socket(socket) = std::mem::replace(&mut conn.deferring, Deferring::Nothing)
        else {
            return;
        };
        for group in &socket.joined {
            self.groups.leave(group, conn.key);
        }
        turn.reporting
            .metrics
            .counters
            .borrow_mut()
            .websocket_closed += 1;
        if let (Some(line), Some(log)) = (&socket.log, turn.reporting.log.as_mut()) {
            line.record_websocket(log, socket.bytes, socket.entry);
        }
        conn.session.abort();
        conn.input.clear();
    }

    /// The connection's deadline passed: an idle one is pinged, then closed with 1001, as is
    /// every one once a drain's grace for idle connections is over; one whose close went
    /// unanswered is cut.
    pub(super) fn socket_timed_out(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let ws = &self.settings.websocket;
        let (ping_ms, timeout_ms) = (ws.idle_ping_ms, ws.idle_timeout_ms);
        let Deferring::Socket(socket) = &mut conn.deferring else {
            return;
        };
        self.buffers.writes.lend(&mut conn.out);
        let now = turn.now.ms;
        if socket.closing {
            tell_closed(&mut *socket.handler, None, "");
            self.finish_socket(turn, conn);
            return conn.cut();
        }
        let before = conn.out.len();
        let leaving =
            matches!(turn.life, Lifecycle::Draining { idle_until, .. } if now >= idle_until);
        if leaving {
            // The server is going away: the client is asked to close.
            socket.closing = true;
            socket.closing_since = Some(now);
            write_close(&mut conn.out, 1001, "server going away");
        } else if ping_ms > 0 && !socket.pinged && now < socket.quiet_since + timeout_ms {
            socket.pinged = true;
            write_frame(&mut conn.out, opcode::PING, b"");
        } else {
            socket.closing = true;
            socket.closing_since = Some(now);
            write_close(&mut conn.out, 1001, "idle");
        }
        socket.bytes += (conn.out.len() - before) as u64;
        self.flush(turn, conn);
    }

    /// The connection ended under the WebSocket (the client left, a write failed, the
    /// drain's deadline): its handler is told.
    pub(super) fn socket_abandoned(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        if let Deferring::Socket(socket) = &mut conn.deferring {
            tell_closed(&mut *socket.handler, None, "");
            self.finish_socket(turn, conn);
        }
    }
}

/// Hands `message` to the handler; false if the handler panicked.
fn deliver(
    handler: &mut dyn SocketHandler,
    message: SocketMessage<'_>,
    out: &mut SocketOut<'_>,
) -> bool {
    catch_unwind(AssertUnwindSafe(|| handler.message(message, out))).is_ok()
}

/// Tells the handler its connection ended (a panic there is the handler's own business:
/// the connection is over either way).
fn tell_closed(handler: &mut dyn SocketHandler, code: Option<u16>, reason: &str) {
    let _ = catch_unwind(AssertUnwindSafe(|| handler.closed(code, reason)));
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
