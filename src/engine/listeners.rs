//! A core's listening sockets: one multishot accept armed on each, stopped and armed again
//! as the core asks (the TLS listeners held back at the handshake bound, every listener
//! after an accept error's pause, all of them for good when the core drains).

use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::{opcode, types};

use super::ring::Ring;
use super::token::{token, Key, Op};
use super::Listener;

/// One listening socket.
struct Slot {
    fd: OwnedFd,
    /// A multishot accept is armed on it.
    armed: bool,
    /// Its connections speak TLS.
    tls: bool,
}

/// The core's listening sockets: its own, or after a reload those handed over by the
/// server before (when there were more of them than cores).
pub(super) struct Listeners {
    slots: Vec<Slot>,
    /// After an accept error, when to try again (ms).
    retry_ms: Option<u64>,
}

/// The accept token of listener `index`.
fn accept_token(index: usize) -> u64 {
    let key = Key {
        index: index as u32,
        generation: 0,
    };
    token(Op::Accept, key, 0)
}

impl Listeners {
    pub(super) fn new(listeners: Vec<Listener>) -> Listeners {
        Listeners {
            slots: listeners
                .into_iter()
                .map(|l| Slot {
                    fd: l.fd,
                    armed: false,
                    tls: l.tls,
                })
                .collect(),
            retry_ms: None,
        }
    }

    /// Whether listener `index` takes TLS connections.
    pub(super) fn is_tls(&self, index: usize) -> bool {
        self.slots.get(index).is_some_and(|slot| slot.tls)
    }

    /// Arms the accept of every listener that has none (all but the TLS ones while
    /// `tls_paused`).
    pub(super) fn arm_all(&mut self, ring: &mut Ring, tls_paused: bool) {
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let held_back = tls_paused && slot.tls;
            if !slot.armed && !held_back {
                self.arm(index, ring);
            }
        }
    }

    /// Arms listener `index`'s multishot accept.
    pub(super) fn arm(&mut self, index: usize, ring: &mut Ring) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let accept = opcode::AcceptMulti::new(types::Fd(slot.fd.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(accept_token(index));
        // SAFETY: a multishot accept names no memory; the listener's descriptor stays open
        // while the accept is armed (`stop` cancels it before closing).
        unsafe { ring.push(&accept) };
        slot.armed = true;
    }

    fn cancel(&mut self, index: usize, ring: &mut Ring) {
        ring.cancel(accept_token(index));
        // Its completion (ECANCELED) is not armed again by itself.
        self.slots[index].armed = false;
    }

    /// The handshake bound is reached: the TLS listeners stop accepting (their connections
    /// wait in the kernel's queue).
    pub(super) fn pause_tls(&mut self, ring: &mut Ring) {
        for index in 0..self.slots.len() {
            if self.slots[index].tls && self.slots[index].armed {
                self.cancel(index, ring);
            }
        }
    }

    /// Room again under the handshake bound: the TLS listeners accept again.
    pub(super) fn resume_tls(&mut self, ring: &mut Ring) {
        for index in 0..self.slots.len() {
            if self.slots[index].tls && !self.slots[index].armed {
                self.arm(index, ring);
            }
        }
    }

    /// Stops accepting for good: cancels the accepts and closes the core's descriptors of
    /// the listening sockets (after a reload the sockets stay open in the next server, which
    /// accepts what is queued).
    pub(super) fn stop(&mut self, ring: &mut Ring) {
        for index in 0..self.slots.len() {
            if self.slots[index].armed {
                self.cancel(index, ring);
            }
        }
        self.slots.clear();
        self.retry_ms = None;
    }

    /// Listener `index`'s accept ended (its last completion came): it is no longer armed.
    /// Returns whether it was a listener still open.
    pub(super) fn ended(&mut self, index: usize) -> bool {
        match self.slots.get_mut(index) {
            Some(slot) => {
                slot.armed = false;
                true
            }
            None => false,
        }
    }

    /// Accepting pauses until `at` (ms), after an accept error.
    pub(super) fn retry_at(&mut self, at: u64) {
        self.retry_ms = Some(at);
    }

    /// When accepting is to be tried again, if it is paused.
    pub(super) fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Whether the pause after an accept error is over at `now_ms` (then it is cleared).
    pub(super) fn retry_due(&mut self, now_ms: u64) -> bool {
        match self.retry_ms {
            Some(at) if now_ms >= at => {
                self.retry_ms = None;
                true
            }
            _ => false,
        }
    }
}
