//! A Kafka protocol peer for tests: librdkafka's mock cluster (in this process), and a
//! consumer that reads a topic back whole.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One consumed message.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<serde_json::Value>,
    pub value: Option<serde_json::Value>,
}

/// A mock Kafka cluster with one broker.
pub struct MockKafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
}

impl MockKafka {
    /// A cluster with Headwater's progress topic (the mock has no CreateTopics API; sinks
    /// fall back to auto-creation after a 5 s CreateTopics timeout, which tests skip).
    pub fn start() -> MockKafka {
        let cluster = MockCluster::new(1).expect("librdkafka mock cluster");
        cluster.create_topic("_headwater_progress", 1, 1).expect("progress topic");
        MockKafka { cluster }
    }

    /// Creates `topic` with `partitions`.
    pub fn topic(&self, topic: &str, partitions: i32) {
        self.cluster.create_topic(topic, partitions, 1).expect("create topic");
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Produces messages to `topic` ([`produce`]).
    pub fn produce(&self, topic: &str, messages: &[(i32, Option<&str>, Option<&str>)]) {
        produce(&self.bootstrap(), topic, messages)
    }

    /// Every message of `topic`, per partition in offset order; `read_committed` hides
    /// messages of aborted or open transactions.
    pub fn consume_all(&self, topic: &str, read_committed: bool) -> Vec<Record> {
        consume_all(&self.bootstrap(), topic, read_committed)
    }
}

/// Produces messages to `topic` on `bootstrap` (partition, key, value; `None` value: a
/// tombstone) and waits until every one is acknowledged.
pub fn produce(bootstrap: &str, topic: &str, messages: &[(i32, Option<&str>, Option<&str>)]) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for (partition, key, value) in messages {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic).partition(*partition);
        if let Some(k) = key {
            record = record.key(*k);
        }
        if let Some(v) = value {
            record = record.payload(*v);
        }
        producer.send(record).map_err(|(e, _)| e).expect("produce");
    }
    producer.flush(Duration::from_secs(30)).expect("messages acknowledged");
}

/// Every message of `topic` on `bootstrap`.
pub fn consume_all(bootstrap: &str, topic: &str, read_committed: bool) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "headwater-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", if read_committed { "read_committed" } else { "read_uncommitted" })
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    let mut high = BTreeMap::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
        let (_, h) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).expect("watermarks");
        high.insert(*p, h);
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut at_end: BTreeMap<i32, bool> = partitions.iter().map(|p| (*p, high[p] == 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.values().any(|e| !e) {
        assert!(Instant::now() < deadline, "could not read {topic} to its end within 60s");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let json = |b: Option<&[u8]>| b.map(|b| serde_json::from_slice(b).expect("JSON message"));
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: json(m.key()),
                    value: json(m.payload()),
                });
                if m.offset() + 1 >= high[&m.partition()] {
                    at_end.insert(m.partition(), true);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p, true);
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None => {}
        }
    }
    out
}
