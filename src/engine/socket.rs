//! WebSocket connections (RFC 6455) on the core's ring: a client connection that switched
//! protocols after a `101`. What the engine needs of the application is a
//! [`SocketHandler`], given with the accepted handshake ([`SocketStart`]); the engine reads
//! the client's frames (`http::websocket::decoder`), answers pings, keeps the close
//! handshake, pings an idle connection and closes one quiet too long, and hands each
//! message to the handler inline on the loop, with a [`SocketOut`] to answer through.

use std::rc::Rc;

use super::background::DeferredLog;
use super::groups::{Groups, Published, SocketLink};
use super::token::Key;
use crate::access_log::WebSocketEntry;
use crate::http::websocket::decoder::{is_valid_close_code, Decoder};
use crate::http::websocket::deflate::MessageDeflate;
use crate::http::websocket::extension::Deflate;
use crate::http::websocket::frame::{opcode, write_close, write_frame, write_head};

/// Messages shorter than this go out uncompressed even with permessage-deflate (RFC 7692
/// lets each message choose): compressing them costs more than it saves.
const DEFLATE_MIN: usize = 64;

/// A message from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SocketMessage<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What the application does with a WebSocket's messages: called inline on the loop.
pub(crate) trait SocketHandler {
    /// A whole message from the client.
    fn message(&mut self, message: SocketMessage<'_>, out: &mut SocketOut<'_>);

    /// The connection ended: the close code the client sent (`None`: none, or the
    /// connection ended without a close handshake), and its reason.
    fn closed(&mut self, code: Option<u16>, reason: &str);

    /// The connection is open (its `101` written): the handler's link to the loop, for a
    /// handler with work outside it (an async one).
    fn opened(&mut self, link: SocketLink) {
        let _ = link;
    }

    /// The loop looks at the connection (the link stirred it, a send completed, frames
    /// came): the handler writes what waits for it.
    fn pull(&mut self, out: &mut SocketOut<'_>) {
        let _ = out;
    }

    /// Whether the handler takes messages now (while not, the client's frames wait in
    /// the connection's input, which stops its receives at their cap).
    fn wants_input(&self) -> bool {
        true
    }
}

/// An accepted handshake, for the engine to answer with `101` and carry on.
pub(crate) struct SocketStart {
    /// `Sec-WebSocket-Accept`.
    pub(crate) accept: [u8; 28],
    /// The subprotocol chosen, if any.
    pub(crate) protocol: Option<&'static str>,
    /// permessage-deflate, when agreed.
    pub(crate) deflate: Option<Deflate>,
    pub(crate) handler: Box<dyn SocketHandler>,
}

/// A core's permessage-deflate: the compressor and inflater, and their output buffers.
#[derive(Debug)]
pub(super) struct CoreDeflate {
    pub(super) codec: MessageDeflate,
    /// A message compressed, before its frame head is written.
    pub(super) packed: Vec<u8>,
    /// A message inflated, as the handler reads it.
    pub(super) inflated: Vec<u8>,
}

impl CoreDeflate {
    /// The capacity each buffer keeps between messages.
    const KEEP: usize = 256 * 1024;

    /// Frees a buffer that a large message grew past [`CoreDeflate::KEEP`]: they are the
    /// core's, and one message near `websocket.max_message_bytes` must not hold its size
    /// for the core's life.
    pub(super) fn shed(&mut self) {
        for buffer in [&mut self.packed, &mut self.inflated] {
            if buffer.capacity() > Self::KEEP {
                *buffer = Vec::new();
            }
        }
    }
}

/// The send queue's rule: `bytes` more may be queued behind `queued` under `max_queue`;
/// one message always goes when nothing waits, whatever its size (the message limit bounds
/// it): the bound is on what piles up.
pub(crate) fn queue_takes(queued: usize, bytes: usize, max_queue: usize) -> bool {
    queued == 0 || queued + bytes <= max_queue
}

/// Why a message could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendRefused {
    /// The close handshake began: nothing more may be sent.
    Closing,
    /// The send queue would pass `websocket.max_send_queue_bytes`.
    Full,
}

/// The handler's way to answer: messages and the close, queued on the connection.
pub(crate) struct SocketOut<'a> {
    pub(super) out: &'a mut Vec<u8>,
    /// Bytes already in flight (counted against the queue's bound).
    pub(super) in_flight: usize,
    pub(super) max_queue: usize,
    /// The close frame went out (or is queued).
    pub(super) closing: &'a mut bool,
    /// Messages sent through it, and their payloads' bytes.
    pub(super) sent: &'a mut (u64, u64),
    /// The core's compressor and the window agreed, with permessage-deflate.
    pub(super) deflate: Option<(&'a mut MessageDeflate, &'a mut Vec<u8>, u8)>,
    /// The core's groups, the connection's key in them, and the groups it joined.
    pub(super) groups: &'a mut Groups,
    pub(super) key: Key,
    pub(super) joined: &'a mut Vec<Rc<str>>,
}

