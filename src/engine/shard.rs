//! One core's shard of the server: its loop, and what the loop owns.
//!
//! Each turn of the loop makes one `io_uring_enter` (`Parking::enter`), which submits every
//! SQE the last turn queued and lets the kernel post every completion ready; the turn then
//! hands each completion to what it is for (the connections: `Connections`; the drain's
//! signal; the park's timer), takes the results of glommio tasks, fires due deadlines,
//! retries accepting, reports once per tick, and keeps the drain's deadline. When a turn
//! finds nothing to do, the loop sleeps (`Parking::park`). Whichever way the loop ends, the
//! core leaves (`Shard::leave`) before anything the kernel may still touch is freed.
//!
//! The fields of [`Shard`] are its own: the connections see the ring, the moment, the
//! reports and the listeners only as a [`Turn`] lent for one event.

use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::{opcode, types};

use super::connections::{Connections, Doors};
use super::courier::{CoreMesh, Courier, BELL_KEY};
use super::drain::{Lifecycle, EXIT_BOUND};
use super::groups::Hub;
use super::links::Links;
use super::listeners::Listeners;
use super::park::Parking;
use super::reporting::Reporting;
use super::ring::Ring;
use super::token::{token, untoken, Op, NO_KEY};
use super::turn::{Now, Turn};
use super::upstream::Outbound;
use super::wake::watch_eventfd;
use super::wheel::Clock;
use super::{Application, Listener, TlsOptions};
use crate::access_log::LogBuffer;
use crate::config::Config;
use crate::support::stderr::note;

/// One core's share of the server: its ring and the loop around it, the listeners, the
/// connections, and the reports.
pub(super) struct Shard<A: Application> {
    ring: Ring,
    now: Now,
    life: Lifecycle,
    parking: Parking,
    listeners: Listeners,
    reporting: Reporting,
    conns: Connections<A>,
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

/// What a core's thread made for its loop: they belong to that thread.
pub(crate) struct OnCore {
    /// The core's ring (`make_ring`).
    pub(crate) ring: Ring,
    /// Where the core's tasks call its upstreams (its application holds handles on it).
    pub(crate) door: Outbound,
    /// Where its tasks reach its WebSockets and publish to groups (the same).
    pub(crate) hub: Hub,
    /// Its end of the channels between cores.
    pub(crate) mesh: CoreMesh,
}

/// Runs one core until `stop` reports end-of-file (the server dropped its end), then drains
/// and reports its last interval and its whole run.
pub(crate) async fn run<A: Application>(
    config: Config,
    core: OnCore,
    listeners: Vec<Listener>,
    tls: Option<TlsOptions>,
    stop: OwnedFd,
    links: Links,
    app: A,
) {
    let OnCore {
        ring,
        door,
        hub,
        mesh,
    } = core;
    let mut courier = Courier::start(mesh);
    courier.connected().await;
    let parking = Parking::new(config.runtime.idle_wait);
    let wake = parking.wake().clone();
    let watcher = glommio::spawn_local(watch_eventfd(ring.eventfd(), wake.clone()));
    let log = links
        .log
        .is_some()
        .then(|| LogBuffer::new(links.cpu, config.log.format, config.log.buffer_bytes));
    let mut shard = Shard {
        ring,
        now: Now::new(Clock::since(links.board.started)),
        life: Lifecycle::Serving,
        parking,
        listeners: Listeners::new(listeners),
        reporting: Reporting::new(&config, links, log),
        conns: Connections::new(&config, app, tls, wake, Doors { door, hub, courier }),
    };
    shard.reporting.publish_start();
    shard.listeners.arm_all(&mut shard.ring, false);
    shard.conns.courier.arm_all(&mut shard.ring);
    let poll = opcode::PollAdd::new(types::Fd(stop.as_raw_fd()), libc::POLLIN as u32)
        .build()
        .user_data(token(Op::Stop, NO_KEY, 0));
    // SAFETY: `stop` outlives the loop, which ends before it is dropped below.
    unsafe { shard.ring.push(&poll) };
    shard.run().await;
    shard.leave();
    drop(stop);
    watcher.cancel().await;
    shard.reporting.report_final(shard.conns.open());
}

impl<A: Application> Shard<A> {
    /// The loop: a turn after each enter, and between turns what `between_turns` decides
    /// (see the engine's contract of the two loops).
    async fn run(&mut self) {
        loop {
            if let Err(e) = self.parking.enter(&mut self.ring) {
                let cpu = self.reporting.links.cpu;
                note(format_args!("core {cpu}: io_uring_enter failed: {e}"));
                return;
            }
            let busy = self.turn();
            if self.life.finished(self.conns.open(), self.now.ms) {
                return;
            }
            self.between_turns(busy).await;
        }
    }

    /// The connections, and the loop's facilities lent to them for one event.
    fn split(&mut self) -> (&mut Connections<A>, Turn<'_>) {
        let turn = Turn {
            ring: &mut self.ring,
            now: &self.now,
            reporting: &mut self.reporting,
            listeners: &mut self.listeners,
            life: self.life,
        };
        (&mut self.conns, turn)
    }

