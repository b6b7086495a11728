//! Memory limits for queries: one statement may hold at most `--query-memory-limit` in
//! DataFusion's tracked operator memory (hash tables, sort buffers, aggregate states such as
//! `array_agg`'s), and all statements together at most `--memory-limit`. Past either, the
//! statement fails with 53200 "out of memory" (operators that can spill — sorts — spill
//! first); the server and the other sessions go on (issue 30: `array_agg` over 1e9 rows drove
//! the process past 6 GB).
//!
//! Each session gets its own pool (a session runs one statement at a time, so the session's
//! pool is the statement's), charged against the server's shared one as well.

use std::sync::Arc;

use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The limits a server runs with.
#[derive(Debug, Clone)]
pub struct MemoryLimits {
    /// Bytes one statement may hold.
    pub query: usize,
    /// The pool every statement's memory also counts against.
    pub server: Arc<GreedyMemoryPool>,
}

impl MemoryLimits {
    /// Limits of `query` bytes per statement and `server` bytes for all of them.
    pub fn new(query: usize, server: usize) -> Self {
        MemoryLimits { query: query.min(server), server: Arc::new(GreedyMemoryPool::new(server)) }
    }

    /// A pool for one session.
    pub fn session_pool(&self) -> Arc<dyn MemoryPool> {
        Arc::new(SessionPool { own: GreedyMemoryPool::new(self.query), server: self.server.clone() })
    }
}

/// A session's pool: its own limit, and the server's.
#[derive(Debug)]
struct SessionPool {
    own: GreedyMemoryPool,
    server: Arc<GreedyMemoryPool>,
}

impl std::fmt::Display for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "session pool ({} of {} bytes; server: {})", self.own.reserved(), self.limit(), self.server)
    }
}

impl SessionPool {
    fn limit(&self) -> usize {
        match self.own.memory_limit() {
            MemoryLimit::Finite(n) => n,
            _ => usize::MAX,
        }
    }
}

impl MemoryPool for SessionPool {
    fn name(&self) -> &str {
        "headwater-session"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.own.register(consumer);
        self.server.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.own.unregister(consumer);
        self.server.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.own.grow(reservation, additional);
        self.server.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.own.shrink(reservation, shrink);
        self.server.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> datafusion::error::Result<()> {
        // Big reservations also look at the whole process (tables, views, other work), so a
        // statement stops before the server is out of memory even when the pools have room.
        if additional >= 1 << 20 {
            if let Err(e) = crate::alloc::check_process_memory("the statement") {
                return Err(datafusion::error::DataFusionError::ResourcesExhausted(e.to_string()));
            }
        }
        self.own.try_grow(reservation, additional)?;
        if let Err(e) = self.server.try_grow(reservation, additional) {
            self.own.shrink(reservation, additional);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.own.memory_limit()
    }
}

/// Memory this process may use: the machine's (`/proc/meminfo`), or its cgroup's limit when
/// that is lower (a container: `memory.max` of cgroup v2, `memory.limit_in_bytes` of v1).
/// `None` where neither is readable.
pub fn physical_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    let machine = kib * 1024;
    let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<usize>().ok())
        .min();
    Some(cgroup.map_or(machine, |c| c.min(machine)))
}

/// Parses a size: `512MB`, `4GB`, `1.5GiB`, `1073741824`, or `25%` of `total`.
pub fn parse_size(text: &str, total: usize) -> Result<usize, String> {
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| format!("bad percentage {text:?}"))?;
        if !(0.0..=100.0).contains(&p) || p == 0.0 {
            return Err(format!("{text:?}: a percentage must be above 0 and at most 100"));
        }
        return Ok((total as f64 * p / 100.0) as usize);
    }
    let upper = t.to_ascii_uppercase();
    let digits_end = upper.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(upper.len());
    let (number, unit) = upper.split_at(digits_end);
    let n: f64 = number.parse().map_err(|_| format!("bad size {text:?} (examples: 512MB, 4GB, 25%)"))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024.0 * 1024.0,
        "G" | "GB" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TB" | "TIB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} in {text:?} (use B, KB, MB, GB, TB or %)")),
    };
    let bytes = n * scale;
    if bytes < 1.0 {
        return Err(format!("{text:?} is no memory at all"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512MB", 0), Ok(512 << 20));
        assert_eq!(parse_size("1.5gib", 0), Ok(3 << 29));
        assert_eq!(parse_size("25%", 1000), Ok(250));
        assert_eq!(parse_size("4096", 0), Ok(4096));
        assert!(parse_size("lots", 0).is_err() && parse_size("0%", 10).is_err() && parse_size("3PB", 0).is_err());
    }

    #[test]
    fn a_session_is_held_to_its_own_limit_and_the_servers() {
        let limits = MemoryLimits::new(100, 150);
        let (a, b) = (limits.session_pool(), limits.session_pool());
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        assert!(ra.try_grow(100).is_ok());
        assert!(ra.try_grow(1).is_err(), "past the session's own limit");
        assert!(rb.try_grow(60).is_err(), "past the server's: 100 + 60 > 150");
        assert!(rb.try_grow(50).is_ok());
        drop(ra);
        assert!(rb.try_grow(50).is_ok(), "a finished statement's memory is free again");
        assert_eq!(limits.server.reserved(), 100);
    }
}
