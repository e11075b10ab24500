//! The door through which a core's own glommio tasks (async handlers, and what they spawn)
//! call its upstreams: a call is posted here, the loop takes it at its next turn and sends
//! it on a link from the same per-core pools the proxy uses (`calls`), and the response
//! comes back into the call's slot, which wakes the task waiting on it.
//!
//! Nothing here is shared with another core: the door is made on the core's thread, and a
//! slot is shared only between the task that made the call and the loop that carries it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

use super::super::token::Key;
use super::super::wake::Wake;
use super::stream::{StreamSlot, StreamState};
use crate::config::Config;
use crate::http::chunked::ChunkedDecoder;
use crate::http::upstream_head::BodyFraming;

/// A response body buffered past this for its task stops the link's reads until the task
/// takes it.
pub(super) const CALL_HIGH_WATER: usize = 64 * 1024;

/// Why a call to an upstream brought no (complete) response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No server could take it: connects refused or failed, or every server is marked down
    /// (a proxy would answer 502).
    Unavailable,
    /// No response within the timeout (a proxy would answer 504).
    Timeout,
    /// The response did not parse, framed itself ambiguously, or its head was too big.
    BadResponse,
    /// The connection ended before the response was complete.
    Truncated,
    /// The body is longer than the caller allowed.
    TooLarge,
    /// The core is leaving.
    Closed,
    /// The request cannot be sent: its method, target or `Host` is not valid.
    InvalidRequest,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamError::Unavailable => "upstream unavailable",
            UpstreamError::Timeout => "upstream timed out",
            UpstreamError::BadResponse => "malformed upstream response",
            UpstreamError::Truncated => "upstream response cut short",
            UpstreamError::TooLarge => "upstream response body too large",
            UpstreamError::Closed => "the core is leaving",
            UpstreamError::InvalidRequest => "invalid request for an upstream",
        })
    }
}

impl std::error::Error for UpstreamError {}

/// A core's door for its tasks' calls (cheap to clone: one per core, shared by handle).
#[derive(Clone)]
pub(crate) struct Outbound(Rc<Door>);

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("upstreams", &self.0.names)
            .finish()
    }
}

struct Door {
    /// The upstreams' names, in configuration order (a call names its upstream by place).
    names: Vec<String>,
    /// Each upstream's `(connect_timeout_ms, read_timeout_ms, host)`.
    settings: Vec<(u64, u64, Option<String>)>,
    /// Each upstream's first server as written, for a `Host` when none is configured.
    first_server: Vec<String>,
    posted: RefCell<Vec<Rc<CallSlot>>>,
    /// Calls whose task gave up on them (their link is closed).
    dropped: RefCell<Vec<Rc<CallSlot>>>,
    /// Calls whose task took buffered body bytes while their link was paused.
    resumed: RefCell<Vec<Rc<CallSlot>>>,
    /// Raw connections asked for, and those with something for the loop to do.
    streams_opened: RefCell<Vec<Rc<StreamSlot>>>,
    streams_stirred: RefCell<Vec<Rc<StreamSlot>>>,
    /// The core's loop, woken when something is posted (set when the loop starts).
    wake: RefCell<Option<Rc<Wake>>>,
    /// False once the core has left: calls fail at once.
    open: Cell<bool>,
}

impl Outbound {
    /// The door of a core serving `config`.
    pub(crate) fn new(config: &Config) -> Outbound {
        Outbound(Rc::new(Door {
            names: config.upstream.iter().map(|u| u.name.clone()).collect(),
            settings: config
                .upstream
                .iter()
                .map(|u| (u.connect_timeout_ms, u.read_timeout_ms, u.host.clone()))
                .collect(),
            first_server: config
                .upstream
                .iter()
                .map(|u| {
                    let first = u.servers.first().map(String::as_str).unwrap_or("");
                    first.trim_start_matches("http://").to_string()
                })
                .collect(),
            posted: RefCell::default(),
            dropped: RefCell::default(),
            resumed: RefCell::default(),
            streams_opened: RefCell::default(),
            streams_stirred: RefCell::default(),
            wake: RefCell::default(),
            open: Cell::new(true),
        }))
    }

