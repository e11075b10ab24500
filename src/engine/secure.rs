//! TLS on a connection of the TLS listener: the handshakes a core has under way (bounded,
//! the TLS listeners stop accepting at the bound), ciphertext received (decrypted in place,
//! the plaintext pumped through the session like a cleartext connection's bytes), responses
//! and file chunks sealed on their way out, and `close_notify` before a clean close.

use super::conn::{Conn, Ending, Phase, TlsLink};
use super::handshakes::Listening;
use super::shard::Shard;
use super::Application;
use crate::metrics::TlsFailure;
use crate::tls::{opening, Failure, Input, Opening, TlsConn, CLEARTEXT_ON_TLS_PORT};

/// Ciphertext a connection may hold without a whole record or handshake message in it: a
/// ClientHello or a record is far smaller; past it the handshake fails.
const MAX_HELD_BYTES: usize = 80 * 1024;

impl<A: Application> Shard<A> {
    /// A connection accepted on a TLS listener: its TLS state, counted among the handshakes
    /// under way; at the bound, the TLS listeners stop accepting. False on a core without TLS
    /// (the connection is then closed).
    pub(super) fn start_tls(&mut self, conn: &mut Conn) -> bool {
        let Some(core) = self.tls.as_mut() else {
            return false;
        };
        conn.tls = Some(Box::new(TlsLink {
            conn: TlsConn::new(&core.configs),
            held: Vec::new(),
            wire: Vec::new(),
            handshaking: true,
            fresh: true,
            failed: false,
        }));
        if core.gate.begin() == Listening::Pause {
            self.listeners.pause_tls(&mut self.ring);
        }
        true
    }

    /// The connection's handshake is over (done, failed, or the connection ended): it no
    /// longer counts, and below the bound the TLS listeners accept again.
    pub(super) fn end_handshake(&mut self, link: &mut TlsLink) {
        if !std::mem::take(&mut link.handshaking) {
            return;
        }
        let Some(core) = self.tls.as_mut() else {
            return;
        };
        if core.gate.end() == Listening::Resume && self.is_serving() {
            self.listeners.resume_tls(&mut self.ring);
        }
    }

    /// A handshake failed for `reason`.
    fn handshake_failed(&mut self, link: &mut TlsLink, reason: TlsFailure) {
        if link.handshaking {
            self.reporting.metrics.counters.borrow_mut().tls_failed[reason as usize] += 1;
        }
        self.end_handshake(link);
    }

    /// The connection ended during its handshake: the client left, or it timed out.
    pub(super) fn handshake_abandoned(&mut self, conn: &mut Conn, reason: TlsFailure) {
        if let Some(mut link) = conn.tls.take() {
            self.handshake_failed(&mut link, reason);
            conn.tls = Some(link);
        }
    }

