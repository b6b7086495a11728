//! The Kafka side of a sink: one worker thread per sink, talking to the brokers through
//! librdkafka (rdkafka's `ThreadedProducer`).
//!
//! A worker session: create the producer (idempotent; transactional for exactly-once), make
//! sure the topics exist (created when missing if the sink says so), recover (exactly-once:
//! `init_transactions` fences the previous producer, then the progress topic says which
//! outbox entries Kafka already has), send the snapshot if it is not in Kafka yet, then send
//! outbox entries as checkpoints make them durable. Any error ends the session: the worker
//! shows it in `hw_catalog.sinks`, waits (1 s doubling to 30 s) and starts a new session,
//! whose recovery step makes the retry exact. Nothing is deleted from the outbox before Kafka
//! has it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::encode::{self, Message};
use super::{Delivery, Pending, Progress, Shared, SinkConfig};
use crate::change::CommitOrigin;
use crate::state::{keys, CheckpointedStore, StateStore, WriteBatch};
use crate::sync::Unpoisoned;

/// Most outbox entries (whole commits) in one Kafka transaction or acknowledged batch.
const MAX_ENTRIES_PER_BATCH: usize = 4096;
/// Rows encoded at a time while sending a snapshot.
const SNAPSHOT_CHUNK: usize = 8192;
/// Upper bound of one Kafka call that waits for the brokers.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type SessionResult<T> = std::result::Result<T, String>;

/// Connection options (`CREATE CONNECTION ... TO KAFKA`) as librdkafka settings.
pub fn client_settings(options: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in options {
        let key = match k.as_str() {
            "BROKER" | "BROKERS" => "bootstrap.servers",
            "SECURITY_PROTOCOL" => "security.protocol",
            "SASL_MECHANISMS" | "SASL_MECHANISM" => "sasl.mechanisms",
            "SASL_USERNAME" => "sasl.username",
            "SASL_PASSWORD" => "sasl.password",
            "SSL_CA_LOCATION" => "ssl.ca.location",
            "SSL_CERTIFICATE_LOCATION" => "ssl.certificate.location",
            "SSL_KEY_LOCATION" => "ssl.key.location",
            "SSL_KEY_PASSWORD" => "ssl.key.password",
            _ => continue,
        };
        out.insert(key.to_string(), v.clone());
    }
    out
}

/// The connection options `CREATE CONNECTION ... TO KAFKA` accepts.
pub const CONNECTION_OPTIONS: &[&str] = &[
    "BROKER",
    "BROKERS",
    "SECURITY_PROTOCOL",
    "SASL_MECHANISMS",
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "SASL_PASSWORD",
    "SSL_CA_LOCATION",
    "SSL_CERTIFICATE_LOCATION",
    "SSL_KEY_LOCATION",
    "SSL_KEY_PASSWORD",
    "PROGRESS_TOPIC",
];

/// The progress record a sink writes in each of its Kafka transactions.
#[derive(Debug, Serialize, Deserialize)]
struct KafkaProgress {
    /// The last outbox entry the transaction holds (or the snapshot's base).
    seq: u64,
}

/// Counts delivery failures reported by librdkafka.
#[derive(Default)]
struct Context {
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka client error");
        *self.last_error.locked() = Some(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failures.fetch_add(1, Ordering::SeqCst);
            *self.last_error.locked() = Some(e.to_string());
        }
    }
}

type KafkaProducer = ThreadedProducer<Context>;

/// A Kafka topic as a sink's destination, with what reaching it takes.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    /// librdkafka settings from the connection (bootstrap.servers, security, SASL, SSL).
    pub settings: BTreeMap<String, String>,
    pub topic: String,
    /// Create the topic when it is missing, with these partitions and replication factor
    /// (−1: the broker's default).
    pub create_topic: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    pub progress_topic: String,
    /// The sink's identity in Kafka: its transactional id and its progress record's key.
    pub transactional_id: String,
}

impl super::SinkTarget for KafkaTarget {
    fn destination(&self) -> String {
        self.topic.clone()
    }

