//! What the core's glommio tasks (file reads that would wait, async handlers) post back to
//! the loop, which takes it at the next turn (`transfer`, `tasks`), and what the access log
//! keeps of a request whose answer a task is still making.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::token::Key;
use super::wake::Wake;
use super::TaskAnswer;
use crate::access_log::{Entry, LogBuffer, UpstreamEntry, WebSocketEntry};
use crate::files::read::FileSource;
use crate::http::status::Status;

/// What glommio tasks of this core's post back to the loop, and how many are at work.
pub(super) struct Background {
    files_done: Mailbox<FileDone>,
    tasks_done: Mailbox<TaskDone>,
    /// File reads and async handlers at work in glommio tasks.
    at_work: usize,
    /// Fired when a task posts its result, so that a parked loop takes it.
    wake: Rc<Wake>,
}

impl Background {
    pub(super) fn new(wake: Rc<Wake>) -> Background {
        Background {
            files_done: Mailbox(Rc::default()),
            tasks_done: Mailbox(Rc::default()),
            at_work: 0,
            wake,
        }
    }

    /// File reads and async handlers at work.
    pub(super) fn at_work(&self) -> usize {
        self.at_work
    }

    /// Runs a file read that would wait as a glommio task; its result comes back through
    /// [`Background::take_file_reads`].
    pub(super) fn read_file(&mut self, read: impl Future<Output = FileDone> + 'static) {
        self.at_work += 1;
        self.files_done.spawn(&self.wake, read);
    }

    /// Runs an async handler's future as a glommio task; its answer comes back through
    /// [`Background::take_answers`].
    pub(super) fn run_handler(&mut self, answer: impl Future<Output = TaskDone> + 'static) {
        self.at_work += 1;
        self.tasks_done.spawn(&self.wake, answer);
    }

    /// The file reads finished since the last take.
    pub(super) fn take_file_reads(&mut self) -> Vec<FileDone> {
        let done = self.files_done.take();
        self.at_work -= done.len();
        done
    }

    /// The async handlers' answers finished since the last take.
    pub(super) fn take_answers(&mut self) -> Vec<TaskDone> {
        let done = self.tasks_done.take();
        self.at_work -= done.len();
        done
    }
}

/// Where one kind of glommio task posts its results for the loop, in the order they came.
struct Mailbox<T>(Rc<RefCell<Vec<T>>>);

impl<T: 'static> Mailbox<T> {
    /// Runs `work` as a glommio task on this core: its result is posted here, and `wake`
    /// wakes the loop to take it.
    fn spawn(&self, wake: &Rc<Wake>, work: impl Future<Output = T> + 'static) {
        let (posted, wake) = (self.0.clone(), wake.clone());
        glommio::spawn_local(async move {
            let result = work.await;
            posted.borrow_mut().push(result);
            wake.fire();
        })
        .detach();
    }

    /// What was posted since the last take (empty, and nothing allocated, if nothing was).
    fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// An async handler's answer, waiting for the loop.
pub(super) struct TaskDone {
    pub(super) key: Key,
    pub(super) answer: TaskAnswer,
    /// When the request's bytes were reaped, for its latency.
    pub(super) read_at: Instant,
    /// What the access log says of its request.
    pub(super) log: Option<Box<DeferredLog>>,
}

/// A file read done by a glommio task, waiting for the loop.
pub(super) struct FileDone {
    pub(super) key: Key,
    pub(super) source: Option<Rc<FileSource>>,
    pub(super) buf: Vec<u8>,
    pub(super) result: io::Result<()>,
}

/// What the access log will say of a request whose response an async handler is still
/// making.
pub(super) struct DeferredLog {
    pub(super) request: Vec<u8>,
    pub(super) referer: Option<Vec<u8>>,
    pub(super) user_agent: Option<Vec<u8>>,
    pub(super) client: Option<SocketAddr>,
    /// The connection's TLS version and cipher suite.
    pub(super) tls: Option<(&'static str, &'static str)>,
    pub(super) read_at: Instant,
    /// The body's content coding, once the response is written.
    pub(super) coding: Option<&'static str>,
}

impl DeferredLog {
    /// Writes the line, now that the response is made: `status`, `bytes` long (and what
    /// the upstream server did, for a proxied request).
    pub(super) fn record(
        &self,
        log: &mut LogBuffer,
        status: Status,
        bytes: u64,
        upstream: Option<UpstreamEntry<'_>>,
    ) {
        log.record(&Entry {
            client: self.client,
            request: &self.request,
            status: status.0,
            bytes,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
            micros: self.read_at.elapsed().as_micros() as u64,
            tls: self.tls,
            upstream,
            websocket: None,
            coding: self.coding,
        });
    }

    /// Writes the line of a WebSocket that ended: its `101`, the bytes sent over the whole
    /// connection, the time from the handshake's arrival to the end, and `ws`.
    pub(super) fn record_websocket(&self, log: &mut LogBuffer, bytes: u64, ws: WebSocketEntry) {
        log.record(&Entry {
            client: self.client,
            request: &self.request,
            status: 101,
            bytes,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
            micros: self.read_at.elapsed().as_micros() as u64,
            tls: self.tls,
            upstream: None,
            websocket: Some(ws),
            coding: None,
        });
    }
}
