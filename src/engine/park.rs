//! Where the core's two loops meet: the only place that decides when the core's loop
//! enters its ring, yields to glommio, or sleeps (the contract is written in the engine's
//! `//!`, "Two loops, one contract").
//!
//! While no glommio task of this core's is at work (no file read, no async handler),
//! glommio has nothing to run, and the loop sleeps in its own ring: one `io_uring_enter`
//! that submits, waits (bounded by the next deadline) and reaps, as the bare loop does.
//! Otherwise (or with `runtime.idle_wait = "glommio"`) it parks through glommio: the ring's
//! eventfd is switched on and a small glommio task reading that eventfd wakes the loop, so
//! that glommio's own completions (file reads, timers) are handled meanwhile; a ring timeout
//! covers the next deadline.

use std::time::Duration;

use io_uring::{opcode, types};

use super::shard::Shard;
use super::token::{token, Op, NO_KEY};
use super::wake::RING_WAIT_MAX_MS;
use super::Application;
use crate::config::IdleWait;

impl<A: Application> Shard<A> {
    /// Before a turn: one `io_uring_enter` that submits what the last turn queued and
    /// reaps what is ready, unless the park that ended the last turn just made it.
    pub(super) fn enter(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.parking.entered) {
            return Ok(());
        }
        self.ring.enter().map(|_| ())
    }

    /// After a turn: when it found work, the loop goes on at once, letting glommio run
    /// first (every time while tasks of this core's are at work, so that their results
    /// come back within a turn; otherwise only when glommio's own time slice is up); when it
    /// found nothing, the loop sleeps.
    pub(super) async fn between_turns(&mut self, busy: bool) {
        match (busy, self.background.tasks > 0) {
            (true, true) => futures_lite::future::yield_now().await,
            (true, false) => glommio::yield_if_needed().await,
            (false, _) => self.park().await,
        }
    }

    /// Sleeps until a completion, a glommio task's result or the next deadline.
    async fn park(&mut self) {
        let wake_at = self.wake_at();
        self.reporting.metrics.counters.borrow_mut().parks += 1;
        let watching = self.parking.wake.watching.get();
        let tasks = self.background.tasks;
        if (tasks == 0 && self.parking.idle_wait == IdleWait::Ring) || !watching {
            // Without the eventfd task, tasks finishing are seen within a millisecond.
            let most = if watching || tasks == 0 {
                RING_WAIT_MAX_MS
            } else {
                1
            };
            let wait = match wake_at {
                Some(at) => at.saturating_sub(self.now.ms).max(1),
                None => most,
            };
            let wait = Duration::from_millis(wait.min(most));
            if self.ring.wait(wait).is_ok() && !self.ring.has_completions() {
                // Nothing came: let glommio look at its own ring before sleeping again.
                futures_lite::future::yield_now().await;
            }
            self.parking.entered = true;
            return;
        }
        if let Some(at) = wake_at {
            if self.parking.timer_ms.is_none_or(|armed| armed > at) {
                let wait = Duration::from_millis(at.saturating_sub(self.now.ms).max(1));
                self.parking.timespec = types::Timespec::from(wait);
                let timeout = opcode::Timeout::new(&self.parking.timespec)
                    .build()
                    .user_data(token(Op::Timer, NO_KEY, 0));
                // SAFETY: the timespec lives in the core, which outlives the ring's use of
                // it: the kernel reads it when the entry is submitted, at the enter below.
                unsafe { self.ring.push(&timeout) };
                self.parking.timer_ms = Some(at);
            }
        }
        self.ring.notify(true);
        // Completions that arrived before the eventfd was on would never signal it.
        let flushed = self.ring.enter();
        if flushed.is_ok() && !self.ring.has_completions() {
            self.parking.wake.wait().await;
        }
        self.ring.notify(false);
    }
}
