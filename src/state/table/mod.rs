//! The rows of one table, keyed, weighted, and durable through the [`StateStore`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, Scalar};
use datafusion::arrow::compute::is_not_null;
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::scalar::ScalarValue;

use super::checkpoint::CheckpointedStore;
use super::image::{self, ImageRecord, Images};
use super::index::{Entry, EntryRef, RowIndex};
use super::keys;
use super::store::{StateStore, WriteBatch};
use crate::change::{ApplyMode, ChangeBatch, FastMap};
use crate::error::{Error, Result, ViewErrors};
use crate::sync::{Unpoisoned, UnpoisonedRw};

mod entry;
mod plan;
mod widen;

#[cfg(test)]
pub(crate) use entry::tests_tombstone;
pub use entry::zero_null_slots;
use entry::{encode_entry, push_stored, to_batch, TOMBSTONE};
pub use plan::Planned;
pub use widen::Widening;

/// How the rows of a table are encoded: its Arrow schema and the row format over all its
/// columns. It changes only when a captured table gains columns upstream
/// ([`TableState::plan_widen`]), so it lives with the rows, under the same lock, and every
/// [`PinnedRows`] decodes with the layout its rows were written in.
struct Layout {
    schema: SchemaRef,
    row_format: RowConverter,
}

impl Layout {
    fn new(schema: SchemaRef) -> Result<Arc<Self>> {
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        let row_format = converter(&schema, &all)?;
        Ok(Arc::new(Layout { schema, row_format }))
    }

    /// Decodes stored rows into a batch of this layout's schema.
    fn decode<'a>(&self, rows: impl Iterator<Item = &'a [u8]>) -> Result<RecordBatch> {
        let parser = self.row_format.parser();
        let parsed: Vec<_> = rows.map(|r| parser.parse(r)).collect();
        if parsed.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let columns = zero_null_slots(self.row_format.convert_rows(parsed)?)?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Row key → entry ([`RowIndex`]). The key is the primary key in Arrow row format for keyed
/// tables, the whole row for multisets; both formats sort like the values they encode.
struct Rows {
    index: RowIndex,
    /// Bumped by every commit; tags the cached snapshot.
    version: u64,
    layout: Arc<Layout>,
    /// Rows a bulk load in key order announced ([`TableState::expect_rows`]): the first
    /// commit that appends to the empty table sizes its buffers for them.
    expected: usize,
    /// For a materialized view's result: the errors a read reports instead of the rows
    /// ([`TableState::set_errors`]).
    errors: Option<Arc<ViewErrors>>,
}

/// The version of rows only one transaction sees ([`TableState::apply_to_pinned`]): commits
/// never reach it, so such rows are never taken for a cached snapshot.
const PRIVATE_VERSION: u64 = u64::MAX;

/// The rows of a table as of one commit: an O(1) clone of its index that later commits do not
/// change. Queries pin every table they read at once (see `dataflow::Dataflow::pin`), which
/// gives them one consistent point across tables and views.
#[derive(Clone)]
pub struct PinnedRows {
    index: RowIndex,
    version: u64,
    layout: Arc<Layout>,
    errors: Option<Arc<ViewErrors>>,
}

impl PinnedRows {
    /// The errors of a materialized view's result as of the pin: a read must report them
    /// rather than return its rows ([`Error::ViewErrored`]).
    pub fn readable(&self) -> Result<()> {
        match &self.errors {
            Some(e) => Err(Error::ViewErrored(e.clone())),
            None => Ok(()),
        }
    }

    /// Number of distinct stored rows (keys).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the table was empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The schema of the pinned rows.
    pub fn schema(&self) -> SchemaRef {
        self.layout.schema.clone()
    }

    /// The stored row under `key` (the primary key in Arrow row format, as
    /// a [`RowConverter`] over the key columns with default sort options encodes it).
    pub fn get(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.index.get(key)
    }

    /// `columns` of stored rows (as [`PinnedRows::get`] returns them), decoded.
    pub fn decode_columns(&self, rows: &[&[u8]], columns: &[usize]) -> Result<Vec<ArrayRef>> {
        let batch = self.layout.decode(rows.iter().copied())?;
        Ok(columns.iter().map(|&c| batch.column(c).clone()).collect())
    }
}

/// A table's rows in memory, mirrored in the store.
///
/// Keyed tables (with a primary key) hold at most one row per key; tables without a primary
/// key are multisets (row → count). Writes go through the dataflow's one commit path (plan, write, apply); reads through
/// [`TableState::snapshot`].
pub struct TableState {
    id: u64,
    name: String,
    key_columns: Option<Vec<usize>>,
    key_format: Option<RowConverter>,
    /// Shared with a background merge of the table's index ([`TableState::compact`]).
    rows: Arc<RwLock<Rows>>,
    snapshot: Mutex<Option<(u64, RecordBatch)>>,
    /// The table's rows are an image plus what changed since ([`super::image`]): a deleted
    /// key is stored as a tombstone. Changed only under the dataflow's commit lock.
    has_image: AtomicBool,
    /// Keys written to the store since the last image (or since the table was created):
    /// what a restart reads besides the image, and what makes the next image due.
    changed_since_image: AtomicUsize,
    /// A commit left this table's rows out of the store for the next checkpoint's image
    /// ([`TableState::write_planned`]): that image is due whatever the counts say.
    owes_image: AtomicBool,
    /// Set by DROP before its batch is staged: no image is written for the table after it.
    dropped: AtomicBool,
}

impl std::fmt::Debug for TableState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableState").field("id", &self.id).field("name", &self.name).finish()
    }
}

