//! Concurrency soak (issue 30): 64 clients logged in with SCRAM as three non-superuser roles,
//! while a MySQL source ingests a steady stream of upstream transactions into a table with a
//! materialized view over it. Readers read the captured table and the view (point lookups
//! through prepared statements, aggregates, joins), writers write a local table, an
//! unprivileged role is refused everywhere with 42501, and every client now and then sends
//! something hostile (a 3,000-term expression, a statement timeout, a syntax error). Asserted:
//! every statement answers as its role's privileges say (nothing else fails, every error has
//! the expected SQLSTATE), nothing written is lost, the captured table and the view equal
//! upstream at the end, and the server still accepts new logins. `scripts/soak.sh` runs more
//! rounds (`HEADWATER_SOAK_ROUNDS`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headwater::{Config, Server};
use mysql_async::prelude::Queryable;

use crate::common::mariadb::{my_rows, MariaDb};

const CLIENTS: usize = 64;

async fn login(port: u16, user: &str, password: &str) -> tokio_postgres::Client {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1").port(port).user(user).password(password).dbname("headwater");
    let (client, conn) = c.connect(tokio_postgres::NoTls).await.unwrap_or_else(|e| panic!("{user} logs in: {e:?}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The SQLSTATE a statement ends with ("ok" when it succeeds).
async fn outcome(c: &tokio_postgres::Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => e.as_db_error().map_or_else(|| format!("not a server error: {e}"), |d| d.code().code().to_string()),
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Role {
    Reader,
    Writer,
    Nobody,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_with_privileges_while_a_source_ingests() {
    let rounds: u64 = std::env::var("HEADWATER_SOAK_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, status VARCHAR(10), amount INT); \
         INSERT INTO shop.orders VALUES (1, 'new', 10), (2, 'paid', 20)",
    )
    .await
    .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let users_file = tmp.path().join("users");
    std::fs::write(&users_file, "admin:adm1n-pw\n").unwrap();
    let config = Config {
        auth: headwater::pgwire::AuthMode::Password,
        users_file: Some(users_file),
        ..Config::new("127.0.0.1:0", tmp.path().join("data"))
    };
    let server = Server::start(&config).await.expect("server starts");
    let port = server.local_addr().port();
    let admin = login(port, "admin", "adm1n-pw").await;
    admin.batch_execute(&db.connection_sql("up")).await.unwrap();
    admin
        .batch_execute(
            "CREATE SOURCE shop FROM MYSQL CONNECTION up FOR TABLES (shop.orders); \
             CREATE MATERIALIZED VIEW per_status AS SELECT status, count(*) AS n, sum(amount) AS total \
               FROM orders GROUP BY status; \
             CREATE TABLE notes (author TEXT, seq BIGINT, body TEXT, PRIMARY KEY (author, seq)); \
             CREATE USER reader PASSWORD 'r-pw'; CREATE USER writer PASSWORD 'w-pw'; CREATE USER nobody PASSWORD 'n-pw'; \
             GRANT SELECT ON orders, per_status TO reader; \
             GRANT SELECT, INSERT, DELETE ON notes TO writer",
        )
        .await
        .unwrap();

    // The upstream writer: single-row transactions until the clients are done.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let upstream = {
        let done = done.clone();
        let mut conn = db.root().await;
        tokio::spawn(async move {
            let mut id = 3u64;
            while !done.load(Ordering::Relaxed) {
                let status = ["new", "paid", "shipped"][(id % 3) as usize];
                conn.query_drop(format!("INSERT INTO shop.orders VALUES ({id}, '{status}', {})", id % 97))
                    .await
                    .unwrap();
                if id.is_multiple_of(5) {
                    conn.query_drop(format!("UPDATE shop.orders SET status = 'paid' WHERE id = {}", id - 2))
                        .await
                        .unwrap();
                }
                id += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            id - 3
        })
    };

    let statements = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let role = [Role::Reader, Role::Writer, Role::Nobody][i % 3];
        let statements = statements.clone();
        clients.push(tokio::spawn(async move {
            let (user, password) = match role {
                Role::Reader => ("reader", "r-pw"),
                Role::Writer => ("writer", "w-pw"),
                Role::Nobody => ("nobody", "n-pw"),
            };
            let c = login(port, user, password).await;
            let point = c.prepare("SELECT status, amount FROM orders WHERE id = $1").await;
            let expect = |privileged: bool| if privileged { "ok" } else { "42501" };
            let mut written = 0u64;
            for round in 0..rounds {
                let check = |sql: String, want: &'static str| {
                    let c = &c;
                    async move {
                        let got = outcome(c, &sql).await;
                        assert_eq!(got, want, "{user}: {sql}");
                    }
                };
                // Reading the captured table and the view.
                let reads = role == Role::Reader;
                check("SELECT count(*), sum(amount) FROM orders".into(), expect(reads)).await;
                check("SELECT status, n, total FROM per_status ORDER BY status".into(), expect(reads)).await;
                check(
                    "SELECT o.status, p.n FROM orders o JOIN per_status p USING (status) WHERE o.id < 50".into(),
                    expect(reads),
                )
                .await;
                match &point {
                    Ok(st) => match c.query(st, &[&((round as i64 * 7 + i as i64) % 40 + 1)]).await {
                        Ok(_) => assert!(reads, "{user} read orders through a prepared lookup"),
                        Err(e) => {
                            assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("42501"), "{user}: {e:?}");
                            assert!(!reads, "{user}: {e:?}");
                        }
                    },
                    Err(e) => {
                        assert!(!reads, "{user} could not prepare: {e:?}");
                        assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("42501"), "{user}: {e:?}");
                    }
                }
                // Writing the local table.
                let writes = role == Role::Writer;
                check(format!("INSERT INTO notes VALUES ('{user}{i}', {round}, 'round {round}')"), expect(writes))
                    .await;
                written += u64::from(writes);
                check("SELECT count(*) FROM notes".into(), expect(writes)).await;
                // Nobody but the owner changes what others own or who they are.
                check("DELETE FROM orders".into(), "42501").await;
                check("ALTER USER admin PASSWORD 'pwned'".into(), "42501").await;
                check("GRANT SELECT ON notes TO nobody".into(), "42501").await;
                // Hostile now and then: bounded, answered, and nobody else is disturbed.
                if round % 4 == (i as u64) % 4 {
                    let deep = format!("SELECT {}", vec!["1"; 3000].join(" + "));
                    let got = outcome(&c, &deep).await;
                    assert!(got == "ok" || got == "54001", "{user}: a deep expression answered {got}");
                    check("SET statement_timeout = '50ms'".into(), "ok").await;
                    check("SELECT count(*) FROM generate_series(1, 100000000000)".into(), "57014").await;
                    check("SET statement_timeout = 0".into(), "ok").await;
                    check("SELEC 1".into(), "42601").await;
                }
                statements.fetch_add(11, Ordering::Relaxed);
            }
            (role, written)
        }));
    }
    let mut notes_written = 0;
    for c in clients {
        let (_, w) = c.await.expect("a client panicked");
        notes_written += w;
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let transactions = upstream.await.unwrap();
    eprintln!(
        "{CLIENTS} clients, {} statements in {:.1} s while {transactions} upstream inserts were captured",
        statements.load(Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    assert!(transactions > 0, "the source ingested nothing during the soak");

    // Nothing lost: the local writes, and the captured table and view equal upstream.
    let notes: i64 = admin.query_one("SELECT count(*) FROM notes", &[]).await.unwrap().get(0);
    assert_eq!(notes as u64, notes_written);
    admin.batch_execute("SET real_time_recency = on; SET real_time_recency_timeout = '60s'").await.unwrap();
    let want = my_rows(&mut my, "SELECT status, COUNT(*), SUM(amount) FROM shop.orders GROUP BY status").await;
    let mut got: Vec<String> = crate::common::joined_rows(&admin, "SELECT status, n, total FROM per_status").await;
    got.sort();
    assert_eq!(got, want, "the view equals upstream");
    let count: i64 = admin.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    let upstream_count: Vec<String> = my_rows(&mut my, "SELECT COUNT(*) FROM shop.orders").await;
    assert_eq!(vec![count.to_string()], upstream_count);
    // Still serving: a new login answers.
    let late = login(port, "reader", "r-pw").await;
    assert_eq!(outcome(&late, "SELECT 1").await, "ok");
    server.shutdown().await.unwrap();
}
