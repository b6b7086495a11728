//! Serving: point `SELECT`s by key on a materialized view, driven by pgbench (8 clients,
//! prepared statements), against the same rows and query on PostgreSQL on the same machine
//! in the same run (a materialized view with a unique index — the same shape).
//!
//! Run: `scripts/bench.sh serving` (release; `HEADWATER_BENCH_ROWS`, default 100,000 —
//! pgbench's own scale-1 size). Needs pgbench and the PostgreSQL server
//! (`apt-get install postgresql`; `scripts/bench.sh` installs them).

use crate::common;
use crate::postgres;
use crate::report;

use std::process::Command;

use headwater::{Config, Server};
use report::Stats;

const CLIENTS: usize = 8;
const SETUP: &str = "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT, name TEXT);";
const VIEW: &str = "CREATE MATERIALIZED VIEW account_view AS SELECT id, balance, name FROM accounts WHERE balance >= 0";
const QUERY: &str = "SELECT id, balance, name FROM account_view WHERE id = ";

struct Run {
    tps: f64,
    latency_ms: f64,
}

/// One pgbench run as `user`; panics unless every transaction succeeded.
fn pgbench(port: u16, db: &str, user: &str, script: &std::path::Path, seconds: u64) -> Run {
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-U", user, "-n", "-M", "prepared", "-j", "2"])
        .args(["-p", &port.to_string(), "-c", &CLIENTS.to_string(), "-T", &seconds.to_string()])
        .arg("-f")
        .arg(script)
        .arg(db)
        .output()
        .expect("pgbench not found: apt-get install postgresql-client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pgbench failed:\n{text}");
    assert!(text.contains("number of failed transactions: 0 "), "pgbench saw failed transactions:\n{text}");
    let number_after = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"));
        line[prefix.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    Run { tps: number_after("tps = "), latency_ms: number_after("latency average = ") }
}

/// The rows both systems answer for a few keys, as text (they must agree).
async fn sample(c: &tokio_postgres::Client, rows: u64) -> Vec<String> {
    let mut out = Vec::new();
    for id in [1, rows / 2, rows, rows + 1] {
        for row in c.query(&format!("{QUERY}$1"), &[&(id as i64)]).await.unwrap() {
            let (a, b, n): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
            out.push(format!("{a}|{b}|{n}"));
        }
    }
    out
}

pub fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let rows = report::rows(100_000, 1_000);
    let seconds: u64 = if report::quick() { 2 } else { 10 };
    let runs = report::runs(5, 1);
    let load = format!(
        "INSERT INTO accounts SELECT value, value % 10000, 'account-' || value FROM generate_series(1, {rows}) AS g(value)"
    );

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&Config::new("127.0.0.1:0", dir.path().join("d"))).await.unwrap();
    let hw_port = server.local_addr().port();
    let hw = common::client(hw_port).await;
    hw.batch_execute(SETUP).await.unwrap();
    hw.batch_execute(&load).await.unwrap();
    hw.batch_execute(VIEW).await.unwrap();
    // A role that reads by a grant: every statement's privilege check runs (the `bench` user
    // of trust mode is no role, so a superuser: one lookup).
    hw.batch_execute("CREATE USER reader; GRANT SELECT ON account_view TO reader").await.unwrap();

    let pg = postgres::Postgres::start();
    let pgc = pg.client().await;
    pgc.batch_execute(SETUP).await.unwrap();
    pgc.batch_execute(&load.replace(" AS g(value)", " AS value")).await.unwrap();
    pgc.batch_execute(&format!("{VIEW}; CREATE UNIQUE INDEX ON account_view (id)")).await.unwrap();
    pgc.batch_execute("VACUUM ANALYZE").await.unwrap();

    let (ours, theirs) = (sample(&hw, rows).await, sample(&pgc, rows).await);
    assert_eq!(ours.len(), 3, "Headwater's view lacks rows: {ours:?}");
    assert_eq!(ours, theirs, "Headwater and PostgreSQL disagree");

    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("point.sql");
    std::fs::write(&script, format!("\\set id random(1, {rows})\n{QUERY}:id;\n")).unwrap();

    // Warm up both, then alternate runs so neither gets a quieter machine.
    let (mut hw_runs, mut pg_runs) = (Vec::new(), Vec::new());
    let s = script.clone();
    let pg_port = pg.port;
    let measured = tokio::task::spawn_blocking(move || {
        pgbench(hw_port, "headwater", "bench", &s, 1);
        pgbench(hw_port, "headwater", "reader", &s, 1);
        pgbench(pg_port, "postgres", "bench", &s, 1);
        let mut out = Vec::new();
        for _ in 0..runs {
            out.push((
                pgbench(hw_port, "headwater", "bench", &s, seconds),
                pgbench(hw_port, "headwater", "reader", &s, seconds),
                pgbench(pg_port, "postgres", "bench", &s, seconds),
            ));
        }
        out
    })
    .await
    .unwrap();
    let mut granted_runs = Vec::new();
    for (h, g, p) in measured {
        println!(
            "Headwater {:.0} tps ({:.3} ms), as a granted role {:.0} tps, PostgreSQL {:.0} tps ({:.3} ms)",
            h.tps, h.latency_ms, g.tps, p.tps, p.latency_ms
        );
        hw_runs.push(h);
        granted_runs.push(g);
        pg_runs.push(p);
    }
    let tps = |v: &[Run]| Stats::of(&v.iter().map(|r| r.tps).collect::<Vec<_>>());
    let lat = |v: &[Run]| Stats::of(&v.iter().map(|r| r.latency_ms).collect::<Vec<_>>());
    let (h, p, g) = (tps(&hw_runs), tps(&pg_runs), tps(&granted_runs));
    let body = format!(
        "## Serving: point SELECT by key on a materialized view ({rows} rows)\n\n\
         `pgbench -M prepared -c {CLIENTS} -j 2 -T {seconds}` running `{QUERY}:id` (random id) against \
         Headwater and against PostgreSQL {} (same rows, `CREATE MATERIALIZED VIEW` + unique index, \
         fsync off) on the same machine, runs alternated after a warm-up; {runs} runs each, median (min–max). \
         Reproduce with `scripts/bench.sh serving` (`HEADWATER_BENCH_ROWS` changes the size). Machine: {}.\n\n\
         | what | transactions/s | mean latency (ms) | vs baseline |\n|---|---|---|---|\n\
         | baseline: PostgreSQL | {p} | {:.3} | 1.00× |\n\
         | Headwater | {h} | {:.3} | {:.3}× |\n\
         | Headwater, as a role reading by a `GRANT SELECT` (privileges checked per statement) | {g} | {:.3} | {:.3}× |\n",
        pg.version(),
        report::machine(),
        lat(&pg_runs),
        lat(&hw_runs),
        h.median / p.median,
        lat(&granted_runs),
        g.median / p.median,
    );
    println!("{body}");
    report::write_section("serving", &body);
    drop(pgc);
    drop(pg);
    server.shutdown().await.unwrap();
}