fn converter(schema: &SchemaRef, columns: &[usize]) -> Result<RowConverter> {
    let fields = columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
    Ok(RowConverter::new(fields)?)
}

impl TableState {
    /// An empty table. `key_columns` are the primary key's column indexes, or `None` for a
    /// multiset table.
    pub fn new(id: u64, name: &str, schema: SchemaRef, key_columns: Option<Vec<usize>>) -> Result<Self> {
        let key_format = match &key_columns {
            Some(k) => Some(converter(&schema, k)?),
            None => None,
        };
        let layout = Layout::new(schema)?;
        let multiset = key_columns.is_none();
        Ok(TableState {
            id,
            name: name.to_string(),
            key_columns,
            key_format,
            rows: Arc::new(RwLock::new(Rows {
                index: RowIndex::new(multiset),
                version: 0,
                layout,
                expected: 0,
                errors: None,
            })),
            snapshot: Mutex::new(None),
            has_image: AtomicBool::new(false),
            changed_since_image: AtomicUsize::new(0),
            owes_image: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
        })
    }

    /// True when the table's primary key (or, for multisets, the whole row) orders the rows:
    /// the columns a lookup can bind, in order.
    pub fn order_columns(&self) -> Vec<usize> {
        match &self.key_columns {
            Some(k) => k.clone(),
            None => (0..self.schema().fields().len()).collect(),
        }
    }

