//! Dataflow: the change representation every layer speaks, and the incremental operators that
//! keep materialized views up to date.
//!
//! A change is a Z-set delta: an Arrow [`RecordBatch`] of rows plus one signed weight per row
//! (+1 insert, −1 delete; an update is −old +new). Local DML produces [`ChangeBatch`]es
//! (`sql::dml`), sources produce them from binlog row images, and every write goes through
//! [`Dataflow::commit`]:
//!
//! 1. each table checks its change and turns it into its exact delta
//!    ([`crate::state::TableState::plan_change`], [`crate::state::TableState::delta_of`]);
//! 2. every materialized view that reads a changed table (or view) runs its operator tree
//!    ([`operator::Operator::step`]) on those deltas, in creation order, so views on views
//!    see their inputs' deltas of the same commit;
//! 3. the durable part goes to the store in one batch, then, under the publish lock, every
//!    table and view changes in memory at once. Queries pin all the tables they read under
//!    the same lock ([`Dataflow::pin`]): one commit is one epoch, and a query sees whole
//!    epochs only (`docs/consistency.md`).
//!
//! The operators ([`operator`], [`join`], [`aggregate`], [`topk`], [`window`], [`unnest`], ...) are compiled from DataFusion's
//! optimized `LogicalPlan` ([`compile`]); expressions are DataFusion `PhysicalExpr`s evaluated
//! on the change batches. Each operator documents its delta rule and is tested against
//! recomputing its SQL with DataFusion: on its own, stepped through random deltas of many
//! sizes (`testing`, the `*_match_a_recomputation` tests), and inside whole views
//! (`tests/integration/views_oracle.rs`).
//!
//! A view's result is a stored table and its operators' state is saved at every checkpoint's
//! cut, what changed only ([`durable`]): a restart loads views rather than recomputing them.

pub mod aggregate;
pub mod clock;
pub mod compile;
pub mod durable;
pub mod errors;
mod graph;
pub mod join;
pub mod operator;
pub mod recursive;
pub mod scalar_subquery;
pub mod sorted;
pub mod tap;
pub mod temporal;
#[cfg(test)]
mod testing;
pub mod topk;
pub mod unnest;
pub mod window;

use datafusion::arrow::row::{RowConverter, SortField};

pub use graph::{Dataflow, ViewInfo};
pub use tap::Tap;

use datafusion::arrow::record_batch::RecordBatch;

use crate::change::{ApplyMode, ChangeBatch, FastMap};
use crate::error::Result;

/// Merges rows that are equal, summing their weights, and drops rows whose weight sums to
/// zero: `{+x, −x}` becomes nothing. Order of first appearance is kept.
pub fn consolidate(change: ChangeBatch) -> Result<ChangeBatch> {
    if change.len() < 2 {
        return Ok(change);
    }
    let fields = change.data.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(change.data.columns())?;
    let mut slots: FastMap<&[u8], usize> = FastMap::with_capacity_and_hasher(change.len(), Default::default());
    let mut first: Vec<u32> = Vec::new();
    let mut weights: Vec<i64> = Vec::new();
    for (i, w) in change.weights.iter().enumerate() {
        let slot = *slots.entry(rows.row(i).data()).or_insert_with(|| {
            first.push(i as u32);
            weights.push(0);
            first.len() - 1
        });
        weights[slot] += w;
    }
    let keep: Vec<usize> = (0..first.len()).filter(|&s| weights[s] != 0).collect();
    if keep.len() == change.len() {
        return Ok(change);
    }
    let indices: Vec<u32> = keep.iter().map(|&s| first[s]).collect();
    let columns = operator::take_rows(change.data.columns(), &indices)?;
    let data = RecordBatch::try_new(change.data.schema(), columns)?;
    Ok(ChangeBatch { data, weights: keep.iter().map(|&s| weights[s]).collect(), mode: ApplyMode::Delta })
}
