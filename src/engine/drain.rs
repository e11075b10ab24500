//! Shutdown as a state of the core: stop accepting, let every connection finish its
//! exchange (the next response says `Connection: close`), give idle keep-alive connections
//! a grace period for the request their client may be sending, cut whatever is left at the
//! deadline, and leave the loop once no connection remains.

use super::shard::{Lifecycle, Shard};
use super::Application;

/// After the drain deadline cuts the remaining connections, how long their last sends get to
/// complete before the core stops anyway.
const CUT_GRACE_MS: u64 = 500;

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
        self.stop_accepting();
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
        }
    }

    /// Leaves the loop: submits the closes queued in the last turn and closes whatever
    /// connection outlived the cut's grace.
    pub(super) fn shut_down(&mut self) {
        let _ = self.ring.enter();
        for key in self.table.keys() {
            let Some(mut conn) = self.table.take(key) else {
                continue;
            };
            // SAFETY: the record's own descriptor, never closed while the record exists.
            unsafe { libc::close(conn.fd) };
            if let super::conn::Send::InFlight { buf, .. } =
                std::mem::replace(&mut conn.send, super::conn::Send::Idle)
            {
                // The kernel may still read it (the cut makes that send fail soon): leaked
                // rather than freed under it.
                std::mem::forget(buf);
            }
        }
    }
}
