//! Snapshot and binlog catch-up throughput of the MySQL source, each against a baseline
//! measured in the same run on the same MariaDB (started by the benchmark):
//! - snapshot of a 1M-row, 10-column table vs a plain `SELECT *` stream through mysql_async;
//! - binlog catch-up of 1M row events (a 1M-row UPDATE in 100 transactions) vs reading and
//!   decoding the same binlog with mysql_async alone, and vs MariaDB producing it.
//!
//! Run: `cargo bench --bench mysql_source` (release). `HEADWATER_BENCH_ROWS` changes the size.
//! Results are printed and written to `docs/benchmarks.md`.

#[path = "../tests/common/mariadb.rs"]
mod mariadb;
#[path = "report.rs"]
mod report;

use std::time::{Duration, Instant};

use futures::StreamExt;
use headwater::{Config, Server};
use mariadb::MariaDb;
use mysql_async::prelude::Queryable;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn client(port: u16) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=bench dbname=headwater"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

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

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let rows: u64 = std::env::var("HEADWATER_BENCH_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
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

    // Baseline: a plain SELECT * stream through mysql_async.
    let mut baseline = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut conn = db.root().await;
        let mut result = conn.query_iter("SELECT * FROM bench.t").await.unwrap();
        let mut n = 0u64;
        let mut stream = result.stream::<mysql_async::Row>().await.unwrap().unwrap();
        while let Some(r) = stream.next().await {
            r.unwrap();
            n += 1;
        }
        assert_eq!(n, rows);
        baseline.push(rows as f64 / start.elapsed().as_secs_f64());
    }
    let baseline = median(baseline);
    println!("baseline SELECT * stream: {baseline:.0} rows/s");

    // Headwater: CREATE SOURCE until the table is streaming.
    let mut snapshot = Vec::new();
    let mut keep = None;
    for run in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&Config::new("127.0.0.1:0", dir.path().join("d"))).await.unwrap();
        let c = client(server.local_addr().port()).await;
        c.batch_execute(&db.connection_sql("up")).await.unwrap();
        let start = Instant::now();
        c.batch_execute(&format!(
            "CREATE SOURCE s FROM MYSQL CONNECTION up FOR TABLES (bench.t) WITH (SERVER_ID = {}, CHUNK_SIZE = 8192)",
            100 + run
        ))
        .await
        .unwrap();
        wait_streaming(&c).await;
        snapshot.push(rows as f64 / start.elapsed().as_secs_f64());
        if run == 2 {
            keep = Some((server, dir));
        } else {
            server.shutdown().await.unwrap();
        }
    }
    let snapshot = median(snapshot);
    println!("Headwater snapshot: {snapshot:.0} rows/s ({:.2}x the baseline)", snapshot / baseline);

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

    // Baseline: read and decode the same binlog range with mysql_async alone.
    let decode = {
        let mut conn = db.root().await;
        conn.query_drop("SET @mariadb_slave_capability=4").await.unwrap();
        let request = mysql_async::BinlogStreamRequest::new(4242)
            .with_filename(before.0.as_bytes())
            .with_pos(before.1)
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
        n as f64 / start.elapsed().as_secs_f64()
    };
    println!("mysql_async read + decode alone: {decode:.0} row events/s");

    let start = Instant::now();
    let server = Server::start(&Config::new("127.0.0.1:0", dir.path().join("d"))).await.unwrap();
    let c = client(server.local_addr().port()).await;
    c.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '600s'").await.unwrap();
    c.simple_query("SELECT count(*) FROM t").await.unwrap();
    let catch_up = rows as f64 / start.elapsed().as_secs_f64();
    println!(
        "Headwater binlog catch-up: {catch_up:.0} row events/s ({:.2}x mysql_async decode alone)",
        catch_up / decode
    );
    server.shutdown().await.unwrap();

    let report = format!(
        "Every figure below is compared with a baseline run \
         in the same process against the same MariaDB 10.11. Reproduce with:\n\n\
         ```sh\ncargo bench --bench mysql_source            # HEADWATER_BENCH_ROWS=1000000 by default\n```\n\n\
         ## MySQL source ({rows} rows, 10 columns: BIGINT, 2×INT, BIGINT, DECIMAL(12,2), DOUBLE, 2×VARCHAR(32), DATETIME, DATE)\n\n\
         | what | rows/s | vs baseline |\n|---|---|---|\n\
         | baseline: `SELECT *` streamed through mysql_async | {baseline:.0} | 1.00× |\n\
         | Headwater snapshot (CREATE SOURCE until streaming; decode to Arrow, apply, checkpoint to the store) | {snapshot:.0} | {:.2}× |\n\
         | MariaDB producing a {rows}-row UPDATE in 100 transactions | {produce:.0} row events/s | |\n\
         | baseline: mysql_async reading + decoding that binlog | {decode:.0} row events/s | 1.00× |\n\
         | Headwater binlog catch-up (decode, upsert per transaction, checkpointed every second) | {catch_up:.0} row events/s | {:.2}× |\n\n\
         Medians of 3 for the snapshot figures; the binlog figures are single runs.\n",
        snapshot / baseline,
        catch_up / decode
    );
    report::write_section("mysql_source", &report);
}

async fn mariadb_position(c: &mut mysql_async::Conn) -> (String, u64) {
    let row: mysql_async::Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}
