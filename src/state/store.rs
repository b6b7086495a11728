//! The durable key-value interface, its in-memory implementation and the sled one (fjall:
//! `fjall_store`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::datadir::DataDir;
use crate::error::{Error, Result};
use crate::sync::Unpoisoned;

/// A set of puts and deletes applied atomically by [`StateStore::apply`].
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Rows of this commit were left out because a table image will hold them
    /// ([`WriteBatch::owe_image`]).
    owes_image: bool,
}

impl WriteBatch {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Removes every key `store` holds under `prefix`; returns how many.
    pub fn delete_prefix(&mut self, store: &dyn StateStore, prefix: &[u8]) -> Result<usize> {
        let mut n = 0;
        store.scan_prefix_each(prefix, &mut |k, _| {
            self.delete(k.to_vec());
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }

    /// Appends the operations of `other` (they win over earlier ones on the same key).
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
        self.owes_image |= other.owes_image;
    }

    /// Records that rows of this commit were left out of the batch because the next
    /// checkpoint writes an image of their table, which holds them: only for a store that
    /// [`CheckpointedStore::defers_rows_to_images`](super::checkpoint::CheckpointedStore::defers_rows_to_images). The checkpoint that takes this batch must run
    /// even if the batch has no operations.
    pub fn owe_image(&mut self) {
        self.owes_image = true;
    }

    /// True when rows of this commit wait for an image ([`WriteBatch::owe_image`]).
    pub fn owes_image(&self) -> bool {
        self.owes_image
    }

    /// True when the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && !self.owes_image
    }

    /// The operations, in the order they were added (a later one wins).
    pub fn into_ops(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }
}

/// What [`StateStore::scan_prefix_each`] calls with each key and value.
pub type ScanVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// An ordered, durable key-value store with atomic batches.
///
/// The contract the rest of Headwater relies on: after `apply` returns `Ok`, either every
/// operation of the batch survives a crash or none does; `flush` makes applied batches durable.
/// That is all a store does: staging, checkpoints, generations and table images are
/// [`CheckpointedStore`](super::checkpoint::CheckpointedStore)'s, a struct over a store.
pub trait StateStore: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// All pairs whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Calls `each` with every pair whose key starts with `prefix`, in key order, without
    /// collecting them (a table loading millions of rows at startup).
    fn scan_prefix_each(&self, prefix: &[u8], each: &mut ScanVisitor<'_>) -> Result<()> {
        for (k, v) in self.scan_prefix(prefix)? {
            each(&k, &v)?;
        }
        Ok(())
    }
    /// Applies a batch atomically.
    fn apply(&self, batch: WriteBatch) -> Result<()>;
    /// Waits until everything applied so far is on disk.
    fn flush(&self) -> Result<()>;
}

/// The embedded store: one sled tree under the data directory, which it holds locked.
pub struct SledStore {
    db: sled::Db,
    _dir: DataDir,
}

impl SledStore {
    /// Opens (or creates) a sled store in `dir` (format 1; see
    /// [`open_store`](super::datadir::open_store), which picks the engine the directory holds).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_in(DataDir::open(dir, super::datadir::FORMAT_SLED)?)
    }

    /// Opens sled in an opened, locked data directory.
    pub fn open_in(data_dir: DataDir) -> Result<Self> {
        let dir = data_dir.path.clone();
        // No background flushes: a checkpoint flushes explicitly, after its batch.
        let db = sled::Config::new()
            .path(dir.join("state"))
            .flush_every_ms(None)
            .open()
            .map_err(|e| super::datadir::unreadable(&dir, e))?;
        let store = SledStore { db, _dir: data_dir };
        super::datadir::verify_format_record(&store, &store._dir)?;
        Ok(store)
    }
}

impl StateStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db.scan_prefix(prefix).map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Error::from)).collect()
    }

    fn apply(&self, batch: WriteBatch) -> Result<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db.apply_batch(b)?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// An in-memory store for tests: same contract, nothing survives the process.
#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.locked()
    }
}

impl StateStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map().get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .map()
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, batch: WriteBatch) -> Result<()> {
        let mut map = self.map();
        for (k, v) in batch.ops {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn StateStore) {
        let mut b = WriteBatch::default();
        b.put(b"a/1".to_vec(), b"x".to_vec());
        b.put(b"a/2".to_vec(), b"y".to_vec());
        b.put(b"b/1".to_vec(), b"z".to_vec());
        store.apply(b).unwrap();
        let mut b = WriteBatch::default();
        b.delete(b"a/1".to_vec());
        store.apply(b).unwrap();
        assert_eq!(store.get(b"a/2").unwrap(), Some(b"y".to_vec()));
        assert_eq!(store.get(b"a/1").unwrap(), None);
        let scanned = store.scan_prefix(b"a/").unwrap();
        assert_eq!(scanned, vec![(b"a/2".to_vec(), b"y".to_vec())]);
    }

    #[test]
    fn memory_store_contract() {
        exercise(&MemoryStore::default());
    }

    #[test]
    fn fjall_store_contract_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = super::super::fjall_store::FjallStore::open(dir.path()).unwrap();
            exercise(&store);
            store.flush().unwrap();
        }
        let store = super::super::fjall_store::FjallStore::open(dir.path()).unwrap();
        assert_eq!(store.get(b"b/1").unwrap(), Some(b"z".to_vec()));
    }

    #[test]
    fn sled_store_contract_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            exercise(&store);
            store.flush().unwrap();
        }
        // sled releases its file lock when its background threads let go of the dropped
        // database, which may be a moment after the drop under load: wait for it (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let store = loop {
            match SledStore::open(dir.path()) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("reopening sled: {e}; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("sled did not reopen within 30 s: {e}"),
            }
        };
        assert_eq!(store.get(b"b/1").unwrap(), Some(b"z".to_vec()));
    }
}
