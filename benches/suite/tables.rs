//! Many tables: one MySQL source over one MariaDB schema of N small tables (1,000 / 5,000 /
//! 10,000; 20 rows each), then a steady upstream load of single-row UPDATEs spread over all of
//! them at one total rate (5,000 transactions/s), the same at every N.
//!
//! Per N, each in a fresh process (so resident memory starts clean):
//! - how long `CREATE SOURCE ... FOR SCHEMAS` takes to return, and until every table streams;
//! - resident memory added by the source and its tables, per table;
//! - commit → visible latency (p50 / p99 / max) of the transactions that touch 200 probe
//!   tables, observed with a tap on each (called just before a commit is published to queries;
//!   the start is taken before the UPDATE is sent, so MariaDB's own commit is included). The
//!   first run is the cold one (right after the snapshot), the median of the next two beside;
//! - bytes the process writes to files per transaction during the load (journal and
//!   checkpoints), and the size of the progress record a transaction writes, beside the size
//!   the single-record layout before per-unit entries had for the same tables;
//! - how long `SELECT count(*) FROM hw_catalog.source_tables` takes.
//!
//! The baseline is the same load at 1,000 tables: a figure that grows with N is a cost per
//! captured table.
//!
//! Run: `scripts/bench.sh tables` (release). `HEADWATER_BENCH_TABLES=1000,5000` picks the sizes,
//! `HEADWATER_BENCH_TPS` the rate.

use crate::common;
use crate::mariadb;
use crate::report;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headwater::catalog::Namespace;
use headwater::state::keys;
use headwater::{Config, Server};
use mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use report::Stats;

const WRITERS: u64 = 8;
const PROBES: usize = 200;
/// Tables added by ALTER SOURCE during the last run.
const ADDED: usize = 500;
/// Set in the child process that measures one size.
const ONE: &str = "HEADWATER_BENCH_TABLES_ONE";

use common::LatencyClock as Clock;

/// The table transaction `seq` updates (a stride coprime with every size used spreads them).
fn table_of(seq: u64, n: usize) -> usize {
    (seq.wrapping_mul(7919) % n as u64) as usize
}

fn wchar() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("wchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Figures {
    tables: usize,
    create_returned_s: f64,
    all_streaming_s: f64,
    rss_per_table_kib: f64,
    rss_total_mib: f64,
    rates: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
    /// The largest time from MariaDB's answer to the client to visible, per run.
    max_after_ack: Vec<f64>,
    add_returned_s: f64,
    add_streaming_s: f64,
    add_p99: f64,
    add_max: f64,
    file_bytes_per_txn: f64,
    progress_record_bytes: usize,
    single_record_bytes: usize,
    source_tables_ms: f64,
}

