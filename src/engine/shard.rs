//! One core's shard of the server: its state, grouped by concern, and its loop.
//!
//! Each turn of the loop makes one `io_uring_enter` (`Ring::enter`), which submits every
//! SQE the last turn queued and lets the kernel post every completion ready; the turn then
//! handles them all (`accept`, `receive`, `send`), takes the results of glommio tasks
//! (`transfer`, `tasks`), fires due deadlines (`deadlines`), retries accepting, and reports
//! once per tick (`reporting`). When a turn finds nothing to do, the loop sleeps (`park`).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use crate::tls::ServerConfigs;
use io_uring::{opcode, types};
use ipnet::IpNet;

use super::background::Background;
use super::bodies::BodyBudget;
use super::buffers::Buffers;
use super::handshakes::HandshakeGate;
use super::links::{Links, Reporting};
use super::listeners::Listeners;
use super::ring::Ring;
use super::table::Table;
use super::token::{token, untoken, Op, NO_KEY};
use super::wake::{watch_eventfd, Parking};
use super::wheel::{Clock, Wheel};
use super::{Application, Listener, TlsOptions};
use crate::access_log::LogBuffer;
use crate::config::Config;
use crate::http::request::Limits;
use crate::support::stderr::note;

/// The configuration a core works with, taken out of [`Config`] once.
pub(super) struct Settings {
    pub(super) limits: Limits,
    pub(super) header_timeout_ms: u64,
    pub(super) body_timeout_ms: u64,
    pub(super) keepalive_timeout_ms: u64,
    pub(super) write_timeout_ms: u64,
    pub(super) drain_timeout_ms: u64,
    pub(super) drain_idle_grace_ms: u64,
    pub(super) max_connections: usize,
    /// Unprocessed input past which a connection stops receiving: a whole head.
    pub(super) input_cap: usize,
    pub(super) chunk_bytes: u64,
    /// With `server.proxy_protocol`: the sources allowed to send PROXY headers.
    pub(super) proxy_from: Option<Vec<IpNet>>,
}

impl Settings {
    fn of(config: &Config) -> Settings {
        let http = &config.http;
        Settings {
            limits: config.limits(),
            header_timeout_ms: http.header_timeout_ms,
            body_timeout_ms: http.body_timeout_ms,
            keepalive_timeout_ms: http.keepalive_timeout_ms,
            write_timeout_ms: http.write_timeout_ms,
            drain_timeout_ms: config.server.drain_timeout_ms,
            drain_idle_grace_ms: config.server.drain_idle_grace_ms,
            max_connections: config.server.max_connections_per_core,
            input_cap: input_cap(config),
            chunk_bytes: config.static_files.chunk_bytes as u64,
            proxy_from: config
                .server
                .proxy_protocol
                .then(|| config.server.proxy_from.clone()),
        }
    }
}

/// TLS on one core.
pub(super) struct TlsCore {
    /// This core's rustls configurations.
    pub(super) configs: Rc<ServerConfigs>,
    /// Handshakes under way, and their bound.
    pub(super) gate: HandshakeGate,
}

/// Bytes of a file chunk buffer: a chunk, and on a TLS core the records it becomes.
fn chunk_buffer_bytes(config: &Config, tls: bool) -> usize {
    let chunk = config.static_files.chunk_bytes;
    match tls {
        true => chunk + chunk.div_ceil(crate::tls::MAX_FRAGMENT) * crate::tls::MAX_OVERHEAD,
        false => chunk,
    }
}

/// Size of a partial-input buffer, and the input a connection holds before it stops
/// receiving: a whole head always fits.
pub(super) fn input_cap(config: &Config) -> usize {
    config.http.max_request_head_bytes.max(16 * 1024)
}

/// The core's time: the clock, and the moments of the turn being handled.
pub(super) struct Now {
    pub(super) clock: Clock,
    /// Milliseconds since start, read once per turn.
    pub(super) ms: u64,
    /// When this turn's completions were reaped.
    pub(super) reaped_at: Instant,
}

/// Where the core is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Accepting and serving.
    Serving,
    /// No longer accepting; idle connections wait for their last request until
    /// `idle_until`, all are cut at `deadline`.
    Draining { deadline: u64, idle_until: u64 },
    /// The drain's deadline passed and every connection was cut; their last sends get until
    /// `until`.
    Cut { until: u64 },
    /// The core has left (`leave`): nothing the kernel held is left in flight, or it was
    /// leaked, and every connection is closed.
    Left,
}

/// One core's share of the server: its ring, connections, application, buffers, deadlines
/// and reports.
pub(super) struct Shard<A: Application> {
    pub(super) ring: Ring,
    pub(super) table: Table,
    pub(super) wheel: Wheel,
    pub(super) now: Now,
    pub(super) settings: Settings,
    pub(super) app: A,
    pub(super) buffers: Buffers,
    pub(super) listeners: Listeners,
    pub(super) life: Lifecycle,
    pub(super) parking: Parking,
    /// TLS on this core, when there is a TLS listener.
    pub(super) tls: Option<TlsCore>,
    pub(super) background: Background,
    pub(super) reporting: Reporting,
    /// Bytes all sessions hold for bodies being gathered.
    pub(super) bodies: BodyBudget,
    /// Connections whose receive ended with `ENOBUFS`, in the order they ran dry.
    pub(super) starved: VecDeque<super::token::Key>,
}

