//! WebSocket routes (RFC 6455): [`App::websocket`](crate::App::websocket) registers a
//! pattern whose `GET` upgrades are checked here (the handshake's rules, the subprotocol
//! chosen) and, when valid, handed to the engine with the handler the route's factory
//! makes; the engine reads the frames, answers pings and keeps the close handshake, and
//! calls the handler inline on the core's loop for each message. permessage-deflate is
//! agreed when the client offers it and `websocket.permessage_deflate` is on.

use std::rc::Rc;
use std::sync::Arc;

use super::request::Request;
use crate::engine::{Deferred, SendRefused, SocketHandler, SocketMessage, SocketOut, SocketStart};
use crate::http::response::ResponseWriter;
use crate::http::status::Status;
use crate::http::websocket::handshake::{self, Refusal};

/// A message from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8: checked as it came).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// Why a message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The close handshake has begun: nothing more may be sent.
    Closing,
    /// The connection's send queue would pass `websocket.max_send_queue_bytes`: the client
    /// is not reading. The message is dropped; the handler may close the connection (1008
    /// is the usual code) or send less.
    Full,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Closing => "the WebSocket is closing",
            SendError::Full => "the WebSocket's send queue is full",
        })
    }
}

impl std::error::Error for SendError {}

/// A WebSocket connection, as its handler answers through it.
pub struct WebSocket<'a> {
    out: SocketOut<'a>,
}

impl WebSocket<'_> {
    /// Sends a text message.
    pub fn text(&mut self, text: &str) -> Result<(), SendError> {
        self.out.text(text).map_err(refused)
    }

    /// Sends a binary message.
    pub fn binary(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.out.binary(bytes).map_err(refused)
    }

    /// Sends `message` back as it came (text as text, binary as binary).
    pub fn send(&mut self, message: Message<'_>) -> Result<(), SendError> {
        match message {
            Message::Text(text) => self.text(text),
            Message::Binary(bytes) => self.binary(bytes),
        }
    }

    /// Bytes queued on the connection and not yet sent.
    pub fn queued(&self) -> usize {
        self.out.queued()
    }

    /// Starts the close handshake with `code` (1000 for a normal close) and `reason` (cut to
    /// 123 bytes); the connection closes once the client answers (or after 5 s).
    pub fn close(&mut self, code: u16, reason: &str) {
        self.out.close(code, reason);
    }

    /// Joins the connection to the group `group` (it leaves every group when it ends).
    pub fn join(&mut self, group: &str) {
        self.out.join(group);
    }

    /// Takes the connection out of `group`.
    pub fn leave(&mut self, group: &str) {
        self.out.leave(group);
    }

    /// Publishes `message` to the members of `group` on every core (this connection too,
    /// if it is one): at the end of the core's turn, to this core's members directly and to
    /// the other cores' as a message to each (see [`Groups`](crate::Groups)).
    pub fn publish(&mut self, group: &str, message: Message<'_>) {
        let (text, payload) = message.parts();
        self.out.publish(group, text, payload);
    }
}

impl Message<'_> {
    /// Whether it is text, and its bytes.
    pub(crate) fn parts(&self) -> (bool, &[u8]) {
        match self {
            Message::Text(text) => (true, text.as_bytes()),
            Message::Binary(bytes) => (false, bytes),
        }
    }
}

fn refused(why: SendRefused) -> SendError {
    match why {
        SendRefused::Closing => SendError::Closing,
        SendRefused::Full => SendError::Full,
    }
}

/// What a WebSocket route does with its connections' messages: one value per connection,
/// made by the route's factory when the handshake is accepted, called inline on the core's
/// loop (no allocation of percore's per message).
pub trait WebSocketHandler: 'static {
    /// The connection is open (its `101` written), before any message: to greet the
    /// client or join groups.
    fn on_open(&mut self, socket: &mut WebSocket<'_>) {
        let _ = socket;
    }

    /// A whole message from the client (its fragments gathered).
    fn on_message(&mut self, message: Message<'_>, socket: &mut WebSocket<'_>);

    /// The connection ended: the close code the client sent (`None` when it sent none, or
    /// the connection ended without a close handshake: the client vanished, a protocol
    /// error, the idle timeout, the server's drain, a panic in `on_open` or `on_message`),
    /// and its reason.
    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        let _ = (code, reason);
    }
}

/// The engine's side of a handler (and whether it was told the connection is open).
struct Adapter<H>(H, bool);

impl<H: WebSocketHandler> SocketHandler for Adapter<H> {
    fn pull(&mut self, out: &mut SocketOut<'_>) {
        // The loop's first look at the connection comes right after its `101`.
        if !self.1 {
            self.1 = true;
            let mut socket = WebSocket {
                out: out.reborrow(),
            };
            self.0.on_open(&mut socket);
        }
    }

    fn message(&mut self, message: SocketMessage<'_>, out: &mut SocketOut<'_>) {
        let message = match message {
            SocketMessage::Text(text) => Message::Text(text),
            SocketMessage::Binary(bytes) => Message::Binary(bytes),
        };
        let mut socket = WebSocket {
            out: out.reborrow(),
        };
        self.0.on_message(message, &mut socket);
    }

    fn closed(&mut self, code: Option<u16>, reason: &str) {
        self.0.on_close(code, reason);
    }
}

/// A route's factory: the handler for one accepted connection.
pub(crate) type SocketFactory<S> =
    dyn Fn(&Request<'_>, Option<&'static str>, &Rc<S>) -> Box<dyn SocketHandler> + Send + Sync;

/// Makes a route's factory from the application's.
pub(crate) fn factory<S, H, F>(make: F) -> Arc<SocketFactory<S>>
where
    H: WebSocketHandler,
    F: Fn(&Request<'_>, Option<&'static str>, &S) -> H + Send + Sync + 'static,
{
    Arc::new(move |request, protocol, state: &Rc<S>| {
        Box::new(Adapter(make(request, protocol, state), false))
    })
}

/// Answers a request to a WebSocket route: an accepted upgrade goes to the engine with its
/// handler; anything else gets the status RFC 6455 names (426 with the version spoken for
/// a wrong version or no upgrade at all, 400 for a malformed handshake, 405 for a method
/// other than `GET`).
pub(crate) fn answer<S>(
    factory: &SocketFactory<S>,
    protocols: &[&'static str],
    deflate: bool,
    request: &Request<'_>,
    state: &Rc<S>,
    response: &mut ResponseWriter,
) -> Option<Deferred> {
    let raw = &request.inner;
    if !handshake::asks_websocket(raw) {
        let fields = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")];
        response.send(
            Status::UPGRADE_REQUIRED,
            None,
            &fields,
            &[b"WebSocket only\n"],
        );
        return None;
    }
    let opening = match handshake::check(raw) {
        Ok(opening) => opening,
        Err(refusal) => {
            let fields: &[(&str, &str)] = match refusal {
                Refusal::Version => &[("Sec-WebSocket-Version", "13")],
                Refusal::Method => &[("Allow", "GET")],
                Refusal::Bad(_) => &[],
            };
            response.send_status(refusal.status(), fields);
            return None;
        }
    };
    let protocol = opening.choose(protocols);
    let handler = factory(request, protocol, state);
    Some(Deferred::Socket(SocketStart {
        accept: opening.accept(),
        protocol,
        deflate: deflate.then(|| opening.deflate()).flatten(),
        handler,
    }))
}
