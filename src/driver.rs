//! One core's network path: its ring loop, connection table, deadlines and drain.
//!
//! Each turn of the loop makes one `io_uring_enter`, which submits every SQE the last turn
//! queued and lets the kernel post every completion ready; the turn then handles them all:
//! - **accept** (multishot, on the core's own listener): a new connection becomes a record in
//!   the table and gets a multishot receive;
//! - **recv** (multishot, from the core's provided-buffer ring): the bytes go straight to the
//!   connection's `http::session`, which answers every complete request in them; only the
//!   tail of a request not yet complete is copied into a pooled buffer, and the receive buffer
//!   goes back to the kernel at once. `ENOBUFS` (the ring ran dry) ends a receive without
//!   losing a byte: it is armed again once buffers have come back;
//! - **send**: at most one per connection in flight, from its output buffer; responses made
//!   meanwhile wait in a second buffer and leave with the next send.
//!
//! Connections are records, not tasks: `Conn` holds the session, the buffers it is lent
//! while it has bytes to hold, and one deadline, kept in the core's timing wheel (`wheel`).
//! When a turn finds nothing to do, the loop sleeps: in its own ring (one enter that waits)
//! while glommio has nothing of this core's to run, otherwise through glommio: it turns on the
//! ring's eventfd and a small glommio task reading that eventfd wakes it, so glommio's file
//! reads complete meanwhile (see `Core::park`). Files that are not in the page cache are
//! read by glommio tasks (`file_io`), which post their results back here.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{cqueue, opcode, squeue, types};

use crate::access_log::LogMsg;
use crate::app::{write_late, CoreService, Deferred, LateLog, Reply};
use crate::config::{Config, IdleWait};
use crate::file_io::{read_cached, read_slow, FileSource};
use crate::http::request::Limits;
use crate::http::session::{Session, OUTPUT_HIGH_WATER};
use crate::metrics::{Metrics, ReportMsg, Snapshot, StatsBoard};
use crate::pool::BufferPool;
use crate::ring::{Ring, RECV_GROUP};
use crate::routes::{FileBody, StaticFiles};
use crate::wheel::{Clock, Key, Wheel};

/// Output and partial-input buffers kept for reuse per core; more are freed when returned.
/// Enough for every connection of a busy core to have a send in flight without a buffer
/// being allocated and freed per response (at 500 connections, 256 were not).
const POOLED_BUFFERS: usize = 2048;

/// Capacity an output buffer starts with: a batch of small responses, or a 4 KiB file with
/// its head. A larger batch grows it (up to the 64 KiB high-water mark and a response), and
/// a buffer grown past twice this is freed rather than pooled.
const OUTPUT_BUFFER_BYTES: usize = 16 * 1024;

/// File chunk buffers (`static.chunk_bytes` each) kept for reuse per core.
const POOLED_CHUNKS: usize = 32;

/// After an error response, how long unread client bytes are drained before closing, so the
/// kernel does not answer them with a reset that could destroy the response in flight.
const LINGER_MS: u64 = 2000;

/// At most this many bytes are drained while lingering.
const LINGER_BYTES: u32 = 256 * 1024;

/// Pause after an accept error such as EMFILE before accepting again, so that a core out of
/// file descriptors does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// After the drain deadline cuts the remaining connections, how long their last sends get to
/// complete before the core stops anyway.
const CUT_GRACE_MS: u64 = 500;

/// Longest sleep in the core's own ring before glommio gets a look at its ring (where
/// nothing of ours is pending, nothing should be there; this bounds the delay if anything is).
const RING_WAIT_MAX_MS: u64 = 100;

/// Sent to connections refused at `max_connections_per_core`.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: percore\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What a completion is for: the low 32 bits of `user_data` are the connection's index, the
/// next 24 its generation, the top 8 the operation (and, for receives, which arming it was).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Accept,
    Recv,
    Send,
    Stop,
    Timer,
    /// Completions nobody waits for (cancels, closes).
    Ignore,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Accept => 1,
            Op::Recv => 2,
            Op::Send => 3,
            Op::Stop => 4,
            Op::Timer => 5,
            Op::Ignore => 6,
        }
    }
}

fn token(op: Op, key: Key, epoch: u8) -> u64 {
    (op.code() | u64::from(epoch & 0xf) << 4) << 56
        | u64::from(key.generation & 0xff_ffff) << 32
        | u64::from(key.index)
}

fn untoken(user_data: u64) -> (Op, Key, u8) {
    let op = match (user_data >> 56) & 0xf {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Stop,
        5 => Op::Timer,
        _ => Op::Ignore,
    };
    let key = Key {
        index: user_data as u32,
        generation: (user_data >> 32) as u32 & 0xff_ffff,
    };
    (op, key, (user_data >> 60) as u8)
}

/// No time: the value of a record's optional times when unset (they are `u64`, not
/// `Option<u64>`, to keep the record small).
const NEVER: u64 = u64::MAX;

const NO_KEY: Key = Key {
    index: 0,
    generation: 0,
};

/// What connects a core to the rest of the server: reporting and `/stats`.
pub struct Links {
    /// Position of this core in the server's core list.
    pub index: usize,
    /// The CPU this core runs on.
    pub core: usize,
    /// All the server's cores, in order.
    pub cores: Vec<usize>,
    /// Where `/stats` totals are published.
    pub board: Arc<StatsBoard>,
    /// The reporter thread's inbox.
    pub reports: Sender<ReportMsg>,
    /// This core's handle on the static root directory, when files are served.
    pub static_root: Option<OwnedFd>,
    /// The access log writer's inbox, when a log is kept.
    pub log: Option<Sender<LogMsg>>,
}

/// Size of a partial-input buffer: a whole head always fits.
pub fn read_buffer_size(config: &Config) -> usize {
    config.http.max_request_head_bytes.max(16 * 1024)
}

/// Period of report ticks: `report.interval_ms`, or one second when live lines are off
/// (`/stats` still needs fresh totals).
pub fn report_tick(config: &Config) -> Duration {
    Config::millis(match config.report.interval_ms {
        0 => 1000,
        ms => ms,
    })
}

/// Where a connection's receive stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recv {
    /// A multishot receive is armed.
    Armed,
    /// None armed: the connection holds enough unprocessed input, or it has ended.
    Off,
    /// Ended with `ENOBUFS`; armed again once buffers are back.
    Starved,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Exchanging requests and responses.
    Open,
    /// Our side is shut after a final error response; what the client still sends is read
    /// and dropped until it closes, `LINGER_BYTES` were dropped, or the deadline passes.
    Linger { dropped: u32 },
    /// Cut while a send was in flight: the record waits for that send's completion.
    Closing,
}

/// A static file's body on its way out.
struct Transfer {
    body: Box<FileBody>,
    pos: u64,
    end: u64,
    /// Small enough to join the batch: read into the output buffer behind its head.
    small: bool,
    /// Where its response head starts in the output buffer (small bodies).
    head: usize,
    /// Where its bytes start in the output buffer (small bodies).
    start: usize,
    /// glommio's handle on the file, opened by the first read that had to wait.
    source: Option<Rc<FileSource>>,
    /// A glommio task is reading for it.
    reading: bool,
}

