//! Snapshot and binlog catch-up throughput of the MySQL source, each against a baseline
//! measured in the same run on the same MariaDB (started by the benchmark):
//! - snapshot of a 1M-row, 10-column table vs a plain `SELECT *` stream through mysql_async;
//! - binlog catch-up of 1M row events (a 1M-row UPDATE in 100 transactions) vs reading and
//!   decoding the same binlog with mysql_async alone, `mariadb-binlog --verbose` and
//!   python-mysql-replication; Headwater applies it to the table and one aggregate view.
//!
//! Run: `scripts/bench.sh mysql_source` (release). `HEADWATER_BENCH_ROWS` changes the size.
//! Results are printed and written to `docs/benchmarks.md`.

use crate::common;
use crate::mariadb;
use crate::report;

use std::time::{Duration, Instant};

use futures::StreamExt;
use headwater::{Config, Server};
use mariadb::MariaDb;
use mysql_async::prelude::Queryable;
use report::Stats;

async fn wait_streaming(c: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let rows = c.simple_query("SELECT state FROM hw_catalog.source_tables").await.unwrap();
        let done = rows
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("streaming")));
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "snapshot did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let rows = report::rows(1_000_000, 20_000);
    let runs = report::runs(3, 1);
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(format!(
        "SET GLOBAL max_binlog_size = 1073741824; CREATE DATABASE bench; \
         CREATE TABLE bench.t (id BIGINT PRIMARY KEY, a INT, b INT, c BIGINT, d DECIMAL(12,2), e DOUBLE, \
         f VARCHAR(32), g VARCHAR(32), h DATETIME, i DATE); \
         USE bench; INSERT INTO bench.t SELECT seq, seq % 1000, seq % 7, seq * 3, seq / 100, seq / 7, \
         CONCAT('name-', seq), MD5(seq), '2024-01-01 00:00:00' + INTERVAL seq SECOND, '2024-01-01' + INTERVAL (seq % 365) DAY \
         FROM seq_1_to_{rows}"
    ))
    .await
    .unwrap();
    println!("table ready: {rows} rows");

    // Baseline: a plain SELECT * stream through mysql_async (after one warm-up pass).
    let mut baseline = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let mut conn = db.root().await;
        let mut result = conn.query_iter("SELECT * FROM bench.t").await.unwrap();
        let mut n = 0u64;
        let mut stream = result.stream::<mysql_async::Row>().await.unwrap().unwrap();
        while let Some(r) = stream.next().await {
            std::hint::black_box(r.unwrap());
            n += 1;
        }
        assert_eq!(n, rows);
        if run > 0 {
            baseline.push(rows as f64 / start.elapsed().as_secs_f64());
        }
    }
    let baseline = Stats::of(&baseline);
    println!("baseline SELECT * stream: {baseline} rows/s");

    // Headwater: CREATE SOURCE until the table is streaming, with the default chunk size
    // (HEADWATER_BENCH_CHUNK_SIZE tries another).
    let chunk: usize = std::env::var("HEADWATER_BENCH_CHUNK_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(8192);

    // Reference (not a baseline): the snapshot's own queries — key-ordered chunks of `chunk`
    // rows, each `WHERE id > last ORDER BY id LIMIT n` in one transaction — read through
    // mysql_async and dropped. The part of the snapshot's time that is reading.
    let mut chunked = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let mut conn = db.root().await;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.unwrap();
        let (mut n, mut last) = (0u64, None::<i64>);
        loop {
            let filter = last.map(|l| format!("WHERE id > {l} ")).unwrap_or_default();
            let rows: Vec<mysql_async::Row> =
                conn.query(format!("SELECT * FROM bench.t {filter}ORDER BY id LIMIT {chunk}")).await.unwrap();
            n += rows.len() as u64;
            let Some(row) = rows.last() else { break };
            last = Some(row.get(0).unwrap());
            if rows.len() < chunk {
                break;
            }
        }
        conn.query_drop("COMMIT").await.unwrap();
        assert_eq!(n, rows);
        if run > 0 {
            chunked.push(rows as f64 / start.elapsed().as_secs_f64());
        }
    }
    let chunked = Stats::of(&chunked);
    println!("reference: the snapshot's chunked queries alone: {chunked} rows/s");
    let mut snapshot = Vec::new();
    let mut keep = None;
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&Config::new("127.0.0.1:0", dir.path().join("d"))).await.unwrap();
        let c = common::client(server.local_addr().port()).await;
        c.batch_execute(&db.connection_sql("up")).await.unwrap();
        let start = Instant::now();
        c.batch_execute(&format!(
            "CREATE SOURCE s FROM MYSQL CONNECTION up FOR TABLES (bench.t) WITH (SERVER_ID = {}, CHUNK_SIZE = {chunk})",
            100 + run
        ))
        .await
        .unwrap();
        wait_streaming(&c).await;
        snapshot.push(rows as f64 / start.elapsed().as_secs_f64());
        if run + 1 == runs {
            c.batch_execute(VIEW).await.unwrap();
            keep = Some((server, dir));
        } else {
            server.shutdown().await.unwrap();
        }
    }
    let snapshot = Stats::of(&snapshot);
    println!("Headwater snapshot: {snapshot} rows/s ({:.2}x the baseline)", snapshot.median / baseline.median);

    // Binlog catch-up: stop Headwater, update every row upstream, restart and time the catch-up.
    let (server, dir) = keep.unwrap();
    server.shutdown().await.unwrap();
    let before = mariadb_position(&mut my).await;
    let start = Instant::now();
    let batch = rows / 100;
    for k in 0..100 {
        my.query_drop(format!("UPDATE bench.t SET a = a + 1 WHERE id > {} AND id <= {}", k * batch, (k + 1) * batch))
            .await
            .unwrap();
    }
    let produce = rows as f64 / start.elapsed().as_secs_f64();
    println!("MariaDB produced the updates at {produce:.0} row events/s");

    // Baseline 1: read and decode the same binlog range with mysql_async alone.
    let mut decode = Vec::new();
    for run in 0..runs {
        decode.push(mysql_async_decode(&db, &before, rows, 4242 + run as u32).await);
    }
    let decode = Stats::of(&decode);
    println!("mysql_async read + decode alone: {decode} row events/s");

    // Baseline 2: mariadb-binlog decoding the binlog files into row images (--verbose).
    let mut tool = Vec::new();
    for _ in 0..runs {
        tool.push(mariadb_binlog(&mut my, &before, rows).await);
    }
    let tool = Stats::of(&tool);
    println!("mariadb-binlog --verbose: {tool} row events/s");

    // Baseline 3: python-mysql-replication reading the same range (one run: it is slow).
    let python = python_replication(db.port, &before, rows);
    println!("python-mysql-replication: {python:.0} row events/s");

    // Headwater: each run restarts a copy of the stopped server's data directory, which is
    // 1 table + 1 aggregate view behind, and waits until it has applied everything.
    let expected: i64 = my.query_first("SELECT CAST(SUM(a) AS SIGNED) FROM bench.t").await.unwrap().unwrap();
    let mut catch_up = Vec::new();
    let mut restart = Vec::new();
    for run in 0..runs {
        let copy = dir.path().join(format!("copy{run}"));
        let ok = std::process::Command::new("cp").arg("-a").arg(dir.path().join("d")).arg(&copy).status().unwrap();
        assert!(ok.success(), "cp of the data directory failed");
        let start = Instant::now();
        let server = Server::start(&Config::new("127.0.0.1:0", &copy)).await.unwrap();
        let c = common::client(server.local_addr().port()).await;
        c.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '600s'").await.unwrap();
        let total: i64 = c.query_one("SELECT sum(total)::BIGINT FROM t_by_b", &[]).await.unwrap().get(0);
        catch_up.push(rows as f64 / start.elapsed().as_secs_f64());
        assert_eq!(total, expected, "the view disagrees with MariaDB after the catch-up");
        server.shutdown().await.unwrap();
        // The same restart with nothing left to apply: what the catch-up figure includes
        // besides applying the binlog (loading the checkpoint, rebuilding the view).
        let start = Instant::now();
        let server = Server::start(&Config::new("127.0.0.1:0", &copy)).await.unwrap();
        let c = common::client(server.local_addr().port()).await;
        c.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '600s'").await.unwrap();
        c.query_one("SELECT count(*) FROM t_by_b", &[]).await.unwrap();
        restart.push(start.elapsed().as_secs_f64());
        server.shutdown().await.unwrap();
    }
    let catch_up = Stats::of(&catch_up);
    let restart = Stats::of(&restart);
    println!(
        "Headwater binlog catch-up: {catch_up} row events/s ({:.2}x mysql_async decode alone)",
        catch_up.median / decode.median
    );

    let report = format!(
        "Every figure below is compared with a baseline run \
         in the same process against the same MariaDB 10.11; {runs} runs each, median (min–max). Reproduce with:\n\n\
         ```sh\nscripts/bench.sh mysql_source             # HEADWATER_BENCH_ROWS=1000000 by default\n```\n\n\
         Machine: {}.\n\n\
         ## MySQL source ({rows} rows, 10 columns: BIGINT, 2×INT, BIGINT, DECIMAL(12,2), DOUBLE, 2×VARCHAR(32), DATETIME, DATE)\n\n\
         | what | rows/s | vs baseline |\n|---|---|---|\n\
         | baseline: `SELECT *` streamed through mysql_async | {baseline} | 1.00× |\n\
         | reference: the snapshot's own chunked queries ({chunk} rows each, key order, one transaction) read through mysql_async, nothing else | {chunked} | {:.2}× |\n\
         | Headwater snapshot (CREATE SOURCE until streaming; decode to Arrow, apply, checkpoint to the store) | {snapshot} | {:.2}× |\n\n\
         ## Binlog catch-up ({rows} row events: a {rows}-row UPDATE in 100 transactions, MariaDB produced them at {produce:.0} row events/s)\n\n\
         | what | row events/s | vs baseline |\n|---|---|---|\n\
         | baseline: mysql_async reading + decoding the binlog (no apply) | {decode} | 1.00× |\n\
         | baseline: `mariadb-binlog --verbose` decoding the binlog files | {tool} | {:.2}× |\n\
         | baseline: python-mysql-replication reading the binlog (one run) | {python:.0} | {:.2}× |\n\
         | Headwater catch-up into the table + one aggregate view (`{VIEW_SQL}`), restart included | {catch_up} | {:.2}× (vs python-mysql-replication: {:.1}×) |\n\n\
         The catch-up is timed from starting a stopped server (a copy of its data directory) until a query with \
         `real_time_recency` sees every change; the same restart with nothing to apply takes {restart:.2} s.\n",
        report::machine(),
        chunked.median / baseline.median,
        snapshot.median / baseline.median,
        tool.median / decode.median,
        python / decode.median,
        catch_up.median / decode.median,
        catch_up.median / python,
    );
    report::write_section("mysql_source", &report);
}

