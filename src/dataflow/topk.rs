//! Incremental top-k: `ORDER BY ... LIMIT n [OFFSET m]`, and per group
//! `row_number() OVER (PARTITION BY g ORDER BY ...) <= n`.
//!
//! State, per partition (one for a plain LIMIT): the partition's input rows as an ordered
//! multiset ([`super::sorted`]: ORDER BY order, ties broken by the row itself, so the same
//! rows win every time), plus the window last emitted: ranks `[m, m + n)` counted with
//! multiplicities. With a rank column (the `row_number()` form) each copy of a
//! row in the window is one output row carrying its rank, 1-based.
//!
//! Delta rule, per partition the delta touches: `Δout = window(S + Δin) − window(S)`, the new
//! window read from the map (`O(m + n)`), the difference taken against the stored one (with
//! ranks, a row whose rank moved is retracted at the old rank and inserted at the new one).
//! When a partition's window is full and every changed row sorts after its last row, the
//! window cannot change and nothing is read: the common case of rows arriving outside the top.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::durable::{OperatorState, StateWriter};
use super::errors::ErrorDelta;
use super::operator::{conform, indent, Deltas, Operator};
pub use super::sorted::SortKey;
use super::sorted::{Partition, SortedPartitions};
use crate::change::{ApplyMode, ChangeBatch, FastMap};
use crate::error::Result;

/// Encoded rows in window order, each with its multiplicity in the window.
type Window = Vec<(Box<[u8]>, i64)>;

/// A partition a delta touches: whether its window may change and, while it cannot, the
/// last row of its full window.
struct Touched {
    may_change: bool,
    boundary: Option<Box<[u8]>>,
}

/// The limit of `OFFSET m` without `LIMIT`: every row past the offset (halfway to `i64::MAX`,
/// so offset + limit cannot overflow).
pub const UNLIMITED: usize = (i64::MAX / 2) as usize;

/// The top-k operator.
pub struct TopK {
    input: Box<dyn Operator>,
    offset: usize,
    limit: usize,
    /// Output a rank (`row_number()`) column after the input's columns.
    ranked: bool,
    /// The input's rows, by partition, in ORDER BY order.
    sorted: SortedPartitions,
    /// Per partition, the window last emitted, in order, with the multiplicity each row has
    /// in it (absent: empty).
    shown: FastMap<Box<[u8]>, Window>,
    schema: SchemaRef,
}

impl TopK {
    /// `ORDER BY keys LIMIT limit OFFSET offset` over `input`: output rows are input rows
    /// ([`UNLIMITED`]: `OFFSET` alone).
    pub fn new(input: Box<dyn Operator>, keys: Vec<SortKey>, offset: usize, limit: usize) -> Result<Self> {
        let schema = input.schema();
        Self::build(input, Vec::new(), keys, offset, limit, false, schema)
    }

    /// The first `limit` rows of each partition with their rank (`row_number()`), as a last
    /// column of `schema`.
    pub fn ranked(
        input: Box<dyn Operator>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        keys: Vec<SortKey>,
        limit: usize,
        schema: SchemaRef,
    ) -> Result<Self> {
        Self::build(input, partition_by, keys, 0, limit, true, schema)
    }

    fn build(
        input: Box<dyn Operator>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        keys: Vec<SortKey>,
        offset: usize,
        limit: usize,
        ranked: bool,
        schema: SchemaRef,
    ) -> Result<Self> {
        let mut input = input;
        let rebuilds = super::durable::stateless(input.as_mut());
        let sorted = SortedPartitions::new(input.schema(), partition_by, keys, rebuilds)?;
        Ok(TopK { input, offset, limit, ranked, sorted, shown: FastMap::default(), schema })
    }

    /// Ranks `[offset, offset + limit)` of a partition.
    fn window(&self, rows: Option<&Partition>) -> Window {
        // (With `UNLIMITED` the window runs to the end: a change costs the rows past the
        // offset, as recomputing `OFFSET m` would.)
        let mut out = Vec::new();
        let (mut skip, mut take) = (self.offset as i64, self.limit as i64);
        for (row, &n) in rows.into_iter().flatten() {
            if take == 0 {
                break;
            }
            let past = n.min(skip);
            skip -= past;
            let here = (n - past).min(take);
            if here > 0 {
                out.push((row.clone(), here));
                take -= here;
            }
        }
        out
    }

    /// The output delta between a partition's old and new windows, appended to `rows`,
    /// `ranks` and `weights`.
    fn diff<'a>(
        &self,
        old: &'a [(Box<[u8]>, i64)],
        new: &'a [(Box<[u8]>, i64)],
        out: &mut (Vec<&'a [u8]>, Vec<u64>, Vec<i64>),
    ) {
        // With ranks each copy is its own output row (row, rank); without, a row's weight is
        // its multiplicity in the window.
        let expand = |window: &'a [(Box<[u8]>, i64)], sign: i64, diff: &mut FastMap<(&'a [u8], u64), i64>| {
            let mut rank = self.offset as u64;
            for (row, n) in window {
                if self.ranked {
                    for _ in 0..*n {
                        rank += 1;
                        *diff.entry((row.as_ref(), rank)).or_insert(0) += sign;
                    }
                } else {
                    *diff.entry((row.as_ref(), 0)).or_insert(0) += sign * n;
                }
            }
        };
        let mut diff = FastMap::default();
        expand(new, 1, &mut diff);
        expand(old, -1, &mut diff);
        for ((row, rank), w) in diff {
            if w != 0 {
                out.0.push(row);
                out.1.push(rank);
                out.2.push(w);
            }
        }
    }

    /// Output rows: the column part of the encodings, and the rank column if any.
    fn decode(&self, rows: &[&[u8]], ranks: Vec<u64>, weights: Vec<i64>) -> Result<ChangeBatch> {
        let mut columns: Vec<ArrayRef> = self.sorted.decode(rows)?;
        if self.ranked {
            columns.push(Arc::new(UInt64Array::from(ranks)));
        }
        let data = conform(&self.schema, columns, rows.len())?;
        Ok(ChangeBatch { data, weights, mode: ApplyMode::Delta })
    }
}

