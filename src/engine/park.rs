//! The loop's sleep when a turn finds nothing to do.
//!
//! While no glommio task of this core's is at work (no file read, no async handler),
//! glommio has nothing to run, and the loop sleeps in its own ring: one `io_uring_enter`
//! that submits, waits (bounded by the next deadline) and reaps, as the bare loop does.
//! Otherwise (or with `runtime.idle_wait = "glommio"`) it parks through glommio: the ring's
//! eventfd is switched on and a small glommio task reading that eventfd wakes the loop, so
//! that glommio's own completions (file reads, timers) are handled meanwhile; a ring timeout
//! covers the next deadline.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::{FromRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::{opcode, types};

use super::shard::Shard;
use super::token::{token, Op, NO_KEY};
use super::Application;
use crate::config::IdleWait;

/// Longest sleep in the core's own ring before glommio gets a look at its ring (where
/// nothing of ours is pending, nothing should be there; this bounds the delay if anything is).
pub(super) const RING_WAIT_MAX_MS: u64 = 100;

/// Wakes the parked loop: set by the eventfd task, by file reads and by async handlers.
pub(super) struct Wake {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// The eventfd task is reading; should it ever stop, the loop no longer parks through
    /// glommio (nothing would wake it for network completions).
    watching: Cell<bool>,
}

impl Wake {
    /// Wakes the loop (or makes its next wait return at once).
    pub(super) fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn wait(&self) -> WaitWake<'_> {
        WaitWake(self)
    }
}

struct WaitWake<'a>(&'a Wake);

impl Future for WaitWake<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.fired.replace(false) {
            return Poll::Ready(());
        }
        let mut slot = self.0.waker.borrow_mut();
        match slot.as_ref() {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The loop's sleeping arrangements.
pub(super) struct Parking {
    pub(super) wake: Rc<Wake>,
    idle_wait: IdleWait,
    /// The earliest armed ring timeout (ms), if any.
    timer_ms: Option<u64>,
    /// The armed timeout's duration, which the kernel reads until it fires.
    timespec: types::Timespec,
    /// The park just entered the kernel: the next turn needs no enter of its own.
    pub(super) entered: bool,
}

impl Parking {
    pub(super) fn new(idle_wait: IdleWait) -> Parking {
        Parking {
            wake: Rc::new(Wake {
                fired: Cell::new(false),
                waker: RefCell::new(None),
                watching: Cell::new(true),
            }),
            idle_wait,
            timer_ms: None,
            timespec: types::Timespec::new(),
            entered: false,
        }
    }

    /// A ring timeout completed at `now_ms`.
    pub(super) fn timer_fired(&mut self, now_ms: u64) {
        if self.timer_ms.is_some_and(|at| at <= now_ms) {
            self.timer_ms = None;
        }
    }
}

/// Reads the ring's eventfd through glommio and wakes the loop each time it fires.
pub(super) async fn watch_eventfd(eventfd: RawFd, wake: Rc<Wake>) {
    // SAFETY: dup(2) of the ring's eventfd; the duplicate is owned by the file below.
    let fd = unsafe { libc::dup(eventfd) };
    if fd >= 0 {
        // SAFETY: a fresh descriptor handed over whole.
        let file = unsafe { glommio::io::BufferedFile::from_raw_fd(fd) };
        while file.read_at(0, 8).await.is_ok() {
            wake.fire();
        }
    }
    wake.watching.set(false);
    wake.fire();
}

impl<A: Application> Shard<A> {
    /// Sleeps until a completion, a glommio task's result or the next deadline.
    pub(super) async fn park(&mut self) {
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
