//! A value only the thread that made it may touch, behind a shared reference that rustls
//! requires to be `Sync`.
//!
//! rustls holds a server's ticket maker as `Arc<dyn ProducesTickets>`, and the trait is
//! `Send + Sync` with `&self` methods: a ticket maker that keeps state it changes (a core's
//! ticket keys, which move on every period) needs interior mutability that the type
//! system accepts as `Sync`. Each core builds its own ticket maker on its own thread and uses
//! it there only, so a lock or an atomic would guard against a race that cannot happen, on the
//! handshake path. [`Confined`] makes that "only" a checked fact instead: it remembers the
//! thread that made it, and [`Confined::with`] lends the value to that thread alone (any
//! other gets `None` and never reaches the value). A `RefCell` inside refuses a second loan
//! while the first is out (a closure that called back into the same value), so there is
//! never more than one `&mut` to the value.
//!
//! Why that is sound: the value is reached in exactly two ways, [`Confined::with`] on the
//! owner thread (one thread, so no two loans overlap in time except by reentrancy, which the
//! `RefCell` refuses) and `Drop`, which has the value to itself (`&mut self`; an `Arc`'s
//! last drop on another thread is ordered after every other use by the `Arc`'s own
//! counting). Thread identities are `ThreadId`s, which the standard library never reuses,
//! so a thread started after the owner ended cannot pass for it. The value must be `Send`,
//! since it may be dropped on another thread.

use std::cell::RefCell;
use std::thread::ThreadId;

/// A value lent only to the thread that made it.
pub(crate) struct Confined<T> {
    owner: ThreadId,
    value: RefCell<T>,
}

// SAFETY: see the module's documentation: only the owner thread reaches `value` through a
// shared reference (checked in `with`), and it is `Send` for the drop elsewhere.
unsafe impl<T: Send> Sync for Confined<T> {}

impl<T> Confined<T> {
    /// `value`, confined to the calling thread.
    pub(crate) fn new(value: T) -> Confined<T> {
        Confined {
            owner: std::thread::current().id(),
            value: RefCell::new(value),
        }
    }

    /// Calls `f` with the value when called on the thread that made it (and not from within
    /// another `with` on the same value); otherwise `None`, without touching the value.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if this_thread()? != self.owner {
            return None;
        }
        let mut value = self.value.try_borrow_mut().ok()?;
        Some(f(&mut value))
    }
}

/// The calling thread's identity, read from a thread-local after the first call (asking the
/// standard library each time clones an `Arc`, an atomic operation on the handshake path).
/// `None` only while the thread's locals are being destroyed.
fn this_thread() -> Option<ThreadId> {
    thread_local! {
        static THIS_THREAD: ThreadId = std::thread::current().id();
    }
    THIS_THREAD.try_with(|id| *id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn only_the_owner_thread_reaches_the_value_and_never_twice_at_once() {
        let confined = Arc::new(Confined::new(1u32));
        assert_eq!(confined.with(|v| *v += 1), Some(()));
        let elsewhere = confined.clone();
        let seen = std::thread::spawn(move || elsewhere.with(|v| *v))
            .join()
            .unwrap();
        assert_eq!(seen, None, "another thread is refused");
        let nested = confined.with(|v| {
            *v += 1;
            confined.with(|w| *w)
        });
        assert_eq!(nested, Some(None), "a loan within a loan is refused");
        assert_eq!(confined.with(|v| *v), Some(3));
    }
}
