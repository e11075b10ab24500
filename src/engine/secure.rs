//! TLS on a connection of the TLS listener, as the core drives it: the handshakes a core has
//! under way (bounded, the TLS listeners stop accepting at the bound), ciphertext received
//! (stepped through by the connection's [`TlsLink`], each record's plaintext pumped through
//! the session like a cleartext connection's bytes), and `close_notify` before a clean close.
//! Sealing on the way out is the transport's (`transport::Transport::outgoing`).

use super::conn::{Conn, Ending, Phase};
use super::connections::Connections;
use super::handshakes::Listening;
use super::transport::{First, TlsLink, Transport};
use super::turn::Turn;
use super::Application;
use crate::metrics::TlsFailure;
use crate::tls::{Event, CLEARTEXT_ON_TLS_PORT};

impl<A: Application> Connections<A> {
    /// A connection accepted on a TLS listener: its TLS link, counted among the handshakes
    /// under way; at the bound, the TLS listeners stop accepting. False on a core without TLS
    /// (the connection is then closed).
    pub(super) fn start_tls(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) -> bool {
        let Some(core) = self.tls.as_mut() else {
            return false;
        };
        conn.transport = Transport::Tls(Box::new(TlsLink::new(&core.configs)));
        if core.gate.begin() == Listening::Pause {
            turn.listeners.pause_tls(turn.ring);
        }
        true
    }

    /// The connection's handshake no longer counts (done, failed, or the connection
    /// ended); below the bound the TLS listeners accept again. A failure is counted under
    /// `reason`.
    fn end_handshake(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, failure: Option<TlsFailure>) {
        let Transport::Tls(link) = &mut conn.transport else {
            return;
        };
        if !link.stop_counting() {
            return;
        }
        if let Some(reason) = failure {
            turn.reporting.metrics.counters.borrow_mut().tls_failed[reason as usize] += 1;
        }
        let Some(core) = self.tls.as_mut() else {
            return;
        };
        if core.gate.end() == Listening::Resume && turn.serving() {
            turn.listeners.resume_tls(turn.ring);
        }
    }

    /// The connection ended during its handshake: the client left, it timed out, or it was
    /// cut. Nothing happens for a connection past its handshake.
    pub(super) fn handshake_abandoned(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        reason: TlsFailure,
    ) {
        self.end_handshake(turn, conn, Some(reason));
    }

    /// Ciphertext received on a TLS connection, in a receive buffer that goes back once this
    /// returns.
    pub(super) fn tls_data(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, data: &mut [u8]) {
        let Transport::Tls(link) = &mut conn.transport else {
            return;
        };
        if link.is_over() {
            return;
        }
        match link.first(data, &mut self.buffers.writes, CLEARTEXT_ON_TLS_PORT) {
            First::Tls => {}
            First::Cleartext => {
                self.end_handshake(turn, conn, Some(TlsFailure::Cleartext));
                conn.ending = Ending::Linger;
                return self.flush(turn, conn);
            }
            First::Garbage => {
                self.end_handshake(turn, conn, Some(TlsFailure::NotTls));
                conn.input_ended = true;
                return;
            }
        }
        let mut held = link.take_partial(data);
        let buf: &mut [u8] = match held.as_mut() {
            Some(held) => held,
            None => data,
        };
        let mut used = 0;
        let failed = loop {
            let Transport::Tls(link) = &mut conn.transport else {
                unreachable!("a TLS connection's transport stays TLS");
            };
            let Ok(step) = link.step(buf, used, &mut self.buffers.writes) else {
                break true;
            };
            used = step.next;
            match step.event {
                Event::Waiting => break false,
                Event::Established(info) => {
                    let resumed = info.resumed;
                    link.established(info);
                    self.established(turn, conn, resumed);
                }
                Event::Data(plain) => self.pump(turn, conn, &buf[plain]),
                Event::Closed => {
                    conn.input_ended = true;
                    break false;
                }
            }
        };
        let Transport::Tls(link) = &mut conn.transport else {
            unreachable!("a TLS connection's transport stays TLS");
        };
        let reads = &mut self.buffers.reads;
        let fits = match (failed, held) {
            (false, Some(held)) => link.keep_partial(Some(held), used, &[], reads),
            (false, None) => link.keep_partial(None, used, &data[used..], reads),
            (true, held) => {
                link.end();
                if let Some(held) = held {
                    reads.give(held);
                }
                self.tls_failed(turn, conn);
                true
            }
        };
        if !fits {
            // More ciphertext than any record holds, still incomplete.
            self.end_handshake(turn, conn, Some(TlsFailure::Protocol));
            conn.ending = Ending::Linger;
        }
        self.flush(turn, conn);
    }

    /// The handshake is complete: the connection is open, and counted.
    fn established(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, resumed: bool) {
        conn.phase = Phase::Open;
        conn.head_started = super::conn::NEVER;
        let mut counters = turn.reporting.metrics.counters.borrow_mut();
        match resumed {
            true => counters.tls_resumed += 1,
            false => counters.tls_full += 1,
        }
        drop(counters);
        self.end_handshake(turn, conn, None);
    }

    /// The TLS exchange failed (its alert, if any, is queued): what the client still sends
    /// is read and dropped after the alert goes out.
    fn tls_failed(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        // Counted as a failed handshake only while one is under way (a record's failure
        // comes after it).
        self.end_handshake(turn, conn, Some(TlsFailure::Protocol));
        turn.reporting.metrics.counters.borrow_mut().protocol_errors += 1;
        conn.ending = Ending::Linger;
    }

    /// Before a TLS connection closes cleanly: queues its `close_notify` and sends it.
    /// Returns false when there was none to send.
    pub(super) fn send_close_notify(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) -> bool {
        let Transport::Tls(link) = &mut conn.transport else {
            return false;
        };
        if !link.close_notify(&mut self.buffers.writes) {
            return false;
        }
        self.flush(turn, conn);
        true
    }
}
