//! The pairs a join's residual predicate tests, and what becomes of a pair it fails on
//! ([`super::super::errors`]).

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::record_batch::RecordBatch;

use super::Join;
use crate::dataflow::errors::{as_statement_error, failing_rows, rows_except, ErrorDelta};
use crate::dataflow::operator::{conform, evaluate, take_rows};
use crate::error::{Error, Result};

impl Join {
    /// `left ++ right` rows, filtered by the residual predicate; the mask says which pairs
    /// pass. A pair on which the predicate fails does not pass; with `errors` (the pairs'
    /// weights and where their errors go), it becomes an error: the pair delta of the inner
    /// part records the errors of every pair. Outer joins' matched tests read the same mask
    /// without recording; semi and anti joins have no pair delta, so there a failing pair
    /// fails the step.
    pub(super) fn pairs(
        &self,
        left: Vec<ArrayRef>,
        right: Vec<ArrayRef>,
        rows: usize,
        errors: Option<(&[i64], &mut ErrorDelta)>,
    ) -> Result<(RecordBatch, Option<BooleanArray>)> {
        let mut columns = left;
        columns.extend(right);
        let batch = conform(&self.pair_schema, columns, rows)?;
        let Some(f) = &self.filter else { return Ok((batch, None)) };
        let boolean = |m: ArrayRef| -> Result<BooleanArray> {
            Ok(m.as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| Error::Internal("join filter is not boolean".into()))?
                .clone())
        };
        let whole = match evaluate(f, &batch) {
            Ok(m) => return Ok((batch, Some(boolean(m)?))),
            Err(e) => e,
        };
        let failing = failing_rows(std::slice::from_ref(f), &batch);
        if failing.is_empty() {
            return Err(whole);
        }
        match errors {
            Some((weights, errors)) => failing.iter().for_each(|(row, e)| errors.push(e.clone(), weights[*row])),
            None if self.inner_like() => {}
            None => return Err(as_statement_error(&failing[0].1)),
        }
        let keep = rows_except(rows, &failing);
        let kept = take_rows(batch.columns(), &keep)?;
        let passed = boolean(evaluate(f, &conform(&self.pair_schema, kept, keep.len())?)?)?;
        let mut mask = vec![false; rows];
        for (k, &i) in keep.iter().enumerate() {
            mask[i as usize] = passed.is_valid(k) && passed.value(k);
        }
        Ok((batch, Some(BooleanArray::from(mask))))
    }
}