const VIEW_SQL: &str = "SELECT b, count(*) AS n, sum(a) AS total FROM t GROUP BY b";
const VIEW: &str = "CREATE MATERIALIZED VIEW t_by_b AS SELECT b, count(*) AS n, sum(a) AS total FROM t GROUP BY b";

/// Row events/s of mysql_async reading and decoding `rows` row events from `from`.
async fn mysql_async_decode(db: &MariaDb, from: &(String, u64), rows: u64, server_id: u32) -> f64 {
    let mut conn = db.root().await;
    conn.query_drop("SET @mariadb_slave_capability=4").await.unwrap();
    let request = mysql_async::BinlogStreamRequest::new(server_id)
        .with_filename(from.0.as_bytes())
        .with_pos(from.1)
        .with_non_blocking();
    let mut stream = conn.get_binlog_stream(request).await.unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while let Some(ev) = stream.next().await {
        let ev = ev.unwrap();
        if let Ok(Some(mysql_async::binlog::events::EventData::RowsEvent(re))) = ev.read_data() {
            let tme = stream.get_tme(re.table_id()).unwrap();
            for row in re.rows(tme) {
                let (b, a) = row.unwrap();
                std::hint::black_box((b, a));
                n += 1;
            }
        }
        if n >= rows {
            break;
        }
    }
    assert_eq!(n, rows, "mysql_async saw {n} of {rows} row events");
    n as f64 / start.elapsed().as_secs_f64()
}

