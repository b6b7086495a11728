//! Checkpoint cost and restart time against the size of the state, in the same run:
//! a keyed table of `HEADWATER_BENCH_ROWS` rows (default 1M; 4 columns) in the real store
//! (sled under a temporary data directory, through `CheckpointedStore`).
//!
//! - Incremental checkpoint: commit updates to N random rows (N = 100, 1k, 10k), then time the
//!   checkpoint. Baseline: a full checkpoint writing every row (what a non-incremental design
//!   writes each time), timed the same way.
//! - Restart: reopen the data directory and load the table (what start-up does). Baseline: a
//!   raw scan of the same keys in sled (the floor for reading the state back).
//!
//! Run: `scripts/bench.sh recovery` (release). Results go to `docs/benchmarks.md`.

use crate::report;

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use headwater::dataflow::{ApplyMode, ChangeBatch};
use headwater::state::fjall_store::FjallStore;
use headwater::state::{commit, keys, CheckpointedStore, SledStore, StateStore, TableState};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("status", DataType::Utf8, true),
    ]))
}

fn rows(ids: &[i64], salt: i64) -> ChangeBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i * 7919 + salt) % 10_000).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i * 31 + salt) % 1000).collect::<Vec<_>>())),
        Arc::new(StringArray::from(
            ids.iter().map(|i| ["new", "paid", "shipped"][(i % 3) as usize]).collect::<Vec<_>>(),
        )),
    ];
    let data = RecordBatch::try_new(schema(), columns).unwrap();
    ChangeBatch { weights: vec![1; data.num_rows()], data, mode: ApplyMode::Upsert }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Figures {
    full_ms: f64,
    /// (rows changed, median ms, min, max, bytes)
    incremental: Vec<(usize, f64, f64, f64, usize)>,
    restart_s: f64,
    scan_s: f64,
}

type Open = fn(&std::path::Path) -> Arc<dyn StateStore>;

fn measure(name: &str, n: i64, open: Open) -> Figures {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = Arc::new(CheckpointedStore::new(open(&dir)));
    let table = TableState::new(1, "orders", schema(), Some(vec![0])).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100_000) {
        commit(store.as_ref(), &[(&table, &rows(chunk, 0))]).unwrap();
    }
    let t = Instant::now();
    store.checkpoint().unwrap();
    let full_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("{name}: full checkpoint of {n} rows: {full_ms:.0} ms");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut incremental = Vec::new();
    for changed in [100usize, 1_000, 10_000] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for round in 0..7 {
            let ids: Vec<i64> = (0..changed).map(|_| (next() % n as u64) as i64).collect();
            commit(store.as_ref(), &[(&table, &rows(&ids, round + 1))]).unwrap();
            let t = Instant::now();
            store.checkpoint().unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = store.stats().last_bytes;
        }
        let min = times.iter().cloned().fold(f64::MAX, f64::min);
        let max = times.iter().cloned().fold(0.0, f64::max);
        let ms = median(times);
        println!("{name}: checkpoint after {changed} changed rows: {ms:.2} ms (min {min:.2}, max {max:.2})");
        incremental.push((changed, ms, min, max, bytes));
    }
    drop(table);
    drop(store);
    let mut restart = Vec::new();
    let mut scan = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let durable = open(&dir);
        let table = TableState::new(1, "orders", schema(), Some(vec![0])).unwrap();
        table.load(durable.as_ref()).unwrap();
        assert_eq!(table.row_count(), n);
        restart.push(t.elapsed().as_secs_f64());
        drop(table);
        let t = Instant::now();
        assert_eq!(durable.scan_prefix(&keys::table_rows(1)).unwrap().len() as i64, n);
        scan.push(t.elapsed().as_secs_f64());
    }
    let (restart_s, scan_s) = (median(restart), median(scan));
    println!("{name}: restart (open + load {n} rows) {restart_s:.2}s; raw scan {scan_s:.2}s");
    Figures { full_ms, incremental, restart_s, scan_s }
}

pub fn main() {
    let n = report::rows(1_000_000, 20_000) as i64;
    let stores: [(&str, Open); 2] =
        [("sled", |d| Arc::new(SledStore::open(d).unwrap())), ("fjall", |d| Arc::new(FjallStore::open(d).unwrap()))];
    let mut lines = Vec::new();
    let mut restarts = Vec::new();
    for (name, open) in stores {
        let f = measure(name, n, open);
        for (changed, ms, min, max, bytes) in &f.incremental {
            lines.push(format!(
                "| {name} | {changed} of {n} | {ms:.2} ms ({min:.2}–{max:.2}) | {bytes} | {:.0} ms | {:.0}× |",
                f.full_ms,
                f.full_ms / ms
            ));
        }
        restarts.push(format!(
            "| {name} | {:.0} ms | {:.2} s | {:.2} s | {:.2}× |",
            f.full_ms,
            f.restart_s,
            f.scan_s,
            f.restart_s / f.scan_s
        ));
    }
    let body = format!(
        "## Checkpoints and restart\n\n\
         `scripts/bench.sh recovery` (release; `HEADWATER_BENCH_ROWS`, default 1M). A keyed table of {n} \
         rows (4 columns) in a real store under a temporary data directory, through `CheckpointedStore`, for \
         each candidate store (sled is the one in use; fjall is measured behind the same `StateStore` trait); \
         7 rounds per size, median (min–max).\n\n\
         | store | rows changed since the last checkpoint | incremental checkpoint | bytes written | baseline: \
         full checkpoint of all rows | ratio |\n|---|---|---|---|---|---|\n{}\n\n\
         | store | first checkpoint of {n} rows | restart: open + load every row | baseline: raw scan of the \
         same rows | restart / scan |\n|---|---|---|---|---|\n{}\n\n\
         Checkpoint cost grows with what changed, not with the state. Restart time grows with the state (the \
         tables are served from memory, so they are read back whole); after it, the binlog since the last \
         checkpoint is replayed (at most `--checkpoint-interval` of upstream changes) and each materialized \
         view is recomputed from its inputs (see the view figures above for recompute times).",
        lines.join("\n"),
        restarts.join("\n")
    );
    report::write_section("recovery", &body);
}
