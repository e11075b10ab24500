//! What wakes the core's loop when it parks through glommio: the ring's eventfd read by a
//! small glommio task, and the glommio tasks (file reads, async handlers) that post results
//! back. `park` decides where the loop sleeps.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::{FromRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Wakes the parked loop: set by the eventfd task, by file reads and by async handlers.
pub(super) struct Wake {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// The eventfd task is reading; should it ever stop, the loop no longer parks through
    /// glommio (nothing would wake it for network completions).
    pub(super) watching: Cell<bool>,
}

impl Wake {
    pub(super) fn new() -> Wake {
        Wake {
            fired: Cell::new(false),
            waker: RefCell::new(None),
            watching: Cell::new(true),
        }
    }

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
