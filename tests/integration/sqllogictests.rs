//! Runs every `sql-tests/**/*.slt` file over the Postgres wire protocol against an in-process
//! server, once with the simple and once with the extended query protocol.
//!
//! A line `# headwater: restart` in a file stops the server (flushing its state) and starts a
//! new one on the same data directory; the rest of the file runs against the new server.
//! Files under `sql-tests/mysql/` get a real MariaDB (binlog on, started once for the run):
//! its port is `${MYSQL_PORT}` in statements (with `control substitution on`) and `$MYSQL_PORT`
//! in `system ok` lines (the runner's plain replacement; no process-wide environment variable, as
//! the other integration tests run in the same process), which drive it
//! with the `mariadb` client, and `real_time_recency` makes the checks wait deterministically.
//! `HEADWATER_SLT=FILTER cargo test --test integration sqllogictests` runs only files whose
//! path contains FILTER.

use crate::common;

use std::path::{Path, PathBuf};

use common::mariadb::MariaDb;
use common::TestServer;
use sqllogictest::{DefaultColumnType, Runner};
use sqllogictest_engines::postgres::{PostgresExtended, PostgresSimple};

const RESTART_MARKER: &str = "# headwater: restart";

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("sql-tests dir").flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "slt") {
            out.push(p);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Simple,
    Extended,
}

async fn run_segment(
    server: &TestServer,
    protocol: Protocol,
    name: &str,
    script: &str,
    mysql_port: Option<u16>,
) -> Result<(), String> {
    let config = server.pg_config();
    let port = mysql_port.map(|p| p.to_string()).unwrap_or_default();
    let result = match protocol {
        Protocol::Simple => {
            let mut runner = Runner::new(move || {
                let c = config.clone();
                async move { PostgresSimple::connect(c).await }
            });
            runner.add_label("simple");
            runner.set_var("MYSQL_PORT".into(), port.clone());
            runner.with_column_validator(|_: &Vec<DefaultColumnType>, _| true);
            runner.run_script_with_name_async(script, name).await
        }
        Protocol::Extended => {
            let mut runner = Runner::new(move || {
                let c = config.clone();
                async move { PostgresExtended::connect(c).await }
            });
            runner.add_label("extended");
            runner.set_var("MYSQL_PORT".into(), port.clone());
            runner.with_column_validator(|_: &Vec<DefaultColumnType>, _| true);
            runner.run_script_with_name_async(script, name).await
        }
    };
    result.map_err(|e| e.display(true).to_string())
}

async fn run_file(path: &Path, protocol: Protocol, mysql_port: Option<u16>) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    let mut server = TestServer::start().await;
    for (i, segment) in text.split(RESTART_MARKER).enumerate() {
        if i > 0 {
            server.restart().await;
        }
        run_segment(&server, protocol, &name, segment, mysql_port).await?;
    }
    if let Some(s) = server.server.take() {
        s.shutdown().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn sqllogictests() {
    let filter: Option<String> = std::env::var("HEADWATER_SLT").ok().filter(|f| !f.is_empty());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql-tests");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    files.retain(|f| filter.as_ref().is_none_or(|flt| f.display().to_string().contains(flt.as_str())));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let needs_mysql = files.iter().any(|f| f.components().any(|c| c.as_os_str() == "mysql"));
    let mariadb = needs_mysql.then(|| rt.block_on(MariaDb::start()));
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        for protocol in [Protocol::Simple, Protocol::Extended] {
            let rel = file.strip_prefix(&root).unwrap_or(file).display().to_string();
            let port = mariadb.as_ref().map(|m| m.port);
            match rt.block_on(run_file(file, protocol, port)) {
                Ok(()) => {
                    passed += 1;
                    println!("ok     {rel} ({protocol:?})");
                }
                Err(e) => {
                    failed += 1;
                    println!("FAILED {rel} ({protocol:?})\n{e}");
                }
            }
        }
    }
    println!("sqllogictest: {passed} passed, {failed} failed");
    assert!(!files.is_empty(), "no .slt file matches HEADWATER_SLT={filter:?}");
    assert_eq!(failed, 0, "{failed} sqllogictest file(s) failed (see the output above)");
}
