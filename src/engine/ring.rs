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
//! and reads the completions. It owns only what must outlive them: the buffer memory.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, squeue, types, IoUring};

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

/// The buffer group every multishot receive of a core takes its buffers from.
pub const RECV_GROUP: u16 = 0;

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
    bufs: BufRing,
    eventfd: OwnedFd,
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
        let bufs = BufRing::new(&uring, buffers, buffer_bytes)?;
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

    /// Queues `sqe`; when the queue is full, what is queued is submitted first (a second
    /// enter in this turn, only under bursts larger than `runtime.ring_depth`).
    ///
    /// # Safety
    ///
    /// Every buffer and descriptor `sqe` names must stay valid, and a buffer the kernel
    /// writes must not be read or moved, until the entry's completion has been reaped (or
    /// the ring is dropped). The engine keeps a send's buffer in its connection record until
    /// the send completes, and a timeout's `Timespec` in the core.
    pub unsafe fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: the caller keeps what `sqe` names alive until its completion.
            if unsafe { self.uring.submission().push(sqe) }.is_ok() {
                return;
            }
            let _ = self.enter();
        }
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

    /// Moves every posted completion into `into` (whose capacity is kept across turns).
    pub fn reap(&mut self, into: &mut Vec<cqueue::Entry>) {
        into.clear();
        into.extend(self.uring.completion());
    }

    /// Whether completions are waiting in the queue.
    pub fn has_completions(&mut self) -> bool {
        !self.uring.completion().is_empty()
    }

    /// The bytes of receive buffer `bid`, of which the kernel filled `len`, to read and
    /// change in place (TLS decrypts there) until the buffer is given back.
    ///
    /// # Safety
    ///
    /// `bid` must come from a receive completion reaped from this ring, of `len` bytes, and
    /// not have been given back ([`Ring::recycle`]) since; the slice must not be used after
    /// it is given back.
    pub unsafe fn buffer(&mut self, bid: u16, len: usize) -> &mut [u8] {
        // SAFETY: the kernel wrote these bytes before posting the completion naming `bid`
        // and does not touch the buffer again until it is given back.
        unsafe { self.bufs.get(bid, len) }
    }

    /// Gives receive buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.bufs.give_back(bid);
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

/// The provided-buffer ring: `count` buffers of `size` bytes the kernel picks from for each
/// receive, handed back by the driver as soon as their bytes are parsed or copied.
struct BufRing {
    /// The ring of buffer descriptors, shared with the kernel (page-aligned, `count` entries).
    ring: *mut types::BufRingEntry,
    ring_bytes: usize,
    /// The buffers themselves, `count * size` bytes.
    memory: *mut u8,
    memory_bytes: usize,
    count: usize,
    size: usize,
    /// Our copy of the ring's tail; published to the kernel after each give-back.
    tail: u16,
}

impl BufRing {
    fn new(uring: &IoUring, count: u16, size: usize) -> Result<BufRing, String> {
        let count_usize = usize::from(count);
        let ring_bytes = count_usize * std::mem::size_of::<types::BufRingEntry>();
        let memory_bytes = count_usize * size;
        let ring = map(ring_bytes)?;
        let memory = match map(memory_bytes) {
            Ok(memory) => memory,
            Err(e) => {
                // SAFETY: mapped just above with this length.
                unsafe { libc::munmap(ring.cast(), ring_bytes) };
                return Err(e);
            }
        };
        let mut bufs = BufRing {
            ring: ring.cast(),
            ring_bytes,
            memory,
            memory_bytes,
            count: count_usize,
            size,
            tail: 0,
        };
        // SAFETY: the ring memory lives as long as `bufs`, which outlives the registration
        // (the ring is dropped first: see `Ring`'s field order).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, count, RECV_GROUP, 0)
        }
        .map_err(|e| {
            format!(
                "cannot register io_uring provided buffers ({e}): percore needs \
                 provided-buffer rings (Linux 6.0 or later)"
            )
        })?;
        for bid in 0..count {
            bufs.give_back(bid);
        }
        Ok(bufs)
    }

    /// # Safety
    ///
    /// As [`Ring::buffer`]: the buffer is the caller's until given back.
    unsafe fn get(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(usize::from(bid) < self.count && len <= self.size);
        // SAFETY: in bounds (checked); the caller holds the buffer (see above).
        unsafe {
            std::slice::from_raw_parts_mut(self.memory.add(usize::from(bid) * self.size), len)
        }
    }

    fn give_back(&mut self, bid: u16) {
        let mask = self.count - 1;
        // SAFETY: the index is masked into the ring; the entry at the tail is ours until
        // the tail is published past it.
        unsafe {
            let entry = &mut *self.ring.add(usize::from(self.tail) & mask);
            entry.set_addr(self.memory.add(usize::from(bid) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field lives in the shared ring memory; the release store orders the
        // entry's writes before the kernel can see it.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
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

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both mappings were made in `new` with these lengths and are unused now.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
            libc::munmap(self.memory.cast(), self.memory_bytes);
        }
    }
}

/// Anonymous private memory, page-aligned (the buffer ring's descriptors must be).
fn map(bytes: usize) -> Result<*mut u8, String> {
    // SAFETY: a fresh anonymous mapping; the result is checked.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(format!(
            "cannot map {bytes} bytes of receive buffers: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(ptr.cast())
}
