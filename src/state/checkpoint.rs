//! Checkpoints: commits stage their writes in memory; a checkpoint writes everything staged
//! since the previous one to the durable store in one atomic batch.
//!
//! [`CheckpointedStore`] is itself a [`StateStore`], so the layers above do not change:
//! `apply` stages a batch (a cheap in-memory merge — the commit path never waits for the
//! disk), reads see staged values first, and `flush` is a checkpoint. Why this is correct:
//! - **One cut.** Every `apply` merges its whole batch under one lock, and a checkpoint takes
//!   the staged map under the same lock, so a checkpoint holds a union of whole commits —
//!   never half of a statement or of an upstream transaction. The durable store applies it
//!   atomically (fjall and sled batches are all-or-nothing across crashes).
//! - **The binlog is the write-ahead log.** A source stages its binlog offset with the rows
//!   it produced, so the durable state is always "tables as of offset X"; after a crash the
//!   source resumes from X. Nothing applied twice, nothing lost.
//! - **Incremental.** A checkpoint writes the keys that changed since the last one, each once
//!   however often it changed (a hot row updated 1000 times in a second is one write).
//! - **Reads never go back in time.** While a checkpoint is being written its batch stays
//!   readable (`in_flight`) until the durable store has it.
//!
//! - **Images.** A checkpoint may also replace a table's rows in the store by an image file
//!   ([`super::image`]): the table is pinned by [`ImageCut`] at the very point the staged
//!   writes are taken (no commit in progress), so the image holds exactly the commits of this
//!   checkpoint and those before; the batch then points `i/<table>` at it and deletes the
//!   table's delta rather than writing it.
//!
//! A checkpoint that fails (disk full, I/O error) puts its writes back and marks the store
//! failed: from then on every `apply` is refused, so nothing is acknowledged that could not be
//! made durable; the server stops with the error (see `server`).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::image::{ImageRecord, Images};
use super::keys;
use super::store::{StateStore, WriteBatch};
use super::table::{PinnedRows, TableState};
use crate::change::FastMap;
use crate::error::{Error, Result};
use crate::sync::Unpoisoned;

/// Staged writes, newest value per key. A hash map: every commit inserts into it, while the
/// ordered reads (`scan_prefix`) are rare (start-up, DDL) and a checkpoint sorts its batch.
type Writes = FastMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Default)]
struct Staged {
    writes: Writes,
    bytes: usize,
    /// The batch a checkpoint is writing right now: still the newest values of its keys
    /// for readers until it is durable.
    in_flight: Option<Arc<Writes>>,
    failed: Option<String>,
    /// A commit since the last checkpoint left rows out of `writes` for a table image
    /// ([`WriteBatch::owe_image`]): the next checkpoint runs even with nothing staged, and its
    /// cut images those tables (they say so: `TableState::image_due`).
    owes_image: bool,
    /// The number of the checkpoint that will write `writes` (starts at 1).
    generation: u64,
}

/// What `hw_catalog.checkpoints` shows.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    /// Checkpoints written since the server started (empty ones are not counted).
    pub count: u64,
    pub last_at: Option<SystemTime>,
    pub last_duration: Duration,
    /// Keys (rows, offsets, catalog entries) and bytes written by the last checkpoint.
    pub last_keys: usize,
    pub last_bytes: usize,
    pub total_keys: u64,
    pub total_bytes: u64,
    /// Keys and bytes staged for the next checkpoint.
    pub staged_keys: usize,
    pub staged_bytes: usize,
    pub last_error: Option<String>,
    /// Table images written since the server started.
    pub images: u64,
}

/// How a checkpoint finds its cut: the point its staged writes end at, where views stage
/// their operator state and the tables to image are pinned (implemented by the engine, which
/// knows the tables and views and serialises commits).
pub trait ImageCut: Send + Sync {
    /// Calls `take` (which takes the staged writes, and says whether there were any) at a
    /// point where no commit is in progress, so every staged write is in memory and every
    /// write in memory is staged or durable; when `images` (the store keeps table images),
    /// returns, pinned at that same point, the tables whose image is due
    /// ([`super::image::due`]), each marked as imaged.
    fn cut(&self, take: &mut dyn FnMut() -> bool, images: bool) -> Vec<(Arc<TableState>, PinnedRows)>;
}

