//! What a source has read ([`Progress`]), how it is stored, and the changes `ALTER SOURCE`
//! makes to it.
//!
//! # Layout
//! The record every commit writes is small and of fixed size: the binlog position and GTID
//! under `s/<source id>`. Per-unit facts (a unit streaming, its snapshot position, a
//! resumable snapshot, a failure, shards that joined later, shards rejected) live one key
//! per unit under `s/<source id>/<kind>/<name>`, and a commit writes only the ones that
//! changed since the last write ([`Tracked`]), so a transaction's cost does not grow with
//! the number of captured tables. Records written before this layout (one JSON document
//! holding everything) are read and moved to it by the next write.

use super::*;

/// The progress a source persists with its commits.
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    pub position: Option<BinlogPosition>,
    /// The GTID of the last applied transaction (shown in `hw_catalog.sources`).
    pub gtid: Option<String>,
    /// Units whose snapshot is complete.
    pub streaming: Tracked<()>,
    /// Their snapshot positions: after a restart, transactions up to these positions are
    /// already in the table and must not be applied again.
    pub snapshot_at: Tracked<BinlogPosition>,
    /// Snapshots in progress: the chunks already in the table, stored with them, so a crash
    /// or reconnect resumes after the last one instead of starting over.
    pub resume: Tracked<SnapshotResume>,
    /// Shards created upstream after CREATE SOURCE, by local table name: their whole history
    /// is in the binlog after the CREATE TABLE, so they join without a snapshot.
    pub new_shards: Tracked<Vec<String>>,
    /// Tables created upstream that match a shard pattern but differ from the other shards:
    /// `db.table` → (local table, why), shown in `hw_catalog.source_tables` as `error`.
    pub rejected_shards: Tracked<(String, String)>,
    /// Units stopped by something they cannot follow (upstream DDL, a row that does not
    /// decode), by progress name, with the reason: they stay stopped across restarts and
    /// reconnects (the binlog has moved past the cause) until dropped or re-snapshotted.
    pub failed: Tracked<String>,
}

/// The record under `s/<source id>`. The per-unit fields are only read: they are where
/// records written before the per-unit layout kept everything.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Head {
    position: Option<BinlogPosition>,
    #[serde(default)]
    gtid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    streaming: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    snapshot_at: BTreeMap<String, BinlogPosition>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    resume: BTreeMap<String, SnapshotResume>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    new_shards: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    rejected_shards: BTreeMap<String, (String, String)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    failed: BTreeMap<String, String>,
}

impl Head {
    /// True when the record holds no per-unit facts (the layout with per-unit entries).
    fn is_new_layout(&self) -> bool {
        self.streaming.is_empty()
            && self.snapshot_at.is_empty()
            && self.resume.is_empty()
            && self.new_shards.is_empty()
            && self.rejected_shards.is_empty()
            && self.failed.is_empty()
    }
}

/// The per-unit maps' tags in their keys.
const STREAMING: u8 = b's';
const SNAPSHOT_AT: u8 = b'a';
const RESUME: u8 = b'r';
const NEW_SHARDS: u8 = b'n';
const REJECTED: u8 = b'x';
const FAILED: u8 = b'f';

/// A map stored one key per entry, which remembers the entries changed since it was last
/// written.
#[derive(Debug, Clone)]
pub(super) struct Tracked<V> {
    map: BTreeMap<String, V>,
    dirty: BTreeSet<String>,
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked { map: BTreeMap::new(), dirty: BTreeSet::new() }
    }
}

impl<V> Tracked<V> {
    pub fn get(&self, name: &str) -> Option<&V> {
        self.map.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The entry, to change in place (it is written again).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        let v = self.map.get_mut(name)?;
        if !self.dirty.contains(name) {
            self.dirty.insert(name.to_string());
        }
        Some(v)
    }

    pub fn insert(&mut self, name: String, value: V) -> Option<V> {
        self.dirty.insert(name.clone());
        self.map.insert(name, value)
    }

    pub fn remove(&mut self, name: &str) -> Option<V> {
        let old = self.map.remove(name)?;
        self.dirty.insert(name.to_string());
        Some(old)
    }

