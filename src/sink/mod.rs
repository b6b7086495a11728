//! Sinks: where changes leave Headwater (life of a change, step 4).
//!
//! `CREATE SINK name FROM relation INTO KAFKA ...` publishes a table's or materialized view's
//! contents, then every change, to a Kafka topic ([`kafka`]). The design, in three parts:
//!
//! 1. **Outbox in the commit.** A sink registers a [`Tap`] with the dataflow. Inside every
//!    commit that changes its relation, the tap encodes the exact delta into messages
//!    ([`encode`]) and adds them, as one outbox entry `k/<sink>/o/<seq>`, to the commit's own
//!    write batch. So a change and the messages it owes are checkpointed together: after a
//!    crash both are there or neither is (and the binlog replays what neither recorded).
//! 2. **Only durable entries leave.** The worker sends an entry once the checkpoint holding it
//!    is on disk ([`crate::state::CheckpointedStore::wait_durable`]), so Kafka never holds a change
//!    that a crash could take back from Headwater's own tables.
//! 3. **Kafka transactions aligned with checkpoints** (`DELIVERY = 'exactly_once'`, the
//!    default): the entries that became durable together are produced in one Kafka
//!    transaction (whole commits only: an upstream transaction is never split), together with a
//!    progress record (`PROGRESS_TOPIC`, key = the sink's transactional id, value = the last
//!    entry's seq). After a crash, `init_transactions` fences the old producer and aborts its
//!    open transaction; the progress record says which entries Kafka already has, and those
//!    are dropped instead of being sent again. With `DELIVERY = 'at_least_once'` there are no
//!    transactions: entries are deleted after the broker acknowledged them, and a crash in
//!    between sends them again.
//!
//! A sink from a materialized view whose reads report an error (`dataflow::errors`) pauses:
//! its entries wait in the outbox, `hw_catalog.sinks` says `paused` with the error, and they
//! are sent once the error is retracted.
//!
//! The first thing a sink sends is a snapshot of its relation, taken at the same commit as
//! its first delta ([`Dataflow::add_tap`](crate::dataflow::Dataflow::add_tap)); with
//! exactly-once it is one Kafka transaction, so consumers never see half of it.

pub mod encode;
pub mod kafka;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::change::{ChangeBatch, CommitOrigin};
use crate::dataflow::Tap;
use crate::error::{Error, Result};
use crate::state::{keys, StateStore, WriteBatch};
use crate::sync::Unpoisoned;
use encode::{DecimalFormat, Encoder, Envelope};

/// The delivery guarantee of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    ExactlyOnce,
    AtLeastOnce,
}

/// Everything a running sink needs to know, from its statement and its connection.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub id: u64,
    pub name: String,
    pub relation: String,
    pub connection: String,
    pub delivery: Delivery,
    pub encoder: Encoder,
    /// Where its messages go.
    pub target: Arc<dyn SinkTarget>,
}

/// Where a sink's messages go, and how they get there: the one part of a sink that depends on
/// its destination ([`kafka::KafkaTarget`] today). The rest is the same for every kind — the
/// outbox entries its tap adds to each commit, the snapshot, the progress record, the status —
/// and is handed over in a [`SinkRun`]. A target keeps the guarantee of [`Delivery`]: an entry
/// leaves the outbox only once the destination has it.
pub trait SinkTarget: Send + Sync + std::fmt::Debug {
    /// The destination as `hw_catalog.sinks` shows it (a topic).
    fn destination(&self) -> String;
    /// Sends the snapshot (if not sent yet) and then the outbox's durable entries, until the
    /// sink is stopped, retrying what fails. Runs on the sink's own thread.
    fn deliver(&self, run: SinkRun);
}

/// What a [`SinkTarget`] delivers: the sink's configuration, its outbox and status (shared
/// with its tap), the store, and where it left off.
pub struct SinkRun {
    pub config: SinkConfig,
    pub(crate) shared: Arc<Shared>,
    pub store: Arc<crate::state::CheckpointedStore>,
    pub progress: Progress,
    /// The initial snapshot and the outbox seq it follows, until the destination has it.
    pub snapshot: Option<(RecordBatch, u64)>,
    /// The checkpoint generation that makes the snapshot's rows durable.
    pub snapshot_generation: u64,
    /// The relation: while it is an errored view, nothing is sent.
    pub relation: Arc<crate::state::TableState>,
}

