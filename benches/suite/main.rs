//! The benchmark suite: every performance figure measured against a baseline in the same run.
//!
//! One binary (`cargo bench --bench suite -- NAME...`; `scripts/bench.sh` is the front end that
//! also installs the baselines) rather than one per benchmark: each links all of DataFusion, and
//! seven of them cost minutes of linking and gigabytes of disk in every CI run. `scripts/bench.sh`
//! still runs each benchmark in a process of its own, so resident-memory figures start clean.
//! Each module documents what it measures and its baseline, and rewrites only its own section
//! of `docs/benchmarks.md` (or of `target/bench-quick.md` with `HEADWATER_BENCH_QUICK=1`).

/// The allocator the server binary uses (`src/main.rs`), so in-process figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
#[path = "../../tests/common/mariadb.rs"]
mod mariadb;
mod postgres;
mod report;
#[path = "../../tests/common/tpch.rs"]
mod tpch_data;

mod freshness;
mod kafka_source;
mod memory;
mod mysql_source;
mod recovery;
mod serving;
mod sink;
mod tables;
mod tpch;
mod view_restart;
mod views;
mod windows;

/// Every benchmark, in the order a full run takes them.
const BENCHMARKS: &[(&str, fn())] = &[
    ("mysql_source", mysql_source::main),
    ("views", views::main),
    ("windows", windows::main),
    ("tpch", tpch::main),
    ("freshness", freshness::main),
    ("serving", serving::main),
    ("memory", memory::main),
    ("recovery", recovery::main),
    ("sink", sink::main),
    ("kafka_source", kafka_source::main),
    ("tables", tables::main),
];

fn main() {
    headwater::alloc::tune();
    // `cargo bench` passes `--bench`; `cargo test --bench` passes nothing; names select.
    let names: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for name in &names {
        if !BENCHMARKS.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = BENCHMARKS.iter().map(|(n, _)| *n).collect();
            eprintln!("unknown benchmark {name}; one of: {}", known.join(" "));
            std::process::exit(2);
        }
    }
    for (name, main) in BENCHMARKS {
        if names.is_empty() || names.iter().any(|n| n == name) {
            println!("== benchmark {name}");
            main();
            // scripts/bench.sh checks for this line: a benchmark that silently ran nothing fails.
            println!("== benchmark {name} done");
        }
    }
}