    /// Keeps the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        let dropped: Vec<String> = self.map.iter().filter(|(k, v)| !keep(k, v)).map(|(k, _)| k.clone()).collect();
        for k in dropped {
            self.remove(&k);
        }
    }

    pub fn entry_or_default(&mut self, name: &str) -> &mut V
    where
        V: Default,
    {
        self.dirty.insert(name.to_string());
        self.map.entry(name.to_string()).or_default()
    }

    pub fn into_map(self) -> BTreeMap<String, V> {
        self.map
    }

    /// Every entry counts as changed (a record moved to this layout).
    fn from_legacy(map: BTreeMap<String, V>) -> Self {
        Tracked { dirty: map.keys().cloned().collect(), map }
    }
}

impl Tracked<()> {
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn add(&mut self, name: String) {
        self.insert(name, ());
    }
}

impl<V: Serialize> Tracked<V> {
    /// Writes the changed entries (a removed one is deleted) and forgets that they changed.
    fn write_changes(&mut self, source_id: u64, tag: u8, batch: &mut WriteBatch) -> Result<()> {
        for name in std::mem::take(&mut self.dirty) {
            let key = keys::source_progress_entry(source_id, tag, &name);
            match self.map.get(&name) {
                Some(v) => batch.put(key, serde_json::to_vec(v).map_err(|e| Error::Internal(e.to_string()))?),
                None => batch.delete(key),
            }
        }
        Ok(())
    }
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("corrupt source progress: {e}"))
}

impl Progress {
    /// Reads source `source_id`'s progress (empty when it has none).
    pub fn load(store: &dyn StateStore, source_id: u64) -> Result<Progress> {
        let head: Head = match store.get(&keys::source_progress(source_id))? {
            Some(v) => serde_json::from_slice(&v).map_err(corrupt)?,
            None => Head::default(),
        };
        let mut p = Progress {
            position: head.position,
            gtid: head.gtid,
            streaming: Tracked::from_legacy(head.streaming.into_iter().map(|n| (n, ())).collect()),
            snapshot_at: Tracked::from_legacy(head.snapshot_at),
            resume: Tracked::from_legacy(head.resume),
            new_shards: Tracked::from_legacy(head.new_shards),
            rejected_shards: Tracked::from_legacy(head.rejected_shards),
            failed: Tracked::from_legacy(head.failed),
        };
        let prefix = keys::source_progress_entries(source_id);
        store.scan_prefix_each(&prefix, &mut |k, v| {
            let rest = &k[prefix.len()..];
            let (&tag, name) = rest.split_first().ok_or_else(|| corrupt("empty key"))?;
            let name = std::str::from_utf8(name.strip_prefix(b"/").unwrap_or(name)).map_err(corrupt)?.to_string();
            match tag {
                STREAMING => drop(p.streaming.map.insert(name, ())),
                SNAPSHOT_AT => drop(p.snapshot_at.map.insert(name, serde_json::from_slice(v).map_err(corrupt)?)),
                RESUME => drop(p.resume.map.insert(name, serde_json::from_slice(v).map_err(corrupt)?)),
                NEW_SHARDS => drop(p.new_shards.map.insert(name, serde_json::from_slice(v).map_err(corrupt)?)),
                REJECTED => drop(p.rejected_shards.map.insert(name, serde_json::from_slice(v).map_err(corrupt)?)),
                FAILED => drop(p.failed.map.insert(name, serde_json::from_slice(v).map_err(corrupt)?)),
                other => return Err(corrupt(format!("unknown entry kind {other}"))),
            }
            Ok(())
        })?;
        Ok(p)
    }

    /// What a commit stores: the position, and the per-unit facts changed since the last
    /// call (which forgets them: the caller commits the batch or abandons the run, and a new
    /// run loads the progress again).
    pub fn write(&mut self, source_id: u64) -> Result<WriteBatch> {
        let mut b = WriteBatch::default();
        let head = Head { position: self.position.clone(), gtid: self.gtid.clone(), ..Head::default() };
        b.put(keys::source_progress(source_id), serde_json::to_vec(&head).map_err(|e| Error::Internal(e.to_string()))?);
        self.write_entries(source_id, &mut b)?;
        Ok(b)
    }

