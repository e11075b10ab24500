//! The async form of a WebSocket handler: one glommio task per connection, on the core that
//! accepted it, which awaits messages and sends when it likes (after a timer, an upstream
//! call, a message from elsewhere) through an [`AsyncWebSocket`].
//!
//! The task and the loop meet in the connection's mailbox. The engine hands each message
//! to the mailbox's inbox (a copy the task owns: an allocation per message, which the
//! inline form avoids) and wakes the task; while the inbox holds [`INBOX_HIGH_WATER`]
//! bytes, the connection's frames stay unread (so a task that does not keep up holds its
//! client back, not the core's memory). The task's sends, closes and group operations wait
//! in the outbox, in order, until the loop pulls them at its next turn; a send waits while
//! the outbox and the connection's queue together hold `websocket.max_send_queue_bytes`,
//! and the client's frames stay unread while they do (publishes count there too).
//!
//! A task counts as work of the core's while it lives (the loop parks through glommio, so
//! that its timers run): a task should return once `recv` gives `None` or a send fails
//! with `Closing`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use futures_lite::FutureExt;

use super::websocket::{Message, SendError};
use crate::engine::{
    queue_takes, SendRefused, SocketHandler, SocketLink, SocketMessage, SocketOut,
};

/// Bytes of received messages an async handler may have waiting before the connection's
/// frames are left unread.
pub const INBOX_HIGH_WATER: usize = 64 * 1024;

/// A message from the client, as an async handler owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedMessage {
    /// A text message (valid UTF-8: checked as it came).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl OwnedMessage {
    /// The message, borrowed (to send it back as it came).
    pub fn as_message(&self) -> Message<'_> {
        match self {
            OwnedMessage::Text(text) => Message::Text(text),
            OwnedMessage::Binary(bytes) => Message::Binary(bytes),
        }
    }

    fn len(&self) -> usize {
        match self {
            OwnedMessage::Text(text) => text.len(),
            OwnedMessage::Binary(bytes) => bytes.len(),
        }
    }
}

/// What the task asked of its connection, in order.
enum Outgoing {
    Message(OwnedMessage),
    Close(u16, String),
    Join(String),
    Leave(String),
    Publish(String, OwnedMessage),
}

/// Where a connection's task and the loop meet.
#[derive(Default)]
struct Mailbox {
    inbox: VecDeque<OwnedMessage>,
    inbox_bytes: usize,
    outbox: VecDeque<Outgoing>,
    /// Bytes of the messages in the outbox.
    outbox_bytes: usize,
    /// Bytes queued on the connection, as the loop last saw, and the queue's bound.
    queued: usize,
    max_queue: usize,
    /// The task asked to close (or the loop began the close handshake).
    closing: bool,
    /// The connection ended: the client's close code and reason.
    ended: Option<(Option<u16>, String)>,
    /// The task returned (what comes after is dropped).
    done: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    link: Option<SocketLink>,
}

impl Mailbox {
    fn stir(&self) {
        if let Some(link) = &self.link {
            link.stir();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }

    /// Bytes waiting to be sent: in the outbox and on the connection.
    fn pending(&self) -> usize {
        self.outbox_bytes + self.queued
    }
}

/// A WebSocket connection, as its async handler's task holds it.
///
/// Not `Send`: it belongs to the core whose loop carries the connection.
pub struct AsyncWebSocket {
    mailbox: Rc<RefCell<Mailbox>>,
}

impl std::fmt::Debug for AsyncWebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWebSocket")
            .field("queued", &self.queued())
            .finish()
    }
}