    /// Loads the rows of this table from the store (at start-up), replacing what it held: its
    /// image, if it has one, merged with the rows changed since (tombstones drop a key).
    pub fn load(&self, store: &CheckpointedStore) -> Result<()> {
        let prefix = keys::table_rows(self.id);
        let mut builder = RowIndex::builder(self.is_multiset());
        let record = store.get(&keys::image(self.id))?.map(|v| ImageRecord::decode(&v)).transpose()?;
        let mut changed = 0;
        match record {
            None => store.scan_prefix_each(&prefix, &mut |k, v| {
                changed += 1;
                push_stored(&mut builder, &k[prefix.len()..], v)
            })?,
            Some(record) => {
                let images = store.images().ok_or_else(|| {
                    Error::Storage(format!(
                        "table {} has an image ({}) but the data directory keeps none",
                        self.name, record.file
                    ))
                })?;
                let delta = store.scan_prefix(&prefix)?;
                changed = delta.len();
                if let Some(payload) = images.payload_bytes(&record, self.is_multiset()) {
                    let stored: usize = delta.iter().map(|(k, v)| k.len() - prefix.len() + v.len()).sum();
                    builder.expect(record.entries as usize + delta.len(), payload + stored);
                }
                let mut delta = delta.iter().map(|(k, v)| (&k[prefix.len()..], v)).peekable();
                images.read(self.id, &record, &mut |key, entry| {
                    while let Some((k, v)) = delta.next_if(|(k, _)| *k < key) {
                        push_stored(&mut builder, k, v)?;
                    }
                    match delta.next_if(|(k, _)| *k == key) {
                        Some((k, v)) => push_stored(&mut builder, k, v),
                        None => {
                            builder.push(key, entry);
                            Ok(())
                        }
                    }
                })?;
                for (k, v) in delta {
                    push_stored(&mut builder, k, v)?;
                }
                self.has_image.store(true, Ordering::SeqCst);
            }
        }
        self.changed_since_image.store(changed, Ordering::SeqCst);
        let index = builder.finish();
        let mut rows = self.write_rows();
        rows.index = index;
        rows.version += 1;
        Ok(())
    }

    /// The catalog id of the table (also its key prefix in the store).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Arrow schema of every row and change batch of this table.
    pub fn schema(&self) -> SchemaRef {
        self.read_rows().layout.schema.clone()
    }

    /// Number of rows, counting duplicates.
    pub fn row_count(&self) -> i64 {
        let rows = self.read_rows();
        match self.is_multiset() {
            true => rows.index.iter().map(|(_, e)| e.count).sum(),
            false => rows.index.len() as i64,
        }
    }

    /// The current rows, frozen (see [`PinnedRows`]).
    pub fn pin(&self) -> PinnedRows {
        let rows = self.read_rows();
        PinnedRows {
            index: rows.index.pinned(),
            version: rows.version,
            layout: rows.layout.clone(),
            errors: rows.errors.clone(),
        }
    }

