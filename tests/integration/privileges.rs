//! Roles and privileges (issue 30: with `--auth password`, user bob read alice's tables and
//! changed her password). Every check is made as a non-superuser logged in with SCRAM,
//! against what Postgres answers: 42501 naming what is missing, until a GRANT.

use headwater::{Config, Server};

use crate::common;

/// The SQLSTATE of a statement's error, or "ok".
async fn outcome(c: &tokio_postgres::Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => e.as_db_error().map_or_else(|| format!("not a server error: {e}"), |d| d.code().code().to_string()),
    }
}

async fn error_of(c: &tokio_postgres::Client, sql: &str) -> (String, String, String) {
    let e = c.simple_query(sql).await.expect_err(sql);
    let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: not a server error: {e}"));
    (d.code().code().to_string(), d.message().to_string(), d.hint().unwrap_or_default().to_string())
}

struct Secure {
    server: Option<Server>,
    port: u16,
    _tmp: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    users_file: std::path::PathBuf,
}

impl Secure {
    async fn start() -> Secure {
        let tmp = tempfile::tempdir().unwrap();
        let users_file = tmp.path().join("users");
        std::fs::write(&users_file, "admin:adm1n-pw\n").unwrap();
        let data_dir = tmp.path().join("data");
        let server = Self::boot(&data_dir, &users_file).await;
        let port = server.local_addr().port();
        Secure { server: Some(server), port, _tmp: tmp, data_dir, users_file }
    }

    async fn boot(data_dir: &std::path::Path, users_file: &std::path::Path) -> Server {
        let config = Config {
            auth: headwater::pgwire::AuthMode::Password,
            users_file: Some(users_file.to_path_buf()),
            ..Config::new("127.0.0.1:0", data_dir)
        };
        Server::start(&config).await.expect("server starts")
    }

    async fn restart(&mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
        let server = Self::boot(&self.data_dir, &self.users_file).await;
        self.port = server.local_addr().port();
        self.server = Some(server);
    }