pub fn main() {
    if let Ok(n) = std::env::var(ONE) {
        // The server's own runtime has deep stacks for deep plans (`src/main.rs`); so does this
        // one, which runs the server in process (a debug build's frames are large).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_stack_size(headwater::sql::STACK_BYTES)
            .build()
            .unwrap();
        let figures = rt.block_on(one(n.parse().expect("a table count")));
        println!("FIGURES {}", serde_json::to_string(&figures).unwrap());
        return;
    }
    let sizes: Vec<usize> = std::env::var("HEADWATER_BENCH_TABLES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().parse().expect("HEADWATER_BENCH_TABLES: numbers")).collect())
        .unwrap_or_else(|| if report::quick() { vec![50, 200] } else { vec![1_000, 5_000, 10_000] });
    let mut all = Vec::new();
    for n in sizes {
        // A process per size: resident memory starts clean, and nothing of the last size stays.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("tables")
            .env(ONE, n.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        assert!(out.status.success(), "the run with {n} tables failed");
        let line = stdout.lines().find_map(|l| l.strip_prefix("FIGURES ")).expect("the child printed its figures");
        all.push(serde_json::from_str::<Figures>(line).unwrap());
    }
    report_all(&all);
}

fn tps() -> u64 {
    std::env::var("HEADWATER_BENCH_TPS").ok().and_then(|v| v.parse().ok()).unwrap_or(if report::quick() {
        300
    } else {
        5_000
    })
}

async fn one(n: usize) -> Figures {
    let rows_per_table: u64 = 20;
    let tps = tps();
    let seconds: u64 = if report::quick() { 2 } else { 10 };
    let runs: u64 = 3;
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    // Upstream settings so MariaDB itself keeps up: no per-commit flush, tables in the shared
    // tablespace (creating 10,000 files takes minutes), every table kept open.
    my.query_drop(
        "SET GLOBAL innodb_flush_log_at_trx_commit = 2; SET GLOBAL sync_binlog = 0; \
         SET GLOBAL innodb_file_per_table = OFF; SET GLOBAL table_open_cache = 30000; \
         SET GLOBAL table_definition_cache = 30000; CREATE DATABASE many",
    )
    .await
    .unwrap();
    // -1: the first UPDATE (v = 0) changes its row (MariaDB logs no unchanged row).
    let values: String = (0..rows_per_table).map(|r| format!("({r}, -1)")).collect::<Vec<_>>().join(", ");
    let started = Instant::now();
    let mut creators = Vec::new();
    for w in 0..4 {
        let mut conn = db.root().await;
        let values = values.clone();
        creators.push(tokio::spawn(async move {
            let mut sql = String::new();
            for i in (w..n).step_by(4) {
                sql.push_str(&format!(
                    "CREATE TABLE many.t{i} (id INT PRIMARY KEY, v BIGINT NOT NULL); INSERT INTO many.t{i} VALUES {values};"
                ));
                if sql.len() > 64 * 1024 {
                    conn.query_drop(std::mem::take(&mut sql)).await.unwrap();
                }
            }
            if !sql.is_empty() {
                conn.query_drop(sql).await.unwrap();
            }
        }));
    }
    for c in creators {
        c.await.unwrap();
    }
    eprintln!("{n} tables created upstream in {:.1} s", started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&Config::new("127.0.0.1:0", dir.path().join("d"))).await.unwrap();
    let c = common::client(server.local_addr().port()).await;
    c.batch_execute(&db.connection_sql("up")).await.unwrap();
    let rss_before = report::rss_bytes();
    let started = Instant::now();
    c.batch_execute("CREATE SOURCE s FROM MYSQL CONNECTION up FOR SCHEMAS (many) WITH (SERVER_ID = 78)").await.unwrap();
    let create_returned_s = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let row = c
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'streaming'), count(*) FROM hw_catalog.source_tables",
                &[],
            )
            .await
            .unwrap();
        let (streaming, total): (i64, i64) = (row.get(0), row.get(1));
        if streaming as usize == n && total as usize == n {
            break;
        }
        assert!(Instant::now() < deadline, "{streaming} of {n} tables streaming after 30 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_streaming_s = started.elapsed().as_secs_f64();
    let rss_streaming = report::rss_bytes();
    eprintln!("{n} tables streaming after {all_streaming_s:.1} s");

    let t = Instant::now();
    let listed: i64 = c.query_one("SELECT count(*) FROM hw_catalog.source_tables", &[]).await.unwrap().get(0);
    let source_tables_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(listed as usize, n);

    // Probe tables, each with a tap.
    let engine = server.engine().clone();
    let per_run = tps * seconds;
    let total = per_run * (runs + 1);
    let clock = Arc::new(Clock::new(total));
    let seen = Arc::new(AtomicU64::new(0));
    let probes: Vec<usize> = (0..PROBES.min(n)).map(|j| j * n / PROBES.min(n)).collect();
    for (j, &i) in probes.iter().enumerate() {
        let state = common::table(&engine, &format!("t{i}"));
        // Column 1 (`v`) carries the transaction's sequence number.
        let tap = common::SequenceTap::new(state.id(), 1, clock.clone(), seen.clone());
        engine.dataflow().add_tap(u64::MAX - 100 - j as u64, Box::new(tap), &state).unwrap();
    }
    let probed: HashSet<usize> = probes.iter().copied().collect();

    let (mut rates, mut p50, mut p99, mut max) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut max_after_ack = Vec::new();
    let written_before = wchar();
    // Runs 0..runs measure the steady load; the last one adds ADDED tables to the source
    // while the load goes on (ALTER SOURCE ... ADD TABLE must not pause the others).
    let (mut add_returned_s, mut add_streaming_s, mut add_p99, mut add_max) = (0.0, 0.0, 0.0, 0.0);
    for r in 0..=runs {
        let adding = r == runs;
        if adding {
            let mut sql = String::new();
            for i in 0..ADDED {
                sql.push_str(&format!("CREATE TABLE many.n{i} (id INT PRIMARY KEY, v BIGINT NOT NULL); INSERT INTO many.n{i} VALUES {values};"));
            }
            my.query_drop(sql).await.unwrap();
        }
        let first = r * per_run;
        let expected = (first..first + per_run).filter(|&s| probed.contains(&table_of(s, n))).count() as u64;
        let seen_before = seen.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let mut conn = db.root().await;
            let clock = clock.clone();
            writers.push(tokio::spawn(async move {
                let mut i = w;
                while i < per_run {
                    let due = start + Duration::from_nanos(i * 1_000_000_000 / tps);
                    tokio::time::sleep_until(due.into()).await;
                    let seq = first + i;
                    clock.sent[seq as usize].store(clock.now(), Ordering::Relaxed);
                    let sql =
                        format!("UPDATE many.t{} SET v = {seq} WHERE id = {}", table_of(seq, n), seq % rows_per_table);
                    conn.query_drop(sql).await.unwrap();
                    clock.acked[seq as usize].store(clock.now(), Ordering::Relaxed);
                    i += WRITERS;
                }
            }));
        }
        if adding {
            tokio::time::sleep(Duration::from_secs(seconds / 4)).await;
            let list: Vec<String> = (0..ADDED).map(|i| format!("many.n{i}")).collect();
            let t = Instant::now();
            c.batch_execute(&format!("ALTER SOURCE s ADD TABLE {}", list.join(", "))).await.unwrap();
            add_returned_s = t.elapsed().as_secs_f64();
            loop {
                let streaming: i64 = c
                    .query_one("SELECT count(*) FROM hw_catalog.source_tables WHERE state = 'streaming'", &[])
                    .await
                    .unwrap()
                    .get(0);
                if streaming as usize == n + ADDED {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(600), "added tables not streaming after 600 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            add_streaming_s = t.elapsed().as_secs_f64();
        }
        for w in writers {
            w.await.unwrap();
        }
        let rate = per_run as f64 / start.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen.load(Ordering::Relaxed) < seen_before + expected {
            assert!(
                Instant::now() < deadline,
                "probe transactions missing after 300 s: {} of {expected} seen",
                seen.load(Ordering::Relaxed) - seen_before
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let since = |from: &[AtomicU64]| -> Vec<f64> {
            (first..first + per_run)
                .filter(|&s| probed.contains(&table_of(s, n)))
                .map(|s| {
                    let (a, b) =
                        (from[s as usize].load(Ordering::Relaxed), clock.visible[s as usize].load(Ordering::Relaxed));
                    b.saturating_sub(a) as f64 / 1e6
                })
                .collect()
        };
        let lat = since(&clock.sent);
        // The part after MariaDB answered the client (0 when the row was visible first).
        let after_ack = since(&clock.acked);
        let (a, b, m) = (Stats::quantile(&lat, 0.5), Stats::quantile(&lat, 0.99), Stats::quantile(&lat, 1.0));
        println!(
            "{n} tables, run {r}{}: {rate:.0} txn/s, {} probes, p50 {a:.2} ms, p99 {b:.2} ms, max {m:.2} ms, max after MariaDB answered {:.2} ms",
            if adding { " (adding tables)" } else { "" },
            lat.len(),
            Stats::quantile(&after_ack, 1.0),
        );
        if adding {
            (add_p99, add_max) = (b, m);
            continue;
        }
        rates.push(rate);
        p50.push(a);
        p99.push(b);
        max.push(m);
        max_after_ack.push(Stats::quantile(&after_ack, 1.0));
    }
    let file_bytes_per_txn = (wchar() - written_before) as f64 / total as f64;
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).chain((0..ADDED).map(|i| format!("n{i}"))).collect();
    for j in 0..probes.len() {
        engine.dataflow().remove_tap(u64::MAX - 100 - j as u64);
    }

    // Every table equals upstream in its sum of v (a fast wrong answer is worthless).
    c.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '120s'").await.unwrap();
    let (mut upstream, mut local) = (0i64, 0i64);
    for chunk in names.chunks(100) {
        let sums = |prefix: &str| {
            chunk.iter().map(|t| format!("SELECT SUM(v) AS s FROM {prefix}{t}")).collect::<Vec<_>>().join(" UNION ALL ")
        };
        let up: Option<i64> =
            my.query_first(format!("SELECT CAST(SUM(s) AS SIGNED) FROM ({}) x", sums("many."))).await.unwrap().unwrap();
        upstream += up.unwrap_or(0);
        let here: Option<i64> =
            c.query_one(&format!("SELECT sum(s)::BIGINT FROM ({}) x", sums("")), &[]).await.unwrap().get(0);
        local += here.unwrap_or(0);
    }
    assert_eq!(local, upstream, "the captured tables differ from upstream");

    // The progress record a transaction writes, and what the single-record layout wrote.
    let store = engine.catalog().store().clone();
    let id = engine.catalog().get(Namespace::Source, "s").expect("source s").entry.id;
    let head = store.get(&keys::source_progress(id)).unwrap().expect("a progress record");
    let position: serde_json::Value = serde_json::from_slice::<serde_json::Value>(&head).unwrap()["position"].clone();
    let mut streaming = Vec::new();
    let mut snapshot_at = serde_json::Map::new();
    for (k, v) in store.scan_prefix(&keys::source_progress_entries(id)).unwrap() {
        let rest = &k[keys::source_progress_entries(id).len()..];
        let name = String::from_utf8_lossy(&rest[2..]).to_string();
        match rest[0] {
            b's' => streaming.push(serde_json::Value::String(name)),
            b'a' => drop(snapshot_at.insert(name, serde_json::from_slice(&v).unwrap())),
            _ => {}
        }
    }
    let single = serde_json::json!({
        "position": position, "streaming": streaming, "snapshot_at": snapshot_at, "resume": {},
        "gtid": "0-1-100000", "new_shards": {}, "rejected_shards": {}, "failed": {}
    });
    let figures = Figures {
        tables: n,
        create_returned_s,
        all_streaming_s,
        rss_per_table_kib: rss_streaming.saturating_sub(rss_before) as f64 / n as f64 / 1024.0,
        rss_total_mib: rss_streaming as f64 / (1 << 20) as f64,
        rates,
        p50,
        p99,
        max,
        max_after_ack,
        add_returned_s,
        add_streaming_s,
        add_p99,
        add_max,
        file_bytes_per_txn,
        progress_record_bytes: head.len(),
        single_record_bytes: serde_json::to_vec(&single).unwrap().len(),
        source_tables_ms,
    };
    server.shutdown().await.unwrap();
    figures
}

fn report_all(all: &[Figures]) {
    let tps = tps();
    let mut rows = String::new();
    for f in all {
        let warm = |v: &[f64]| Stats::of(&v[1..]).median;
        rows.push_str(&format!(
            "| {} | {:.2} | {:.1} | {:.1} ({:.0} MiB) | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} / {:.1} / {:.1} / {:.1} | {:.0} | {} ({}) | {:.1} |\n",
            f.tables,
            f.create_returned_s,
            f.all_streaming_s,
            f.rss_per_table_kib,
            f.rss_total_mib,
            Stats::of(&f.rates).median,
            f.p50[0],
            warm(&f.p50),
            f.p99[0],
            warm(&f.p99),
            f.max[0],
            warm(&f.max),
            f.max_after_ack[0],
            warm(&f.max_after_ack),
            f.add_returned_s,
            f.add_streaming_s,
            f.add_p99,
            f.add_max,
            f.file_bytes_per_txn,
            f.progress_record_bytes,
            f.single_record_bytes,
            f.source_tables_ms,
        ));
    }
    let body = format!(
        "## Many tables: one source over thousands of tables\n\n\
         One MySQL source (`FOR SCHEMAS`) over N tables of 20 rows in MariaDB, then single-row \
         UPDATEs paced to {tps} transactions/s in all, spread over every table by {WRITERS} connections, \
         3 runs of {}s, then a fourth during which `ALTER SOURCE s ADD TABLE` adds 500 more tables. Latency: from sending an UPDATE to the commit that publishes it, for the \
         transactions that touch {PROBES} probe tables (a tap on each); **cold** is the first run after the \
         snapshot, warm the median of the other two. Each N in a fresh process. Progress record: what a \
         transaction writes of the source's progress now, and (in brackets) the single JSON record the \
         source wrote with every transaction before per-unit entries (same tables, computed). \
         Reproduce with `scripts/bench.sh tables` (`HEADWATER_BENCH_TABLES=1000,5000`, `HEADWATER_BENCH_TPS`). \
         Machine: {}.\n\n\
         | tables | CREATE SOURCE returns (s) | all streaming (s) | RSS per table KiB (total) | upstream txn/s | p50 ms cold / warm | p99 ms cold / warm | max ms cold / warm | max ms after MariaDB answered, cold / warm | ADD TABLE of 500 during load: returns s / all streaming s / p99 ms / max ms | file bytes written per txn | progress record bytes (before) | `source_tables` query ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n{rows}\n\
         Targets (issue 35): every table streaming within 60 s at 10,000 tables; p99 ≤ 50 ms at 5,000 \
         transactions/s.\n",
        if report::quick() { 2 } else { 10 },
        report::machine(),
    );
    println!("{body}");
    report::write_section("tables", &body);
}
