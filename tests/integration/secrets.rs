//! Secrets (issue 30: a MySQL connection's password sat in clear in the store's journal, in a
//! 0644 file of a 0755 directory, and `--log-level debug` printed it with CREATE USER
//! passwords). The real binary, at debug level: secrets work for sources, survive a restart,
//! and appear in no file of the data directory, no log line and no query result.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common;
use crate::common::mariadb::MariaDb;
use crate::common::process::HwProcess;

const UPSTREAM_PASSWORD: &str = "Upstream-S3cret-4711";
const INLINE_PASSWORD: &str = "Inline-S3cret-0815";
const USER_PASSWORD: &str = "Login-S3cret-2342";

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

fn modes(dir: &Path, out: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        out.push((path.display().to_string(), mode));
        if path.is_dir() {
            modes(&path, out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_secret_at_rest_in_logs_and_in_results() {
    let db = MariaDb::start().await;
    let mut up = db.root().await;
    use mysql_async::prelude::Queryable;
    up.query_drop(format!(
        "CREATE USER 'vault'@'%' IDENTIFIED BY '{UPSTREAM_PASSWORD}'; \
         GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'vault'@'%'; \
         CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name TEXT); \
         INSERT INTO shop.items VALUES (1, 'one')"
    ))
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (data, log) = (tmp.path().join("data"), tmp.path().join("log"));
    let debug = ["--log-level", "debug"];
    let hw = HwProcess::start(&data, &log, &debug).await;
    let c = hw.client().await;
    c.batch_execute(&format!(
        "CREATE SECRET upstream_pw AS '{UPSTREAM_PASSWORD}'; \
         CREATE CONNECTION up TO MYSQL (HOST '127.0.0.1', PORT {port}, USER 'vault', PASSWORD SECRET upstream_pw); \
         CREATE CONNECTION inline TO MYSQL (HOST '127.0.0.1', PORT {port}, USER 'vault', PASSWORD '{INLINE_PASSWORD}'); \
         CREATE USER someone PASSWORD '{USER_PASSWORD}'; \
         CREATE SOURCE shop FROM MYSQL CONNECTION up FOR TABLES (shop.items)",
        port = db.port
    ))
    .await
    .unwrap();
    common::wait_for_rows(&c, "SELECT id, name FROM items", &["1|one"]).await;
    // Nothing a query returns shows a secret.
    let shown = common::joined_rows(&c, "SHOW CREATE SECRET upstream_pw").await;
    assert_eq!(shown, ["upstream_pw|CREATE SECRET upstream_pw AS '********'"]);
    let shown = common::joined_rows(&c, "SHOW CREATE CONNECTION up").await.join(" ");
    assert!(shown.contains("PASSWORD SECRET upstream_pw"), "{shown}");
    let shown = common::joined_rows(&c, "SHOW CREATE CONNECTION inline").await.join(" ");
    assert!(shown.contains("PASSWORD '********'") && !shown.contains(INLINE_PASSWORD), "{shown}");
    assert_eq!(common::joined_rows(&c, "SHOW SECRETS").await, ["upstream_pw"]);
    // The secret is in use: it cannot go without CASCADE.
    let e = c.batch_execute("DROP SECRET upstream_pw").await.expect_err("a connection uses it");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("2BP01"));

    // A restart (kill -9) decrypts it again: the source goes on.
    hw.kill9();
    let hw = HwProcess::start(&data, &log, &debug).await;
    let c = hw.client().await;
    up.query_drop("INSERT INTO shop.items VALUES (2, 'two')").await.unwrap();
    common::wait_for_rows(&c, "SELECT id, name FROM items ORDER BY id", &["1|one", "2|two"]).await;
    // ALTER SECRET: a wrong password makes a new source fail to log in upstream (it is used).
    c.batch_execute("ALTER SECRET upstream_pw AS 'wrong-password'").await.unwrap();
    let e = c.batch_execute("CREATE SOURCE again FROM MYSQL CONNECTION up FOR TABLES (shop.items AS items2)").await;
    assert!(e.is_err(), "the altered secret is the one used");
    c.batch_execute(&format!("ALTER SECRET upstream_pw AS '{UPSTREAM_PASSWORD}'")).await.unwrap();
    assert_eq!(hw.stop().code(), Some(0));

    for secret in [UPSTREAM_PASSWORD, INLINE_PASSWORD, USER_PASSWORD] {
        assert_eq!(files_containing(&data, secret), Vec::<String>::new(), "{secret} is stored in clear");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(!logged.contains(secret), "{secret} is in the debug log");
    }
    let mut all = Vec::new();
    modes(&data, &mut all);
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    let open: Vec<&(String, u32)> = all.iter().filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(open.is_empty(), "files others may read: {open:?}");
    assert!(all.iter().any(|(p, m)| p.ends_with("secrets.key") && *m == 0o600), "{all:?}");
}

/// The key can live outside the data directory; without it, secrets cannot be read, and the
/// error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_can_be_kept_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, log) = (tmp.path().join("data"), tmp.path().join("log"));
    let key = tmp.path().join("elsewhere.key");
    std::fs::write(&key, "a passphrase of sufficient length").unwrap();
    let with_key = ["--secrets-key-file", key.to_str().unwrap()];
    let hw = HwProcess::start(&data, &log, &with_key).await;
    let c = hw.client().await;
    c.batch_execute(
        "CREATE SECRET s AS 'x-value'; CREATE CONNECTION k TO KAFKA (BROKER 'localhost:1', SASL_PASSWORD SECRET s)",
    )
    .await
    .unwrap();
    assert_eq!(hw.stop().code(), Some(0));
    assert!(!data.join("secrets.key").exists(), "no key file is made when one is given");
    let hw = HwProcess::start(&data, &log, &with_key).await;
    let c = hw.client().await;
    assert_eq!(common::joined_rows(&c, "SHOW SECRETS").await, ["s"]);
    assert_eq!(hw.stop().code(), Some(0));
}