    fn deliver(&self, run: super::SinkRun) {
        Worker {
            config: run.config,
            target: self.clone(),
            shared: run.shared,
            store: run.store,
            progress: run.progress,
            snapshot: run.snapshot,
            snapshot_generation: run.snapshot_generation,
            relation: run.relation,
        }
        .run()
    }
}

/// The sending half of a sink.
struct Worker {
    config: SinkConfig,
    target: KafkaTarget,
    shared: Arc<Shared>,
    store: Arc<CheckpointedStore>,
    progress: Progress,
    /// The initial snapshot and the outbox seq it follows, until Kafka has it.
    snapshot: Option<(RecordBatch, u64)>,
    /// The checkpoint generation that makes the snapshot's rows durable.
    snapshot_generation: u64,
    /// The relation: while it is an errored view, nothing is sent ([`Worker::wait_unerrored`]).
    relation: Arc<crate::state::TableState>,
}

impl Worker {
    /// Runs sessions until the sink is stopped.
    fn run(mut self) {
        let mut backoff = Duration::from_secs(1);
        while !self.shared.stopped() {
            match self.session() {
                Ok(()) => break,
                Err(e) => {
                    if self.shared.stopped() {
                        break;
                    }
                    tracing::warn!(sink = %self.config.name, error = %e, "sink session failed; retrying in {backoff:?}");
                    {
                        let mut s = self.shared.status();
                        s.state = "retrying".into();
                        s.last_error = Some(e);
                    }
                    let until = Instant::now() + backoff;
                    while !self.shared.stopped() && Instant::now() < until {
                        self.shared.pause(Duration::from_millis(100));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.target.settings {
            c.set(k, v);
        }
        c
    }

    fn session(&mut self) -> SessionResult<()> {
        let exactly_once = self.config.delivery == Delivery::ExactlyOnce;
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "120000");
        if exactly_once {
            c.set("transactional.id", &self.target.transactional_id).set("transaction.timeout.ms", "300000");
        }
        let producer: KafkaProducer =
            c.create_with_context(Context::default()).map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        self.shared.status().state = "connecting".into();
        self.ensure_topics()?;
        if exactly_once {
            producer.init_transactions(CALL_TIMEOUT).map_err(|e| format!("init_transactions: {e}"))?;
            self.shared.status().state = "recovering".into();
            let committed = self.read_progress()?;
            self.reconcile(committed)?;
        }
        if let Some((_, base)) = &self.snapshot {
            let base = *base;
            // The pinned rows may include commits not yet checkpointed: wait for them.
            while !self.store.wait_durable(self.snapshot_generation, Duration::from_millis(200)) {
                if self.shared.stopped() {
                    return Ok(());
                }
            }
            if !exactly_once {
                // At-least-once after a crash in the middle of a snapshot: what was recorded
                // before goes first, then the snapshot (consumers converge on the latest row).
                self.send_ready(&producer, Some(base))?;
            }
            if !self.wait_unerrored() {
                return Ok(());
            }
            self.shared.status().state = "snapshotting".into();
            self.send_snapshot(&producer)?;
        }
        {
            let mut s = self.shared.status();
            s.state = "running".into();
            s.last_error = None;
        }
        while !self.shared.stopped() {
            if !self.wait_unerrored() {
                return Ok(());
            }
            self.send_ready(&producer, None)?;
        }
        Ok(())
    }

    /// Waits while the relation is a materialized view whose reads report an error
    /// (`dataflow::errors`): its changes meanwhile leave out the rows its query fails on, so
    /// they stay in the outbox, state `paused` with the error, and go (in order, exactly once)
    /// when the error is retracted. False when the sink was stopped meanwhile.
    fn wait_unerrored(&self) -> bool {
        let mut paused = false;
        while let Some(e) = self.relation.errors() {
            if self.shared.stopped() {
                return false;
            }
            if !paused {
                paused = true;
                let error = crate::error::Error::ViewErrored(e).to_string();
                tracing::warn!(sink = %self.config.name, %error, "sink paused: its relation is errored");
                let mut s = self.shared.status();
                s.state = "paused".into();
                s.last_error = Some(error);
            }
            self.shared.pause(Duration::from_millis(100));
        }
        if paused {
            tracing::info!(sink = %self.config.name, "sink resumed: its relation's error was retracted");
            let mut s = self.shared.status();
            s.state = "running".into();
            s.last_error = None;
        }
        !self.shared.stopped()
    }

    /// Creates the topics when missing (if asked) and checks the sink's topic exists.
    ///
    /// Brokers without the CreateTopics API (librdkafka's mock cluster, some proxies) create
    /// topics on first use when `auto.create.topics.enable` is on: if CreateTopics fails, a
    /// metadata request that allows auto-creation is the fallback.
    fn ensure_topics(&self) -> SessionResult<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .set("allow.auto.create.topics", "true")
            .create()
            .map_err(|e| format!("cannot create the Kafka admin client: {e}"))?;
        let existing = admin
            .inner()
            .fetch_metadata(None, CALL_TIMEOUT)
            .map_err(|e| format!("cannot reach the Kafka brokers: {e}"))?;
        let exists = |name: &str| existing.topics().iter().any(|t| t.name() == name && t.error().is_none());
        let mut wanted = Vec::new();
        if self.target.create_topic && !exists(&self.target.topic) {
            wanted.push(NewTopic::new(
                &self.target.topic,
                self.target.partitions,
                TopicReplication::Fixed(self.target.replication_factor),
            ));
        }
        if self.config.delivery == Delivery::ExactlyOnce && !exists(&self.target.progress_topic) {
            wanted.push(
                NewTopic::new(&self.target.progress_topic, 1, TopicReplication::Fixed(self.target.replication_factor))
                    .set("cleanup.policy", "compact"),
            );
        }
        for topic in wanted {
            let options = AdminOptions::new()
                .operation_timeout(Some(Duration::from_secs(5)))
                .request_timeout(Some(Duration::from_secs(5)));
            let result = futures::executor::block_on(admin.create_topics(std::slice::from_ref(&topic), &options));
            match result.as_ref().map(|r| r.first()) {
                Ok(Some(Ok(_))) | Ok(Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))) => {}
                other => {
                    tracing::warn!(sink = %self.config.name, topic = topic.name, result = ?other,
                        "CreateTopics failed; relying on the broker to create the topic on first use");
                    let _ = admin.inner().fetch_metadata(Some(topic.name), CALL_TIMEOUT);
                }
            }
        }
        let metadata = admin
            .inner()
            .fetch_metadata(Some(&self.target.topic), CALL_TIMEOUT)
            .map_err(|e| format!("cannot reach the Kafka brokers: {e}"))?;
        let topic = metadata.topics().iter().find(|t| t.name() == self.target.topic);
        match topic {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            _ => Err(format!(
                "topic {} does not exist (create it, or let the sink create it: WITH (CREATE_TOPIC = true))",
                self.target.topic
            )),
        }
    }