    /// The per-unit entries changed since the last write, without the position.
    fn write_entries(&mut self, source_id: u64, b: &mut WriteBatch) -> Result<()> {
        self.streaming.write_changes(source_id, STREAMING, b)?;
        self.snapshot_at.write_changes(source_id, SNAPSHOT_AT, b)?;
        self.resume.write_changes(source_id, RESUME, b)?;
        self.new_shards.write_changes(source_id, NEW_SHARDS, b)?;
        self.rejected_shards.write_changes(source_id, REJECTED, b)?;
        self.failed.write_changes(source_id, FAILED, b)
    }
}

/// Forgets everything a source has read (ALTER SOURCE ... RESNAPSHOT): it starts again from
/// the upstream's current position with a snapshot of every table, which the caller has
/// emptied.
pub fn reset_progress(store: &dyn StateStore, source_id: u64) -> Result<()> {
    // Shards that joined later are part of the definition, not of what was read.
    let new_shards = Progress::load(store, source_id)?.new_shards.into_map();
    let mut b = WriteBatch::default();
    b.delete_prefix(store, &keys::source_progress(source_id))?;
    for (table, shards) in new_shards {
        let value = serde_json::to_vec(&shards).map_err(|e| Error::Internal(e.to_string()))?;
        b.put(keys::source_progress_entry(source_id, NEW_SHARDS, &table), value);
    }
    store.apply(b)
}