impl SocketOut<'_> {
    /// The same, lent for a shorter while.
    pub(crate) fn reborrow(&mut self) -> SocketOut<'_> {
        SocketOut {
            out: &mut *self.out,
            in_flight: self.in_flight,
            max_queue: self.max_queue,
            closing: &mut *self.closing,
            sent: &mut *self.sent,
            deflate: self
                .deflate
                .as_mut()
                .map(|(codec, packed, bits)| (&mut **codec, &mut **packed, *bits)),
            groups: &mut *self.groups,
            key: self.key,
            joined: &mut *self.joined,
        }
    }

    /// Joins the connection to `group` (on this core; it leaves when it ends).
    pub(crate) fn join(&mut self, group: &str) {
        if let Some(name) = self.groups.join(group, self.key) {
            self.joined.push(name);
        }
    }

    /// Takes the connection out of `group`.
    pub(crate) fn leave(&mut self, group: &str) {
        if self.groups.leave(group, self.key) {
            self.joined.retain(|name| &**name != group);
        }
    }

    /// Publishes a text (`text`) or binary message to `group`'s members on every core
    /// (this connection among them if it is one), at the end of the turn.
    pub(crate) fn publish(&mut self, group: &str, text: bool, payload: &[u8]) {
        self.groups
            .published
            .push(Published::new(group, text, payload));
    }

    /// Queues a text message.
    pub(crate) fn text(&mut self, text: &str) -> Result<(), SendRefused> {
        self.frame(opcode::TEXT, text.as_bytes())
    }

    /// Queues a binary message.
    pub(crate) fn binary(&mut self, bytes: &[u8]) -> Result<(), SendRefused> {
        self.frame(opcode::BINARY, bytes)
    }

    /// Bytes queued and in flight.
    pub(crate) fn queued(&self) -> usize {
        self.out.len() + self.in_flight
    }

    /// The send queue's bound (`websocket.max_send_queue_bytes`).
    pub(crate) fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Whether the close handshake began (nothing more may be sent).
    pub(crate) fn closing(&self) -> bool {
        *self.closing
    }

    /// Starts the close handshake with `code` and `reason` (cut to fit a control frame);
    /// nothing more is sent after it.
    pub(crate) fn close(&mut self, code: u16, reason: &str) {
        if !*self.closing {
            *self.closing = true;
            // Codes a peer may not send (1005, 1006, 1015, unassigned ones) become 1011.
            let code = if is_valid_close_code(code) {
                code
            } else {
                1011
            };
            write_close(self.out, code, reason);
        }
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), SendRefused> {
        if *self.closing {
            return Err(SendRefused::Closing);
        }
        // One message always goes when nothing waits, whatever its size (the message limit
        // bounds it): the bound is on what piles up.
        let queued = self.out.len() + self.in_flight;
        let (bytes, compressed) = match &mut self.deflate {
            Some((codec, packed, bits)) if payload.len() >= DEFLATE_MIN => {
                packed.clear();
                codec.compress(payload, *bits, packed);
                (&packed[..], true)
            }
            _ => (payload, false),
        };
        if !queue_takes(queued, bytes.len() + 10, self.max_queue) {
            return Err(SendRefused::Full);
        }
        self.sent.0 += 1;
        self.sent.1 += payload.len() as u64;
        write_head(self.out, kind, true, compressed, bytes.len());
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// Queues a pong answering `payload`.
    pub(super) fn pong(&mut self, payload: &[u8]) {
        if !*self.closing {
            write_frame(self.out, opcode::PONG, payload);
        }
    }
}

/// How long the client has to answer our close frame before the connection is cut.
const CLOSE_WAIT_MS: u64 = 5_000;

/// A WebSocket connection's state.
pub(super) struct Socket {
    pub(super) decoder: Decoder,
    pub(super) handler: Box<dyn SocketHandler>,
    /// Our close frame is queued or sent.
    pub(super) closing: bool,
    /// When a frame last came or went (for the idle ping and timeout).
    pub(super) quiet_since: u64,
    /// When our close frame was queued (the client has `CLOSE_WAIT_MS` from then).
    pub(super) closing_since: Option<u64>,
    /// An idle ping went out and nothing came since.
    pub(super) pinged: bool,
    /// permessage-deflate's window for what we send, when agreed.
    pub(super) deflate: Option<u8>,
    /// What its access log line will say (with an access log), and the counts it takes.
    pub(super) log: Option<Box<DeferredLog>>,
    pub(super) entry: WebSocketEntry,
    /// Bytes written to the connection since the handshake (its `101` included).
    pub(super) bytes: u64,
    /// The groups it joined (left when it ends).
    pub(super) joined: Vec<Rc<str>>,
}

impl Socket {
    /// When the loop must look at it next, under `ping_ms` and `timeout_ms`.
    pub(super) fn due(&self, ping_ms: u64, timeout_ms: u64) -> u64 {
        if self.closing {
            return self.closing_since.unwrap_or(self.quiet_since) + CLOSE_WAIT_MS;
        }
        if ping_ms > 0 && !self.pinged {
            return self.quiet_since + ping_ms;
        }
        self.quiet_since + timeout_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle WebSocket costs percore beyond its connection's record (see the README):
    /// this box (its decoder holds no buffer while idle) and the handler's own value.
    #[test]
    fn an_idle_websocket_stays_small() {
        let size = std::mem::size_of::<Socket>();
        assert!(size <= 256, "Socket is {size} bytes");
        eprintln!("Socket: {size} bytes");
    }
}