impl Operator for TopK {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let Some(delta) = self.input.step(inputs, errors)? else { return Ok(None) };
        let delta = self.sorted.screen(delta, errors)?;
        let empty = || Some(ChangeBatch::uniform(RecordBatch::new_empty(self.schema.clone()), 1));
        if delta.is_empty() {
            return Ok(empty());
        }
        let encoded = self.sorted.encode(&delta.data)?;
        // Per partition the delta touches: whether its window may change and, while it
        // cannot, the last row of its full window (read once per partition).
        let mut touched: FastMap<Box<[u8]>, Touched> = FastMap::default();
        for (i, &w) in delta.weights.iter().enumerate() {
            let (pk, row) = (encoded.partition(i), encoded.row(i));
            if !touched.contains_key(pk) {
                let shown = self.shown.get(pk).map_or(&[][..], |s| s.as_slice());
                let full = shown.iter().map(|(_, n)| n).sum::<i64>() == self.limit as i64;
                let boundary = if full { shown.last().map(|(r, _)| r.clone()) } else { None };
                touched.insert(pk.into(), Touched { may_change: boundary.is_none(), boundary });
            }
            let t = touched.get_mut(pk).expect("inserted above");
            if !t.may_change && t.boundary.as_deref().is_some_and(|last| row <= last) {
                t.may_change = true;
            }
            self.sorted.add(pk, row, w);
        }
        let mut windows: Vec<(Box<[u8]>, Window)> = Vec::new();
        for (pk, t) in touched {
            if t.may_change {
                let window = self.window(self.sorted.partition(&pk));
                windows.push((pk, window));
            }
        }
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for (pk, window) in &windows {
            let shown = self.shown.get(pk).map_or(&[][..], |s| s.as_slice());
            self.diff(shown, window, &mut out);
        }
        let result = if out.0.is_empty() { empty() } else { Some(self.decode(&out.0, out.1, out.2)?) };
        for (pk, window) in windows {
            if window.is_empty() {
                self.shown.remove(&pk);
            } else {
                self.shown.insert(pk, window);
            }
        }
        Ok(result)
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.input.inputs(out);
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        let keys: Vec<String> = self
            .sorted
            .keys()
            .iter()
            .map(|k| format!("{}{}", k.expr, if k.options.descending { " DESC" } else { "" }))
            .collect();
        let partition = if self.sorted.partition_by().is_empty() {
            String::new()
        } else {
            let p: Vec<String> = self.sorted.partition_by().iter().map(|p| p.to_string()).collect();
            format!(" per [{}]", p.join(", "))
        };
        let offset = if self.offset > 0 { format!(" offset {}", self.offset) } else { String::new() };
        out.push(format!(
            "{}TopK{partition} order by [{}] limit {}{offset}{} (state: {} partitions, {} rows, {} bytes)",
            indent(depth),
            keys.join(", "),
            if self.limit == UNLIMITED { "ALL".to_string() } else { self.limit.to_string() },
            if self.ranked { " with row_number" } else { "" },
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

/// The rows, as [`SortedPartitions`] saves them. The windows are not stored: each is its
/// partition's first rows.
impl OperatorState for TopK {
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
        // The errors of the rows screened out were loaded with the view.
        self.step(inputs, &mut ErrorDelta::default()).map(drop)
    }

    fn restored(&mut self) {
        let shown: Vec<(Box<[u8]>, Window)> =
            self.sorted.partitions().map(|(pk, p)| (pk.clone(), self.window(Some(p)))).collect();
        self.shown = shown.into_iter().filter(|(_, w)| !w.is_empty()).collect();
    }
}

#[cfg(test)]
mod tests {
    /// ORDER BY ... LIMIT / OFFSET and per-group top-k against DataFusion, over random deltas
    /// (rows enter and leave the top, the rows below refill it).
    #[tokio::test]
    async fn top_k_matches_a_recomputation() {
        for (i, sql) in [
            "SELECT k, v FROM t ORDER BY v DESC NULLS LAST, k LIMIT 5",
            "SELECT k, v FROM t ORDER BY v, k LIMIT 4 OFFSET 3",
            "SELECT k, v FROM t ORDER BY v DESC, k OFFSET 180",
            "SELECT k, g FROM (SELECT k, g, row_number() OVER (PARTITION BY g ORDER BY v, k) AS r FROM t) WHERE r <= 2",
        ]
        .into_iter()
        .enumerate()
        {
            crate::dataflow::testing::check(sql, 41 + i as u64, crate::dataflow::testing::STEPS).await;
        }
    }
}