    async fn try_login(&self, user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.port).user(user).password(password).dbname("headwater");
        let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    async fn login(&self, user: &str, password: &str) -> tokio_postgres::Client {
        self.try_login(user, password).await.unwrap_or_else(|e| panic!("{user} logs in: {e:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_need_grants_and_owners_keep_their_objects() {
    let mut hw = Secure::start().await;
    let admin = hw.login("admin", "adm1n-pw").await;
    admin
        .batch_execute(
            "CREATE USER alice PASSWORD 'alice-pw'; CREATE USER bob PASSWORD 'bob-pw'; \
             CREATE ROLE readers; GRANT CREATE ON SCHEMA public TO alice",
        )
        .await
        .unwrap();
    let alice = hw.login("alice", "alice-pw").await;
    let bob = hw.login("bob", "bob-pw").await;
    assert_eq!(common::text_rows(&bob, "SHOW is_superuser").await[0][0], "off");

    // Creating needs CREATE; alice has it, bob does not.
    let (code, message, hint) = error_of(&bob, "CREATE TABLE b (id INT PRIMARY KEY)").await;
    assert_eq!((code.as_str(), message.as_str()), ("42501", "permission denied for schema public"));
    assert!(hint.contains("GRANT CREATE"), "{hint}");
    alice
        .batch_execute(
            "CREATE TABLE orders (id INT PRIMARY KEY, amount INT); INSERT INTO orders VALUES (1, 10), (2, 20); \
             CREATE MATERIALIZED VIEW total AS SELECT sum(amount) AS s FROM orders; \
             CREATE VIEW big AS SELECT * FROM orders WHERE amount > 15",
        )
        .await
        .unwrap();

    // bob reads nothing of alice's, in either protocol, nor through a point lookup.
    let (code, message, hint) = error_of(&bob, "SELECT * FROM orders").await;
    assert_eq!((code.as_str(), message.as_str()), ("42501", "permission denied for table orders"));
    assert!(hint.contains("GRANT SELECT ON orders TO bob") && hint.contains("alice"), "{hint}");
    let prepared = bob.prepare("SELECT amount FROM orders WHERE id = $1").await;
    match prepared {
        Ok(st) => {
            let e = bob.query(&st, &[&1i32]).await.expect_err("a point lookup is checked too");
            assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("42501"));
        }
        Err(e) => assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("42501")),
    }
    for sql in [
        "SELECT * FROM total",
        "SELECT * FROM big",
        "SELECT 1 FROM (SELECT * FROM orders) o",
        "SELECT (SELECT max(id) FROM orders)",
        "EXPLAIN SELECT * FROM orders",
        "INSERT INTO orders VALUES (3, 30)",
        "UPDATE orders SET amount = 0",
        "DELETE FROM orders WHERE id = 1",
        "DROP TABLE orders CASCADE",
        "DROP MATERIALIZED VIEW total",
        "ALTER USER alice PASSWORD 'pwned'",
        "CREATE USER mallory",
        "GRANT SELECT ON orders TO bob",
        "ALTER TABLE orders OWNER TO bob",
    ] {
        assert_eq!(outcome(&bob, sql).await, "42501", "{sql}");
    }
    assert!(hw.try_login("alice", "alice-pw").await.is_ok(), "alice's password is hers");
    // Catalogs stay readable; a role changes its own password.
    assert_eq!(outcome(&bob, "SELECT count(*) FROM pg_catalog.pg_class").await, "ok");
    assert_eq!(outcome(&bob, "ALTER USER bob PASSWORD 'bob-pw2'").await, "ok");
    let bob = hw.login("bob", "bob-pw2").await;

    // A grant opens exactly what it names; PUBLIC and role membership count.
    alice.batch_execute("GRANT SELECT ON orders TO bob").await.unwrap();
    assert_eq!(common::joined_rows(&bob, "SELECT id, amount FROM orders ORDER BY id").await, ["1|10", "2|20"]);
    let st = bob.prepare("SELECT amount FROM orders WHERE id = $1").await.unwrap();
    assert_eq!(bob.query(&st, &[&2i32]).await.unwrap()[0].get::<_, i32>(0), 20);
    assert_eq!(outcome(&bob, "INSERT INTO orders VALUES (3, 30)").await, "42501");
    assert_eq!(outcome(&bob, "SELECT * FROM total").await, "42501");
    alice.batch_execute("GRANT SELECT ON total TO readers; GRANT INSERT, UPDATE ON orders TO PUBLIC").await.unwrap();
    admin.batch_execute("GRANT readers TO bob").await.unwrap();
    assert_eq!(common::joined_rows(&bob, "SELECT s FROM total").await, ["30"]);
    bob.batch_execute("INSERT INTO orders VALUES (3, 30); UPDATE orders SET amount = amount + 1 WHERE id = 3")
        .await
        .unwrap();
    assert_eq!(outcome(&bob, "DELETE FROM orders").await, "42501");
    // What clients read: has_table_privilege, information_schema, pg_class.relacl (\dp).
    let has = common::joined_rows(
        &bob,
        "SELECT has_table_privilege('orders', 'SELECT'), has_table_privilege('orders', 'DELETE'), \
         has_table_privilege('alice', 'orders', 'DELETE'), has_schema_privilege('public', 'CREATE')",
    )
    .await;
    assert_eq!(has, ["t|f|t|f"]);
    let grants = common::joined_rows(
        &admin,
        "SELECT grantee, privilege_type FROM information_schema.table_privileges \
         WHERE table_name = 'orders' AND grantee <> 'alice' ORDER BY 1, 2",
    )
    .await;
    assert_eq!(grants, ["PUBLIC|INSERT", "PUBLIC|UPDATE", "bob|SELECT"]);
    let acl =
        common::joined_rows(&admin, "SELECT array_to_string(relacl, ',') FROM pg_class WHERE relname = 'orders'").await;
    assert_eq!(acl, ["alice=arwdDxt/alice,=aw/alice,bob=r/alice"]);

    // Revoked, gone; memberships and grants survive a restart.
    alice.batch_execute("REVOKE INSERT, UPDATE ON orders FROM PUBLIC").await.unwrap();
    assert_eq!(outcome(&bob, "INSERT INTO orders VALUES (4, 40)").await, "42501");
    hw.restart().await;
    let bob = hw.login("bob", "bob-pw2").await;
    let alice = hw.login("alice", "alice-pw").await;
    assert_eq!(common::joined_rows(&bob, "SELECT s FROM total").await, ["61"]);
    assert_eq!(outcome(&bob, "INSERT INTO orders VALUES (4, 40)").await, "42501");
    assert_eq!(outcome(&bob, "DROP TABLE orders CASCADE").await, "42501");

    // A role that owns objects cannot be dropped; ownership moves, then it can.
    let admin = hw.login("admin", "adm1n-pw").await;
    let (code, _, hint) = error_of(&admin, "DROP USER alice").await;
    assert_eq!(code, "2BP01");
    assert!(hint.contains("table orders"), "{hint}");
    admin
        .batch_execute(
            "ALTER TABLE orders OWNER TO bob; ALTER MATERIALIZED VIEW total OWNER TO bob; ALTER VIEW big OWNER TO bob",
        )
        .await
        .unwrap();
    assert_eq!(outcome(&alice, "SELECT * FROM orders").await, "42501", "alice no longer owns it");
    assert_eq!(outcome(&bob, "DELETE FROM orders WHERE id = 3").await, "ok", "bob owns it now");
    admin.batch_execute("DROP USER alice").await.unwrap();
    assert!(hw.try_login("alice", "alice-pw").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_attributes_govern_logins_and_role_management() {
    let hw = Secure::start().await;
    let admin = hw.login("admin", "adm1n-pw").await;
    admin
        .batch_execute(
            "CREATE ROLE nologin PASSWORD 'x'; CREATE USER manager CREATEROLE PASSWORD 'm'; \
             CREATE USER builder CREATEDB PASSWORD 'b'",
        )
        .await
        .unwrap();
    let e = hw.try_login("nologin", "x").await.expect_err("a role without LOGIN");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("28000"), "{e:?}");
    let manager = hw.login("manager", "m").await;
    manager.batch_execute("CREATE USER worker PASSWORD 'w'; ALTER USER worker PASSWORD 'w2'").await.unwrap();
    assert_eq!(outcome(&manager, "CREATE USER boss SUPERUSER").await, "42501");
    assert_eq!(outcome(&manager, "ALTER USER admin PASSWORD 'pwned'").await, "42501");
    assert_eq!(outcome(&manager, "ALTER USER worker SUPERUSER").await, "42501");
    assert_eq!(outcome(&manager, "DROP USER admin").await, "42501");
    assert!(hw.try_login("worker", "w2").await.is_ok());
    let builder = hw.login("builder", "b").await;
    builder.batch_execute("CREATE TABLE mine (id INT PRIMARY KEY); INSERT INTO mine VALUES (1)").await.unwrap();
    let worker = hw.login("worker", "w2").await;
    assert_eq!(outcome(&worker, "SELECT * FROM mine").await, "42501");
    assert_eq!(outcome(&worker, "ALTER USER worker CREATEDB").await, "42501");
    manager.batch_execute("DROP USER worker").await.unwrap();
    // A dropped role's open session keeps no rights (it does not become a trust-mode superuser).
    assert_eq!(outcome(&worker, "CREATE TABLE t (id INT)").await, "42501");
    builder.batch_execute("GRANT SELECT ON mine TO PUBLIC").await.unwrap();
    assert_eq!(common::joined_rows(&manager, "SELECT id FROM mine").await, ["1"]);
    // Other roles' sessions: listed, their statements hidden, not to be signalled.
    let admin_pid = common::text_rows(&admin, "SELECT pg_backend_pid()").await[0][0].clone();
    let seen =
        common::joined_rows(&builder, &format!("SELECT query FROM pg_stat_activity WHERE pid = {admin_pid}")).await;
    assert_eq!(seen, ["<insufficient privilege>"]);
    assert_eq!(outcome(&builder, &format!("SELECT pg_cancel_backend({admin_pid})")).await, "42501");
    assert_eq!(outcome(&builder, &format!("SELECT pg_terminate_backend({admin_pid})")).await, "42501");
    let seen = common::joined_rows(&admin, "SELECT query FROM pg_stat_activity WHERE usename = 'builder'").await;
    assert!(seen.len() == 1 && seen[0].contains("pg_terminate_backend"), "a superuser sees it: {seen:?}");
    let roles = common::joined_rows(
        &admin,
        "SELECT rolname, rolsuper, rolcanlogin, rolcreaterole FROM pg_roles \
         WHERE rolname IN ('admin', 'nologin', 'manager') ORDER BY 1",
    )
    .await;
    assert_eq!(roles, ["admin|t|t|t", "manager|f|t|t", "nologin|f|f|f"]);
}

/// The salt the server shows in SCRAM's first message for `user` (a raw exchange: the
/// client libraries hide it).
async fn scram_salt(port: u16, user: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", user), ("database", "headwater")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    s.write_all(&msg).await.unwrap();
    async fn read(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
        let tag = s.read_u8().await.unwrap();
        let len = s.read_i32().await.unwrap() as usize;
        let mut buf = vec![0; len - 4];
        s.read_exact(&mut buf).await.unwrap();
        (tag, buf)
    }
    let (tag, buf) = read(&mut s).await;
    assert_eq!((tag, &buf[..4]), (b'R', &10i32.to_be_bytes()[..]), "AuthenticationSASL");
    let first = b"n,,n=,r=abcdefghijklmnopqrstuvwx";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(&body);
    s.write_all(&msg).await.unwrap();
    let (tag, buf) = read(&mut s).await;
    assert_eq!((tag, &buf[..4]), (b'R', &11i32.to_be_bytes()[..]), "AuthenticationSASLContinue");
    let text = String::from_utf8(buf[4..].to_vec()).unwrap();
    text.split(',').find_map(|f| f.strip_prefix("s=")).expect("a salt").to_string()
}

/// Unknown user names are answered like real ones (issue 30: every unknown name got the same
/// salt within a run, real users each their own), and failed logins slow the next attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_look_like_real_ones_and_guessing_slows_down() {
    let mut hw = Secure::start().await;
    let real = scram_salt(hw.port, "admin").await;
    let ghost = scram_salt(hw.port, "ghost").await;
    let other = scram_salt(hw.port, "phantom").await;
    assert_eq!(ghost.len(), real.len(), "the same shape");
    assert_ne!(ghost, other, "per name");
    assert_eq!(scram_salt(hw.port, "ghost").await, ghost, "stable, as a real user's");
    hw.restart().await;
    assert_eq!(scram_salt(hw.port, "ghost").await, ghost, "stable across restarts");
    assert_eq!(scram_salt(hw.port, "admin").await, real);

    // Failed logins: the fourth attempt waits at least 100 + 200 + 400 ms in all.
    let started = std::time::Instant::now();
    for _ in 0..4 {
        let e = hw.try_login("admin", "wrong").await.expect_err("a wrong password");
        assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("28P01"));
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(700), "{:?}", started.elapsed());
    // The right password still works (after its wait), and resets the count.
    hw.login("admin", "adm1n-pw").await;
    let started = std::time::Instant::now();
    hw.login("admin", "adm1n-pw").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
