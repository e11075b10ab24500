//! A connection's transport: how its bytes are carried between the socket and its session.
//!
//! A connection's transport is part of its record for its whole life and never taken out of
//! it: the exchange and the sending path ask it what to do with bytes. A cleartext
//! connection's bytes go as they are; a TLS connection's go through its [`TlsLink`], which
//! owns the TLS state, the ciphertext it holds and the records waiting to go out.
//!
//! The TLS side is step-wise ([`TlsLink::step`] returns what the ciphertext held next, as
//! rustls's unbuffered API returns states): nothing calls back into the engine, so the
//! engine can hold the transport and the session apart while it feeds one to the other.

use std::rc::Rc;

use super::buffers::{BufferPool, Buffers};
use crate::tls::{opening, Failure, Opening, ServerConfigs, Step, TlsConn, TlsInfo};

/// Ciphertext a connection may hold without a whole record or handshake message in it: a
/// ClientHello or a record is far smaller; past it the connection fails.
const MAX_PARTIAL_BYTES: usize = 80 * 1024;

/// How a connection's bytes are carried.
pub(super) enum Transport {
    /// As they are: a cleartext connection.
    Plain,
    /// In TLS records (connections accepted on a TLS listener).
    Tls(Box<TlsLink>),
}

/// A connection's TLS: its state, the ciphertext it holds, and the records to send.
pub(super) struct TlsLink {
    conn: TlsConn,
    /// Ciphertext of a record (or handshake message) not complete yet; no capacity while
    /// empty.
    partial: Vec<u8>,
    /// Records to send: handshake messages, alerts, sealed responses; no capacity while
    /// empty.
    wire: Vec<u8>,
    /// What its handshake settled, once it has (what handlers and the log see).
    info: Option<Box<TlsInfo>>,
    /// Counted among the core's handshakes under way.
    handshaking: bool,
    /// Nothing has arrived yet (the first byte tells TLS from cleartext and garbage).
    fresh: bool,
    /// Nothing more is read or sealed: the TLS exchange failed, or the client was answered
    /// in cleartext for speaking cleartext. The connection ends once `wire` is sent.
    over: bool,
}

/// What the first byte a TLS connection received says.
pub(super) enum First {
    /// A TLS record, or more bytes of the exchange already under way.
    Tls,
    /// An HTTP request in cleartext: answered with `answer`, in cleartext.
    Cleartext,
    /// Neither: nothing is answered.
    Garbage,
}

impl Transport {
    /// The connection's TLS link, if it has one.
    pub(super) fn tls(&self) -> Option<&TlsLink> {
        match self {
            Transport::Plain => None,
            Transport::Tls(link) => Some(link),
        }
    }

    /// What the connection's TLS handshake settled, once it has.
    pub(super) fn info(&self) -> Option<&TlsInfo> {
        self.tls().and_then(|link| link.info.as_deref())
    }

    /// Nothing more is read or sent on it but what is queued (see [`TlsLink`]'s `over`).
    pub(super) fn is_over(&self) -> bool {
        self.tls().is_some_and(|link| link.over)
    }

    /// Records are waiting to go out.
    pub(super) fn has_wire(&self) -> bool {
        self.tls().is_some_and(|link| !link.wire.is_empty())
    }

    /// Bytes of records waiting to go out.
    pub(super) fn wire_len(&self) -> usize {
        self.tls().map_or(0, |link| link.wire.len())
    }

    /// What goes out next of the responses in `out`: on a cleartext connection `out`
    /// itself; on a TLS connection the records waiting (the responses sealed into them
    /// first, once the handshake is done; `out` goes back to `writes`). `None` when there is
    /// nothing to send. Sets `last` when the connection must end after this (a TLS 1.2 key
    /// at its record limit).
    pub(super) fn outgoing(
        &mut self,
        out: &mut Vec<u8>,
        writes: &mut BufferPool,
        last: &mut bool,
    ) -> Option<Vec<u8>> {
        let link = match self {
            Transport::Plain => {
                return (!out.is_empty()).then(|| std::mem::take(out));
            }
            Transport::Tls(link) => link,
        };
        if link.over {
            // Nothing more goes out in the clear or sealed: what was answered is dropped.
            out.clear();
        } else if !out.is_empty() && link.info.is_some() {
            writes.lend(&mut link.wire);
            if !link.conn.seal(out, &mut link.wire) {
                *last = true;
            }
            out.clear();
            writes.give(std::mem::take(out));
        }
        (!link.wire.is_empty()).then(|| std::mem::take(&mut link.wire))
    }