/// What `hw_catalog.sinks` shows about one sink.
#[derive(Debug, Clone, Default)]
pub struct SinkStatus {
    pub name: String,
    pub relation: String,
    pub connection: String,
    pub topic: String,
    pub envelope: String,
    pub delivery: String,
    /// starting, connecting, recovering, snapshotting, running, retrying.
    pub state: String,
    pub messages_sent: u64,
    pub snapshot_messages: u64,
    /// Kafka transactions committed (exactly-once) or acknowledged batches (at-least-once).
    pub batches: u64,
    /// Commits whose messages are not yet in Kafka.
    pub pending_commits: u64,
    /// Age of the oldest commit not yet in Kafka (0 when none is waiting).
    pub lag_seconds: f64,
    pub last_error: Option<String>,
}

/// The sink's durable progress, `k/<sink>/s`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// Every outbox entry up to this seq is in Kafka (and deleted from the outbox).
    pub acked: u64,
    /// The initial snapshot is in Kafka.
    pub snapshot_done: bool,
}

impl Progress {
    /// The stored progress of sink `id` (default: nothing sent yet).
    pub fn load(store: &dyn StateStore, id: u64) -> Result<Self> {
        match store.get(&keys::sink_progress(id))? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| Error::Storage(format!("sink {id} has a corrupt progress record: {e}"))),
            None => Ok(Progress::default()),
        }
    }

    fn write(&self, id: u64, batch: &mut WriteBatch) {
        batch.put(keys::sink_progress(id), serde_json::to_vec(self).expect("progress serialises"));
    }
}

/// An outbox entry the worker has not sent yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u64,
    /// Checkpoint generation that makes it durable (0: already durable).
    generation: u64,
    ts_ms: i64,
}

#[derive(Debug, Default)]
struct OutboxState {
    next_seq: u64,
    pending: VecDeque<Pending>,
    /// The entry staged by the commit in progress.
    staged: Option<(u64, i64)>,
}

/// What the tap (commit side) and the worker share.
pub(crate) struct Shared {
    outbox: Mutex<OutboxState>,
    changed: Condvar,
    stop: AtomicBool,
    status: Mutex<SinkStatus>,
}

