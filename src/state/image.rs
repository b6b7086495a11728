//! Table images: a durable table's rows as of one checkpoint, in one file, so that a restart
//! reads them sequentially and the store keeps only what changed since.
//!
//! Without images every row of every table lives in the store (`r/<table><key>`), and a
//! restart scans them all through the store's iterators (~0.5 µs a row in fjall). With
//! images, a table is *image + delta*:
//!
//! ```text
//! <data-dir>/images/<table id>-<image no>.img     every row as of one checkpoint
//! i/<table id>                                    which image is current (JSON ImageRecord)
//! r/<table id><key>                               rows changed since the image; a count of 0
//!                                                 is a tombstone (the image holds the key)
//! ```
//!
//! A checkpoint writes an image of a table when the table's delta has grown to a quarter of
//! the table (and at least [`min_changes`] rows): the checkpoint pins the table at the very
//! point it takes its staged writes ([`ImageCut`](super::checkpoint::ImageCut)), writes the
//! image file (fsynced, then renamed into place), and its one atomic store batch points
//! `i/<table>` at the file and deletes the table's delta instead of writing it. A crash before
//! the batch leaves an unreferenced file (removed at the next start); after it, the previous
//! image is removed. So each changed row costs about four sequential row writes of images,
//! amortised, and a restart reads each row once from an image plus at most a quarter of the
//! table from the store.
//!
//! File layout (integers little-endian): magic, table id (u64), flags (u8: 1 = multiset, the
//! row is the key), entry count (u64), then per entry in key order: key length (u32), key,
//! row length (u32) and row unless a multiset, count (i64); then a CRC-32 of everything before.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::index::EntryRef;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"HWIMAGE1";
const EXTENSION: &str = "img";
/// Bytes before the first entry: the magic, the table id, the multiset flag, the entry count.
const HEADER: usize = 8 + 8 + 1 + 8;

/// Which image holds a table's rows (the value of `i/<table id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// File name under the images directory.
    pub file: String,
    /// Entries (distinct keys) in the file.
    pub entries: u64,
    /// The table's image number (1, 2, ...; in the file name, so a new image never has the
    /// name of the one it replaces, across restarts too).
    pub seq: u64,
}

impl ImageRecord {
    /// The record as stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serializable")
    }

    /// A stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::Storage(format!("a table image record is damaged: {e}")))
    }
}

