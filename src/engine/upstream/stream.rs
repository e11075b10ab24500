//! Raw connections for the core's tasks: a byte stream to a server of an `[[upstream]]`,
//! for any protocol (Redis, PostgreSQL, …), carried by a link on the core's ring like the
//! proxy's, but never pooled and never parsed. The task and the loop share a [`StreamSlot`]:
//! the task writes into its output and reads from its input, and stirs the door when the
//! loop has something to do (send the output, read again, close); the loop fills the input
//! as bytes come, sends the output one send at a time, and wakes the task.
//!
//! Bounded both ways: past [`STREAM_HIGH_WATER`] bytes unread, the link stops reading until
//! the task reads; past it unsent, the task's writes wait.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::task::Waker;

use super::super::token::Key;

/// Bytes a stream holds, unread or unsent, before the other side waits.
pub(crate) const STREAM_HIGH_WATER: usize = 64 * 1024;

/// A raw connection, shared by the task that made it and the loop that carries it.
pub(crate) struct StreamSlot(pub(crate) RefCell<StreamState>);

/// Where a raw connection stands.
#[derive(Default)]
pub(crate) struct StreamState {
    pub(crate) upstream: usize,
    pub(super) link: Option<Key>,
    /// None while connecting; then whether it connected.
    pub(crate) connected: Option<Result<(), ErrorKind>>,
    /// Bytes received, not read yet.
    pub(crate) input: Vec<u8>,
    /// The server closed its side.
    pub(crate) eof: bool,
    /// The connection failed after it connected.
    pub(crate) error: Option<ErrorKind>,
    /// Bytes written, not handed to a send yet.
    pub(crate) output: Vec<u8>,
    /// A send is in flight.
    pub(crate) sending: bool,
    /// The task closed its writing side (sent once the output is out).
    pub(crate) shut: bool,
    pub(crate) shut_done: bool,
    /// The link stopped reading: the input is full.
    pub(crate) paused: bool,
    /// The task let go of it.
    pub(crate) dropped: bool,
    /// It is in the door's list of stirred streams.
    pub(crate) stirred: bool,
    pub(crate) reader: Option<Waker>,
    pub(crate) writer: Option<Waker>,
}

impl StreamSlot {
    /// Wakes the task's reader and writer.
    pub(crate) fn wake(&self) {
        let mut state = self.0.borrow_mut();
        let (reader, writer) = (state.reader.take(), state.writer.take());
        drop(state);
        reader.into_iter().chain(writer).for_each(Waker::wake);
    }

    /// Fails the stream with `error`: reads and writes fail from now on.
    pub(in crate::engine) fn fail(&self, error: ErrorKind) {
        let mut state = self.0.borrow_mut();
        state.link = None;
        state.sending = false;
        match state.connected {
            None => state.connected = Some(Err(error)),
            Some(_) => {
                state.error.get_or_insert(error);
            }
        }
        drop(state);
        self.wake();
    }
}
