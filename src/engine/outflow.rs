//! Streamed responses: a body an async handler writes over time, behind a head written
//! when the handler returned. The handler's producer (a glommio task of the core's) and the
//! loop share an [`OutflowSlot`]: the producer appends bytes to its `pending` buffer and
//! stirs the core's [`Outflows`] door; the loop, at its next turn, takes the bytes into the
//! connection's output, framed as chunks (or raw, to an HTTP/1.0 client whose connection
//! closes at the end), and wakes the producer when there is room again.
//!
//! Bounded: the producer's writes wait while [`OUTFLOW_HIGH_WATER`] bytes are pending, and
//! the loop takes pending bytes only while the connection's output is below the session's
//! high-water mark, so a client that reads slowly holds its producer, not the core's
//! memory. Nothing here is shared with another core: the slot is `Rc`, made and used on
//! the core's thread.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

use super::background::DeferredLog;
use super::token::Key;
use super::wake::Wake;
use crate::http::status::Status;
use crate::http::stream_coder::StreamCoder;

/// Bytes a producer may have pending before its writes wait.
pub(crate) const OUTFLOW_HIGH_WATER: usize = 64 * 1024;

/// Why a streamed body can take no more bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutflowEnd {
    /// The connection ended (the client left, a write timed out, the drain's deadline).
    Gone,
    /// The response has no body: a `HEAD`, a 204 or 304, or a head that failed.
    NoBody,
}

/// A streamed body, shared by its producer and the loop.
#[derive(Default)]
pub(crate) struct OutflowSlot(pub(crate) RefCell<OutflowState>);

/// Where a streamed body stands.
#[derive(Default)]
pub(crate) struct OutflowState {
    /// Bytes written by the producer, not yet taken by the loop.
    pub(crate) pending: Vec<u8>,
    /// Trailer fields (checked), sent after the last chunk when the body is chunked.
    pub(crate) trailers: Vec<(String, String)>,
    /// The producer finished the body.
    pub(crate) finished: bool,
    /// The producer failed (an error or a panic): the response is cut short.
    pub(crate) failed: bool,
    /// No more bytes are taken, and why.
    pub(crate) ended: Option<OutflowEnd>,
    /// Set by the response's head: the body goes out chunked (not to an HTTP/1.0 client).
    pub(crate) chunked: bool,
    /// Set by the response's head: the body is sent (not a `HEAD`, a 204, a 304).
    pub(crate) wanted: bool,
    /// Set by the response's head when the body is compressed: each part is coded and
    /// flushed as it is sent, and the coded stream finished when the producer is.
    pub(crate) coder: Option<StreamCoder>,
    /// The loop's connection, once the head is written; and the door to stir it.
    pub(super) owner: Option<(Key, Outflows)>,
    /// It is in the door's list.
    pub(super) stirred: bool,
    /// The head went out: the producer's bytes are taken from now on (before, its writes
    /// wait, so that nothing is made for a response that turns out to have no body).
    pub(crate) started: bool,
    /// The producer, waiting for room.
    pub(crate) writer: Option<Waker>,
    /// Counted among the core's live producers (from the head until the producer returns).
    live: Option<Outflows>,
}

impl OutflowState {
    /// Adds `bytes` to the pending ones, coded and flushed when the body is compressed. A
    /// coder that fails cuts the body short.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        match self.coder.as_mut() {
            None => self.pending.extend_from_slice(bytes),
            Some(coder) => {
                if !coder.part(bytes, &mut self.pending) {
                    self.failed = true;
                }
            }
        }
    }

    /// Ends a compressed body's coded stream once its producer has finished (at once when
    /// it is not compressed).
    pub(super) fn finish_coding(&mut self) {
        if !self.finished {
            return;
        }
        if let Some(mut coder) = self.coder.take() {
            if !coder.finish(&mut self.pending) {
                self.failed = true;
            }
        }
    }
}

impl OutflowSlot {
    /// Tells the loop there is something to do (bytes, the end): at its next turn.
    pub(crate) fn stir(self: &Rc<Self>) {
        let mut state = self.0.borrow_mut();
        if state.stirred {
            return;
        }
        let Some((_, door)) = state.owner.clone() else {
            // Not adopted yet: the loop takes what is there when it writes the head.
            return;
        };
        state.stirred = true;
        drop(state);
        door.0.stirred.borrow_mut().push(self.clone());
        door.0.wake.fire();
    }

    /// Its producer returned: it no longer counts among the core's live producers.
    pub(crate) fn producer_done(&self) {
        if let Some(door) = self.0.borrow_mut().live.take() {
            door.0.live.set(door.0.live.get() - 1);
        }
    }

    /// Ends the body for `why` and wakes the producer (its writes fail from now on).
    pub(crate) fn end(&self, why: OutflowEnd) {
        let mut state = self.0.borrow_mut();
        state.ended.get_or_insert(why);
        state.owner = None;
        state.pending = Vec::new();
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
    }
}

/// A core's door for its streamed bodies (cheap to clone).
#[derive(Clone)]
pub(crate) struct Outflows(Rc<Door>);

struct Door {
    stirred: RefCell<Vec<Rc<OutflowSlot>>>,
    wake: Rc<Wake>,
    /// Producers running behind a head that went out: glommio tasks at work, so the loop
    /// parks through glommio (their writes and timers are not left waiting on the ring).
    live: Cell<usize>,
}

impl Outflows {
    pub(super) fn new(wake: Rc<Wake>) -> Outflows {
        Outflows(Rc::new(Door {
            stirred: RefCell::new(Vec::new()),
            wake,
            live: Cell::new(0),
        }))
    }

    /// Producers running behind a head that went out.
    pub(super) fn live(&self) -> usize {
        self.0.live.get()
    }

    /// The slots stirred since the last take, into `into` (emptied first).
    pub(super) fn take(&self, into: &mut Vec<Rc<OutflowSlot>>) {
        into.clear();
        std::mem::swap(into, &mut *self.0.stirred.borrow_mut());
    }

    /// Makes `slot` the body of connection `key`'s response, and lets its producer write.
    pub(super) fn adopt(&self, slot: &OutflowSlot, key: Key) {
        let mut state = slot.0.borrow_mut();
        state.owner = Some((key, self.clone()));
        state.started = true;
        if state.live.is_none() {
            self.0.live.set(self.0.live.get() + 1);
            state.live = Some(self.clone());
        }
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
    }
}

/// A streamed response under way on its connection.
pub(super) struct Outflow {
    pub(super) slot: Rc<OutflowSlot>,
    /// The response's status, and the bytes of it written so far (head included).
    pub(super) status: Status,
    pub(super) bytes: u64,
    /// What the access log says of it, once it ends.
    pub(super) log: Option<Box<DeferredLog>>,
}