    /// The place of the upstream named `name`.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.0.names.iter().position(|n| n == name)
    }

    /// Upstream `index`'s connect and read timeouts (ms).
    pub(crate) fn timeouts(&self, index: usize) -> (u64, u64) {
        let (connect, read, _) = self.0.settings[index];
        (connect, read)
    }

    /// The `Host` a call to upstream `index` sends when its caller set none.
    pub(crate) fn host(&self, index: usize) -> &str {
        match &self.0.settings[index].2 {
            Some(host) => host,
            None => &self.0.first_server[index],
        }
    }

    /// Posts a call; the loop sends it at its next turn.
    pub(crate) fn post(&self, call: CallState) -> Rc<CallSlot> {
        let slot = Rc::new(CallSlot(RefCell::new(call)));
        if !self.0.open.get() {
            slot.fail(UpstreamError::Closed);
            return slot;
        }
        self.0.posted.borrow_mut().push(slot.clone());
        self.fire();
        slot
    }

    /// The task gave up on `slot` (dropped it, or its timeout passed): its link is closed.
    pub(crate) fn drop_call(&self, slot: &Rc<CallSlot>) {
        let mut state = slot.0.borrow_mut();
        if state.abandoned || matches!(state.stage, CallStage::Done | CallStage::Failed(_)) {
            return;
        }
        state.abandoned = true;
        drop(state);
        self.0.dropped.borrow_mut().push(slot.clone());
        self.fire();
    }

    /// The task took body bytes: a link paused for it reads again.
    pub(crate) fn take_body(&self, slot: &Rc<CallSlot>) -> Vec<u8> {
        let mut state = slot.0.borrow_mut();
        let body = std::mem::take(&mut state.body);
        if state.paused {
            state.paused = false;
            drop(state);
            self.0.resumed.borrow_mut().push(slot.clone());
            self.fire();
        }
        body
    }

    /// Asks for a raw connection to a server of upstream `upstream`; the loop connects it at
    /// its next turn.
    pub(crate) fn open_stream(&self, upstream: usize) -> Rc<StreamSlot> {
        let slot = Rc::new(StreamSlot(RefCell::new(StreamState {
            upstream,
            ..StreamState::default()
        })));
        if !self.0.open.get() {
            slot.fail(std::io::ErrorKind::ConnectionAborted);
            return slot;
        }
        self.0.streams_opened.borrow_mut().push(slot.clone());
        self.fire();
        slot
    }

    /// The task gave the loop something to do on `slot`'s stream (output to send, room to
    /// read into, its close, or it let go).
    pub(crate) fn stir(&self, slot: &Rc<StreamSlot>) {
        let mut state = slot.0.borrow_mut();
        if state.stirred || state.link.is_none() && state.connected.is_some() {
            return;
        }
        state.stirred = true;
        drop(state);
        self.0.streams_stirred.borrow_mut().push(slot.clone());
        self.fire();
    }

    /// The raw connections asked for and stirred since the last take.
    pub(super) fn take_streams(&self) -> [Vec<Rc<StreamSlot>>; 2] {
        [
            std::mem::take(&mut *self.0.streams_opened.borrow_mut()),
            std::mem::take(&mut *self.0.streams_stirred.borrow_mut()),
        ]
    }

    fn fire(&self) {
        if let Some(wake) = &*self.0.wake.borrow() {
            wake.fire();
        }
    }

    /// The loop that takes this door's calls: it is woken when one is posted.
    pub(in crate::engine) fn attach(&self, wake: Rc<Wake>) {
        *self.0.wake.borrow_mut() = Some(wake);
    }

    /// The calls posted, given up, and resumed since the last take (nothing allocated when
    /// there were none).
    pub(super) fn take(&self) -> [Vec<Rc<CallSlot>>; 3] {
        [
            std::mem::take(&mut *self.0.posted.borrow_mut()),
            std::mem::take(&mut *self.0.dropped.borrow_mut()),
            std::mem::take(&mut *self.0.resumed.borrow_mut()),
        ]
    }

    /// The core is leaving: calls posted and not sent fail, as do later ones.
    pub(in crate::engine) fn close(&self) {
        self.0.open.set(false);
        for slot in std::mem::take(&mut *self.0.posted.borrow_mut()) {
            slot.fail(UpstreamError::Closed);
        }
        for slot in std::mem::take(&mut *self.0.streams_opened.borrow_mut()) {
            slot.fail(std::io::ErrorKind::ConnectionAborted);
        }
    }
}

