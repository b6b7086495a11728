//! `x NOT IN (SELECT y FROM r)`: the null-aware anti join.
//!
//! SQL's three-valued logic makes the result depend on the right side as a whole, not only on
//! each left row's partners:
//!
//! ```text
//! r empty                    → every left row (a NULL x included)
//! r has a row with y NULL    → no left row
//! otherwise                  → left rows with x not NULL and no partner (x = y)
//! ```
//!
//! The operator keeps, besides both indexes, the left rows whose `x` is NULL and two counts of
//! the right side: rows, and rows with `y` NULL. These decide the [`Mode`] before and after a
//! step. While the mode stays the same the delta is local: the left delta itself (`All`),
//! nothing (`Nothing`), or the anti join's per-key rule over the keys the step touches
//! (`Unmatched`). When the mode flips (the right side empties, or gains or loses its last
//! NULL) the output as a whole changes: the delta is the whole new output minus the whole old
//! one, both read from the indexes — O(left) for that step, which such flips justify.
//!
//! Only the uncorrelated single-column form is maintained (`compile.rs` refuses the others).

use std::collections::BTreeSet;

use super::{ChangeBatch, Deltas, FastMap, Join, Keys, Which};
use crate::dataflow::durable::{count_value, damaged, read_count, read_multiplicity, Dirty, StateWriter};
use crate::error::{Error, Result};

/// The state a null-aware anti join keeps beyond the anti join's.
#[derive(Default)]
pub struct NullAware {
    /// Left rows whose key is NULL (row format of the left side), with multiplicities.
    left_nulls: FastMap<Box<[u8]>, i64>,
    /// Rows of the right side, and those whose key is NULL.
    right_rows: i64,
    right_nulls: i64,
    /// `left_nulls` rows changed since the last save, and whether the counts did.
    pub(super) dirty: Dirty,
    pub(super) counts_dirty: bool,
}

impl NullAware {
    /// Writes the counts if they changed (or `whole`), and the left rows with a NULL key that
    /// `changed` lists (all of them when `None` or `whole`).
    pub(super) fn save(&self, whole: bool, changed: Option<Vec<Box<[u8]>>>, counts: bool, out: &mut StateWriter<'_>) {
        if whole || counts {
            out.put(b"C", [self.right_rows.to_le_bytes(), self.right_nulls.to_le_bytes()].concat());
        }
        match changed {
            Some(changed) if !whole => {
                for entry in changed {
                    out.put_count(&entry, self.left_nulls.get(&entry[1..]).copied());
                }
            }
            _ => {
                for (row, n) in &self.left_nulls {
                    out.put(&[b"N", row.as_ref()].concat(), count_value(*n));
                }
            }
        }
    }

    /// Adds a saved `C` or `N` entry back.
    pub(super) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        match key.split_first() {
            Some((b'C', _)) => {
                let (rows, nulls) = value.split_at_checked(8).ok_or_else(|| damaged("null-aware counts"))?;
                self.right_rows = read_count(rows)?;
                self.right_nulls = read_count(nulls)?;
            }
            Some((b'N', row)) => {
                self.left_nulls.insert(row.into(), read_multiplicity(value)?);
            }
            _ => return Err(damaged("a null-aware entry of unknown kind")),
        }
        Ok(())
    }
}

/// What the output is, given the right side.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    All,
    Nothing,
    Unmatched,
}

impl Mode {
    fn of(right_rows: i64, right_nulls: i64) -> Mode {
        if right_rows == 0 {
            Mode::All
        } else if right_nulls > 0 {
            Mode::Nothing
        } else {
            Mode::Unmatched
        }
    }
}

impl Join {
    /// Makes this (left anti, single key, no residual filter) join null-aware.
    pub fn null_aware(mut self) -> Result<Self> {
        if self.kind != datafusion::common::JoinType::LeftAnti || self.left.keys.len() != 1 || self.filter.is_some() {
            return Err(Error::Internal("a null-aware join must be a left anti join on one key".into()));
        }
        self.null_aware = Some(NullAware::default());
        self.settle_saving();
        Ok(self)
    }