/// Builds a core's ring; the error is one line for the user.
pub(crate) fn make_ring(config: &Config) -> Result<Ring, String> {
    let runtime = &config.runtime;
    Ring::new(
        runtime.ring_depth as u32,
        runtime.recv_buffers,
        runtime.recv_buffer_bytes,
    )
}

/// Runs one core until `stop` reports end-of-file (the server dropped its end), then drains
/// and reports its last interval and its whole run. `ring` was made on this thread.
pub(crate) async fn run<A: Application>(
    config: Config,
    ring: Ring,
    listeners: Vec<Listener>,
    tls: Option<TlsOptions>,
    stop: OwnedFd,
    links: Links,
    app: A,
) {
    let parking = Parking::new(config.runtime.idle_wait);
    let watcher = glommio::spawn_local(watch_eventfd(ring.eventfd(), parking.wake.clone()));
    let log = links
        .log
        .is_some()
        .then(|| LogBuffer::new(links.cpu, config.log.format, config.log.buffer_bytes));
    let mut shard = Shard {
        ring,
        table: Table::default(),
        wheel: Wheel::new(),
        now: Now {
            clock: Clock::since(links.board.started),
            ms: 0,
            reaped_at: Instant::now(),
        },
        settings: Settings::of(&config),
        app,
        buffers: Buffers::new(
            input_cap(&config),
            chunk_buffer_bytes(&config, tls.is_some()),
        ),
        listeners: Listeners::new(listeners),
        tls: tls.map(|tls| TlsCore {
            configs: Rc::new(tls.configs),
            gate: HandshakeGate::new(tls.max_handshakes),
        }),
        life: Lifecycle::Serving,
        parking,
        background: Background::new(),
        reporting: Reporting::new(&config, links, log),
        bodies: BodyBudget::new(config.http.body_buffer_bytes_per_core),
        starved: VecDeque::new(),
    };
    shard.publish_start();
    shard.listeners.arm_all(&mut shard.ring, false);
    let poll = opcode::PollAdd::new(types::Fd(stop.as_raw_fd()), libc::POLLIN as u32)
        .build()
        .user_data(token(Op::Stop, NO_KEY, 0));
    // SAFETY: `stop` outlives the loop, which ends before it is dropped below.
    unsafe { shard.ring.push(&poll) };
    shard.run().await;
    shard.leave();
    drop(stop);
    watcher.cancel().await;
    shard.report_final();
}

impl<A: Application> Shard<A> {
    /// The loop: a turn after each enter, and between turns what `park` decides (see the
    /// engine's contract of the two loops).
    async fn run(&mut self) {
        loop {
            if let Err(e) = self.enter() {
                let cpu = self.reporting.links.cpu;
                note(format_args!("core {cpu}: io_uring_enter failed: {e}"));
                return;
            }
            let busy = self.turn();
            if self.finished() {
                return;
            }
            self.between_turns(busy).await;
        }
    }

    /// Handles everything ready: completions, glommio tasks' results, deadlines, accept
    /// retries, reports, the drain's deadline. Returns whether there was anything.
    fn turn(&mut self) -> bool {
        let mut busy = self.ring.reap() > 0;
        self.now.ms = self.now.clock.now_ms();
        self.now.reaped_at = Instant::now();
        while let Some(cqe) = self.ring.next_completion() {
            self.complete(cqe.user_data(), cqe.result(), cqe.flags());
        }
        busy |= self.finish_file_reads();
        busy |= self.finish_tasks();
        self.rearm_starved();
        self.expire();
        self.retry_accept();
        self.tick();
        self.enforce_drain_deadline();
        busy
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) {
        let (op, key, epoch) = untoken(user_data);
        match op {
            Op::Accept => self.on_accept(key.index as usize, result, flags),
            Op::Recv => self.on_recv(key, epoch, result, flags),
            Op::Send => self.on_send(key, result),
            Op::Stop => self.begin_drain(),
            Op::Timer => self.parking.timer_fired(self.now.ms),
            Op::Ignore => {}
        }
    }

    /// The next time the loop must look at something without being woken by a completion:
    /// a connection's deadline, a report tick, an accept retry, the drain's deadline.
    pub(super) fn wake_at(&self) -> Option<u64> {
        [
            self.wheel.next_due_ms(),
            self.reporting.next_tick_ms(),
            self.listeners.retry_ms(),
            self.drain_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Queues an operation that names no memory of the core's but the ring's own (a
    /// multishot accept or receive, whose buffers come from the buffer ring, a poll on a
    /// descriptor the core owns until it stops); it is counted in flight.
    pub(super) fn push_plain(&mut self, sqe: &io_uring::squeue::Entry) {
        // SAFETY: such entries point at no memory but the ring's receive buffers, which the
        // ring keeps while any receive is in flight.
        unsafe { self.ring.push(sqe) };
    }
}
