//! Counts the process's live heap bytes, so a runaway script can be stopped by a memory budget.
//!
//! Rhai's own size limits re-measure a whole nested value after every change to it, which
//! makes building a 10,000-element list of maps quadratic (a minute instead of milliseconds).
//! Counting allocations is constant time per allocation; the engine's progress callback
//! compares the count with the budget between operations. It must stay a thin wrapper over
//! the underlying allocator: no locking, no allocation of its own.
//!
//! Underneath is mimalloc rather than glibc's malloc: a run allocates many small maps from
//! several threads, and glibc's per-thread arenas doubled the peak resident memory of a
//! 10,000-PR run for the same live heap. Transparent huge pages stay on: without them a
//! 10,000-PR replay peaks 10% lower, but the many more page faults made a 1,000-PR run slower
//! (docs/performance.md).

use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to mimalloc unchanged and only keeps a count.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = MiMalloc.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = MiMalloc.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        MiMalloc.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = MiMalloc.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                LIVE_BYTES.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                LIVE_BYTES.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Heap bytes currently allocated by the whole process.
pub fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}
