//! The consumer loop of one Kafka source: poll a batch of messages from its topics, decode
//! them into one change per table, and commit them through the dataflow together with the
//! partitions' next offsets (one atomic store batch), so rows and offsets are durable
//! together. A table that meets a message it cannot read stops alone (its partitions are
//! paused); the others go on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::decode::RowsBuilder;
use super::envelope::{self, Decoded};
use super::{partitions, KafkaOptions, OnError, Progress, Start};
use crate::change::{ApplyMode, ChangeBatch, CommitOrigin};
use crate::dataflow::Dataflow;
use crate::error::Error;
use crate::source::SourceStatus;
use crate::state::{CheckpointedStore, TableState, WriteBatch};
use crate::sync::Unpoisoned;

/// Most messages in one commit.
const MAX_BATCH_MESSAGES: usize = 10_000;
/// Most message bytes in one commit.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Staged bytes past which the source checkpoints (bounds memory while reading a backlog).
const STAGED_LIMIT: usize = 256 << 20;
/// How often librdkafka reports the partitions' end offsets (for `lag_messages`).
const STATISTICS_INTERVAL_MS: &str = "2000";
/// How often the topics are described again, to read partitions added to them.
const METADATA_EVERY: Duration = Duration::from_secs(30);

/// Each partition's end offset as librdkafka last saw it (its statistics, delivered while the
/// consumer polls: reading them costs no request in the consume loop).
#[derive(Default)]
struct EndOffsets {
    high: Mutex<HashMap<(String, i32), i64>>,
}

