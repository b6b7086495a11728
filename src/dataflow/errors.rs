//! A view's runtime errors as data.
//!
//! Upstream rows are whatever upstream writes: `a / b` meets `b = 0`, a cast meets text that is
//! no number. Failing the commit would stop every table the commit writes (and a source's
//! position) for one bad value in one view. Instead, like Materialize's error collections, a
//! view keeps its errors beside its rows:
//!
//! - An operator that evaluates expressions on a delta ([`evaluate_guarded`], [`screen`])
//!   takes the rows on which an expression fails out of the delta and emits one
//!   [`RowError`] per such row, with the row's weight, into the step's [`ErrorDelta`].
//!   Expressions of a view are immutable (`compile::check_maintainable`), so the −1 of a row
//!   fails exactly as its +1 did: the error is retracted like a row when its cause is deleted
//!   or updated. Errors are linear: Δerrors(op) = errors(Δin), and an error row never reaches
//!   the operators above.
//! - The view sums its operators' error deltas into its [`ErrorSet`] (a multiset of errors,
//!   saved at checkpoints like operator state, so restarts keep it). While the set is not
//!   empty, reading the view (or a view that reads it) returns its first error.
//!
//! Finding the failing rows costs nothing while nothing fails: the whole batch is evaluated
//! once, and only when that fails is it split in halves until the failing rows are alone
//! (O(k log n) evaluations for k failing rows among n).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::PhysicalExpr;

use super::durable::{read_count, Dirty, OperatorState, StateWriter};
use super::operator::{evaluate, take_rows};
use crate::change::{ApplyMode, ChangeBatch};
use crate::error::{Error, Result, RowError};

/// Longest row description kept in an error (bytes; the rest is cut at a character boundary).
const MAX_ROW_TEXT: usize = 240;

/// The errors one step of a view emitted (+1) or retracted (−1).
#[derive(Debug, Default)]
pub struct ErrorDelta {
    errors: Vec<(RowError, i64)>,
}

impl ErrorDelta {
    /// Adds `error` with multiplicity `weight`.
    pub fn push(&mut self, error: RowError, weight: i64) {
        self.errors.push((error, weight));
    }

    /// True when the step emitted no error.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Every error with its weight.
    pub fn into_inner(self) -> Vec<(RowError, i64)> {
        self.errors
    }
}

/// A view's errors: a multiset of [`RowError`]s, each with its count. Empty for a healthy view.
#[derive(Default)]
pub struct ErrorSet {
    counts: BTreeMap<RowError, i64>,
    dirty: Dirty,
}

impl ErrorSet {
    /// Adds a step's errors; true when the set changed.
    pub fn apply(&mut self, delta: ErrorDelta) -> bool {
        let mut changed = false;
        for (error, w) in delta.errors {
            if w == 0 {
                continue;
            }
            changed = true;
            let key = entry_key(&error);
            let n = self.counts.entry(error.clone()).or_insert(0);
            *n += w;
            if *n == 0 {
                self.counts.remove(&error);
            }
            self.dirty.mark(|| key, 0);
        }
        changed
    }

    /// Number of errors (rows on which the view's query fails).
    pub fn count(&self) -> i64 {
        self.counts.values().filter(|n| **n > 0).sum()
    }

    /// The error reported first (the least, in (SQLSTATE, message, context) order: stable).
    pub fn first(&self) -> Option<&RowError> {
        self.counts.iter().find(|(_, n)| **n > 0).map(|(e, _)| e)
    }

    /// True when the view has no error.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Forgets every error (the view is computed again from its inputs).
    pub fn clear(&mut self) {
        for e in std::mem::take(&mut self.counts).into_keys() {
            self.dirty.mark(|| entry_key(&e), 0);
        }
    }

    /// Bytes held, roughly.
    pub fn bytes(&self) -> usize {
        self.counts.keys().map(|e| e.message.len() + e.context.len() + 64).sum()
    }
}

/// An error's entry key in the store: its JSON (small, and it decodes back).
fn entry_key(error: &RowError) -> Box<[u8]> {
    serde_json::to_vec(error).expect("serializable").into()
}

/// Saved entry by entry: key = the error's JSON, value = its count.
impl OperatorState for ErrorSet {
    fn save(&mut self, out: &mut StateWriter<'_>) {
        match self.dirty.take(out) {
            Some(keys) => {
                for key in keys {
                    let error: Option<RowError> = serde_json::from_slice(&key).ok();
                    let n = error.and_then(|e| self.counts.get(&e).copied());
                    out.put_count(&key, n);
                }
            }
            None => {
                for (e, n) in &self.counts {
                    out.put_count(&entry_key(e), Some(*n));
                }
            }
        }
    }

    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let error: RowError =
            serde_json::from_slice(key).map_err(|e| super::durable::damaged(&format!("an error entry: {e}")))?;
        self.counts.insert(error, read_count(value)?);
        Ok(())
    }
}

