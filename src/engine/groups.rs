//! WebSocket groups and the core's hub: what reaches a core's WebSockets from outside the
//! frame being read.
//!
//! A handler joins its connection to named groups ([`Groups`], the core's own membership,
//! kept by the loop) and publishes a message to a group: the message is framed once
//! ([`Published`]) and queued; at the end of the turn the loop writes it to each member on
//! this core and hands a copy to every other core (`courier`), whose loop does the same for
//! its members. Nothing here is shared with another core: the copies cross as messages.
//!
//! The [`Hub`] is the door for what runs outside the loop on the core's thread: async
//! WebSocket handlers (their sends wait in their connection's mailbox until the loop pulls
//! them: a [`SocketLink`] stirs it), and publishes made from any task of the core's.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::token::Key;
use super::wake::Wake;
use crate::http::websocket::frame::{opcode, write_head};

/// A message published to a group: its frame, written once, as every member gets it
/// (server frames are not masked, and group messages go uncompressed).
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) group: Box<str>,
    /// The whole frame: head and payload.
    pub(crate) frame: Box<[u8]>,
    /// The payload's length (for the counters).
    pub(crate) payload: usize,
}

impl Published {
    /// Frames `payload` as a text (`text`) or binary message to `group`.
    pub(crate) fn new(group: &str, text: bool, payload: &[u8]) -> Published {
        let mut frame = Vec::with_capacity(payload.len() + 10);
        let kind = if text { opcode::TEXT } else { opcode::BINARY };
        write_head(&mut frame, kind, true, false, payload.len());
        frame.extend_from_slice(payload);
        Published {
            group: group.into(),
            frame: frame.into_boxed_slice(),
            payload: payload.len(),
        }
    }

    /// A copy for another core.
    pub(crate) fn copy(&self) -> Published {
        Published {
            group: self.group.clone(),
            frame: self.frame.clone(),
            payload: self.payload,
        }
    }
}

/// The core's groups: which of its connections belong to which group, and what was
/// published by handlers on the loop this turn.
#[derive(Default)]
pub(crate) struct Groups {
    members: HashMap<Rc<str>, HashSet<Key>>,
    /// Published this turn by handlers on the loop, delivered at its end.
    pub(super) published: Vec<Published>,
}

impl Groups {
    /// Adds `key` to `group`; returns the group's name to keep (for leaving), or `None`
    /// when it was a member already.
    pub(super) fn join(&mut self, group: &str, key: Key) -> Option<Rc<str>> {
        if let Some((name, _)) = self.members.get_key_value(group) {
            let name = name.clone();
            return self.members.get_mut(group)?.insert(key).then_some(name);
        }
        let name: Rc<str> = group.into();
        self.members.insert(name.clone(), HashSet::from([key]));
        Some(name)
    }

    /// Takes `key` out of `group` (a group left empty is forgotten); true if it was in.
    pub(super) fn leave(&mut self, group: &str, key: Key) -> bool {
        let Some(members) = self.members.get_mut(group) else {
            return false;
        };
        let was = members.remove(&key);
        if members.is_empty() {
            self.members.remove(group);
        }
        was
    }

    /// The members of `group` on this core, into `into` (emptied first).
    pub(super) fn members_of(&self, group: &str, into: &mut Vec<Key>) {
        into.clear();
        if let Some(members) = self.members.get(group) {
            into.extend(members.iter().copied());
        }
    }
}

/// The core's door for its WebSockets from outside the loop (cheap to clone; the core's
/// own: it is not `Send`).
#[derive(Clone)]
pub(crate) struct Hub(Rc<HubInner>);

struct HubInner {
    /// Connections whose async handler has something for the loop.
    stirred: RefCell<Vec<Key>>,
    /// Published from outside the loop, delivered at the end of its next turn.
    published: RefCell<Vec<Published>>,
    /// Async handlers running (glommio tasks at work for the loop's connections).
    live: Cell<usize>,
    wake: RefCell<Option<Rc<Wake>>>,
    /// No loop will ever take what is published here (a setup outside a server).
    detached: bool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("live", &self.0.live.get())
            .finish()
    }
}

impl Hub {
    /// A hub for a core whose loop has not started yet (it attaches its wake).
    pub(crate) fn new() -> Hub {
        Hub::made(false)
    }

    /// A hub no loop serves (what publishing outside a server reaches: nothing).
    pub(crate) fn detached() -> Hub {
        Hub::made(true)
    }

    fn made(detached: bool) -> Hub {
        Hub(Rc::new(HubInner {
            stirred: RefCell::new(Vec::new()),
            published: RefCell::new(Vec::new()),
            live: Cell::new(0),
            wake: RefCell::new(None),
            detached,
        }))
    }

