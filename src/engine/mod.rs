//! One core's network path: its own io_uring and the loop around it, shared with nothing.
//!
//! The engine accepts connections, receives their bytes, hands them to each connection's
//! HTTP session, sends what the session answers, sends files, runs async handlers' tasks,
//! keeps every deadline, and drains. What to answer it asks the application, only through
//! the [`Application`] trait defined here; the library's per-core service implements it,
//! and so can a test or a bench.
//!
//! The loop (`shard::Shard`) owns the ring, the clock, the lifecycle, the park, the
//! listeners and the reports, each private to `shard.rs`; it hands every completion to
//! `connections::Connections`, lending it what one event needs as a `turn::Turn`. The
//! pieces below own their state behind their methods (the layer test keeps `Shard`'s fields,
//! and theirs, inside their files). One file per concern:
//!
//! | file | concern |
//! | --- | --- |
//! | `shard`, `turn` | the loop and what it owns; what it lends the connections for one event |
//! | `ring`, `buffer_ring` | the io_uring: set-up, enter, eventfd, operations in flight; the provided receive buffers |
//! | `token` | what a completion is for (`user_data`) |
//! | `connections`, `settings` | the connections of the core and what handling them owns; the configuration they run under |
//! | `table`, `conn`, `transport` | connection records, their keys and their state; how their bytes are carried (cleartext or TLS) |
//! | `wheel` | the timing wheel of deadlines |
//! | `buffers`, `bodies` | per-core buffer pools; the memory bodies being gathered hold |
//! | `listeners`, `handshakes` | the listening sockets and their accepts; the handshake gate |
//! | `accept`, `receive`, `exchange`, `send` | a connection's way through the loop (methods of `Connections`) |
//! | `transfer`, `tasks` | files on their way, async handlers at work |
//! | `deadlines`, `close` | a connection's timeouts, and its end |
//! | `drain` | the core's lifecycle: serving, draining, cut, left |
//! | `secure` | TLS on a connection: handshakes, ciphertext in, `close_notify` |
//! | `park`, `wake` | sleeping when idle, and what wakes the loop |
//! | `links`, `reporting` | what a core tells the rest of the server, once per tick |
//! | `background` | the glommio tasks at work for the core, and what they post back to the loop |
//! | `upstream/` | connections out: upstream servers' pools, their links, and the relay of a proxied request |
//! | `outflow`, `outflow_io` | streamed response bodies: their producers' slots, and the loop's side |
//! | `socket`, `socket_io` | WebSocket connections: their handlers, frames in and out, the close handshake |
//! | `groups`, `groups_io`, `courier` | WebSocket groups, the hub async handlers reach the loop through, and group messages between cores |
//!
//! # Words
//!
//! One word per thing, here and in the layers below:
//!
//! - **deferred**: the part of an answer not ready when its request was processed. The
//!   application leaves a [`Deferred`] (a file's bytes behind the head, or a task making the
//!   whole response); the session carries it as the engine's [`DeferredAnswer`] (with what
//!   the access log will say of it) and hands it back in a `Deferral`; a task's result is a
//!   [`DeferredResponse`], written by `Session::answer_deferred`; a connection finishing one
//!   is `Deferring`.
//! - **transport**: how a connection's bytes are carried (`Transport::Plain` or `Tls`); a
//!   TLS link's **partial** bytes are the start of a record still to come, its **wire** the
//!   records to send, and it is **over** once nothing more is read or sealed.
//! - **held**: the request a session keeps while its body is gathered
//!   (`Session::held_bytes`, counted against the core's `BodyBudget`); **input** is received
//!   bytes not processed yet; **out** responses not yet handed to a send; a send in
//!   **flight** is one the kernel holds.
//!
//! # Two loops, one contract
//!
//! A core's thread runs two event loops: glommio's executor (its own io_uring, for files,
//! timers, async handlers and the task that watches percore's ring) and percore's ring (the
//! network). The shard's loop is one glommio task, and they share the thread by these rules,
//! all applied in two places, `park` (`Parking::enter`, `Parking::park`) and the loop's
//! `Shard::between_turns`:
//!
//! 1. Every turn begins with one `io_uring_enter` on percore's ring, which submits what the
//!    last turn queued and reaps what is ready; when the park that ended the last turn has
//!    just entered the ring, the turn makes no enter of its own.
//! 2. A turn handles everything ready and queues what it causes; it never blocks and never
//!    awaits.
//! 3. After a turn that found work, the loop goes on at once: it yields to glommio every
//!    time while tasks of the core's are at work (file reads, async handlers: their results
//!    come back within a turn), and otherwise only when glommio's time slice is up, so a busy
//!    core pays nothing for glommio.
//! 4. After a turn that found nothing, the loop sleeps. With no task at work (and
//!    `runtime.idle_wait = "ring"`, the default) it sleeps in percore's ring: one enter that
//!    waits for a completion or the next deadline (at most 100 ms), then one yield for
//!    glommio. Otherwise it parks through glommio: the ring's eventfd is switched on, a ring
//!    timeout covers the next deadline, and the loop awaits a wake fired by the eventfd task
//!    or by a task posting its result.
//! 5. glommio tasks never touch the core's state: they post results to mailboxes
//!    (`background`) and fire the wake; the loop takes them at its next turn.