/// Evaluates `exprs` on `change`; the rows on which one of them fails leave the change and go
/// to `errors` (as [`RowError`]s with the rows' weights). The change that is left and the
/// values of `exprs` on it. An error that no single row causes is returned as it is.
pub fn evaluate_guarded(
    exprs: &[Arc<dyn PhysicalExpr>],
    change: ChangeBatch,
    errors: &mut ErrorDelta,
) -> Result<(ChangeBatch, Vec<ArrayRef>)> {
    let all = |batch: &RecordBatch| exprs.iter().map(|e| evaluate(e, batch)).collect::<Result<Vec<_>>>();
    match all(&change.data) {
        Ok(values) => Ok((change, values)),
        Err(e) => {
            let change = take_out_failing(exprs, change, errors, e)?;
            let values = all(&change.data)?;
            Ok((change, values))
        }
    }
}

/// [`evaluate_guarded`] without the values: takes out the rows on which one of `exprs`
/// fails, before an operator evaluates them itself. Column references and constants cannot
/// fail, so they are not evaluated: screening plain columns costs nothing.
pub fn screen<'a>(
    exprs: impl IntoIterator<Item = &'a Arc<dyn PhysicalExpr>>,
    change: ChangeBatch,
    errors: &mut ErrorDelta,
) -> Result<ChangeBatch> {
    let fallible: Vec<Arc<dyn PhysicalExpr>> = exprs
        .into_iter()
        .filter(|e| e.downcast_ref::<Column>().is_none() && e.downcast_ref::<Literal>().is_none())
        .cloned()
        .collect();
    if fallible.is_empty() || change.is_empty() {
        return Ok(change);
    }
    match fallible.iter().try_for_each(|e| evaluate(e, &change.data).map(drop)) {
        Ok(()) => Ok(change),
        Err(e) => take_out_failing(&fallible, change, errors, e),
    }
}

/// The rows of `change` on which no expression of `exprs` fails; the others become errors.
/// `whole` is the error of the whole batch, returned when no row fails alone.
fn take_out_failing(
    exprs: &[Arc<dyn PhysicalExpr>],
    change: ChangeBatch,
    errors: &mut ErrorDelta,
    whole: Error,
) -> Result<ChangeBatch> {
    let failing = failing_rows(exprs, &change.data);
    if failing.is_empty() {
        return Err(whole);
    }
    let keep = rows_except(change.len(), &failing);
    for (row, error) in failing {
        errors.push(error, change.weights[row]);
    }
    let columns = take_rows(change.data.columns(), &keep)?;
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(keep.len()));
    let data = RecordBatch::try_new_with_options(change.data.schema(), columns, &options)?;
    let weights = keep.iter().map(|&i| change.weights[i as usize]).collect();
    Ok(ChangeBatch { data, weights, mode: ApplyMode::Delta })
}

/// The rows `0..len` but those of `failing` (in row order).
pub fn rows_except(len: usize, failing: &[(usize, RowError)]) -> Vec<u32> {
    let mut bad = failing.iter().map(|(row, _)| *row).peekable();
    let mut keep = Vec::with_capacity(len - failing.len());
    for i in 0..len {
        if bad.peek() == Some(&i) {
            bad.next();
        } else {
            keep.push(i as u32);
        }
    }
    keep
}

