//! One connection's record: its socket, its place in the table, its protocol session, the
//! buffers it is lent while it has bytes to hold, and where it stands, as enums with named
//! transitions rather than flags.
//!
//! A connection is a record, not a task: the core finds it by its key when a completion,
//! a file read or a deadline names it, acts, and puts it back (`close` decides whether it
//! lives on).

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;

use super::background::DeferredLog;
use super::buffers::Flight;
use super::outflow::Outflow;
use super::socket::Socket;
use super::token::Key;
use super::transport::Transport;
use super::upstream::relay::Relay;
use crate::files::read::FileSource;
use crate::files::FileBody;
use crate::http::session::Session;

/// Ciphertext a TLS connection may have waiting to go out (its wire buffer and what is left
/// of a send of it in flight) before it is read no further: what a client makes percore send
/// back without reading it (key update answers, warnings) cannot pile up, and a slow reader
/// holds at most this much besides the batch it is being sent.
pub(super) const MAX_UNSENT_TLS: usize = 64 * 1024;

/// No time: the value of a record's optional times when unset (they are `u64`, not
/// `Option<u64>`, to keep the record small).
pub(super) const NEVER: u64 = u64::MAX;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Its PROXY protocol header is still to be read (`server.proxy_protocol`).
    ProxyHeader,
    /// Its TLS handshake is under way.
    Handshake,
    /// Exchanging requests and responses.
    Open,
    /// Our side is shut after the last response; what the client still sends is read and
    /// dropped until it closes, `dropped` reaches the linger bound, or `until` passes.
    Linger { dropped: u32, until: u64 },
    /// Cut while a send was in flight: the record waits for that send's completion.
    Closing,
}

/// Where the connection's receive stands in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Recv {
    /// A multishot receive is armed.
    Armed,
    /// None armed: the connection holds enough unprocessed input, or it has ended.
    Off,
    /// Ended with `ENOBUFS` (the buffer ring ran dry); armed again once buffers are back.
    Starved,
}

/// The connection's send.
#[derive(Debug)]
pub(super) enum Send {
    /// None in flight.
    Idle,
    /// One in flight. Boxed, so that a connection with none (an idle one) keeps 8 bytes for
    /// it rather than 48; the boxes come from a per-core pool, so a send allocates nothing.
    InFlight(Box<Flight>),
}

/// The deferred answer the connection is finishing, if any; it answers nothing more
/// meanwhile.
pub(super) enum Deferring {
    /// Nothing.
    Nothing,
    /// A static file's body on its way out.
    File(Box<Transfer>),
    /// An async handler making the response to its last request.
    Task,
    /// An upstream server answering its last request, relayed as it comes.
    Proxy(Box<Relay>),
    /// An async handler writing its response's body over time, behind the head written.
    Stream(Box<Outflow>),
    /// A WebSocket: the connection switched protocols.
    Socket(Box<Socket>),
}

/// A static file's body on its way out.
pub(super) struct Transfer {
    pub(super) body: Box<FileBody>,
    pub(super) pos: u64,
    pub(super) end: u64,
    /// Small enough to join the batch: read into the output buffer behind its head.
    pub(super) small: bool,
    /// Where its response head starts in the output buffer (small bodies).
    pub(super) head: usize,
    /// Where its bytes start in the output buffer (small bodies).
    pub(super) start: usize,
    /// glommio's handle on the file, opened by the first read that had to wait.
    pub(super) source: Option<Rc<FileSource>>,
    /// A glommio task is reading for it.
    pub(super) reading: bool,
    /// The access log's line of a body coded as it goes, whose length is known only at its
    /// end (written then, or when the connection ends first), and its head's length.
    pub(super) log: Option<(Box<DeferredLog>, u64)>,
}

/// What happens once the session has ended and its last response is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// Close the socket.
    Close,
    /// Shut our side and linger (input left unread, or an error response that the client,
    /// still sending, might otherwise lose to a reset).
    Linger,
}

/// Input received but not processed yet, held only while a request is incomplete or
/// processing waits (no capacity otherwise). What is used goes at once ([`Input::consume`]),
/// so the bytes waiting always start the buffer and no offset is kept.
#[derive(Default)]
pub(super) struct Input {
    pub(super) buf: Vec<u8>,
}

impl Input {
    /// Bytes waiting.
    pub(super) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The bytes waiting.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Drops everything.
    pub(super) fn clear(&mut self) {
        self.buf.clear();
    }

    /// Drops the first `used` bytes, moving the rest to the front (rarely any: a receive's
    /// bytes are answered where they lie, and the input kept is at most about a head).
    pub(super) fn consume(&mut self, used: usize) {
        self.buf.drain(..used);
    }
}

/// One connection's record.
pub(super) struct Conn {
    pub(super) fd: RawFd,
    pub(super) key: Key,
    pub(super) phase: Phase,
    pub(super) recv: Recv,
    /// Which arming of the receive is current (a cancelled one may still complete).
    pub(super) recv_epoch: u8,
    /// The client closed its side, or the connection failed: nothing more will be read.
    pub(super) input_ended: bool,
    pub(super) send: Send,
    pub(super) deferring: Deferring,
    pub(super) ending: Ending,
    pub(super) session: Session,
    pub(super) input: Input,
    /// Responses not yet handed to a send (no capacity while empty).
    pub(super) out: Vec<u8>,
    /// The client's address as a PROXY header named it, or the socket's peer when the
    /// access log needs it (boxed: most connections have neither).
    pub(super) client: Option<Box<SocketAddr>>,
    /// How its bytes are carried: as they are, or in TLS records.
    pub(super) transport: Transport,
    /// When the head now being read started (ms), for the header timeout; [`NEVER`] when
    /// none is.
    pub(super) head_started: u64,
    /// Last time bytes moved either way (ms), for the keep-alive and body timeouts.
    pub(super) active_ms: u64,
    /// When the bytes now being answered were reaped: the start of their latency (a
    /// `Clock::stamp`).
    pub(super) read_at: u64,
}