mod accept;
mod background;
mod bodies;
mod buffer_ring;
mod buffers;
mod close;
mod conn;
mod connections;
mod courier;
mod deadlines;
mod drain;
mod exchange;
mod groups;
mod groups_io;
mod handshakes;
mod links;
mod listeners;
mod outflow;
mod outflow_io;
mod park;
mod receive;
mod reporting;
mod ring;
mod secure;
mod send;
mod settings;
mod shard;
mod socket;
mod socket_io;
mod table;
mod tasks;
mod token;
mod transfer;
mod transport;
mod turn;
mod upstream;
mod wake;
mod wheel;

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;

pub(crate) use courier::{mesh, CoreMesh};
#[cfg(feature = "internals")]
pub(crate) use exchange::Exchange;
pub(crate) use groups::{Hub, Published, SocketLink};
pub(crate) use links::{report_tick, Links};
pub(crate) use outflow::{OutflowEnd, OutflowSlot, OUTFLOW_HIGH_WATER};
#[cfg(feature = "internals")]
pub(crate) use ring::fail_next_enter;
pub use ring::RingMode;
pub(crate) use shard::{make_ring, run, OnCore};
pub(crate) use socket::{
    queue_takes, SendRefused, SocketHandler, SocketMessage, SocketOut, SocketStart,
};
pub use upstream::outbound::UpstreamError;
pub(crate) use upstream::outbound::{CallSlot, CallState, Outbound, Seen};
pub(crate) use upstream::relay::{ForwardBody, ProxyCall};
pub(crate) use upstream::stream::{StreamSlot, STREAM_HIGH_WATER};

use crate::files::FileBody;
use crate::http::request::RawRequest;
use crate::http::response::ResponseWriter;
use crate::tls::TlsInfo;

/// A listening socket a core accepts on.
pub(crate) struct Listener {
    pub(crate) fd: OwnedFd,
    /// Its connections speak TLS.
    pub(crate) tls: bool,
}

/// TLS on a core: what the engine needs beyond its listeners.
pub(crate) struct TlsOptions {
    /// This core's rustls configurations.
    pub(crate) configs: crate::tls::ServerConfigs,
    /// `tls.max_handshakes_per_core`.
    pub(crate) max_handshakes: usize,
}