    /// Ciphertext received on a TLS connection, in a receive buffer that goes back once this
    /// returns.
    pub(super) fn tls_data(&mut self, conn: &mut Conn, data: &mut [u8]) {
        let Some(mut link) = conn.tls.take() else {
            return;
        };
        if link.failed {
            conn.tls = Some(link);
            return;
        }
        if std::mem::take(&mut link.fresh) && !data.is_empty() {
            match opening(data[0]) {
                Opening::Tls => {}
                Opening::Cleartext => {
                    // Answered in cleartext (as nginx does), so the client learns why.
                    self.handshake_failed(&mut link, TlsFailure::Cleartext);
                    link.failed = true;
                    link.wire = self.buffers.writes.take();
                    link.wire.extend_from_slice(CLEARTEXT_ON_TLS_PORT);
                    conn.ending = Ending::Linger;
                    conn.tls = Some(link);
                    return self.flush(conn);
                }
                Opening::Garbage => {
                    self.handshake_failed(&mut link, TlsFailure::NotTls);
                    link.failed = true;
                    conn.input_ended = true;
                    conn.tls = Some(link);
                    return;
                }
            }
        }
        self.buffers.writes.lend(&mut link.wire);
        let mut held = std::mem::take(&mut link.held);
        let from_held = !held.is_empty();
        if from_held {
            held.extend_from_slice(data);
        }
        let buf: &mut [u8] = if from_held { &mut held } else { data };
        let mut established = false;
        let outcome = link
            .conn
            .receive(buf, &mut link.wire, &mut |input| match input {
                Input::Established(info) => {
                    conn.tls_info = Some(info);
                    established = true;
                }
                Input::Data(plain) => self.pump(conn, plain),
            });
        if established {
            conn.phase = Phase::Open;
            conn.head_started = super::conn::NEVER;
            let resumed = conn.tls_info.as_ref().is_some_and(|info| info.resumed);
            let mut counters = self.reporting.metrics.counters.borrow_mut();
            match resumed {
                true => counters.tls_resumed += 1,
                false => counters.tls_full += 1,
            }
            drop(counters);
            self.end_handshake(&mut link);
        }
        match outcome {
            Ok(received) => {
                let consumed = received.consumed;
                if from_held {
                    held.drain(..consumed);
                } else if consumed < data.len() {
                    held = self.buffers.reads.take();
                    held.extend_from_slice(&data[consumed..]);
                }
                if held.len() > MAX_HELD_BYTES {
                    self.handshake_failed(&mut link, TlsFailure::Protocol);
                    link.failed = true;
                    conn.ending = Ending::Linger;
                    held.clear();
                }
                if received.peer_closed {
                    conn.input_ended = true;
                }
            }
            Err(failure) => {
                if let Failure::Handshake = failure {
                    self.handshake_failed(&mut link, TlsFailure::Protocol);
                }
                self.reporting.metrics.counters.borrow_mut().protocol_errors += 1;
                link.failed = true;
                // The alert goes out first; what the client still sends is read and dropped.
                conn.ending = Ending::Linger;
                held.clear();
            }
        }
        if held.is_empty() {
            self.buffers.reads.give(held);
        } else {
            link.held = held;
        }
        conn.tls = Some(link);
        self.flush(conn);
    }

    /// Seals the responses waiting in the output buffer into the connection's wire buffer
    /// (a TLS connection whose handshake is done), and gives the output buffer back.
    pub(super) fn seal_output(&mut self, conn: &mut Conn) {
        let Some(link) = conn.tls.as_deref_mut() else {
            return;
        };
        if link.failed {
            // Nothing more goes out in the clear or sealed: what was answered is dropped.
            conn.out.clear();
            return;
        }
        if conn.out.is_empty() || conn.tls_info.is_none() {
            return;
        }
        self.buffers.writes.lend(&mut link.wire);
        if !link.conn.seal(&conn.out, &mut link.wire) {
            // A TLS 1.2 key at its record limit: this batch is its last.
            conn.input_ended = true;
        }
        conn.out.clear();
        self.buffers.writes.give(std::mem::take(&mut conn.out));
    }

    /// Sends a file chunk: sealed first on a TLS connection.
    pub(super) fn send_chunk(&mut self, conn: &mut Conn, buf: Vec<u8>) {
        let Some(link) = conn.tls.as_deref_mut() else {
            return self.send(conn, buf, true);
        };
        let mut wire = self.buffers.chunks.take();
        if !link.conn.seal(&buf, &mut wire) {
            conn.input_ended = true;
        }
        self.buffers.chunks.give(buf);
        self.send(conn, wire, true);
    }

    /// Before a TLS connection closes cleanly: queues its `close_notify` and sends it.
    /// Returns false when there was none to send.
    pub(super) fn send_close_notify(&mut self, conn: &mut Conn) -> bool {
        let Some(link) = conn.tls.as_deref_mut() else {
            return false;
        };
        if link.failed || !link.conn.owes_close_notify() {
            return false;
        }
        self.buffers.writes.lend(&mut link.wire);
        link.conn.close_notify(&mut link.wire);
        self.flush(conn);
        true
    }
}