impl Conn {
    /// A connection just accepted.
    /// `now` is the time in ms and as a `Clock::stamp`.
    pub(super) fn new(fd: RawFd, key: Key, session: Session, now: (u64, u64)) -> Conn {
        Conn {
            fd,
            key,
            phase: Phase::Open,
            recv: Recv::Off,
            recv_epoch: 0,
            input_ended: false,
            send: Send::Idle,
            deferring: Deferring::Nothing,
            ending: Ending::Close,
            session,
            input: Input::default(),
            out: Vec::new(),
            client: None,
            transport: Transport::Plain,
            head_started: NEVER,
            active_ms: now.0,
            read_at: now.1,
        }
    }

    /// A send is in flight.
    pub(super) fn sending(&self) -> bool {
        matches!(self.send, Send::InFlight(_))
    }

    /// Bytes of the send in flight not yet sent.
    pub(super) fn in_flight(&self) -> usize {
        match &self.send {
            Send::InFlight(flight) => flight.buf.len() - flight.sent,
            _ => 0,
        }
    }

    /// It speaks WebSocket.
    pub(super) fn sockets(&self) -> bool {
        matches!(self.deferring, Deferring::Socket(_))
    }

    /// Between requests with nothing buffered, sent or awaited: a keep-alive wait.
    pub(super) fn idle(&self) -> bool {
        self.session.is_between_requests()
            && self.input.pending() == 0
            && !self.sending()
            && !self.has_output()
            && matches!(self.deferring, Deferring::Nothing)
    }

    /// A file read or an async handler is at work for it.
    pub(super) fn working(&self) -> bool {
        match &self.deferring {
            Deferring::Nothing => false,
            Deferring::Task | Deferring::Proxy(_) | Deferring::Stream(_) => true,
            Deferring::Socket(_) => false,
            Deferring::File(transfer) => transfer.reading,
        }
    }

    /// Whether it should be receiving: it is open, lingering or waiting for its PROXY
    /// header, the client has not closed, it is not already holding `cap` bytes of
    /// unprocessed input, and, on TLS, it has not [`MAX_UNSENT_TLS`] bytes waiting to go
    /// out.
    ///
    /// The cap is soft: completions the kernel posted before a cancel took effect are still
    /// kept (in order), so a connection may hold up to what its socket had already received
    /// on top of it.
    pub(super) fn wants_input(&self, cap: usize) -> bool {
        match self.phase {
            Phase::Closing => false,
            Phase::Linger { .. } => !self.input_ended,
            Phase::Open | Phase::ProxyHeader | Phase::Handshake => {
                !self.input_ended
                    // A WebSocket reads on whatever its HTTP session said of more requests
                    // (its upgrade may have been the last one the session would take).
                    && (!self.session.is_closed() || self.sockets())
                    && !self.transport.is_over()
                    && self.input.pending() < cap
                    && self.unsent_tls() <= MAX_UNSENT_TLS
            }
        }
    }

    /// TLS records waiting to go out: the wire buffer, and what is left of a send of records
    /// in flight (a file chunk is not counted: a file's transfer is bounded by its chunks).
    pub(super) fn unsent_tls(&self) -> usize {
        if self.transport.tls().is_none() {
            return 0;
        }
        let in_flight = match &self.send {
            Send::InFlight(flight) if !flight.chunk => flight.buf.len() - flight.sent,
            _ => 0,
        };
        self.transport.wire_len() + in_flight
    }

    /// Bytes waiting to go out: responses, or TLS records.
    pub(super) fn has_output(&self) -> bool {
        !self.out.is_empty() || self.transport.has_wire()
    }

    /// The relay of a connection whose request is at an upstream server.
    pub(super) fn relay(&mut self) -> &mut Relay {
        match &mut self.deferring {
            Deferring::Proxy(relay) => relay,
            _ => unreachable!("the connection's request is at an upstream"),
        }
    }

    /// Its relay streams a request body upstream that is not all read yet.
    pub(super) fn relay_body_open(&self) -> bool {
        matches!(&self.deferring, Deferring::Proxy(relay) if relay.body_open())
    }

    /// Its request's exchange became a tunnel: its bytes are an upstream server's.
    pub(super) fn tunnels(&self) -> bool {
        matches!(&self.deferring, Deferring::Proxy(relay) if relay.tunnels())
    }

    /// Ends the connection now, whatever it was doing: a send in flight fails at once.
    pub(super) fn cut(&mut self) {
        // SAFETY: shutdown(2) on the connection's own socket.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        self.input_ended = true;
        self.phase = Phase::Closing;
    }

    /// Shuts our side and keeps reading until `until`, so unread client bytes do not turn
    /// the close into a reset that could destroy the response just sent.
    pub(super) fn linger(&mut self, until: u64) {
        // SAFETY: shutdown(2) on the connection's own socket.
        unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
        self.phase = Phase::Linger { dropped: 0, until };
        self.input.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every connection costs while idle starts here (see the README's table): a record
    /// of up to 184 bytes takes a 192-byte malloc chunk, and each 16 bytes more cost every
    /// connection 16 bytes more.
    #[test]
    fn an_idle_record_stays_small() {
        let record = std::mem::size_of::<Conn>();
        assert!(record <= 168, "{record}");
        assert_eq!(std::mem::size_of::<Session>(), 24);
        assert_eq!(std::mem::size_of::<Send>(), 8);
        assert_eq!(std::mem::size_of::<Input>(), 24);
    }
}
