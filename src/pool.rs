//! Buffers of one size kept per core for reuse, lent to connections only while they have
//! bytes to hold, so that an idle connection costs no buffer and a busy one allocates nothing.

use std::cell::RefCell;

/// A free list of equally sized `Vec<u8>` buffers.
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    size: usize,
    keep: usize,
}

impl BufferPool {
    /// A pool of `size`-byte buffers keeping at most `keep` of them when returned.
    pub fn new(size: usize, keep: usize) -> BufferPool {
        BufferPool {
            free: RefCell::new(Vec::with_capacity(keep)),
            size,
            keep,
        }
    }

    /// An empty buffer with at least `size` capacity.
    pub fn take(&self) -> Vec<u8> {
        let mut buf = self
            .free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size));
        buf.clear();
        buf
    }

    /// Returns a buffer; it is freed if the pool is full or it has grown past twice the size.
    /// A buffer without capacity (nothing was lent) is ignored.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep && buf.capacity() <= 2 * self.size {
            free.push(buf);
        }
    }
}
