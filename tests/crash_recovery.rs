//! Crash harness: MariaDB under a random transactional workload, the real `headwater` binary
//! `kill -9`ed at random moments — during the snapshot, while streaming, during checkpoints
//! (every 100 ms, so most kills land near one) — and restarted. After every restart every
//! captured table and the materialized views over them (an aggregate, a join under an
//! aggregate, a top-k) equal the oracle computed by MariaDB itself, and a table whose snapshot
//! had finished (and been checkpointed) is not snapshotted again. Views come back from their
//! saved state (`dataflow::durable`), which the harness checks in the log.
//!
//! Every fifth round re-snapshots the source (`ALTER SOURCE ... RESNAPSHOT`) and kills during
//! that snapshot, so snapshot resumption is exercised again and again.
//!
//! The server runs with `HEADWATER_IMAGE_MIN_CHANGES=200`, so checkpoints write table images
//! (`state::image`) over and over and kills land before, during and after them; the harness
//! checks that images were written.
//!
//! `HEADWATER_CRASH_KILLS` sets the number of kills (default 6; the long mode is e.g. 100).
//!
//! A second harness kills a source over 300 small tables during their snapshots (issue 35:
//! per-table progress entries written as tables finish).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mariadb::MariaDb;
use common::process::{tail, HwProcess};
use mysql_async::prelude::Queryable;

const SNAPSHOT_ROWS: u64 = 30_000;

fn statement(r: &mut common::Rng) -> String {
    let id = r.below(SNAPSHOT_ROWS + 2000);
    let c = r.below(50);
    let k = format!("k{}ä{}", r.below(40), r.below(10));
    match r.below(10) {
        0 | 1 => format!(
            "INSERT INTO crash.orders VALUES ({id}, {c}, {}.{:02}, 'new') ON DUPLICATE KEY UPDATE amount = amount + 1",
            r.below(500),
            r.below(100)
        ),
        2 => format!("UPDATE crash.orders SET status = 'cancelled' WHERE id = {id}"),
        3 => format!("UPDATE crash.orders SET amount = amount + 0.25 WHERE customer = {c} AND id < {id}"),
        4 => format!("DELETE FROM crash.orders WHERE id = {id}"),
        5 => format!("UPDATE IGNORE crash.orders SET id = id + 1000000 WHERE id = {id}"),
        6 => format!("INSERT INTO crash.events VALUES ('{k}', {c}) ON DUPLICATE KEY UPDATE v = v + 1"),
        7 => format!("DELETE FROM crash.events WHERE k = '{k}'"),
        8 => format!("INSERT INTO crash.log_nopk VALUES ({}, 'y{}')", c % 7, c % 3),
        _ => format!("DELETE FROM crash.log_nopk WHERE x = {} LIMIT 1", c % 7),
    }
}

/// Runs random transactions until `stop`; while `pause` is set it idles, and `paused` says
/// it is between transactions.
async fn workload(
    db_opts: mysql_async::Opts,
    seed: u64,
    pause: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let mut my = mysql_async::Conn::new(db_opts).await.expect("workload connection");
    let mut r = common::Rng(seed);
    while !stop.load(Ordering::SeqCst) {
        if pause.load(Ordering::SeqCst) {
            paused.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        paused.store(false, Ordering::SeqCst);
        let n = 1 + r.below(4);
        let mut sql = String::from("START TRANSACTION; ");
        for _ in 0..n {
            sql.push_str(&statement(&mut r));
            sql.push_str("; ");
        }
        sql.push_str("COMMIT");
        my.query_drop(sql).await.expect("workload transaction");
        done.fetch_add(1, Ordering::SeqCst);
    }
}

async fn hw_rows(c: &tokio_postgres::Client, sql: &str) -> Option<Vec<String>> {
    let msgs = c.simple_query(sql).await.ok()?;
    let mut rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect::<Vec<_>>().join("|"))
            }
            _ => None,
        })
        .collect();
    rows.sort();
    Some(rows)
}

