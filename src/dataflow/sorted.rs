//! The state top-k ([`super::topk`]) and window functions ([`super::window`]) share: an
//! input's rows split into partitions (`PARTITION BY`; one partition without it), each an
//! ordered multiset.
//!
//! A partition is a `BTreeMap` from the row's encoding in Arrow's row format over
//! `(ORDER BY keys ..., every column ...)` to its multiplicity, so the map's order is the
//! ORDER BY order with ties broken by the row itself: the same rows win, and the same copy of
//! a tie gets the same `row_number()` or `lag()`, every time (a sort leaves ties in any order).
//!
//! Saved as one entry per row, [`pair`]`(partition key, row)` → multiplicity, written as they
//! change. Over a stateless input (a table's rows, filtered) nothing is saved: the rows are the
//! input's, rebuilt from it at start-up.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{cast, SortOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::durable::{count_value, pair, read_multiplicity, split_pair, Dirty, StateWriter};
use super::errors::{screen, ErrorDelta};
use super::operator::evaluate;
use crate::change::{ChangeBatch, FastMap};
use crate::error::Result;

/// One ORDER BY key.
pub struct SortKey {
    pub expr: Arc<dyn PhysicalExpr>,
    pub options: SortOptions,
}

/// The rows of one partition, in order, with their multiplicities.
pub type Partition = BTreeMap<Box<[u8]>, i64>;

/// Per stored row: the boxed bytes' header, allocator and B-tree slot overhead.
const ROW_OVERHEAD: usize = 48;

/// A delta's rows encoded: each row's partition key and sortable row.
pub struct Encoded {
    rows: Rows,
    partitions: Option<Rows>,
}

impl Encoded {
    /// Row `i`'s partition key (empty without PARTITION BY).
    pub fn partition(&self, i: usize) -> &[u8] {
        self.partitions.as_ref().map_or(&[], |p| p.row(i).data())
    }

    /// Row `i` as stored: ordered by the keys, then by the row.
    pub fn row(&self, i: usize) -> &[u8] {
        self.rows.row(i).data()
    }
}

/// An input's rows by partition, each partition ordered (see the module).
pub struct SortedPartitions {
    input_schema: SchemaRef,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    keys: Vec<SortKey>,
    key_types: Vec<DataType>,
    /// `(keys ..., columns ...)` in row format: byte order is the ORDER BY order.
    format: RowConverter,
    partition_format: RowConverter,
    partitions: FastMap<Box<[u8]>, Partition>,
    bytes: usize,
    rows: usize,
    /// Rows changed since the last save.
    dirty: Dirty,
    /// The input keeps no state: the rows are rebuilt from it at start-up, never saved.
    rebuilds: bool,
}

impl SortedPartitions {
    /// Partitions of rows of `input_schema` by `partition_by`, ordered by `keys`; `rebuilds`
    /// when the input is stateless (see the module).
    pub fn new(
        input_schema: SchemaRef,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        keys: Vec<SortKey>,
        rebuilds: bool,
    ) -> Result<Self> {
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
        Ok(SortedPartitions {
            input_schema,
            partition_by,
            keys,
            key_types,
            format: RowConverter::new(fields)?,
            partition_format: RowConverter::new(partition_fields)?,
            partitions: FastMap::default(),
            bytes: 0,
            rows: 0,
            dirty: Dirty::default(),
            rebuilds,
        })
    }

    /// `delta` without the rows on which a sort or partition key fails: those are errors, in
    /// no partition.
    pub fn screen(&self, delta: ChangeBatch, errors: &mut ErrorDelta) -> Result<ChangeBatch> {
        screen(self.keys.iter().map(|k| &k.expr).chain(&self.partition_by), delta, errors)
    }