/// One connection's record.
struct Conn {
    fd: RawFd,
    key: Key,
    session: Session<Deferred>,
    /// Unprocessed input, `input[in_start..]`, only while a request is incomplete or
    /// processing waits for a send (no capacity otherwise).
    input: Vec<u8>,
    in_start: usize,
    /// Responses not yet handed to a send (no capacity while empty).
    out: Vec<u8>,
    /// The buffer the send in flight reads from; `sent` bytes of it are gone.
    sending: Vec<u8>,
    sent: usize,
    in_flight: bool,
    /// `sending` is a file chunk (it goes back to the chunk pool).
    sending_chunk: bool,
    /// An async handler is making the response to this connection's last request.
    awaiting: bool,
    /// Bytes its session holds for a body being gathered, as last counted in the core's
    /// total.
    held: usize,
    /// Its PROXY protocol header is still to be read.
    awaiting_proxy: bool,
    /// The client's address as a PROXY header named it (boxed: most connections have none).
    client: Option<Box<SocketAddr>>,
    recv: Recv,
    /// Which arming of the receive is current (a cancelled one may still complete).
    recv_epoch: u8,
    /// The client closed its side.
    eof: bool,
    phase: Phase,
    /// After the last response, linger rather than close (input left unread, or a 408).
    linger: bool,
    transfer: Option<Box<Transfer>>,
    /// When the head now being read started (ms), for the header timeout; [`NEVER`] when
    /// none is.
    head_started: u64,
    /// Last time bytes moved either way (ms), for the keep-alive and body timeouts.
    active_ms: u64,
    /// When the send in flight was queued or last made progress (ms).
    send_ms: u64,
    /// Until when lingering goes on (ms).
    linger_until: u64,
    /// The tick the wheel holds this record for; [`NEVER`] when none.
    wheel_tick: u64,
    /// When the bytes now being answered were reaped: the start of their latency.
    read_at: Instant,
}

impl Conn {
    fn idle(&self) -> bool {
        self.session.is_between_requests()
            && self.in_start == self.input.len()
            && !self.in_flight
            && self.out.is_empty()
            && self.transfer.is_none()
            && !self.awaiting
    }

    fn pending_input(&self) -> usize {
        self.input.len() - self.in_start
    }
}

/// A file read done by a glommio task, waiting for the loop.
struct FileDone {
    key: Key,
    source: Option<Rc<FileSource>>,
    buf: Vec<u8>,
    result: io::Result<()>,
}

/// An async handler's response, waiting for the loop.
struct TaskDone {
    key: Key,
    reply: std::thread::Result<Reply>,
    /// When the request's bytes were reaped, for its latency.
    read_at: Instant,
    /// What the access log says of its request.
    late: Option<Box<LateLog>>,
}

/// Wakes the parked loop: set by the eventfd task and by file reads.
struct Wake {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    /// The eventfd task is reading; should it ever stop, the loop no longer parks through
    /// glommio (nothing would wake it for network completions).
    watching: Cell<bool>,
}

impl Default for Wake {
    fn default() -> Self {
        Wake {
            fired: Cell::new(false),
            waker: RefCell::new(None),
            watching: Cell::new(true),
        }
    }
}

impl Wake {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn wait(&self) -> WaitWake<'_> {
        WaitWake(self)
    }
}

struct WaitWake<'a>(&'a Wake);

impl Future for WaitWake<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.0.fired.replace(false) {
            return Poll::Ready(());
        }
        let mut slot = self.0.waker.borrow_mut();
        match slot.as_ref() {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// One core: its ring, connections, service, metrics and deadlines.
struct Core<S: 'static> {
    ring: Ring,
    config: Config,
    conns: Vec<Option<Box<Conn>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    open: usize,
    wheel: Wheel,
    clock: Clock,
    now_ms: u64,
    /// When this turn's completions were reaped.
    reaped_at: Instant,
    cqes: Vec<cqueue::Entry>,
    due: Vec<(Key, u64)>,
    /// Connections whose receive ended with `ENOBUFS`, in the order they ran dry.
    starved: VecDeque<Key>,
    /// The service: routes and their per-core state.
    service: CoreService<S>,
    metrics: Metrics,
    limits: Limits,
    /// Partial-input buffers.
    reads: BufferPool,
    /// Output buffers.
    writes: BufferPool,
    /// File chunk buffers.
    chunks: BufferPool,
    /// The core's listening sockets: its own, or after a reload those handed over by the
    /// server before (when there were more of them than cores).
    listeners: Vec<OwnedFd>,
    /// Which of them has a multishot accept armed.
    accept_armed: Vec<bool>,
    accept_retry_ms: Option<u64>,
    draining: bool,
    drain_deadline_ms: u64,
    /// Until when idle connections wait for their next request while draining.
    drain_idle_until_ms: u64,
    cut: bool,
    /// The earliest armed ring timeout (ms), if any.
    timer_ms: Option<u64>,
    timespec: types::Timespec,
    /// The park just entered the kernel: the next turn needs no enter of its own.
    entered: bool,
    wake: Rc<Wake>,
    files_done: Rc<RefCell<Vec<FileDone>>>,
    tasks_done: Rc<RefCell<Vec<TaskDone>>>,
    /// File reads and async handlers in glommio tasks.
    tasks: usize,
    /// Bytes all sessions hold for bodies being gathered.
    gathered: usize,
    /// With `server.proxy_protocol`: the sources allowed to send PROXY headers.
    proxy_from: Option<Vec<crate::proxy::Network>>,
    links: Links,
    tick: Duration,
    ticks: u64,
}

/// Builds the core's ring; the error is one line for the user.
pub fn make_ring(config: &Config) -> Result<Ring, String> {
    let runtime = &config.runtime;
    Ring::new(
        runtime.ring_depth as u32,
        runtime.recv_buffers,
        runtime.recv_buffer_bytes,
    )
}