impl Shared {
    fn status(&self) -> MutexGuard<'_, SinkStatus> {
        self.status.locked()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`, waking early when the sink is stopped or a commit arrives.
    fn pause(&self, d: std::time::Duration) {
        let outbox = self.outbox.locked();
        let _ = self.changed.wait_timeout(outbox, d);
    }
}

/// The commit-side half of a sink: turns its relation's deltas into outbox entries.
struct SinkTap {
    id: u64,
    relation: u64,
    encoder: Encoder,
    shared: Arc<Shared>,
}

impl Tap for SinkTap {
    fn relation(&self) -> u64 {
        self.relation
    }

    fn stage(&mut self, delta: &ChangeBatch, origin: &CommitOrigin, batch: &mut WriteBatch) -> Result<()> {
        let messages = self.encoder.delta(delta, origin)?;
        if messages.is_empty() {
            return Ok(());
        }
        let mut outbox = self.shared.outbox.locked();
        let seq = outbox.next_seq;
        batch.put(keys::sink_outbox_entry(self.id, seq), encode::frame(&messages));
        outbox.staged = Some((seq, origin.ts_ms));
        Ok(())
    }

    fn committed(&mut self, generation: u64) {
        let mut outbox = self.shared.outbox.locked();
        if let Some((seq, ts_ms)) = outbox.staged.take() {
            outbox.next_seq = seq + 1;
            outbox.pending.push_back(Pending { seq, generation, ts_ms });
            self.shared.changed.notify_all();
        }
    }

    fn aborted(&mut self) {
        self.shared.outbox.locked().staged = None;
    }
}

/// A running sink: its tap is in the dataflow, its worker thread talks to Kafka.
pub struct SinkHandle {
    id: u64,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SinkHandle {
    /// Asks the worker to stop and waits for it (it finishes the Kafka call in progress).
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every running sink, by name.
#[derive(Default)]
pub struct SinkRegistry {
    running: Mutex<BTreeMap<String, SinkHandle>>,
}

impl std::fmt::Debug for SinkRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkRegistry")
    }
}

impl SinkRegistry {
    /// Starts sink `config` over `relation`: registers its tap (which pins the relation's
    /// snapshot) and starts its worker. The dataflow's store holds the outbox and the progress
    /// record.
    pub fn start(
        &self,
        config: SinkConfig,
        relation: &Arc<crate::state::TableState>,
        dataflow: &crate::dataflow::Dataflow,
    ) -> Result<()> {
        let store = dataflow.store().clone();
        let progress = Progress::load(store.as_ref(), config.id)?;
        // Entries left by an earlier run: all durable (they were read from the store).
        let mut pending = VecDeque::new();
        let prefix = keys::sink_outbox(config.id);
        for (k, _) in store.scan_prefix(&prefix)? {
            let seq = k[prefix.len()..]
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Storage(format!("sink {} has a corrupt outbox key", config.name)))?;
            pending.push_back(Pending { seq, generation: 0, ts_ms: crate::change::now_ms() });
        }
        let next_seq = pending.back().map_or(progress.acked, |p| p.seq.max(progress.acked)) + 1;
        let status = SinkStatus {
            name: config.name.clone(),
            relation: config.relation.clone(),
            connection: config.connection.clone(),
            topic: config.target.destination(),
            envelope: match config.encoder.envelope {
                Envelope::Upsert => "upsert".into(),
                Envelope::Debezium => "debezium".into(),
            },
            delivery: match config.delivery {
                Delivery::ExactlyOnce => "exactly_once".into(),
                Delivery::AtLeastOnce => "at_least_once".into(),
            },
            state: "starting".into(),
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            outbox: Mutex::new(OutboxState { next_seq, pending, staged: None }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            status: Mutex::new(status),
        });
        let tap =
            SinkTap { id: config.id, relation: relation.id(), encoder: config.encoder.clone(), shared: shared.clone() };
        // The snapshot follows every entry recorded before this point: read before the tap is
        // registered (no commit can add an entry until then), and the tap's first entry is
        // the first commit after the snapshot's pin.
        let base = shared.outbox.locked().next_seq - 1;
        let id = config.id;
        let rows = dataflow.add_tap(id, Box::new(tap), relation)?;
        let generation = store.staged_generation();
        let snapshot: Option<(RecordBatch, u64)> = (!progress.snapshot_done).then_some((rows, base));
        let name = config.name.clone();
        let target = config.target.clone();
        let run = SinkRun {
            config,
            shared: shared.clone(),
            store,
            progress,
            snapshot,
            snapshot_generation: generation,
            relation: relation.clone(),
        };
        let thread = std::thread::Builder::new().name(format!("sink-{name}")).spawn(move || target.deliver(run));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                dataflow.remove_tap(id);
                return Err(Error::Internal(format!("cannot start sink thread: {e}")));
            }
        };
        let old = self.running.locked().insert(name, SinkHandle { id, shared, thread: Some(thread) });
        if let Some(h) = old {
            h.stop();
        }
        Ok(())
    }

    /// Stops sink `name` with catalog id `id` (DROP SINK; a newer sink of the same name is
    /// left alone); its tap must be removed by the caller.
    pub fn stop(&self, name: &str, id: u64) {
        let handle = {
            let mut running = self.running.locked();
            match running.get(name) {
                Some(h) if h.id == id => running.remove(name),
                _ => None,
            }
        };
        if let Some(h) = handle {
            h.stop();
        }
    }

    /// Stops every sink (shutdown): what they have not sent stays in their outboxes.
    pub fn stop_all(&self) {
        let all = std::mem::take(&mut *self.running.locked());
        for (_, h) in all {
            h.stop();
        }
    }

    /// The status of every sink, by name.
    pub fn statuses(&self) -> Vec<SinkStatus> {
        let running = self.running.locked();
        running
            .values()
            .map(|h| {
                let mut s = h.shared.status().clone();
                let outbox = h.shared.outbox.locked();
                s.pending_commits = outbox.pending.len() as u64;
                s.lag_seconds = outbox
                    .pending
                    .front()
                    .map_or(0.0, |p| ((crate::change::now_ms() - p.ts_ms).max(0) as f64) / 1000.0);
                s
            })
            .collect()
    }
}

impl Drop for SinkRegistry {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Removes everything sink `id` stored (DROP SINK).
pub fn delete_state(store: &dyn StateStore, id: u64) -> Result<()> {
    let mut batch = WriteBatch::default();
    for (k, _) in store.scan_prefix(&keys::sink(id))? {
        batch.delete(k);
    }
    store.apply(batch)
}

/// Parses a `DECIMAL_FORMAT` option.
pub fn decimal_format(v: &str) -> Result<DecimalFormat> {
    match v.to_ascii_lowercase().as_str() {
        "string" => Ok(DecimalFormat::String),
        "number" => Ok(DecimalFormat::Number),
        _ => Err(Error::InvalidParameterValue(format!("DECIMAL_FORMAT must be 'string' or 'number', got '{v}'"))),
    }
}
