//! A join's saved state ([`durable`](crate::dataflow::durable)): the rows of each side's
//! index that is neither backed by its relation's rows nor rebuilt from its input, and the
//! null-aware part. See [`OperatorState for Join`](Join).

use std::collections::hash_map::Entry::{Occupied, Vacant};

use super::{Group, Join, Side, Which, ROW_OVERHEAD};
use crate::dataflow::durable::{count_value, damaged, pair, read_multiplicity, split_pair, OperatorState, StateWriter};
use crate::dataflow::errors::{screen, ErrorDelta};
use crate::dataflow::operator::Deltas;
use crate::error::Result;
use crate::state::index::Key;

impl Group {
    /// The multiplicity of `row` in this key's rows.
    fn count(&self, row: &[u8]) -> Option<i64> {
        match self {
            Group::One(r, n) => (r.as_ref() == row).then_some(*n),
            Group::Many(rows) => rows.get(row).copied(),
        }
    }
}

impl Side {
    /// Writes every row of the index under `tag`.
    fn save_all(&self, tag: u8, out: &mut StateWriter<'_>) {
        for (key, group) in &self.index {
            let rows: Vec<(&[u8], i64)> = match group {
                Group::One(r, n) => vec![(r.as_ref(), *n)],
                Group::Many(rows) => rows.iter().map(|(r, n)| (r.as_ref(), *n)).collect(),
            };
            for (row, n) in rows {
                out.put(&[&[tag], pair(key, row).as_ref()].concat(), count_value(n));
            }
        }
    }

    /// Writes the rows `changed` lists ([`pair`]s) under `tag`.
    fn save_changed(&self, tag: u8, changed: Vec<Box<[u8]>>, out: &mut StateWriter<'_>) {
        for entry in changed {
            let Ok((key, row)) = split_pair(&entry) else { continue };
            let entry = [&[tag], entry.as_ref()].concat();
            out.put_count(&entry, self.index.get(key).and_then(|g| g.count(row)));
        }
    }

    /// Adds a saved row ([`pair`]`(join key, row)`) back.
    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (key, row) = split_pair(key)?;
        let n = read_multiplicity(value)?;
        let slot = self.index.entry(Key::from_slice(key));
        let mut group = match slot {
            Occupied(mut slot) => Some(std::mem::replace(slot.get_mut(), Group::One(Box::default(), 0))),
            Vacant(_) => {
                self.bytes += key.len() + ROW_OVERHEAD;
                None
            }
        };
        self.bytes = Group::apply(&mut group, row, n, self.bytes);
        let group = group.ok_or_else(|| damaged("a join row with multiplicity 0"))?;
        self.index.insert(Key::from_slice(key), group);
        Ok(())
    }
}

/// Entries: `L`/`R` ++ [`pair`]`(join key, row)` per row of the left/right index, its
/// multiplicity; for a null-aware join `C` (the right side's row and NULL-key counts, i64 LE
/// each) and `N` ++ row per left row with a NULL key. A side backed by its relation's rows
/// stores nothing, nor does a side rebuilt from its input ([`Join::rebuilds_side`]). When one
/// part has recorded too many changes to list, the join writes itself whole.
impl OperatorState for Join {
    fn save(&mut self, out: &mut StateWriter<'_>) {
        let left = self.left.dirty.take_changes();
        let right = self.right.dirty.take_changes();
        let nulls = self.null_aware.as_mut().map(|n| (n.dirty.take_changes(), std::mem::take(&mut n.counts_dirty)));
        let whole = out.must_write_all()
            || left.is_none()
            || right.is_none()
            || nulls.as_ref().is_some_and(|(rows, _)| rows.is_none());
        if whole {
            out.whole();
        }
        for (tag, side, changed) in [(b'L', &self.left, left), (b'R', &self.right, right)] {
            match changed {
                _ if !side.saved => {}
                Some(changed) if !whole => side.save_changed(tag, changed, out),
                _ => side.save_all(tag, out),
            }
        }
        if let (Some(state), Some((changed, counts))) = (&self.null_aware, nulls) {
            state.save(whole, changed, counts, out);
        }
    }

    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        match key.split_first() {
            Some((b'L', rest)) => self.left.load(rest, value),
            Some((b'R', rest)) => self.right.load(rest, value),
            Some((b'C' | b'N', _)) => match &mut self.null_aware {
                Some(state) => state.load(key, value),
                None => Err(damaged("null-aware state of a join that is not")),
            },
            _ => Err(damaged("a join entry of unknown kind")),
        }
    }

    fn rebuilds(&self) -> bool {
        [Which::Left, Which::Right].into_iter().any(|w| self.rebuilds_side(w))
    }

    fn rebuild(&mut self, inputs: &Deltas) -> Result<()> {
        for w in [Which::Left, Which::Right] {
            if !self.rebuilds_side(w) {
                continue;
            }
            // Rows whose errors the view loaded are screened out again, as when they came.
            let mut errors = ErrorDelta::default();
            let Some(change) = self.side_mut(w).input.step(inputs, &mut errors)? else { continue };
            let change = screen(&self.side(w).keys, change, &mut errors)?;
            let keys = self.keys(w, &change)?;
            self.side_mut(w).update(&change, &keys, inputs, false)?;
        }
        Ok(())
    }
}
