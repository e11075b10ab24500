//! What wakes the core's loop when it parks through glommio: the ring's eventfd read by a
//! small glommio task, and the glommio tasks (file reads, async handlers) that post results
//! back. `park` decides where the loop sleeps.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::{FromRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use io_uring::types;

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
    pub(super) watching: Cell<bool>,
}

impl Wake {
    /// Wakes the loop (or makes its next wait return at once).
    pub(super) fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub(super) fn wait(&self) -> WaitWake<'_> {
        WaitWake(self)
    }
}

pub(super) struct WaitWake<'a>(&'a Wake);

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
    pub(super) idle_wait: IdleWait,
    /// The earliest armed ring timeout (ms), if any.
    pub(super) timer_ms: Option<u64>,
    /// The armed timeout's duration, which the kernel reads until it fires.
    pub(super) timespec: types::Timespec,
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
