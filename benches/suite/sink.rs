//! Kafka sink throughput against the practical limit, in the same run on the same broker:
//!
//! - snapshot: `CREATE SINK` (exactly-once, ENVELOPE UPSERT) of a table with
//!   `HEADWATER_BENCH_ROWS` rows (default 1M), timed until every snapshot message is committed;
//! - steady stream: 100 commits of 1,000 updated rows each, committed back to back while
//!   checkpoints run every 100 ms, timed until the sink has nothing pending;
//! - baseline: a bare rdkafka producer (idempotent, acks=all, same linger) sending the same
//!   number of messages of the same size, then flushing: the client + broker limit.
//!
//! The broker is librdkafka's mock cluster in this process (what the tests use; a real
//! cluster adds the network and disk). Run: `scripts/bench.sh sink` (release). Results go
//! to `docs/benchmarks.md`.

use crate::report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use headwater::catalog::{Namespace, Relation};
use headwater::change::ChangeBatch;
use headwater::sql::Engine;
use headwater::state::{CheckpointedStore, MemoryStore, TableState, WriteBatch};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const DELTA: usize = 1_000;
const COMMITS: usize = 100;

fn rows(ids: &[i64], salt: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let status: Vec<&str> = ids.iter().map(|i| ["new", "paid", "shipped"][((i + salt) % 3) as usize]).collect();
    let note: Vec<String> = ids.iter().map(|i| format!("order {i} rev {salt}")).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(ids.iter().map(|i| i % 10_000).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(ids.iter().map(|i| (i * 31 + salt) % 1000).collect::<Vec<_>>())),
        Arc::new(StringArray::from(status)),
        Arc::new(StringArray::from(note)),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn table(engine: &Engine, name: &str) -> Arc<TableState> {
    match engine.catalog().get(Namespace::Relation, name).and_then(|o| o.relation) {
        Some(Relation::Table { state, .. }) => state,
        _ => panic!("{name} is not a table"),
    }
}

fn sink_counts(engine: &Engine) -> (u64, u64, String) {
    let s = engine.sinks().statuses().into_iter().next().expect("the sink runs");
    (s.messages_sent, s.pending_commits, s.state)
}

/// The bare producer: `n` messages shaped like the sink's, then a flush.
fn baseline(bootstrap: &str, n: usize) -> f64 {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let started = Instant::now();
    for i in 0..n {
        let key = format!("{{\"id\":{i}}}");
        let value = format!(
            "{{\"id\":{i},\"customer_id\":{},\"amount\":{},\"status\":\"paid\",\"note\":\"order {i} rev 0\"}}",
            i % 10_000,
            i % 1000
        );
        let mut record = BaseRecord::<str, str>::to("baseline").key(&key).payload(&value);
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
    producer.flush(Duration::from_secs(120)).unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

pub fn main() {
    let n = report::rows(1_000_000, 20_000) as i64;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("_headwater_progress", 1, 1).unwrap();
    cluster.create_topic("orders", 4, 1).unwrap();
    cluster.create_topic("baseline", 4, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (snapshot_rate, stream_rate) = rt.block_on(async {
        let engine = Engine::open(Arc::new(CheckpointedStore::new(Arc::new(MemoryStore::default())))).await.unwrap();
        let s = engine.session();
        s.execute_sql(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, amount BIGINT, status TEXT, note TEXT)",
        )
        .await
        .unwrap();
        let t = table(&engine, "orders");
        let ids: Vec<i64> = (0..n).collect();
        for chunk in ids.chunks(100_000) {
            engine
                .dataflow()
                .commit(&[(t.as_ref(), &ChangeBatch::uniform(rows(chunk, 0), 1))], WriteBatch::default())
                .unwrap();
        }
        engine.make_durable().await.unwrap();
        // Checkpoints every 100 ms, like `--checkpoint-interval 100ms`.
        let ticker = engine.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = ticker.make_durable().await;
            }
        });
        s.execute_sql(&format!("CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}')")).await.unwrap();
        let started = Instant::now();
        s.execute_sql("CREATE SINK out FROM orders INTO KAFKA CONNECTION k (TOPIC 'orders') ENVELOPE UPSERT")
            .await
            .unwrap();
        loop {
            let (sent, _, state) = sink_counts(&engine);
            if sent >= n as u64 && state == "running" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "snapshot did not finish: {sent} sent, {state}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let snapshot_rate = n as f64 / started.elapsed().as_secs_f64();
        // Steady stream: back-to-back commits of 1k updated rows.
        let started = Instant::now();
        for c in 0..COMMITS {
            let lo = (c * DELTA) as i64 % n.max(1);
            let chunk: Vec<i64> = (lo..(lo + DELTA as i64).min(n)).collect();
            // Row images: the −1 removes whatever row has the key, the +1 is its new value.
            let old = rows(&chunk, 0);
            let new = rows(&chunk, c as i64 + 1);
            let mut weights = vec![-1; chunk.len()];
            weights.extend(vec![1; chunk.len()]);
            let data = datafusion::arrow::compute::concat_batches(&old.schema(), [&old, &new]).unwrap();
            let change = ChangeBatch { data, weights, mode: headwater::change::ApplyMode::Upsert };
            engine.dataflow().commit(&[(t.as_ref(), &change)], WriteBatch::default()).unwrap();
        }
        let target = n as u64 + (COMMITS * DELTA) as u64;
        loop {
            let (sent, pending, _) = sink_counts(&engine);
            if sent >= target && pending == 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "stream did not drain: {sent}/{target}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stream_rate = (COMMITS * DELTA) as f64 / started.elapsed().as_secs_f64();
        (snapshot_rate, stream_rate)
    });
    let base = baseline(&bootstrap, n as usize);
    let body = format!(
        "## Kafka sink throughput\n\n\
         `scripts/bench.sh sink` (release; `HEADWATER_BENCH_ROWS={n}`; 2 vCPU; broker: librdkafka's mock \
         cluster in the same process, 4 partitions). Exactly-once, ENVELOPE UPSERT, 5-column rows.\n\n\
         | what | messages/s | vs bare producer |\n|---|---|---|\n\
         | snapshot of a {n}-row table (one Kafka transaction) | {:.0} | {:.2}× |\n\
         | steady stream: {COMMITS} commits × {DELTA} updated rows, checkpoints every 100 ms | {:.0} | {:.2}× |\n\
         | baseline: bare idempotent rdkafka producer, same message count and shape | {:.0} | 1.00× |\n",
        snapshot_rate,
        snapshot_rate / base,
        stream_rate,
        stream_rate / base,
        base,
    );
    println!("{body}");
    report::write_section("sink", &body);
}