    pub(super) fn attach(&self, wake: Rc<Wake>) {
        *self.0.wake.borrow_mut() = Some(wake);
    }

    fn fire(&self) {
        if let Some(wake) = self.0.wake.borrow().as_ref() {
            wake.fire();
        }
    }

    /// Publishes to `group` on every core (at the end of this core's next turn); a hub
    /// outside a server ([`Hub::detached`]) drops it.
    pub(crate) fn publish(&self, published: Published) {
        if self.0.detached {
            return;
        }
        self.0.published.borrow_mut().push(published);
        self.fire();
    }

    /// What was published from outside the loop, appended to `into`.
    pub(super) fn take_published(&self, into: &mut Vec<Published>) {
        into.append(&mut self.0.published.borrow_mut());
    }

    /// The connections stirred since the last take, into `into` (emptied first).
    pub(super) fn take_stirred(&self, into: &mut Vec<Key>) {
        into.clear();
        std::mem::swap(into, &mut *self.0.stirred.borrow_mut());
    }

    /// Async handlers running.
    pub(super) fn live(&self) -> usize {
        self.0.live.get()
    }

    /// A link to connection `key`, for its handler.
    pub(super) fn link(&self, key: Key) -> SocketLink {
        SocketLink {
            key,
            hub: self.clone(),
            stirred: Rc::new(Cell::new(false)),
            counted: Cell::new(false),
        }
    }
}

/// A WebSocket handler's link to its connection's loop: to have the loop look at the
/// connection (pull what the handler queued, read on), and to count as work while an
/// async handler runs.
pub(crate) struct SocketLink {
    key: Key,
    hub: Hub,
    /// Stirred and not yet looked at (one entry in the hub's list at a time).
    stirred: Rc<Cell<bool>>,
    counted: Cell<bool>,
}

impl SocketLink {
    /// Asks the loop to look at the connection at its next turn.
    pub(crate) fn stir(&self) {
        if !self.stirred.replace(true) {
            self.hub.0.stirred.borrow_mut().push(self.key);
            self.hub.fire();
        }
    }

    /// The loop is looking at it: the next stir queues it again.
    pub(crate) fn looked_at(&self) {
        self.stirred.set(false);
    }

    /// An async handler runs for the connection (the loop parks through glommio while one
    /// does) until [`SocketLink::done`].
    pub(crate) fn working(&self) {
        if !self.counted.replace(true) {
            self.hub.0.live.set(self.hub.0.live.get() + 1);
        }
    }

    /// The async handler ended.
    pub(crate) fn done(&self) {
        if self.counted.replace(false) {
            self.hub.0.live.set(self.hub.0.live.get() - 1);
        }
    }
}

impl Drop for SocketLink {
    fn drop(&mut self) {
        self.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u32) -> Key {
        Key {
            index,
            generation: 1,
        }
    }

    #[test]
    fn members_join_once_and_empty_groups_go() {
        let mut groups = Groups::default();
        assert!(groups.join("room", key(1)).is_some());
        assert!(groups.join("room", key(1)).is_none());
        assert!(groups.join("room", key(2)).is_some());
        let mut members = Vec::new();
        groups.members_of("room", &mut members);
        members.sort_by_key(|k| k.index);
        assert_eq!(members, [key(1), key(2)]);
        assert!(groups.leave("room", key(1)));
        assert!(!groups.leave("room", key(1)));
        assert!(groups.leave("room", key(2)));
        assert!(groups.members.is_empty());
        groups.members_of("room", &mut members);
        assert!(members.is_empty());
    }

    #[test]
    fn a_published_message_is_framed_once() {
        let published = Published::new("g", true, b"hello");
        assert_eq!(&published.frame[..], b"\x81\x05hello");
        assert_eq!(published.payload, 5);
        let copy = published.copy();
        assert_eq!(copy.frame, published.frame);
        assert_eq!(&*copy.group, "g");
    }

    #[test]
    fn a_link_stirs_once_until_looked_at() {
        let hub = Hub::new();
        let link = hub.link(key(3));
        link.stir();
        link.stir();
        let mut stirred = Vec::new();
        hub.take_stirred(&mut stirred);
        assert_eq!(stirred, [key(3)]);
        link.looked_at();
        link.stir();
        hub.take_stirred(&mut stirred);
        assert_eq!(stirred, [key(3)]);
        link.working();
        link.working();
        assert_eq!(hub.live(), 1);
        drop(link);
        assert_eq!(hub.live(), 0);
    }
}
