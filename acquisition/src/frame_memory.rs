//! How the process allocator treats frame-sized buffers (glibc only; elsewhere these calls do nothing).
//!
//! libzmq `malloc`s every message it receives or sends, and frames are hundreds of KiB to tens of MiB. With
//! glibc's defaults such a block is `mmap`ed fresh, or taken from a heap that is trimmed back to the kernel
//! as soon as more than a little is free, so each frame's pages are faulted in and zeroed by the kernel again:
//! measured on the ingest bench at 512² × 5,000 frames, 4.8 M page faults, and 18% more CPU time than with
//! the buffers kept (0.48 M faults). [`keep_frame_buffers`] keeps freed frame buffers in the heap for reuse,
//! up to a bound the caller gives (the receiver passes its queue's byte bound, the most it ever holds), so
//! memory stays bounded by what the pipeline holds at its peak anyway.
//!
//! The settings are process-wide. Other processes can be given the same with [`GLIBC_TUNABLES_VAR`] and
//! [`glibc_tunables`] (the ingest bench does this for its Python peer, so the comparison stays fair).

/// The largest block glibc may take from the heap instead of `mmap` (its upper limit on 64-bit).
pub const HEAP_BLOCK_MAX: usize = 32 << 20;

/// The environment variable through which glibc reads these settings at start-up.
pub const GLIBC_TUNABLES_VAR: &str = "GLIBC_TUNABLES";

/// The free heap kept for reuse for a pipeline that holds at most `retain_bytes` of frames.
fn trim_threshold(retain_bytes: u64) -> i32 {
    let want = retain_bytes.saturating_add(HEAP_BLOCK_MAX as u64);
    i32::try_from(want).unwrap_or(i32::MAX)
}

/// Frame buffers up to [`HEAP_BLOCK_MAX`] come from the heap, and up to `retain_bytes` (plus one largest
/// block) of freed heap is kept for the next frames instead of being returned to the kernel. Returns whether
/// the allocator took the settings (false on a non-glibc target).
pub fn keep_frame_buffers(retain_bytes: u64) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; both values are in the documented ranges.
        unsafe {
            let a = libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCK_MAX as i32);
            let b = libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold(retain_bytes));
            a == 1 && b == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = retain_bytes;
        false
    }
}

/// The `GLIBC_TUNABLES` value that gives another process the settings of [`keep_frame_buffers`].
pub fn glibc_tunables(retain_bytes: u64) -> String {
    format!("glibc.malloc.mmap_threshold={HEAP_BLOCK_MAX}:glibc.malloc.trim_threshold={}", trim_threshold(retain_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_heap_is_the_bound_plus_one_largest_block_and_saturates() {
        assert_eq!(trim_threshold(256 << 20), (256 << 20) + (32 << 20));
        assert_eq!(trim_threshold(u64::MAX), i32::MAX);
        assert_eq!(glibc_tunables(0), "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=33554432");
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_settings() {
        assert!(keep_frame_buffers(64 << 20));
    }
}
