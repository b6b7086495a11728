//! A Headwater server started in-process on a free port, for tests.

#![allow(dead_code)]

pub mod kafka;
pub mod mariadb;
pub mod postgres;
pub mod process;
pub mod tpch;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headwater::{Config, Server};

/// A running server over a data directory that outlives restarts.
pub struct TestServer {
    pub server: Option<Server>,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server on a fresh, temporary data directory.
    pub async fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let server = start_on(&data_dir).await;
        TestServer { server: Some(server), data_dir, _tmp: Some(tmp) }
    }

    /// Port of the running server.
    pub fn port(&self) -> u16 {
        self.server.as_ref().expect("server running").local_addr().port()
    }

    /// Port of the running server's `GET /metrics` endpoint.
    pub fn metrics_port(&self) -> u16 {
        self.server.as_ref().expect("server running").metrics_addr().expect("metrics enabled").port()
    }

    /// `GET path` on the metrics endpoint: the status code and the body.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port())).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).await.unwrap();
        let status = response.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("an HTTP status line");
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// Connection settings for tokio-postgres.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.port()).user("tester").dbname("headwater");
        c
    }

    /// A connected tokio-postgres client.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = self.pg_config().connect(tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// A client whose notices and warnings (NoticeResponse) are collected in the returned list.
    pub async fn client_with_notices(
        &self,
    ) -> (tokio_postgres::Client, std::sync::Arc<std::sync::Mutex<Vec<tokio_postgres::error::DbError>>>) {
        let (client, mut conn) = self.pg_config().connect(tokio_postgres::NoTls).await.expect("connect");
        let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = notices.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notice(n) = m {
                    sink.lock().unwrap().push(n);
                }
            }
        });
        (client, notices)
    }

    /// Stops the server (flushing its state) and starts a new one on the same data dir.
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
        self.server = Some(start_on(&self.data_dir).await);
    }
}

async fn start_on(data_dir: &Path) -> Server {
    let config = Config { metrics_listen: Some("127.0.0.1:0".into()), ..Config::new("127.0.0.1:0", data_dir) };
    Server::start(&config).await.expect("server starts")
}

/// Runs statements through the simple protocol; panics with the SQL and error on failure.
pub async fn exec(c: &tokio_postgres::Client, sql: &str) {
    c.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// The `SQLSTATE message` a statement fails with (panics when it succeeds).
pub async fn sqlstate(c: &tokio_postgres::Client, sql: &str) -> String {
    let e = c.batch_execute(sql).await.expect_err(sql);
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
    format!("{} {}", db.code().code(), db.message())
}

/// Rows of a query as text cells (NULL as "NULL"), through the simple protocol.
pub async fn text_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect())
            }
            _ => None,
        })
        .collect()
}

/// Rows of a query, each joined with `|`.
pub async fn joined_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    text_rows(c, sql).await.into_iter().map(|r| r.join("|")).collect()
}

/// Polls a query until its rows (joined with `|`) equal `want`; fails after 60 s.
pub async fn wait_for_rows(c: &tokio_postgres::Client, sql: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = joined_rows(c, sql).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: waited 60s for {want:?}, last {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small deterministic generator (xorshift) for randomized tests: a seed gives a run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A server on a fresh data directory with a connection `up` to `db` and `create_source` (a
/// `CREATE SOURCE ... FROM MYSQL CONNECTION up ...` statement) run, and a client.
pub async fn with_source(db: &mariadb::MariaDb, create_source: &str) -> (TestServer, tokio_postgres::Client) {
    let server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(&db.connection_sql("up")).await.unwrap();
    hw.batch_execute(create_source).await.unwrap_or_else(|e| panic!("{create_source}: {e:?}"));
    (server, hw)
}
