//! A global allocator that forwards to the system's and calls a counting function on every
//! allocation and reallocation, for the tests that prove a path allocates nothing. Each such
//! test binary installs it with its own counter:
//! `#[global_allocator] static GLOBAL: Counting = Counting(count);`
//!
//! [`Gate`] is such a counter for a window of time: `count` counts only between `open` and
//! `close`; [`count_this_thread`] counts each thread's own (read by
//! [`this_threads_allocations`]).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Allocations counted while the gate is open, by any thread that calls [`Gate::count`].
pub struct Gate {
    open: AtomicBool,
    counted: AtomicU64,
}

impl Gate {
    pub const fn new() -> Gate {
        Gate {
            open: AtomicBool::new(false),
            counted: AtomicU64::new(0),
        }
    }

    /// One allocation, counted if the gate is open.
    pub fn count(&self) {
        if self.open.load(Ordering::Relaxed) {
            self.counted.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// Allocations counted so far, over every time the gate was open.
    pub fn counted(&self) -> u64 {
        self.counted.load(Ordering::SeqCst)
    }
}

thread_local! {
    // Per thread: the test harness's own threads allocate while a test runs.
    static THREADS_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// One allocation, counted for the calling thread.
pub fn count_this_thread() {
    THREADS_ALLOCATIONS.with(|n| n.set(n.get() + 1));
}

/// The calling thread's allocations so far (those [`count_this_thread`] counted).
pub fn this_threads_allocations() -> u64 {
    THREADS_ALLOCATIONS.with(Cell::get)
}