    /// Handles everything ready: completions, glommio tasks' results, deadlines, accept
    /// retries, reports, the drain's deadline. Returns whether there was anything.
    fn turn(&mut self) -> bool {
        let mut busy = self.ring.reap() > 0;
        self.now.reaped();
        while let Some(cqe) = self.ring.next_completion() {
            self.complete(cqe.user_data(), cqe.result(), cqe.flags());
        }
        let (conns, mut turn) = self.split();
        conns.send_relayed(&mut turn);
        busy |= conns.finish_file_reads(&mut turn);
        busy |= conns.finish_tasks(&mut turn);
        busy |= conns.take_outflows(&mut turn);
        busy |= conns.take_calls(&mut turn);
        busy |= conns.tend_sockets(&mut turn);
        conns.rearm_starved(&mut turn);
        conns.expire(&mut turn);
        // Relayed bytes that came other than by a completion (a task's call, a deadline).
        conns.send_relayed(&mut turn);
        conns.retry_accept(&mut turn);
        let ticked = self.reporting.tick(self.now.ms, self.conns.open());
        if ticked {
            let (conns, mut turn) = self.split();
            conns.tend_links(&mut turn);
            conns.tidy();
        }
        self.enforce_drain_deadline();
        busy
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) {
        let (op, key, epoch) = untoken(user_data);
        let (conns, mut turn) = self.split();
        match op {
            Op::Accept => conns.on_accept(&mut turn, key.index as usize, result, flags),
            Op::Recv => conns.on_recv(&mut turn, key, epoch, result, flags),
            Op::Send => conns.on_send(&mut turn, key, result),
            Op::Upstream => conns.on_upstream(&mut turn, key, epoch, result, flags),
            Op::Stop if key.index >= BELL_KEY => {
                let from = (key.index - BELL_KEY) as usize;
                conns.courier.heard(turn.ring, from);
            }
            Op::Stop => self.begin_drain(),
            Op::Timer => self.parking.timer_fired(self.now.ms),
            Op::Ignore => {}
        }
    }

    /// After a turn: when it found work, the loop goes on at once, letting glommio run
    /// first (every time while tasks of this core's are at work, so that their results
    /// come back within a turn; otherwise only when glommio's own time slice is up); when it
    /// found nothing, the loop sleeps (`Parking::park`).
    async fn between_turns(&mut self, busy: bool) {
        let at_work = self.conns.at_work();
        match (busy, at_work > 0) {
            (true, true) => futures_lite::future::yield_now().await,
            (true, false) => glommio::yield_if_needed().await,
            (false, _) => {
                let wake_at = self.wake_at();
                self.reporting.count_park();
                let now = self.now.ms;
                self.parking
                    .park(&mut self.ring, wake_at, now, at_work)
                    .await;
            }
        }
    }

    /// The next time the loop must look at something without being woken by a completion:
    /// a connection's deadline, a report tick, an accept retry, the drain's deadline.
    fn wake_at(&self) -> Option<u64> {
        [
            self.conns.next_due_ms(),
            self.reporting.next_tick_ms(),
            self.listeners.retry_ms(),
            self.life.deadline(),
            // Group messages wait for another core's channel.
            self.conns.courier_waiting().then_some(self.now.ms + 1),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Stops accepting and begins the drain (see `drain`).
    fn begin_drain(&mut self) {
        if self.life != Lifecycle::Serving {
            return;
        }
        self.life = Lifecycle::draining(self.now.ms, self.conns.settings());
        self.listeners.stop(&mut self.ring);
        let (conns, mut turn) = self.split();
        conns.drain(&mut turn);
    }

    /// Past the drain deadline, every connection left is cut.
    fn enforce_drain_deadline(&mut self) {
        if let Some(cut) = self.life.cut_due(self.now.ms) {
            self.life = cut;
            let (conns, mut turn) = self.split();
            conns.cut_all(&mut turn);
        }
    }

    /// Leaves the core, whichever way the loop ended (drained, an `io_uring_enter` that
    /// failed, a panic: `Shard`'s `Drop` calls this too): every operation the kernel holds
    /// is cancelled and reaped (within [`EXIT_BOUND`]) before any connection's buffers are
    /// freed, then the connections left are closed. What the kernel still holds after the
    /// bound is leaked, not freed under it, and counted (`exit_leaked`).
    fn leave(&mut self) {
        if std::mem::replace(&mut self.life, Lifecycle::Left) == Lifecycle::Left {
            return;
        }
        let held = self.ring.in_flight();
        let still = self.ring.quiesce(EXIT_BOUND);
        self.conns.forget_all(still > 0);
        if still > 0 {
            let cpu = self.reporting.links.cpu;
            note(format_args!(
                "core {cpu}: {still} io_uring operation(s) still held by the kernel {} ms after \
                 leaving: their buffers are left allocated",
                EXIT_BOUND.as_millis()
            ));
        }
        let mut counters = self.reporting.metrics.counters.borrow_mut();
        counters.exit_in_flight += held as u64;
        counters.exit_leaked += still as u64;
    }
}

impl<A: Application> Drop for Shard<A> {
    fn drop(&mut self) {
        // After a panic in the loop, as after any other way out.
        self.leave();
    }
}
