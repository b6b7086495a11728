#![allow(dead_code)]

//! The real `headwater` binary as a child process, for tests that `kill -9` it or start it
//! on a bad data directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `headwater serve`.
pub struct HwProcess {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The command line of `headwater serve` on `data_dir`, logging to `log`.
pub fn command(data_dir: &Path, port: u16, log: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headwater"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(if extra.contains(&"--log-level") { &[][..] } else { &["--log-level", "info"][..] })
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file"));
    cmd
}

impl HwProcess {
    /// Starts the server and waits until it accepts Postgres connections (60 s deadline).
    pub async fn start(data_dir: &Path, log: &Path, extra: &[&str]) -> HwProcess {
        Self::start_with_env(data_dir, log, extra, &[]).await
    }

    /// [`HwProcess::start`] with environment variables set for the server.
    pub async fn start_with_env(data_dir: &Path, log: &Path, extra: &[&str], env: &[(&str, &str)]) -> HwProcess {
        let port = free_port();
        let mut cmd = command(data_dir, port, log, extra);
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("spawn headwater");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("headwater exited with {status} at start-up:\n{}", tail(log));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return HwProcess { child, port, log: log.to_path_buf() };
            }
            assert!(Instant::now() < deadline, "headwater did not listen within 60s:\n{}", tail(log));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A connected tokio-postgres client.
    pub async fn client(&self) -> tokio_postgres::Client {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.port).user("tester").dbname("headwater");
        let (client, conn) = c.connect(tokio_postgres::NoTls).await.expect("connect to headwater");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// `kill -9`: no shutdown, no last checkpoint.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().expect("wait for headwater")
    }
}

impl Drop for HwProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log file.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
