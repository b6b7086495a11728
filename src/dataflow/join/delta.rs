//! A join's output for one side's delta: the pairs it makes with the other side's index, and
//! the rows an outer, semi or anti join keeps by whether they have a partner (see the
//! module of [`Join`] for the delta rule).

use std::collections::BTreeSet;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::JoinType;

use super::{Join, Keys, Side, Which};
use crate::change::{ApplyMode, ChangeBatch};
use crate::dataflow::consolidate;
use crate::dataflow::errors::ErrorDelta;
use crate::dataflow::operator::{conform, take_rows};
use crate::error::Result;

impl Join {
    /// Sides whose rows appear without a partner (outer, anti) or only with one (semi), and
    /// whether the kept rows are the matched ones.
    pub(super) fn preserved(&self) -> Vec<(Which, bool)> {
        match self.kind {
            JoinType::Left | JoinType::LeftAnti => vec![(Which::Left, false)],
            JoinType::Right | JoinType::RightAnti => vec![(Which::Right, false)],
            JoinType::Full => vec![(Which::Left, false), (Which::Right, false)],
            JoinType::LeftSemi => vec![(Which::Left, true)],
            JoinType::RightSemi => vec![(Which::Right, true)],
            _ => vec![],
        }
    }

    /// Δ of one side joined with the other side's current index.
    pub(super) fn join_delta(
        &self,
        w: Which,
        change: &ChangeBatch,
        keys: &Keys,
        errors: &mut ErrorDelta,
    ) -> Result<Option<ChangeBatch>> {
        let (_, other) = self.sides(w);
        let mut idx: Vec<u32> = Vec::new();
        let mut partners: Vec<&[u8]> = Vec::new();
        let mut weights: Vec<i64> = Vec::new();
        // A delta row may meet millions of partners (a cross join): the pairs are the one
        // place a view's memory grows past its inputs', so they count against the ceiling.
        let mut memory = crate::alloc::MemoryCheck::default();
        for (i, &wt) in change.weights.iter().enumerate() {
            if keys.null[i] {
                continue;
            }
            for (row, n) in other.matches(keys.rows.row(i).data()) {
                idx.push(i as u32);
                partners.push(row);
                weights.push(wt * n);
                memory.tick(1, "a join's pairs")?;
            }
        }
        if idx.is_empty() {
            return Ok(None);
        }
        let mine = take_rows(change.data.columns(), &idx)?;
        let theirs = other.decode(&partners)?;
        let rows = weights.len();
        let errors = Some((weights.as_slice(), errors));
        let (batch, mask) = if w == Which::Left {
            self.pairs(mine, theirs, rows, errors)?
        } else {
            self.pairs(theirs, mine, rows, errors)?
        };
        let change = ChangeBatch { data: batch, weights, mode: ApplyMode::Delta };
        Ok(Some(match mask {
            Some(m) => crate::dataflow::operator::filter_change(&change, &m)?,
            None => change,
        }))
    }

    /// The rows of preserved side `w` under `keys` that are kept (matched when
    /// `want_matched`, else unmatched), as output rows with weight `sign`.
    pub(super) fn preserved_part(
        &self,
        w: Which,
        want_matched: bool,
        keys: &BTreeSet<Vec<u8>>,
        sign: i64,
    ) -> Result<Option<ChangeBatch>> {
        let (mine, other) = self.sides(w);
        let mut kept: Vec<&[u8]> = Vec::new();
        let mut weights: Vec<i64> = Vec::new();
        for key in keys {
            let rows: Vec<(&[u8], i64)> = mine.matches(key).collect();
            if rows.is_empty() {
                continue;
            }
            let partners: Vec<&[u8]> = other.matches(key).map(|(r, _)| r).collect();
            let matched: Vec<bool> = if partners.is_empty() {
                vec![false; rows.len()]
            } else if self.filter.is_none() {
                vec![true; rows.len()]
            } else {
                self.any_partner(w, &rows, &partners)?
            };
            for ((row, n), m) in rows.into_iter().zip(matched) {
                if m == want_matched {
                    kept.push(row);
                    weights.push(n * sign);
                }
            }
        }
        if kept.is_empty() {
            return Ok(None);
        }
        let columns = mine.decode(&kept)?;
        Ok(Some(self.output_alone(w, columns, weights)?))
    }

