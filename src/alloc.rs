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
//!
//! It also holds the process's memory ceiling ([`set_process_limit`], `--process-memory-limit`):
//! the work that can make memory grow without bound from a small statement — a view's join
//! emitting pairs, `unnest`, recursive rounds, a statement's operators — checks the process's
//! resident memory as it goes ([`MemoryCheck`]) and stops with 53200 past the ceiling, so that
//! one `CREATE MATERIALIZED VIEW` over a cross join fails instead of the kernel killing the
//! server (issue 30: such a view drove a server with `--memory-limit 2GB` to 20 GB).

use std::sync::atomic::{AtomicUsize, Ordering};

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

/// The process's resident-memory ceiling in bytes (`usize::MAX`: none).
static PROCESS_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets the process's memory ceiling. Process-wide (resident memory is the process's): with
/// several servers in one process (tests) the last one set wins.
pub fn set_process_limit(bytes: usize) {
    PROCESS_LIMIT.store(bytes, Ordering::Relaxed);
}

/// The process's memory ceiling, if one is set.
pub fn process_limit() -> Option<usize> {
    Some(PROCESS_LIMIT.load(Ordering::Relaxed)).filter(|&l| l != usize::MAX)
}

/// The process's resident memory, from `/proc/self/statm` (`None` where there is none).
pub fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * usize::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096))
}

/// The error of work stopped at the ceiling: 53200, naming what stopped.
pub fn out_of_memory(what: &str, resident: usize, limit: usize) -> crate::error::Error {
    crate::error::Error::OutOfMemory(format!(
        "out of memory: {what} stopped with the server at {} MB of its {} MB --process-memory-limit",
        resident >> 20,
        limit >> 20
    ))
}

/// `Err` when the process is past its ceiling.
pub fn check_process_memory(what: &str) -> crate::error::Result<()> {
    let Some(limit) = process_limit() else { return Ok(()) };
    match resident_bytes() {
        Some(resident) if resident > limit => Err(out_of_memory(what, resident, limit)),
        _ => Ok(()),
    }
}

/// Checks the process's memory every [`MemoryCheck::EVERY`] units of work (rows, pairs): a
/// read of `/proc/self/statm` costs a few microseconds, a row a few nanoseconds.
#[derive(Debug, Default)]
pub struct MemoryCheck {
    units: usize,
}

impl MemoryCheck {
    /// Units of work between two checks.
    pub const EVERY: usize = 1 << 16;

    /// Counts `n` units of work done by `what`; `Err` (53200) past the ceiling.
    pub fn tick(&mut self, n: usize, what: &str) -> crate::error::Result<()> {
        self.units += n;
        if self.units < Self::EVERY {
            return Ok(());
        }
        self.units = 0;
        check_process_memory(what)
    }
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

    #[test]
    fn resident_memory_is_read() {
        let resident = super::resident_bytes().expect("/proc/self/statm");
        assert!(resident > 1 << 20, "{resident}");
        assert!(super::check_process_memory("a test").is_ok() || super::process_limit().is_some());
    }
}
