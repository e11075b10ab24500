//! What the loop does for WebSocket groups and async WebSocket handlers at the end of each
//! turn (see `groups` and `courier`): the connections whose handlers stirred them are looked
//! at, and the turn's published messages (from the handlers on the loop, from tasks, from
//! other cores) are written to this core's members; this core's own go to the other cores.

use super::conn::{Conn, Deferring};
use super::connections::Connections;
use super::groups::Published;
use super::socket::queue_takes;
use super::turn::Turn;
use super::Application;

/// Group messages up to this size go out of a buffer made to fit them (when the member has
/// no output buffer already) rather than a pooled 16 KiB one.
const SMALL_FRAME: usize = 4096;

impl<A: Application> Connections<A> {
    /// Looks at the stirred WebSockets and delivers the group messages; true if there was
    /// anything.
    pub(super) fn tend_sockets(&mut self, turn: &mut Turn<'_>) -> bool {
        let mut keys = std::mem::take(&mut self.socket_keys);
        self.hub.take_stirred(&mut keys);
        let mut busy = !keys.is_empty();
        for key in keys.drain(..) {
            if let Some(mut conn) = self.table.take(key) {
                if conn.sockets() {
                    self.socket_input(turn, &mut conn, &[]);
                    self.flush(turn, &mut conn);
                }
                self.settle(turn, conn);
            }
        }
        self.socket_keys = keys;

        let mut published = std::mem::take(&mut self.groups.published);
        self.hub.take_published(&mut published);
        let mut dropped = 0;
        for message in &published {
            if !self.courier.forward(message) {
                dropped += 1;
            }
        }
        let own = published.len() as u64;
        // Then what the other cores published, for this core's members only.
        self.courier.receive(&mut published);
        busy |= !published.is_empty();
        for message in published.drain(..) {
            dropped += self.deliver(turn, &message);
        }
        self.groups.published = published;
        self.courier.send();
        if own > 0 || dropped > 0 {
            let mut counters = turn.reporting.metrics.counters.borrow_mut();
            counters.websocket_published += own;
            counters.websocket_publish_dropped += dropped;
        }
        busy
    }

    /// Messages wait for another core's channel: the loop looks again within a
    /// millisecond.
    pub(super) fn courier_waiting(&self) -> bool {
        self.courier.waiting()
    }

    /// Writes `message` to each of its group's members on this core; returns how many it
    /// skipped (closing, or its send queue full).
    fn deliver(&mut self, turn: &mut Turn<'_>, message: &Published) -> u64 {
        let mut keys = std::mem::take(&mut self.member_keys);
        self.groups.members_of(&message.group, &mut keys);
        let (mut delivered, mut dropped) = (0, 0);
        for &key in &keys {
            let Some(mut conn) = self.table.take(key) else {
                continue;
            };
            if self.write_published(&mut conn, message) {
                delivered += 1;
                self.flush(turn, &mut conn);
            } else {
                dropped += 1;
            }
            self.settle(turn, conn);
        }
        self.member_keys = keys;
        if delivered > 0 {
            let mut counters = turn.reporting.metrics.counters.borrow_mut();
            counters.websocket_messages_out += delivered;
            counters.websocket_bytes_out += delivered * message.payload as u64;
        }
        dropped
    }

    /// Queues `message`'s frame on `conn`, under the send queue's bound (one message goes
    /// when nothing waits, as for a handler's own sends).
    fn write_published(&mut self, conn: &mut Conn, message: &Published) -> bool {
        let queued = conn.out.len() + conn.in_flight();
        let max_queue = self.settings.websocket.max_send_queue_bytes;
        let Deferring::Socket(socket) = &mut conn.deferring else {
            return false;
        };
        if socket.closing || !queue_takes(queued, message.frame.len(), max_queue) {
            return false;
        }
        let plain = conn.transport.tls().is_none();
        if plain && conn.out.capacity() == 0 && message.frame.len() <= SMALL_FRAME {
            // A buffer the frame's size, not a pooled one: a group of thousands does not
            // hold thousands of output buffers while its message goes out. (Over TLS the
            // frame is sealed into a record buffer of its own anyway.)
            conn.out = Vec::with_capacity(message.frame.len());
        } else {
            self.buffers.writes.lend(&mut conn.out);
        }
        conn.out.extend_from_slice(&message.frame);
        socket.entry.messages_out += 1;
        socket.bytes += message.frame.len() as u64;
        true
    }
}