    /// All rows as one batch, consistent as of the last commit. Cached until the next write.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        self.snapshot_of(&self.pin())
    }

    /// All rows of `pinned` as one batch; cached per version, so repeated scans of an
    /// unchanged table cost nothing (a transaction's own rows are never cached).
    pub fn snapshot_of(&self, pinned: &PinnedRows) -> Result<RecordBatch> {
        if pinned.version == PRIVATE_VERSION {
            return to_batch(&pinned.layout, pinned.index.iter().map(|(_, e)| e));
        }
        {
            let cache = self.snapshot.locked();
            if let Some((version, batch)) = cache.as_ref() {
                if *version == pinned.version {
                    return Ok(batch.clone());
                }
            }
        }
        let batch = to_batch(&pinned.layout, pinned.index.iter().map(|(_, e)| e))?;
        let mut cache = self.snapshot.locked();
        if cache.as_ref().is_none_or(|(v, _)| *v < pinned.version) {
            *cache = Some((pinned.version, batch.clone()));
        }
        Ok(batch)
    }

    /// The rows of `pinned` whose first [`TableState::order_columns`] equal `values` (a point
    /// or prefix lookup: a range of the ordered map, no scan).
    pub fn lookup(&self, pinned: &PinnedRows, values: &[ArrayRef]) -> Result<RecordBatch> {
        let columns = self.order_columns();
        let schema = &pinned.layout.schema;
        let fields =
            columns[..values.len()].iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
        let prefix_format = RowConverter::new(fields)?;
        let prefix = prefix_format.convert_columns(values)?;
        let prefix = prefix.row(0).as_ref().to_vec();
        let entries = pinned.index.range_from(&prefix).take_while(|(k, _)| k.starts_with(&prefix)).map(|(_, e)| e);
        to_batch(&pinned.layout, entries)
    }

    /// True when a checkpoint should write an image of this table now
    /// ([`image::due`]); never for a dropped table.
    pub fn image_due(&self) -> bool {
        !self.dropped.load(Ordering::SeqCst)
            && (self.owes_image.load(Ordering::SeqCst)
                || image::due(self.read_rows().index.len(), self.changed_since_image.load(Ordering::SeqCst)))
    }

    /// Records that the table's rows as of now go into an image (the checkpoint's cut, under
    /// the commit lock): from now on deletions are tombstones, and the delta starts empty.
    pub fn mark_imaged(&self) {
        self.has_image.store(true, Ordering::SeqCst);
        self.owes_image.store(false, Ordering::SeqCst);
        self.changed_since_image.store(0, Ordering::SeqCst);
    }

    /// Writes `pinned` (this table at a checkpoint's cut) as the table's image number `seq`.
    pub fn write_image(&self, pinned: &PinnedRows, images: &Images, seq: u64) -> Result<ImageRecord> {
        images.write(self.id, seq, self.is_multiset(), pinned.index.len(), pinned.index.iter())
    }

    /// Announces a bulk load of about `rows` rows in key order into this table (a snapshot,
    /// from the upstream's row estimate): if the table is still empty when the first of them
    /// arrive, its buffers are sized for all of them at once.
    pub fn expect_rows(&self, rows: usize) {
        let mut r = self.write_rows();
        if r.index.is_empty() {
            // Estimates (InnoDB's TABLE_ROWS) can be off either way; a tenth more costs
            // little and saves a doubling when the estimate is a bit low.
            r.expected = rows.saturating_add(rows / 10);
        }
    }

    /// Folds the recent changes into one sorted run when they have grown large (see
    /// [`RowIndex::needs_merge`]), on a background thread: the merge reads runs that never
    /// change, so commits go on adding levels above them and readers never wait; only the
    /// install takes the lock, for a moment. The writer calls this after a commit.
    pub fn compact(&self) {
        let Some(job) = self.write_rows().index.begin_merge() else {
            return;
        };
        let rows = self.rows.clone();
        let merge = move || {
            let merged = job.run();
            let retired = rows.write_locked().index.finish_merge(job, merged);
            // Freed here, outside the lock.
            drop(retired);
        };
        if let Err(e) = std::thread::Builder::new().name("hw-merge".into()).spawn(merge) {
            // No thread to be had: the merge is simply not done now. The levels stay marked
            // as merging, so make them plain levels again.
            tracing::warn!("merging a table's recent changes: {e}");
            self.write_rows().index.abandon_merge();
        }
    }

    /// Sets what reads of this materialized view's result report instead of its rows
    /// (`None`: the rows), published with a commit.
    pub fn set_errors(&self, errors: Option<Arc<ViewErrors>>) {
        self.write_rows().errors = errors;
    }

    /// What reads report instead of the rows, if anything.
    pub fn errors(&self) -> Option<Arc<ViewErrors>> {
        self.read_rows().errors.clone()
    }

    /// Replaces every row (a view rebuilt from its inputs), in memory.
    pub fn clear(&self) {
        let mut rows = self.write_rows();
        rows.index = RowIndex::new(self.is_multiset());
        rows.version += 1;
    }

    /// Approximate bytes of row data held in memory (keys and encoded rows).
    pub fn memory_bytes(&self) -> usize {
        self.read_rows().index.memory_bytes()
    }

    /// Removes every row of this table from the store (DROP TABLE), in `batch`: what the
    /// store holds under the table (rows, tombstones) and its image record. No image is
    /// written for the table from now on; its file goes at the next start.
    pub fn delete_all(&self, store: &dyn StateStore, batch: &mut WriteBatch) -> Result<()> {
        self.dropped.store(true, Ordering::SeqCst);
        batch.delete_prefix(store, &keys::table_rows(self.id))?;
        batch.delete(keys::image(self.id));
        Ok(())
    }

    /// The primary key's column indexes (`None`: a multiset).
    pub fn key_columns(&self) -> Option<&[usize]> {
        self.key_columns.as_deref()
    }

    /// The rows whose key does not matter: `true` when the table has no primary key.
    pub fn is_multiset(&self) -> bool {
        self.key_columns.is_none()
    }

    fn read_rows(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read_locked()
    }

    fn write_rows(&self) -> RwLockWriteGuard<'_, Rows> {
        self.rows.write_locked()
    }
}