/// Each row of `batch` on which one of `exprs` fails when evaluated alone, with its error,
/// in row order.
pub fn failing_rows(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Vec<(usize, RowError)> {
    let mut failing = Vec::new();
    find_failing(exprs, batch, 0, batch.num_rows(), &mut failing);
    failing.into_iter().map(|(row, error)| (row, error_of(batch, row, error))).collect()
}

/// The error of a window function that fails on a whole partition (a running sum that
/// overflows fails on the partition, not on one row), named by the partition's first row.
pub fn partition_error(function: &str, error: Error, partition: &RecordBatch) -> RowError {
    RowError {
        sqlstate: error.sqlstate().to_string(),
        message: error.to_string(),
        context: format!("in {function}, on the partition of the row {}", row_text(partition, 0)),
    }
}

/// A row error as an error of the statement that met it (where it cannot be kept as data).
pub fn as_statement_error(error: &RowError) -> Error {
    Error::DataException {
        sqlstate: crate::error::intern_sqlstate(&error.sqlstate),
        message: format!("{} ({})", error.message, error.context),
    }
}

/// Pushes `(row, (expression, error))` for each row of `batch[offset..offset + len]` on which
/// an expression fails alone, in row order: halves are evaluated until a failing part is one
/// row long.
fn find_failing(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
    offset: usize,
    len: usize,
    out: &mut Vec<(usize, (String, Error))>,
) {
    if len == 0 {
        return;
    }
    let part = batch.slice(offset, len);
    if len == 1 {
        for e in exprs {
            if let Err(err) = evaluate(e, &part) {
                out.push((offset, (expression_text(e), err)));
                return;
            }
        }
        return;
    }
    if exprs.iter().all(|e| evaluate(e, &part).is_ok()) {
        return;
    }
    let half = len / 2;
    find_failing(exprs, batch, offset, half, out);
    find_failing(exprs, batch, offset + half, len - half, out);
}

/// An expression as a user reads it: DataFusion prints columns as `name@index`.
fn expression_text(expr: &Arc<dyn PhysicalExpr>) -> String {
    let text = expr.to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '@' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The error of `expression` failing with `error` on row `row` of `batch`.
fn error_of(batch: &RecordBatch, row: usize, (expression, error): (String, Error)) -> RowError {
    RowError {
        sqlstate: error.sqlstate().to_string(),
        message: error.to_string(),
        context: format!("in {expression}, on the row {}", row_text(batch, row)),
    }
}

/// `(name = value, ...)` for one row, cut at [`MAX_ROW_TEXT`] bytes.
fn row_text(batch: &RecordBatch, row: usize) -> String {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = String::from("(");
    for (i, (field, column)) in batch.schema().fields().iter().zip(batch.columns()).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let value = ArrayFormatter::try_new(column.as_ref(), &options)
            .map(|f| f.value(row).to_string())
            .unwrap_or_else(|_| "?".into());
        out.push_str(field.name());
        out.push_str(" = ");
        out.push_str(&value);
        if out.len() > MAX_ROW_TEXT {
            break;
        }
    }
    if out.len() > MAX_ROW_TEXT {
        let mut cut = MAX_ROW_TEXT;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out.push(')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int32Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{binary, col};
    use proptest::prelude::*;

    fn batch(a: &[i32], b: &[i32]) -> RecordBatch {
        let schema =
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true), Field::new("b", DataType::Int32, true)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int32Array::from(a.to_vec())), Arc::new(Int32Array::from(b.to_vec()))],
        )
        .unwrap()
    }

    fn a_over_b(schema: &Schema) -> Arc<dyn PhysicalExpr> {
        binary(col("a", schema).unwrap(), BinOp::Divide, col("b", schema).unwrap(), schema).unwrap()
    }

    proptest! {
        /// The rows kept are exactly those where b <> 0, in order, with their weights; every
        /// other row is one error with its weight; a batch without zeros is untouched.
        #[test]
        fn failing_rows_become_errors(rows in prop::collection::vec((-5i32..5, -2i32..3, -3i64..4), 0..200)) {
            let rows: Vec<_> = rows.into_iter().filter(|r| r.2 != 0).collect();
            let a: Vec<i32> = rows.iter().map(|r| r.0).collect();
            let b: Vec<i32> = rows.iter().map(|r| r.1).collect();
            let data = batch(&a, &b);
            let expr = a_over_b(&data.schema());
            let change = ChangeBatch { data, weights: rows.iter().map(|r| r.2).collect(), mode: ApplyMode::Delta };
            let mut errors = ErrorDelta::default();
            let (kept, values) = evaluate_guarded(&[expr], change, &mut errors).unwrap();
            let good: Vec<_> = rows.iter().filter(|r| r.1 != 0).collect();
            let bad: Vec<_> = rows.iter().filter(|r| r.1 == 0).collect();
            prop_assert_eq!(kept.weights.clone(), good.iter().map(|r| r.2).collect::<Vec<_>>());
            let q = values[0].as_any().downcast_ref::<Int32Array>().unwrap();
            prop_assert_eq!(q.len(), good.len());
            for (i, r) in good.iter().enumerate() {
                prop_assert_eq!(q.value(i), r.0 / r.1);
            }
            let errors = errors.into_inner();
            prop_assert_eq!(errors.len(), bad.len());
            for ((e, w), r) in errors.iter().zip(&bad) {
                prop_assert_eq!(e.sqlstate.as_str(), "22012");
                prop_assert_eq!(*w, r.2);
                prop_assert!(e.context.contains(&format!("a = {}, b = 0", r.0)), "{}", e.context);
                prop_assert!(e.context.starts_with("in a / b"), "{}", e.context);
            }
        }

        /// Errors added then retracted in any grouping leave the set as their sum.
        #[test]
        fn error_sets_sum_their_deltas(steps in prop::collection::vec(prop::collection::vec((0u8..4, -2i64..3), 0..6), 0..12)) {
            let mut set = ErrorSet::default();
            let mut model: BTreeMap<u8, i64> = BTreeMap::new();
            for step in steps {
                let mut delta = ErrorDelta::default();
                for (k, w) in step {
                    delta.push(RowError { sqlstate: "22012".into(), message: "division by zero".into(), context: k.to_string() }, w);
                    *model.entry(k).or_default() += w;
                }
                set.apply(delta);
                model.retain(|_, n| *n != 0);
                prop_assert_eq!(set.counts.len(), model.len());
                prop_assert_eq!(set.count(), model.values().filter(|n| **n > 0).sum::<i64>());
            }
        }
    }

    #[test]
    fn screening_plain_columns_evaluates_nothing() {
        let data = batch(&[1, 2], &[0, 1]);
        let schema = data.schema();
        let change = ChangeBatch::uniform(data, 1);
        let mut errors = ErrorDelta::default();
        let columns = [col("a", &schema).unwrap(), col("b", &schema).unwrap()];
        let kept = screen(columns.iter(), change.clone(), &mut errors).unwrap();
        assert_eq!((kept.len(), errors.is_empty()), (2, true));
        let kept = screen([&a_over_b(&schema)], change, &mut errors).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(errors.into_inner().len(), 1);
    }
}
