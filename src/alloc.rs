//! Settings of the global allocator (mimalloc, chosen in `src/main.rs`).
//!
//! mimalloc gives freed memory back to the operating system after a delay (`purge_delay`,
//! 1 s in mimalloc 3). Headwater frees and allocates large buffers again and again: a table's
//! base run is rebuilt by each background merge (~100 MB for a 1M-row table), restart builds
//! every table's run, each commit builds Arrow batches and hash maps. Memory given back is
//! faulted in and zeroed by the kernel when it is used again, and in the binlog catch-up
//! benchmark that zeroing (`clear_page_erms` under huge-page faults) was about half of the
//! CPU time. [`tune`] keeps freed memory for 10 s instead — the decay jemalloc uses by
//! default — so a burst reuses its own memory, and an idle server still returns it.

/// mimalloc's `mi_option_purge_delay` (the same number in mimalloc 2 and 3).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before it goes back to the OS.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// Applies Headwater's allocator settings, unless the environment sets them
/// (`MIMALLOC_PURGE_DELAY` keeps its meaning). Call once, early in `main`; harmless when
/// mimalloc is linked but not the global allocator.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores the value in mimalloc's option table; it is safe
        // to call from any thread at any time.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS as _) };
    }
}

/// The purge delay in force, in milliseconds (-1: never).
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reads mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tune_sets_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            super::tune();
            assert_eq!(super::purge_delay_ms(), super::PURGE_DELAY_MS);
        }
    }
}
