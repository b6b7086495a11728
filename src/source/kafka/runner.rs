//! The consumer loop of one Kafka source: poll a batch of messages, decode them into one
//! change of the table, and commit it through the dataflow together with the partitions'
//! next offsets (one atomic store batch), so rows and offsets are durable together.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::decode::RowsBuilder;
use super::envelope::{self, Decoded};
use super::{partitions, KafkaOptions, OnError, Progress, Start};
use crate::change::{ApplyMode, ChangeBatch, CommitOrigin};
use crate::dataflow::Dataflow;
use crate::source::SourceStatus;
use crate::state::{CheckpointedStore, TableState, WriteBatch};
use crate::sync::Unpoisoned;

/// Most messages in one commit.
const MAX_BATCH_MESSAGES: usize = 10_000;
/// Most message bytes in one commit.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Staged bytes past which the source checkpoints (bounds memory while reading a backlog).
const STAGED_LIMIT: usize = 256 << 20;
/// How often the topic's end offsets are read for `lag_messages`.
const WATERMARK_EVERY: Duration = Duration::from_secs(2);

pub(super) struct Runner {
    pub name: String,
    pub id: u64,
    pub connection: String,
    pub client: ClientConfig,
    pub options: KafkaOptions,
    pub key_names: Vec<String>,
    pub table: Arc<TableState>,
    pub store: Arc<CheckpointedStore>,
    pub dataflow: Arc<Dataflow>,
    pub status: Arc<Mutex<SourceStatus>>,
    /// Each partition's next offset, published after each commit (`real_time_recency`).
    pub applied: watch::Sender<BTreeMap<i32, i64>>,
    pub shutdown: watch::Receiver<bool>,
}

/// Why a consumer session ended.
enum End {
    Shutdown,
    /// The table stopped (a message it cannot read, a failed commit): idle until shutdown.
    Halted,
    /// The brokers could not be reached or described: try again after a pause.
    Retry(String),
}

/// A message that cannot be read: where it is and why.
struct BadMessage {
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