    /// The partition keys and stored form of `batch`'s rows.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Encoded> {
        let mut columns = Vec::with_capacity(self.keys.len() + batch.num_columns());
        for (k, t) in self.keys.iter().zip(&self.key_types) {
            let a = evaluate(&k.expr, batch)?;
            columns.push(if a.data_type() == t { a } else { cast(&a, t)? });
        }
        columns.extend(batch.columns().iter().cloned());
        let rows = self.format.convert_columns(&columns)?;
        let partitions = if self.partition_by.is_empty() {
            None
        } else {
            let parts: Vec<ArrayRef> = self.partition_by.iter().map(|p| evaluate(p, batch)).collect::<Result<_>>()?;
            Some(self.partition_format.convert_columns(&parts)?)
        };
        Ok(Encoded { rows, partitions })
    }

    /// Adds `weight` copies of `row` to partition `pk` (a negative weight removes copies); a
    /// partition left empty is dropped.
    pub fn add(&mut self, pk: &[u8], row: &[u8], weight: i64) {
        if !self.rebuilds {
            self.dirty.mark(|| pair(pk, row), self.bytes);
        }
        if !self.partitions.contains_key(pk) {
            self.partitions.insert(pk.into(), Partition::new());
        }
        let p = self.partitions.get_mut(pk).expect("inserted above");
        let n = p.entry(row.into()).or_insert(0);
        if *n == 0 {
            self.bytes += row.len() + ROW_OVERHEAD;
            self.rows += 1;
        }
        *n += weight;
        if *n == 0 {
            p.remove(row);
            self.bytes = self.bytes.saturating_sub(row.len() + ROW_OVERHEAD);
            self.rows -= 1;
            if p.is_empty() {
                self.partitions.remove(pk);
            }
        }
    }

    /// Partition `pk`'s rows, if it has any.
    pub fn partition(&self, pk: &[u8]) -> Option<&Partition> {
        self.partitions.get(pk)
    }

    /// Every partition.
    pub fn partitions(&self) -> impl Iterator<Item = (&Box<[u8]>, &Partition)> {
        self.partitions.iter()
    }

    /// The input's columns of stored rows (the sort keys dropped).
    pub fn decode(&self, rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let parser = self.format.parser();
        let columns: Vec<ArrayRef> = self.format.convert_rows(rows.iter().map(|r| parser.parse(r)))?;
        Ok(columns[self.keys.len()..].to_vec())
    }

    /// [`Self::decode`] as a batch of the input's schema.
    pub fn decode_batch(&self, rows: &[&[u8]]) -> Result<RecordBatch> {
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(self.input_schema.clone(), self.decode(rows)?, &options)?)
    }

    /// The ORDER BY keys.
    pub fn keys(&self) -> &[SortKey] {
        &self.keys
    }

    /// The PARTITION BY expressions.
    pub fn partition_by(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.partition_by
    }

    /// Bytes of stored rows (approximate).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Distinct rows stored.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// True when no row is stored.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// True when nothing is saved: the rows are rebuilt from the input.
    pub fn rebuilds(&self) -> bool {
        self.rebuilds
    }

    /// Writes what changed since the last save (see the module).
    pub fn save(&mut self, out: &mut StateWriter<'_>) {
        if self.rebuilds {
            return;
        }
        let Some(changed) = self.dirty.take(out) else {
            for (pk, p) in &self.partitions {
                for (row, n) in p {
                    out.put(&pair(pk, row), count_value(*n));
                }
            }
            return;
        };
        for entry in changed {
            let Ok((pk, row)) = split_pair(&entry) else { continue };
            out.put_count(&entry, self.partitions.get(pk).and_then(|p| p.get(row)).copied());
        }
    }

    /// Loads one saved entry.
    pub fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (pk, row) = split_pair(key)?;
        let n = read_multiplicity(value)?;
        self.partitions.entry(pk.into()).or_default().insert(row.into(), n);
        self.bytes += row.len() + ROW_OVERHEAD;
        self.rows += 1;
        Ok(())
    }
}