/// The fewest changed rows since a table's last image that make a checkpoint write a new one
/// (`HEADWATER_IMAGE_MIN_CHANGES`, default 16384: small tables stay in the store alone until
/// they have changed that much; the crash tests lower it to image often).
pub fn min_changes() -> usize {
    use std::sync::atomic::Ordering;
    match MIN_CHANGES.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("HEADWATER_IMAGE_MIN_CHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(16384);
            let n = n.max(1);
            MIN_CHANGES.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// [`min_changes`], once read (0: not yet).
static MIN_CHANGES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Lowers the image threshold for this process's tests.
#[cfg(test)]
pub fn set_min_changes_for_tests(n: usize) {
    MIN_CHANGES.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// True when a table of `rows` rows with `changed` rows changed since its image (or since it
/// was created) should get a new image: its delta is a quarter of it.
pub fn due(rows: usize, changed: usize) -> bool {
    changed >= min_changes().max(rows / 4)
}

/// The directory of image files.
#[derive(Debug)]
pub struct Images {
    dir: PathBuf,
}

/// Collects what is written into blocks, each checksummed and written to `file` once.
struct Checksummed {
    file: File,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl Checksummed {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= BLOCK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.crc.update(&self.buf);
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// An image's data read in large blocks, each checksummed once: entries are parsed in place.
struct Blocks {
    buf: Vec<u8>,
    /// The unparsed bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// Data bytes of the file (before its checksum) not read yet.
    left: u64,
    crc: crc32fast::Hasher,
}

/// Bytes read from an image at a time.
const BLOCK: usize = 1 << 20;

impl Blocks {
    /// The next `n` unparsed bytes (reading more of `file` if needed), not consumed.
    fn need(&mut self, file: &mut File, n: usize) -> std::io::Result<&[u8]> {
        if self.end - self.pos < n {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            let want = (n - self.end).max(BLOCK).min(usize::try_from(self.left).unwrap_or(usize::MAX));
            if self.buf.len() < self.end + want {
                self.buf.resize(self.end + want, 0);
            }
            file.read_exact(&mut self.buf[self.end..self.end + want])?;
            self.crc.update(&self.buf[self.end..self.end + want]);
            self.end += want;
            self.left -= want as u64;
            if self.end < n {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(&self.buf[self.pos..self.pos + n])
    }
}

impl Images {
    /// The images under `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Storage(format!("cannot create the images directory {}: {e}", dir.display())))?;
        Ok(Images { dir: dir.to_path_buf() })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes image number `seq` of table `table`: `len` entries in key order. Durable when
    /// this returns (the file and its directory entry are fsynced).
    pub fn write<'a>(
        &self,
        table: u64,
        seq: u64,
        multiset: bool,
        len: usize,
        entries: impl Iterator<Item = (&'a [u8], EntryRef<'a>)>,
    ) -> Result<ImageRecord> {
        let file = format!("{table:016x}-{seq:016x}.{EXTENSION}");
        let path = self.path(&file);
        let tmp = path.with_extension("tmp");
        let io = |e: std::io::Error| Error::Storage(format!("cannot write the table image {}: {e}", tmp.display()));
        let out = File::create(&tmp).map_err(io)?;
        let mut w = Checksummed { file: out, buf: Vec::with_capacity(BLOCK + 4096), crc: crc32fast::Hasher::new() };
        w.put(MAGIC).map_err(io)?;
        w.put(&table.to_le_bytes()).map_err(io)?;
        w.put(&[u8::from(multiset)]).map_err(io)?;
        w.put(&(len as u64).to_le_bytes()).map_err(io)?;
        let mut written = 0u64;
        for (key, entry) in entries {
            w.put(&(key.len() as u32).to_le_bytes()).map_err(io)?;
            w.put(key).map_err(io)?;
            if !multiset {
                w.put(&(entry.row.len() as u32).to_le_bytes()).map_err(io)?;
                w.put(entry.row).map_err(io)?;
            }
            w.put(&entry.count.to_le_bytes()).map_err(io)?;
            written += 1;
        }
        if written != len as u64 {
            return Err(Error::Internal(format!("table image of {table}: {written} entries, expected {len}")));
        }
        w.flush().map_err(io)?;
        let Checksummed { file: mut out, crc, .. } = w;
        out.write_all(&crc.finalize().to_le_bytes()).map_err(io)?;
        out.sync_all().map_err(io)?;
        drop(out);
        std::fs::rename(&tmp, &path).map_err(io)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(ImageRecord { file, entries: written, seq })
    }

    /// The bytes of the keys and rows of image `record` together (each entry's lengths and
    /// count, the header and the checksum left out), from the file's size: what a load
    /// reserves up front ([`super::index::IndexBuilder::expect`]). `None` when the file
    /// cannot be read (the read that follows says why).
    pub fn payload_bytes(&self, record: &ImageRecord, multiset: bool) -> Option<usize> {
        let len = std::fs::metadata(self.path(&record.file)).ok()?.len() as usize;
        let per_entry = if multiset { 4 + 8 } else { 4 + 4 + 8 };
        len.checked_sub(4 + HEADER + per_entry * record.entries as usize)
    }

    /// Calls `each` with every entry of the image `record` of table `table`, in key order, and
    /// checks the file's checksum at its end (an error then: nothing read may be used).
    /// `each` may stop the read with an error, which is returned.
    pub fn read(
        &self,
        table: u64,
        record: &ImageRecord,
        each: &mut dyn FnMut(&[u8], EntryRef<'_>) -> Result<()>,
    ) -> Result<()> {
        let path = self.path(&record.file);
        let damaged = |what: String| {
            Error::Storage(format!(
                "the table image {} is damaged or missing ({what}). Restore the data directory from a backup, \
                 or move it away to start empty (docs/operations.md)",
                path.display()
            ))
        };
        let io = |e: std::io::Error| damaged(e.to_string());
        let mut file = File::open(&path).map_err(io)?;
        let data = file.metadata().map_err(io)?.len().checked_sub(4).ok_or_else(|| damaged("truncated".into()))?;
        let mut r = Blocks { buf: Vec::new(), pos: 0, end: 0, left: data, crc: crc32fast::Hasher::new() };
        let header = r.need(&mut file, HEADER).map_err(io)?;
        if &header[..8] != MAGIC {
            return Err(damaged("not an image file".into()));
        }
        let id = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let multiset = header[16] == 1;
        let len = u64::from_le_bytes(header[17..25].try_into().expect("8 bytes"));
        r.pos += HEADER;
        if id != table || len != record.entries {
            return Err(damaged(format!("it holds {len} rows of table {id}, expected {} of {table}", record.entries)));
        }
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize;
        for _ in 0..len {
            let key_len = u32_at(r.need(&mut file, 4).map_err(io)?, 0);
            let mut size = 4 + key_len;
            let row_len = match multiset {
                true => 0,
                false => u32_at(r.need(&mut file, size + 4).map_err(io)?, size),
            };
            if !multiset {
                size += 4 + row_len;
            }
            let entry = r.need(&mut file, size + 8).map_err(io)?;
            let key = &entry[4..4 + key_len];
            let row = if multiset { key } else { &entry[size - row_len..size] };
            let count = i64::from_le_bytes(entry[size..size + 8].try_into().expect("8 bytes"));
            each(key, EntryRef { row, count })?;
            r.pos += size + 8;
        }
        if r.pos != r.end || r.left != 0 {
            return Err(damaged("bytes after the last row".into()));
        }
        let expected = r.crc.finalize();
        let mut stored = [0u8; 4];
        file.read_exact(&mut stored).map_err(io)?;
        if u32::from_le_bytes(stored) != expected {
            return Err(damaged("checksum mismatch".into()));
        }
        Ok(())
    }

    /// Removes an image that is no longer current (best effort: a leftover is removed at the
    /// next start by [`Images::retain`]).
    pub fn remove(&self, file: &str) {
        if let Err(e) = std::fs::remove_file(self.path(file)) {
            tracing::warn!(file, error = %e, "cannot remove an old table image");
        }
    }

    /// Removes every image file not in `current` (leftovers of a crash mid-checkpoint and of
    /// dropped tables), at start-up.
    pub fn retain(&self, current: &HashSet<String>) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::Storage(format!("cannot list {}: {e}", self.dir.display())))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(&format!(".{EXTENSION}")) || name.ends_with(".tmp");
            if ours && !current.contains(&name) {
                tracing::info!(file = %name, "removing a table image no table uses");
                self.remove(&name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key, row, count.
    type Entries = Vec<(Vec<u8>, Vec<u8>, i64)>;

    fn entries() -> Entries {
        (0..1000u32).map(|i| (i.to_be_bytes().to_vec(), format!("row {i}").into_bytes(), 1 + (i % 3) as i64)).collect()
    }

    fn read_all(images: &Images, table: u64, record: &ImageRecord) -> Result<Entries> {
        let mut got = Vec::new();
        images.read(table, record, &mut |k, e| {
            got.push((k.to_vec(), e.row.to_vec(), e.count));
            Ok(())
        })?;
        Ok(got)
    }

    #[test]
    fn an_image_reads_back_what_was_written_and_refuses_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let images = Images::open(&tmp.path().join("images")).unwrap();
        let all = entries();
        let it = all.iter().map(|(k, r, c)| (&k[..], EntryRef { row: r, count: *c }));
        let record = images.write(7, 3, false, all.len(), it).unwrap();
        assert_eq!(read_all(&images, 7, &record).unwrap(), all);
        assert!(read_all(&images, 8, &record).is_err(), "another table's image");

        // A multiset's rows are its keys: stored once.
        let keys: Vec<_> = all.iter().map(|(k, _, c)| (k.clone(), k.clone(), *c)).collect();
        let it = keys.iter().map(|(k, _, c)| (&k[..], EntryRef { row: k, count: *c }));
        let set = images.write(9, 3, true, keys.len(), it).unwrap();
        assert_eq!(read_all(&images, 9, &set).unwrap(), keys);

        // One flipped byte anywhere is found.
        let path = images.path(&record.file);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_all(&images, 7, &record).unwrap_err().to_string();
        assert!(err.contains("damaged") && err.contains("backup"), "{err}");
        std::fs::write(&path, &bytes[..middle]).unwrap();
        assert!(read_all(&images, 7, &record).is_err(), "a truncated image");

        // Leftovers go, the current image stays.
        std::fs::write(images.path("0000000000000007-0000000000000001.tmp"), b"half").unwrap();
        images.retain(&HashSet::from([set.file.clone()])).unwrap();
        let left: Vec<String> = std::fs::read_dir(&images.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![set.file]);
    }
}

/// A table's rows through checkpoints, images and restarts, against a model.
#[cfg(test)]
mod restart_tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::arrow::record_batch::RecordBatch;
    use proptest::prelude::*;

    use crate::change::{ApplyMode, ChangeBatch};
    use crate::state::checkpoint::ImageCut;
    use crate::state::table::{commit, PinnedRows, TableState};
    use crate::state::{CheckpointedStore, StateStore};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false), Field::new("name", DataType::Utf8, true)]))
    }

    /// Every table, every checkpoint: single-threaded, so any point is a cut.
    struct All(Vec<Arc<TableState>>);

    impl ImageCut for All {
        fn cut(&self, take: &mut dyn FnMut() -> bool, _images: bool) -> Vec<(Arc<TableState>, PinnedRows)> {
            if !take() {
                return Vec::new();
            }
            let due = self.0.iter().filter(|t| t.image_due());
            due.map(|t| {
                t.mark_imaged();
                (t.clone(), t.pin())
            })
            .collect()
        }
    }

    struct Open {
        store: Arc<CheckpointedStore>,
        keyed: Arc<TableState>,
        multiset: Arc<TableState>,
    }

    fn open(dir: &std::path::Path) -> Open {
        let store = Arc::new(CheckpointedStore::open(dir).unwrap());
        let keyed = Arc::new(TableState::new(1, "keyed", schema(), Some(vec![0])).unwrap());
        let multiset = Arc::new(TableState::new(2, "multiset", schema(), None).unwrap());
        keyed.load(store.as_ref()).unwrap();
        multiset.load(store.as_ref()).unwrap();
        store.remove_unused_images().unwrap();
        let cut: Arc<dyn ImageCut> = Arc::new(All(vec![keyed.clone(), multiset.clone()]));
        store.set_image_cut(cut);
        Open { store, keyed, multiset }
    }

    type Model = BTreeMap<(i32, String), i64>;

    fn rows(t: &TableState) -> Model {
        let batch = t.snapshot().unwrap();
        let ids = batch.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
        let names = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let mut out = Model::new();
        for i in 0..batch.num_rows() {
            *out.entry((ids.value(i), names.value(i).to_string())).or_default() += 1;
        }
        out
    }

    fn change(rows: &[(i32, String, i64)]) -> ChangeBatch {
        let ids: Vec<i32> = rows.iter().map(|r| r.0).collect();
        let names: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let data =
            RecordBatch::try_new(schema(), vec![Arc::new(Int32Array::from(ids)), Arc::new(StringArray::from(names))])
                .unwrap();
        ChangeBatch { data, weights: rows.iter().map(|r| r.2).collect(), mode: ApplyMode::Delta }
    }

    /// Rows `(i, "r<i>")` for `i` in `keys`, each with weight `w`.
    fn named(keys: std::ops::Range<i32>, w: i64) -> Vec<(i32, String, i64)> {
        keys.map(|i| (i, format!("r{i}"), w)).collect()
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Keys 0..n set to a value (None: deleted), in both tables.
        Commit(Vec<(i32, Option<u8>)>),
        Checkpoint,
        /// Stop without a checkpoint (what `kill -9` leaves), open again.
        Crash,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => proptest::collection::vec((0i32..120, proptest::option::of(0u8..4)), 1..40).prop_map(Op::Commit),
            3 => Just(Op::Checkpoint),
            1 => Just(Op::Crash),
        ]
    }

    /// The life of one table's images: the first checkpoint of enough rows writes one and
    /// leaves no row in the store; deletions after it are tombstones; a restart reads image +
    /// delta; enough change writes the next image and removes the old file.
    #[test]
    fn images_replace_the_stored_rows_and_each_other() {
        super::set_min_changes_for_tests(8);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let db = open(&dir);
        let inserts = named(0..100, 1);
        commit(db.store.as_ref(), &[(&db.keyed, &change(&inserts))]).unwrap();
        db.store.checkpoint().unwrap();
        let stored = |db: &Open| db.store.scan_prefix(&crate::state::keys::table_rows(1)).unwrap();
        let record = |db: &Open| {
            super::ImageRecord::decode(&db.store.get(&crate::state::keys::image(1)).unwrap().unwrap()).unwrap()
        };
        assert_eq!(stored(&db).len(), 0, "the image holds the rows, the store none");
        let first = record(&db);
        assert_eq!(first.entries, 100);

        // Fewer changes than a quarter of the table: the delta, with tombstones.
        let deletes = named(0..10, -1);
        commit(db.store.as_ref(), &[(&db.keyed, &change(&deletes))]).unwrap();
        db.store.checkpoint().unwrap();
        let delta = stored(&db);
        assert_eq!(delta.len(), 10);
        assert!(delta.iter().all(|(_, v)| v[..] == super::super::table::tests_tombstone()));
        assert_eq!(record(&db), first);
        let expect = rows(&db.keyed);
        assert_eq!(expect.len(), 90);
        drop(db);

        let db = open(&dir);
        assert_eq!(rows(&db.keyed), expect, "image + delta");
        // A quarter of the table changed: a new image, the delta gone, the old file removed.
        let updates: Vec<(i32, String, i64)> =
            (10..40).flat_map(|i| [(i, format!("r{i}"), -1), (i, format!("s{i}"), 1)]).collect();
        commit(db.store.as_ref(), &[(&db.keyed, &change(&updates))]).unwrap();
        db.store.checkpoint().unwrap();
        let second = record(&db);
        assert_ne!(second.file, first.file);
        assert_eq!((second.entries, stored(&db).len()), (90, 0));
        let files: Vec<String> = std::fs::read_dir(dir.join("images"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, vec![second.file.clone()]);
        let expect = rows(&db.keyed);
        drop(db);
        assert_eq!(rows(&open(&dir).keyed), expect);
    }

    /// A commit that makes its table's image due stages none of its rows (the image will hold
    /// them): the checkpoint runs all the same and writes the image; a crash before it loses
    /// nothing that was claimed durable; a checkpoint that cannot write the image fails the
    /// store, so no later commit or checkpoint can claim those rows.
    #[test]
    fn rows_an_image_will_hold_are_not_staged() {
        super::set_min_changes_for_tests(8);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let db = open(&dir);
        assert!(db.store.defers_rows_to_images());
        let inserts = named(0..100, 1);
        commit(db.store.as_ref(), &[(&db.keyed, &change(&inserts))]).unwrap();
        assert_eq!(db.store.stats().staged_keys, 0, "no row staged");
        assert!(db.store.staged_generation() > 0, "but a checkpoint is owed");
        // A crash now: nothing was durable, nothing comes back.
        drop(db);
        let db = open(&dir);
        assert!(rows(&db.keyed).is_empty());
        commit(db.store.as_ref(), &[(&db.keyed, &change(&inserts))]).unwrap();
        let expect = rows(&db.keyed);
        db.store.checkpoint().unwrap();
        assert_eq!(db.store.stats().images, 1);
        drop(db);
        let db = open(&dir);
        assert_eq!(rows(&db.keyed), expect, "the image holds the rows");

        // The image cannot be written: the checkpoint fails and the store takes nothing more.
        let more = named(100..200, 1);
        commit(db.store.as_ref(), &[(&db.keyed, &change(&more))]).unwrap();
        std::fs::remove_dir_all(dir.join("images")).unwrap();
        assert!(db.store.checkpoint().is_err());
        let later: Vec<(i32, String, i64)> = vec![(500, "x".into(), 1)];
        assert!(commit(db.store.as_ref(), &[(&db.keyed, &change(&later))]).is_err());
        assert!(db.store.checkpoint().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// After any sequence of commits, checkpoints (several of which write images: the
        /// threshold is 8 changed rows here) and crashes, both tables hold exactly what the
        /// model held at the last checkpoint, and only the current images are on disk.
        #[test]
        fn restarts_equal_the_model_at_the_last_checkpoint(ops in proptest::collection::vec(op(), 1..30)) {
            super::set_min_changes_for_tests(8);
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("data");
            let mut db = open(&dir);
            let mut keyed: BTreeMap<i32, String> = BTreeMap::new();
            let mut multiset = Model::new();
            let (mut durable_keyed, mut durable_multiset) = (Model::new(), Model::new());
            let model_of = |m: &BTreeMap<i32, String>| -> Model { m.iter().map(|(k, v)| ((*k, v.clone()), 1)).collect() };
            for op in ops {
                match op {
                    Op::Commit(sets) => {
                        let mut next = keyed.clone();
                        let mut next_multiset = multiset.clone();
                        for (k, v) in &sets {
                            match v {
                                Some(v) => { next.insert(*k, format!("v{v}")); }
                                None => { next.remove(k); }
                            }
                            // The multiset gains a copy of (k, v), or loses one of (k, any).
                            match v {
                                Some(v) => *next_multiset.entry((*k, format!("v{v}"))).or_default() += 1,
                                None => {
                                    if let Some(row) = next_multiset.keys().find(|r| r.0 == *k).cloned() {
                                        let n = next_multiset.get_mut(&row).unwrap();
                                        *n -= 1;
                                        if *n == 0 { next_multiset.remove(&row); }
                                    }
                                }
                            }
                        }
                        let mut keyed_change = Vec::new();
                        for k in next.keys().chain(keyed.keys()).collect::<std::collections::BTreeSet<_>>() {
                            match (keyed.get(k), next.get(k)) {
                                (Some(a), Some(b)) if a == b => {}
                                (a, b) => {
                                    if let Some(a) = a { keyed_change.push((*k, a.clone(), -1)); }
                                    if let Some(b) = b { keyed_change.push((*k, b.clone(), 1)); }
                                }
                            }
                        }
                        let mut multiset_change = Vec::new();
                        for row in next_multiset.keys().chain(multiset.keys()).collect::<std::collections::BTreeSet<_>>() {
                            let d = next_multiset.get(row).copied().unwrap_or(0) - multiset.get(row).copied().unwrap_or(0);
                            if d != 0 { multiset_change.push((row.0, row.1.clone(), d)); }
                        }
                        let (a, b) = (change(&keyed_change), change(&multiset_change));
                        commit(db.store.as_ref(), &[(&db.keyed, &a), (&db.multiset, &b)]).unwrap();
                        keyed = next;
                        multiset = next_multiset;
                    }
                    Op::Checkpoint => {
                        db.store.checkpoint().unwrap();
                        durable_keyed = model_of(&keyed);
                        durable_multiset = multiset.clone();
                    }
                    Op::Crash => {
                        drop(db);
                        db = open(&dir);
                        prop_assert_eq!(rows(&db.keyed), durable_keyed.clone());
                        prop_assert_eq!(rows(&db.multiset), durable_multiset.clone());
                        keyed = durable_keyed.keys().map(|(k, v)| (*k, v.clone())).collect();
                        multiset = durable_multiset.clone();
                        let files = std::fs::read_dir(dir.join("images")).unwrap().count();
                        let records = db.store.scan_prefix(crate::state::keys::IMAGES).unwrap().len();
                        prop_assert_eq!(files, records, "only current images stay");
                    }
                }
                prop_assert_eq!(rows(&db.keyed), model_of(&keyed));
                prop_assert_eq!(rows(&db.multiset), multiset.clone());
            }
        }
    }
}
