//! Incremental window functions: `f(...) OVER (PARTITION BY p ORDER BY o [frame])` for every
//! window function DataFusion evaluates — `rank`, `dense_rank`, `row_number`, `lag`, `lead`,
//! `first_value`, `last_value`, `nth_value`, `ntile`, `percent_rank`, `cume_dist`, and
//! aggregates over frames (`sum(x) OVER (... ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)`).
//!
//! State: the input's rows by partition, each ordered by the ORDER BY with ties broken by the
//! row ([`super::sorted`]), so a tie's `row_number()` or `lag()` is the same at every
//! evaluation. The output is not stored.
//!
//! Delta rule. A window function reads nothing outside its row's partition, so with `W(P)`
//! the output rows of partition `P` (its rows, each extended by the functions' values),
//! `Δout = Σ_{p touched by Δin} W(S_p + Δin_p) − W(S_p)`, consolidated: rows whose values did
//! not move cancel, and what is left is the rows that entered or left and the rows whose
//! values changed (retracted with the old values, inserted with the new). The cost is the
//! size of the touched partitions, not of the input: a delta into a table of many
//! partitions of ~100 rows evaluates a few hundred rows per changed row, however large the
//! table. (Without PARTITION BY there is one partition: each change reevaluates all rows,
//! which is what `row_number() OVER (ORDER BY ..)` over a whole table costs in any system.)
//!
//! Errors: a function that fails on a partition (an overflowing running sum) has no single
//! row to blame: the partition's output is left out and one error stands for the partition,
//! `Δerrors = E(S_p + Δin_p) − E(S_p)`, so it is retracted when a later change lets the
//! partition evaluate again. Rows on which a partition or sort key fails are errors of their
//! own ([`SortedPartitions::screen`]).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::{concat, concat_batches};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::WindowExpr;

use super::consolidate;
use super::durable::{OperatorState, StateWriter};
use super::errors::{partition_error, ErrorDelta};
use super::operator::{conform, indent, take_rows, Deltas, Operator};
use super::sorted::{Encoded, SortKey, SortedPartitions};
use crate::change::{ApplyMode, ChangeBatch};
use crate::error::{Error, Result, RowError};

/// Window functions sharing one PARTITION BY and ORDER BY, appended to the input's columns.
pub struct Window {
    input: Box<dyn Operator>,
    functions: Vec<Arc<dyn WindowExpr>>,
    sorted: SortedPartitions,
    /// The input's columns, then one per function.
    schema: SchemaRef,
}

/// The output rows of some partitions, and the errors of those that failed.
struct Evaluated {
    rows: Option<RecordBatch>,
    failures: Vec<RowError>,
}

impl Window {
    /// `functions` (all partitioned by `partition_by` and ordered by `keys`) over `input`;
    /// `schema` is the input's columns followed by one column per function.
    pub fn new(
        input: Box<dyn Operator>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        keys: Vec<SortKey>,
        functions: Vec<Arc<dyn WindowExpr>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let mut input = input;
        let rebuilds = super::durable::stateless(input.as_mut());
        let sorted = SortedPartitions::new(input.schema(), partition_by, keys, rebuilds)?;
        Ok(Window { input, functions, sorted, schema })
    }

    /// The output rows of the partitions `touched` as they are now: each partition's rows in
    /// order (a row of multiplicity n as n copies), with the functions' values.
    fn evaluate(&self, touched: &[Box<[u8]>]) -> Result<Evaluated> {
        let mut rows: Vec<&[u8]> = Vec::new();
        let mut ranges = Vec::new();
        for pk in touched {
            let Some(partition) = self.sorted.partition(pk) else { continue };
            let start = rows.len();
            for (row, &n) in partition {
                for _ in 0..n.max(0) {
                    rows.push(row);
                }
            }
            ranges.push((start, rows.len() - start));
        }
        let mut failures = Vec::new();
        if rows.is_empty() {
            return Ok(Evaluated { rows: None, failures });
        }
        let batch = self.sorted.decode_batch(&rows)?;
        let mut values: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.functions.len()];
        let mut kept: Vec<u32> = Vec::with_capacity(rows.len());
        for (start, len) in ranges {
            let part = batch.slice(start, len);
            let mut results = Vec::with_capacity(self.functions.len());
            let mut failed = None;
            for f in &self.functions {
                match f.evaluate(&part) {
                    Ok(v) if v.len() == len => results.push(v),
                    Ok(v) => {
                        return Err(Error::Internal(format!("{} gave {} values for {len} rows", f.name(), v.len())))
                    }
                    Err(e) => {
                        failed = Some(partition_error(f.name(), Error::from(e), &part));
                        break;
                    }
                }
            }
            match failed {
                Some(error) => failures.push(error),
                None => {
                    for (column, v) in values.iter_mut().zip(results) {
                        column.push(v);
                    }
                    kept.extend(start as u32..(start + len) as u32);
                }
            }
        }
        if kept.is_empty() {
            return Ok(Evaluated { rows: None, failures });
        }
        let mut columns =
            if kept.len() == rows.len() { batch.columns().to_vec() } else { take_rows(batch.columns(), &kept)? };
        for parts in values {
            let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            columns.push(concat(&parts)?);
        }
        Ok(Evaluated { rows: Some(conform(&self.schema, columns, kept.len())?), failures })
    }

    /// Adds a delta's rows to the partitions.
    fn absorb(&mut self, delta: &ChangeBatch, encoded: &Encoded) {
        for (i, &w) in delta.weights.iter().enumerate() {
            self.sorted.add(encoded.partition(i), encoded.row(i), w);
        }
    }
}

