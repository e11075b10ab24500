//! percore's own io_uring, one per core: set-up, the provided-buffer ring the multishot
//! receives fill, one `io_uring_enter` per loop turn, and the eventfd that wakes glommio.
//!
//! The ring is created on the core's executor thread with `SINGLE_ISSUER | DEFER_TASKRUN`:
//! completions are then produced only when this thread enters the kernel asking for them,
//! never by interrupting it while it works. Where the kernel refuses those flags the ring
//! falls back to `COOP_TASKRUN | TASKRUN_FLAG`, which still never interrupts the thread.
//! Which one is in force is [`RingMode`], reported at start-up. The ring's own descriptor is
//! registered, so an enter costs no file-table look-up.
//!
//! This file knows nothing of HTTP or connections: the rest of the engine builds the SQEs
//! and reads the completions. It owns only what must outlive them: the buffer memory, and
//! the count of operations the kernel still holds.
//!
//! **Memory the kernel may touch is freed only after it lets go.** Every operation pushed
//! with [`Ring::push`] is counted until its last completion is reaped (a multishot one's
//! last is the one without `IORING_CQE_F_MORE`): its user data carries the ring's own bit
//! ([`TRACKED`]) for that. A core leaving, whichever way it leaves, calls
//! [`Ring::quiesce`]: every operation is cancelled and the ring is reaped until none is left
//! (or a bound passes), before any send buffer or the receive buffers are freed; what the
//! kernel still holds then is leaked, never freed under it (`Drop` leaves the receive
//! buffers mapped while any receive is in flight). A received buffer is a guard
//! ([`Received`]) that goes back to the kernel when dropped.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::buffer_ring::{BufRing, Received};

/// The bit of an SQE's user data the ring keeps for itself: the operation is counted among
/// those in flight until its last completion. The engine's own tokens leave it clear.
pub const TRACKED: u64 = 1 << 59;

/// `IORING_ENTER_GETEVENTS`: the enter runs deferred task work and posts completions.
const IORING_ENTER_GETEVENTS: u32 = 1;
/// `IORING_ENTER_EXT_ARG`: the argument is an `io_uring_getevents_arg` (with a timeout).
const IORING_ENTER_EXT_ARG: u32 = 8;
/// `IORING_ENTER_REGISTERED_RING`: the descriptor is an index of a registered ring.
const IORING_ENTER_REGISTERED_RING: u32 = 16;
/// `io_uring_register` opcodes to register and unregister a ring's own descriptor.
const IORING_REGISTER_RING_FDS: libc::c_long = 20;
const IORING_UNREGISTER_RING_FDS: libc::c_long = 21;

/// `struct io_uring_getevents_arg`.
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// `struct io_uring_rsrc_update`, as IORING_(UN)REGISTER_RING_FDS takes it.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// Registers the ring's descriptor with the calling thread (Linux 5.18+); the index, or
/// `None` where the kernel does not offer it.
fn register_ring_fd(fd: RawFd) -> Option<u32> {
    let mut update = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: fd as u64,
    };
    // SAFETY: one io_uring_rsrc_update, as the call expects.
    let result = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd as libc::c_long,
            IORING_REGISTER_RING_FDS,
            &mut update as *mut RsrcUpdate,
            1 as libc::c_long,
        )
    };
    (result == 1).then_some(update.offset)
}

/// How the ring runs completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingMode {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1+): completions run when the loop enters.
    DeferTaskrun,
    /// `COOP_TASKRUN | TASKRUN_FLAG` (Linux 5.19+): completions run at the next kernel entry.
    CoopTaskrun,
}

impl RingMode {
    /// As printed in the start-up line.
    pub fn describe(self) -> &'static str {
        match self {
            RingMode::DeferTaskrun => "io_uring single-issuer, deferred task work",
            RingMode::CoopTaskrun => "io_uring cooperative task work (no DEFER_TASKRUN here)",
        }
    }
}

