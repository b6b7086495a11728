//! Kafka source ingestion against the practical limit, in the same run on the same broker:
//!
//! - Headwater: `CREATE SOURCE ... ENVELOPE UPSERT` of a topic holding
//!   `HEADWATER_BENCH_ROWS` messages (default 100k: librdkafka's mock cluster stalls on a
//!   topic of a few 100k messages; 5-column JSON rows, 4 partitions) into a
//!   table with an aggregate materialized view over it, timed from `CREATE SOURCE` until every
//!   row is in the table. The first run in this process is the cold figure (the headline),
//!   the median of the next runs the warm one.
//! - baseline: a bare rdkafka consumer reading the same messages (assign, poll to the end,
//!   touching each payload), the client + broker limit.
//!
//! The broker is librdkafka's mock cluster in this process (what the tests use). Run:
//! `scripts/bench.sh kafka_source` (release). Results go to `docs/benchmarks.md`.

use crate::report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use headwater::catalog::{Namespace, Relation};
use headwater::sql::Engine;
use headwater::state::{CheckpointedStore, MemoryStore, TableState};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

fn table(engine: &Engine, name: &str) -> Arc<TableState> {
    match engine.catalog().get(Namespace::Relation, name).and_then(|o| o.relation) {
        Some(Relation::Table { state, .. }) => state,
        _ => panic!("{name} is not a table"),
    }
}

fn fill(bootstrap: &str, n: usize) {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in 0..n {
        let key = format!("{{\"id\":{i}}}");
        let value = format!(
            "{{\"id\":{i},\"customer_id\":{},\"amount\":\"{}.{:02}\",\"status\":\"{}\",\"note\":\"order {i}\"}}",
            i % 10_000,
            i % 1000,
            i % 100,
            ["new", "paid", "shipped"][i % 3]
        );
        let mut record = BaseRecord::<str, str>::to("events").key(&key).payload(&value).partition((i % 4) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).unwrap();
}

/// The bare consumer: every message of the topic read once; messages/s.
fn baseline(bootstrap: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-baseline")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset("events", p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut read, mut bytes) = (0usize, 0usize);
    while read < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            bytes += m.payload().map_or(0, <[u8]>::len);
            read += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "baseline read {read} of {n}");
    }
    assert!(bytes > 0);
    n as f64 / started.elapsed().as_secs_f64()
}

/// One Headwater run in a fresh engine: messages/s from CREATE SOURCE to the last row.
async fn headwater(bootstrap: &str, n: usize) -> f64 {
    let engine = Engine::open(Arc::new(CheckpointedStore::new(Arc::new(MemoryStore::default())))).await.unwrap();
    let s = engine.session();
    s.execute_sql(&format!("CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}')")).await.unwrap();
    let started = Instant::now();
    s.execute_sql(
        "CREATE SOURCE events (id BIGINT PRIMARY KEY, customer_id BIGINT, amount NUMERIC(12,2), status TEXT, note TEXT) \
         FROM KAFKA CONNECTION k (TOPIC 'events') ENVELOPE UPSERT",
    )
    .await
    .unwrap();
    s.execute_sql("CREATE MATERIALIZED VIEW by_status AS SELECT status, count(*) AS n, sum(amount) AS total FROM events GROUP BY status")
        .await
        .unwrap();
    let t = table(&engine, "events");
    while t.row_count() < n as i64 {
        assert!(started.elapsed() < Duration::from_secs(600), "{} of {n} rows after 600 s", t.row_count());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    engine.sources().stop_all().await;
    rate
}

pub fn main() {
    let n = report::rows(100_000, 20_000) as usize;
    let runs = report::runs(4, 2);
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    fill(&bootstrap, n);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rates: Vec<f64> = (0..runs).map(|_| rt.block_on(headwater(&bootstrap, n))).collect();
    let base: Vec<f64> = (0..runs).map(|_| baseline(&bootstrap, n)).collect();
    let cold = rates[0];
    let warm = report::Stats::of(&rates[1..]);
    let base = report::Stats::of(&base);
    let body = format!(
        "## Kafka source ingestion\n\n\
         `scripts/bench.sh kafka_source` (release; `HEADWATER_BENCH_ROWS={n}`; 2 vCPU; broker: librdkafka's mock \
         cluster in the same process, {PARTITIONS} partitions). ENVELOPE UPSERT, 5-column JSON rows (a NUMERIC \
         column as text), into a keyed table with a `GROUP BY` materialized view over it; timed from `CREATE SOURCE` \
         until every row is in the table. Cold: the first run in the process; warm: median (min–max) of the next \
         {}.\n\n\
         | what | messages/s | vs bare consumer |\n|---|---|---|\n\
         | Headwater, cold (first run) | {cold:.0} | {:.2}× |\n\
         | Headwater, warm | {warm} | {:.2}× |\n\
         | baseline: bare rdkafka consumer reading the same messages | {base} | 1.00× |\n",
        runs - 1,
        cold / base.median,
        warm.median / base.median,
    );
    println!("{body}");
    report::write_section("kafka_source", &body);
}
