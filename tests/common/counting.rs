//! A global allocator that forwards to the system's and calls a counting function on every
//! allocation and reallocation, for the tests that prove a path allocates nothing. Each such
//! test binary installs it with its own counter:
//! `#[global_allocator] static GLOBAL: Counting = Counting(count);`

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, with `.0` called before each allocation or reallocation.
pub struct Counting(pub fn());

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (self.0)();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (self.0)();
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (self.0)();
        System.realloc(ptr, layout, new_size)
    }
}
