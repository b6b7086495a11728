//! Upstream and local-disk trouble: each is survived or stops with a clear message, and is
//! visible in `hw_catalog` — never silent loss.

use crate::common;

use std::time::{Duration, Instant};

use common::mariadb::MariaDb;
use common::process::{command, HwProcess};
use common::{joined_rows, wait_for_rows, TestServer};
use mysql_async::prelude::Queryable;

async fn wait_for<F: Fn(&[String]) -> bool>(c: &tokio_postgres::Client, sql: &str, what: &str, ok: F) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = joined_rows(c, sql).await;
        if ok(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "waited 60s for {what}: {sql} gave {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_restart_is_survived_and_visible() {
    let mut db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop("CREATE DATABASE f1; CREATE TABLE f1.t (id INT PRIMARY KEY, v INT); INSERT INTO f1.t VALUES (1, 1)")
        .await
        .unwrap();
    drop(my);
    let hw = TestServer::start().await;
    let c = hw.client().await;
    c.batch_execute(&db.connection_sql("up")).await.unwrap();
    c.batch_execute("CREATE SOURCE f1 FROM MYSQL CONNECTION up FOR TABLES (f1.t) WITH (SERVER_ID = 7401)")
        .await
        .unwrap();
    wait_for_rows(&c, "SELECT id, v FROM t", &["1|1"]).await;

    db.stop();
    let rows = wait_for(&c, "SELECT state, last_error FROM hw_catalog.sources", "state reconnecting", |r| {
        r.len() == 1 && r[0].starts_with("reconnecting|") && !r[0].ends_with("|NULL")
    })
    .await;
    assert!(rows[0].contains("upstream"), "the error says what failed: {rows:?}");

    db.spawn().await;
    let mut my = db.root().await;
    my.query_drop("INSERT INTO f1.t VALUES (2, 2); UPDATE f1.t SET v = 10 WHERE id = 1").await.unwrap();
    wait_for_rows(&c, "SELECT id, v FROM t ORDER BY id", &["1|10", "2|2"]).await;
    wait_for(&c, "SELECT state FROM hw_catalog.sources", "streaming again", |r| r == ["streaming"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_binlog_stops_the_source_until_resnapshot() {
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop("CREATE DATABASE f2; CREATE TABLE f2.t (id INT PRIMARY KEY, v INT); INSERT INTO f2.t VALUES (1, 1)")
        .await
        .unwrap();
    let mut hw = TestServer::start().await;
    {
        let c = hw.client().await;
        c.batch_execute(&db.connection_sql("up")).await.unwrap();
        c.batch_execute("CREATE SOURCE f2 FROM MYSQL CONNECTION up FOR TABLES (f2.t) WITH (SERVER_ID = 7402)")
            .await
            .unwrap();
        wait_for_rows(&c, "SELECT id, v FROM t", &["1|1"]).await;
    }
    // While Headwater is down, the binlog it needs is purged.
    let server = hw.server.take().unwrap();
    server.shutdown().await.unwrap();
    my.query_drop("INSERT INTO f2.t VALUES (2, 2)").await.unwrap();
    let first = |rows: Vec<mysql_async::Row>| rows.first().and_then(|r| r.get::<String, _>(0)).unwrap();
    let before = first(my.query("SHOW BINARY LOGS").await.unwrap());
    // MariaDB keeps a file until its binlog checkpoint has passed it: purge until it is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        my.query_drop("FLUSH BINARY LOGS").await.unwrap();
        let row: mysql_async::Row = my.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        let file: String = row.get(0).unwrap();
        my.query_drop(format!("PURGE BINARY LOGS TO '{file}'")).await.unwrap();
        if first(my.query("SHOW BINARY LOGS").await.unwrap()) != before {
            break;
        }
        assert!(Instant::now() < deadline, "MariaDB did not purge {before}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    my.query_drop("INSERT INTO f2.t VALUES (3, 3)").await.unwrap();
    hw.restart().await;
    let c = hw.client().await;
    let rows = wait_for(&c, "SELECT state, last_error FROM hw_catalog.sources", "state error", |r| {
        r.len() == 1 && r[0].starts_with("error|")
    })
    .await;
    assert!(rows[0].contains("no longer has the binlog"), "{rows:?}");
    assert!(rows[0].contains("ALTER SOURCE f2 RESNAPSHOT"), "the error gives the command: {rows:?}");
    // Nothing half-applied: the table is as it was, not silently missing row 2.
    assert_eq!(joined_rows(&c, "SELECT id FROM t").await, ["1"]);

    c.batch_execute("ALTER SOURCE f2 RESNAPSHOT").await.unwrap();
    wait_for_rows(&c, "SELECT id, v FROM t ORDER BY id", &["1|1", "2|2", "3|3"]).await;
    my.query_drop("DELETE FROM f2.t WHERE id = 1").await.unwrap();
    wait_for_rows(&c, "SELECT id FROM t ORDER BY id", &["2", "3"]).await;
    wait_for(&c, "SELECT state, last_error FROM hw_catalog.sources", "streaming", |r| r == ["streaming|NULL"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_dropped_upstream_is_an_error_of_that_table_only() {
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(
        "CREATE DATABASE f3; CREATE TABLE f3.a (id INT PRIMARY KEY); CREATE TABLE f3.b (id INT PRIMARY KEY); \
         INSERT INTO f3.a VALUES (1); INSERT INTO f3.b VALUES (1)",
    )
    .await
    .unwrap();
    let hw = TestServer::start().await;
    let c = hw.client().await;
    c.batch_execute(&db.connection_sql("up")).await.unwrap();
    c.batch_execute("CREATE SOURCE f3 FROM MYSQL CONNECTION up FOR TABLES (f3.a, f3.b) WITH (SERVER_ID = 7403)")
        .await
        .unwrap();
    // Both snapshots done first: a table dropped mid-snapshot is a different story (the
    // snapshot's SELECT fails, not the binlog's DROP) and its rows would not be kept.
    wait_for_rows(&c, "SELECT id FROM a", &["1"]).await;
    wait_for_rows(&c, "SELECT id FROM b", &["1"]).await;
    my.query_drop("DROP TABLE f3.a; INSERT INTO f3.b VALUES (2)").await.unwrap();
    let rows = wait_for(
        &c,
        "SELECT table_name, state, last_error FROM hw_catalog.source_tables WHERE table_name = 'a'",
        "a in error",
        |r| r.len() == 1 && r[0].starts_with("a|error|"),
    )
    .await;
    assert!(rows[0].contains("DROP TABLE"), "{rows:?}");
    wait_for_rows(&c, "SELECT id FROM b ORDER BY id", &["1", "2"]).await;
    assert_eq!(joined_rows(&c, "SELECT id FROM a").await, ["1"], "the dropped table keeps its last rows");
}

/// Runs `headwater serve` and expects it to exit with an error whose text contains `want`.
async fn expect_refusal(data_dir: &std::path::Path, want: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = command(data_dir, port, &log, &[]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("headwater kept running on {}; expected a refusal containing {want:?}", data_dir.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "exit status {status}");
    assert!(text.contains(want), "expected {want:?} in:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_directories_are_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    // A second server on the same data dir.
    let data = tmp.path().join("data");
    let first = HwProcess::start(&data, &tmp.path().join("first.log"), &[]).await;
    expect_refusal(&data, "in use by another Headwater server").await;
    {
        let c = first.client().await;
        c.batch_execute("CREATE TABLE kept (id INT PRIMARY KEY); INSERT INTO kept VALUES (7)").await.unwrap();
    }
    assert!(first.stop().success(), "clean shutdown");

    // A directory that is not Headwater's.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("thesis.tex"), "precious").unwrap();
    expect_refusal(&home, "not a Headwater data directory").await;
    assert_eq!(std::fs::read_to_string(home.join("thesis.tex")).unwrap(), "precious");

    // A data format this binary does not know.
    let future = tmp.path().join("future");
    std::fs::create_dir_all(&future).unwrap();
    std::fs::write(future.join("headwater.json"), r#"{"format": 7, "created_by": "headwater 9.0"}"#).unwrap();
    expect_refusal(&future, "data format 7").await;

    // A damaged store: every file of it overwritten with garbage.
    let damaged = tmp.path().join("damaged");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let status = std::process::Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap();
        assert!(status.success());
    };
    copy(&data, &damaged);
    for entry in walk(&damaged).into_iter().filter(|p| !p.ends_with("headwater.json") && !p.ends_with("headwater.lock"))
    {
        let len = std::fs::metadata(&entry).unwrap().len().max(64) as usize;
        std::fs::write(&entry, vec![0xA5u8; len]).unwrap();
    }
    expect_refusal(&damaged, "state").await;

    // A damaged table image (state::image): one flipped byte is found by its checksum.
    let imaged = tmp.path().join("imaged");
    let server = HwProcess::start_with_env(
        &imaged,
        &tmp.path().join("imaged.log"),
        &[],
        &[("HEADWATER_IMAGE_MIN_CHANGES", "1")],
    )
    .await;
    {
        let c = server.client().await;
        c.batch_execute("CREATE TABLE big (id INT PRIMARY KEY, v TEXT); INSERT INTO big SELECT i, 'row ' || i FROM generate_series(1, 2000) AS s(i)")
            .await
            .unwrap();
        let images = joined_rows(&c, "SELECT images FROM hw_catalog.checkpoints").await;
        assert_eq!(images, ["1"], "the INSERT's checkpoint wrote an image");
    }
    assert!(server.stop().success());
    let image = walk(&imaged.join("images")).into_iter().find(|p| p.extension().is_some_and(|e| e == "img")).unwrap();
    let mut bytes = std::fs::read(&image).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&image, bytes).unwrap();
    expect_refusal(&imaged, "table image").await;

    // The original is intact and still serves its rows.
    let again = HwProcess::start(&data, &tmp.path().join("again.log"), &[]).await;
    let c = again.client().await;
    assert_eq!(joined_rows(&c, "SELECT id FROM kept").await, ["7"]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A sled store whose writes start failing on demand, like a disk that fills up.
struct FillingDisk {
    inner: headwater::state::SledStore,
    full: std::sync::atomic::AtomicBool,
}

impl headwater::state::StateStore for FillingDisk {
    fn get(&self, key: &[u8]) -> headwater::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> headwater::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_prefix(prefix)
    }
    fn apply(&self, batch: headwater::state::WriteBatch) -> headwater::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(headwater::Error::Storage("No space left on device (os error 28)".into()));
        }
        self.inner.apply(batch)
    }
    fn flush(&self) -> headwater::Result<()> {
        self.inner.flush()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_and_stops_the_server_with_the_last_checkpoint_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let disk = std::sync::Arc::new(FillingDisk {
        inner: headwater::state::SledStore::open(&dir).unwrap(),
        full: std::sync::atomic::AtomicBool::new(false),
    });
    let config = headwater::Config::new("127.0.0.1:0", &dir);
    let mut server = headwater::Server::start_on(&config, disk.clone()).await.unwrap();
    let mut pg = tokio_postgres::Config::new();
    pg.host("127.0.0.1").port(server.local_addr().port()).user("t").dbname("headwater");
    let (c, conn) = pg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)").await.unwrap();

    disk.full.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = c.batch_execute("INSERT INTO t VALUES (2)").await.unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "58030", "{db:?}");
    assert!(db.message().contains("No space left on device"), "{db:?}");
    // Nothing more is accepted, and the server reports that it must stop.
    let err = c.batch_execute("INSERT INTO t VALUES (3)").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "58030");
    let why = tokio::time::timeout(Duration::from_secs(30), server.failed()).await.expect("the server gives up");
    assert!(why.contains("No space left on device"), "{why}");
    drop(c);
    let _ = server.shutdown().await;
    drop(disk);

    // After a restart on the same directory: the acknowledged row, not the refused ones.
    let hw = HwProcess::start(&dir, &tmp.path().join("log"), &[]).await;
    let c = hw.client().await;
    assert_eq!(joined_rows(&c, "SELECT id FROM t ORDER BY id").await, ["1"]);
}
