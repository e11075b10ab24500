//! One core's share of the server: its listener, accept loop, connection table, buffer pools
//! and shutdown.
//!
//! Everything here lives on one executor thread and is reached through an `Rc`; nothing is
//! shared with other cores. A shard runs until its stop signal fires, then drains: it stops
//! accepting, closes idle connections, lets busy ones finish and gives up on them after
//! `server.drain_timeout_ms`. Per-connection protocol work is in `conn`.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::{AsyncReadExt, FutureExt};
use glommio::net::{TcpListener, TcpStream};
use hdrhistogram::Histogram;

use crate::config::Config;
use crate::conn;
use crate::http::request::Limits;
use crate::metrics::{Metrics, ReportMsg, Snapshot, StatsBoard};
use crate::routes::{Context, StaticFiles, StatsRoute};

/// Read and write buffers kept for reuse per core; more than this many are freed when
/// returned.
const POOLED_BUFFERS: usize = 256;

/// File chunk buffers (`static.chunk_bytes` each) kept for reuse per core: enough for the
/// usual number of concurrent large transfers without holding much memory after a burst.
const POOLED_CHUNKS: usize = 32;

/// Pause after an accept error such as EMFILE before trying again, so a core out of file
/// descriptors does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// After the drain deadline cuts the remaining connections, how long their tasks get to
/// notice before the core stops anyway.
const CUT_GRACE: Duration = Duration::from_millis(500);

/// How often a draining core checks whether its connections are all closed.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// Sent to connections refused at `max_connections_per_core`.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: percore\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Buffers of one size, lent to connections only while they have bytes to hold, so that an
/// idle connection costs no buffer.
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    size: usize,
    keep: usize,
}

impl BufferPool {
    fn new(size: usize, keep: usize) -> BufferPool {
        BufferPool {
            free: RefCell::new(Vec::new()),
            size,
            keep,
        }
    }

    /// A buffer of `size` initialised bytes, for reading into.
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; self.size])
    }

    /// An empty buffer with at least `size` capacity.
    pub fn take_empty(&self) -> Vec<u8> {
        let mut buf = self
            .free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size));
        buf.clear();
        buf
    }

    /// Returns a buffer; it is freed if the pool is full or it has grown past twice the size.
    pub fn give(&self, buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep && buf.capacity() <= 2 * self.size {
            free.push(buf);
        }
    }
}

struct Entry {
    fd: RawFd,
    idle: Cell<bool>,
}

/// The core's open connections, so shutdown can find the idle ones.
#[derive(Default)]
struct ConnTable {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    open: usize,
}

/// One core's state, shared by its tasks through an `Rc`.
pub struct Shard {
    /// The configuration (a copy per core).
    pub config: Config,
    /// Head and body limits.
    pub limits: Limits,
    /// Read buffers.
    pub reads: BufferPool,
    /// Write buffers.
    pub writes: BufferPool,
    /// Buffers a large file is sent through, one chunk at a time.
    pub chunks: BufferPool,
    /// State lent to route handlers.
    pub context: RefCell<Context>,
    /// This core's counters and latencies.
    pub metrics: Metrics,
    /// Set once shutdown starts: responses say `Connection: close`.
    pub draining: Cell<bool>,
    /// Connections waiting for input through the ring; the others are at work.
    pub parked: Cell<usize>,
    /// Report intervals completed.
    ticks: Cell<u64>,
    links: Links,
    conns: RefCell<ConnTable>,
}

/// Size of a read buffer: a whole head always fits.
pub fn read_buffer_size(config: &Config) -> usize {
    config.http.max_request_head_bytes.max(16 * 1024)
}

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
}

