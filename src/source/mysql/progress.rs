//! What a source has read, as stored with every commit ([`Progress`]), and the changes
//! `ALTER SOURCE` makes to it.

use super::*;

/// Forgets everything a source has read (ALTER SOURCE ... RESNAPSHOT): it starts again from
/// the upstream's current position with a snapshot of every table, which the caller has
/// emptied.
pub fn reset_progress(store: &dyn StateStore, source_id: u64) -> Result<()> {
    let key = keys::source_progress(source_id);
    // Shards that joined later are part of the definition, not of what was read.
    let new_shards = match store.get(&key)? {
        Some(v) => serde_json::from_slice::<Progress>(&v).map(|p| p.new_shards).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let mut b = WriteBatch::default();
    if new_shards.is_empty() {
        b.delete(key);
    } else {
        let kept = Progress { new_shards, ..Progress::default() };
        b.put(key, serde_json::to_vec(&kept).map_err(|e| Error::Internal(e.to_string()))?);
    }
    store.apply(b)
}

/// Removes tables from a source's stored progress (ALTER SOURCE), so a table added again
/// under the same name is snapshotted afresh.
pub fn forget_tables(store: &dyn StateStore, source_id: u64, names: &[String]) -> Result<()> {
    let key = keys::source_progress(source_id);
    let Some(v) = store.get(&key)? else { return Ok(()) };
    let mut progress: Progress =
        serde_json::from_slice(&v).map_err(|e| Error::Storage(format!("corrupt source progress: {e}")))?;
    for n in names {
        progress.streaming.remove(n);
        progress.snapshot_at.remove(n);
        progress.resume.remove(n);
        progress.new_shards.remove(n);
        progress.rejected_shards.retain(|_, (table, _)| table != n);
        progress.failed.retain(|unit, _| unit != n && !unit.starts_with(&format!("{n}/")));
    }
    let mut b = WriteBatch::default();
    b.put(key, serde_json::to_vec(&progress).map_err(|e| Error::Internal(e.to_string()))?);
    store.apply(b)
}

/// Moves the stored position to `position` (after an ALTER: everything before it is applied,
/// as messages arrive in order), unless it is already further.
pub(super) fn move_past(progress: &mut Progress, position: Option<(&BinlogPosition, &Option<String>)>) {
    if let Some((end, gtid)) = position {
        if progress.position.as_ref().is_none_or(|p| end > p) {
            progress.position = Some(end.clone());
            if gtid.is_some() {
                progress.gtid = gtid.clone();
            }
        }
    }
}
