//! Each connection's one deadline at a time (head, body, keep-alive, write, linger, the
//! drain's grace), kept in the core's timing wheel and checked once per turn.

use super::conn::{Conn, Deferring, Ending, Phase, Send, NEVER};
use super::connections::Connections;
use super::drain::Lifecycle;
use super::turn::Turn;
use super::wheel::Wheel;
use super::Application;
use crate::http::status::Status;
use crate::metrics::TlsFailure;

impl<A: Application> Connections<A> {
    /// When the connection's current wait ends, in ms since start.
    fn deadline(&self, turn: &Turn<'_>, conn: &Conn) -> Option<u64> {
        let settings = &self.settings;
        match conn.phase {
            Phase::Linger { until, .. } => return Some(until),
            Phase::Closing => return None,
            Phase::Handshake if !conn.sending() => {
                return Some(conn.head_started + settings.header_timeout_ms)
            }
            Phase::Open | Phase::ProxyHeader | Phase::Handshake => {}
        }
        if let Send::InFlight(flight) = &conn.send {
            return Some(flight.since + settings.write_timeout_ms);
        }
        if let Deferring::Socket(socket) = &conn.deferring {
            let ws = &settings.websocket;
            let due = socket.due(ws.idle_ping_ms, ws.idle_timeout_ms);
            // A drain closes WebSockets (1001) once its grace for idle connections is over.
            return Some(match turn.life {
                Lifecycle::Draining { idle_until, .. } if !socket.closing => due.min(idle_until),
                _ => due,
            });
        }
        if let Deferring::Proxy(relay) = &conn.deferring {
            // The upstream's connect and read timeouts.
            let group = &self.upstreams.groups[relay.upstream()];
            return Some(relay.deadline(&group.settings));
        }
        if conn.working() {
            // A file read or a handler is at work: neither is the client's to hurry.
            return None;
        }
        if conn.session.is_reading_body() {
            return Some(conn.active_ms + settings.body_timeout_ms);
        }
        let keepalive = conn.active_ms + settings.keepalive_timeout_ms;
        match (conn.head_started, turn.life) {
            (NEVER, Lifecycle::Draining { idle_until, .. }) => Some(keepalive.min(idle_until)),
            (NEVER, _) => Some(keepalive),
            (started, _) => Some(started + settings.header_timeout_ms),
        }
    }

    /// Makes sure the wheel looks at the connection no later than its deadline.
    pub(super) fn schedule(&mut self, turn: &mut Turn<'_>, conn: &Conn) {
        if let Some(deadline) = self.deadline(turn, conn) {
            self.wheel
                .schedule(conn.key.index, Wheel::tick_of(deadline));
        }
    }

    /// Looks at every connection the wheel finds due: those whose deadline passed time out,
    /// the others are queued again for their real deadline (by `settle`).
    pub(super) fn expire(&mut self, turn: &mut Turn<'_>) {
        self.wheel.advance(turn.now.ms);
        while let Some(index) = self.wheel.next_due() {
            let Some(key) = self.table.key_at(index) else {
                continue;
            };
            let Some(mut conn) = self.table.take(key) else {
                continue;
            };
            if self
                .deadline(turn, &conn)
                .is_some_and(|at| at <= turn.now.ms)
            {
                self.time_out(turn, &mut conn);
            }
            self.settle(turn, conn);
        }
    }

    /// The connection's deadline passed.
    fn time_out(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        if !matches!(
            conn.phase,
            Phase::Open | Phase::ProxyHeader | Phase::Handshake
        ) {
            conn.input_ended = true;
            return;
        }
        if conn.phase == Phase::Handshake && !conn.sending() {
            // A client that stalls in its handshake costs its connection, nothing more.
            self.handshake_abandoned(turn, conn, TlsFailure::Timeout);
            return conn.cut();
        }
        if conn.sending() {
            // The client stopped taking bytes.
            return conn.cut();
        }
        if conn.sockets() {
            return self.socket_timed_out(turn, conn);
        }
        if matches!(conn.deferring, Deferring::Proxy(_)) {
            // The upstream server is late.
            return self.relay_timed_out(turn, conn);
        }
        if conn.phase == Phase::ProxyHeader {
            // No header in time: nothing is answered to a balancer that says nothing.
            turn.reporting.metrics.counters.borrow_mut().protocol_errors += 1;
            return conn.cut();
        }
        self.buffers.writes.lend(&mut conn.out);
        let partial = conn.input.pending() > 0;
        if !turn.serving() && conn.idle() {
            // Silent through the drain's grace: our side shuts and what the client may still
            // send is read and dropped, so the close cannot become a reset.
            conn.ending = Ending::Linger;
        }
        if conn.session.time_out(&mut conn.out, partial) {
            let class = Status::REQUEST_TIMEOUT.class();
            turn.reporting.metrics.record_one(class, true, None);
            conn.ending = Ending::Linger;
            self.flush(turn, conn);
        }
    }
}