    /// The kept part of preserved side `w`'s own delta under the keys the other side's delta
    /// does not touch (`skip` holds those it does): there the other side is the same before
    /// and after, so each delta row is kept or not by its own partners, linearly.
    pub(super) fn preserved_linear(
        &self,
        w: Which,
        want_matched: bool,
        change: &ChangeBatch,
        keys: &Keys,
        skip: &BTreeSet<Vec<u8>>,
    ) -> Result<Option<ChangeBatch>> {
        let (_, other) = self.sides(w);
        let mut kept: Vec<u32> = Vec::new();
        // With a residual filter, the delta rows that have partners and the pairs to test.
        let mut pair_rows: Vec<u32> = Vec::new();
        let mut pair_partners: Vec<&[u8]> = Vec::new();
        for i in 0..change.len() {
            if keys.null[i] {
                continue;
            }
            let key = keys.rows.row(i).data();
            if !skip.is_empty() && skip.contains(key) {
                continue;
            }
            let mut partners = other.matches(key).peekable();
            if partners.peek().is_none() {
                if !want_matched {
                    kept.push(i as u32);
                }
            } else if self.filter.is_none() {
                if want_matched {
                    kept.push(i as u32);
                }
            } else {
                for (p, _) in partners {
                    pair_rows.push(i as u32);
                    pair_partners.push(p);
                }
            }
        }
        if !pair_rows.is_empty() {
            let mine = take_rows(change.data.columns(), &pair_rows)?;
            let theirs = other.decode(&pair_partners)?;
            let n = pair_rows.len();
            let (_, mask) =
                if w == Which::Left { self.pairs(mine, theirs, n, None)? } else { self.pairs(theirs, mine, n, None)? };
            let mask = mask.expect("pairs are tested only with a filter");
            let mut passed = vec![false; change.len()];
            for (k, &i) in pair_rows.iter().enumerate() {
                passed[i as usize] |= mask.is_valid(k) && mask.value(k);
            }
            let mut tested = pair_rows;
            tested.dedup();
            kept.extend(tested.into_iter().filter(|&i| passed[i as usize] == want_matched));
            kept.sort_unstable();
        }
        if kept.is_empty() {
            return Ok(None);
        }
        let columns = take_rows(change.data.columns(), &kept)?;
        let weights = kept.iter().map(|&i| change.weights[i as usize]).collect();
        Ok(Some(self.output_alone(w, columns, weights)?))
    }

    /// For each row of side `w` (all under one key), whether some partner passes the filter.
    pub(super) fn any_partner(&self, w: Which, rows: &[(&[u8], i64)], partners: &[&[u8]]) -> Result<Vec<bool>> {
        let (mine, other) = self.sides(w);
        let mut mine_rows = Vec::with_capacity(rows.len() * partners.len());
        let mut other_rows = Vec::with_capacity(rows.len() * partners.len());
        for (r, _) in rows {
            for p in partners {
                mine_rows.push(*r);
                other_rows.push(*p);
            }
        }
        let a = mine.decode(&mine_rows)?;
        let b = other.decode(&other_rows)?;
        let n = mine_rows.len();
        let (_, mask) = if w == Which::Left { self.pairs(a, b, n, None)? } else { self.pairs(b, a, n, None)? };
        let mask = mask.expect("called with a filter");
        Ok((0..rows.len())
            .map(|i| {
                (0..partners.len()).any(|j| {
                    let k = i * partners.len() + j;
                    mask.is_valid(k) && mask.value(k)
                })
            })
            .collect())
    }

    /// Output rows for rows of side `w` without partner columns: NULL-extended for outer
    /// joins, as they are for semi/anti joins.
    pub(super) fn output_alone(&self, w: Which, columns: Vec<ArrayRef>, weights: Vec<i64>) -> Result<ChangeBatch> {
        let rows = weights.len();
        let data = if self.inner_like() {
            let nulls = |s: &Side| s.schema.fields().iter().map(|f| new_null_array(f.data_type(), rows)).collect();
            match w {
                Which::Left => conform(&self.schema, [columns, nulls(&self.right)].concat(), rows)?,
                Which::Right => conform(&self.schema, [nulls(&self.left), columns].concat(), rows)?,
            }
        } else {
            conform(&self.schema, columns, rows)?
        };
        Ok(ChangeBatch { data, weights, mode: ApplyMode::Delta })
    }

    /// The output delta made of `parts`, consolidated (an empty delta when nothing changed).
    pub(super) fn combine(&self, parts: Vec<ChangeBatch>) -> Result<Option<ChangeBatch>> {
        if parts.is_empty() {
            return Ok(Some(ChangeBatch::uniform(RecordBatch::new_empty(self.schema.clone()), 1)));
        }
        let batches: Vec<RecordBatch> = parts.iter().map(|p| p.data.clone()).collect();
        let data = concat_batches(&self.schema, &batches)?;
        let weights = parts.into_iter().flat_map(|p| p.weights).collect();
        Ok(Some(consolidate(ChangeBatch { data, weights, mode: ApplyMode::Delta })?))
    }

    /// Rows of a delta whose key is NULL: never matched, so preserved sides emit them as they
    /// are (NULL-extended).
    pub(super) fn null_key_part(&self, w: Which, change: &ChangeBatch, keys: &Keys) -> Result<Option<ChangeBatch>> {
        if !self.preserved().iter().any(|(p, matched)| *p == w && !matched) || !keys.null.contains(&true) {
            return Ok(None);
        }
        let idx: Vec<u32> = (0..change.len()).filter(|&i| keys.null[i]).map(|i| i as u32).collect();
        let columns = take_rows(change.data.columns(), &idx)?;
        let weights = idx.iter().map(|&i| change.weights[i as usize]).collect();
        Ok(Some(self.output_alone(w, columns, weights)?))
    }
}
