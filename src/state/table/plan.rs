//! Change planning: what one change batch does to a table, checked against its rows before
//! anything is written ([`Planned`]), then written to the store and applied in memory.

use super::*;

/// The effect of one change batch on one table, checked against its current rows but not yet
/// applied: per changed key, the entry it held and the one it will hold (`None`: absent).
/// Made by [`TableState::plan_change`], written with [`TableState::write_planned`], applied
/// with [`TableState::apply_planned`].
#[derive(Debug, Default)]
pub struct Planned {
    updates: Vec<(Vec<u8>, Slot)>,
}

/// The longest encoded row key a table takes: the store's keys are at most 65,535 bytes,
/// including the table prefix (`keys::row`).
pub const MAX_KEY_BYTES: usize = 65_000;

/// A key's entry before and after a change.
#[derive(Debug, Clone)]
struct Slot {
    old: Option<Entry>,
    new: Option<Entry>,
}

/// The distinct keys a change touches, each looked up once in the index, all of them in one
/// batch ([`RowIndex::get_many`]), and where each row of the change finds its key's slot.
struct Working<'k> {
    keys: Vec<&'k [u8]>,
    slots: Vec<Slot>,
    /// Per row of the change, its key's position in `keys`.
    of_row: Vec<usize>,
}

impl<'k> Working<'k> {
    /// The slots of `keys`, one per row of the change.
    fn new(index: &RowIndex, keys: impl Iterator<Item = &'k [u8]>) -> Self {
        let mut at: FastMap<&'k [u8], usize> = FastMap::default();
        let mut distinct: Vec<&'k [u8]> = Vec::new();
        let of_row = keys
            .map(|k| {
                *at.entry(k).or_insert_with(|| {
                    distinct.push(k);
                    distinct.len() - 1
                })
            })
            .collect();
        let slots = index
            .get_many(&distinct)
            .into_iter()
            .map(|e| {
                let old = e.map(EntryRef::to_entry);
                Slot { new: old.clone(), old }
            })
            .collect();
        Working { keys: distinct, slots, of_row }
    }

    /// The slot of row `i`'s key.
    fn slot(&mut self, i: usize) -> &mut Slot {
        &mut self.slots[self.of_row[i]]
    }

    /// The keys whose entry changes.
    fn changed(self) -> Vec<(Vec<u8>, Slot)> {
        self.keys.into_iter().zip(self.slots).filter(|(_, s)| s.old != s.new).map(|(k, s)| (k.to_vec(), s)).collect()
    }
}

impl Planned {
    /// True when the change leaves the table as it was.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }
}

impl TableState {
    /// `pinned` with `change` applied: what a transaction block that made `change` sees of
    /// the table before it commits. Checked as a commit is (23505, 23502, deleted rows must be
    /// there); nothing is stored, and no other session sees these rows.
    pub fn apply_to_pinned(&self, pinned: &PinnedRows, change: &ChangeBatch) -> Result<PinnedRows> {
        let mut rows = Rows {
            index: pinned.index.clone(),
            version: PRIVATE_VERSION,
            layout: pinned.layout.clone(),
            expected: 0,
            errors: None,
        };
        let updates = self.plan(&rows, change)?;
        rows.index.set_all(updates.into_iter().map(|(k, slot)| (k, slot.new, slot.old.is_some())).collect());
        Ok(PinnedRows { index: rows.index, version: PRIVATE_VERSION, layout: rows.layout, errors: None })
    }

    /// Checks `change` against the current rows; nothing changes until
    /// [`TableState::apply_planned`].
    pub fn plan_change(&self, change: &ChangeBatch) -> Result<Planned> {
        let rows = self.read_rows();
        Ok(Planned { updates: self.plan(&rows, change)? })
    }

    /// The exact Z-set delta `planned` makes to the current rows (−old +new per changed key),
    /// which is what downstream views consume (an upsert's row images are not a delta).
    pub fn delta_of(&self, planned: &Planned) -> Result<ChangeBatch> {
        let layout = self.read_rows().layout.clone();
        let mut parsed: Vec<&[u8]> = Vec::new();
        let mut weights = Vec::new();
        for (_, Slot { old, new }) in &planned.updates {
            match (old, new) {
                (Some(o), Some(n)) if o.row == n.row => {
                    parsed.push(&n.row);
                    weights.push(n.count - o.count);
                }
                _ => {
                    if let Some(o) = old {
                        parsed.push(&o.row);
                        weights.push(-o.count);
                    }
                    if let Some(n) = new {
                        parsed.push(&n.row);
                        weights.push(n.count);
                    }
                }
            }
        }
        let data = layout.decode(parsed.into_iter())?;
        Ok(ChangeBatch { data, weights, mode: ApplyMode::Delta })
    }

