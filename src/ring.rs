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
//! This file knows nothing of HTTP or connections: the driver (`driver`) builds the SQEs and
//! reads the completions. It owns only what must outlive them: the buffer memory.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, squeue, types, IoUring};

/// `IORING_ENTER_GETEVENTS`: the enter runs deferred task work and posts completions.
const IORING_ENTER_GETEVENTS: u32 = 1;

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
    bufs: BufRing,
    eventfd: OwnedFd,
}

impl Ring {
    /// Sets up a ring of `entries` submission slots with `buffers` receive buffers of
    /// `buffer_bytes` each. The error is one line naming what the kernel lacks.
    pub fn new(entries: u32, buffers: u16, buffer_bytes: usize) -> Result<Ring, String> {
        check_kernel()?;
        let cq_entries = (entries * 8).max(1024);
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
        // An optimisation only: enters work without it.
        let _ = uring.submitter().register_ring_fd();
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
    pub fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: every buffer an SQE points at is owned by the driver and kept until
            // that SQE's completion (see `driver`).
            if unsafe { self.uring.submission().push(sqe) }.is_ok() {
                return;
            }
            let _ = self.enter();
        }
    }

    /// Submits everything queued and lets the kernel post every completion ready now, without
    /// waiting: the one `io_uring_enter` of a loop turn.
    pub fn enter(&mut self) -> io::Result<usize> {
        let queued = self.uring.submission().len() as u32;
        loop {
            // SAFETY: no argument is passed; the flags are valid for any ring.
            let result = unsafe {
                self.uring.submitter().enter::<libc::sigset_t>(
                    queued,
                    0,
                    IORING_ENTER_GETEVENTS,
                    None,
                )
            };
            match result {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The completion queue is full: reaping makes room, then the next turn goes on.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(0),
                other => return other,
            }
        }
    }

    /// Submits everything queued and sleeps in the kernel until a completion arrives or
    /// `timeout` passes (`ETIME`, not an error here).
    pub fn wait(&mut self, timeout: std::time::Duration) -> io::Result<()> {
        let timespec = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&timespec);
        match self.uring.submitter().submit_with_args(1, &args) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
            Ok(_) => Ok(()),
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

    /// The bytes of receive buffer `bid`, of which the kernel filled `len`.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        self.bufs.get(bid, len)
    }

    /// Gives receive buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.bufs.give_back(bid);
    }

    /// Receive buffers the kernel holds now (free for the next receive).
    pub fn buffers_free(&self) -> usize {
        self.bufs.free
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
    free: usize,
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
            free: 0,
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

    fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(usize::from(bid) < self.count && len <= self.size);
        // SAFETY: in bounds (checked); the kernel wrote these bytes before posting the
        // completion that named this buffer, and does not touch it again until given back.
        unsafe { std::slice::from_raw_parts(self.memory.add(usize::from(bid) * self.size), len) }
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
        self.free += 1;
        // SAFETY: the tail field lives in the shared ring memory; the release store orders the
        // entry's writes before the kernel can see it.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    /// The kernel took a buffer (a receive completion named it).
    fn taken(&mut self) {
        self.free -= 1;
    }
}

impl Ring {
    /// Notes that a completion carried buffer `bid` out of the ring.
    pub fn took_buffer(&mut self) {
        self.bufs.taken();
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