    /// A file chunk as it goes out: as it is in cleartext, sealed into a chunk buffer from
    /// `chunks` on TLS (the plaintext one goes back). Sets `last` as
    /// [`outgoing`](Self::outgoing) does.
    pub(super) fn chunk(
        &mut self,
        buf: Vec<u8>,
        chunks: &mut BufferPool,
        last: &mut bool,
    ) -> Vec<u8> {
        let Transport::Tls(link) = self else {
            return buf;
        };
        let mut wire = chunks.take();
        if !link.conn.seal(&buf, &mut wire) {
            *last = true;
        }
        chunks.give(buf);
        wire
    }

    /// Gives back the buffers it holds, as the connection is forgotten.
    pub(super) fn free(self, buffers: &mut Buffers) {
        if let Transport::Tls(link) = self {
            buffers.reads.give(link.partial);
            buffers.writes.give(link.wire);
        }
    }
}

impl TlsLink {
    /// A connection whose handshake is to come under one of the core's `configs`, counted
    /// among the handshakes under way.
    pub(super) fn new(configs: &Rc<ServerConfigs>) -> TlsLink {
        TlsLink {
            conn: TlsConn::new(configs),
            partial: Vec::new(),
            wire: Vec::new(),
            info: None,
            handshaking: true,
            fresh: true,
            over: false,
        }
    }

    /// What the connection's first bytes say, the first time bytes arrive; [`First::Tls`]
    /// after that. A cleartext request gets its answer queued in cleartext, and the exchange
    /// is over.
    pub(super) fn first(&mut self, data: &[u8], writes: &mut BufferPool, answer: &[u8]) -> First {
        if data.is_empty() || !std::mem::take(&mut self.fresh) {
            return First::Tls;
        }
        match opening(data[0]) {
            Opening::Tls => First::Tls,
            Opening::Cleartext => {
                // Answered in cleartext (as nginx does), so the client learns why.
                self.over = true;
                writes.lend(&mut self.wire);
                self.wire.extend_from_slice(answer);
                First::Cleartext
            }
            Opening::Garbage => {
                self.over = true;
                First::Garbage
            }
        }
    }

    /// Nothing more is read or sealed: the exchange failed.
    pub(super) fn end(&mut self) {
        self.over = true;
        self.partial.clear();
    }

    /// Whether nothing more is read or sealed.
    pub(super) fn is_over(&self) -> bool {
        self.over
    }

    /// Its handshake no longer counts among those under way. Returns whether it did.
    pub(super) fn stop_counting(&mut self) -> bool {
        std::mem::take(&mut self.handshaking)
    }

    /// Its handshake settled this.
    pub(super) fn established(&mut self, info: Box<TlsInfo>) {
        self.info = Some(info);
    }

    /// The ciphertext held from earlier receives with `data` behind it, or nothing when none
    /// was held (the caller then steps through `data` where it lies).
    pub(super) fn take_partial(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if self.partial.is_empty() {
            return None;
        }
        let mut partial = std::mem::take(&mut self.partial);
        partial.extend_from_slice(data);
        Some(partial)
    }

    /// Keeps what is left of the input after the steps (`rest`, the start of a record still
    /// to come), in `held` (the buffer [`take_partial`](Self::take_partial) gave, whose
    /// first `used` bytes are done with) or in a buffer from `reads`. Returns false when it
    /// holds more than any record can be: the exchange is then over.
    pub(super) fn keep_partial(
        &mut self,
        held: Option<Vec<u8>>,
        used: usize,
        rest: &[u8],
        reads: &mut BufferPool,
    ) -> bool {
        let mut partial = match held {
            Some(mut held) => {
                held.drain(..used);
                held
            }
            None if rest.is_empty() => Vec::new(),
            None => {
                let mut buf = reads.take();
                buf.extend_from_slice(rest);
                buf
            }
        };
        let fits = partial.len() <= MAX_PARTIAL_BYTES;
        if !fits {
            self.over = true;
        }
        if self.over {
            partial.clear();
        }
        if partial.is_empty() {
            reads.give(partial);
        } else {
            self.partial = partial;
        }
        fits
    }

    /// The next thing the ciphertext in `buf` from `at` holds (see [`TlsConn::step`]);
    /// what must be sent back is queued, in a buffer from `writes`.
    pub(super) fn step(
        &mut self,
        buf: &mut [u8],
        at: usize,
        writes: &mut BufferPool,
    ) -> Result<Step, Failure> {
        writes.lend(&mut self.wire);
        self.conn.step(buf, at, &mut self.wire)
    }

    /// Queues `close_notify` before a clean close, in a buffer from `writes`. Returns false
    /// when none is owed (the exchange is over or it was sent).
    pub(super) fn close_notify(&mut self, writes: &mut BufferPool) -> bool {
        if self.over || !self.conn.owes_close_notify() {
            return false;
        }
        writes.lend(&mut self.wire);
        self.conn.close_notify(&mut self.wire);
        true
    }
}