impl AsyncWebSocket {
    /// The next message from the client; `None` once the connection has ended (see
    /// [`AsyncWebSocket::close_code`]) and every message before the end was taken.
    pub async fn recv(&mut self) -> Option<OwnedMessage> {
        std::future::poll_fn(|cx| {
            let mut mailbox = self.mailbox.borrow_mut();
            if let Some(message) = mailbox.inbox.pop_front() {
                let was_full = mailbox.inbox_bytes >= INBOX_HIGH_WATER;
                mailbox.inbox_bytes -= message.len();
                if was_full && mailbox.inbox_bytes < INBOX_HIGH_WATER {
                    // The loop left the client's frames unread: it reads on.
                    mailbox.stir();
                }
                return Poll::Ready(Some(message));
            }
            if mailbox.ended.is_some() {
                return Poll::Ready(None);
            }
            mailbox.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Sends `message` once there is room: it waits while `websocket.max_send_queue_bytes`
    /// are queued (one message goes whenever nothing is). Fails once the close handshake
    /// has begun or the connection has ended.
    pub async fn send(&mut self, message: Message<'_>) -> Result<(), SendError> {
        let len = message.parts().1.len();
        std::future::poll_fn(|cx| {
            let mut mailbox = self.mailbox.borrow_mut();
            if mailbox.closing || mailbox.ended.is_some() {
                return Poll::Ready(Err(SendError::Closing));
            }
            if room(&mailbox, len) {
                return Poll::Ready(Ok(()));
            }
            mailbox.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        self.queue(message);
        Ok(())
    }

    /// Sends `message` if there is room now, or fails with [`SendError::Full`] (the
    /// message is dropped) or [`SendError::Closing`].
    pub fn try_send(&mut self, message: Message<'_>) -> Result<(), SendError> {
        let mailbox = self.mailbox.borrow();
        if mailbox.closing || mailbox.ended.is_some() {
            return Err(SendError::Closing);
        }
        if !room(&mailbox, message.parts().1.len()) {
            return Err(SendError::Full);
        }
        drop(mailbox);
        self.queue(message);
        Ok(())
    }

    /// Sends a text message (see [`AsyncWebSocket::send`]).
    pub async fn text(&mut self, text: &str) -> Result<(), SendError> {
        self.send(Message::Text(text)).await
    }

    /// Sends a binary message (see [`AsyncWebSocket::send`]).
    pub async fn binary(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.send(Message::Binary(bytes)).await
    }

    /// Bytes sent and not yet written to the client (waiting here or on the connection).
    pub fn queued(&self) -> usize {
        self.mailbox.borrow().pending()
    }

    /// Waits until everything sent has been written to the client (or the connection
    /// ended).
    pub async fn drained(&mut self) {
        std::future::poll_fn(|cx| {
            let mut mailbox = self.mailbox.borrow_mut();
            if mailbox.pending() == 0 || mailbox.ended.is_some() {
                return Poll::Ready(());
            }
            mailbox.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// Starts the close handshake with `code` and `reason` (after what was sent before);
    /// [`AsyncWebSocket::recv`] returns `None` once the client answers.
    pub fn close(&mut self, code: u16, reason: &str) {
        let mut mailbox = self.mailbox.borrow_mut();
        if !mailbox.closing && mailbox.ended.is_none() {
            mailbox.closing = true;
            mailbox
                .outbox
                .push_back(Outgoing::Close(code, reason.to_owned()));
            mailbox.stir();
        }
    }

    /// The close code the client sent and its reason, once the connection has ended
    /// (`Some((None, ""))` when it ended without one).
    pub fn close_code(&self) -> Option<(Option<u16>, String)> {
        self.mailbox.borrow().ended.clone()
    }

    /// Joins the connection to `group` (see [`WebSocket::join`](crate::WebSocket::join)).
    pub fn join(&mut self, group: &str) {
        self.ask(Outgoing::Join(group.to_owned()));
    }

    /// Takes the connection out of `group`.
    pub fn leave(&mut self, group: &str) {
        self.ask(Outgoing::Leave(group.to_owned()));
    }

    /// Publishes `message` to `group`'s members on every core (see
    /// [`WebSocket::publish`](crate::WebSocket::publish)).
    pub fn publish(&mut self, group: &str, message: Message<'_>) {
        let message = owned(message);
        let len = message.len();
        let mut mailbox = self.mailbox.borrow_mut();
        if mailbox.ended.is_none() {
            // Counted with the sends: a task that publishes faster than its own client
            // reads stops that client being read.
            mailbox.outbox_bytes += len;
            mailbox
                .outbox
                .push_back(Outgoing::Publish(group.to_owned(), message));
            mailbox.stir();
        }
    }

    fn queue(&mut self, message: Message<'_>) {
        let message = owned(message);
        let mut mailbox = self.mailbox.borrow_mut();
        mailbox.outbox_bytes += message.len();
        mailbox.outbox.push_back(Outgoing::Message(message));
        mailbox.stir();
    }

    fn ask(&mut self, what: Outgoing) {
        let mut mailbox = self.mailbox.borrow_mut();
        if mailbox.ended.is_none() {
            mailbox.outbox.push_back(what);
            mailbox.stir();
        }
    }
}

/// Whether a message of `len` bytes may go now.
fn room(mailbox: &Mailbox, len: usize) -> bool {
    let pending = mailbox.pending();
    queue_takes(pending, len, mailbox.max_queue)
}

fn owned(message: Message<'_>) -> OwnedMessage {
    match message {
        Message::Text(text) => OwnedMessage::Text(text.to_owned()),
        Message::Binary(bytes) => OwnedMessage::Binary(bytes.to_vec()),
    }
}

/// What a route's async factory makes for one connection: the task, not started yet.
pub(crate) type SocketTask = Pin<Box<dyn Future<Output = ()>>>;

/// The engine's side of an async handler.
pub(crate) struct TaskAdapter {
    mailbox: Rc<RefCell<Mailbox>>,
    task: Option<SocketTask>,
}

impl TaskAdapter {
    /// A handler whose task `make` makes, given the connection.
    pub(crate) fn new(make: impl FnOnce(AsyncWebSocket) -> SocketTask) -> TaskAdapter {
        let mailbox = Rc::new(RefCell::new(Mailbox::default()));
        let task = make(AsyncWebSocket {
            mailbox: mailbox.clone(),
        });
        TaskAdapter {
            mailbox,
            task: Some(task),
        }
    }
}

impl SocketHandler for TaskAdapter {
    fn opened(&mut self, link: SocketLink) {
        let Some(task) = self.task.take() else {
            return;
        };
        link.working();
        self.mailbox.borrow_mut().link = Some(link);
        let mailbox = self.mailbox.clone();
        glommio::spawn_local(async move {
            let outcome = std::panic::AssertUnwindSafe(task).catch_unwind().await;
            let mut mailbox = mailbox.borrow_mut();
            mailbox.done = true;
            // The task is over: so is its connection (1000), or 1011 after a panic.
            if mailbox.ended.is_none() {
                let code = if outcome.is_ok() { 1000 } else { 1011 };
                mailbox
                    .outbox
                    .push_back(Outgoing::Close(code, String::new()));
                mailbox.closing = true;
            }
            mailbox.inbox.clear();
            mailbox.inbox_bytes = 0;
            mailbox.stir();
            if let Some(link) = &mailbox.link {
                link.done();
            }
        })
        .detach();
    }

    fn message(&mut self, message: SocketMessage<'_>, _out: &mut SocketOut<'_>) {
        let mut mailbox = self.mailbox.borrow_mut();
        if mailbox.done {
            return;
        }
        let message = match message {
            SocketMessage::Text(text) => OwnedMessage::Text(text.to_owned()),
            SocketMessage::Binary(bytes) => OwnedMessage::Binary(bytes.to_vec()),
        };
        mailbox.inbox_bytes += message.len();
        mailbox.inbox.push_back(message);
        if let Some(reader) = mailbox.reader.take() {
            reader.wake();
        }
    }

    fn closed(&mut self, code: Option<u16>, reason: &str) {
        let mut mailbox = self.mailbox.borrow_mut();
        mailbox.ended = Some((code, reason.to_owned()));
        mailbox.outbox.clear();
        mailbox.outbox_bytes = 0;
        mailbox.queued = 0;
        if let Some(reader) = mailbox.reader.take() {
            reader.wake();
        }
        mailbox.wake_writer();
    }

    fn pull(&mut self, out: &mut SocketOut<'_>) {
        let mut mailbox = self.mailbox.borrow_mut();
        if let Some(link) = &mailbox.link {
            link.looked_at();
        }
        mailbox.max_queue = out.max_queue();
        while let Some(next) = mailbox.outbox.pop_front() {
            match next {
                Outgoing::Message(message) => {
                    let sent = match &message {
                        OwnedMessage::Text(text) => out.text(text),
                        OwnedMessage::Binary(bytes) => out.binary(bytes),
                    };
                    if sent == Err(SendRefused::Full) {
                        // Room comes back as the connection's queue drains.
                        mailbox.outbox.push_front(Outgoing::Message(message));
                        break;
                    }
                    mailbox.outbox_bytes -= message.len();
                }
                Outgoing::Close(code, reason) => out.close(code, &reason),
                Outgoing::Join(group) => out.join(&group),
                Outgoing::Leave(group) => out.leave(&group),
                Outgoing::Publish(group, message) => {
                    mailbox.outbox_bytes -= message.len();
                    let borrowed = message.as_message();
                    let (text, payload) = borrowed.parts();
                    out.publish(&group, text, payload);
                }
            }
        }
        mailbox.closing |= out.closing();
        mailbox.queued = out.queued();
        let pending = mailbox.pending();
        if pending == 0 || pending < mailbox.max_queue {
            mailbox.wake_writer();
        }
    }

    fn wants_input(&self) -> bool {
        // Neither while the task has messages to take, nor while what it sends waits for
        // the client (whose messages it would answer).
        let mailbox = self.mailbox.borrow();
        mailbox.inbox_bytes < INBOX_HIGH_WATER
            && (mailbox.max_queue == 0 || mailbox.pending() < mailbox.max_queue)
    }
}

/// Makes a route's factory from an async handler's.
pub(crate) fn factory<S, F, Fut>(make: F) -> std::sync::Arc<super::websocket::SocketFactory<S>>
where
    S: 'static,
    F: Fn(&super::Request<'_>, Option<&'static str>, Rc<S>, AsyncWebSocket) -> Fut
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = ()> + 'static,
{
    std::sync::Arc::new(move |request, protocol, state: &Rc<S>| {
        let task = TaskAdapter::new(|socket| {
            let task: SocketTask = Box::pin(make(request, protocol, state.clone(), socket));
            task
        });
        Box::new(task) as Box<dyn SocketHandler>
    })
}