    pub(super) fn step_null_aware(
        &mut self,
        dl: Option<ChangeBatch>,
        dr: Option<ChangeBatch>,
        kl: Option<Keys>,
        kr: Option<Keys>,
        inputs: &Deltas,
    ) -> Result<Option<ChangeBatch>> {
        let state = self.null_aware.as_ref().expect("null-aware join");
        let before = Mode::of(state.right_rows, state.right_nulls);
        let (mut right_rows, mut right_nulls) = (state.right_rows, state.right_nulls);
        if let (Some(d), Some(k)) = (&dr, &kr) {
            for (i, &w) in d.weights.iter().enumerate() {
                right_rows += w;
                if k.null[i] {
                    right_nulls += w;
                }
            }
        }
        let after = Mode::of(right_rows, right_nulls);
        let local = before == after;
        let mut touched: BTreeSet<Vec<u8>> = BTreeSet::new();
        if local && after == Mode::Unmatched {
            for k in [&kl, &kr].into_iter().flatten() {
                touched.extend(k.non_null());
            }
        }
        let mut parts = Vec::new();
        if !local {
            parts.extend(self.whole_output(before, -1)?);
        } else if after == Mode::Unmatched {
            parts.extend(self.preserved_part(Which::Left, false, &touched, -1)?);
        }
        if let (Some(d), Some(k)) = (&dl, &kl) {
            if local && after == Mode::All {
                parts.push(self.output_alone(Which::Left, d.data.columns().to_vec(), d.weights.clone())?);
            }
            self.left.update(d, k, inputs, true)?;
            self.update_left_nulls(d, k)?;
        }
        if let (Some(d), Some(k)) = (&dr, &kr) {
            self.right.update(d, k, inputs, true)?;
        }
        let state = self.null_aware.as_mut().expect("null-aware join");
        state.counts_dirty |= (state.right_rows, state.right_nulls) != (right_rows, right_nulls);
        state.right_rows = right_rows;
        state.right_nulls = right_nulls;
        if !local {
            parts.extend(self.whole_output(after, 1)?);
        } else if after == Mode::Unmatched {
            parts.extend(self.preserved_part(Which::Left, false, &touched, 1)?);
        }
        self.combine(parts)
    }

    fn update_left_nulls(&mut self, change: &ChangeBatch, keys: &Keys) -> Result<()> {
        if !keys.null.contains(&true) {
            return Ok(());
        }
        let rows = self.left.rows.convert_columns(change.data.columns())?;
        let state = self.null_aware.as_mut().expect("null-aware join");
        let nulls = &mut state.left_nulls;
        for (i, &w) in change.weights.iter().enumerate() {
            if !keys.null[i] {
                continue;
            }
            let row = rows.row(i).data();
            state.dirty.mark(|| [b"N", row].concat().into(), nulls.len() * 64);
            let n = nulls.entry(row.into()).or_insert(0);
            *n += w;
            if *n == 0 {
                nulls.remove(row);
            }
        }
        Ok(())
    }

    /// The whole output in `mode`, with weight `sign`.
    fn whole_output(&self, mode: Mode, sign: i64) -> Result<Vec<ChangeBatch>> {
        if mode == Mode::Nothing {
            return Ok(Vec::new());
        }
        let mut kept: Vec<&[u8]> = Vec::new();
        let mut weights: Vec<i64> = Vec::new();
        for key in self.left.index.keys() {
            if mode == Mode::Unmatched && self.right.index.contains_key(key) {
                continue;
            }
            for (row, n) in self.left.matches(key) {
                kept.push(row);
                weights.push(n * sign);
            }
        }
        if mode == Mode::All {
            for (row, n) in &self.null_aware.as_ref().expect("null-aware join").left_nulls {
                kept.push(row);
                weights.push(n * sign);
            }
        }
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let columns = self.left.decode(&kept)?;
        Ok(vec![self.output_alone(Which::Left, columns, weights)?])
    }
}