/// Row events/s of `mariadb-binlog --verbose` decoding the binlog files from `from` on (its
/// output is read and the `### UPDATE` row images counted, so nothing is skipped).
async fn mariadb_binlog(my: &mut mysql_async::Conn, from: &(String, u64), rows: u64) -> f64 {
    let base: String = my.query_first("SELECT @@log_bin_basename").await.unwrap().unwrap();
    let dir = std::path::Path::new(&base).parent().unwrap().to_path_buf();
    let logs: Vec<(String, u64)> = my.query("SHOW BINARY LOGS").await.unwrap();
    let files: Vec<std::path::PathBuf> =
        logs.into_iter().filter(|(name, _)| name.as_str() >= from.0.as_str()).map(|(name, _)| dir.join(name)).collect();
    let exe = ["mariadb-binlog", "mysqlbinlog"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok())
        .expect("mariadb-binlog not found: apt-get install mariadb-client");
    let start = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(["--verbose", "--base64-output=DECODE-ROWS", &format!("--start-position={}", from.1)])
        .args(&files)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let n =
        std::io::BufRead::split(out, b'\n').filter(|l| l.as_ref().is_ok_and(|l| l.starts_with(b"### UPDATE"))).count();
    assert!(child.wait().unwrap().success(), "mariadb-binlog failed");
    assert_eq!(n as u64, rows, "mariadb-binlog decoded {n} of {rows} row events");
    rows as f64 / start.elapsed().as_secs_f64()
}

/// Row events/s of python-mysql-replication (benches/baselines/python_replication.py) in the
/// venv `scripts/bench.sh` prepares (or `HEADWATER_BENCH_PYTHON`).
fn python_replication(port: u16, from: &(String, u64), rows: u64) -> f64 {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("HEADWATER_BENCH_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target/bench-venv/bin/python"));
    let out = std::process::Command::new(&python)
        .arg(root.join("benches/baselines/python_replication.py"))
        .args([port.to_string(), from.0.clone(), from.1.to_string(), rows.to_string()])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {}: {e}; scripts/bench.sh creates that venv with mysql-replication", python.display())
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python-mysql-replication failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let mut parts = text.split_whitespace();
    let n: f64 = parts.next().unwrap().parse().unwrap();
    let seconds: f64 = parts.next().unwrap().parse().unwrap();
    n / seconds
}

async fn mariadb_position(c: &mut mysql_async::Conn) -> (String, u64) {
    let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}