    /// The last progress record of this sink in the progress topic (committed ones only).
    fn read_progress(&self) -> SessionResult<Option<u64>> {
        let topic = &self.target.progress_topic;
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", format!("{}-progress", self.target.transactional_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| format!("cannot create the progress reader: {e}"))?;
        let (_, high) = consumer
            .fetch_watermarks(topic, 0, CALL_TIMEOUT)
            .map_err(|e| format!("cannot read progress topic {topic}: {e}"))?;
        if high <= 0 {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning).map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| format!("cannot read progress topic {topic}: {e}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut last = None;
        let key = self.target.transactional_id.as_bytes();
        loop {
            let position = consumer
                .position()
                .ok()
                .and_then(|p| p.find_partition(topic, 0).map(|e| e.offset()))
                .and_then(|o| o.to_raw())
                .unwrap_or(0);
            if position >= high {
                return Ok(last);
            }
            if Instant::now() > deadline || self.shared.stopped() {
                return Err(format!("progress topic {topic} not readable up to offset {high} within {CALL_TIMEOUT:?}"));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.key() == Some(key) => {
                    last = m.payload().and_then(|p| serde_json::from_slice::<KafkaProgress>(p).ok()).map(|p| p.seq);
                }
                Some(Ok(_)) | None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(format!("cannot read progress topic {topic}: {e}")),
            }
        }
    }

    /// Exactly-once recovery: what Kafka has (`committed`) leaves the outbox.
    fn reconcile(&mut self, committed: Option<u64>) -> SessionResult<()> {
        let allocated = self.shared.outbox.locked().next_seq - 1;
        if let Some(seq) = committed.filter(|seq| *seq > allocated) {
            return Err(format!(
                "the progress record for TRANSACTIONAL_ID {} says entry {seq} is in Kafka, but this sink has only                  written {allocated}: the id belongs to another sink (drop this sink and create it without                  TRANSACTIONAL_ID)",
                self.target.transactional_id
            ));
        }
        let upto = match (committed, &self.snapshot) {
            (Some(seq), _) => {
                self.snapshot = None;
                self.progress.snapshot_done = true;
                seq
            }
            // The snapshot is not in Kafka: it replaces everything recorded before it.
            (None, Some((_, base))) => *base,
            (None, None) => return Ok(()),
        };
        self.progress.acked = self.progress.acked.max(upto);
        self.acknowledge(upto).map_err(|e| e.to_string())
    }

    /// Removes outbox entries up to `upto` and records the progress.
    fn acknowledge(&mut self, upto: u64) -> crate::error::Result<()> {
        let mut batch = WriteBatch::default();
        {
            let mut outbox = self.shared.outbox.locked();
            while outbox.pending.front().is_some_and(|p| p.seq <= upto) {
                let p = outbox.pending.pop_front().expect("checked");
                batch.delete(keys::sink_outbox_entry(self.config.id, p.seq));
            }
        }
        self.progress.write(self.config.id, &mut batch);
        self.store.apply(batch)
    }

    /// Sends the initial snapshot: one transaction (exactly-once) with its progress record.
    fn send_snapshot(&mut self, producer: &KafkaProducer) -> SessionResult<()> {
        let Some((rows, base)) = &self.snapshot else { return Ok(()) };
        let base = *base;
        let origin = CommitOrigin { snapshot: true, ts_ms: crate::change::now_ms(), ..Default::default() };
        let tx = self.begin(producer)?;
        let mut sent = 0u64;
        let mut offset = 0;
        while offset < rows.num_rows() {
            let len = SNAPSHOT_CHUNK.min(rows.num_rows() - offset);
            let messages =
                self.config.encoder.snapshot(&rows.slice(offset, len), &origin).map_err(|e| e.to_string())?;
            for m in &messages {
                self.produce(producer, m)?;
            }
            sent += messages.len() as u64;
            offset += len;
        }
        self.finish(producer, tx, base)?;
        self.snapshot = None;
        self.progress.snapshot_done = true;
        self.progress.acked = self.progress.acked.max(base);
        self.acknowledge(base).map_err(|e| e.to_string())?;
        let mut s = self.shared.status();
        s.snapshot_messages += sent;
        s.messages_sent += sent;
        s.batches += 1;
        Ok(())
    }

    /// Sends the outbox entries that are durable (up to `limit`), as one batch; waits a
    /// little when there are none.
    fn send_ready(&mut self, producer: &KafkaProducer, limit: Option<u64>) -> SessionResult<()> {
        loop {
            let ready = self.ready(limit);
            if ready.is_empty() {
                return Ok(());
            }
            self.send_entries(producer, &ready)?;
            if limit.is_none() {
                return Ok(());
            }
        }
    }

    /// The next run of durable entries; empty when there is none yet (after a short wait).
    fn ready(&self, limit: Option<u64>) -> Vec<Pending> {
        let first = self.shared.outbox.locked().pending.front().copied();
        let Some(first) = first.filter(|p| limit.is_none_or(|l| p.seq <= l)) else {
            if limit.is_none() {
                self.shared.pause(Duration::from_millis(200));
            }
            return Vec::new();
        };
        if !self.store.wait_durable(first.generation, Duration::from_millis(200)) {
            return Vec::new();
        }
        let outbox = self.shared.outbox.locked();
        outbox
            .pending
            .iter()
            .take_while(|p| p.generation <= first.generation && limit.is_none_or(|l| p.seq <= l))
            .take(MAX_ENTRIES_PER_BATCH)
            .copied()
            .collect()
    }

    fn send_entries(&mut self, producer: &KafkaProducer, entries: &[Pending]) -> SessionResult<()> {
        let tx = self.begin(producer)?;
        let mut sent = 0u64;
        for p in entries {
            let key = keys::sink_outbox_entry(self.config.id, p.seq);
            let bytes = self
                .store
                .get(&key)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("outbox entry {} of sink {} is missing", p.seq, self.config.name))?;
            for m in encode::unframe(&bytes).map_err(|e| e.to_string())? {
                self.produce(producer, &m)?;
                sent += 1;
            }
        }
        let last = entries.last().map_or(0, |p| p.seq);
        self.finish(producer, tx, last)?;
        // Not `snapshot_done`: at-least-once re-sends old entries before a pending snapshot.
        self.progress.acked = last;
        self.acknowledge(last).map_err(|e| e.to_string())?;
        let mut s = self.shared.status();
        s.messages_sent += sent;
        s.batches += 1;
        s.last_error = None;
        Ok(())
    }

