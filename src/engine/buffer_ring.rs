//! The provided-buffer ring a core's multishot receives fill: `count` buffers the kernel
//! picks from for each receive, each lent to the engine as a [`Received`] guard that gives
//! it back when dropped. The memory is mapped once and unmapped only when the ring and every
//! guard are done with it, and the ring lets go of it only with no receive in flight
//! (`ring`).

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use io_uring::{types, IoUring};

/// The buffer group every multishot receive of a core takes its buffers from.
pub const RECV_GROUP: u16 = 0;

/// A receive buffer lent to the engine: its bytes, until the guard is dropped and the
/// buffer goes back to the kernel.
pub struct Received {
    bufs: Rc<BufRing>,
    bid: u16,
    len: usize,
}

impl Received {
    /// Buffer `bid` of `bufs`, `len` bytes filled.
    ///
    /// # Safety
    ///
    /// The buffer must come from a receive completion reaped from the ring, of `len` bytes,
    /// and be taken once per completion.
    pub(super) unsafe fn new(bufs: Rc<BufRing>, bid: u16, len: usize) -> Received {
        assert!(usize::from(bid) < bufs.count && len <= bufs.size);
        Received { bufs, bid, len }
    }
}

impl Received {
    /// The bytes the kernel put there.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the kernel wrote these bytes before posting the completion naming the
        // buffer, and does not touch it again until it is given back (on drop); the guard
        // is the only one for this buffer (`Ring::received`).
        unsafe { self.bufs.slice(self.bid, self.len) }
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.bufs.give_back(self.bid);
    }
}

/// The provided-buffer ring: `count` buffers of `size` bytes the kernel picks from for each
/// receive, handed back by the driver as soon as their bytes are parsed or copied.
pub(super) struct BufRing {
    /// The ring of buffer descriptors, shared with the kernel (page-aligned, `count` entries).
    ring: *mut types::BufRingEntry,
    ring_bytes: usize,
    /// The buffers themselves, `count * size` bytes.
    memory: *mut u8,
    memory_bytes: usize,
    pub(super) count: usize,
    pub(super) size: usize,
    /// Our copy of the ring's tail; published to the kernel after each give-back.
    tail: Cell<u16>,
}

impl BufRing {
    pub(super) fn new(uring: &IoUring, count: u16, size: usize) -> Result<BufRing, String> {
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
        let bufs = BufRing {
            ring: ring.cast(),
            ring_bytes,
            memory,
            memory_bytes,
            count: count_usize,
            size,
            tail: Cell::new(0),
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
    /// The buffer must be lent to the caller alone (a [`Received`] guard) and not given back.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, bid: u16, len: usize) -> &mut [u8] {
        assert!(usize::from(bid) < self.count && len <= self.size);
        // SAFETY: in bounds (checked); the caller holds the buffer alone (see above).
        unsafe {
            std::slice::from_raw_parts_mut(self.memory.add(usize::from(bid) * self.size), len)
        }
    }

    pub(super) fn give_back(&self, bid: u16) {
        let mask = self.count - 1;
        let tail = self.tail.get();
        // SAFETY: the index is masked into the ring; the entry at the tail is ours until
        // the tail is published past it (one thread: the core's).
        unsafe {
            let entry = &mut *self.ring.add(usize::from(tail) & mask);
            entry.set_addr(self.memory.add(usize::from(bid) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        // SAFETY: the tail field lives in the shared ring memory; the release store orders the
        // entry's writes before the kernel can see it.
        unsafe {
            let shared =
                types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*shared).store(tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both mappings were made in `new` with these lengths; the last guard is
        // gone, and the ring dropped its share only with no receive in flight.
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
