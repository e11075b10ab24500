//! What a raw stream's link events mean (see `stream` for the stream itself): opened at a
//! task's ask, its output sent, its input filled (and paused when full), its end read.

use std::io::ErrorKind;
use std::rc::Rc;

use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::Link;
use super::stream::{StreamSlot, STREAM_HIGH_WATER};

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
            self.send_bytes(turn, link, &state.output);
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
