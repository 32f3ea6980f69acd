//! A global allocator that counts Rust allocations of 1 MiB or more, for the zero-copy
//! tests (each test binary that includes this module installs it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

const LARGE: usize = 1 << 20;
static LARGE_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

struct CountLargeAllocations;

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountLargeAllocations {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            LARGE_ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            LARGE_ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= LARGE {
            LARGE_ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountLargeAllocations = CountLargeAllocations;

/// Runs `f` and returns its result with the number of allocations of 1 MiB or more it made.
pub(crate) fn large_allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LARGE_ALLOCATIONS.load(Ordering::SeqCst);
    let result = f();
    (result, LARGE_ALLOCATIONS.load(Ordering::SeqCst) - before)
}
