//! Widening: a captured table gains columns upstream, and every row is re-encoded with them.

use super::*;

/// A table about to gain columns: its rows re-encoded with the new layout. Made by
/// [`TableState::plan_widen`], applied with [`TableState::apply_widen`].
pub struct Widening {
    layout: Arc<Layout>,
    index: RowIndex,
}

impl TableState {
    /// Prepares the table for a wider `schema` (an upstream `ALTER TABLE ... ADD COLUMN`):
    /// the old columns are a prefix of the new ones (only their nullability may change), and
    /// every existing row gets `values` (one-row arrays) in the new columns. Adds the
    /// rewritten rows to `batch`; nothing changes until [`TableState::apply_widen`].
    ///
    /// The Arrow row format is the concatenation of each column's encoding, so a row widens
    /// by appending the encoding of the new values: no row is decoded. A keyed table keeps
    /// its keys; a multiset's key is its row, so its keys change too.
    pub fn plan_widen(&self, schema: SchemaRef, values: &[ArrayRef], batch: &mut WriteBatch) -> Result<Widening> {
        let rows = self.read_rows();
        let old = &rows.layout.schema;
        let added = schema.fields().len().checked_sub(old.fields().len());
        let prefix_kept = old
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if added != Some(values.len()) || !prefix_kept || values.iter().any(|v| v.len() != 1) {
            return Err(Error::Internal(format!("{}: a new layout must append columns to the old one", self.name)));
        }
        let layout = Layout::new(schema.clone())?;
        let new_columns: Vec<usize> = (old.fields().len()..schema.fields().len()).collect();
        let suffix = match new_columns.is_empty() {
            true => Vec::new(),
            false => converter(&schema, &new_columns)?.convert_columns(values)?.row(0).as_ref().to_vec(),
        };
        if suffix.is_empty() {
            return Ok(Widening { layout, index: rows.index.clone() });
        }
        let mut builder = RowIndex::builder(self.is_multiset());
        for (k, e) in rows.index.iter() {
            let mut row = Vec::with_capacity(e.row.len() + suffix.len());
            row.extend_from_slice(e.row);
            row.extend_from_slice(&suffix);
            let entry = EntryRef { row: &row, count: e.count };
            let key = match self.key_columns {
                Some(_) => k,
                None => {
                    self.stage_delete(k, batch);
                    &row
                }
            };
            batch.put(keys::row(self.id, key), encode_entry(entry));
            self.changed_since_image.fetch_add(1, Ordering::SeqCst);
            builder.push(key, entry);
        }
        Ok(Widening { layout, index: builder.finish() })
    }

    /// Makes a [`TableState::plan_widen`] visible: the table has its new columns.
    pub fn apply_widen(&self, widening: Widening) {
        let mut rows = self.write_rows();
        rows.index = widening.index;
        rows.layout = widening.layout;
        rows.version += 1;
    }
}
