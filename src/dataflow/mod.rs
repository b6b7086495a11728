//! Dataflow: the change representation every layer speaks.
//!
//! A change is a Z-set delta: an Arrow [`RecordBatch`] of rows plus one signed weight per row
//! (+1 insert, −1 delete; an update is −old +new). Local DML produces [`ChangeBatch`]es
//! (`sql::dml`), upstream sources will produce them from binlog row images, and the state
//! layer ([`crate::state::commit`]) applies them. The incremental operators that turn the
//! change batches of tables into those of materialized views plug in here.

use datafusion::arrow::record_batch::RecordBatch;

/// Rows with signed multiplicities: the unit of change between layers.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The rows, with exactly the schema of the table or view they change.
    pub data: RecordBatch,
    /// One weight per row of `data`; never zero.
    pub weights: Vec<i64>,
}

impl ChangeBatch {
    /// Every row of `data` with weight `weight` (+1 inserts it, −1 deletes it).
    pub fn uniform(data: RecordBatch, weight: i64) -> Self {
        let weights = vec![weight; data.num_rows()];
        ChangeBatch { data, weights }
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