    /// Adds the store writes of `planned` to `batch`.
    ///
    /// With `defer` (the store [`defers_rows_to_images`](crate::state::CheckpointedStore::defers_rows_to_images)),
    /// a change that makes the table's image due writes no rows at all: the next checkpoint
    /// images the table at its cut, which holds this commit, and would drop the staged rows
    /// anyway. A snapshot (and any bulk load) so skips staging most of its rows. The batch
    /// records the debt ([`WriteBatch::owe_image`]) so that the checkpoint runs; should that
    /// checkpoint fail, the store refuses every later commit and checkpoint, so the rows
    /// left out are never claimed durable.
    pub fn write_planned(&self, planned: &Planned, batch: &mut WriteBatch, defer: bool) {
        let changed = self.changed_since_image.fetch_add(planned.updates.len(), Ordering::SeqCst);
        if defer && !self.dropped.load(Ordering::SeqCst) && !planned.updates.is_empty() {
            let owed = self.owes_image.load(Ordering::SeqCst)
                || image::due(self.read_rows().index.len(), changed + planned.updates.len());
            if owed {
                self.owes_image.store(true, Ordering::SeqCst);
                batch.owe_image();
                return;
            }
        }
        for (k, slot) in &planned.updates {
            match &slot.new {
                Some(e) => batch.put(keys::row(self.id, k), encode_entry(e.borrowed())),
                None => self.stage_delete(k, batch),
            }
        }
    }

    /// Stages the removal of `key`: a tombstone when the table's image holds it, else a delete.
    pub(super) fn stage_delete(&self, key: &[u8], batch: &mut WriteBatch) {
        match self.has_image.load(Ordering::SeqCst) {
            true => batch.put(keys::row(self.id, key), TOMBSTONE.to_vec()),
            false => batch.delete(keys::row(self.id, key)),
        }
    }

    /// Makes `planned` visible in memory. Commits to one table are serialised (the dataflow's
    /// lock), so the entries `planned` saw are still the current ones.
    pub fn apply_planned(&self, planned: Planned) {
        let mut rows = self.write_rows();
        if rows.expected > 0 && rows.index.is_empty() && !planned.updates.is_empty() {
            // Size the buffers from this first batch's average entry.
            let n = planned.updates.len();
            let key_bytes: usize = planned.updates.iter().map(|(k, _)| k.len()).sum();
            let row_bytes: usize = planned.updates.iter().map(|(_, s)| s.new.as_ref().map_or(0, |e| e.row.len())).sum();
            // A little over the average, so that an estimate that is right is not missed by
            // a few rows (which would double the buffers after all).
            let (key_bytes, row_bytes) = ((key_bytes * 9).div_ceil(8 * n), (row_bytes * 9).div_ceil(8 * n));
            let expected = rows.expected.max(n);
            rows.index.reserve_appends(expected, key_bytes, row_bytes);
            rows.expected = 0;
        }
        let updates = planned.updates.into_iter().map(|(k, slot)| (k, slot.new, slot.old.is_some())).collect();
        rows.index.set_all(updates);
        rows.version += 1;
    }

    /// Checks `change` against the current rows and returns the keys it changes, each with
    /// its entry before and after.
    ///
    /// Deletions are applied before insertions, so an update (−old +new) of the same key in
    /// one batch is fine while two live rows with one key are a unique violation.
    fn plan(&self, rows: &Rows, change: &ChangeBatch) -> Result<Vec<(Vec<u8>, Slot)>> {
        let schema = &rows.layout.schema;
        if change.data.schema().fields().len() != schema.fields().len() {
            return Err(Error::Internal(format!(
                "change for {} has {} columns, table has {}",
                self.name,
                change.data.num_columns(),
                schema.fields().len()
            )));
        }
        self.check_not_null(schema, change)?;
        let encoded = rows.layout.row_format.convert_columns(change.data.columns())?;
        if change.mode == ApplyMode::Upsert {
            return self.plan_upsert(rows, change, &encoded);
        }
        let checked = change.mode == ApplyMode::Checked;
        let key_rows = match (&self.key_columns, &self.key_format) {
            (Some(key_cols), Some(key_format)) => {
                let key_arrays: Vec<ArrayRef> = key_cols.iter().map(|&i| change.data.column(i).clone()).collect();
                Some(key_format.convert_columns(&key_arrays)?)
            }
            _ => None,
        };
        let keys = key_rows.as_ref().unwrap_or(&encoded);
        self.check_key_sizes(keys, key_rows.is_none())?;
        let mut working = Working::new(&rows.index, keys.iter().map(|k| k.data()));
        match &key_rows {
            Some(_) => {
                for pass_deletes in [true, false] {
                    for (i, &w) in change.weights.iter().enumerate() {
                        if (w < 0) != pass_deletes {
                            continue;
                        }
                        let slot = working.slot(i);
                        if w < 0 {
                            match &slot.new {
                                Some(e) if !checked || e.row.as_ref() == encoded.row(i).as_ref() => {}
                                _ if checked => return Err(self.changed_meanwhile()),
                                _ => return Err(Error::Internal(format!("delete of a missing key in {}", self.name))),
                            }
                            slot.new = None;
                        } else {
                            if w > 1 || slot.new.is_some() {
                                return Err(Error::UniqueViolation {
                                    table: self.name.clone(),
                                    key: self.describe_key(schema, change, i),
                                });
                            }
                            slot.new = Some(Entry { row: encoded.row(i).as_ref().into(), count: 1 });
                        }
                    }
                }
            }
            None => {
                for (i, &w) in change.weights.iter().enumerate() {
                    let row = encoded.row(i).data();
                    let slot = working.slot(i);
                    let count = slot.new.as_ref().map_or(0, |e| e.count) + w;
                    if count < 0 && checked {
                        return Err(self.changed_meanwhile());
                    }
                    if count < 0 {
                        return Err(Error::Internal(format!("delete of a missing row in {}", self.name)));
                    }
                    slot.new = (count > 0).then(|| Entry { row: row.into(), count });
                }
            }
        }
        Ok(working.changed())
    }

