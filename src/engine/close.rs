//! The end of a connection. After every event the record is settled: it closes or
//! lingers once it has nothing left to do, and otherwise gets its receive and deadline put
//! right and goes back in the table.

use io_uring::{opcode, squeue, types};

use super::conn::{Conn, Deferring, Ending, Phase, Send};
use super::connections::Connections;
use super::outflow::OutflowEnd;
use super::token::{token, Op, NO_KEY};
use super::turn::Turn;
use super::Application;
use crate::metrics::TlsFailure;

/// After an error response, how long unread client bytes are drained before closing, so the
/// kernel does not answer them with a reset that could destroy the response in flight.
const LINGER_MS: u64 = 2000;

impl<A: Application> Connections<A> {
    /// After any event: closes or lingers once the connection has nothing left to do, and
    /// otherwise keeps its receive and deadline right. Puts the record back.
    pub(super) fn settle(&mut self, turn: &mut Turn<'_>, mut conn: Box<Conn>) {
        if conn.input_ended && conn.sockets() && conn.input.pending() == 0 {
            // A WebSocket client that closed its side without (or after) a close frame:
            // nothing more will come, and the connection goes.
            self.socket_abandoned(turn, &mut conn);
        }
        let quiet =
            !conn.sending() && matches!(conn.deferring, Deferring::Nothing) && !conn.has_output();
        if matches!(conn.phase, Phase::Open | Phase::Handshake) && quiet {
            let done = conn.session.is_closed() || conn.input_ended || conn.transport.is_over();
            if done && self.send_close_notify(turn, &mut conn) {
                // The exchange ends cleanly: once close_notify is out, this comes back.
                return self.table.put(conn);
            }
            if done {
                let unread = conn.ending == Ending::Linger || conn.input.pending() > 0;
                if unread && !conn.input_ended {
                    conn.linger(turn.now.ms + LINGER_MS);
                    self.buffers.reads.give(std::mem::take(&mut conn.input.buf));
                } else {
                    return self.close(turn, conn);
                }
            }
        }
        match conn.phase {
            Phase::Closing if !conn.sending() => return self.close(turn, conn),
            Phase::Linger { .. } if conn.input_ended => return self.close(turn, conn),
            Phase::ProxyHeader if conn.input_ended => return self.close(turn, conn),
            _ => {}
        }
        self.steer_recv(turn, &mut conn);
        self.schedule(turn, &conn);
        self.table.put(conn);
    }

    /// Closes the socket (after stopping its receive) and forgets the record. A send still
    /// in flight reads from the record's buffer, so that waits for its completion.
    fn close(&mut self, turn: &mut Turn<'_>, mut conn: Box<Conn>) {
        if conn.sending() {
            conn.cut();
            return self.table.put(conn);
        }
        self.cancel_recv(turn, &mut conn);
        // A request still at an upstream: its link goes too.
        self.relay_abandoned(turn, &mut conn);
        // A body coded as it went gets its access log line, with what was sent (before the
        // calls below, which each take the connection's deferred work to look at it).
        Self::transfer_abandoned(turn, &mut conn);
        // A streamed response's producer learns that nobody takes its bytes any more.
        self.end_outflow(turn, &mut conn, OutflowEnd::Gone);
        // A WebSocket's handler learns that it ended.
        self.socket_abandoned(turn, &mut conn);
        // Ended during its handshake by a cut (the drain's deadline, a write timeout)?
        self.handshake_abandoned(turn, &mut conn, TlsFailure::Closed);
        let close = opcode::Close::new(types::Fd(conn.fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(token(Op::Ignore, NO_KEY, 0));
        turn.ring.push_quiet(&close);
        let key = conn.key;
        self.bodies.release(conn.session.held_bytes());
        self.wheel.remove(key.index);
        self.free_buffers(*conn);
        self.table.release(key);
        turn.reporting.metrics.counters.borrow_mut().closed += 1;
    }

    fn free_buffers(&mut self, conn: Conn) {
        self.buffers.reads.give(conn.input.buf);
        self.buffers.writes.give(conn.out);
        if let Send::InFlight(flight) = conn.send {
            self.give_flight(flight);
        }
        conn.transport.free(&mut self.buffers);
    }
}