    fn session(&self) -> End {
        let topic = self.options.topic.clone();
        let consumer: BaseConsumer = match self.client.create() {
            Ok(c) => c,
            Err(e) => return End::Retry(format!("cannot create a Kafka client: {e}")),
        };
        let parts = match partitions(&consumer, &topic, &self.connection) {
            Ok(p) => p,
            Err(e) => return End::Retry(e.to_string()),
        };
        let mut progress = match Progress::load(self.store.as_ref(), self.id) {
            Ok(p) => p,
            Err(e) => return self.halt(e.to_string()),
        };
        // START_OFFSET = 'latest': the end as of now, stored at once, so a restart before the
        // first message does not skip what arrived meanwhile.
        let unstarted: Vec<i32> = parts.iter().filter(|p| !progress.offsets.contains_key(p)).copied().collect();
        if self.options.start == Start::Latest && !unstarted.is_empty() {
            for p in unstarted {
                match consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)) {
                    Ok((_, high)) => progress.offsets.insert(p, high),
                    Err(e) => return End::Retry(format!("cannot read the end of partition {p}: {e}")),
                };
            }
            if let Err(e) = self.commit(
                &mut RowsBuilder::new(self.table.schema(), None, self.options.timestamp_unit),
                &progress,
                None,
            ) {
                return self.halt(e);
            }
        }
        let mut assignment = TopicPartitionList::new();
        for p in &parts {
            let offset = match progress.offsets.get(p) {
                Some(o) => Offset::Offset(*o),
                None => Offset::Beginning,
            };
            if let Err(e) = assignment.add_partition_offset(&topic, *p, offset) {
                return End::Retry(format!("cannot assign partition {p}: {e}"));
            }
        }
        if let Err(e) = consumer.assign(&assignment) {
            return End::Retry(format!("cannot assign the topic's partitions: {e}"));
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
        let schema = self.table.schema();
        let key = self.table.key_columns().map(<[usize]>::to_vec);
        let mut builder = RowsBuilder::new(schema, key, self.options.timestamp_unit);
        let mut skipped = 0u64;
        let mut watermarks_at = Instant::now() - WATERMARK_EVERY;
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
                let (partition, offset) = (message.partition(), message.offset());
                last_ts = message.timestamp().to_millis().or(last_ts);
                bytes += message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len);
                let decoded =
                    envelope::decode(self.options.envelope, message.key(), message.payload(), &self.key_names);
                let outcome = match decoded {
                    Ok(d) if d.truncate => {
                        // What came before, then every row removed with this message's offset.
                        if let Err(e) = self.commit(&mut builder, &pending, last_ts) {
                            return self.halt(e);
                        }
                        pending.offsets.insert(partition, offset + 1);
                        if let Err(e) = self.truncate(&pending) {
                            return self.halt(e);
                        }
                        progress = pending.clone();
                        Ok(())
                    }
                    Ok(d) => push(&mut builder, &d),
                    Err(reason) => Err(reason),
                };
                if let Err(reason) = outcome {
                    let bad = BadMessage { partition, offset, reason };
                    match self.options.on_error {
                        OnError::Skip => {
                            skipped += 1;
                            self.report_skipped(skipped, &bad);
                        }
                        OnError::Stop => {
                            // The messages before it are good: keep them.
                            if let Err(e) = self.commit(&mut builder, &pending, last_ts) {
                                return self.halt(e);
                            }
                            self.published(&pending, caught_up);
                            return self.halt(format!(
                                "topic {topic} partition {} offset {}: {}. Fix the producer, or create the source \
                                 WITH (ON_ERROR = 'skip') to skip such messages",
                                bad.partition, bad.offset, bad.reason
                            ));
                        }
                    }
                }
                pending.offsets.insert(partition, offset + 1);
                count += 1;
                if count >= MAX_BATCH_MESSAGES || bytes >= MAX_BATCH_BYTES {
                    break;
                }
                next = consumer.poll(Duration::ZERO);
            }
            if pending != progress {
                if let Err(e) = self.commit(&mut builder, &pending, last_ts) {
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
            if watermarks_at.elapsed() >= WATERMARK_EVERY {
                watermarks_at = Instant::now();
                self.update_lag(&consumer, &parts, &progress);
            }
        }
    }

    /// Commits the rows built so far with `progress` (also when there are none: skipped
    /// messages and tombstones advance the offsets).
    fn commit(&self, builder: &mut RowsBuilder, progress: &Progress, ts_ms: Option<i64>) -> Result<(), String> {
        let mut extra = WriteBatch::default();
        progress.write(self.id, &mut extra).map_err(|e| e.to_string())?;
        let origin = CommitOrigin {
            source: Some(self.name.clone()),
            ts_ms: ts_ms.unwrap_or_else(crate::change::now_ms),
            ..Default::default()
        };
        let rows = builder.len() as u64;
        let result = if builder.is_empty() {
            self.dataflow.commit_from(&[], extra, &origin)
        } else {
            let (data, weights) = builder.take()?;
            let mode = if self.table.key_columns().is_some() { ApplyMode::Upsert } else { ApplyMode::Delta };
            let change = ChangeBatch { data, weights, mode };
            self.dataflow.commit_from(&[(self.table.as_ref(), &change)], extra, &origin)
        };
        result.map_err(|e| format!("cannot apply messages to table {}: {e}", self.table.name()))?;
        let mut s = self.status();
        for t in &mut s.tables {
            t.rows_copied += rows;
        }
        if let Some(ts) = ts_ms {
            s.lag_seconds = Some((crate::change::now_ms() - ts).max(0) as f64 / 1000.0);
        }
        Ok(())
    }

    /// Debezium's truncate: every row of the table removed, with `progress`.
    fn truncate(&self, progress: &Progress) -> Result<(), String> {
        let mut extra = WriteBatch::default();
        progress.write(self.id, &mut extra).map_err(|e| e.to_string())?;
        let all = self.table.snapshot().map_err(|e| e.to_string())?;
        let change = ChangeBatch::uniform(all, -1);
        let origin =
            CommitOrigin { source: Some(self.name.clone()), ts_ms: crate::change::now_ms(), ..Default::default() };
        self.dataflow
            .commit_from(&[(self.table.as_ref(), &change)], extra, &origin)
            .map_err(|e| format!("cannot truncate table {}: {e}", self.table.name()))
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

    fn report_skipped(&self, skipped: u64, bad: &BadMessage) {
        let what = format!(
            "{skipped} message(s) skipped (ON_ERROR = 'skip'); the last: partition {} offset {}: {}",
            bad.partition, bad.offset, bad.reason
        );
        tracing::warn!(source = %self.name, "{what}");
        let mut s = self.status();
        for t in &mut s.tables {
            t.last_error = Some(what.clone());
        }
    }

    /// Messages in the topic past what was applied (each partition's end offset read now).
    fn update_lag(&self, consumer: &BaseConsumer, parts: &[i32], progress: &Progress) {
        let mut lag = 0u64;
        for p in parts {
            match consumer.fetch_watermarks(&self.options.topic, *p, Duration::from_secs(1)) {
                Ok((low, high)) => {
                    let at = progress.offsets.get(p).copied().unwrap_or(low).max(low);
                    lag += (high - at).max(0) as u64;
                }
                Err(_) => return,
            }
        }
        self.status().lag_messages = Some(lag);
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
