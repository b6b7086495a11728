//! The statement path past the parser: every read-only statement (`SELECT`, `VALUES`,
//! `WITH`, `TABLE`, `EXPLAIN`, `SHOW`) is planned by DataFusion with Headwater's rewrites and
//! run against an engine holding tables of every common type and a materialized view, under a
//! 250 ms deadline and small memory limits. A panic, an abort, a stack overflow or a leak is a
//! finding; so is an error with SQLSTATE XX000 for an input a user can type — those are
//! appended to `fuzz/queries_internal.log` (statement and message) rather than stopping the
//! run, and counted by `scripts/fuzz.sh`.
//!
//! Statements that write (DML, DDL, `SELECT ... INTO`, settings) are skipped, so every input
//! meets the same state and a finding replays.
#![no_main]

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use headwater::sql::{memory::MemoryLimits, Engine, HwStatement};
use headwater::state::{CheckpointedStore, MemoryStore};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    engine: Arc<Engine>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

const SETUP: &str = "
CREATE TABLE t (id int PRIMARY KEY, a int, b text, c numeric(12,2), d timestamptz, e jsonb, f float8, g boolean, h date, i bigint[]);
INSERT INTO t SELECT n, n % 7, 'row ' || n, n * 1.25, timestamptz '2024-01-01 00:00:00+00' + (n || ' hours')::interval,
  ('{\"k\": ' || n || ', \"tags\": [\"x\", \"y\"]}')::jsonb, n / 3.0, n % 2 = 0, date '2024-01-01' + n, ARRAY[n, n + 1]
  FROM generate_series(1, 64) AS s(n);
INSERT INTO t (id) VALUES (0);
CREATE TABLE u (id bigint PRIMARY KEY, t_id int, name varchar(20), amount numeric);
INSERT INTO u SELECT n, n % 65, 'u' || n, n * 0.5 FROM generate_series(1, 200) AS s(n);
CREATE MATERIALIZED VIEW by_a AS SELECT t.a, count(*) AS n, sum(u.amount) AS total FROM t JOIN u ON u.t_id = t.id GROUP BY t.a;
";

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(headwater::sql::STACK_BYTES)
            .enable_all()
            .build()
            .expect("runtime");
        let engine = runtime.block_on(async {
            let engine = Engine::open(Arc::new(CheckpointedStore::new(Arc::new(MemoryStore::default()))))
                .await
                .expect("engine");
            engine.limit_memory(MemoryLimits::new(64 << 20, 256 << 20));
            engine.session().execute_sql(SETUP).await.expect("fixture");
            engine
        });
        Fixture { runtime, engine }
    })
}

/// Words that make a statement write (or change the session) somewhere in its text.
const WRITES: &[&str] = &[
    "insert", "update", "delete", "merge", "drop", "create", "alter", "truncate", "copy", "grant", "revoke",
    "into", "set", "reset", "begin", "commit", "rollback", "prepare", "execute", "declare", "lock", "vacuum",
    "pg_terminate_backend", "pg_cancel_backend",
];

fn read_only(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let first = lower.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
    ["select", "values", "with", "table", "explain", "show"].iter().any(|k| first.starts_with(k))
        && !WRITES.iter().any(|w| lower.contains(w))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if !read_only(text) {
        return;
    }
    let fixture = fixture();
    let engine = fixture.engine.clone();
    let Ok(statements) = engine.parser().parse(text) else { return };
    let [statement @ HwStatement::Sql(_)] = statements.as_slice() else { return };
    let statement = statement.clone();
    let outcome = fixture.runtime.block_on(async move {
        // On a worker: its stack is the server's (deep plans), not libFuzzer's main thread's.
        tokio::spawn(async move {
            let session = engine.session();
            tokio::time::timeout(Duration::from_millis(250), session.execute(&statement, None)).await
        })
        .await
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => return,
    };
    if let Ok(Err(e)) = outcome {
        if e.sqlstate() == "XX000" {
            if let Ok(mut log) =
                std::fs::OpenOptions::new().create(true).append(true).open("fuzz/queries_internal.log")
            {
                let _ = writeln!(log, "{}\t{}", text.replace(['\n', '\t'], " "), e.to_string().replace('\n', " "));
            }
        }
    }
});