    /// Starts a batch: a Kafka transaction (exactly-once), or a delivery-failure mark.
    fn begin(&self, producer: &KafkaProducer) -> SessionResult<u64> {
        if self.config.delivery == Delivery::ExactlyOnce {
            producer.begin_transaction().map_err(|e| format!("begin_transaction: {e}"))?;
        }
        Ok(producer.context().failures.load(Ordering::SeqCst))
    }

    /// Ends a batch: commits the transaction with its progress record (exactly-once), or
    /// waits until the brokers acknowledged every message (at-least-once).
    fn finish(&self, producer: &KafkaProducer, failures_before: u64, seq: u64) -> SessionResult<()> {
        let detail = || producer.context().last_error.locked().clone().unwrap_or_default();
        let failed = |what: &str, e: KafkaError| format!("{what}: {e} {}", detail()).trim_end().to_string();
        if self.config.delivery == Delivery::ExactlyOnce {
            let value = serde_json::to_vec(&KafkaProgress { seq }).expect("progress serialises");
            let record = BaseRecord::to(&self.target.progress_topic)
                .key(self.target.transactional_id.as_bytes())
                .payload(&value)
                .partition(0);
            producer.send(record).map_err(|(e, _)| failed("progress record", e))?;
            if let Err(e) = producer.commit_transaction(CALL_TIMEOUT) {
                let _ = producer.abort_transaction(CALL_TIMEOUT);
                return Err(failed("commit_transaction", e));
            }
        } else {
            producer.flush(CALL_TIMEOUT).map_err(|e| failed("flush", e))?;
        }
        if producer.context().failures.load(Ordering::SeqCst) != failures_before {
            return Err(format!("Kafka did not accept every message: {}", detail()));
        }
        Ok(())
    }

    /// Queues one message, waiting while librdkafka's queue is full.
    fn produce(&self, producer: &KafkaProducer, m: &Message) -> SessionResult<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.target.topic);
        if let Some(k) = &m.key {
            record = record.key(k.as_slice());
        } else {
            // Keyless messages keep their order in one partition.
            record = record.partition(0);
        }
        if let Some(v) = &m.value {
            record = record.payload(v.as_slice());
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) if Instant::now() < deadline => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(format!("cannot produce to {}: {e}", self.target.topic)),
            }
        }
    }
}