/// What the engine asks of the application on one core. Every question the engine puts to
/// the application is a method here.
pub(crate) trait Application: 'static {
    /// Whether the body of `request` (its head alone is given) is to be gathered for
    /// [`Application::answer`]; when not, it is read and dropped. Asked only for a body that
    /// did not arrive with its head.
    fn wants_body(&mut self, request: &RawRequest<'_>) -> bool;

    /// Answers a complete request into `response`, for the client `peer`. Returns what the
    /// engine must finish when the answer is not all written: a file's bytes behind the head
    /// written, or (with no head written) the whole response, made by a task.
    fn answer(
        &mut self,
        peer: &Peer<'_>,
        request: &RawRequest<'_>,
        response: &mut ResponseWriter,
    ) -> Option<Deferred>;

    /// Whether `request` (complete, no body) from `peer` would be answered by a proxy call
    /// that may go upstream behind the one its connection is waiting for (pipelined
    /// requests sent as one batch): see `http::Service::queues`.
    fn queues(&mut self, peer: &Peer<'_>, request: &RawRequest<'_>) -> bool;

    /// Whether `request` (its head alone; its body has not all come) from `peer` is to be
    /// answered now, its body streamed upstream as it arrives: see
    /// `http::Service::streams_body`.
    fn streams_body(&mut self, peer: &Peer<'_>, request: &RawRequest<'_>) -> bool;

    /// The core begins draining (a health route starts answering 503).
    fn drain(&mut self);
}

/// A deferred response, ready: it writes itself (or fails, see [`ResponseWriter::fail`]).
pub(crate) type DeferredResponse = Box<dyn FnOnce(&mut ResponseWriter)>;

/// What an async handler's task comes back with: the response (its head, or all of it),
/// and the producer's side of a body that follows the head over time.
pub(crate) struct TaskAnswer {
    pub(crate) write: DeferredResponse,
    pub(crate) body: Option<std::rc::Rc<OutflowSlot>>,
}

/// What an answer leaves for the engine.
pub(crate) enum Deferred {
    /// A file's bytes, behind the head written.
    File(Box<FileBody>),
    /// A whole response that a task is making; the connection answers nothing more until
    /// it is written.
    Task(Pin<Box<dyn Future<Output = TaskAnswer>>>),
    /// A whole response that an upstream server makes: the request, as it is forwarded.
    Proxy(ProxyCall),
    /// An accepted WebSocket handshake: the engine answers `101` and carries the
    /// connection on.
    Socket(SocketStart),
}

/// A deferred answer on its way through the session, with what the access log will say of
/// a deferred response.
pub struct DeferredAnswer {
    pub(crate) what: Deferred,
    log: Option<Box<background::DeferredLog>>,
}

impl std::fmt::Debug for DeferredAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.what {
            Deferred::File(body) => f.debug_tuple("File").field(body).finish(),
            Deferred::Task(_) => f.write_str("Task"),
            Deferred::Proxy(call) => f.debug_tuple("Proxy").field(&call.upstream).finish(),
            Deferred::Socket(_) => f.write_str("Socket"),
        }
    }
}

/// Who is at the other end of the connection being answered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer<'a> {
    /// The connection's socket (`-1` for none, in tests).
    pub(crate) fd: RawFd,
    /// The client a PROXY header named (or, with an access log, the socket's peer).
    pub(crate) client: Option<SocketAddr>,
    /// The connection's TLS, if it speaks TLS.
    pub(crate) tls: Option<&'a TlsInfo>,
}

impl Peer<'_> {
    /// No connection: for sessions driven without sockets.
    #[cfg(feature = "internals")]
    pub(crate) const NONE: Peer<'static> = Peer {
        fd: -1,
        client: None,
        tls: None,
    };

    /// The client's address: the one a PROXY header named, or the socket's peer (one
    /// system call).
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        if self.client.is_some() || self.fd < 0 {
            return self.client;
        }
        // SAFETY: the connection's socket stays open while its request is answered.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        socket2::SockRef::from(&fd).peer_addr().ok()?.as_socket()
    }
}
