//! Where the core's two loops meet: the only place that decides how the core's loop enters
//! its ring or sleeps (the contract is written in the engine's `//!`, "Two loops, one
//! contract"; the choice between going on and sleeping is `Shard::between_turns`).
//!
//! While no glommio task of this core's is at work (no file read, no async handler),
//! glommio has nothing to run, and the loop sleeps in its own ring: one `io_uring_enter`
//! that submits, waits (bounded by the next deadline) and reaps, as the bare loop does.
//! Otherwise (or with `runtime.idle_wait = "glommio"`) it parks through glommio: the ring's
//! eventfd is switched on and a small glommio task reading that eventfd wakes the loop, so
//! that glommio's own completions (file reads, timers) are handled meanwhile; a ring timeout
//! covers the next deadline.

use std::rc::Rc;
use std::time::Duration;

use io_uring::{opcode, types};

use super::ring::Ring;
use super::token::{token, Op, NO_KEY};
use super::wake::Wake;
use crate::config::IdleWait;

/// Longest sleep in the core's own ring before glommio gets a look at its ring (where
/// nothing of ours is pending, nothing should be there; this bounds the delay if anything is).
const RING_WAIT_MAX_MS: u64 = 100;

/// The loop's sleeping arrangements.
pub(super) struct Parking {
    wake: Rc<Wake>,
    idle_wait: IdleWait,
    /// The earliest armed ring timeout (ms), if any.
    timer_ms: Option<u64>,
    /// The armed timeout's duration, which the kernel reads until it fires.
    timespec: types::Timespec,
    /// The park just entered the kernel: the next turn needs no enter of its own.
    entered: bool,
}

impl Parking {
    pub(super) fn new(idle_wait: IdleWait) -> Parking {
        Parking {
            wake: Rc::new(Wake::new()),
            idle_wait,
            timer_ms: None,
            timespec: types::Timespec::new(),
            entered: false,
        }
    }

    /// What wakes the parked loop (for the eventfd task and the glommio tasks).
    pub(super) fn wake(&self) -> &Rc<Wake> {
        &self.wake
    }

    /// A ring timeout completed at `now_ms`.
    pub(super) fn timer_fired(&mut self, now_ms: u64) {
        if self.timer_ms.is_some_and(|at| at <= now_ms) {
            self.timer_ms = None;
        }
    }

    /// Before a turn: one `io_uring_enter` that submits what the last turn queued and
    /// reaps what is ready, unless the park that ended the last turn just made it.
    pub(super) fn enter(&mut self, ring: &mut Ring) -> std::io::Result<()> {
        if std::mem::take(&mut self.entered) {
            return Ok(());
        }
        ring.enter().map(|_| ())
    }

    /// Sleeps until a completion, a glommio task's result or `wake_at` (ms since start; it
    /// is `now_ms`), with `at_work` glommio tasks of this core's at work.
    pub(super) async fn park(
        &mut self,
        ring: &mut Ring,
        wake_at: Option<u64>,
        now_ms: u64,
        at_work: usize,
    ) {
        let watching = self.wake.watching.get();
        if (at_work == 0 && self.idle_wait == IdleWait::Ring) || !watching {
            // Without the eventfd task, tasks finishing are seen within a millisecond.
            let most = if watching || at_work == 0 {
                RING_WAIT_MAX_MS
            } else {
                1
            };
            let wait = match wake_at {
                Some(at) => at.saturating_sub(now_ms).max(1),
                None => most,
            };
            let wait = Duration::from_millis(wait.min(most));
            if ring.wait(wait).is_ok() && !ring.has_completions() {
                // Nothing came: let glommio look at its own ring before sleeping again.
                futures_lite::future::yield_now().await;
            }
            self.entered = true;
            return;
        }
        if let Some(at) = wake_at {
            if self.timer_ms.is_none_or(|armed| armed > at) {
                let wait = Duration::from_millis(at.saturating_sub(now_ms).max(1));
                self.timespec = types::Timespec::from(wait);
                let timeout = opcode::Timeout::new(&self.timespec)
                    .build()
                    .user_data(token(Op::Timer, NO_KEY, 0));
                // SAFETY: the timespec lives in the core, which outlives the ring's use of
                // it: the kernel reads it when the entry is submitted, at the enter below.
                unsafe { ring.push(&timeout) };
                self.timer_ms = Some(at);
            }
        }
        ring.notify(true);
        // Completions that arrived before the eventfd was on would never signal it.
        let flushed = ring.enter();
        if flushed.is_ok() && !ring.has_completions() {
            self.wake.wait().await;
        }
        ring.notify(false);
    }
}