/// Removes tables from a source's stored progress (ALTER SOURCE), so a table added again
/// under the same name is snapshotted afresh. Only their entries are written (never the
/// position), so this is safe while the source runs with units other than these.
pub fn forget_tables(store: &dyn StateStore, source_id: u64, names: &[String]) -> Result<()> {
    let mut progress = Progress::load(store, source_id)?;
    for n in names {
        let shard_of = |unit: &str| unit == n || unit.starts_with(&format!("{n}/"));
        progress.streaming.retain(|unit, _| !shard_of(unit));
        progress.snapshot_at.retain(|unit, _| !shard_of(unit));
        progress.resume.retain(|unit, _| !shard_of(unit));
        progress.new_shards.remove(n);
        progress.rejected_shards.retain(|_, (table, _)| table != n);
        progress.failed.retain(|unit, _| !shard_of(unit));
    }
    // A record still in the old single-record layout holds these tables too: it is moved to
    // the per-unit layout whole (a running source's first commit would have done so).
    let legacy = store
        .get(&keys::source_progress(source_id))?
        .is_some_and(|v| serde_json::from_slice::<Head>(&v).is_ok_and(|h| !h.is_new_layout()));
    if legacy {
        return store.apply(progress.write(source_id)?);
    }
    let mut b = WriteBatch::default();
    progress.write_entries(source_id, &mut b)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn at(pos: u64) -> BinlogPosition {
        BinlogPosition { file: "mariadb-bin.000001".into(), pos }
    }

    fn units_written(batch: WriteBatch, id: u64) -> usize {
        let prefix = keys::source_progress_entries(id);
        batch.into_ops().iter().filter(|(k, _)| k.starts_with(&prefix)).count()
    }

    #[test]
    fn a_commit_writes_only_what_changed() {
        let store = MemoryStore::default();
        let mut p = Progress::default();
        for i in 0..1000 {
            p.streaming.add(format!("t{i}"));
            p.snapshot_at.insert(format!("t{i}"), at(i));
        }
        p.position = Some(at(5));
        store.apply(p.write(7).unwrap()).unwrap();
        // A transaction moves the position only: one fixed-size record.
        p.position = Some(at(6));
        let batch = p.write(7).unwrap();
        assert_eq!(batch.into_ops().len(), 1);
        // A unit finishing its snapshot writes its own entries.
        p.streaming.add("new".into());
        p.snapshot_at.insert("new".into(), at(6));
        p.resume.remove("new");
        assert_eq!(units_written(p.write(7).unwrap(), 7), 2);
        p.failed.insert("t3".into(), "upstream DDL".into());
        p.streaming.remove("t4");
        store.apply(p.write(7).unwrap()).unwrap();

        let back = Progress::load(&store, 7).unwrap();
        assert_eq!(back.position, Some(at(6)));
        assert_eq!(back.streaming.map.len(), 999);
        assert!(!back.streaming.contains("t4") && back.streaming.contains("t3"));
        assert_eq!(back.failed.get("t3").map(String::as_str), Some("upstream DDL"));
        assert_eq!(back.snapshot_at.get("t999"), Some(&at(999)));
        // "new" was never stored (its write was not applied).
        assert!(!back.streaming.contains("new"));
        assert!(back.streaming.dirty.is_empty(), "a loaded record has nothing to write");
    }

    #[test]
    fn a_record_in_the_old_layout_is_read_and_moved() {
        let store = MemoryStore::default();
        let old = serde_json::json!({
            "position": {"file": "mariadb-bin.000002", "pos": 400},
            "streaming": ["a", "b/s1"],
            "snapshot_at": {"a": {"file": "mariadb-bin.000001", "pos": 10}},
            "resume": {},
            "gtid": "0-1-9",
            "new_shards": {"b": ["s2"]},
            "rejected_shards": {"db.s3": ["b", "differs"]},
            "failed": {"c": "frozen"}
        });
        let mut b = WriteBatch::default();
        b.put(keys::source_progress(3), serde_json::to_vec(&old).unwrap());
        store.apply(b).unwrap();
        let mut p = Progress::load(&store, 3).unwrap();
        assert!(p.streaming.contains("b/s1") && p.failed.contains_key("c"));
        assert_eq!(p.gtid.as_deref(), Some("0-1-9"));
        store.apply(p.write(3).unwrap()).unwrap();
        let head: serde_json::Value =
            serde_json::from_slice(&store.get(&keys::source_progress(3)).unwrap().unwrap()).unwrap();
        assert!(head.get("streaming").is_none(), "the head keeps only the position: {head}");
        let back = Progress::load(&store, 3).unwrap();
        assert_eq!(back.streaming.map.len(), 2);
        assert_eq!(back.new_shards.get("b"), Some(&vec!["s2".to_string()]));
        assert_eq!(back.rejected_shards.get("db.s3").map(|r| r.1.as_str()), Some("differs"));
        assert_eq!(back.snapshot_at.get("a"), Some(&at(10)));
    }

    #[test]
    fn forgetting_a_table_forgets_its_shards_and_reset_keeps_joined_shards() {
        let store = MemoryStore::default();
        let mut p = Progress { position: Some(at(9)), ..Progress::default() };
        for unit in ["m/s1", "m/s2", "m2", "other"] {
            p.streaming.add(unit.into());
        }
        p.new_shards.insert("m".into(), vec!["s2".into()]);
        p.failed.insert("m/s1".into(), "x".into());
        store.apply(p.write(1).unwrap()).unwrap();
        // A neighbour source's entries are not touched.
        let mut q = Progress { position: Some(at(1)), ..Progress::default() };
        q.streaming.add("m".into());
        store.apply(q.write(2).unwrap()).unwrap();

        forget_tables(&store, 1, &["m".to_string()]).unwrap();
        let back = Progress::load(&store, 1).unwrap();
        let streaming: Vec<&String> = back.streaming.map.keys().collect();
        assert_eq!(streaming, ["m2", "other"]);
        assert!(back.failed.map.is_empty() && back.new_shards.map.is_empty());
        assert!(Progress::load(&store, 2).unwrap().streaming.contains("m"));

        let mut p = back;
        p.new_shards.insert("other".into(), vec!["s9".into()]);
        store.apply(p.write(1).unwrap()).unwrap();
        reset_progress(&store, 1).unwrap();
        let back = Progress::load(&store, 1).unwrap();
        assert_eq!(back.position, None);
        assert!(back.streaming.map.is_empty());
        assert_eq!(back.new_shards.get("other"), Some(&vec!["s9".to_string()]));
        assert!(Progress::load(&store, 2).unwrap().streaming.contains("m"));
    }
}
