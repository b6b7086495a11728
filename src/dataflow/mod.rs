//! Dataflow: the change representation every layer speaks.
//!
//! A change is a Z-set delta: an Arrow [`RecordBatch`] of rows plus one signed weight per row
//! (+1 insert, −1 delete; an update is −old +new). Local DML produces [`ChangeBatch`]es
//! (`sql::dml`), upstream sources will produce them from binlog row images, and the state
//! layer ([`crate::state::commit`]) applies them. The incremental operators that turn the
//! change batches of tables into those of materialized views plug in here.

use datafusion::arrow::record_batch::RecordBatch;

/// How a table applies a change batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// An exact Z-set delta: every −1 row must be present; deletions apply before insertions
    /// and a +1 on a live key is a unique violation (local DML).
    #[default]
    Delta,
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
