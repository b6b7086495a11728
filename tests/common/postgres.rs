#![allow(dead_code)]

//! A real PostgreSQL, started on a free port in a temporary directory: the reference for
//! SQL answers in differential tests (issue 31).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PostgreSQL, stopped when dropped.
pub struct Postgres {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// The newest installed server's `bin` directory (Debian: /usr/lib/postgresql/NN/bin).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("postgres").exists()).collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect("PostgreSQL is not installed: run `apt-get install postgresql` (scripts/test.sh does this)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `program` with `args`, as the `postgres` system user when running as root (initdb and the
/// server refuse to run as root).
fn as_server_user(program: &Path, args: &[&str]) -> Command {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false) || unsafe_is_root();
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl Postgres {
    /// initdb's a fresh cluster and starts it; panics with what to install if Postgres is
    /// missing.
    pub async fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("hw-pg").tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        if unsafe_is_root() {
            let owned = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(owned.success(), "chown of the Postgres data directory failed");
        }
        let data_s = data.to_str().unwrap();
        let out = as_server_user(
            &bin.join("initdb"),
            &["-D", data_s, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"],
        )
        .output()
        .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = Postgres { port: 0, child: None, _dir: dir };
        // The free port may be taken by another test's server before this one binds it: then
        // the server exits, and another port is tried.
        for _ in 0..5 {
            pg.port = free_port();
            let (port, socket_dir) = (pg.port.to_string(), pg._dir.path().to_str().unwrap().to_string());
            let args =
                ["-D", data_s, "-p", &port, "-k", &socket_dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"];
            let child = as_server_user(&bin.join("postgres"), &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start postgres");
            pg.child = Some(child);
            if pg.wait_ready().await {
                return pg;
            }
            pg.stop();
        }
        panic!("PostgreSQL did not start (5 attempts)");
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // exited: most likely the port was taken
            }
            if self.try_connect().await.is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn try_connect(&self) -> Option<tokio_postgres::Client> {
        let config = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port);
        let (client, conn) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.ok()?;
        tokio::spawn(conn);
        Some(client)
    }

    /// A client of the reference server.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.try_connect().await.expect("connect to PostgreSQL")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // runuser forwards SIGTERM to postgres: a fast shutdown.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
