//! Sending: at most one send per connection in flight, from a buffer the record keeps until
//! the send completes; responses made meanwhile gather in the output buffer and leave with
//! the next send. A large file's chunks go out the same way.

use io_uring::{opcode, types};

use super::buffers::Flight;
use super::conn::{Conn, Deferring, Phase, Send};
use super::connections::Connections;
use super::token::Key;
use super::token::{token, Op};
use super::turn::Turn;
use super::Application;

impl<A: Application> Connections<A> {
    /// Starts a send of what is ready, unless one is in flight: the committed responses, or
    /// the next chunk of a file on its way.
    pub(super) fn flush(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        if conn.sending() || conn.phase == Phase::Closing {
            return;
        }
        if let Deferring::File(transfer) = &conn.deferring {
            if transfer.reading {
                // Nothing goes out while a file is read: a small body's head may still be
                // replaced by a 500, and a large body's chunk is not there yet. (A small
                // body read from the page cache is done before this is reached.)
                return;
            }
        }
        // The committed responses, as the transport carries them (sealed into records on
        // TLS, behind any handshake messages and alerts already queued).
        let mut last = false;
        let outgoing = conn
            .transport
            .outgoing(&mut conn.out, &mut self.buffers.writes, &mut last);
        if last {
            // A TLS 1.2 key at its record limit: this batch is its last.
            conn.input_ended = true;
        }
        if let Some(buf) = outgoing {
            return self.send(turn, conn, buf, false);
        }
        if matches!(conn.deferring, Deferring::File(_)) {
            self.next_chunk(turn, conn);
        }
    }

    /// Sends a file chunk, as the transport carries it (sealed on TLS).
    pub(super) fn send_chunk(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, buf: Vec<u8>) {
        let mut last = false;
        let buf = conn
            .transport
            .chunk(buf, &mut self.buffers.chunks, &mut last);
        if last {
            conn.input_ended = true;
        }
        self.send(turn, conn, buf, true);
    }

    /// Sends `buf` (a file chunk when `chunk`).
    pub(super) fn send(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, buf: Vec<u8>, chunk: bool) {
        let mut flight = self.buffers.flights.take();
        *flight = Flight {
            buf,
            sent: 0,
            chunk,
            since: turn.now.ms,
        };
        conn.send = Send::InFlight(flight);
        self.submit_send(turn, conn);
    }

    /// Queues the send of what is left of the buffer in flight.
    fn submit_send(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let Send::InFlight(flight) = &conn.send else {
            return;
        };
        let rest = &flight.buf[flight.sent..];
        let send = opcode::Send::new(types::Fd(conn.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(Op::Send, conn.key, 0));
        // SAFETY: the buffer stays in the record, untouched, until this send completes
        // (`on_send`); a record cut meanwhile waits for it (`close`), and when the core
        // leaves, the send is cancelled and reaped before the record is freed, or its buffer
        // is leaked (`leave`).
        unsafe { turn.ring.push(&send) };
    }

    pub(super) fn on_send(&mut self, turn: &mut Turn<'_>, key: Key, result: i32) {
        let Some(mut conn) = self.table.take(key) else {
            return;
        };
        let Send::InFlight(mut flight) = std::mem::replace(&mut conn.send, Send::Idle) else {
            return self.table.put(conn);
        };
        if result <= 0 || conn.phase == Phase::Closing {
            // The client is gone (or we cut it): nothing more can go out.
            self.give_flight(flight);
            conn.cut();
            return self.settle(turn, conn);
        }
        let n = result as usize;
        turn.reporting.metrics.counters.borrow_mut().bytes_out += n as u64;
        flight.sent += n;
        conn.active_ms = turn.now.ms;
        if flight.sent < flight.buf.len() {
            flight.since = turn.now.ms;
            conn.send = Send::InFlight(flight);
            self.submit_send(turn, &mut conn);
            return self.settle(turn, conn);
        }
        self.give_flight(flight);
        match conn.phase {
            Phase::Open => {
                self.pump(turn, &mut conn, &[]);
                // A streamed body's pending bytes waited for this room.
                self.pull_outflow(turn, &mut conn);
                self.flush(turn, &mut conn);
                self.relay_resume(turn, &mut conn);
            }
            Phase::Handshake => self.flush(turn, &mut conn),
            _ => {}
        }
        self.settle(turn, conn);
    }

    /// A finished send's buffer goes back to its pool, and its box to the core's.
    pub(super) fn give_flight(&mut self, mut flight: Box<Flight>) {
        let buf = std::mem::take(&mut flight.buf);
        match flight.chunk {
            true => self.buffers.chunks.give(buf),
            false => self.buffers.writes.give(buf),
        }
        self.buffers.flights.give(flight);
    }
}
