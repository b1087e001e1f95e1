//! The script's memory bound: a counting global allocator that the program embedding the engine installs
//! (the `beamline` binary does), and the check the engine makes between operations.
//!
//! Rhai's own limits bound each string, array and map, but not their sum: a loop that stores a near-limit
//! string in each of many map entries or array slots reaches gigabytes. With [`CountingAllocator`] installed
//! the engine stops the script once the process holds more than `[engine] max_memory_mb`; without it
//! ([`in_use`] is `None`) only Rhai's per-value limits apply.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting the bytes the process holds. Install it with
/// `#[global_allocator] static ALLOC: scripting::memory::CountingAllocator = scripting::memory::CountingAllocator;`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAllocator;

// SAFETY: every call forwards to `System` with the same layout; the counters do not affect allocation.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
            if !INSTALLED.load(Ordering::Relaxed) {
                INSTALLED.store(true, Ordering::Relaxed);
            }
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
            INSTALLED.store(true, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_add(new_size, Ordering::Relaxed);
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

/// Bytes the process holds through [`CountingAllocator`]; `None` when it is not the global allocator.
pub fn in_use() -> Option<usize> {
    INSTALLED.load(Ordering::Relaxed).then(|| IN_USE.load(Ordering::Relaxed))
}

/// The reason the engine gives when it stops a script for its memory (recognised by the diagnostics).
pub const STOP_REASON: &str = "memory limit";