/// Runs one core until `stop` reports end-of-file (the server dropped its end), then drains
/// and reports its last interval and its whole run. `ring` was made on this thread.
pub async fn run<S: 'static>(
    config: Config,
    ring: Ring,
    listeners: Vec<OwnedFd>,
    stop: OwnedFd,
    links: Links,
    service: CoreService<S>,
) {
    let tick = report_tick(&config);
    let wake = Rc::new(Wake::default());
    let watcher = glommio::spawn_local(watch_eventfd(ring.eventfd(), wake.clone()));
    let mut core = Core {
        cqes: Vec::with_capacity(ring.buffers().max(4096)),
        ring,
        conns: Vec::new(),
        generations: Vec::new(),
        free: Vec::new(),
        open: 0,
        wheel: Wheel::new(),
        clock: Clock::since(links.board.started),
        now_ms: 0,
        reaped_at: Instant::now(),
        due: Vec::new(),
        starved: VecDeque::new(),
        service,
        metrics: Metrics {
            enabled: config.report.enabled,
            ..Metrics::default()
        },
        limits: Limits::from_config(&config.http),
        reads: BufferPool::new(read_buffer_size(&config), POOLED_BUFFERS),
        writes: BufferPool::new(OUTPUT_BUFFER_BYTES, POOLED_BUFFERS),
        chunks: BufferPool::new(config.files.chunk_bytes, POOLED_CHUNKS),
        accept_armed: vec![false; listeners.len()],
        listeners,
        accept_retry_ms: None,
        draining: false,
        drain_deadline_ms: u64::MAX,
        drain_idle_until_ms: u64::MAX,
        cut: false,
        timer_ms: None,
        timespec: types::Timespec::new(),
        entered: false,
        wake,
        files_done: Rc::new(RefCell::new(Vec::new())),
        tasks_done: Rc::new(RefCell::new(Vec::new())),
        tasks: 0,
        gathered: 0,
        proxy_from: config.server.proxy_protocol.then(|| {
            config
                .server
                .proxy_from
                .iter()
                .filter_map(|s| crate::proxy::Network::parse(s))
                .collect()
        }),
        links,
        tick,
        ticks: 0,
        config,
    };
    // Until its first tick, `/stats` shows this core with zero counts.
    core.links.board.publish(
        core.links.index,
        core.snapshot(0, Duration::ZERO, crate::metrics::new_histogram()),
    );
    for index in 0..core.listeners.len() {
        core.arm_accept(index);
    }
    core.ring.push(
        &opcode::PollAdd::new(types::Fd(stop.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(token(Op::Stop, NO_KEY, 0)),
    );
    core.run().await;
    drop(stop);
    watcher.cancel().await;
    core.report_final();
    // The writer finishes once every core has dropped its inbox.
    core.links.log.take();
}

/// Reads the ring's eventfd through glommio and wakes the loop each time it fires.
async fn watch_eventfd(eventfd: RawFd, wake: Rc<Wake>) {
    // SAFETY: dup(2) of the ring's eventfd; the duplicate is owned by the file below.
    let fd = unsafe { libc::dup(eventfd) };
    if fd >= 0 {
        // SAFETY: a fresh descriptor handed over whole.
        let file = unsafe { glommio::io::BufferedFile::from_raw_fd(fd) };
        while file.read_at(0, 8).await.is_ok() {
            wake.fire();
        }
    }
    wake.watching.set(false);
    wake.fire();
}

impl<S: 'static> Core<S> {
    async fn run(&mut self) {
        loop {
            if std::mem::take(&mut self.entered) {
                // The park's enter already submitted and reaped.
            } else if let Err(e) = self.ring.enter() {
                crate::report::note(&format!(
                    "core {}: io_uring_enter failed: {e}",
                    self.links.core
                ));
                return;
            }
            let reaped = self.turn();
            if self.draining && self.finished() {
                return self.shut_down();
            }
            if reaped {
                if self.tasks > 0 {
                    futures_lite::future::yield_now().await;
                } else {
                    glommio::yield_if_needed().await;
                }
                continue;
            }
            self.park().await;
        }
    }

    /// Handles everything ready: completions, file reads, deadlines, reports. Returns whether
    /// there was anything.
    fn turn(&mut self) -> bool {
        let mut cqes = std::mem::take(&mut self.cqes);
        self.ring.reap(&mut cqes);
        self.now_ms = self.clock.now_ms();
        self.reaped_at = Instant::now();
        for cqe in &cqes {
            self.complete(cqe.user_data(), cqe.result(), cqe.flags());
        }
        let mut busy = !cqes.is_empty();
        self.cqes = cqes;
        busy |= self.finish_file_reads();
        busy |= self.finish_tasks();
        self.rearm_starved();
        self.expire();
        if let Some(at) = self.accept_retry_ms {
            if self.now_ms >= at {
                self.accept_retry_ms = None;
                for index in 0..self.listeners.len() {
                    if !self.accept_armed[index] {
                        self.arm_accept(index);
                    }
                }
            }
        }
        if self.config.report.enabled || self.links.log.is_some() {
            let due = self.tick * (self.ticks as u32 + 1);
            if self.now_ms >= due.as_millis() as u64 {
                self.ticks += 1;
                self.flush_log();
                if self.config.report.enabled {
                    self.report_interval(self.ticks, self.tick);
                }
            }
        }
        if self.draining && !self.cut && self.now_ms >= self.drain_deadline_ms {
            self.cut_all();
        }
        busy
    }

    /// Whether a draining core is done: no connection left, or the cut's grace is over.
    fn finished(&self) -> bool {
        self.open == 0 || (self.cut && self.now_ms >= self.drain_deadline_ms + CUT_GRACE_MS)
    }

    /// Leaves the loop: submits the closes queued in the last turn and closes whatever
    /// connection outlived the cut's grace.
    fn shut_down(&mut self) {
        let _ = self.ring.enter();
        for conn in self.conns.iter_mut().flatten() {
            // SAFETY: the record's own descriptor, never closed while the record exists.
            unsafe { libc::close(conn.fd) };
            if conn.in_flight {
                // The kernel may still read it (the cut makes that send fail soon): leaked
                // rather than freed under it.
                std::mem::forget(std::mem::take(&mut conn.sending));
            }
        }
    }

    /// The next time the loop must look at something without being woken by a completion:
    /// a connection's deadline, a report tick, an accept retry, the drain's deadline.
    fn wake_at(&self) -> Option<u64> {
        [
            self.wheel.next_due_ms(),
            (self.config.report.enabled || self.links.log.is_some())
                .then(|| (self.tick * (self.ticks as u32 + 1)).as_millis() as u64),
            self.accept_retry_ms,
            self.draining.then_some(if self.cut {
                self.drain_deadline_ms + CUT_GRACE_MS
            } else {
                self.drain_deadline_ms
            }),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sleeps until a completion, a file read or the next deadline.
    ///
    /// While no glommio task of this core's is at work (no file read outstanding), glommio
    /// has nothing to run, and the loop sleeps in its own ring: one `io_uring_enter` that
    /// submits, waits and reaps, as the bare loop does. Otherwise (or with
    /// `runtime.idle_wait = "glommio"`) it parks through glommio: the ring's eventfd is
    /// switched on and a glommio task reading it wakes the loop, so that glommio's own
    /// completions (file reads) are handled meanwhile.
    async fn park(&mut self) {
        let wake_at = self.wake_at();
        self.metrics.counters.borrow_mut().parks += 1;
        let watching = self.wake.watching.get();
        if (self.tasks == 0 && self.config.runtime.idle_wait == IdleWait::Ring) || !watching {
            // Without the eventfd task, file reads finishing are seen within a millisecond.
            let most = if watching || self.tasks == 0 {
                RING_WAIT_MAX_MS
            } else {
                1
            };
            let wait = match wake_at {
                Some(at) => at.saturating_sub(self.now_ms).max(1),
                None => most,
            };
            let wait = Duration::from_millis(wait.min(most));
            if self.ring.wait(wait).is_ok() && !self.ring.has_completions() {
                // Nothing came: let glommio look at its own ring before sleeping again.
                futures_lite::future::yield_now().await;
            }
            self.entered = true;
            return;
        }
        if let Some(at) = wake_at {
            if self.timer_ms.is_none_or(|armed| armed > at) {
                let wait = Duration::from_millis(at.saturating_sub(self.now_ms).max(1));
                self.timespec = types::Timespec::from(wait);
                self.ring.push(
                    &opcode::Timeout::new(&self.timespec)
                        .build()
                        .user_data(token(Op::Timer, NO_KEY, 0)),
                );
                self.timer_ms = Some(at);
            }
        }
        self.ring.notify(true);
        // Completions that arrived before the eventfd was on would never signal it.
        let flushed = self.ring.enter();
        if flushed.is_ok() && !self.ring.has_completions() {
            self.wake.wait().await;
        }
        self.ring.notify(false);
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) {
        let (op, key, epoch) = untoken(user_data);
        match op {
            Op::Accept => self.on_accept(key.index as usize, result, flags),
            Op::Recv => self.on_recv(key, epoch, result, flags),
            Op::Send => self.on_send(key, result),
            Op::Stop => self.begin_drain(),
            Op::Timer => {
                if self.timer_ms.is_some_and(|at| at <= self.now_ms) {
                    self.timer_ms = None;
                }
            }
            Op::Ignore => {}
        }
    }

    // ---- the connection table ----

    fn take(&mut self, key: Key) -> Option<Box<Conn>> {
        let index = key.index as usize;
        if self.generations.get(index) != Some(&key.generation) {
            return None;
        }
        self.conns[index].take()
    }

    fn put(&mut self, conn: Box<Conn>) {
        let index = conn.key.index as usize;
        self.conns[index] = Some(conn);
    }

    fn new_key(&mut self) -> Key {
        match self.free.pop() {
            Some(index) => Key {
                index,
                generation: self.generations[index as usize],
            },
            None => {
                self.conns.push(None);
                self.generations.push(0);
                Key {
                    index: (self.conns.len() - 1) as u32,
                    generation: 0,
                }
            }
        }
    }

    /// Forgets a record; late completions naming it are then ignored.
    fn release(&mut self, key: Key) {
        let index = key.index as usize;
        self.generations[index] = (self.generations[index] + 1) & 0xff_ffff;
        self.conns[index] = None;
        self.free.push(key.index);
        self.open -= 1;
        self.metrics.counters.borrow_mut().closed += 1;
    }

    // ---- accepting ----

    /// The accept token of listener `index`.
    fn accept_token(index: usize) -> u64 {
        let key = Key {
            index: index as u32,
            generation: 0,
        };
        token(Op::Accept, key, 0)
    }

    fn arm_accept(&mut self, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        self.ring.push(
            &opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(Self::accept_token(index)),
        );
        self.accept_armed[index] = true;
    }

    fn on_accept(&mut self, index: usize, result: i32, flags: u32) {
        if !cqueue::more(flags) && index < self.accept_armed.len() {
            self.accept_armed[index] = false;
            if !self.draining {
                if result >= 0 || is_transient_accept_error(-result) {
                    self.arm_accept(index);
                } else {
                    crate::report::error_line(
                        Some(self.links.core),
                        &format!(
                            "accept failed: {}; accepting again in {ACCEPT_ERROR_BACKOFF_MS} ms",
                            io::Error::from_raw_os_error(-result)
                        ),
                    );
                    self.accept_retry_ms = Some(self.now_ms + ACCEPT_ERROR_BACKOFF_MS);
                }
            }
        }
        if result < 0 {
            return;
        }
        // A connection accepted while the drain's cancel was on its way is served like the
        // others (its response says `Connection: close`): the client has sent its request,
        // and closing would lose it.
        let fd = result;
        if let Some(allowed) = &self.proxy_from {
            // Only the balancers may say who the client is.
            let trusted =
                peer_of(fd).is_some_and(|peer| allowed.iter().any(|n| n.contains(peer.ip())));
            if !trusted {
                self.metrics.counters.borrow_mut().protocol_errors += 1;
                // SAFETY: a descriptor the kernel just gave us.
                unsafe { libc::close(fd) };
                return;
            }
        }
        if self.open >= self.config.server.max_connections_per_core {
            refuse(fd);
            self.metrics.counters.borrow_mut().refused += 1;
            return;
        }
        self.metrics.counters.borrow_mut().accepted += 1;
        self.open += 1;
        let key = self.new_key();
        let http = &self.config.http;
        let mut conn = Box::new(Conn {
            fd,
            key,
            session: Session::new(self.limits, http.max_requests_per_connection),
            input: Vec::new(),
            in_start: 0,
            out: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            in_flight: false,
            sending_chunk: false,
            awaiting: false,
            held: 0,
            awaiting_proxy: self.proxy_from.is_some(),
            // The access log names the client: asked once per connection (a PROXY header
            // names it instead when there is one).
            client: match self.links.log.is_some() && self.proxy_from.is_none() {
                true => peer_of(fd).map(Box::new),
                false => None,
            },
            recv: Recv::Off,
            recv_epoch: 0,
            eof: false,
            phase: Phase::Open,
            linger: false,
            transfer: None,
            head_started: NEVER,
            active_ms: self.now_ms,
            send_ms: 0,
            linger_until: 0,
            wheel_tick: NEVER,
            read_at: self.reaped_at,
        });
        self.arm_recv(&mut conn);
        self.schedule(&mut conn);
        self.put(conn);
    }

    // ---- receiving ----

    fn arm_recv(&mut self, conn: &mut Conn) {
        conn.recv_epoch = conn.recv_epoch.wrapping_add(1) & 0xf;
        self.ring.push(
            &opcode::RecvMulti::new(types::Fd(conn.fd), RECV_GROUP)
                .build()
                .user_data(token(Op::Recv, conn.key, conn.recv_epoch)),
        );
        conn.recv = Recv::Armed;
    }

    /// Stops the armed receive (its completions may still bring bytes, which are kept).
    fn cancel_recv(&mut self, conn: &mut Conn) {
        if conn.recv == Recv::Armed {
            self.ring.push(
                &opcode::AsyncCancel::new(token(Op::Recv, conn.key, conn.recv_epoch))
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(token(Op::Ignore, NO_KEY, 0)),
            );
        }
        conn.recv = Recv::Off;
    }

    /// Whether the connection should be receiving: it is open or lingering, the client has
    /// not closed, and it is not already holding a buffer's worth of unprocessed input.
    ///
    /// The cap is soft: completions the kernel posted before the cancel took effect are still
    /// kept (in order), so a connection may hold up to what its socket had already received
    /// on top of it.
    fn wants_input(&self, conn: &Conn) -> bool {
        match conn.phase {
            Phase::Closing => false,
            Phase::Linger { .. } => !conn.eof,
            Phase::Open => {
                !conn.eof
                    && !conn.session.is_closed()
                    && conn.pending_input() < read_buffer_size(&self.config)
            }
        }
    }

    /// Arms or cancels the receive to match [`Core::wants_input`].
    fn steer_recv(&mut self, conn: &mut Conn) {
        let wants = self.wants_input(conn);
        match conn.recv {
            Recv::Off if wants => self.arm_recv(conn),
            Recv::Armed if !wants => self.cancel_recv(conn),
            _ => {}
        }
    }

    /// Arms the receives that ran out of buffers again, oldest first, at most one per buffer
    /// (every buffer is back by the end of a turn): arming more would only see most of them
    /// end with `ENOBUFS` once more.
    fn rearm_starved(&mut self) {
        let mut budget = self.ring.buffers();
        while budget > 0 {
            let Some(key) = self.starved.pop_front() else {
                break;
            };
            if let Some(mut conn) = self.take(key) {
                if conn.recv == Recv::Starved {
                    conn.recv = Recv::Off;
                    self.steer_recv(&mut conn);
                    budget -= 1;
                }
                self.put(conn);
            }
        }
    }

    fn on_recv(&mut self, key: Key, epoch: u8, result: i32, flags: u32) {
        let buffer = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let Some(mut conn) = self.take(key) else {
            if let Some(bid) = buffer {
                self.ring.recycle(bid);
            }
            return;
        };
        if !more && epoch == conn.recv_epoch && conn.recv == Recv::Armed {
            conn.recv = Recv::Off;
        }
        match (result, buffer) {
            (n, Some(bid)) if n > 0 => {
                // SAFETY: the buffer's bytes stay put until it is recycled below; nothing in
                // between gives it back or lets the kernel reuse it.
                let data: &[u8] = unsafe { &*(self.ring.buffer(bid, n as usize) as *const [u8]) };
                self.metrics.counters.borrow_mut().bytes_in += n as u64;
                conn.active_ms = self.now_ms;
                conn.read_at = self.reaped_at;
                self.on_data(&mut conn, data);
                self.ring.recycle(bid);
            }
            (0, _) => conn.eof = true,
            (n, _) if n == -libc::ENOBUFS && epoch == conn.recv_epoch => {
                conn.recv = Recv::Starved;
                self.starved.push_back(key);
            }
            // The end of a receive already replaced, or cancelled on purpose.
            (n, _) if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
            (n, _) if n < 0 => {
                // Reset or another error: nothing more can be read or sent.
                conn.eof = true;
                self.cut(&mut conn);
            }
            _ => {}
        }
        if let Some(bid) = buffer.filter(|_| result <= 0) {
            self.ring.recycle(bid);
        }
        self.settle(conn);
    }

    fn on_data(&mut self, conn: &mut Conn, data: &[u8]) {
        match conn.phase {
            Phase::Open if conn.awaiting_proxy => self.read_proxy_header(conn, data),
            Phase::Open => {
                self.pump(conn, data);
                self.flush(conn);
            }
            Phase::Linger { dropped } => {
                let dropped = dropped.saturating_add(data.len() as u32);
                conn.phase = Phase::Linger { dropped };
                if dropped >= LINGER_BYTES {
                    conn.eof = true;
                }
            }
            Phase::Closing => {}
        }
    }

    /// Reads the PROXY header that must open the connection; the bytes after it are HTTP.
    fn read_proxy_header(&mut self, conn: &mut Conn, data: &[u8]) {
        if conn.input.capacity() == 0 {
            conn.input = self.reads.take();
        }
        conn.input.extend_from_slice(data);
        match crate::proxy::parse(&conn.input[conn.in_start..]) {
            crate::proxy::Header::Incomplete => {
                if conn.head_started == NEVER {
                    conn.head_started = self.now_ms;
                }
            }
            crate::proxy::Header::Invalid => {
                // Not from a balancer speaking the protocol: nothing is answered.
                self.metrics.counters.borrow_mut().protocol_errors += 1;
                conn.input.clear();
                conn.in_start = 0;
                self.cut(conn);
            }
            crate::proxy::Header::Complete { len, source } => {
                conn.awaiting_proxy = false;
                conn.client = source.map(Box::new);
                conn.in_start += len;
                conn.head_started = NEVER;
                self.pump(conn, &[]);
                self.flush(conn);
            }
        }
    }

    /// Answers what is buffered: `fresh` bytes from a receive buffer, after any input the
    /// connection kept. Stops when a request is incomplete, the output is at its high-water
    /// mark between requests, a file is on its way or the session has ended. Unprocessed fresh bytes are
    /// copied into the connection's input buffer.
    fn pump(&mut self, conn: &mut Conn, mut fresh: &[u8]) {
        if conn.pending_input() > 0 && !fresh.is_empty() {
            conn.input.extend_from_slice(fresh);
            fresh = &[];
        }
        loop {
            // The high-water mark applies between requests only, as in the session: a body must
            // be read to its end even when the response waiting for it is large, or that
            // response could never be committed and sent.
            let full = conn.out.len() >= OUTPUT_HIGH_WATER && conn.session.is_between_requests();
            if conn.transfer.is_some() || conn.awaiting || conn.session.is_closed() || full {
                break;
            }
            let from_fresh = conn.pending_input() == 0;
            let input = if from_fresh {
                fresh
            } else {
                &conn.input[conn.in_start..]
            };
            if input.is_empty() {
                break;
            }
            if conn.out.capacity() == 0 {
                conn.out = self.writes.take();
            }
            let draining = self.draining;
            self.service
                .set_socket(conn.fd, conn.client.as_deref().copied(), conn.read_at);
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                conn.session
                    .process(input, &mut conn.out, &mut self.service, draining)
            }));
            let Ok(progress) = answer else {
                // The session itself panicked (handlers' panics are caught closer to them):
                // this connection ends, the core and its other connections go on.
                conn.input.clear();
                conn.in_start = 0;
                return self.cut(conn);
            };
            if from_fresh {
                fresh = &fresh[progress.consumed..];
            } else {
                conn.in_start += progress.consumed;
            }
            self.count_held(conn);
            if progress.responses > 0 {
                conn.head_started = NEVER;
                self.metrics
                    .record_batch(&progress.by_class, progress.errors, conn.read_at);
            }
            if let Some(status) = progress.error {
                self.service.log_refusal(status, 0);
                let client = conn
                    .client
                    .as_deref()
                    .map_or("-".into(), |c| c.ip().to_string());
                crate::report::error_line(
                    Some(self.links.core),
                    &format!("{} {} to {client}", status.0, status.reason()),
                );
            }
            if progress.failures > 0 {
                self.metrics.counters.borrow_mut().handler_panics += u64::from(progress.failures);
            }
            match conn.session.take_deferred() {
                Some((Deferred::File(body), head, _)) => self.start_transfer(conn, body, head),
                Some((Deferred::Task(task, late), _, _)) => {
                    conn.head_started = NEVER;
                    self.spawn_task(conn, task, late);
                }
                None => {}
            }
            if progress.consumed == 0 {
                break;
            }
        }
        if !fresh.is_empty() {
            if conn.input.capacity() == 0 {
                conn.input = self.reads.take();
            }
            conn.input.extend_from_slice(fresh);
        }
        if conn.pending_input() == 0 {
            conn.input.clear();
            conn.in_start = 0;
            self.reads.give(std::mem::take(&mut conn.input));
        } else if conn.in_start > 0 {
            conn.input.copy_within(conn.in_start.., 0);
            conn.input.truncate(conn.input.len() - conn.in_start);
            conn.in_start = 0;
        }
        if conn.out.is_empty() {
            // Nothing to send: an idle connection, or one waiting for the rest of a request,
            // holds no output buffer.
            self.writes.give(std::mem::take(&mut conn.out));
        }
        // The head timeout starts once a head's first bytes could be parsed: not while
        // processing waits for a file or for the output to drain, as the old loop would not
        // have read them yet.
        let blocked = conn.transfer.is_some()
            || conn.awaiting
            || (conn.out.len() >= OUTPUT_HIGH_WATER && conn.session.is_between_requests());
        if conn.pending_input() > 0
            && conn.head_started == NEVER
            && !conn.session.is_reading_body()
            && !blocked
        {
            conn.head_started = self.now_ms;
        }
    }

    /// Keeps the core's total of gathered body bytes up to date; a connection whose body
    /// takes it past `http.body_buffer_bytes_per_core` gets a 503 and closes.
    fn count_held(&mut self, conn: &mut Conn) {
        let held = conn.session.held_bytes();
        self.gathered = self.gathered - conn.held + held;
        conn.held = held;
        if held > 0 && self.gathered > self.config.http.body_buffer_bytes_per_core {
            let refused = conn.session.abandon_body(
                &mut conn.out,
                crate::http::response::Status::SERVICE_UNAVAILABLE,
            );
            if refused {
                self.metrics.counters.borrow_mut().by_class[5] += 1;
                conn.linger = true;
                self.gathered -= conn.held;
                conn.held = 0;
            }
        }
    }

    // ---- sending ----

    /// Starts a send of what is ready, unless one is in flight: the committed responses, or
    /// the next chunk of a file on its way.
    fn flush(&mut self, conn: &mut Conn) {
        if conn.in_flight || conn.phase == Phase::Closing {
            return;
        }
        if conn.transfer.as_ref().is_some_and(|t| t.reading) {
            // Nothing goes out while a file is read: a small body's head may still be
            // replaced by a 500, and a large body's chunk is not there yet. (A small body
            // read from the page cache is done before this is reached.)
            return;
        }
        let ready = conn.out.len();
        if ready > 0 {
            let buf = std::mem::take(&mut conn.out);
            self.send(conn, buf, false);
            return;
        }
        if conn.transfer.is_some() {
            self.next_chunk(conn);
        }
    }

    fn send(&mut self, conn: &mut Conn, buf: Vec<u8>, chunk: bool) {
        conn.sending = buf;
        conn.sending_chunk = chunk;
        conn.sent = 0;
        conn.send_ms = self.now_ms;
        self.submit_send(conn);
    }

    fn submit_send(&mut self, conn: &mut Conn) {
        let rest = &conn.sending[conn.sent..];
        self.ring.push(
            &opcode::Send::new(types::Fd(conn.fd), rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(token(Op::Send, conn.key, 0)),
        );
        conn.in_flight = true;
    }

    fn on_send(&mut self, key: Key, result: i32) {
        let Some(mut conn) = self.take(key) else {
            return;
        };
        conn.in_flight = false;
        if result <= 0 || conn.phase == Phase::Closing {
            // The client is gone (or we cut it): nothing more can go out.
            conn.eof = true;
            self.cut(&mut conn);
            self.settle(conn);
            return;
        }
        let n = result as usize;
        self.metrics.counters.borrow_mut().bytes_out += n as u64;
        conn.sent += n;
        conn.active_ms = self.now_ms;
        conn.send_ms = self.now_ms;
        if conn.sent < conn.sending.len() {
            self.submit_send(&mut conn);
            self.settle(conn);
            return;
        }
        let buf = std::mem::take(&mut conn.sending);
        if conn.sending_chunk {
            self.chunks.give(buf);
        } else {
            self.writes.give(buf);
        }
        conn.sent = 0;
        if conn.phase == Phase::Open {
            self.pump(&mut conn, &[]);
            self.flush(&mut conn);
        }
        self.settle(conn);
    }

    // ---- files ----

    fn start_transfer(&mut self, conn: &mut Conn, body: Box<FileBody>, head: usize) {
        let chunk = self.config.files.chunk_bytes as u64;
        let small = body.len <= chunk.min(OUTPUT_HIGH_WATER as u64);
        let transfer = Box::new(Transfer {
            pos: body.offset,
            end: body.offset + body.len,
            small,
            head,
            start: conn.out.len(),
            body,
            source: None,
            reading: false,
        });
        conn.transfer = Some(transfer);
        if small {
            self.read_small(conn);
        }
    }

    /// Reads a small body into the output buffer: at once from the page cache, through a
    /// glommio task for what would wait.
    fn read_small(&mut self, conn: &mut Conn) {
        let transfer = conn.transfer.as_mut().expect("a transfer");
        if !transfer.body.direct {
            let want = (transfer.end - transfer.pos) as usize;
            match read_cached(
                transfer.body.fd.as_raw_fd(),
                transfer.pos,
                want,
                &mut conn.out,
            ) {
                Ok(n) if n == want => return self.small_read_done(conn, Ok(())),
                Ok(n) => transfer.pos += n as u64,
                Err(e) => return self.small_read_done(conn, Err(e)),
            }
        }
        let buf = self.chunks.take();
        self.spawn_read(conn, buf);
    }

    /// The small body's bytes are all in the output buffer (or could not be read).
    fn small_read_done(&mut self, conn: &mut Conn, result: io::Result<()>) {
        let transfer = conn.transfer.take().expect("a transfer");
        match result {
            Ok(()) => {
                if let Some(fill) = transfer.body.fill {
                    if let Some(files) = self.service.files_mut() {
                        files.fill_cache(*fill, &conn.out[transfer.start..]);
                    }
                }
            }
            // Nothing of this response has gone out yet: a 500 takes its place after the
            // responses before it, and the connection closes.
            Err(_) => conn.session.fail_file(&mut conn.out, transfer.head),
        }
    }

    /// Sends the next chunk of a large body, or ends the transfer when all went out.
    fn next_chunk(&mut self, conn: &mut Conn) {
        let transfer = conn.transfer.as_mut().expect("a transfer");
        if transfer.pos >= transfer.end {
            conn.transfer = None;
            self.pump(conn, &[]);
            self.flush(conn);
            return;
        }
        let want = (transfer.end - transfer.pos).min(self.config.files.chunk_bytes as u64);
        let mut buf = self.chunks.take();
        if !transfer.body.direct {
            match read_cached(
                transfer.body.fd.as_raw_fd(),
                transfer.pos,
                want as usize,
                &mut buf,
            ) {
                Ok(n) if n == want as usize => {
                    transfer.pos += want;
                    return self.send(conn, buf, true);
                }
                Ok(_) => {}
                Err(_) => {
                    // The head promised bytes that cannot be read: the client could not tell
                    // a short body from a slow one, so the connection ends.
                    self.chunks.give(buf);
                    return self.cut(conn);
                }
            }
        }
        self.spawn_read(conn, buf);
    }

    /// Hands the rest of the current read (`buf` holds what is already read) to a glommio task.
    fn spawn_read(&mut self, conn: &mut Conn, buf: Vec<u8>) {
        let chunk = self.config.files.chunk_bytes as u64;
        let transfer = conn.transfer.as_mut().expect("a transfer");
        let len = if transfer.small {
            (transfer.end - transfer.pos) as usize
        } else {
            (transfer.end - transfer.pos).min(chunk) as usize - buf.len()
        };
        let pos = transfer.pos + if transfer.small { 0 } else { buf.len() as u64 };
        let fd = match transfer.source {
            Some(_) => None,
            None => match transfer.body.fd.try_clone() {
                Ok(fd) => Some(fd),
                Err(e) => {
                    self.chunks.give(buf);
                    return if transfer.small {
                        self.small_read_done(conn, Err(e))
                    } else {
                        self.cut(conn)
                    };
                }
            },
        };
        transfer.reading = true;
        self.tasks += 1;
        let source = transfer.source.clone();
        let direct = transfer.body.direct;
        let key = conn.key;
        let done = self.files_done.clone();
        let wake = self.wake.clone();
        glommio::spawn_local(async move {
            let (source, buf, result) = read_slow(source, fd, direct, pos, len, buf).await;
            done.borrow_mut().push(FileDone {
                key,
                source,
                buf,
                result,
            });
            wake.fire();
        })
        .detach();
    }

    /// Takes the results of file reads done by glommio tasks; true if there were any.
    fn finish_file_reads(&mut self) -> bool {
        if self.files_done.borrow().is_empty() {
            return false;
        }
        let done = std::mem::take(&mut *self.files_done.borrow_mut());
        for read in done {
            self.tasks -= 1;
            let Some(mut conn) = self.take(read.key) else {
                self.chunks.give(read.buf);
                continue;
            };
            self.file_read(&mut conn, read);
            self.settle(conn);
        }
        true
    }

    fn file_read(&mut self, conn: &mut Conn, read: FileDone) {
        let Some(transfer) = conn.transfer.as_mut() else {
            self.chunks.give(read.buf);
            return;
        };
        transfer.reading = false;
        if transfer.source.is_none() {
            transfer.source = read.source;
        }
        if transfer.small {
            if read.result.is_ok() {
                conn.out.extend_from_slice(&read.buf);
            }
            self.chunks.give(read.buf);
            self.small_read_done(conn, read.result);
            self.pump(conn, &[]);
            self.flush(conn);
            return;
        }
        if read.result.is_err() {
            self.chunks.give(read.buf);
            return self.cut(conn);
        }
        transfer.pos += read.buf.len() as u64;
        self.send(conn, read.buf, true);
    }

    // ---- async handlers ----

    /// Runs an async handler's future as a glommio task; its response comes back through
    /// `tasks_done`. The connection answers nothing more until then.
    fn spawn_task(
        &mut self,
        conn: &mut Conn,
        task: Pin<Box<dyn Future<Output = std::thread::Result<Reply>>>>,
        late: Option<Box<LateLog>>,
    ) {
        conn.awaiting = true;
        self.tasks += 1;
        let key = conn.key;
        let read_at = conn.read_at;
        let done = self.tasks_done.clone();
        let wake = self.wake.clone();
        glommio::spawn_local(async move {
            let reply = task.await;
            done.borrow_mut().push(TaskDone {
                key,
                reply,
                read_at,
                late,
            });
            wake.fire();
        })
        .detach();
    }

    /// Writes the responses async handlers have finished; true if there were any.
    fn finish_tasks(&mut self) -> bool {
        if self.tasks_done.borrow().is_empty() {
            return false;
        }
        let done = std::mem::take(&mut *self.tasks_done.borrow_mut());
        for task in done {
            self.tasks -= 1;
            let Some(mut conn) = self.take(task.key) else {
                // The connection ended while its handler worked.
                continue;
            };
            conn.awaiting = false;
            if conn.phase == Phase::Open {
                if conn.out.capacity() == 0 {
                    conn.out = self.writes.take();
                }
                let before = conn.out.len();
                let (status, failed) =
                    conn.session
                        .answer_late(&mut conn.out, self.draining, |response| {
                            write_late(&task.reply, response)
                        });
                if let Some(late) = &task.late {
                    let bytes = (conn.out.len() - before) as u64;
                    self.service.log_late(late, status, bytes);
                }
                let mut by_class = [0; 6];
                by_class[usize::from(status.0 / 100).min(5)] = 1;
                self.metrics.record_batch(&by_class, 0, task.read_at);
                if failed {
                    self.metrics.counters.borrow_mut().handler_panics += 1;
                }
                self.pump(&mut conn, &[]);
                self.flush(&mut conn);
            }
            self.settle(conn);
        }
        true
    }

    // ---- deadlines ----

    /// When the connection's current wait ends, in ms.
    fn deadline(&self, conn: &Conn) -> Option<u64> {
        let http = &self.config.http;
        match conn.phase {
            Phase::Linger { .. } => return Some(conn.linger_until),
            Phase::Closing => return None,
            Phase::Open => {}
        }
        if conn.in_flight {
            return Some(conn.send_ms + http.write_timeout_ms);
        }
        if conn.transfer.as_ref().is_some_and(|t| t.reading) || conn.awaiting {
            // A file read or a handler is at work: neither is the client's to hurry.
            return None;
        }
        if conn.session.is_reading_body() {
            return Some(conn.active_ms + http.body_timeout_ms);
        }
        match conn.head_started {
            NEVER if self.draining => {
                Some((conn.active_ms + http.keepalive_timeout_ms).min(self.drain_idle_until_ms))
            }
            NEVER => Some(conn.active_ms + http.keepalive_timeout_ms),
            started => Some(started + http.header_timeout_ms),
        }
    }

    /// Makes sure the wheel looks at the connection no later than its deadline.
    fn schedule(&mut self, conn: &mut Conn) {
        let Some(deadline) = self.deadline(conn) else {
            return;
        };
        let tick = Wheel::tick_of(deadline);
        if conn.wheel_tick <= tick {
            return;
        }
        conn.wheel_tick = self.wheel.insert(conn.key, tick);
    }

    fn expire(&mut self) {
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(self.now_ms, &mut due);
        for &(key, tick) in &due {
            let Some(mut conn) = self.take(key) else {
                continue;
            };
            if conn.wheel_tick != tick {
                self.put(conn);
                continue;
            }
            conn.wheel_tick = NEVER;
            match self.deadline(&conn) {
                Some(deadline) if deadline <= self.now_ms => self.time_out(&mut conn),
                _ => {}
            }
            self.settle(conn);
        }
        due.clear();
        self.due = due;
    }

    /// The connection's deadline passed.
    fn time_out(&mut self, conn: &mut Conn) {
        if conn.phase != Phase::Open {
            conn.eof = true;
            return;
        }
        if conn.in_flight {
            // The client stopped taking bytes.
            return self.cut(conn);
        }
        if conn.out.capacity() == 0 {
            conn.out = self.writes.take();
        }
        let partial = conn.pending_input() > 0;
        if self.draining && conn.idle() {
            // Silent through the drain's grace: our side shuts and what the client may still
            // send is read and dropped, so the close cannot become a reset.
            conn.linger = true;
        }
        if conn.session.time_out(&mut conn.out, partial) {
            let mut counters = self.metrics.counters.borrow_mut();
            counters.by_class[4] += 1;
            counters.protocol_errors += 1;
            drop(counters);
            conn.linger = true;
            self.flush(conn);
        }
    }

    // ---- ending ----

    /// After any event: closes or lingers once the connection has nothing left to do, and
    /// otherwise keeps its receive and deadline right. Puts the record back.
    fn settle(&mut self, mut conn: Box<Conn>) {
        if conn.phase == Phase::Open && !conn.in_flight && conn.transfer.is_none() {
            let unsent = !conn.out.is_empty() || conn.awaiting;
            let done = conn.session.is_closed() || conn.eof;
            if done && !unsent {
                if (conn.linger || conn.pending_input() > 0) && !conn.eof {
                    self.start_linger(&mut conn);
                } else {
                    return self.close(conn);
                }
            }
        }
        match conn.phase {
            Phase::Closing if !conn.in_flight => return self.close(conn),
            Phase::Linger { .. } if conn.eof => return self.close(conn),
            _ => {}
        }
        self.steer_recv(&mut conn);
        self.schedule(&mut conn);
        self.put(conn);
    }

    /// Shuts our side and keeps reading, so unread client bytes do not turn the close into a
    /// reset that could destroy the response just sent.
    fn start_linger(&mut self, conn: &mut Conn) {
        // SAFETY: shutdown(2) on the connection's own socket.
        unsafe { libc::shutdown(conn.fd, libc::SHUT_WR) };
        conn.phase = Phase::Linger { dropped: 0 };
        conn.linger_until = self.now_ms + LINGER_MS;
        conn.input.clear();
        conn.in_start = 0;
        self.reads.give(std::mem::take(&mut conn.input));
    }

    /// Ends the connection now, whatever it was doing: a send in flight fails at once.
    fn cut(&mut self, conn: &mut Conn) {
        // SAFETY: shutdown(2) on the connection's own socket.
        unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
        conn.eof = true;
        conn.phase = Phase::Closing;
    }

    /// Closes the socket (after stopping its receive) and forgets the record. A send still
    /// in flight reads from the record's buffer, so that waits for its completion.
    fn close(&mut self, mut conn: Box<Conn>) {
        if conn.in_flight {
            self.cut(&mut conn);
            return self.put(conn);
        }
        self.cancel_recv(&mut conn);
        self.ring.push(
            &opcode::Close::new(types::Fd(conn.fd))
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(token(Op::Ignore, NO_KEY, 0)),
        );
        let key = conn.key;
        self.gathered -= conn.held;
        self.free_buffers(*conn);
        self.release(key);
    }

    fn free_buffers(&mut self, conn: Conn) {
        self.reads.give(conn.input);
        self.writes.give(conn.out);
        if conn.sending_chunk {
            self.chunks.give(conn.sending);
        } else {
            self.writes.give(conn.sending);
        }
    }

    /// Stops accepting. Every connection's next response says `Connection: close` and ends
    /// it; an idle keep-alive connection waits `server.drain_idle_grace_ms` for that next
    /// request (closing it at once would reset a request already on its way), then closes.
    /// All of them are gone by `server.drain_timeout_ms`.
    fn begin_drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        self.service.set_draining();
        self.drain_deadline_ms = self.now_ms + self.config.server.drain_timeout_ms;
        self.drain_idle_until_ms = self.now_ms + self.config.server.drain_idle_grace_ms;
        for (index, listener) in std::mem::take(&mut self.listeners).into_iter().enumerate() {
            if self.accept_armed[index] {
                self.ring.push(
                    &opcode::AsyncCancel::new(Self::accept_token(index))
                        .build()
                        .flags(squeue::Flags::SKIP_SUCCESS)
                        .user_data(token(Op::Ignore, NO_KEY, 0)),
                );
            }
            // Closing our descriptor is enough once the accept is cancelled. After a reload
            // the socket itself stays open in the next server, which accepts what is queued.
            drop(listener);
        }
        for index in 0..self.conns.len() {
            let key = Key {
                index: index as u32,
                generation: self.generations[index],
            };
            if let Some(conn) = self.take(key) {
                self.settle(conn);
            }
        }
    }

    /// The drain deadline passed: every connection left is cut.
    fn cut_all(&mut self) {
        self.cut = true;
        for index in 0..self.conns.len() {
            let key = Key {
                index: index as u32,
                generation: self.generations[index],
            };
            if let Some(mut conn) = self.take(key) {
                self.cut(&mut conn);
                self.settle(conn);
            }
        }
    }

    // ---- reporting ----

    fn snapshot(&self, seq: u64, duration: Duration, latency: Histogram<u64>) -> Snapshot {
        let mut counters = *self.metrics.counters.borrow();
        counters.file_cache_hits = self.service.files().map_or(0, StaticFiles::cache_hits);
        counters.access_log_dropped = self.service.log_dropped();
        Snapshot {
            core: self.links.core,
            seq,
            duration,
            latency,
            counters,
            open: self.open,
        }
    }

    /// Ends interval `seq`: folds it into the totals, publishes them for `/stats` and sends
    /// the interval to the reporter.
    fn report_interval(&self, seq: u64, duration: Duration) {
        let interval = self.metrics.take_interval();
        let totals = self.metrics.total.borrow().clone();
        let links = &self.links;
        links
            .board
            .publish(links.index, self.snapshot(seq, duration, totals));
        let _ = links
            .reports
            .send(ReportMsg::Interval(self.snapshot(seq, duration, interval)));
    }

    /// Hands this tick's access log lines to the writer.
    fn flush_log(&mut self) {
        if let (Some(log), Some(lines)) = (&self.links.log, self.service.take_log()) {
            let _ = log.send(LogMsg::Lines(lines));
        }
    }

    fn report_final(&mut self) {
        self.flush_log();
        let seq = self.ticks + 1;
        let elapsed = self.links.board.started.elapsed();
        self.report_interval(seq, elapsed.saturating_sub(self.tick * (seq as u32 - 1)));
        let _ = self.links.reports.send(ReportMsg::Final(self.snapshot(
            0,
            elapsed,
            self.metrics.total.borrow().clone(),
        )));
    }
}