/// A [`StateStore`] that stages writes in memory and checkpoints them to `durable`.
pub struct CheckpointedStore {
    durable: Arc<dyn StateStore>,
    images: Option<Images>,
    image_cut: OnceLock<Arc<dyn ImageCut>>,
    staged: Mutex<Staged>,
    /// One checkpoint at a time, so batches reach the durable store in commit order.
    writer: Mutex<()>,
    stats: Mutex<CheckpointStats>,
    /// The newest checkpoint generation on disk, and its waiters (sinks send only durable
    /// changes).
    durable_generation: Mutex<u64>,
    durable_changed: Condvar,
}

fn entry_bytes(k: &[u8], v: &Option<Vec<u8>>) -> usize {
    k.len() + v.as_ref().map_or(0, Vec::len) + 32
}

impl CheckpointedStore {
    /// Stages over `durable`, which holds the last checkpoint; every row is kept in the store
    /// (no table images).
    pub fn new(durable: Arc<dyn StateStore>) -> Self {
        Self::with_images(durable, None)
    }

    /// Opens the data directory `dir` ([`super::datadir::open_store`]) and stages over its
    /// store, with the table images its format keeps.
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        let opened = super::datadir::open_store(dir)?;
        Ok(Self::with_images(opened.store, opened.images_dir.as_deref()))
    }

    /// Stages over `durable`, keeping table images in `images_dir` (the data directory's
    /// `images/`, format 3; see [`super::image`]).
    pub fn with_images(durable: Arc<dyn StateStore>, images_dir: Option<&std::path::Path>) -> Self {
        let images = match images_dir.map(Images::open).transpose() {
            Ok(images) => images,
            Err(e) => {
                // Checkpoints keep every row in the store; a table that has an image cannot
                // load, and says so.
                tracing::error!(error = %e, "table images disabled");
                None
            }
        };
        CheckpointedStore {
            durable,
            images,
            image_cut: OnceLock::new(),
            staged: Mutex::new(Staged { generation: 1, ..Staged::default() }),
            writer: Mutex::new(()),
            stats: Mutex::new(CheckpointStats::default()),
            durable_generation: Mutex::new(0),
            durable_changed: Condvar::new(),
        }
    }

    /// Writes everything staged so far to the durable store, atomically, and waits until it
    /// is on disk. Returns the number of keys written (0: nothing was staged).
    pub fn checkpoint(&self) -> Result<usize> {
        let _writer = self.writer.locked();
        // From the cut on: views stage their state there, holding commits back.
        let started = Instant::now();
        let mut taken: Option<Result<(Arc<Writes>, u64)>> = None;
        let mut take = || {
            let mut s = self.staged.locked();
            if let Some(e) = &s.failed {
                taken = Some(Err(Error::Storage(e.clone())));
                return false;
            }
            if s.writes.is_empty() && !s.owes_image {
                return false;
            }
            s.bytes = 0;
            s.owes_image = false;
            let batch = Arc::new(std::mem::take(&mut s.writes));
            s.in_flight = Some(batch.clone());
            let generation = s.generation;
            s.generation += 1;
            taken = Some(Ok((batch, generation)));
            true
        };
        let due = match self.image_cut.get() {
            Some(cut) => cut.cut(&mut take, self.images.is_some()),
            None => {
                take();
                Vec::new()
            }
        };
        // Without images a table's staged rows are its only copy: none may be left out (a cut
        // must not list tables then; should one, its list is ignored).
        let due = if self.images.is_some() { due } else { Vec::new() };
        let Some(taken) = taken else { return Ok(0) };
        let (batch, generation) = taken?;
        let mut write = WriteBatch::default();
        let mut bytes = 0;
        let imaged: Vec<Vec<u8>> = due.iter().map(|(t, _)| keys::table_rows(t.id())).collect();
        let mut sorted: Vec<(&Vec<u8>, &Option<Vec<u8>>)> =
            batch.iter().filter(|(k, _)| !imaged.iter().any(|p| k.starts_with(p))).collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (k, v) in sorted {
            bytes += entry_bytes(k, v);
            match v {
                Some(v) => write.put(k.clone(), v.clone()),
                None => write.delete(k.clone()),
            }
        }
        let result = self.write_images(&due, &mut write).and_then(|files| {
            self.durable.apply(write)?;
            self.durable.flush()?;
            Ok(files)
        });
        let mut s = self.staged.locked();
        s.in_flight = None;
        let mut stats = self.stats.locked();
        match result {
            Ok(files) => {
                for old in files.iter().filter_map(|(_, old)| old.as_deref()) {
                    self.images.as_ref().expect("images were written").remove(old);
                }
                stats.images += files.len() as u64;
                stats.count += 1;
                stats.last_at = Some(SystemTime::now());
                stats.last_duration = started.elapsed();
                stats.last_keys = batch.len();
                stats.last_bytes = bytes;
                stats.total_keys += batch.len() as u64;
                stats.total_bytes += bytes as u64;
                drop(stats);
                drop(s);
                *self.durable_generation.locked() = generation;
                self.durable_changed.notify_all();
                Ok(batch.len())
            }
            Err(e) => {
                // Put the writes back under any newer value, so nothing staged is lost.
                let batch = Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone());
                for (k, v) in batch {
                    if !s.writes.contains_key(&k) {
                        s.bytes += entry_bytes(&k, &v);
                        s.writes.insert(k, v);
                    }
                }
                let message = format!("checkpoint failed, state after the previous checkpoint is kept: {e}");
                s.failed = Some(message.clone());
                stats.last_error = Some(message.clone());
                Err(Error::Storage(message))
            }
        }
    }

    /// Writes the image of each table in `due` (pinned at the cut of checkpoint `generation`)
    /// and puts into `write` what points the store at it: `i/<table>` set, the table's
    /// durable delta deleted (its staged rows are already left out). Returns each new image
    /// file with the one it replaces.
    fn write_images(
        &self,
        due: &[(Arc<TableState>, PinnedRows)],
        write: &mut WriteBatch,
    ) -> Result<Vec<(String, Option<String>)>> {
        let Some(images) = &self.images else { return Ok(Vec::new()) };
        let mut files = Vec::with_capacity(due.len());
        for (table, pinned) in due {
            let started = Instant::now();
            let old = self.durable.get(&keys::image(table.id()))?.map(|v| ImageRecord::decode(&v)).transpose()?;
            let seq = old.as_ref().map_or(1, |o| o.seq + 1);
            let record = table.write_image(pinned, images, seq)?;
            let delta = write.delete_prefix(self.durable.as_ref(), &keys::table_rows(table.id()))?;
            write.put(keys::image(table.id()), record.encode());
            tracing::debug!(table = table.name(), rows = record.entries, delta, elapsed = ?started.elapsed(), "table image written");
            let old = old.map(|o| o.file).filter(|f| *f != record.file);
            files.push((record.file, old));
        }
        Ok(files)
    }

    /// Makes checkpoints take their writes through `cut` (the engine, once it is open; it
    /// must not hold this store strongly), which stages views' state and finds the tables to
    /// image. Without it, or on a store without images, every row stays in the store.
    pub fn set_image_cut(&self, cut: Arc<dyn ImageCut>) {
        let _ = self.image_cut.set(cut);
    }

    /// Removes image files that no `i/` record names (a crash between writing an image and
    /// the checkpoint that would have used it; dropped tables), at start-up.
    pub fn remove_unused_images(&self) -> Result<()> {
        let Some(images) = &self.images else { return Ok(()) };
        let mut current = std::collections::HashSet::new();
        for (_, v) in self.scan_prefix(keys::IMAGES)? {
            current.insert(ImageRecord::decode(&v)?.file);
        }
        images.retain(&current)
    }

    /// The checkpoint counters, with the current staged size.
    pub fn stats(&self) -> CheckpointStats {
        let mut stats = self.stats.locked().clone();
        let s = self.staged.locked();
        stats.staged_keys = s.writes.len();
        stats.staged_bytes = s.bytes;
        stats
    }

    /// The error that stopped checkpoints, if one did.
    pub fn failure(&self) -> Option<String> {
        self.staged.locked().failed.clone()
    }

    /// Stages a batch and returns its generation: the number of the checkpoint that will make
    /// it durable ([`CheckpointedStore::wait_durable`]).
    pub fn apply_tracked(&self, batch: WriteBatch) -> Result<u64> {
        let mut s = self.staged.locked();
        if let Some(e) = &s.failed {
            return Err(Error::Storage(format!("{e}; no more writes are accepted, restart the server")));
        }
        s.owes_image |= batch.owes_image();
        for (k, v) in batch.into_ops() {
            s.bytes += entry_bytes(&k, &v);
            s.writes.insert(k, v);
        }
        Ok(s.generation)
    }

    /// The generation of the writes staged now (what [`CheckpointedStore::wait_durable`] must
    /// reach for everything applied so far to be on disk); 0 when nothing is staged or in flight.
    pub fn staged_generation(&self) -> u64 {
        let s = self.staged.locked();
        let staged = !s.writes.is_empty() || s.owes_image;
        // A checkpoint in flight holds the previous generation.
        if !staged && s.in_flight.is_none() {
            0
        } else if !staged {
            s.generation - 1
        } else {
            s.generation
        }
    }

    /// Waits up to `timeout` until every batch of generation `generation` or older is on disk;
    /// true when it is (sinks send only durable changes).
    pub fn wait_durable(&self, generation: u64, timeout: Duration) -> bool {
        let durable = self.durable_generation.locked();
        let (durable, _) = self
            .durable_changed
            .wait_timeout_while(durable, timeout, |d| *d < generation)
            .unwrap_or_else(|p| p.into_inner());
        *durable >= generation
    }

    /// Bytes staged but not yet on disk; writers that produce a lot (a snapshot) checkpoint
    /// when this grows large, which bounds memory.
    pub fn staged_bytes(&self) -> usize {
        self.staged.locked().bytes
    }

    /// True when a commit may leave a table's rows out of its batch because the next
    /// checkpoint writes an image of the table ([`WriteBatch::owe_image`]; see
    /// `TableState::write_planned`): images are kept and the engine gave its cut.
    pub fn defers_rows_to_images(&self) -> bool {
        // The same condition under which `checkpoint` cuts images; a failed store takes no
        // more commits anyway.
        self.images.is_some() && self.image_cut.get().is_some()
    }

    /// The table images of this store, when its data directory keeps them.
    pub fn images(&self) -> Option<&Images> {
        self.images.as_ref()
    }
}

