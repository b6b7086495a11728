//! Incremental top-k: `ORDER BY ... LIMIT n [OFFSET m]`, and per group
//! `row_number() OVER (PARTITION BY g ORDER BY ...) <= n`.
//!
//! State, per partition (one for a plain LIMIT): the partition's input rows as an ordered
//! multiset — a `BTreeMap` from the row's encoding in Arrow's row format over
//! `(ORDER BY keys ..., every column ...)` to its multiplicity — so the map's order is the
//! ORDER BY order with ties broken by the row itself (the same rows win every time, unlike a
//! sort that leaves ties in any order), plus the window last emitted: ranks `[m, m + n)`
//! counted with multiplicities. With a rank column (the `row_number()` form) each copy of a
//! row in the window is one output row carrying its rank, 1-based.
//!
//! Delta rule, per partition the delta touches: `Δout = window(S + Δin) − window(S)`, the new
//! window read from the map (`O(m + n)`), the difference taken against the stored one (with
//! ranks, a row whose rank moved is retracted at the old rank and inserted at the new one).
//! When a partition's window is full and every changed row sorts after its last row, the
//! window cannot change and nothing is read: the common case of rows arriving outside the top.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt64Array};
use datafusion::arrow::compute::{cast, SortOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::durable::{count_value, pair, read_multiplicity, split_pair, Dirty, OperatorState, StateWriter};
use super::errors::{screen, ErrorDelta};
use super::operator::{conform, evaluate, indent, Deltas, Operator};
use super::{ApplyMode, ChangeBatch, FastMap};
use crate::error::Result;

/// One ORDER BY key.
pub struct SortKey {
    pub expr: Arc<dyn PhysicalExpr>,
    pub options: SortOptions,
}

/// Encoded rows in window order, each with its multiplicity in the window.
type Window = Vec<(Box<[u8]>, i64)>;

/// The rows of one partition and its window.
#[derive(Default)]
struct Partition {
    rows: BTreeMap<Box<[u8]>, i64>,
    /// The window last emitted, in order, with the multiplicity each row has in it.
    shown: Window,
}

/// A partition a delta touches: whether its window may change and, while it cannot, the
/// last row of its full window.
struct Touched {
    may_change: bool,
    boundary: Option<Box<[u8]>>,
}

/// The top-k operator.
pub struct TopK {
    input: Box<dyn Operator>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    keys: Vec<SortKey>,
    key_types: Vec<DataType>,
    offset: usize,
    limit: usize,
    /// Output a rank (`row_number()`) column after the input's columns.
    ranked: bool,
    /// `(keys ..., columns ...)` in row format: byte order is the ORDER BY order.
    format: RowConverter,
    partition_format: RowConverter,
    partitions: FastMap<Box<[u8]>, Partition>,
    bytes: usize,
    schema: SchemaRef,
    /// Rows changed since the last save ([`durable`](super::durable)).
    dirty: Dirty,
    /// The input keeps no state: the rows are rebuilt from it at start-up, never saved.
    rebuilds: bool,
}

/// Per stored row: the boxed bytes' header, allocator and B-tree slot overhead.
const ROW_OVERHEAD: usize = 48;

impl TopK {
    /// `ORDER BY keys LIMIT limit OFFSET offset` over `input`: output rows are input rows.
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
        let input_schema = input.schema();
        let probe = RecordBatch::new_empty(input_schema.clone());
        let key_types =
            keys.iter().map(|k| Ok(evaluate(&k.expr, &probe)?.data_type().clone())).collect::<Result<Vec<_>>>()?;
        let mut fields: Vec<SortField> =
            keys.iter().zip(&key_types).map(|(k, t)| SortField::new_with_options(t.clone(), k.options)).collect();
        fields.extend(input_schema.fields().iter().map(|f| SortField::new(f.data_type().clone())));
        let partition_fields = partition_by
            .iter()
            .map(|p| Ok(SortField::new(evaluate(p, &probe)?.data_type().clone())))
            .collect::<Result<Vec<_>>>()?;
        Ok(TopK {
            input,
            partition_by,
            keys,
            key_types,
            offset,
            limit,
            ranked,
            format: RowConverter::new(fields)?,
            partition_format: RowConverter::new(partition_fields)?,
            partitions: FastMap::default(),
            bytes: 0,
            schema,
            dirty: Dirty::default(),
            rebuilds,
        })
    }

    /// Ranks `[offset, offset + limit)` of a partition.
    fn window(&self, rows: &BTreeMap<Box<[u8]>, i64>) -> Window {
        let mut out = Vec::new();
        let (mut skip, mut take) = (self.offset as i64, self.limit as i64);
        for (row, &n) in rows {
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
        let parser = self.format.parser();
        let columns: Vec<ArrayRef> = self.format.convert_rows(rows.iter().map(|r| parser.parse(r)))?;
        let mut columns = columns[self.keys.len()..].to_vec();
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
        // Rows on which a sort or partition key fails are errors, in no partition.
        let delta = screen(self.keys.iter().map(|k| &k.expr).chain(&self.partition_by), delta, errors)?;
        let empty = || Some(ChangeBatch::uniform(RecordBatch::new_empty(self.schema.clone()), 1));
        if delta.is_empty() {
            return Ok(empty());
        }
        let mut columns = Vec::with_capacity(self.keys.len() + delta.data.num_columns());
        for (k, t) in self.keys.iter().zip(&self.key_types) {
            let a = evaluate(&k.expr, &delta.data)?;
            columns.push(if a.data_type() == t { a } else { cast(&a, t)? });
        }
        columns.extend(delta.data.columns().iter().cloned());
        let encoded = self.format.convert_columns(&columns)?;
        let part_keys = if self.partition_by.is_empty() {
            None
        } else {
            let parts: Vec<ArrayRef> =
                self.partition_by.iter().map(|p| evaluate(p, &delta.data)).collect::<Result<_>>()?;
            Some(self.partition_format.convert_columns(&parts)?)
        };
        // Per partition the delta touches: whether its window may change and, while it
        // cannot, the last row of its full window (read once per partition).
        let mut touched: FastMap<Box<[u8]>, Touched> = FastMap::default();
        for (i, &w) in delta.weights.iter().enumerate() {
            let pk: &[u8] = part_keys.as_ref().map_or(&[], |k| k.row(i).data());
            let row = encoded.row(i).data();
            if !self.partitions.contains_key(pk) {
                self.partitions.insert(pk.into(), Partition::default());
            }
            let p = self.partitions.get_mut(pk).expect("inserted above");
            if !touched.contains_key(pk) {
                let full = p.shown.iter().map(|(_, n)| n).sum::<i64>() == self.limit as i64;
                let boundary = if full { p.shown.last().map(|(r, _)| r.clone()) } else { None };
                touched.insert(pk.into(), Touched { may_change: boundary.is_none(), boundary });
            }
            let t = touched.get_mut(pk).expect("inserted above");
            if !t.may_change && t.boundary.as_deref().is_some_and(|last| row <= last) {
                t.may_change = true;
            }
            if !self.rebuilds {
                self.dirty.mark(|| pair(pk, row), self.bytes);
            }
            let n = p.rows.entry(row.into()).or_insert(0);
            if *n == 0 {
                self.bytes += row.len() + ROW_OVERHEAD;
            }
            *n += w;
            if *n == 0 {
                p.rows.remove(row);
                self.bytes = self.bytes.saturating_sub(row.len() + ROW_OVERHEAD);
            }
        }
        let mut windows: Vec<(Box<[u8]>, Window)> = Vec::new();
        for (pk, t) in touched {
            if t.may_change {
                let window = self.window(&self.partitions[&pk].rows);
                windows.push((pk, window));
            }
        }
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for (pk, window) in &windows {
            self.diff(&self.partitions[pk].shown, window, &mut out);
        }
        let result = if out.0.is_empty() { empty() } else { Some(self.decode(&out.0, out.1, out.2)?) };
        for (pk, window) in windows {
            let p = self.partitions.get_mut(&pk).expect("touched partition");
            p.shown = window;
            if p.rows.is_empty() {
                self.partitions.remove(&pk);
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
            .keys
            .iter()
            .map(|k| format!("{}{}", k.expr, if k.options.descending { " DESC" } else { "" }))
            .collect();
        let partition = if self.partition_by.is_empty() {
            String::new()
        } else {
            let p: Vec<String> = self.partition_by.iter().map(|p| p.to_string()).collect();
            format!(" per [{}]", p.join(", "))
        };
        let offset = if self.offset > 0 { format!(" offset {}", self.offset) } else { String::new() };
        let rows: usize = self.partitions.values().map(|p| p.rows.len()).sum();
        out.push(format!(
            "{}TopK{partition} order by [{}] limit {}{offset}{} (state: {} partitions, {rows} rows, {} bytes)",
            indent(depth),
            keys.join(", "),
            self.limit,
            if self.ranked { " with row_number" } else { "" },
            self.partitions.len(),
            self.bytes
        ));
        self.input.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.bytes + self.input.state_bytes()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        f(self);
        self.input.visit_states(f);
    }
}

/// Entries: one per row of a partition, [`pair`]`(partition key, row)`, its multiplicity.
/// The windows are not stored: each is its partition's first rows. Over a stateless input
/// (a table's rows, filtered) nothing is stored: the rows are the input's, rebuilt from it.
impl OperatorState for TopK {
    fn save(&mut self, out: &mut StateWriter<'_>) {
        if self.rebuilds {
            return;
        }
        let Some(changed) = self.dirty.take(out) else {
            for (pk, p) in &self.partitions {
                for (row, n) in &p.rows {
                    out.put(&pair(pk, row), count_value(*n));
                }
            }
            return;
        };
        for entry in changed {
            let Ok((pk, row)) = split_pair(&entry) else { continue };
            out.put_count(&entry, self.partitions.get(pk).and_then(|p| p.rows.get(row)).copied());
        }
    }

    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (pk, row) = split_pair(key)?;
        let n = read_multiplicity(value)?;
        self.partitions.entry(pk.into()).or_default().rows.insert(row.into(), n);
        self.bytes += row.len() + ROW_OVERHEAD;
        Ok(())
    }

    fn rebuilds(&self) -> bool {
        self.rebuilds
    }

    fn rebuild(&mut self, inputs: &Deltas) -> Result<()> {
        // The errors of the rows screened out were loaded with the view.
        self.step(inputs, &mut ErrorDelta::default()).map(drop)
    }

    fn restored(&mut self) {
        let shown: Vec<(Box<[u8]>, Window)> =
            self.partitions.iter().map(|(pk, p)| (pk.clone(), self.window(&p.rows))).collect();
        for (pk, window) in shown {
            self.partitions.get_mut(&pk).expect("listed above").shown = window;
        }
    }
}