/// Applies the changes of one statement or one upstream transaction, atomically, to tables
/// that no view reads (tests and tools; the server commits through
/// [`crate::dataflow::Dataflow::commit`], which also maintains views).
///
/// Every change is checked first, the store receives one batch, and only then do the
/// in-memory rows change. A failed check or store write leaves everything as it was.
#[cfg(test)]
pub(crate) fn commit(store: &CheckpointedStore, changes: &[(&TableState, &ChangeBatch)]) -> Result<()> {
    commit_with(store, changes, WriteBatch::default())
}

/// [`commit`], plus `extra` writes in the same atomic store batch.
#[cfg(test)]
pub(crate) fn commit_with(
    store: &CheckpointedStore,
    changes: &[(&TableState, &ChangeBatch)],
    mut batch: WriteBatch,
) -> Result<()> {
    let mut planned = Vec::with_capacity(changes.len());
    for (table, change) in changes {
        if change.is_empty() {
            continue;
        }
        let p = table.plan_change(change)?;
        table.write_planned(&p, &mut batch, store.defers_rows_to_images());
        planned.push((*table, p));
    }
    if !batch.is_empty() {
        store.apply(batch)?;
    }
    for (table, p) in planned {
        table.apply_planned(p);
        table.compact();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::state::MemoryStore;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false), Field::new("name", DataType::Utf8, true)]))
    }

    fn change(ids: &[i32], names: &[&str], weights: &[i64]) -> ChangeBatch {
        let data = RecordBatch::try_new(
            schema(),
            vec![Arc::new(Int32Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))],
        )
        .unwrap();
        ChangeBatch { data, weights: weights.to_vec(), mode: ApplyMode::Delta }
    }

    #[test]
    fn keyed_table_rejects_duplicates_and_allows_updates() {
        let store = CheckpointedStore::new(std::sync::Arc::new(MemoryStore::default()));
        let t = TableState::new(1, "t", schema(), Some(vec![0])).unwrap();
        commit(&store, &[(&t, &change(&[1, 2], &["a", "b"], &[1, 1]))]).unwrap();
        let err = commit(&store, &[(&t, &change(&[2], &["c"], &[1]))]).unwrap_err();
        assert_eq!(err.sqlstate(), "23505");
        assert!(err.hint().unwrap().contains("(id)=(2)"));
        // update: -old +new of the same key in one batch
        commit(&store, &[(&t, &change(&[2, 2], &["b", "c"], &[-1, 1]))]).unwrap();
        assert_eq!(t.row_count(), 2);
        let reloaded = TableState::new(1, "t", schema(), Some(vec![0])).unwrap();
        reloaded.load(&store).unwrap();
        assert_eq!(reloaded.snapshot().unwrap(), t.snapshot().unwrap());
    }

    /// A checked change must remove rows exactly as stored; a transaction's own copy of the
    /// rows changes nothing the table or other readers see.
    #[test]
    fn checked_changes_and_private_copies() {
        let store = CheckpointedStore::new(std::sync::Arc::new(MemoryStore::default()));
        let t = TableState::new(1, "t", schema(), Some(vec![0])).unwrap();
        commit(&store, &[(&t, &change(&[1, 2], &["a", "b"], &[1, 1]))]).unwrap();
        let checked =
            |ids: &[i32], names: &[&str], w: &[i64]| ChangeBatch { mode: ApplyMode::Checked, ..change(ids, names, w) };
        // Read "b" under key 2, but another commit made it "x": refused, nothing written.
        commit(&store, &[(&t, &change(&[2, 2], &["b", "x"], &[-1, 1]))]).unwrap();
        let err = commit(&store, &[(&t, &checked(&[2, 2], &["b", "y"], &[-1, 1]))]).unwrap_err();
        assert_eq!(err.sqlstate(), "40001");
        assert_eq!(t.lookup(&t.pin(), &[Arc::new(Int32Array::from(vec![2]))]).unwrap().num_rows(), 1);
        commit(&store, &[(&t, &checked(&[2, 2], &["x", "y"], &[-1, 1]))]).unwrap();
        assert_eq!(commit(&store, &[(&t, &checked(&[9], &["z"], &[-1]))]).unwrap_err().sqlstate(), "40001");
        // A private copy: sees its change, is checked like a commit, leaves the table alone.
        let before = t.snapshot().unwrap();
        let mine = t.apply_to_pinned(&t.pin(), &checked(&[3], &["c"], &[1])).unwrap();
        assert_eq!((mine.len(), t.snapshot_of(&mine).unwrap().num_rows()), (3, 3));
        let dup = t.apply_to_pinned(&mine, &checked(&[3], &["d"], &[1]));
        assert_eq!(dup.err().map(|e| e.sqlstate()), Some("23505"));
        assert_eq!(t.snapshot().unwrap(), before, "the shared snapshot is not the private one");
        assert_eq!(t.row_count(), 2);
    }

    #[test]
    fn failed_commit_changes_nothing() {
        let store = CheckpointedStore::new(std::sync::Arc::new(MemoryStore::default()));
        let t = TableState::new(1, "t", schema(), Some(vec![0])).unwrap();
        commit(&store, &[(&t, &change(&[1], &["a"], &[1]))]).unwrap();
        let before = t.snapshot().unwrap();
        assert!(commit(&store, &[(&t, &change(&[3, 3], &["x", "y"], &[1, 1]))]).is_err());
        assert_eq!(t.snapshot().unwrap(), before);
        assert_eq!(store.scan_prefix(&keys::table_rows(1)).unwrap().len(), 1);
    }

    #[test]
    fn upsert_replays_row_images_in_order() {
        let store = CheckpointedStore::new(std::sync::Arc::new(MemoryStore::default()));
        let t = TableState::new(1, "t", schema(), Some(vec![0])).unwrap();
        let upsert = |ids: &[i32], names: &[&str], w: &[i64]| {
            let mut c = change(ids, names, w);
            c.mode = ApplyMode::Upsert;
            c
        };
        // insert 1, update 1 (−old +new), insert 2, delete 2, insert 2 again: last image wins.
        let c = upsert(&[1, 1, 1, 2, 2, 2], &["a", "a", "b", "x", "x", "y"], &[1, -1, 1, 1, -1, 1]);
        commit(&store, &[(&t, &c)]).unwrap();
        let rows = t.snapshot().unwrap();
        assert_eq!(rows.num_rows(), 2);
        // An insert of an existing key replaces it (replays after a restart are idempotent).
        commit(&store, &[(&t, &upsert(&[1], &["c"], &[1]))]).unwrap();
        assert_eq!(t.row_count(), 2);
        // Deleting a missing key is a no-op.
        commit(&store, &[(&t, &upsert(&[9], &["z"], &[-1]))]).unwrap();
        assert_eq!(t.row_count(), 2);
        // Chunks in key order after every key held take the no-lookup path; one that reaches
        // back (key 3 was written, key 9 only deleted) or repeats a key takes the other.
        commit(&store, &[(&t, &upsert(&[3, 4, 5], &["d", "e", "f"], &[1, 1, 1]))]).unwrap();
        commit(&store, &[(&t, &upsert(&[10, 11], &["g", "h"], &[1, 1]))]).unwrap();
        commit(&store, &[(&t, &upsert(&[3, 12], &["D", "i"], &[1, 1]))]).unwrap();
        commit(&store, &[(&t, &upsert(&[13, 13], &["j", "J"], &[1, 1]))]).unwrap();
        let names: Vec<(i32, String)> = {
            let rows = t.snapshot().unwrap();
            let ids = rows.column(0).as_any().downcast_ref::<Int32Array>().unwrap().clone();
            let names = rows.column(1).as_any().downcast_ref::<StringArray>().unwrap().clone();
            (0..rows.num_rows()).map(|i| (ids.value(i), names.value(i).to_string())).collect()
        };
        let expected = [(1, "c"), (2, "y"), (3, "D"), (4, "e"), (5, "f"), (10, "g"), (11, "h"), (12, "i"), (13, "J")];
        assert_eq!(names, expected.iter().map(|(i, n)| (*i, n.to_string())).collect::<Vec<_>>());
        assert_eq!(t.row_count(), 9);
    }

    /// Widening appends the new columns' values to every row, in memory and in the store, for
    /// keyed tables and multisets alike; a pin taken before keeps decoding the old layout.
    #[test]
    fn widening_appends_columns_to_every_row() {
        use datafusion::arrow::array::Int64Array;
        let wide = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("qty", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let values: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from(vec![Some(5)])), Arc::new(StringArray::from(vec![None::<&str>]))];
        for key in [Some(vec![0]), None] {
            let store = CheckpointedStore::new(std::sync::Arc::new(MemoryStore::default()));
            let t = TableState::new(1, "t", schema(), key.clone()).unwrap();
            let initial = match key {
                Some(_) => change(&[1, 2], &["a", "b"], &[1, 1]),
                None => change(&[1, 2, 2], &["a", "b", "b"], &[1, 1, 1]),
            };
            commit(&store, &[(&t, &initial)]).unwrap();
            let before = t.pin();
            let mut batch = WriteBatch::default();
            let w = t.plan_widen(wide.clone(), &values, &mut batch).unwrap();
            assert_eq!(t.schema().fields().len(), 2, "nothing changes before apply");
            store.apply(batch).unwrap();
            t.apply_widen(w);
            let rows = t.snapshot().unwrap();
            assert_eq!(rows.schema(), wide);
            assert_eq!(rows.num_rows(), if key.is_some() { 2 } else { 3 });
            let qty = rows.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
            assert!(qty.iter().all(|q| q == Some(5)));
            assert_eq!(rows.column(3).null_count(), rows.num_rows());
            assert_eq!(t.snapshot_of(&before).unwrap().num_columns(), 2);
            let reloaded = TableState::new(1, "t", wide.clone(), key.clone()).unwrap();
            reloaded.load(&store).unwrap();
            assert_eq!(reloaded.snapshot().unwrap(), rows);
            // Writes after the widening use the new layout.
            let data = RecordBatch::try_new(
                wide.clone(),
                vec![
                    Arc::new(Int32Array::from(vec![3])),
                    Arc::new(StringArray::from(vec!["c"])),
                    Arc::new(Int64Array::from(vec![7])),
                    Arc::new(StringArray::from(vec!["n"])),
                ],
            )
            .unwrap();
            commit(&store, &[(&t, &ChangeBatch { data, weights: vec![1], mode: ApplyMode::Delta })]).unwrap();
            assert_eq!(t.snapshot().unwrap().num_rows(), rows.num_rows() + 1);
        }
        // A layout that does not append is refused.
        let t = TableState::new(1, "t", schema(), Some(vec![0])).unwrap();
        let narrow = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
        assert!(t.plan_widen(narrow, &[], &mut WriteBatch::default()).is_err());
    }

    #[test]
    fn multiset_counts_duplicates() {
        let store = CheckpointedStore::new(std::sync::Arc::new(MemoryStore::default()));
        let t = TableState::new(2, "m", schema(), None).unwrap();
        commit(&store, &[(&t, &change(&[1, 1, 2], &["a", "a", "b"], &[1, 1, 1]))]).unwrap();
        assert_eq!(t.row_count(), 3);
        commit(&store, &[(&t, &change(&[1], &["a"], &[-1]))]).unwrap();
        assert_eq!(t.row_count(), 2);
        assert_eq!(t.snapshot().unwrap().num_rows(), 2);
    }
}
