//! Counts each thread's live heap bytes, so a runaway script can be stopped by a memory budget.
//!
//! Rhai's own size limits re-measure a whole nested value after every change to it, which
//! makes building a 10,000-element list of maps quadratic (a minute instead of milliseconds).
//! Counting allocations is constant time per allocation; the engine's progress callback
//! compares the script thread's count with the budget between operations. It must stay a thin
//! wrapper over the underlying allocator: no locking, no atomics, no allocation of its own.
//!
//! The count is per thread (bytes a thread allocated minus bytes it freed), not one process
//! total: a shared atomic counter was written by every allocation of every thread, and with
//! the script, the scheduler and a journal reader allocating at once its cache line bounced
//! between the cores on each of millions of allocations. The budget is the script's, and the
//! script's own allocations are what grow in a runaway script.
//!
//! Underneath is jemalloc. A run allocates many small maps from several threads, and the
//! allocator decides how much of what is freed stays resident: glibc's per-thread arenas
//! doubled a 10,000-PR run's peak for the same live heap, and mimalloc (with or without
//! transparent huge pages) kept 60-90 MB more than the live heap. jemalloc returns pages
//! freed for 100 ms: a 10,000-PR run peaks at about 177 MiB instead of 221-243 MiB, in the
//! same time. The price is page faults (mimalloc used huge pages), about 0.1 s of system time
//! in a 10,000-PR replay on a quiet machine (docs/performance.md, round F-G).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use tikv_jemallocator::Jemalloc;

/// jemalloc's build-time options, read when it starts: freed pages go back to the system after
/// 100 ms instead of 10 s (a run's big transient, parsing its scenario, is gone by then), and
/// every thread allocates from one arena. With an arena per thread (jemalloc's default), what
/// the scenario-parsing thread freed stayed resident in its own arena: 183 MiB at the peak of
/// a 10,000-PR run against 164 MiB with one, in the same time (threads still allocate from
/// their own caches). Setting `_RJEM_MALLOC_CONF` in the environment overrides it, for
/// experiments.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static libc::c_char> =
    // SAFETY: a NUL-terminated static string, never written.
    Some(unsafe { &*(c"dirty_decay_ms:100,narenas:1".as_ptr()) });

pub struct CountingAllocator;

/// The largest of jemalloc's small size classes; larger requests get whole 4 KiB pages.
const SMALL_MAX: usize = 14 * 1024;
const PAGE: usize = 4096;

/// The bytes jemalloc sets aside for a request of `size` bytes: small requests are rounded up
/// to a size class (16-byte steps up to 128, then four classes per doubling), larger ones to
/// whole pages. Counting requests instead fell short of what is resident by the rounding,
/// 12-16% for a script's map nodes (456 and 552 bytes, held in 512 and 640).
#[inline]
pub fn allocated_size(size: usize) -> usize {
    if size <= 8 {
        8
    } else if size <= 128 {
        (size + 15) & !15
    } else if size <= SMALL_MAX {
        // floor(log2(size - 1)) >= 7 here; classes between 2^k and 2^(k+1) are 2^(k-2) apart.
        let lg = usize::BITS - 1 - (size - 1).leading_zeros();
        let step = 1usize << (lg - 2);
        (size + step - 1) & !(step - 1)
    } else {
        size.saturating_add(PAGE - 1) & !(PAGE - 1)
    }
}

/// [`allocated_size`] of a layout: an alignment above jemalloc's 16 bytes rounds the size up
/// to it first.
#[inline]
fn allocated(layout: &Layout) -> isize {
    allocated_size(layout.size().max(layout.align())) as isize
}

thread_local! {
    /// Bytes this thread allocated minus bytes it freed. Const-initialised and without a
    /// destructor, so reading it never allocates (this runs inside the allocator).
    static THREAD_LIVE: Cell<isize> = const { Cell::new(0) };
}

#[inline]
fn count(delta: isize) {
    // `try_with`: a thread being torn down may still free memory.
    let _ = THREAD_LIVE.try_with(|live| live.set(live.get().wrapping_add(delta)));
}

// SAFETY: every method forwards to jemalloc unchanged and only keeps a count.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = Jemalloc.alloc(layout);
        if !p.is_null() {
            count(allocated(&layout));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = Jemalloc.alloc_zeroed(layout);
        if !p.is_null() {
            count(allocated(&layout));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Jemalloc.dealloc(ptr, layout);
        count(-allocated(&layout));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = Jemalloc.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // SAFETY: `realloc`'s contract: the new size with the old alignment is a layout.
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            count(allocated(&new_layout) - allocated(&layout));
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Heap bytes the calling thread has allocated and not freed, as jemalloc holds them (size
/// classes, [`allocated_size`]); negative when it freed more than it allocated (memory another
/// thread made).
pub fn thread_live_bytes() -> isize {
    THREAD_LIVE.try_with(Cell::get).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{allocated_size, thread_live_bytes};

    #[test]
    fn counts_what_jemalloc_sets_aside() {
        let sizes = (1..16500).chain((16500..1 << 20).step_by(997)).chain([(1 << 20) + 1, 33 << 20, (64 << 20) - 3]);
        for size in sizes {
            let block = vec![0u8; size];
            // SAFETY: a live allocation of this allocator.
            let usable = unsafe { tikv_jemallocator::usable_size(block.as_ptr()) };
            assert_eq!(allocated_size(size), usable, "{size} bytes");
        }
    }

    #[test]
    fn counts_what_this_thread_allocates_and_frees() {
        let before = thread_live_bytes();
        let block = vec![0u8; 1 << 20];
        assert!(thread_live_bytes() - before >= 1 << 20);
        // Another thread's allocations are its own.
        std::thread::spawn(|| std::hint::black_box(vec![0u8; 1 << 22])).join().unwrap();
        assert!(thread_live_bytes() - before < 1 << 21);
        drop(block);
        assert!(thread_live_bytes() - before < 1 << 10);
    }
}