/// One core's ring with its receive buffers and wake-up eventfd.
pub struct Ring {
    uring: IoUring,
    /// How completions run.
    pub mode: RingMode,
    /// The ring's index among this thread's registered rings, when registered: enters name
    /// it instead of the descriptor. (The `io-uring` crate keeps the index in a `Submitter`,
    /// which lives only as long as one call; hence the raw calls below.)
    registered: Option<u32>,
    /// The receive buffers, shared with the guards of the buffers lent out.
    bufs: Rc<BufRing>,
    eventfd: OwnedFd,
    /// Operations pushed with [`Ring::push`] whose last completion is not reaped yet.
    in_flight: usize,
    /// The completions of the last reap, handed out in order by [`Ring::next_completion`]
    /// (capacity kept across turns).
    reaped: Vec<cqueue::Entry>,
    /// How many of `reaped` were handed out.
    handed: usize,
}

#[cfg(feature = "internals")]
thread_local! {
    /// Makes this thread's next loop enter fail, once (a test's way to drive a core out of
    /// its loop by the error path; see `internals::fail_next_ring_enter`).
    static FAIL_NEXT_ENTER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes the calling core's next `io_uring_enter` fail with `EIO`, once.
#[cfg(feature = "internals")]
pub(crate) fn fail_next_enter() {
    FAIL_NEXT_ENTER.with(|fail| fail.set(true));
}

impl Ring {
    /// Sets up a ring of `entries` submission slots with `buffers` receive buffers of
    /// `buffer_bytes` each. The error is one line naming what the kernel lacks.
    pub fn new(entries: u32, buffers: u16, buffer_bytes: usize) -> Result<Ring, String> {
        check_kernel()?;
        // Multishot receives post many completions per submission; a roomy queue keeps them
        // from overflowing into the kernel's backlog between two turns.
        let cq_entries = (entries * 8).max(16384);
        let build = |defer: bool| {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(cq_entries).setup_submit_all();
            if defer {
                builder
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag();
            } else {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            builder.build(entries)
        };
        let (mut uring, mode) = match build(true) {
            Ok(uring) => (uring, RingMode::DeferTaskrun),
            Err(_) => match build(false) {
                Ok(uring) => (uring, RingMode::CoopTaskrun),
                Err(e) => {
                    return Err(format!(
                        "cannot set up io_uring: {e}. io_uring must be allowed: sysctl \
                         kernel.io_uring_disabled must be 0, and a seccomp profile (e.g. \
                         Docker's default) must not block io_uring_setup"
                    ))
                }
            },
        };
        // An optimisation only: enters work without it (through the plain descriptor).
        let registered = register_ring_fd(uring.as_raw_fd());
        let bufs = Rc::new(BufRing::new(&uring, buffers, buffer_bytes)?);
        // SAFETY: eventfd(2) returns a fresh descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(format!(
                "cannot create an eventfd: {}",
                io::Error::last_os_error()
            ));
        }
        // SAFETY: just created, owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        uring
            .submitter()
            .register_eventfd(raw)
            .map_err(|e| format!("cannot register an eventfd on io_uring: {e}"))?;
        // Quiet while the loop is busy; switched on just before it parks.
        uring.completion().disable_eventfd();
        Ok(Ring {
            uring,
            mode,
            registered,
            bufs,
            eventfd,
            in_flight: 0,
            reaped: Vec::with_capacity(usize::from(buffers).max(4096)),
            handed: 0,
        })
    }

    /// The eventfd the kernel signals on completions while [`Ring::notify`] is on.
    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Turns the eventfd signal on (before parking) or off (while working).
    pub fn notify(&mut self, on: bool) {
        let cq = self.uring.completion();
        if on {
            cq.enable_eventfd();
        } else {
            cq.disable_eventfd();
        }
    }

    /// Queues `sqe`, counted in flight until its last completion is reaped; when the queue is
    /// full, what is queued is submitted first (a second enter in this turn, only under
    /// bursts larger than `runtime.ring_depth`).
    ///
    /// # Safety
    ///
    /// Every buffer and descriptor `sqe` names must stay valid, and a buffer the kernel
    /// writes must not be read or moved, until the entry's last completion has been reaped
    /// (or, when the core leaves, until [`Ring::quiesce`] says none is left). The engine
    /// keeps a send's buffer in its connection record until the send completes. The user
    /// data must leave [`TRACKED`] clear.
    pub unsafe fn push(&mut self, sqe: &squeue::Entry) {
        debug_assert_eq!(sqe.get_user_data() & TRACKED, 0, "the ring's own bit");
        let sqe = sqe.clone().user_data(sqe.get_user_data() | TRACKED);
        // SAFETY: as this function's contract.
        unsafe { self.push_raw(&sqe) };
        self.in_flight += 1;
    }

    /// Queues an operation that names no memory and posts no completion when it succeeds
    /// (a cancel or a close with `IOSQE_CQE_SKIP_SUCCESS`): it is not counted.
    pub fn push_quiet(&mut self, sqe: &squeue::Entry) {
        // SAFETY: such an entry names no buffer the kernel reads or writes.
        unsafe { self.push_raw(sqe) };
    }

    unsafe fn push_raw(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: the callers keep what `sqe` names alive until its completion.
            if unsafe { self.uring.submission().push(sqe) }.is_ok() {
                return;
            }
            let _ = self.enter();
        }
    }

    /// Cancels the operation pushed (with [`Ring::push`]) with `user_data`; the cancel posts
    /// a completion only if it fails (user data 0), and the operation's own last completion
    /// comes as usual (`ECANCELED`, or what it had done).
    pub fn cancel(&mut self, user_data: u64) {
        let cancel = opcode::AsyncCancel::new(user_data | TRACKED)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(0);
        self.push_quiet(&cancel);
    }

    /// Operations in flight: pushed with [`Ring::push`], their last completion not reaped.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Submits everything queued and lets the kernel post every completion ready now, without
    /// waiting: the one `io_uring_enter` of a loop turn.
    pub fn enter(&mut self) -> io::Result<usize> {
        self.enter_with(0, None)
    }

    /// Submits everything queued and sleeps in the kernel until a completion arrives or
    /// `timeout` passes (`ETIME`, not an error here).
    pub fn wait(&mut self, timeout: std::time::Duration) -> io::Result<()> {
        let timespec = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        let arg = GeteventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            min_wait_usec: 0,
            ts: &timespec as *const libc::timespec as u64,
        };
        match self.enter_with(1, Some(&arg)) {
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(()),
            other => other.map(drop),
        }
    }

    /// `io_uring_enter` submitting every queued entry with `GETEVENTS` (deferred completions
    /// run only then), waiting for `wait` completions at most until `arg`'s timeout.
    fn enter_with(&mut self, wait: u32, arg: Option<&GeteventsArg>) -> io::Result<usize> {
        // Only a build with percore's test internals can be made to fail here.
        #[cfg(feature = "internals")]
        if FAIL_NEXT_ENTER.with(|fail| fail.replace(false)) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let queued = self.uring.submission().len() as u32;
        let (fd, mut flags) = match self.registered {
            Some(index) => (index as libc::c_long, IORING_ENTER_REGISTERED_RING),
            None => (self.uring.as_raw_fd() as libc::c_long, 0),
        };
        flags |= IORING_ENTER_GETEVENTS;
        let (arg_ptr, arg_size) = match arg {
            Some(arg) => {
                flags |= IORING_ENTER_EXT_ARG;
                (
                    arg as *const GeteventsArg as libc::c_long,
                    std::mem::size_of::<GeteventsArg>() as libc::c_long,
                )
            }
            None => (0, 0),
        };
        loop {
            // SAFETY: io_uring_enter on our own ring; `arg`, when given, is a valid
            // io_uring_getevents_arg whose timespec outlives the call.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    fd,
                    queued as libc::c_long,
                    wait as libc::c_long,
                    flags as libc::c_long,
                    arg_ptr,
                    arg_size,
                )
            };
            if result >= 0 {
                return Ok(result as usize);
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) if wait == 0 => continue,
                Some(libc::EINTR) => return Ok(0),
                // The completion queue is full: reaping makes room, then the next turn goes on.
                Some(libc::EBUSY) => return Ok(0),
                _ => return Err(error),
            }
        }
    }

    /// Takes every posted completion off the kernel's queue, to be handed out by
    /// [`Ring::next_completion`]; an operation's last completion takes it out of those in
    /// flight. Returns how many there are (those of an earlier reap not handed out are
    /// dropped).
    pub fn reap(&mut self) -> usize {
        self.reaped.clear();
        self.handed = 0;
        for cqe in self.uring.completion() {
            if cqe.user_data() & TRACKED != 0 && !cqueue::more(cqe.flags()) {
                self.in_flight -= 1;
            }
            self.reaped.push(cqe);
        }
        self.reaped.len()
    }

    /// The next completion of the last reap, in the order the kernel posted them.
    pub fn next_completion(&mut self) -> Option<cqueue::Entry> {
        let cqe = self.reaped.get(self.handed)?.clone();
        self.handed += 1;
        Some(cqe)
    }

    /// Whether completions are waiting in the queue.
    pub fn has_completions(&mut self) -> bool {
        !self.uring.completion().is_empty()
    }

    /// The receive buffer `bid`, of which the kernel filled `len` bytes, to read and change
    /// in place (TLS decrypts there); it goes back to the kernel when the guard is dropped.
    ///
    /// # Safety
    ///
    /// `bid` must come from a receive completion reaped from this ring, of `len` bytes, and
    /// be taken once per completion.
    pub unsafe fn received(&mut self, bid: u16, len: usize) -> Received {
        // SAFETY: as this function's contract.
        unsafe { Received::new(self.bufs.clone(), bid, len) }
    }

    /// Gives receive buffer `bid` back to the kernel unread (a completion that brought no
    /// bytes, or one for a connection that is gone).
    pub fn recycle(&mut self, bid: u16) {
        self.bufs.give_back(bid);
    }

    /// Cancels every operation in flight and reaps until none is left or `within` passes;
    /// returns how many are left (the kernel holds their memory still: it must not be
    /// freed). Completions reaped here are dropped (a receive's buffer needs no giving back:
    /// the ring is ending).
    pub fn quiesce(&mut self, within: Duration) -> usize {
        let until = Instant::now() + within;
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(0);
        self.push_quiet(&cancel);
        // What is queued (the closes of the last turn, the cancel) goes out in any case.
        let _ = self.enter();
        self.reap();
        let mut cancels = 0;
        while self.in_flight > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let waited = self.wait(left.min(Duration::from_millis(50)));
            let reaped = self.reap();
            if waited.is_err() && reaped == 0 {
                break;
            }
            // Operations pushed after the first cancel went out (a multishot receive that
            // the kernel re-armed) are cancelled again, a few times at most.
            if reaped == 0 && cancels < 8 {
                cancels += 1;
                self.push_quiet(&cancel);
            }
        }
        self.in_flight
    }

    /// Receive buffers in all.
    pub fn buffers(&self) -> usize {
        self.bufs.count
    }
}

/// Multishot receive, provided-buffer rings and multishot accept need Linux 6.0; older
/// kernels are refused with one line rather than failing on the first connection.
fn check_kernel() -> Result<(), String> {
    // SAFETY: uname fills the struct it is given.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return Ok(());
    }
    // SAFETY: uname NUL-terminates the release.
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    let release = release.to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < (6, 0) {
        return Err(format!(
            "Linux {release} is too old: percore's network path needs io_uring multishot \
             receive and provided-buffer rings (Linux 6.0 or later)"
        ));
    }
    Ok(())
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            // Receives the kernel may still fill: the buffers stay mapped (leaked), never
            // unmapped under it.
            std::mem::forget(self.bufs.clone());
        }
        // The registration holds a reference to the ring: without this, closing it would
        // not end it before the thread exits.
        if let Some(index) = self.registered {
            let mut update = RsrcUpdate {
                offset: index,
                resv: 0,
                data: 0,
            };
            // SAFETY: one io_uring_rsrc_update naming our registered index.
            unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    self.uring.as_raw_fd() as libc::c_long,
                    IORING_UNREGISTER_RING_FDS,
                    &mut update as *mut RsrcUpdate,
                    1 as libc::c_long,
                )
            };
        }
    }
}