impl StateStore for CheckpointedStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        {
            let s = self.staged.locked();
            if let Some(v) = s.writes.get(key) {
                return Ok(v.clone());
            }
            if let Some(v) = s.in_flight.as_ref().and_then(|b| b.get(key)) {
                return Ok(v.clone());
            }
        }
        self.durable.get(key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // Hold the staged lock across the durable read, so a checkpoint cannot move keys from
        // `in_flight` to the durable store in between.
        let s = self.staged.locked();
        let layers = || s.in_flight.iter().map(|b| b.as_ref()).chain(std::iter::once(&s.writes));
        // Nothing staged under the prefix (a table loading at startup): the store's rows, in
        // order, without merging them through a map.
        if !layers().any(|layer| layer.keys().any(|k| k.starts_with(prefix))) {
            return self.durable.scan_prefix(prefix);
        }
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            self.durable.scan_prefix(prefix)?.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for layer in layers() {
            for (k, v) in layer.iter().filter(|(k, _)| k.starts_with(prefix)) {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    fn scan_prefix_each(&self, prefix: &[u8], each: &mut super::store::ScanVisitor<'_>) -> Result<()> {
        let s = self.staged.locked();
        let staged_here = s
            .in_flight
            .iter()
            .map(|b| b.as_ref())
            .chain(std::iter::once(&s.writes))
            .any(|layer| layer.keys().any(|k| k.starts_with(prefix)));
        if !staged_here {
            // Under the staged lock, as in `scan_prefix`.
            return self.durable.scan_prefix_each(prefix, each);
        }
        drop(s);
        for (k, v) in self.scan_prefix(prefix)? {
            each(&k, &v)?;
        }
        Ok(())
    }

    fn apply(&self, batch: WriteBatch) -> Result<()> {
        self.apply_tracked(batch).map(|_| ())
    }

    fn flush(&self) -> Result<()> {
        self.checkpoint().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use proptest::prelude::*;

    use super::*;
    use crate::state::MemoryStore;

    /// A store whose writes fail on demand, atomically (all of a batch or nothing).
    #[derive(Default)]
    struct FaultyStore {
        inner: MemoryStore,
        fail: AtomicBool,
    }

    impl StateStore for FaultyStore {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            self.inner.scan_prefix(prefix)
        }
        fn apply(&self, batch: WriteBatch) -> Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(Error::Storage("injected I/O error: No space left on device".into()));
            }
            self.inner.apply(batch)
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Commit(Vec<(u8, Option<u8>)>),
        Checkpoint { fail: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec((0u8..16, proptest::option::of(any::<u8>())), 1..6).prop_map(Op::Commit),
            1 => any::<bool>().prop_map(|f| Op::Checkpoint { fail: f }),
        ]
    }

    fn all(store: &dyn StateStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
        store.scan_prefix(b"").unwrap().into_iter().collect()
    }

    proptest! {
        /// Against a model: reads always see every staged commit; the durable store always
        /// equals the model as of the last successful checkpoint, whole commits only; a failed
        /// checkpoint loses nothing and refuses later writes.
        #[test]
        fn checkpoints_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
            let durable = Arc::new(FaultyStore::default());
            let store = CheckpointedStore::new(durable.clone());
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut checkpointed = model.clone();
            let mut failed = false;
            for op in ops {
                match op {
                    Op::Commit(writes) => {
                        let mut b = WriteBatch::default();
                        let mut next = model.clone();
                        for (k, v) in writes {
                            match v {
                                Some(v) => { b.put(vec![k], vec![v]); next.insert(vec![k], vec![v]); }
                                None => { b.delete(vec![k]); next.remove(&vec![k]); }
                            }
                        }
                        let r = store.apply(b);
                        prop_assert_eq!(r.is_ok(), !failed);
                        if !failed { model = next; }
                    }
                    Op::Checkpoint { fail } => {
                        durable.fail.store(fail, Ordering::SeqCst);
                        let r = store.checkpoint();
                        if failed || fail {
                            prop_assert!(r.is_err() || (r.as_ref().ok() == Some(&0) && !failed));
                            if r.is_err() { failed = true; }
                        } else {
                            prop_assert!(r.is_ok());
                            checkpointed = model.clone();
                        }
                    }
                }
                prop_assert_eq!(&all(&store), &model);
                prop_assert_eq!(&all(durable.as_ref()), &checkpointed);
                for k in 0u8..16 {
                    prop_assert_eq!(store.get(&[k]).unwrap(), model.get(&vec![k]).cloned());
                }
            }
        }
    }

    #[test]
    fn checkpoint_writes_each_key_once() {
        let durable = Arc::new(MemoryStore::default());
        let store = CheckpointedStore::new(durable.clone());
        for i in 0..100u8 {
            let mut b = WriteBatch::default();
            b.put(b"hot".to_vec(), vec![i]);
            store.apply(b).unwrap();
        }
        assert_eq!(store.checkpoint().unwrap(), 1);
        assert_eq!(durable.get(b"hot").unwrap(), Some(vec![99]));
        assert_eq!(store.checkpoint().unwrap(), 0);
        let stats = store.stats();
        assert_eq!((stats.count, stats.last_keys, stats.staged_keys), (1, 1, 0));
    }
}
