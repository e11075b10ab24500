//! What one turn of the core's loop lends the connections it handles: the ring to queue
//! operations on, the moment being handled, the reports, the listeners (a TLS handshake's
//! start and end pause and resume their accepts), and where the core is in its life. The
//! loop (`shard`) owns all of it; a connection's handling borrows it for one event and can
//! neither sleep, nor change the core's lifecycle, nor keep anything of it.

use std::time::Instant;

use super::drain::Lifecycle;
use super::listeners::Listeners;
use super::reporting::Reporting;
use super::ring::Ring;
use super::wheel::Clock;

/// The core's time: the clock, and the moments of the turn being handled.
pub(super) struct Now {
    pub(super) clock: Clock,
    /// Milliseconds since start, read once per turn.
    pub(super) ms: u64,
    /// When this turn's completions were reaped.
    pub(super) reaped_at: Instant,
}

impl Now {
    /// The clock, read at once.
    pub(super) fn new(clock: Clock) -> Now {
        Now {
            clock,
            ms: 0,
            reaped_at: Instant::now(),
        }
    }

    /// A new turn's completions were just reaped.
    pub(super) fn reaped(&mut self) {
        self.ms = self.clock.now_ms();
        self.reaped_at = Instant::now();
    }
}

/// The loop's facilities, lent to the connections for one event.
pub(super) struct Turn<'a> {
    pub(super) ring: &'a mut Ring,
    pub(super) now: &'a Now,
    pub(super) reporting: &'a mut Reporting,
    pub(super) listeners: &'a mut Listeners,
    /// Where the core is in its life, as the loop last set it.
    pub(super) life: Lifecycle,
}

impl Turn<'_> {
    /// Accepting and serving (not draining).
    pub(super) fn serving(&self) -> bool {
        self.life == Lifecycle::Serving
    }

    /// Queues an operation that names no memory of the core's but the ring's own (a
    /// multishot receive, whose buffers come from the buffer ring); it is counted in flight.
    pub(super) fn push_plain(&mut self, sqe: &io_uring::squeue::Entry) {
        // SAFETY: such entries point at no memory but the ring's receive buffers, which the
        // ring keeps while any receive is in flight.
        unsafe { self.ring.push(sqe) };
    }
}