const CHECKS: [(&str, &str, &str); 6] = [
    (
        "orders",
        "SELECT id, customer, amount, status FROM orders",
        "SELECT id, customer, amount, status FROM crash.orders",
    ),
    ("events", "SELECT k, v FROM events", "SELECT k, v FROM crash.events"),
    ("log_nopk", "SELECT x, y FROM log_nopk", "SELECT x, y FROM crash.log_nopk"),
    (
        "totals",
        "SELECT customer, n, total FROM totals",
        "SELECT customer, count(*), sum(amount) FROM crash.orders WHERE status <> 'cancelled' GROUP BY customer",
    ),
    (
        "pairs",
        "SELECT customer, n FROM pairs",
        "SELECT o.customer, count(*) FROM crash.orders o JOIN crash.events e ON e.v = o.customer GROUP BY o.customer",
    ),
    (
        "top_orders",
        "SELECT id, amount FROM top_orders",
        "SELECT id, amount FROM crash.orders ORDER BY amount DESC, id LIMIT 5",
    ),
];

/// Waits (120 s deadline) until every table and the view equal MariaDB's answer.
async fn wait_equal(hw: &HwProcess, my: &mut mysql_async::Conn, round: usize) {
    let c = hw.client().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    for (name, hw_sql, my_sql) in CHECKS {
        let want = common::mariadb::my_rows(my, my_sql).await;
        loop {
            let got = hw_rows(&c, hw_sql).await;
            if got.as_ref() == Some(&want) {
                break;
            }
            if Instant::now() > deadline {
                let got = got.unwrap_or_default();
                let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
                let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
                panic!(
                    "round {round}: {name} differs from MariaDB after 120s: {} rows vs {}; missing {missing:?}, \
                     extra {extra:?}\n{}",
                    got.len(),
                    want.len(),
                    tail(&hw.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn one_value(c: &tokio_postgres::Client, sql: &str) -> String {
    hw_rows(c, sql).await.and_then(|r| r.into_iter().next()).unwrap_or_default()
}

/// Waits until the server has written `n` more checkpoints (so what it showed is on disk).
async fn wait_checkpoints(c: &tokio_postgres::Client, n: u64) {
    let count = |s: String| s.parse::<u64>().unwrap_or(0);
    let start = count(one_value(c, "SELECT checkpoints FROM hw_catalog.checkpoints").await);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(one_value(c, "SELECT checkpoints FROM hw_catalog.checkpoints").await) < start + n {
        assert!(Instant::now() < deadline, "no checkpoint within 30s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_random_moments_loses_and_doubles_nothing() {
    let kills: usize = std::env::var("HEADWATER_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    // Inherited by every server this test starts.
    std::env::set_var("HEADWATER_IMAGE_MIN_CHANGES", "200");
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(
        "CREATE DATABASE crash; \
         CREATE TABLE crash.orders (id INT PRIMARY KEY, customer INT NOT NULL, amount DECIMAL(12,2) NOT NULL, \
           status VARCHAR(20) NOT NULL); \
         CREATE TABLE crash.events (k VARCHAR(40) PRIMARY KEY, v INT) COLLATE utf8mb4_general_ci; \
         CREATE TABLE crash.log_nopk (x INT, y VARCHAR(10))",
    )
    .await
    .unwrap();
    for start in (0..SNAPSHOT_ROWS).step_by(5000) {
        let values: Vec<String> =
            (start..start + 5000).map(|i| format!("({i}, {}, {}.50, 'new')", i % 50, i % 700)).collect();
        my.query_drop(format!("INSERT INTO crash.orders VALUES {}", values.join(","))).await.unwrap();
    }
    my.query_drop("INSERT INTO crash.events VALUES ('x', 1), ('B', 2), ('ä', 3); INSERT INTO crash.log_nopk VALUES (1, 'y1'), (1, 'y1')")
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("headwater.log");
    let flags = ["--checkpoint-interval", "100ms"];
    let mut hw = HwProcess::start(&data, &log, &flags).await;
    {
        let c = hw.client().await;
        c.batch_execute(&db.connection_sql("shop_db")).await.unwrap();
        c.batch_execute(
            "CREATE SOURCE crash FROM MYSQL CONNECTION shop_db FOR TABLES (crash.orders, crash.events, crash.log_nopk) \
             WITH (SERVER_ID = 7301, CHUNK_SIZE = 500, SNAPSHOT_PARALLELISM = 2); \
             CREATE MATERIALIZED VIEW totals AS SELECT customer, count(*) AS n, sum(amount) AS total \
             FROM orders WHERE status <> 'cancelled' GROUP BY customer; \
             CREATE MATERIALIZED VIEW pairs AS SELECT o.customer, count(*) AS n \
             FROM orders o JOIN events e ON e.v = o.customer GROUP BY o.customer; \
             CREATE MATERIALIZED VIEW top_orders AS SELECT id, amount FROM orders ORDER BY amount DESC, id LIMIT 5",
        )
        .await
        .unwrap();
    }

    let (pause, paused, stop) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let done = Arc::new(AtomicU64::new(0));
    let load =
        tokio::spawn(workload(db.opts("root", ""), 42, pause.clone(), paused.clone(), stop.clone(), done.clone()));
    let mut r = common::Rng(0x5eed_c0de);
    let mut snapshot_kills = 0;
    let mut resumed = 0;
    for round in 0..kills {
        let c = hw.client().await;
        // Round 0 kills during the initial snapshot of `orders`, once a few chunks are
        // checkpointed; every fifth round starts a new snapshot (RESNAPSHOT) and does the same.
        let mut streaming_before = false;
        let resnapshot = round % 5 == 4;
        if resnapshot {
            c.batch_execute("ALTER SOURCE crash RESNAPSHOT").await.unwrap();
        }
        if round == 0 || resnapshot {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let chunks =
                    one_value(&c, "SELECT chunks_done FROM hw_catalog.source_tables WHERE table_name = 'orders'").await;
                if chunks.parse::<u64>().unwrap_or(0) >= 4 {
                    break;
                }
                assert!(Instant::now() < deadline, "snapshot did not progress:\n{}", tail(&hw.log));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            wait_checkpoints(&c, 1).await;
            let st = one_value(&c, "SELECT state FROM hw_catalog.source_tables WHERE table_name = 'orders'").await;
            if st == "snapshotting" {
                snapshot_kills += 1;
            }
        } else {
            let st = one_value(&c, "SELECT state FROM hw_catalog.source_tables WHERE table_name = 'orders'").await;
            if st == "streaming" {
                // Make sure a checkpoint recorded it, then kill at a random moment.
                wait_checkpoints(&c, 2).await;
                streaming_before = true;
            }
            let until = done.load(Ordering::SeqCst) + 20 + r.below(200);
            let deadline = Instant::now() + Duration::from_secs(30);
            while done.load(Ordering::SeqCst) < until && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        drop(c);
        hw.kill9();
        let t = Instant::now();
        hw = HwProcess::start(&data, &log, &flags).await;
        eprintln!("round {round}: restarted in {:.2}s", t.elapsed().as_secs_f64());
        pause.store(true, Ordering::SeqCst);
        while !paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let restarted = Instant::now();
        wait_equal(&hw, &mut my, round).await;
        eprintln!("round {round}: caught up {:.1}s after the restart", restarted.elapsed().as_secs_f64());
        let c = hw.client().await;
        if streaming_before {
            let copied =
                one_value(&c, "SELECT rows_copied FROM hw_catalog.source_tables WHERE table_name = 'orders'").await;
            assert_eq!(copied, "0", "round {round}: orders was snapshotted again after a restart\n{}", tail(&hw.log));
        }
        pause.store(false, Ordering::SeqCst);
    }
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    wait_equal(&hw, &mut my, kills).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    resumed += text.matches("resuming the snapshot").count();
    if snapshot_kills > 0 {
        assert!(resumed > 0, "a kill during the snapshot did not resume from the stored chunks\n{}", tail(&log));
    }
    let images = std::fs::read_dir(data.join("images"))
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".img")).count())
        .unwrap_or(0);
    assert!(images > 0, "no table image was written (state::image); the restarts did not exercise them");
    let loaded = text.matches("materialized view loaded").count();
    assert!(loaded > 0, "no restart loaded a view from its saved state (dataflow::durable)\n{}", tail(&log));
    eprintln!(
        "survived {kills} kill -9 ({snapshot_kills} during the snapshot, {resumed} snapshot resumes), {} upstream \
         transactions, {images} table images on disk at the end, {loaded} views loaded at restarts",
        done.load(Ordering::SeqCst)
    );
    hw.stop();
}

/// Issue 35: one source over hundreds of small tables, `kill -9`ed again and again while
/// their snapshots run (tables finish one after another, so kills land between a table's
/// last chunk and the next's first, and while per-table progress entries are being written)
/// and while a writer updates random tables. After every restart the source resumes; at the
/// end every table equals MariaDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_during_the_snapshot_of_many_small_tables() {
    const TABLES: usize = 300;
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop("SET GLOBAL innodb_file_per_table = OFF; CREATE DATABASE many").await.unwrap();
    let mut sql = String::new();
    for t in 0..TABLES {
        let rows: Vec<String> = (0..10).map(|i| format!("({i}, 0)")).collect();
        sql.push_str(&format!(
            "CREATE TABLE many.t{t} (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO many.t{t} VALUES {};",
            rows.join(", ")
        ));
    }
    my.query_drop(sql).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, opts) = (stop.clone(), db.opts("root", ""));
        tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            let mut r = common::Rng(0x7ab1e5);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let (t, id) = (r.below(TABLES as u64), r.below(12));
                let sql = match r.below(3) {
                    0 => format!("UPDATE many.t{t} SET v = v + 1 WHERE id = {id}"),
                    1 => format!("DELETE FROM many.t{t} WHERE id = {id}"),
                    _ => format!("INSERT IGNORE INTO many.t{t} VALUES ({id}, {n})"),
                };
                conn.query_drop(sql).await.unwrap();
                n += 1;
            }
            n
        })
    };

    let tmp = tempfile::tempdir().unwrap();
    let (data, log) = (tmp.path().join("data"), tmp.path().join("headwater.log"));
    let flags = ["--checkpoint-interval", "100ms"];
    let mut hw = HwProcess::start(&data, &log, &flags).await;
    {
        let c = hw.client().await;
        c.batch_execute(&db.connection_sql("up")).await.unwrap();
        c.batch_execute(
            "CREATE SOURCE many FROM MYSQL CONNECTION up FOR SCHEMAS (many) \
             WITH (SERVER_ID = 7302, CHUNK_SIZE = 3, SNAPSHOT_PARALLELISM = 2)",
        )
        .await
        .unwrap();
    }
    let streaming = |c: tokio_postgres::Client| async move {
        one_value(&c, "SELECT count(*) FROM hw_catalog.source_tables WHERE state = 'streaming'")
            .await
            .parse::<usize>()
            .unwrap_or(0)
    };
    let mut kills_mid_snapshot = 0;
    for round in 0..4 {
        // Kill once some tables more have finished their snapshot since the start.
        let c = hw.client().await;
        let before = streaming(c).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = streaming(hw.client().await).await;
            if now > before || now == TABLES {
                if now < TABLES {
                    kills_mid_snapshot += 1;
                }
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: no table finished its snapshot\n{}", tail(&log));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        hw.kill9();
        hw = HwProcess::start(&data, &log, &flags).await;
    }
    assert!(kills_mid_snapshot > 0, "no kill landed during the snapshots");
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();

    let c = hw.client().await;
    c.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '120s'").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while streaming(hw.client().await).await < TABLES {
        assert!(Instant::now() < deadline, "not every table streams after the kills\n{}", tail(&log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for chunk in (0..TABLES).collect::<Vec<_>>().chunks(100) {
        let per_table = |prefix: &str, cast: &str| {
            chunk
                .iter()
                .map(|t| format!("SELECT {t} AS t, COUNT(*) AS n, {cast} AS s FROM {prefix}t{t}"))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        };
        let want = common::mariadb::my_rows(
            &mut my,
            &format!("SELECT CONCAT(t, '|', n, '|', s) FROM ({}) x", per_table("many.", "COALESCE(SUM(v), 0)")),
        )
        .await;
        let got =
            hw_rows(&c, &format!("SELECT t || '|' || n || '|' || s FROM ({}) x", per_table("", "COALESCE(sum(v), 0)")))
                .await
                .expect("the per-table sums answer");
        assert_eq!(got, want, "captured tables differ from MariaDB after {writes} upstream writes\n{}", tail(&log));
    }
    eprintln!(
        "4 kill -9 ({kills_mid_snapshot} during the snapshots) of a source over {TABLES} tables, {writes} writes"
    );
    hw.stop();
}
