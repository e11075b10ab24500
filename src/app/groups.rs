//! WebSocket groups as any handler or task of a core's reaches them: [`Groups`], to publish
//! to a group from outside a WebSocket's own handler (an HTTP route that posts to a chat
//! room, a timer). Connections join groups through their handler
//! ([`WebSocket::join`](crate::WebSocket::join), [`AsyncWebSocket::join`](crate::AsyncWebSocket::join)).

use super::websocket::Message;
use crate::engine::{Hub, Published};

/// A core's WebSocket groups, to publish to (made by [`Setup::groups`](crate::Setup::groups);
/// cheap to clone, and the core's own: it is not `Send`).
#[derive(Clone)]
pub struct Groups {
    hub: Hub,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Groups")
    }
}

impl Groups {
    pub(crate) fn new(hub: Hub) -> Groups {
        Groups { hub }
    }

    /// Publishes `message` to the members of `group` on every core: at the end of this
    /// core's next turn, to its members directly and to the other cores' as one message to
    /// each core. A member whose send queue is full, or that is closing, misses it (counted
    /// in `/stats` as `publish_dropped`). Outside a server it reaches no one.
    ///
    /// From a task of your own that sleeps on a glommio timer: while no connection of the
    /// core has a task at work, the core's loop may sleep in its own ring for up to 100 ms
    /// before glommio's timers run, so such a publish can be that late.
    pub fn publish(&self, group: &str, message: Message<'_>) {
        let (text, payload) = message.parts();
        self.hub.publish(Published::new(group, text, payload));
    }
}
