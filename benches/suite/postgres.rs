//! A throwaway PostgreSQL server for baselines: its own cluster in a temporary directory, a
//! free port, trust authentication, stopped on drop. Needs the `postgresql` Debian package
//! (`scripts/bench.sh` installs it). As root the server runs as the `postgres` user, the only
//! way PostgreSQL agrees to start.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("PostgreSQL server not installed: run `apt-get install postgresql` (scripts/bench.sh does this)")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root.
fn run(bin: &Path, tool: &str, args: &[&str]) {
    let exe = bin.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(
        out.status.success(),
        "{tool} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// initdb + start on a free port; `bench` is the superuser, database `postgres`.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("hw-bench-pg").tempdir().unwrap();
        let data = dir.path().join("data");
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown of the PostgreSQL directory failed");
            // The temporary directory is private to root by default.
            let _ = Command::new("chmod").args(["755"]).arg(dir.path()).status();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = data.to_str().unwrap();
        run(&bin, "initdb", &["-D", d, "-U", "bench", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.path().display());
        let log = dir.path().join("postgres.log");
        run(&bin, "pg_ctl", &["-D", d, "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
        Postgres { port, bin, data, _dir: dir }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=bench dbname=postgres", self.port),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        c
    }

    /// The server's major version, e.g. "15".
    pub fn version(&self) -> String {
        self.bin.parent().and_then(|p| p.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        run(&self.bin, "pg_ctl", &["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}
