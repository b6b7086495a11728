//! Checkpoint cost and restart time against the size of the state, in the same run:
//! a keyed table of `HEADWATER_BENCH_ROWS` rows (default 1M; 4 columns) in the real store
//! under a temporary data directory, through `CheckpointedStore`: sled (format 1), fjall
//! with every row in it (format 2), fjall with table images (format 3, what new data
//! directories get; `state::image`).
//!
//! - Incremental checkpoint: commit updates to N random rows (N = 100, 1k, 10k), then time the
//!   checkpoint. Baseline: the first checkpoint, which writes every row (what a
//!   non-incremental design writes each time), timed the same way.
//! - Restart: reopen the data directory and load the table (what start-up does), after those
//!   changes. Baselines: a raw scan of the rows the store holds (the floor for reading them
//!   back through it), and the same restart without images.
//!
//! Run: `scripts/bench.sh recovery` (release). Results go to `docs/benchmarks.md`.

use crate::report;

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use headwater::change::{ApplyMode, ChangeBatch};
use headwater::dataflow::Dataflow;
use headwater::sql::provider::LocalTables;
use headwater::state::checkpoint::ImageCut;
use headwater::state::datadir::{DataDir, FORMAT_FJALL};
use headwater::state::fjall_store::FjallStore;
use headwater::state::table::PinnedRows;
use headwater::state::{keys, CheckpointedStore, SledStore, StateStore, TableState, WriteBatch};

/// The one table, imaged when due (single-threaded here, so any point is a cut).
struct One(Arc<TableState>);

impl ImageCut for One {
    fn cut(&self, take: &mut dyn FnMut() -> bool, images: bool) -> Vec<(Arc<TableState>, PinnedRows)> {
        if !take() || !images || !self.0.image_due() {
            return Vec::new();
        }
        self.0.mark_imaged();
        vec![(self.0.clone(), self.0.pin())]
    }
}

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
    /// Rows the store held for the table at the restart (all, or the delta since the image).
    stored: usize,
}

type Open = fn(&std::path::Path) -> CheckpointedStore;

fn measure(name: &str, n: i64, open: Open) -> Figures {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = Arc::new(open(&dir));
    let table = Arc::new(TableState::new(1, "orders", schema(), Some(vec![0])).unwrap());
    let cut: Arc<dyn ImageCut> = Arc::new(One(table.clone()));
    store.set_image_cut(cut);
    // Commits go the way the server's do, through the dataflow (no view reads the table).
    let dataflow = Dataflow::new(store.clone(), Arc::new(LocalTables));
    let commit = |change| dataflow.commit(&[(&table, &change)], WriteBatch::default());
    for chunk in (0..n).collect::<Vec<_>>().chunks(100_000) {
        commit(rows(chunk, 0)).unwrap();
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
            commit(rows(&ids, round + 1)).unwrap();
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
    // The dataflow holds the store (and its data directory's lock) too.
    drop(dataflow);
    drop(store);
    let mut restart = Vec::new();
    let mut scan = Vec::new();
    let mut stored = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let store = open(&dir);
        let table = TableState::new(1, "orders", schema(), Some(vec![0])).unwrap();
        table.load(&store).unwrap();
        assert_eq!(table.row_count(), n);
        restart.push(t.elapsed().as_secs_f64());
        drop(table);
        let t = Instant::now();
        stored = store.scan_prefix(&keys::table_rows(1)).unwrap().len();
        scan.push(t.elapsed().as_secs_f64());
    }
    let (restart_s, scan_s) = (median(restart), median(scan));
    println!(
        "{name}: restart (open + load {n} rows, {stored} of them in the store) {restart_s:.3}s; raw scan {scan_s:.3}s"
    );
    Figures { full_ms, incremental, restart_s, scan_s, stored }
}

pub fn main() {
    let n = report::rows(1_000_000, 20_000) as i64;
    let stores: [(&str, Open); 3] = [
        ("sled (format 1)", |d| CheckpointedStore::new(Arc::new(SledStore::open(d).unwrap()))),
        ("fjall, every row in the store (format 2)", |d| {
            CheckpointedStore::new(Arc::new(FjallStore::open_in(DataDir::open(d, FORMAT_FJALL).unwrap()).unwrap()))
        }),
        ("fjall + table images (format 3)", |d| CheckpointedStore::open(d).unwrap()),
    ];
    let figures: Vec<(&str, Figures)> = stores.into_iter().map(|(name, open)| (name, measure(name, n, open))).collect();
    let without_images =
        figures.iter().find(|(name, _)| name.contains("format 2")).map_or(f64::NAN, |(_, f)| f.restart_s);
    let mut lines = Vec::new();
    let mut restarts = Vec::new();
    for (name, f) in figures {
        for (changed, ms, min, max, bytes) in &f.incremental {
            lines.push(format!(
                "| {name} | {changed} of {n} | {ms:.2} ms ({min:.2}–{max:.2}) | {bytes} | {:.0} ms | {:.0}× |",
                f.full_ms,
                f.full_ms / ms
            ));
        }
        restarts.push(format!(
            "| {name} | {:.0} ms | {:.3} s | {} | {:.3} s | {:.2}× |",
            f.full_ms,
            f.restart_s,
            f.stored,
            f.scan_s,
            without_images / f.restart_s
        ));
    }
    let body = format!(
        "## Checkpoints and restart\n\n\
         `scripts/bench.sh recovery` (release; `HEADWATER_BENCH_ROWS`, default 1M). A keyed table of {n} \
         rows (4 columns) in a real store under a temporary data directory, through `CheckpointedStore`: sled \
         (format 1), fjall holding every row (format 2), fjall with table images (format 3, what new data \
         directories get: `docs/operations.md`, \"Table images\"). The first checkpoint writes all rows; then \
         7 rounds per size of updates to random rows, each followed by a checkpoint, median (min–max).\n\n\
         | store | rows changed since the last checkpoint | incremental checkpoint | bytes written | baseline: \
         first checkpoint (all rows) | ratio |\n|---|---|---|---|---|---|\n{}\n\n\
         The restart below follows those rounds (77,700 row updates since the first checkpoint: with images, the \
         table is its image plus the rows changed since, which the store holds). Median of 3.\n\n\
         | store | first checkpoint of {n} rows | restart: open + load every row | rows read from the store | raw \
         scan of those rows | restart vs format 2 |\n|---|---|---|---|---|---|\n{}\n\n\
         Checkpoint cost grows with what changed, not with the state. A restart reads every row once (the \
         tables are served from memory): with images, sequentially from one file per table plus what changed \
         since it from the store (at most a quarter of the table); after it, the binlog since the last \
         checkpoint is replayed (at most `--checkpoint-interval` of upstream changes). Materialized views are \
         loaded the same way, results and operator state (\"Views across a restart\" below).",
        lines.join("\n"),
        restarts.join("\n")
    );
    report::write_section("recovery", &body);
    report::write_section("view-restart", &crate::view_restart::measure());
}
