//! Randomized oracle test of the MySQL source: random tables (int, `_ci` string, composite
//! keys, no key), random concurrent transactions while the snapshot runs and after, a
//! Headwater restart in the middle; at the end every captured table equals MariaDB's
//! `SELECT *`, row for row.
//!
//! Seeds: `HEADWATER_ORACLE_SEEDS` (default 3); `HEADWATER_ORACLE_TXNS` transactions per seed
//! (default 400). The long mode is e.g. `HEADWATER_ORACLE_SEEDS=20 HEADWATER_ORACLE_TXNS=5000`.

use crate::common;

use common::mariadb::MariaDb;
use common::TestServer;
use mysql_async::prelude::Queryable;

const KEYS: [&str; 12] = ["a", "B", "c", "D", "e", "ä", "f1", "F2", "g", "h", "Z", "y"];

fn random_statement(r: &mut common::Rng, db: &str) -> String {
    let id = r.below(4000);
    let v = r.below(1000);
    let key = format!("{}{}", KEYS[r.below(KEYS.len() as u64) as usize], r.below(300));
    match r.below(13) {
        0 | 1 => format!("INSERT IGNORE INTO {db}.t_int VALUES ({id}, {v}, 's{v}')"),
        2 => format!("UPDATE {db}.t_int SET v = v + 1, s = CONCAT(s, 'x') WHERE id BETWEEN {id} AND {}", id + 20),
        3 => format!("UPDATE IGNORE {db}.t_int SET id = id + 5000 WHERE id = {id}"),
        4 => format!("DELETE FROM {db}.t_int WHERE id = {id} OR id = {}", id + 5000),
        5 => format!("INSERT IGNORE INTO {db}.t_str VALUES ('{key}', {v})"),
        6 => format!("UPDATE {db}.t_str SET v = {v} WHERE k < '{key}' LIMIT 5"),
        7 => format!("DELETE FROM {db}.t_str WHERE k = '{key}'"),
        8 => format!("INSERT IGNORE INTO {db}.t_comp VALUES ({}, '{key}', {v})", id % 50),
        9 => format!("UPDATE IGNORE {db}.t_comp SET b = CONCAT(b, 'z') WHERE a = {}", id % 50),
        10 => format!("INSERT INTO {db}.t_nopk VALUES ({}, 'y{}'), ({}, 'y{}')", v % 20, v % 3, v % 20, v % 3),
        11 => format!("DELETE FROM {db}.t_nopk WHERE x = {} LIMIT 1", v % 20),
        _ => format!("UPDATE {db}.t_nopk SET y = 'u' WHERE x = {} LIMIT 2", v % 20),
    }
}

async fn hw_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut rows = common::joined_rows(c, sql).await;
    rows.sort();
    rows
}

async fn run_seed(db: &MariaDb, seed: u64, txns: usize, extra_options: &str) {
    let name = format!("o{seed}");
    let mut my = db.root().await;
    my.query_drop(format!(
        "CREATE DATABASE {name}; \
         CREATE TABLE {name}.t_int (id INT PRIMARY KEY, v INT, s VARCHAR(200)); \
         CREATE TABLE {name}.t_str (k VARCHAR(16) COLLATE utf8mb4_general_ci PRIMARY KEY, v INT); \
         CREATE TABLE {name}.t_comp (a INT, b VARCHAR(200), v INT, PRIMARY KEY (a, b)); \
         CREATE TABLE {name}.t_nopk (x INT, y VARCHAR(8))"
    ))
    .await
    .unwrap();
    let mut r = common::Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    for _ in 0..8 {
        let stmts: Vec<String> = (0..200).map(|_| random_statement(&mut r, &name)).collect();
        my.query_drop(stmts.join("; ")).await.unwrap();
    }

    let mut server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(&db.connection_sql("up")).await.unwrap();

    // Writers run while the source snapshots and streams.
    let opts = db.opts("root", "");
    let writer_name = name.clone();
    let writer = tokio::spawn(async move {
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let mut r = common::Rng(seed.wrapping_add(7).wrapping_mul(0x2545F4914F6CDD1D) | 1);
        for i in 0..txns {
            let n = 1 + r.below(4);
            let stmts: Vec<String> = (0..n).map(|_| random_statement(&mut r, &writer_name)).collect();
            let sql =
                if i % 3 == 0 { format!("START TRANSACTION; {}; COMMIT", stmts.join("; ")) } else { stmts.join("; ") };
            conn.query_drop(sql).await.unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    hw.batch_execute(&format!(
        "CREATE SOURCE src FROM MYSQL CONNECTION up FOR SCHEMAS ({name}) \
         WITH (SERVER_ID = {}, CHUNK_SIZE = 64, SNAPSHOT_PARALLELISM = 2{extra_options})",
        1000 + seed
    ))
    .await
    .unwrap();
    drop(hw);
    if seed % 2 == 1 {
        // Restart Headwater while the writers go on: resume from the stored binlog position.
        server.restart().await;
    }
    writer.await.unwrap();
    let hw = server.client().await;
    hw.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '60s'").await.unwrap();
    for (table, cols, my_cols) in [
        ("t_int", "id::text, v::text, s", "CAST(id AS CHAR), CAST(v AS CHAR), s"),
        ("t_str", "k, v::text", "k, CAST(v AS CHAR)"),
        ("t_comp", "a::text, b, v::text", "CAST(a AS CHAR), b, CAST(v AS CHAR)"),
        ("t_nopk", "x::text, y", "CAST(x AS CHAR), y"),
    ] {
        let got = hw_rows(&hw, &format!("SELECT {cols} FROM {table}")).await;
        let want = common::mariadb::my_rows(&mut my, &format!("SELECT {my_cols} FROM {name}.{table}")).await;
        if got != want {
            let count = |v: &Vec<String>, r: &String| v.iter().filter(|x| *x == r).count();
            let missing: Vec<_> = want.iter().filter(|r| count(&got, r) < count(&want, r)).take(5).collect();
            let extra: Vec<_> = got.iter().filter(|r| count(&got, r) > count(&want, r)).take(5).collect();
            panic!(
                "seed {seed}, {table}: Headwater {} rows, MariaDB {}; missing {missing:?}; unexpected {extra:?}",
                got.len(),
                want.len()
            );
        }
    }
    let states = hw_rows(&hw, "SELECT DISTINCT state FROM hw_catalog.source_tables").await;
    assert_eq!(states, vec!["streaming"], "seed {seed}");
    if let Some(s) = server.server.take() {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_tables_equal_upstream_under_concurrent_writes() {
    let seeds: u64 = std::env::var("HEADWATER_ORACLE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let txns: usize = std::env::var("HEADWATER_ORACLE_TXNS").ok().and_then(|s| s.parse().ok()).unwrap_or(400);
    let db = MariaDb::start().await;
    for seed in 1..=seeds {
        run_seed(&db, seed, txns, "").await;
    }
}

/// The same oracle with the snapshot position bracketed by watermarks, as on MySQL (which has
/// no exact position): keyed tables replay the changes after the low watermark onto their
/// rows, the table without a key retries until its view did not move between the watermarks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_snapshots_equal_upstream_under_concurrent_writes() {
    // More transactions than the exact-position oracle: the window between the watermarks is
    // two round trips, and writes must land in it for the replay and the retry to be tested.
    let seeds: u64 = std::env::var("HEADWATER_ORACLE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let txns: usize = std::env::var("HEADWATER_ORACLE_TXNS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let db = MariaDb::start().await;
    for seed in 101..101 + seeds {
        run_seed(&db, seed, txns, ", SNAPSHOT_POSITION = 'watermark'").await;
    }
}