/// A call, shared by the task that made it and the loop that carries it.
pub(crate) struct CallSlot(pub(super) RefCell<CallState>);

/// Where a call stands.
#[derive(Debug)]
pub(crate) enum CallStage {
    /// Not sent yet, or sent and awaiting its response head.
    Waiting,
    /// The head came; the body follows.
    Body(CallBody),
    /// The response is complete.
    Done,
    Failed(UpstreamError),
}

/// A response body on its way to the task.
#[derive(Debug)]
pub(crate) struct CallBody {
    pub(super) framing: BodyFraming,
    pub(super) left: u64,
    pub(super) chunks: ChunkedDecoder,
    pub(super) reusable: bool,
}

/// A call's request, and its response as far as it came.
pub(crate) struct CallState {
    pub(super) upstream: usize,
    /// The request, as it is sent (kept until the response comes, to be sent again).
    pub(super) request: Vec<u8>,
    pub(super) head_request: bool,
    pub(super) idempotent: bool,
    // The loop's side.
    pub(super) link: Option<Key>,
    pub(super) server: usize,
    pub(super) tries: u8,
    pub(super) reused: bool,
    pub(super) sent_at: std::time::Instant,
    /// Its link stopped reading: the task has `CALL_HIGH_WATER` bytes to take.
    pub(super) paused: bool,
    /// The task gave up on it.
    pub(super) abandoned: bool,
    // The task's side.
    pub(super) stage: CallStage,
    pub(super) status: u16,
    /// The response head's bytes (status line and fields).
    pub(super) head: Vec<u8>,
    /// Body bytes not taken yet.
    pub(super) body: Vec<u8>,
    pub(super) waker: Option<Waker>,
}

impl CallState {
    /// A call of `request` (head and body, as it is sent) to upstream `upstream`.
    pub(crate) fn new(upstream: usize, request: Vec<u8>, head: bool, idempotent: bool) -> Self {
        CallState {
            upstream,
            request,
            head_request: head,
            idempotent,
            link: None,
            server: 0,
            tries: 0,
            reused: false,
            sent_at: std::time::Instant::now(),
            paused: false,
            abandoned: false,
            stage: CallStage::Waiting,
            status: 0,
            head: Vec::new(),
            body: Vec::new(),
            waker: None,
        }
    }
}

/// What a task sees of its call when it looks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing new yet.
    Waiting,
    /// The head is there (and maybe body bytes).
    Head,
    /// The body is complete (bytes may still be buffered).
    Done,
    Failed(UpstreamError),
}

impl CallSlot {
    /// Where the call stands, and registers `waker` to be woken when that changes.
    pub(crate) fn look(&self, waker: &Waker) -> Seen {
        let mut state = self.0.borrow_mut();
        let seen = match &state.stage {
            CallStage::Waiting => Seen::Waiting,
            CallStage::Body(_) => Seen::Head,
            CallStage::Done => Seen::Done,
            CallStage::Failed(e) => Seen::Failed(*e),
        };
        match &state.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => state.waker = Some(waker.clone()),
        }
        seen
    }

    /// The response's status and head bytes (once `Seen::Head`).
    pub(crate) fn head(&self) -> (u16, Vec<u8>) {
        let mut state = self.0.borrow_mut();
        (state.status, std::mem::take(&mut state.head))
    }

    /// Body bytes waiting to be taken.
    pub(crate) fn buffered(&self) -> usize {
        self.0.borrow().body.len()
    }

    /// Wakes the task waiting on it.
    pub(super) fn wake(&self) {
        if let Some(waker) = self.0.borrow_mut().waker.take() {
            waker.wake();
        }
    }

    /// The call failed with `error` (unless it had already ended).
    pub(in crate::engine) fn fail(&self, error: UpstreamError) {
        let mut state = self.0.borrow_mut();
        if !matches!(state.stage, CallStage::Done | CallStage::Failed(_)) {
            state.stage = CallStage::Failed(error);
        }
        state.link = None;
        drop(state);
        self.wake();
    }
}
