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
use std::rc::Rc;
use std::task::Waker;

use super::super::connections::Connections;
use super::super::token::Key;
use super::super::turn::Turn;
use super::super::Application;
use super::link::Link;

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

impl<A: Application> Connections<A> {
    /// Opens the raw connections the tasks asked for, and does what the stirred ones need.
    pub(super) fn take_streams(&mut self, turn: &mut Turn<'_>) -> bool {
        let [opened, stirred] = self.upstreams.door.take_streams();
        let any = !(opened.is_empty() && stirred.is_empty());
        for slot in opened {
            self.open_stream(turn, slot);
        }
        for slot in stirred {
            slot.0.borrow_mut().stirred = false;
            let Some(mut link) = self.link_of_stream(&slot) else {
                continue;
            };
            if slot.0.borrow().dropped {
                link.stream = None;
                self.detach(turn, &mut link);
                self.settle_link(turn, link);
                continue;
            }
            self.stream_push(turn, &mut link, &slot);
            self.upstreams.links.put(link);
        }
        any
    }

    /// Connects a raw stream to the next server of its upstream.
    fn open_stream(&mut self, turn: &mut Turn<'_>, slot: Rc<StreamSlot>) {
        if slot.0.borrow().dropped {
            return;
        }
        let upstream = slot.0.borrow().upstream;
        let Some(server) = self.upstreams.groups[upstream].choose(turn.now.ms, None) else {
            return slot.fail(ErrorKind::ConnectionRefused);
        };
        self.upstreams.groups[upstream].set_busy(server, true);
        self.count_server(turn, upstream, server, |c| c.requests += 1);
        match self.open_link(turn, upstream, server) {
            Some(mut link) => {
                slot.0.borrow_mut().link = Some(link.key);
                link.stream = Some(slot);
                self.upstreams.links.put(link);
            }
            None => {
                self.upstreams.groups[upstream].set_busy(server, false);
                self.server_failed(turn, upstream, server);
                slot.fail(ErrorKind::ConnectionRefused);
            }
        }
    }

    /// The link carrying the stream of `slot`, taken from the table.
    fn link_of_stream(&mut self, slot: &Rc<StreamSlot>) -> Option<Box<Link>> {
        let key = slot.0.borrow().link?;
        let link = self.upstreams.links.take(key)?;
        if link.stream.as_ref().is_some_and(|s| Rc::ptr_eq(s, slot)) {
            return Some(link);
        }
        self.upstreams.links.put(link);
        None
    }

    /// Sends the stream's output if no send is in flight; once the task has closed its side
    /// and all it wrote is out, shuts the link's writing side; reads again if the task made
    /// room.
    pub(super) fn stream_push(&mut self, turn: &mut Turn<'_>, link: &mut Link, slot: &StreamSlot) {
        let mut state = slot.0.borrow_mut();
        if state.connected != Some(Ok(())) {
            return;
        }
        if link.send.is_none() && !state.output.is_empty() {
            self.send_request(turn, link, &state.output);
            state.output.clear();
            state.sending = true;
        }
        state.sending = link.send.is_some();
        if state.shut && !state.sending && state.output.is_empty() && !state.shut_done {
            state.shut_done = true;
            // SAFETY: shutdown(2) on the link's own socket.
            unsafe { libc::shutdown(link.fd, libc::SHUT_WR) };
        }
        if state.paused && state.input.len() < STREAM_HIGH_WATER {
            state.paused = false;
            link.paused = false;
            drop(state);
            self.arm_link_recv(turn, link);
            state = slot.0.borrow_mut();
        }
        drop(state);
        slot.wake();
    }

    /// The link's connect completed: the stream is open.
    pub(super) fn stream_connected(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        let Some(slot) = link.stream.clone() else {
            return;
        };
        slot.0.borrow_mut().connected = Some(Ok(()));
        self.arm_link_recv(turn, link);
        self.stream_push(turn, link, &slot);
    }

    /// The link's send completed: more of the output may go.
    pub(super) fn stream_sent(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if let Some(slot) = link.stream.clone() {
            self.stream_push(turn, link, &slot);
        }
    }

    /// Bytes from the server, for the task.
    pub(super) fn stream_data(&mut self, turn: &mut Turn<'_>, link: &mut Link, data: &[u8]) {
        let Some(slot) = link.stream.clone() else {
            return;
        };
        let mut state = slot.0.borrow_mut();
        state.input.extend_from_slice(data);
        if state.input.len() >= STREAM_HIGH_WATER {
            state.paused = true;
            link.paused = true;
            self.cancel_link_recv(turn, link);
        }
        drop(state);
        slot.wake();
    }

    /// The server closed the link (or it failed, `failed`): the task reads the end.
    pub(super) fn stream_ended(&mut self, turn: &mut Turn<'_>, link: &mut Link, failed: bool) {
        let Some(slot) = link.stream.clone() else {
            return;
        };
        let connecting = slot.0.borrow().connected.is_none();
        if failed || connecting {
            link.stream = None;
            self.detach(turn, link);
            let error = match connecting {
                true => ErrorKind::ConnectionRefused,
                false => ErrorKind::ConnectionReset,
            };
            return slot.fail(error);
        }
        slot.0.borrow_mut().eof = true;
        slot.wake();
    }
}