/// The address at the other end of a socket.
fn peer_of(fd: RawFd) -> Option<std::net::SocketAddr> {
    // SAFETY: the connection's own descriptor, open for the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&fd).peer_addr().ok()?.as_socket()
}

/// Errors that concern one pending connection (it was reset before we took it); anything
/// else (EMFILE, ENFILE, ENOBUFS, ENOMEM) is a resource problem worth pausing for.
fn is_transient_accept_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNABORTED | libc::ECONNRESET | libc::EINTR | libc::EAGAIN | libc::ECANCELED
    )
}

/// Best-effort 503 without waiting, then close: the socket's send buffer is empty, so one
/// non-blocking send either takes it all or the client never learns why.
fn refuse(fd: RawFd) {
    // SAFETY: a descriptor we own; the buffer is valid for the call.
    unsafe {
        libc::send(
            fd,
            REFUSED.as_ptr().cast(),
            REFUSED.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        libc::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let key = Key {
            index: 123_456,
            generation: 0xab_cdef,
        };
        for op in [
            Op::Accept,
            Op::Recv,
            Op::Send,
            Op::Stop,
            Op::Timer,
            Op::Ignore,
        ] {
            for epoch in [0, 7, 15] {
                assert_eq!(untoken(token(op, key, epoch)), (op, key, epoch));
            }
        }
    }
}
