//! Rows as the store holds them: one entry per key (its count, then its Arrow row bytes), and
//! back to Arrow batches.

use super::*;

/// An entry as the store holds it: its count (little-endian) then its row.
pub(super) fn encode_entry(e: EntryRef<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + e.row.len());
    v.extend_from_slice(&e.count.to_le_bytes());
    v.extend_from_slice(e.row);
    v
}

/// What a table with an image stores for a deleted key (the image still holds it): a count
/// of 0 and no row.
pub(super) const TOMBSTONE: [u8; 8] = [0; 8];

/// [`TOMBSTONE`], for the image tests.
#[cfg(test)]
pub(crate) fn tests_tombstone() -> [u8; 8] {
    TOMBSTONE
}

pub(super) fn decode_entry(bytes: &[u8]) -> Result<EntryRef<'_>> {
    if bytes.len() < 8 {
        return Err(Error::Storage("row value shorter than its header".into()));
    }
    let count = i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    Ok(EntryRef { row: &bytes[8..], count })
}

/// Adds a row as the store holds it to `builder`, unless it is a tombstone.
pub(super) fn push_stored(builder: &mut crate::state::index::IndexBuilder, key: &[u8], value: &[u8]) -> Result<()> {
    let entry = decode_entry(value)?;
    if entry.count != 0 {
        builder.push(key, entry);
    }
    Ok(())
}

/// Decodes entries (each as many times as it is present).
pub(super) fn to_batch<'a>(layout: &Layout, entries: impl Iterator<Item = EntryRef<'a>>) -> Result<RecordBatch> {
    layout.decode(entries.flat_map(|e| std::iter::repeat_n(e.row, e.count.max(0) as usize)))
}

/// Arrays decoded from the row format carry arbitrary bits under NULL (an i64 NULL decodes as
/// `i64::MIN`), and some DataFusion kernels compute on those slots (`date_trunc` overflows
/// on them in debug builds); a zip against NULL rewrites them as zeros.
pub fn zero_null_slots(columns: Vec<ArrayRef>) -> Result<Vec<ArrayRef>> {
    columns
        .into_iter()
        .map(|c| {
            if c.null_count() == 0 || !c.data_type().is_primitive() {
                return Ok(c);
            }
            let valid = is_not_null(&c)?;
            let null = Scalar::new(new_null_array(c.data_type(), 1));
            Ok(zip(&valid, &c, &null)?)
        })
        .collect()
}