    /// A checked change removes a row that is no longer there as it was read.
    fn changed_meanwhile(&self) -> Error {
        Error::SerializationFailure(format!(
            "could not serialize access due to concurrent update of \"{}\": a row this statement or \
             transaction read was changed or deleted by another commit",
            self.name
        ))
    }

    /// Sequential upsert application (see [`ApplyMode::Upsert`]).
    /// 54000 for a row whose key is longer than the store takes (its keys are at most 64 KiB):
    /// refused before anything is written, instead of failing the checkpoint.
    fn check_key_sizes(&self, keys: &datafusion::arrow::row::Rows, whole_row: bool) -> Result<()> {
        match keys.iter().map(|k| k.data().len()).max() {
            Some(longest) if longest > MAX_KEY_BYTES => Err(Error::ProgramLimitExceeded(format!(
                "a row of {} has a key of {longest} bytes, more than the {MAX_KEY_BYTES} bytes a key may have ({})",
                self.name,
                if whole_row {
                    "a table without a primary key is keyed by its whole row: give it a primary key"
                } else {
                    "its primary key columns"
                }
            ))),
            _ => Ok(()),
        }
    }

    fn plan_upsert(
        &self,
        rows: &Rows,
        change: &ChangeBatch,
        encoded: &datafusion::arrow::row::Rows,
    ) -> Result<Vec<(Vec<u8>, Slot)>> {
        let keys = match (&self.key_columns, &self.key_format) {
            (Some(cols), Some(format)) => {
                let arrays: Vec<ArrayRef> = cols.iter().map(|&i| change.data.column(i).clone()).collect();
                Some(format.convert_columns(&arrays)?)
            }
            _ => None,
        };
        self.check_key_sizes(keys.as_ref().unwrap_or(encoded), keys.is_none())?;
        if let Some(keys) = &keys {
            // New keys in ascending order after every key held (a snapshot's chunk, which
            // arrives in key order): each is absent, so nothing needs looking up.
            let ascending = keys.iter().zip(keys.iter().skip(1)).all(|(a, b)| a < b);
            let fresh = keys.num_rows() > 0 && rows.index.sorts_after_all(keys.row(0).data());
            if ascending && fresh && change.weights.iter().all(|&w| w > 0) {
                let new = |i: usize| Entry { row: encoded.row(i).data().into(), count: 1 };
                return Ok(keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (k.data().to_vec(), Slot { old: None, new: Some(new(i)) }))
                    .collect());
            }
        }
        let mut working = Working::new(&rows.index, keys.as_ref().unwrap_or(encoded).iter().map(|k| k.data()));
        for (i, &w) in change.weights.iter().enumerate() {
            let row = encoded.row(i).data();
            match &keys {
                Some(_) => {
                    let slot = working.slot(i);
                    slot.new = (w > 0).then(|| Entry { row: row.into(), count: 1 });
                }
                None => {
                    let slot = working.slot(i);
                    let count = (slot.new.as_ref().map_or(0, |e| e.count) + w).max(0);
                    slot.new = (count > 0).then(|| Entry { row: row.into(), count });
                }
            }
        }
        Ok(working.changed())
    }

    fn check_not_null(&self, schema: &SchemaRef, change: &ChangeBatch) -> Result<()> {
        for (i, field) in schema.fields().iter().enumerate() {
            let col = change.data.column(i);
            if field.is_nullable() || col.null_count() == 0 {
                continue;
            }
            if change.weights.iter().enumerate().any(|(r, &w)| w > 0 && col.is_null(r)) {
                return Err(Error::NotNullViolation { table: self.name.clone(), column: field.name().clone() });
            }
        }
        Ok(())
    }

    /// `(a, b)=(1, x)`, as Postgres prints a key in a unique-violation detail.
    fn describe_key(&self, schema: &SchemaRef, change: &ChangeBatch, row: usize) -> String {
        let cols = self.key_columns.as_deref().unwrap_or_default();
        let names: Vec<&str> = cols.iter().map(|&c| schema.field(c).name().as_str()).collect();
        let values: Vec<String> = cols
            .iter()
            .map(|&c| {
                ScalarValue::try_from_array(change.data.column(c), row)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| "?".into())
            })
            .collect();
        format!("({})=({})", names.join(", "), values.join(", "))
    }
}
