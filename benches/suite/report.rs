//! Shared by the benchmarks: run sizes (full or `--quick`), statistics over repeated runs,
//! and the report. Each benchmark owns a marked section of `docs/benchmarks.md` and replaces
//! only that section, so running one benchmark keeps the others' figures. A quick run
//! (`HEADWATER_BENCH_QUICK=1`, what `scripts/bench.sh --quick` and the test command set)
//! writes to `target/bench-quick.md` instead: tiny sizes and debug builds say nothing about
//! speed, they only keep the benchmarks from rotting.
#![allow(dead_code)]

use std::fmt;

/// True in a `--quick` run.
pub fn quick() -> bool {
    std::env::var("HEADWATER_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// `HEADWATER_BENCH_ROWS` if set, else `quick` in a quick run and `full` otherwise.
pub fn rows(full: u64, quick_rows: u64) -> u64 {
    std::env::var("HEADWATER_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick() {
        quick_rows
    } else {
        full
    })
}

/// `full` repetitions, or `quick_runs` in a quick run.
pub fn runs(full: usize, quick_runs: usize) -> usize {
    if quick() {
        quick_runs
    } else {
        full
    }
}

/// Median, minimum and maximum of repeated measurements.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        assert!(!values.is_empty(), "no measurements");
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Stats { median, min: v[0], max: v[n - 1], runs: n }
    }

    /// The value at quantile `q` (0..=1) of `values` (nearest rank).
    pub fn quantile(values: &[f64], q: f64) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }
}

impl fmt::Display for Stats {
    /// `median (min–max)`, with as many decimals as the precision asks (default 0).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = f.precision().unwrap_or(0);
        if self.runs == 1 {
            write!(f, "{:.p$}", self.median)
        } else {
            write!(f, "{:.p$} ({:.p$}–{:.p$})", self.median, self.min, self.max)
        }
    }
}

/// The machine the figures come from: CPU model, cores, memory.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!("{cores} cores ({model}), {:.0} GiB", mem_kib as f64 / (1024.0 * 1024.0))
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    // mimalloc returns freed pages to the OS after a delay, at its next allocator call: a
    // reading right after a step would count memory already freed. Collect first.
    // SAFETY: mi_collect has no preconditions; it only frees memory mimalloc owns.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Replaces (or appends) the section `name` of the report with `body`: `docs/benchmarks.md`,
/// or `target/bench-quick.md` in a quick run.
pub fn write_section(name: &str, body: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = if quick() { root.join("target/bench-quick.md") } else { root.join("docs/benchmarks.md") };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let updated = match (text.find(&start), text.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{section}{}", &text[..s], &text[e + end.len()..]),
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(&path, updated).unwrap();
    println!("wrote section {name} of {}", path.display());
}
