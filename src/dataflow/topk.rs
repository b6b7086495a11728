//! `ORDER BY ... LIMIT n [OFFSET m]`: incremental top-k.
//!
//! State: the whole input as an ordered multiset — a `BTreeMap` from the row's encoding in
//! Arrow's row format over `(ORDER BY keys ..., every column ...)` to its multiplicity — so
//! the map's order is the ORDER BY order with ties broken by the row itself (the same rows
//! win every time, unlike a sort that leaves ties in any order), plus the window last
//! emitted: ranks `[m, m + n)` counted with multiplicities.
//!
//! Delta rule: `Δout = window(S + Δin) − window(S)`, the new window read from the map
//! (`O(m + n)`), the difference taken against the stored one. When the window is full and
//! every changed row sorts after its last row, the window cannot change and nothing is read:
//! the common case of rows arriving outside the top.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::{cast, SortOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::operator::{conform, evaluate, indent, Deltas, Operator};
use super::{ApplyMode, ChangeBatch, FastMap};
use crate::error::Result;

/// One ORDER BY key.
pub struct SortKey {
    pub expr: Arc<dyn PhysicalExpr>,
    pub options: SortOptions,
}

/// The top-k operator.
pub struct TopK {
    input: Box<dyn Operator>,
    keys: Vec<SortKey>,
    key_types: Vec<DataType>,
    offset: usize,
    limit: usize,
    /// `(keys ..., columns ...)` in row format: byte order is the ORDER BY order.
    format: RowConverter,
    rows: BTreeMap<Box<[u8]>, i64>,
    /// The window last emitted, in order, with the multiplicity each row has in it.
    shown: Vec<(Box<[u8]>, i64)>,
    bytes: usize,
    schema: SchemaRef,
}

/// Per stored row: the boxed bytes' header, allocator and B-tree slot overhead.
const ROW_OVERHEAD: usize = 48;

impl TopK {
    pub fn new(input: Box<dyn Operator>, keys: Vec<SortKey>, offset: usize, limit: usize) -> Result<Self> {
        let schema = input.schema();
        let probe = RecordBatch::new_empty(schema.clone());
        let key_types =
            keys.iter().map(|k| Ok(evaluate(&k.expr, &probe)?.data_type().clone())).collect::<Result<Vec<_>>>()?;
        let mut fields: Vec<SortField> =
            keys.iter().zip(&key_types).map(|(k, t)| SortField::new_with_options(t.clone(), k.options)).collect();
        fields.extend(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())));
        let format = RowConverter::new(fields)?;
        Ok(TopK {
            input,
            keys,
            key_types,
            offset,
            limit,
            format,
            rows: BTreeMap::new(),
            shown: Vec::new(),
            bytes: 0,
            schema,
        })
    }

    /// Ranks `[offset, offset + limit)` of the current multiset.
    fn window(&self) -> Vec<(Box<[u8]>, i64)> {
        let mut out = Vec::new();
        let (mut skip, mut take) = (self.offset as i64, self.limit as i64);
        for (row, &n) in &self.rows {
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

    fn window_is_full(&self) -> bool {
        self.shown.iter().map(|(_, n)| n).sum::<i64>() == self.limit as i64
    }

    /// Output rows for encoded rows: the column part of the encoding.
    fn decode(&self, rows: &[&[u8]], weights: Vec<i64>) -> Result<ChangeBatch> {
        let parser = self.format.parser();
        let columns: Vec<ArrayRef> = self.format.convert_rows(rows.iter().map(|r| parser.parse(r)))?;
        let columns = columns[self.keys.len()..].to_vec();
        let data = conform(&self.schema, columns, rows.len())?;
        Ok(ChangeBatch { data, weights, mode: ApplyMode::Delta })
    }
}

impl Operator for TopK {
    fn step(&mut self, inputs: &Deltas) -> Result<Option<ChangeBatch>> {
        let Some(delta) = self.input.step(inputs)? else { return Ok(None) };
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
        let boundary = if self.window_is_full() { self.shown.last().map(|(r, _)| r.clone()) } else { None };
        let mut outside = boundary.is_some();
        for (i, &w) in delta.weights.iter().enumerate() {
            let row = encoded.row(i).data();
            if outside && boundary.as_deref().is_some_and(|b| row <= b) {
                outside = false;
            }
            let n = self.rows.entry(row.into()).or_insert(0);
            if *n == 0 {
                self.bytes += row.len() + ROW_OVERHEAD;
            }
            *n += w;
            if *n == 0 {
                self.rows.remove(row);
                self.bytes = self.bytes.saturating_sub(row.len() + ROW_OVERHEAD);
            }
        }
        if outside {
            return Ok(empty());
        }
        let window = self.window();
        let mut diff: FastMap<&[u8], i64> = FastMap::default();
        for (row, n) in &window {
            *diff.entry(row.as_ref()).or_insert(0) += n;
        }
        for (row, n) in &self.shown {
            *diff.entry(row.as_ref()).or_insert(0) -= n;
        }
        let (rows, weights): (Vec<&[u8]>, Vec<i64>) = diff.into_iter().filter(|(_, n)| *n != 0).unzip();
        let out = if rows.is_empty() { empty() } else { Some(self.decode(&rows, weights)?) };
        self.shown = window;
        Ok(out)
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
        let offset = if self.offset > 0 { format!(" offset {}", self.offset) } else { String::new() };
        out.push(format!(
            "{}TopK order by [{}] limit {}{offset} (state: {} rows, {} bytes)",
            indent(depth),
            keys.join(", "),
            self.limit,
            self.rows.len(),
            self.bytes
        ));
        self.input.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.bytes + self.input.state_bytes()
    }
}
