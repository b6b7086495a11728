//! The change representation every layer speaks, at the bottom of the module graph.
//!
//! A change is a Z-set delta: an Arrow [`RecordBatch`] of rows plus one signed weight per row
//! (+1 insert, −1 delete; an update is −old +new). Local DML and sources produce
//! [`ChangeBatch`]es, the dataflow turns them into the deltas of views, the state applies them
//! to tables and sinks publish them with their [`CommitOrigin`]. These types live here, below
//! `state` and `dataflow`, so that both can speak them without importing each other.

use std::collections::HashMap;

use datafusion::arrow::record_batch::RecordBatch;

/// Hash maps keyed by Arrow-row-format bytes: ahash instead of SipHash (keys come from the
/// database, not from an adversary choosing collisions per process).
pub type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// How a table applies a change batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// An exact Z-set delta: every −1 row must be present; deletions apply before insertions
    /// and a +1 on a live key is a unique violation (local DML).
    #[default]
    Delta,
    /// [`ApplyMode::Delta`] whose −1 rows must also equal the stored rows (local DML and
    /// transaction blocks, computed from rows read before the commit): a row another session
    /// changed or removed meanwhile is a serialization failure (40001), never overwritten.
    Checked,
    /// Upstream row images in commit order (sources): a −1 removes whatever row has that key
    /// (for multisets: one copy of that row, if present), a +1 replaces the row with that key.
    /// Rows are applied one after the other, so the batch replays a transaction exactly.
    Upsert,
}

/// Rows with signed multiplicities: the unit of change between layers.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The rows, with exactly the schema of the table or view they change.
    pub data: RecordBatch,
    /// One weight per row of `data`; never zero.
    pub weights: Vec<i64>,
    /// How the weights are to be read.
    pub mode: ApplyMode,
}

impl ChangeBatch {
    /// Every row of `data` with weight `weight` (+1 inserts it, −1 deletes it).
    pub fn uniform(data: RecordBatch, weight: i64) -> Self {
        let weights = vec![weight; data.num_rows()];
        ChangeBatch { data, weights, mode: ApplyMode::Delta }
    }

    /// Number of rows (not the sum of weights).
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when the batch carries no row.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
}

/// Where a commit came from: what a Debezium envelope reports as its `source`.
#[derive(Debug, Clone, Default)]
pub struct CommitOrigin {
    /// The source that captured the change; `None` for local DML.
    pub source: Option<String>,
    /// The upstream binlog file and the position after the transaction.
    pub file: Option<String>,
    pub pos: Option<u64>,
    /// Upstream commit time, or the local commit time (ms since the Unix epoch).
    pub ts_ms: i64,
    /// True for rows copied by a source's snapshot.
    pub snapshot: bool,
}

impl CommitOrigin {
    /// A local statement, committed now.
    pub fn local() -> Self {
        CommitOrigin { ts_ms: now_ms(), ..Default::default() }
    }
}

/// Milliseconds since the Unix epoch (commit times, envelope times).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
