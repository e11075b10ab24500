//! Buffers of one size kept per core for reuse, lent to connections only while they have
//! bytes to hold, so that an idle connection costs no buffer and a busy one allocates nothing.
//!
//! A pool keeps what comes back up to a bound, and gives back to the allocator, once per
//! report tick, the buffers that stayed unused through the whole tick: a burst's buffers do
//! not stay with the core after it.
//!
//! The boxes that hold a send in flight ([`Flight`]) are pooled the same way: a connection
//! holds one only while it sends.

/// Output and partial-input buffers kept for reuse per core; more are freed when returned.
/// Enough for every connection of a busy core to have a send in flight without a buffer
/// being allocated and freed per response (at 500 connections, 256 were not).
const POOLED_BUFFERS: usize = 2048;

/// Capacity an output buffer starts with: a batch of small responses, or a 4 KiB file with
/// its head. A larger batch grows it (up to the session's high-water mark and a response),
/// and a buffer grown past twice this is freed rather than pooled.
const OUTPUT_BUFFER_BYTES: usize = 16 * 1024;

/// Wide output buffers kept for reuse per core: a relayed body gathers up to the session's
/// high-water mark (and one more read) before it is sent, and a buffer grown to that
/// size by doubling from `OUTPUT_BUFFER_BYTES` would copy its bytes three times over and
/// be freed after each send.
const POOLED_WIDE: usize = 64;

/// The capacity of a wide output buffer: the high-water mark and a TLS record's plaintext
/// (the most one read of an upstream adds), with room for chunk framing.
pub(super) const WIDE_BUFFER_BYTES: usize = crate::http::session::OUTPUT_HIGH_WATER + 20 * 1024;

/// File chunk buffers (`static.chunk_bytes` each) kept for reuse per core.
const POOLED_CHUNKS: usize = 32;

/// A send in flight: from `buf`, of which `sent` bytes are gone; `since` is when it was
/// queued or last made progress (for the write timeout).
#[derive(Debug, Default)]
pub(super) struct Flight {
    pub(super) buf: Vec<u8>,
    pub(super) sent: usize,
    /// `buf` is a file chunk (it goes back to the chunk pool).
    pub(super) chunk: bool,
    pub(super) since: u64,
}

/// What a pool keeps for reuse, up to a bound, and the count that lets it give back what a
/// whole tick did not need.
struct FreeList<T> {
    free: Vec<T>,
    keep: usize,
    /// The fewest items the list held since the last trim: that many were not needed.
    low: usize,
}

impl<T> FreeList<T> {
    fn new(keep: usize) -> FreeList<T> {
        FreeList {
            free: Vec::new(),
            keep,
            low: 0,
        }
    }

    /// An item kept for reuse, if there is one.
    fn pop(&mut self) -> Option<T> {
        let item = self.free.pop();
        self.low = self.low.min(self.free.len());
        item
    }

    /// Keeps `item` for reuse, unless the list is full (it is then dropped).
    fn push(&mut self, item: T) {
        if self.free.len() < self.keep {
            self.free.push(item);
        }
    }

    /// Whether another item would be kept.
    fn has_room(&self) -> bool {
        self.free.len() < self.keep
    }

    /// Frees the items that stayed in the list since the last trim. Returns the bytes given
    /// back, as `bytes` counts each.
    fn trim(&mut self, bytes: impl Fn(&T) -> usize) -> usize {
        let spare = self.low.min(self.free.len());
        let freed = self.free.drain(..spare).map(|item| bytes(&item)).sum();
        if self.free.is_empty() {
            self.free = Vec::new();
        }
        self.low = self.free.len();
        freed
    }
}

/// A free list of equally sized `Vec<u8>` buffers, and one of wide buffers (of
/// `WIDE_BUFFER_BYTES`) for the pools that lend them.
pub(super) struct BufferPool {
    free: FreeList<Vec<u8>>,
    size: usize,
    wide: FreeList<Vec<u8>>,
}

impl BufferPool {
    /// A pool of `size`-byte buffers keeping at most `keep` of them when returned.
    pub(super) fn new(size: usize, keep: usize) -> BufferPool {
        BufferPool::with_wide(size, keep, 0)
    }

    /// The same, keeping also up to `keep_wide` wide buffers (see `widen`).
    pub(super) fn with_wide(size: usize, keep: usize, keep_wide: usize) -> BufferPool {
        BufferPool {
            free: FreeList::new(keep),
            size,
            wide: FreeList::new(keep_wide),
        }
    }

