//! Receiving: one multishot receive per connection from the core's provided-buffer ring.
//!
//! The bytes are handed on where the kernel put them (to the PROXY header reader, or to the
//! exchange with the session) and the buffer goes back to the kernel at once (its guard,
//! `ring::Received`, is dropped); only what
//! cannot be processed yet is copied into the connection's input buffer. `ENOBUFS` (the
//! buffer ring ran dry) ends a receive without losing a byte: it is armed again once buffers
//! have come back. A connection holding a head's worth of input it cannot process yet stops
//! receiving, so a client pipelining without reading stalls only itself.

use io_uring::{cqueue, opcode, types};

use super::buffer_ring::RECV_GROUP;
use super::conn::{Conn, Phase, Recv};
use super::connections::Connections;
use super::token::Key;
use super::token::{token, Op};
use super::turn::Turn;
use super::Application;
use crate::metrics::TlsFailure;
use crate::proxy_protocol::{self, Header};

/// At most this many bytes are read and dropped while lingering.
const LINGER_BYTES: u32 = 256 * 1024;

impl<A: Application> Connections<A> {
    pub(super) fn arm_recv(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        conn.recv_epoch = conn.recv_epoch.wrapping_add(1) & 0xf;
        let recv = opcode::RecvMulti::new(types::Fd(conn.fd), RECV_GROUP)
            .build()
            .user_data(token(Op::Recv, conn.key, conn.recv_epoch));
        turn.push_plain(&recv);
        conn.recv = Recv::Armed;
    }

    /// Stops the armed receive (its completions may still bring bytes, which are kept).
    pub(super) fn cancel_recv(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        if conn.recv == Recv::Armed {
            turn.ring.cancel(token(Op::Recv, conn.key, conn.recv_epoch));
        }
        conn.recv = Recv::Off;
    }

    /// Arms or cancels the receive to match [`Conn::wants_input`].
    pub(super) fn steer_recv(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let wants = conn.wants_input(self.settings.input_cap);
        match conn.recv {
            Recv::Off if wants => self.arm_recv(turn, conn),
            Recv::Armed if !wants => self.cancel_recv(turn, conn),
            _ => {}
        }
    }

    /// Arms the receives that ran out of buffers again, oldest first, at most one per buffer
    /// (every buffer is back by the end of a turn): arming more would only see most of them
    /// end with `ENOBUFS` once more.
    pub(super) fn rearm_starved(&mut self, turn: &mut Turn<'_>) {
        let mut budget = turn.ring.buffers();
        while budget > 0 {
            let Some(key) = self.starved.pop_front() else {
                break;
            };
            if let Some(mut conn) = self.table.take(key) {
                if conn.recv == Recv::Starved {
                    conn.recv = Recv::Off;
                    self.steer_recv(turn, &mut conn);
                    budget -= 1;
                }
                self.table.put(conn);
            }
        }
    }

    pub(super) fn on_recv(
        &mut self,
        turn: &mut Turn<'_>,
        key: Key,
        epoch: u8,
        result: i32,
        flags: u32,
    ) {
        let buffer = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let Some(mut conn) = self.table.take(key) else {
            if let Some(bid) = buffer {
                turn.ring.recycle(bid);
            }
            return;
        };
        if !more && epoch == conn.recv_epoch && conn.recv == Recv::Armed {
            conn.recv = Recv::Off;
        }
        match (result, buffer) {
            (n, Some(bid)) if n > 0 => {
                // SAFETY: the completion just reaped names this buffer with `n` bytes, taken
                // once here; it goes back to the kernel when `received` is dropped.
                let mut received = unsafe { turn.ring.received(bid, n as usize) };
                turn.reporting.metrics.counters.borrow_mut().bytes_in += n as u64;
                conn.active_ms = turn.now.ms;
                conn.read_at = turn.now.clock.stamp(turn.now.reaped_at);
                self.on_data(turn, &mut conn, received.bytes());
            }
            (0, _) => {
                conn.input_ended = true;
                if conn.tunnels() {
                    // Passed on to the server once all the client sent is out.
                    self.tunnel_up(turn, &mut conn, &[]);
                }
                if conn.phase == Phase::Handshake {
                    self.handshake_abandoned(turn, &mut conn, TlsFailure::Closed);
                }
            }
            (n, _) if n == -libc::ENOBUFS && epoch == conn.recv_epoch => {
                conn.recv = Recv::Starved;
                self.starved.push_back(key);
            }
            // The end of a receive already replaced, or cancelled on purpose.
            (n, _) if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
            (n, _) if n < 0 => {
                // Reset or another error: nothing more can be read or sent.
                if conn.phase == Phase::Handshake {
                    self.handshake_abandoned(turn, &mut conn, TlsFailure::Closed);
                }
                conn.cut();
            }
            _ => {}
        }
        if let Some(bid) = buffer.filter(|_| result <= 0) {
            turn.ring.recycle(bid);
        }
        self.settle(turn, conn);
    }

    /// Bytes received on `conn`, in a receive buffer that goes back once this returns.
    fn on_data(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, data: &mut [u8]) {
        match conn.phase {
            Phase::ProxyHeader => self.read_proxy_header(turn, conn, data),
            Phase::Handshake => self.tls_data(turn, conn, data),
            Phase::Open if conn.transport.tls().is_some() => self.tls_data(turn, conn, data),
            Phase::Open => {
                self.pump(turn, conn, data);
                self.flush(turn, conn);
            }
            Phase::Linger { dropped, until } => {
                let dropped = dropped.saturating_add(data.len() as u32);
                conn.phase = Phase::Linger { dropped, until };
                if dropped >= LINGER_BYTES {
                    conn.input_ended = true;
                }
            }
            Phase::Closing => {}
        }
    }

    /// Reads the PROXY header that must open the connection; the bytes after it are HTTP.
    fn read_proxy_header(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, data: &[u8]) {
        self.buffers.reads.lend(&mut conn.input.buf);
        conn.input.buf.extend_from_slice(data);
        match proxy_protocol::parse(conn.input.bytes()) {
            Header::Incomplete => {
                if conn.head_started == super::conn::NEVER {
                    conn.head_started = turn.now.ms;
                }
            }
            Header::Invalid => {
                // Not from a balancer speaking the protocol: nothing is answered.
                turn.reporting.metrics.counters.borrow_mut().protocol_errors += 1;
                conn.input.clear();
                conn.cut();
            }
            Header::Complete { len, source } => {
                conn.client = source.map(Box::new);
                conn.input.consume(len);
                if conn.transport.tls().is_some() {
                    // What follows the header is the TLS handshake (its timeout runs on).
                    conn.phase = Phase::Handshake;
                    let mut rest = std::mem::take(&mut conn.input.buf);
                    if !rest.is_empty() {
                        self.tls_data(turn, conn, &mut rest);
                    }
                    rest.clear();
                    self.buffers.reads.give(rest);
                    return;
                }
                conn.phase = Phase::Open;
                conn.head_started = super::conn::NEVER;
                self.pump(turn, conn, &[]);
                self.flush(turn, conn);
            }
        }
    }
}
