//! Counts the process's live heap bytes, so a runaway script can be stopped by a memory budget.
//!
//! Rhai's own size limits re-measure a whole nested value after every change to it, which
//! makes building a 10,000-element list of maps quadratic (a minute instead of milliseconds).
//! Counting allocations is constant time per allocation; the engine's progress callback
//! compares the count with the budget between operations. It must stay a thin wrapper over
//! the underlying allocator: no locking, no allocation of its own.
//!
//! Underneath is jemalloc. A run allocates many small maps from several threads, and the
//! allocator decides how much of what is freed stays resident: glibc's per-thread arenas
//! doubled a 10,000-PR run's peak for the same live heap, and mimalloc (with or without
//! transparent huge pages) kept 60-90 MB more than the live heap. jemalloc returns pages
//! freed for 100 ms: a 10,000-PR run peaks at about 177 MiB instead of 221-243 MiB, in the
//! same time. The price is page faults (mimalloc used huge pages), about 0.1 s of system time
//! in a 10,000-PR replay on a quiet machine (docs/performance.md, round F-G).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use tikv_jemallocator::Jemalloc;

/// jemalloc's build-time options, read when it starts: freed pages go back to the system after
/// 100 ms instead of 10 s (a run's big transient, parsing its scenario, is gone by then).
/// Setting `_RJEM_MALLOC_CONF` in the environment overrides it, for experiments.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static libc::c_char> =
    // SAFETY: a NUL-terminated static string, never written.
    Some(unsafe { &*(c"dirty_decay_ms:100".as_ptr()) });

pub struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to jemalloc unchanged and only keeps a count.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = Jemalloc.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = Jemalloc.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Jemalloc.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = Jemalloc.realloc(ptr, layout, new_size);
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
