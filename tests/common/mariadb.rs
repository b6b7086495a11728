#![allow(dead_code)]

//! A real MariaDB server with binlog on, started on a free port in a temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// A running MariaDB, stopped when dropped.
pub struct MariaDb {
    pub port: u16,
    child: Option<Child>,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    for n in names {
        for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
            let p = PathBuf::from(dir).join(n);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

/// The server's configuration: binlog on, as the product needs it, on `port`.
fn write_config(config: &std::path::Path, d: &std::path::Path, port: u16) {
    std::fs::write(
        config,
        format!(
            "[mariadbd]\nuser=root\ndatadir={d}/data\nsocket={d}/run/mysqld.sock\nport={port}\n\
             bind-address=127.0.0.1\ntmpdir={d}/tmp\nserver_id=1\nlog_bin={d}/binlog/mariadb-bin\nbinlog_format=ROW\n\
             binlog_row_image=FULL\nbinlog_row_metadata=FULL\ncharacter-set-server=utf8mb4\n\
             collation-server=utf8mb4_general_ci\nskip-name-resolve\ninnodb_buffer_pool_size=64M\n\
             innodb_log_file_size=16M\n[client]\nsocket={d}/run/mysqld.sock\n",
            d = d.display()
        ),
    )
    .unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl MariaDb {
    /// Installs a fresh data directory and starts the server; panics with what to install if
    /// MariaDB is missing.
    pub async fn start() -> MariaDb {
        find(&["mariadbd", "mysqld"])
            .expect("MariaDB is not installed: run `apt-get install mariadb-server` (scripts/test.sh does this)");
        let install = find(&["mariadb-install-db", "mysql_install_db"]).expect("mariadb-install-db not found");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["data", "run", "binlog", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let config = d.join("my.cnf");
        write_config(&config, d, free_port());
        let out = Command::new(&install)
            .arg(format!("--defaults-file={}", config.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .output()
            .expect("run mariadb-install-db");
        assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut db = MariaDb { port: 0, child: None, config, _dir: dir };
        // The free port may be taken by another test's server before this one binds it: then
        // this server exits, and another port is tried.
        for attempt in 0.. {
            db.port = free_port();
            write_config(&db.config, db._dir.path(), db.port);
            if db.try_spawn().await {
                break;
            }
            assert!(attempt < 5, "MariaDB could not bind a free port in 6 attempts");
        }
        db.root()
            .await
            .query_drop(
                "CREATE USER 'cdc'@'%' IDENTIFIED BY 'pw'; \
                 GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'cdc'@'%'",
            )
            .await
            .unwrap();
        db
    }

    /// Starts the server process on the existing data directory.
    pub async fn spawn(&mut self) {
        assert!(self.try_spawn().await, "MariaDB exited at start (port {} taken?)", self.port);
    }

    /// Starts the server process; false when it exited instead of serving (its port taken).
    async fn try_spawn(&mut self) -> bool {
        let server = find(&["mariadbd", "mysqld"]).unwrap();
        let child = Command::new(server)
            .arg(format!("--defaults-file={}", self.config.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let datadir = self._dir.path().join("data");
        loop {
            if self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                self.child = None;
                return false;
            }
            let opts = self.opts("root", "");
            if let Ok(mut c) = mysql_async::Conn::new(opts).await {
                // The server answering must be this one (not another test's on a reused port).
                let dir: Option<String> = c.query_first("SELECT @@datadir").await.ok().flatten();
                let _ = c.disconnect().await;
                if dir.is_some_and(|d| std::path::Path::new(&d) == datadir) {
                    return true;
                }
            }
            assert!(Instant::now() < deadline, "MariaDB did not accept connections within 60s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_kill(child.id());
            let _ = child.wait();
        }
    }

    /// Restarts the server on the same data directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub fn opts(&self, user: &str, password: &str) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .into()
    }

    /// A root connection.
    pub async fn root(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.opts("root", "")).await.expect("root connection")
    }

    /// `CREATE CONNECTION` text for Headwater.
    pub fn connection_sql(&self, name: &str) -> String {
        format!("CREATE CONNECTION {name} TO MYSQL (HOST '127.0.0.1', PORT {}, USER 'cdc', PASSWORD 'pw')", self.port)
    }
}

fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Rows of a MariaDB query as text cells joined with `|` (NULL as "NULL"), sorted.
pub async fn my_rows(c: &mut mysql_async::Conn, sql: &str) -> Vec<String> {
    let rows: Vec<mysql_async::Row> = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.as_ref(i) {
                    Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => "NULL".to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}
