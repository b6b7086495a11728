//! Sinks under `kill -9`: the real `headwater` binary streams a counter table to Kafka (the
//! mock cluster, in this process) while clients increment counters; it is killed at random
//! moments and restarted. At the end a read_committed consumer must see, per key, exactly one
//! snapshot message and then every increment once, in order (exactly-once), and the
//! at-least-once sink must have delivered every value, ending at the table's.
//!
//! The same for Kafka sources (`kafka_source_survives_kill9_exactly_once`).
//!
//! `HEADWATER_SINK_KILLS` sets the number of kills (default 4).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::MockKafka;
use common::process::{tail, HwProcess};

const KEYS: u64 = 20;

async fn increments(port: u16, seed: u64, stop: Arc<AtomicBool>) {
    let mut r = common::Rng(seed);
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1").port(port).user("tester").dbname("headwater");
    let Ok((client, conn)) = c.connect(tokio_postgres::NoTls).await else { return };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    while !stop.load(Ordering::SeqCst) {
        let k = r.below(KEYS);
        // The server may be killed under us: an error ends this client.
        if client.batch_execute(&format!("UPDATE counters SET v = v + 1 WHERE id = {k}")).await.is_err() {
            return;
        }
    }
}

async fn wait_idle(c: &tokio_postgres::Client, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = common::text_rows(c, "SELECT name, state, pending_commits, last_error FROM hw_catalog.sinks").await;
        if rows.len() == 2 && rows.iter().all(|r| r[1] == "running" && r[2] == "0") {
            return;
        }
        assert!(Instant::now() < deadline, "sinks not idle within 90s: {rows:?}\n{}", tail(log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_survive_kill9_exactly_once_and_at_least_once() {
    let kills: usize = std::env::var("HEADWATER_SINK_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let kafka = MockKafka::start();
    kafka.topic("counters", 3);
    kafka.topic("counters_alo", 2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("headwater.log");
    let args = ["--checkpoint-interval", "100ms"];
    let mut hw = HwProcess::start(&data, &log, &args).await;
    {
        let c = hw.client().await;
        let values: Vec<String> = (0..KEYS).map(|k| format!("({k}, 0)")).collect();
        c.batch_execute(&format!(
            "CREATE TABLE counters (id INT PRIMARY KEY, v INT);
             INSERT INTO counters VALUES {};
             CREATE CONNECTION k TO KAFKA (BROKER '{}');
             CREATE SINK eo FROM counters INTO KAFKA CONNECTION k (TOPIC 'counters') ENVELOPE DEBEZIUM;
             CREATE SINK alo FROM counters INTO KAFKA CONNECTION k (TOPIC 'counters_alo') ENVELOPE UPSERT
               WITH (DELIVERY = 'at_least_once');",
            values.join(", "),
            kafka.bootstrap()
        ))
        .await
        .expect("setup");
    }
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut r = common::Rng(seed);
    eprintln!("seed {seed}");
    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> =
            (0..2).map(|i| tokio::spawn(increments(hw_port(&hw), seed + round as u64 * 7 + i, stop.clone()))).collect();
        tokio::time::sleep(Duration::from_millis(150 + r.below(600))).await;
        hw.kill9();
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            let _ = w.await;
        }
        hw = HwProcess::start(&data, &log, &args).await;
    }
    let c = hw.client().await;
    wait_idle(&c, &log).await;
    let table: BTreeMap<i64, i64> = common::text_rows(&c, "SELECT id, v FROM counters")
        .await
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert!(table.values().sum::<i64>() > 0, "the workload made no change");

    // Exactly-once: per key one snapshot message, then v+1, v+2, ... up to the table's value.
    let mut seen: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for rec in kafka.consume_all("counters", true) {
        let v = rec.value.expect("debezium value");
        let after = &v["after"];
        seen.entry(after["id"].as_i64().unwrap())
            .or_default()
            .push((v["op"].as_str().unwrap().to_string(), after["v"].as_i64().unwrap()));
    }
    for (id, want) in &table {
        let history = &seen[id];
        assert_eq!(history[0].0, "r", "key {id} starts with its snapshot: {history:?}");
        assert_eq!(history.iter().filter(|(op, _)| op == "r").count(), 1, "one snapshot of key {id}: {history:?}");
        for w in history.windows(2) {
            assert_eq!(w[1].1, w[0].1 + 1, "key {id}: every increment exactly once, in order: {history:?}");
        }
        assert_eq!(history.last().unwrap().1, *want, "key {id} ends at the table's value");
    }
    // At-least-once: every value delivered, the last one is the table's.
    let mut alo: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for rec in kafka.consume_all("counters_alo", false) {
        let v = rec.value.expect("upsert value");
        alo.entry(v["id"].as_i64().unwrap()).or_default().push(v["v"].as_i64().unwrap());
    }
    for (id, want) in &table {
        let history = &alo[id];
        assert_eq!(history.last(), Some(want), "key {id}: last value is the table's: {history:?}");
        let first = history[0];
        let distinct: std::collections::BTreeSet<i64> = history.iter().copied().collect();
        let all: std::collections::BTreeSet<i64> = (first..=*want).collect();
        assert!(all.is_subset(&distinct), "key {id}: no value lost: {history:?}");
    }
    eprintln!("survived {kills} kills; {} increments", table.values().sum::<i64>());
    hw.stop();
}

fn hw_port(hw: &HwProcess) -> u16 {
    hw.port
}

/// Kafka sources under `kill -9`: messages are produced to an append-only topic (and keyed
/// updates to an upsert topic) while the server reads them and is killed at random moments;
/// after the last restart the table holds every message exactly once (no id missing, none
/// twice) and every key's last value, and the view over it agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_survives_kill9_exactly_once() {
    let kills: usize = std::env::var("HEADWATER_SINK_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let kafka = MockKafka::start();
    kafka.topic("events", 3);
    kafka.topic("latest", 2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("headwater.log");
    let args = ["--checkpoint-interval", "100ms"];
    let mut hw = HwProcess::start(&data, &log, &args).await;
    {
        let c = hw.client().await;
        c.batch_execute(&format!(
            "CREATE CONNECTION k TO KAFKA (BROKER '{}');
             CREATE SOURCE events (id BIGINT, part INT) FROM KAFKA CONNECTION k (TOPIC 'events') ENVELOPE NONE;
             CREATE SOURCE latest (k INT PRIMARY KEY, v BIGINT) FROM KAFKA CONNECTION k (TOPIC 'latest') ENVELOPE UPSERT;
             CREATE MATERIALIZED VIEW per_part AS SELECT part, count(*) AS n FROM events GROUP BY part;",
            kafka.bootstrap()
        ))
        .await
        .expect("setup");
    }
    // The producer: batches of events (ids counting up) and each key's counter going up.
    let produced = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (bootstrap, produced, stop) = (kafka.bootstrap(), produced.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let values: Vec<String> =
                    (next..next + 200).map(|i| format!(r#"{{"id": {i}, "part": {}}}"#, i % 3)).collect();
                let messages: Vec<(i32, Option<&str>, Option<&str>)> =
                    values.iter().enumerate().map(|(j, v)| ((j % 3) as i32, None, Some(v.as_str()))).collect();
                common::kafka::produce(&bootstrap, "events", &messages);
                let keys: Vec<String> = (0..KEYS).map(|k| k.to_string()).collect();
                let latest: Vec<String> = (0..KEYS).map(|_| format!(r#"{{"v": {next}}}"#)).collect();
                let messages: Vec<(i32, Option<&str>, Option<&str>)> = keys
                    .iter()
                    .zip(&latest)
                    .map(|(k, v)| ((k.len() % 2) as i32, Some(k.as_str()), Some(v.as_str())))
                    .collect();
                common::kafka::produce(&bootstrap, "latest", &messages);
                next += 200;
                produced.store(next, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut r = common::Rng(seed);
    eprintln!("seed {seed}");
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(150 + r.below(700))).await;
        hw.kill9();
        hw = HwProcess::start(&data, &log, &args).await;
    }
    stop.store(true, Ordering::SeqCst);
    producer.join().expect("producer");
    let total = produced.load(Ordering::SeqCst) as i64;
    assert!(total > 0, "nothing was produced");
    let c = hw.client().await;
    let last = total - 200;
    let want = vec![format!("{total}|{total}|{}|{total}|{KEYS}", total - 1)];
    let sql = format!(
        "SELECT count(*), count(DISTINCT id), max(id), (SELECT sum(n) FROM per_part), \
         (SELECT count(*) FROM latest WHERE v = {last}) FROM events"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = common::joined_rows(&c, &sql).await;
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "want {want:?}, got {got:?}\n{}", tail(&log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("survived {kills} kills; {total} events");
    hw.stop();
}