    /// Gives `buf` a wide buffer's capacity (`WIDE_BUFFER_BYTES`), its bytes kept, unless
    /// it has that much already: for output that is to gather a large body before it is
    /// sent, and would otherwise grow by doubling.
    pub(super) fn widen(&mut self, buf: &mut Vec<u8>) {
        if buf.capacity() >= WIDE_BUFFER_BYTES {
            return;
        }
        let mut wide = self
            .wide
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(WIDE_BUFFER_BYTES));
        wide.clear();
        wide.extend_from_slice(buf);
        self.give(std::mem::replace(buf, wide));
    }

    /// An empty buffer with at least `size` capacity.
    pub(super) fn take(&mut self) -> Vec<u8> {
        let mut buf = self
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size));
        buf.clear();
        buf
    }

    /// Lends `buf` a buffer unless it holds one already (has capacity).
    pub(super) fn lend(&mut self, buf: &mut Vec<u8>) {
        if buf.capacity() == 0 {
            *buf = self.take();
        }
    }

    /// Returns a buffer; it is freed if the pool is full, if it has grown past twice the
    /// size (a wide one, past twice its own, goes to the wide list), or if it is smaller
    /// than the size (made to fit a few bytes: a group message's frame). A buffer without
    /// capacity (nothing was lent) is ignored.
    pub(super) fn give(&mut self, buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity >= self.size && capacity <= 2 * self.size {
            self.free.push(buf);
        } else if (WIDE_BUFFER_BYTES..=2 * WIDE_BUFFER_BYTES).contains(&capacity) {
            self.wide.push(buf);
        }
    }

    /// Frees the buffers that stayed in the pool since the last trim. Returns the bytes
    /// given back.
    pub(super) fn trim(&mut self) -> usize {
        self.free.trim(Vec::capacity) + self.wide.trim(Vec::capacity)
    }
}

/// A free list of boxes of one type, each reset to its default when given back.
pub(super) struct BoxPool<T> {
    free: FreeList<Box<T>>,
}

impl<T: Default> BoxPool<T> {
    /// A pool keeping at most `keep` boxes when given back.
    pub(super) fn new(keep: usize) -> BoxPool<T> {
        BoxPool {
            free: FreeList::new(keep),
        }
    }

    /// A box holding `T::default()`.
    pub(super) fn take(&mut self) -> Box<T> {
        self.free.pop().unwrap_or_default()
    }

    /// Gives a box back (reset to the default); it is freed if the pool is full.
    pub(super) fn give(&mut self, mut boxed: Box<T>) {
        if self.free.has_room() {
            *boxed = T::default();
            self.free.push(boxed);
        }
    }

    /// Frees the boxes that stayed in the pool since the last trim. Returns the bytes given
    /// back.
    pub(super) fn trim(&mut self) -> usize {
        self.free.trim(|_| std::mem::size_of::<T>())
    }
}

/// A core's pools.
pub(super) struct Buffers {
    /// Partial input: the tail of a request not yet complete (a whole head always fits).
    pub(super) reads: BufferPool,
    /// Responses on their way out.
    pub(super) writes: BufferPool,
    /// A large file's chunks on their way out.
    pub(super) chunks: BufferPool,
    /// The boxes of sends in flight.
    pub(super) flights: BoxPool<Flight>,
}

impl Buffers {
    /// Pools for input buffers of `read_bytes` and file chunks of `chunk_bytes`.
    pub(super) fn new(read_bytes: usize, chunk_bytes: usize) -> Buffers {
        Buffers {
            reads: BufferPool::new(read_bytes, POOLED_BUFFERS),
            writes: BufferPool::with_wide(OUTPUT_BUFFER_BYTES, POOLED_BUFFERS, POOLED_WIDE),
            chunks: BufferPool::new(chunk_bytes, POOLED_CHUNKS),
            flights: BoxPool::new(POOLED_BUFFERS),
        }
    }

    /// Trims every pool (see [`BufferPool::trim`]); returns the bytes given back.
    pub(super) fn trim(&mut self) -> usize {
        self.reads.trim() + self.writes.trim() + self.chunks.trim() + self.flights.trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_unused_for_a_whole_tick_are_given_back() {
        let mut pool = BufferPool::new(100, 10);
        let lent: Vec<_> = (0..8).map(|_| pool.take()).collect();
        for buf in lent {
            pool.give(buf);
        }
        // The burst is over: eight buffers wait, and none was needed since they came back.
        assert_eq!(pool.trim(), 0, "the first trim only starts the count");
        let one = pool.take();
        pool.give(one);
        assert_eq!(pool.trim(), 7 * 100);
        assert_eq!(pool.trim(), 100);
        assert!(pool.free.free.is_empty());
    }

    #[test]
    fn a_widened_buffer_keeps_its_bytes_and_is_pooled_apart() {
        let mut pool = BufferPool::with_wide(100, 10, 2);
        let mut buf = pool.take();
        buf.extend_from_slice(b"head");
        pool.widen(&mut buf);
        assert_eq!(buf, b"head");
        assert!(buf.capacity() >= WIDE_BUFFER_BYTES);
        assert_eq!(pool.free.free.len(), 1, "the narrow buffer went back");
        let ptr = buf.as_ptr();
        pool.give(buf);
        let mut again = pool.take();
        pool.widen(&mut again);
        assert_eq!(again.as_ptr(), ptr, "the wide buffer is reused");
        assert!(again.is_empty());
        // Nothing wide is kept by a pool that keeps none.
        let mut narrow = BufferPool::new(100, 10);
        narrow.give(again);
        assert!(narrow.wide.free.is_empty());
    }

    #[test]
    fn boxes_come_back_reset_and_those_unused_for_a_tick_are_freed() {
        let mut pool: BoxPool<u64> = BoxPool::new(10);
        let mut lent: Vec<_> = (0..3).map(|_| pool.take()).collect();
        *lent[0] = 7;
        for boxed in lent {
            pool.give(boxed);
        }
        assert_eq!(*pool.take(), 0, "a box comes back reset");
        assert_eq!(pool.trim(), 0, "the first trim only starts the count");
        assert_eq!(pool.trim(), 2 * 8);
        assert!(pool.free.free.is_empty());
    }
}