impl Shard {
    fn new(config: Config, mut links: Links) -> Shard {
        let stats = (!config.report.stats_path.is_empty()).then(|| StatsRoute {
            path: config.report.stats_path.clone(),
            board: links.board.clone(),
            cores: links.cores.clone(),
        });
        Shard {
            metrics: Metrics {
                enabled: config.report.enabled,
                ..Metrics::default()
            },
            limits: Limits::from_config(&config.http),
            reads: BufferPool::new(read_buffer_size(&config), POOLED_BUFFERS),
            writes: BufferPool::new(
                crate::http::session::OUTPUT_HIGH_WATER + 16 * 1024,
                POOLED_BUFFERS,
            ),
            chunks: BufferPool::new(config.files.chunk_bytes, POOLED_CHUNKS),
            context: RefCell::new(Context {
                bytes: Vec::new(),
                stats,
                files: links
                    .static_root
                    .take()
                    .map(|root| StaticFiles::new(&config.files, root)),
                file: None,
            }),
            draining: Cell::new(false),
            parked: Cell::new(0),
            ticks: Cell::new(0),
            links,
            conns: RefCell::new(ConnTable::default()),
            config,
        }
    }

    fn snapshot(&self, seq: u64, duration: Duration, latency: Histogram<u64>) -> Snapshot {
        Snapshot {
            core: self.links.core,
            seq,
            duration,
            latency,
            counters: *self.metrics.counters.borrow(),
            open: self.open_connections(),
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

    /// Connections open on this core.
    pub fn open_connections(&self) -> usize {
        self.conns.borrow().open
    }

    fn register(&self, fd: RawFd) -> usize {
        let mut table = self.conns.borrow_mut();
        table.open += 1;
        let entry = Some(Entry {
            fd,
            idle: Cell::new(false),
        });
        match table.free.pop() {
            Some(id) => {
                table.slots[id] = entry;
                id
            }
            None => {
                table.slots.push(entry);
                table.slots.len() - 1
            }
        }
    }

    /// Forgets a connection that has closed.
    pub fn unregister(&self, id: usize) {
        let mut table = self.conns.borrow_mut();
        table.slots[id] = None;
        table.free.push(id);
        table.open -= 1;
    }

    /// Records whether a connection waits between requests; only those are closed at once
    /// when draining starts.
    pub fn set_idle(&self, id: usize, idle: bool) {
        if let Some(entry) = &self.conns.borrow().slots[id] {
            entry.idle.set(idle);
        }
    }

    /// Waits until no connection is open or `limit` has passed; true if all closed.
    async fn wait_until_closed(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.open_connections() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            glommio::timer::sleep(DRAIN_POLL).await;
        }
        true
    }

    /// Shuts `how` on open connections, only the idle ones if `idle_only`; their pending
    /// reads (and, with `SHUT_RDWR`, writes) end at once.
    fn shut_connections(&self, how: libc::c_int, idle_only: bool) {
        for entry in self.conns.borrow().slots.iter().flatten() {
            if !idle_only || entry.idle.get() {
                // SAFETY: the fd belongs to a live connection of this core.
                unsafe { libc::shutdown(entry.fd, how) };
            }
        }
    }

    /// Starts draining: idle connections are woken with end-of-input (their read side is
    /// shut), so they close; busy ones see `draining` after their current request.
    fn begin_drain(&self) {
        self.draining.set(true);
        self.shut_connections(libc::SHUT_RD, true);
    }
}

/// Runs one core until `stop` reports end-of-file (the server dropped its end), then drains
/// and reports its last interval and its whole run.
pub async fn run(
    config: Config,
    listener: TcpListener,
    listener_fd: RawFd,
    stop: TcpStream,
    links: Links,
) {
    let drain_timeout = Config::millis(config.server.drain_timeout_ms);
    let tick = report_tick(&config);
    let shard = Rc::new(Shard::new(config, links));
    // Until its first tick, `/stats` shows this core with zero counts.
    shard.links.board.publish(
        shard.links.index,
        shard.snapshot(0, Duration::ZERO, crate::metrics::new_histogram()),
    );
    let ticker = shard
        .config
        .report
        .enabled
        .then(|| glommio::spawn_local(tick_loop(shard.clone(), tick)));
    future::or(
        accept_loop(&listener, listener_fd, &shard),
        wait_for_stop(stop),
    )
    .await;
    drop(listener);
    shard.begin_drain();
    if !shard.wait_until_closed(drain_timeout).await {
        // Past the deadline: cut every remaining connection; their pending reads and writes
        // fail at once and their tasks end.
        shard.shut_connections(libc::SHUT_RDWR, false);
        shard.wait_until_closed(CUT_GRACE).await;
    }
    if let Some(ticker) = ticker {
        ticker.cancel().await;
    }
    let seq = shard.ticks.get() + 1;
    let elapsed = shard.links.board.started.elapsed();
    shard.report_interval(seq, elapsed.saturating_sub(tick * (seq as u32 - 1)));
    let _ = shard.links.reports.send(ReportMsg::Final(shard.snapshot(
        0,
        elapsed,
        shard.metrics.total.borrow().clone(),
    )));
}

/// Period of report ticks: `report.interval_ms`, or one second when live lines are off
/// (`/stats` still needs fresh totals).
pub fn report_tick(config: &Config) -> Duration {
    Config::millis(match config.report.interval_ms {
        0 => 1000,
        ms => ms,
    })
}

/// Reports an interval at every tick, on a fixed schedule from the server's start so that
/// all cores' intervals line up.
async fn tick_loop(shard: Rc<Shard>, tick: Duration) {
    let started = shard.links.board.started;
    loop {
        let seq = shard.ticks.get() + 1;
        let due = started + tick * seq as u32;
        glommio::timer::sleep(due.saturating_duration_since(Instant::now())).await;
        shard.report_interval(seq, tick);
        shard.ticks.set(seq);
    }
}

async fn wait_for_stop(mut stop: TcpStream) {
    let mut byte = [0u8; 1];
    let _ = stop.read(&mut byte).await;
}

/// Accepts connections on `listener` (whose descriptor, non-blocking, is `fd`) until dropped.
///
/// Connections already queued are taken with one `accept4` each; only when the queue is
/// empty does the core wait through glommio, whose accept first tries the queue once more
/// (juggling the descriptor's flags around it) and then waits in the ring.
async fn accept_loop(listener: &TcpListener, fd: RawFd, shard: &Rc<Shard>) {
    loop {
        let accepted = match accept_queued(fd) {
            Some(result) => result,
            None => listener.accept().await.map_err(io::Error::from),
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                if !is_transient_accept_error(&error) {
                    glommio::timer::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
                continue;
            }
        };
        if shard.open_connections() >= shard.config.server.max_connections_per_core {
            refuse(&stream);
            shard.metrics.counters.borrow_mut().refused += 1;
            continue;
        }
        shard.metrics.counters.borrow_mut().accepted += 1;
        let _ = stream.set_nodelay(true);
        let id = shard.register(stream.as_raw_fd());
        let shard = shard.clone();
        glommio::spawn_local(async move {
            // A panic ends this connection only; the core and its other connections go on.
            let _ = AssertUnwindSafe(conn::serve(stream, &shard, id))
                .catch_unwind()
                .await;
            shard.unregister(id);
            shard.metrics.counters.borrow_mut().closed += 1;
        })
        .detach();
    }
}

/// A connection from the listener's queue, or `None` when the queue is empty.
fn accept_queued(fd: RawFd) -> Option<io::Result<TcpStream>> {
    // SAFETY: accept4 on our listener, asking for no peer address.
    let raw = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if raw >= 0 {
        // SAFETY: a fresh descriptor nobody else owns.
        return Some(Ok(unsafe {
            <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(raw)
        }));
    }
    let error = io::Error::last_os_error();
    (error.kind() != io::ErrorKind::WouldBlock).then_some(Err(error))
}

/// Errors that concern one pending connection (it was reset before we took it); anything
/// else (EMFILE, ENFILE, ENOBUFS, ENOMEM) is a resource problem worth pausing for.
fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Best-effort 503 without waiting: the socket's send buffer is empty, so one non-blocking
/// send either takes it all or the client never learns why; either way the socket closes.
fn refuse(stream: &TcpStream) {
    // SAFETY: valid fd and buffer for the duration of the call.
    unsafe {
        libc::send(
            stream.as_raw_fd(),
            REFUSED.as_ptr().cast(),
            REFUSED.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}
