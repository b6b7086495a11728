//! The store on fjall (an LSM tree), data formats 2 and 3 (3, what new data directories get,
//! adds table images next to it: [`super::image`]).
//!
//! Chosen over sled (format 1, still opened) on measurements (`benches/recovery.rs`,
//! `docs/benchmarks.md`): a checkpoint is one atomic batch, and fjall writes large batches
//! several times faster (its journal appends the batch; sled updates its tree in place).

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::datadir::DataDir;
use super::store::{StateStore, WriteBatch};
use crate::error::{Error, Result};

/// One fjall keyspace under `<data-dir>/fjall`, with the directory held locked.
pub struct FjallStore {
    db: Database,
    rows: Keyspace,
    _dir: DataDir,
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

impl FjallStore {
    /// Opens (or creates) a fjall store in `dir` ([`DataDir::open`] checks and locks it).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_in(DataDir::open(dir, super::datadir::FORMAT_IMAGES)?)
    }

    /// Opens fjall in an opened, locked data directory.
    pub fn open_in(data_dir: DataDir) -> Result<Self> {
        let dir = data_dir.path.clone();
        let db = Database::builder(dir.join("fjall")).open().map_err(|e| super::datadir::unreadable(&dir, e))?;
        // A smaller memtable than fjall's 64 MiB default: the journal a restart replays is
        // bounded by it.
        let rows =
            db.keyspace("state", || KeyspaceCreateOptions::default().max_memtable_size(16 << 20)).map_err(storage)?;
        let store = FjallStore { db, rows, _dir: data_dir };
        super::datadir::verify_format_record(&store, &store._dir)?;
        Ok(store)
    }

    /// Where table images live next to this store, when its data directory's format keeps
    /// them (format 3; see [`super::image`]); `None`: every row is in the store.
    pub fn images_dir(&self) -> Option<std::path::PathBuf> {
        (self._dir.format >= super::datadir::FORMAT_IMAGES).then(|| self._dir.path.join("images"))
    }
}

impl StateStore for FjallStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.rows.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.rows.prefix(prefix) {
            let (k, v) = item.into_inner().map_err(storage)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn scan_prefix_each(&self, prefix: &[u8], each: &mut super::store::ScanVisitor<'_>) -> Result<()> {
        for item in self.rows.prefix(prefix) {
            let (k, v) = item.into_inner().map_err(storage)?;
            each(&k, &v)?;
        }
        Ok(())
    }

    fn apply(&self, batch: WriteBatch) -> Result<()> {
        let mut b = self.db.batch();
        for (k, v) in batch.into_ops() {
            match v {
                Some(v) => b.insert(&self.rows, k, v),
                None => b.remove(&self.rows, k),
            }
        }
        b.commit().map_err(storage)
    }

    fn flush(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(storage)
    }
}
