//! Shutdown as a state of the core: stop accepting, let every connection finish its
//! exchange (the next response says `Connection: close`), give idle keep-alive connections
//! a grace period for the request their client may be sending, cut whatever is left at the
//! deadline, and leave the loop once no connection remains; then leave the core without
//! freeing anything the kernel still holds.

use std::time::Duration;

use super::conn::Send;
use super::shard::{Lifecycle, Shard};
use super::Application;
use crate::support::stderr::note;

/// After the drain deadline cuts the remaining connections, how long their last sends get to
/// complete before the core stops anyway.
const CUT_GRACE_MS: u64 = 500;

/// When the core leaves: how long the kernel gets to give back every operation it holds,
/// once each is cancelled (cancelled sends and receives come back within microseconds).
const EXIT_BOUND: Duration = Duration::from_secs(1);

impl<A: Application> Shard<A> {
    /// Accepting and serving (not draining).
    pub(super) fn is_serving(&self) -> bool {
        self.life == Lifecycle::Serving
    }

    /// Stops accepting. Every connection's next response says `Connection: close` and ends
    /// it; an idle keep-alive connection waits `server.drain_idle_grace_ms` for that next
    /// request (closing it at once would reset a request already on its way), then closes.
    /// All of them are gone by `server.drain_timeout_ms`.
    pub(super) fn begin_drain(&mut self) {
        if !self.is_serving() {
            return;
        }
        let now = self.now.ms;
        self.life = Lifecycle::Draining {
            deadline: now + self.settings.drain_timeout_ms,
            idle_until: now + self.settings.drain_idle_grace_ms,
        };
        self.app.drain();
        self.listeners.stop(&mut self.ring);
        for key in self.table.keys() {
            if let Some(conn) = self.table.take(key) {
                self.settle(conn);
            }
        }
    }

    /// The next drain deadline: the cut, or the end of the cut's grace.
    pub(super) fn drain_deadline(&self) -> Option<u64> {
        match self.life {
            Lifecycle::Serving => None,
            Lifecycle::Draining { deadline, .. } => Some(deadline),
            Lifecycle::Cut { until } => Some(until),
            Lifecycle::Left => None,
        }
    }

    /// Past the drain deadline, every connection left is cut.
    pub(super) fn enforce_drain_deadline(&mut self) {
        let Lifecycle::Draining { deadline, .. } = self.life else {
            return;
        };
        if self.now.ms < deadline {
            return;
        }
        self.life = Lifecycle::Cut {
            until: deadline + CUT_GRACE_MS,
        };
        for key in self.table.keys() {
            if let Some(mut conn) = self.table.take(key) {
                conn.cut();
                self.settle(conn);
            }
        }
    }

    /// Whether a draining core is done: no connection left, or the cut's grace is over.
    pub(super) fn finished(&self) -> bool {
        match self.life {
            Lifecycle::Serving => false,
            Lifecycle::Draining { .. } => self.table.open() == 0,
            Lifecycle::Cut { until } => self.table.open() == 0 || self.now.ms >= until,
            Lifecycle::Left => true,
        }
    }

    /// Leaves the core, whichever way the loop ended (drained, an `io_uring_enter` that
    /// failed, a panic: `Shard`'s `Drop` calls this too): every operation the kernel holds
    /// is cancelled and reaped (within [`EXIT_BOUND`]) before any connection's buffers are
    /// freed, then the connections left are closed. What the kernel still holds after the
    /// bound is leaked, not freed under it, and counted (`exit_leaked`).
    pub(super) fn leave(&mut self) {
        if std::mem::replace(&mut self.life, Lifecycle::Left) == Lifecycle::Left {
            return;
        }
        let held = self.ring.in_flight();
        let still = self.ring.quiesce(EXIT_BOUND);
        for key in self.table.keys() {
            let Some(mut conn) = self.table.take(key) else {
                continue;
            };
            // SAFETY: the record's own descriptor, never closed while the record exists.
            unsafe { libc::close(conn.fd) };
            if still > 0 {
                if let Send::InFlight(flight) = std::mem::replace(&mut conn.send, Send::Idle) {
                    // The kernel may still read it: leaked rather than freed under it.
                    std::mem::forget(flight.buf);
                }
            }
        }
        if still > 0 {
            let cpu = self.reporting.links.cpu;
            note(format_args!(
                "core {cpu}: {still} io_uring operation(s) still held by the kernel {} ms after \
                 leaving: their buffers are left allocated",
                EXIT_BOUND.as_millis()
            ));
        }
        let mut counters = self.reporting.metrics.counters.borrow_mut();
        counters.exit_in_flight += held as u64;
        counters.exit_leaked += still as u64;
    }
}

impl<A: Application> Drop for Shard<A> {
    fn drop(&mut self) {
        // After a panic in the loop, as after any other way out.
        self.leave();
    }
}