/// The partitions of the `len` rows of `encoded`, each once, in order of first appearance.
fn touched(encoded: &Encoded, len: usize) -> Vec<Box<[u8]>> {
    let mut seen: HashSet<&[u8], ahash::RandomState> = HashSet::default();
    (0..len).map(|i| encoded.partition(i)).filter(|pk| seen.insert(pk)).map(Box::from).collect()
}

impl Operator for Window {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let Some(delta) = self.input.step(inputs, errors)? else { return Ok(None) };
        let delta = self.sorted.screen(delta, errors)?;
        let schema = self.schema.clone();
        let empty = || Some(ChangeBatch::uniform(RecordBatch::new_empty(schema.clone()), 1));
        if delta.is_empty() {
            return Ok(empty());
        }
        let encoded = self.sorted.encode(&delta.data)?;
        let touched = touched(&encoded, delta.len());
        let before = self.evaluate(&touched)?;
        self.absorb(&delta, &encoded);
        let after = self.evaluate(&touched)?;
        for error in before.failures {
            errors.push(error, -1);
        }
        for error in after.failures {
            errors.push(error, 1);
        }
        let mut batches = Vec::new();
        let mut weights = Vec::new();
        for (rows, sign) in [(after.rows, 1), (before.rows, -1)] {
            if let Some(rows) = rows {
                weights.extend(std::iter::repeat_n(sign, rows.num_rows()));
                batches.push(rows);
            }
        }
        if batches.is_empty() {
            return Ok(empty());
        }
        let data = concat_batches(&self.schema, &batches)?;
        Ok(Some(consolidate(ChangeBatch { data, weights, mode: ApplyMode::Delta })?))
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.input.inputs(out);
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        let functions: Vec<&str> = self.functions.iter().map(|f| f.name()).collect();
        out.push(format!(
            "{}Window [{}] (state: {} partitions, {} rows, {} bytes)",
            indent(depth),
            functions.join(", "),
            self.sorted.len(),
            self.sorted.rows(),
            self.sorted.bytes()
        ));
        self.input.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.sorted.bytes() + self.input.state_bytes()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        f(self);
        self.input.visit_states(f);
    }
}

/// The rows, as [`SortedPartitions`] saves them; the output is evaluated from them.
impl OperatorState for Window {
    fn save(&mut self, out: &mut StateWriter<'_>) {
        self.sorted.save(out)
    }

    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.sorted.load(key, value)
    }

    fn rebuilds(&self) -> bool {
        self.sorted.rebuilds()
    }

    fn rebuild(&mut self, inputs: &Deltas) -> Result<()> {
        // Only the rows: the output was restored with the view, its errors with it.
        let mut errors = ErrorDelta::default();
        let Some(delta) = self.input.step(inputs, &mut errors)? else { return Ok(()) };
        let delta = self.sorted.screen(delta, &mut errors)?;
        let encoded = self.sorted.encode(&delta.data)?;
        self.absorb(&delta, &encoded);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Window functions against DataFusion, over random deltas (a change in a partition
    /// moves the ranks and running sums of the rows after it).
    #[tokio::test]
    async fn windows_match_a_recomputation() {
        for (i, sql) in [
            "SELECT k, g, row_number() OVER (PARTITION BY g ORDER BY k) AS r FROM t",
            "SELECT k, sum(v) OVER (PARTITION BY g ORDER BY k) AS s, rank() OVER (ORDER BY v) AS rk FROM t",
            "SELECT k, lag(v) OVER (PARTITION BY g ORDER BY k) AS prev, count(*) OVER (PARTITION BY g) AS n FROM t",
        ]
        .into_iter()
        .enumerate()
        {
            crate::dataflow::testing::check(sql, 51 + i as u64, crate::dataflow::testing::STEPS).await;
        }
    }
}