impl ClientContext for EndOffsets {
    fn stats(&self, statistics: Statistics) {
        let mut high = self.high.locked();
        for (topic, t) in statistics.topics {
            for (p, part) in t.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    high.insert((topic.clone(), p), part.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for EndOffsets {}

type KafkaConsumer = BaseConsumer<EndOffsets>;

/// One topic and the table it fills.
pub(super) struct TopicReader {
    pub topic: String,
    pub table: Arc<TableState>,
    /// The table's key column names (UPSERT's scalar keys, Canal's moved keys).
    pub key_names: Vec<String>,
}

pub(super) struct Runner {
    pub name: String,
    pub id: u64,
    pub connection: String,
    pub client: ClientConfig,
    pub options: KafkaOptions,
    /// The source's tables, in the order of its status's tables.
    pub readers: Vec<TopicReader>,
    pub store: Arc<CheckpointedStore>,
    pub dataflow: Arc<Dataflow>,
    pub status: Arc<Mutex<SourceStatus>>,
    /// Each topic's partitions' next offsets, published after each commit (`real_time_recency`).
    pub applied: watch::Sender<BTreeMap<String, BTreeMap<i32, i64>>>,
    pub shutdown: watch::Receiver<bool>,
}

/// Why a consumer session ended.
enum End {
    Shutdown,
    /// The table stopped (a message it cannot read, a failed commit): idle until shutdown.
    Halted,
    /// The brokers could not be reached or described: try again after a pause.
    Retry(String),
    /// A topic gained partitions: start again at once (everything read is committed).
    Restart,
}

/// A message that cannot be read: where it is and why.
struct BadMessage {
    topic: String,
    partition: i32,
    offset: i64,
    reason: String,
}

impl Runner {
    /// Shutdown was asked, or the engine that could ask is gone (its runtime is shutting
    /// down, which waits for this thread).
    fn stopped(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    fn status(&self) -> std::sync::MutexGuard<'_, SourceStatus> {
        self.status.locked()
    }

    /// Runs until shutdown, reconnecting with backoff.
    pub fn run(self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.session() {
                End::Shutdown => return,
                End::Restart => {
                    tracing::info!(source = %self.name, "Kafka source: a topic gained partitions; reading them too");
                    backoff = Duration::from_millis(500);
                }
                End::Halted => {
                    while !self.stopped() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    return;
                }
                End::Retry(why) => {
                    tracing::warn!(source = %self.name, "Kafka source: {why}; retrying in {backoff:?}");
                    {
                        let mut s = self.status();
                        s.state = "reconnecting".into();
                        s.last_error = Some(why);
                    }
                    let until = Instant::now() + backoff;
                    while Instant::now() < until {
                        if self.stopped() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn halt(&self, why: String) -> End {
        tracing::error!(source = %self.name, "Kafka source stopped: {why}");
        let mut s = self.status();
        s.state = "error".into();
        s.last_error = Some(why.clone());
        for t in &mut s.tables {
            t.state = "error".into();
            t.last_error = Some(why.clone());
        }
        End::Halted
    }

    /// Stops table `reader` alone: its state shows why, its partitions are paused.
    fn stop_table(&self, consumer: &KafkaConsumer, parts: &HashMap<String, Vec<i32>>, reader: usize, why: String) {
        let r = &self.readers[reader];
        tracing::error!(source = %self.name, table = %r.table.name(), "Kafka source table stopped: {why}");
        let mut paused = TopicPartitionList::new();
        for p in parts.get(&r.topic).into_iter().flatten() {
            paused.add_partition(&r.topic, *p);
        }
        let _ = consumer.pause(&paused);
        let mut s = self.status();
        if let Some(t) = s.tables.get_mut(reader) {
            t.state = "error".into();
            t.last_error = Some(why);
        }
    }

    fn session(&self) -> End {
        let mut config = self.client.clone();
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        let consumer: KafkaConsumer = match config.create_with_context(EndOffsets::default()) {
            Ok(c) => c,
            Err(e) => return End::Retry(format!("cannot create a Kafka client: {e}")),
        };
        let mut parts: HashMap<String, Vec<i32>> = HashMap::new();
        for r in &self.readers {
            match partitions(&consumer, &r.topic, &self.connection) {
                Ok(p) => parts.insert(r.topic.clone(), p),
                Err(e) => return End::Retry(e.to_string()),
            };
        }
        let by_topic: HashMap<&str, usize> =
            self.readers.iter().enumerate().map(|(i, r)| (r.topic.as_str(), i)).collect();
        let mut progress = match Progress::load(self.store.as_ref(), self.id) {
            Ok(p) => p,
            Err(e) => return self.halt(e.to_string()),
        };
        // START_OFFSET = 'latest': the end as of now, stored at once, so a restart before the
        // first message does not skip what arrived meanwhile.
        if self.options.start == Start::Latest {
            let mut started = false;
            for (topic, ps) in &parts {
                let unstarted: Vec<i32> = ps.iter().copied().filter(|p| progress.next(topic, *p).is_none()).collect();
                for p in &unstarted {
                    match consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)) {
                        Ok((_, high)) => progress.advance(topic, *p, high),
                        Err(e) => return End::Retry(format!("cannot read the end of {topic} partition {p}: {e}")),
                    }
                    started = true;
                }
            }
            if started {
                if let Err(e) = self.commit(&mut [], &progress, None) {
                    return self.halt(e);
                }
            }
        }
        let mut assignment = TopicPartitionList::new();
        for (topic, ps) in &parts {
            for p in ps {
                let offset = match progress.next(topic, *p) {
                    Some(o) => Offset::Offset(o),
                    None => Offset::Beginning,
                };
                if let Err(e) = assignment.add_partition_offset(topic, *p, offset) {
                    return End::Retry(format!("cannot assign {topic} partition {p}: {e}"));
                }
            }
        }
        if let Err(e) = consumer.assign(&assignment) {
            return End::Retry(format!("cannot assign the topics' partitions: {e}"));
        }
        {
            let mut s = self.status();
            s.state = "streaming".into();
            s.last_error = None;
            s.offsets = Some(progress.describe());
            for t in &mut s.tables {
                t.state = "streaming".into();
            }
        }
        let mut builders: Vec<RowsBuilder> = self
            .readers
            .iter()
            .map(|r| {
                let key = r.table.key_columns().map(<[usize]>::to_vec);
                RowsBuilder::new(r.table.schema(), key, self.options.timestamp_unit)
            })
            .collect();
        let mut stopped: HashSet<usize> = HashSet::new();
        let mut skipped = vec![0u64; self.readers.len()];
        let mut metadata_at = Instant::now();
        loop {
            if self.stopped() {
                return End::Shutdown;
            }
            let mut pending = progress.clone();
            let (mut count, mut bytes, mut last_ts) = (0usize, 0usize, None);
            let mut next = consumer.poll(Duration::from_millis(100));
            let caught_up = next.is_none();
            while let Some(result) = next {
                let message = match result {
                    Ok(m) => m,
                    Err(e) => {
                        // librdkafka reconnects by itself; say so meanwhile.
                        let mut s = self.status();
                        s.state = "reconnecting".into();
                        s.last_error = Some(format!("Kafka: {e}"));
                        break;
                    }
                };
                let (topic, partition, offset) = (message.topic().to_string(), message.partition(), message.offset());
                let Some(&reader) = by_topic.get(topic.as_str()) else { break };
                if stopped.contains(&reader) {
                    // Fetched before the pause: read again from the stored offset next time.
                    next = consumer.poll(Duration::ZERO);
                    continue;
                }
                last_ts = message.timestamp().to_millis().or(last_ts);
                bytes += message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len);
                let r = &self.readers[reader];
                let decoded = envelope::decode(self.options.envelope, message.key(), message.payload(), &r.key_names);
                let outcome = match decoded {
                    Ok(d) if d.truncate => {
                        // What came before, then every row removed with this message's offset.
                        if let Err(e) = self.commit(&mut builders, &pending, last_ts) {
                            return self.halt(e);
                        }
                        pending.advance(&topic, partition, offset + 1);
                        if let Err(e) = self.truncate(reader, &pending) {
                            return self.halt(e);
                        }
                        progress = pending.clone();
                        Ok(())
                    }
                    Ok(d) => push(&mut builders[reader], &d),
                    Err(reason) => Err(reason),
                };
                if let Err(reason) = outcome {
                    let bad = BadMessage { topic: topic.clone(), partition, offset, reason };
                    match self.options.on_error {
                        OnError::Skip => {
                            skipped[reader] += 1;
                            self.report_skipped(reader, skipped[reader], &bad);
                        }
                        OnError::Stop => {
                            // The messages before it are good: keep them.
                            if let Err(e) = self.commit(&mut builders, &pending, last_ts) {
                                return self.halt(e);
                            }
                            progress = pending.clone();
                            self.published(&progress, false);
                            let why = format!(
                                "topic {} partition {} offset {}: {}. Fix the producer, or create the source WITH \
                                 (ON_ERROR = 'skip') to skip such messages",
                                bad.topic, bad.partition, bad.offset, bad.reason
                            );
                            stopped.insert(reader);
                            if stopped.len() == self.readers.len() {
                                return self.halt(why);
                            }
                            self.stop_table(&consumer, &parts, reader, why);
                            next = consumer.poll(Duration::ZERO);
                            continue;
                        }
                    }
                }
                pending.advance(&topic, partition, offset + 1);
                count += 1;
                if count >= MAX_BATCH_MESSAGES || bytes >= MAX_BATCH_BYTES {
                    break;
                }
                next = consumer.poll(Duration::ZERO);
            }
            if pending != progress {
                if let Err(e) = self.commit(&mut builders, &pending, last_ts) {
                    return self.halt(e);
                }
                progress = pending;
                self.published(&progress, false);
            } else if caught_up {
                self.published(&progress, true);
            }
            if self.store.staged_bytes() > STAGED_LIMIT {
                if let Err(e) = self.store.checkpoint() {
                    return self.halt(format!("checkpoint failed: {e}"));
                }
            }
            self.update_lag(&consumer, &progress);
            if metadata_at.elapsed() >= METADATA_EVERY {
                metadata_at = Instant::now();
                // One short request for every topic (librdkafka's own refresh is every 5 min).
                let grown = consumer.fetch_metadata(None, Duration::from_secs(2)).is_ok_and(|m| {
                    m.topics()
                        .iter()
                        .any(|t| parts.get(t.name()).is_some_and(|known| t.partitions().len() > known.len()))
                });
                if grown {
                    return End::Restart;
                }
            }
        }
    }

    /// Commits the rows built so far, every table's in one atomic commit, with `progress`
    /// (also when there are none: skipped messages and tombstones advance the offsets).
    fn commit(&self, builders: &mut [RowsBuilder], progress: &Progress, ts_ms: Option<i64>) -> Result<(), String> {
        let mut extra = WriteBatch::default();
        progress.write(self.id, &mut extra).map_err(|e| e.to_string())?;
        let origin = CommitOrigin {
            source: Some(self.name.clone()),
            ts_ms: ts_ms.unwrap_or_else(crate::change::now_ms),
            ..Default::default()
        };
        let mut changes = Vec::new();
        let mut rows = vec![0u64; builders.len()];
        for (i, b) in builders.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            rows[i] = b.len() as u64;
            let (data, weights) = b.take()?;
            let table = &self.readers[i].table;
            let mode = if table.key_columns().is_some() { ApplyMode::Upsert } else { ApplyMode::Delta };
            changes.push((table.as_ref(), ChangeBatch { data, weights, mode }));
        }
        let refs: Vec<(&TableState, &ChangeBatch)> = changes.iter().map(|(t, c)| (*t, c)).collect();
        self.dataflow.commit_from(&refs, extra, &origin).map_err(|e: Error| {
            let tables: Vec<&str> = changes.iter().map(|(t, _)| t.name()).collect();
            format!("cannot apply messages to {}: {e}", tables.join(", "))
        })?;
        let mut s = self.status();
        for (t, n) in s.tables.iter_mut().zip(rows) {
            t.rows_copied += n;
        }
        if let Some(ts) = ts_ms {
            s.lag_seconds = Some((crate::change::now_ms() - ts).max(0) as f64 / 1000.0);
        }
        Ok(())
    }

    /// Debezium's truncate: every row of table `reader` removed, with `progress`.
    fn truncate(&self, reader: usize, progress: &Progress) -> Result<(), String> {
        let mut extra = WriteBatch::default();
        progress.write(self.id, &mut extra).map_err(|e| e.to_string())?;
        let table = &self.readers[reader].table;
        let all = table.snapshot().map_err(|e| e.to_string())?;
        let change = ChangeBatch::uniform(all, -1);
        let origin =
            CommitOrigin { source: Some(self.name.clone()), ts_ms: crate::change::now_ms(), ..Default::default() };
        self.dataflow
            .commit_from(&[(table.as_ref(), &change)], extra, &origin)
            .map_err(|e| format!("cannot truncate table {}: {e}", table.name()))
    }

    /// Shows and publishes the offsets committed.
    fn published(&self, progress: &Progress, caught_up: bool) {
        self.applied.send_replace(progress.offsets.clone());
        let mut s = self.status();
        s.offsets = Some(progress.describe());
        if s.state == "reconnecting" {
            s.state = "streaming".into();
            s.last_error = None;
        }
        if caught_up {
            s.lag_seconds = Some(0.0);
        }
    }

    fn report_skipped(&self, reader: usize, skipped: u64, bad: &BadMessage) {
        let what = format!(
            "{skipped} message(s) skipped (ON_ERROR = 'skip'); the last: topic {} partition {} offset {}: {}",
            bad.topic, bad.partition, bad.offset, bad.reason
        );
        tracing::warn!(source = %self.name, "{what}");
        if let Some(t) = self.status().tables.get_mut(reader) {
            t.last_error = Some(what);
        }
    }

    /// Messages in the topics past what was applied (as of librdkafka's last statistics).
    fn update_lag(&self, consumer: &KafkaConsumer, progress: &Progress) {
        let high = consumer.context().high.locked();
        if high.is_empty() {
            return;
        }
        let lag: i64 =
            high.iter().map(|((topic, p), high)| (high - progress.next(topic, *p).unwrap_or(0)).max(0)).sum();
        drop(high);
        self.status().lag_messages = Some(lag as u64);
    }
}

/// Appends one message's rows, all or none.
fn push(builder: &mut RowsBuilder, decoded: &Decoded) -> Result<(), String> {
    let mark = builder.len();
    for (row, weight) in &decoded.rows {
        if let Err(e) = builder.push(row, *weight, &decoded.hints) {
            builder.truncate(mark);
            return Err(e);
        }
    }
    Ok(())
}
