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

use super::image::{self, ImageRecord, Images};
use super::index::{Entry, EntryRef, RowIndex};
use super::keys;
use super::store::{StateStore, WriteBatch};
use crate::change::{ApplyMode, ChangeBatch, FastMap};
use crate::error::{Error, Result, ViewErrors};

/// An entry as the store holds it: its count (little-endian) then its row.
fn encode_entry(e: EntryRef<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + e.row.len());
    v.extend_from_slice(&e.count.to_le_bytes());
    v.extend_from_slice(e.row);
    v
}

/// What a table with an image stores for a deleted key (the image still holds it): a count
/// of 0 and no row.
const TOMBSTONE: [u8; 8] = [0; 8];

/// [`TOMBSTONE`], for the image tests.
#[cfg(test)]
pub(crate) fn tests_tombstone() -> [u8; 8] {
    TOMBSTONE
}

fn decode_entry(bytes: &[u8]) -> Result<EntryRef<'_>> {
    if bytes.len() < 8 {
        return Err(Error::Storage("row value shorter than its header".into()));
    }
    let count = i64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    Ok(EntryRef { row: &bytes[8..], count })
}

/// Adds a row as the store holds it to `builder`, unless it is a tombstone.
fn push_stored(builder: &mut super::index::IndexBuilder, key: &[u8], value: &[u8]) -> Result<()> {
    let entry = decode_entry(value)?;
    if entry.count != 0 {
        builder.push(key, entry);
    }
    Ok(())
}

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

/// A table about to gain columns: its rows re-encoded with the new layout. Made by
/// [`TableState::plan_widen`], applied with [`TableState::apply_widen`].
pub struct Widening {
    layout: Arc<Layout>,
    index: RowIndex,
}

/// The effect of one change batch on one table, checked against its current rows but not yet
/// applied: per changed key, the entry it held and the one it will hold (`None`: absent).
/// Made by [`TableState::plan_change`], written with [`TableState::write_planned`], applied
/// with [`TableState::apply_planned`].
#[derive(Debug, Default)]
pub struct Planned {
    updates: Vec<(Vec<u8>, Slot)>,
}

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

/// A table's rows in memory, mirrored in the store.
///
/// Keyed tables (with a primary key) hold at most one row per key; tables without a primary
/// key are multisets (row → count). Writes go through [`commit`]; reads through
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
    pub fn load(&self, store: &dyn StateStore) -> Result<()> {
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
            let cache = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((version, batch)) = cache.as_ref() {
                if *version == pinned.version {
                    return Ok(batch.clone());
                }
            }
        }
        let batch = to_batch(&pinned.layout, pinned.index.iter().map(|(_, e)| e))?;
        let mut cache = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
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
    /// With `defer` (the store [`defers_rows_to_images`](StateStore::defers_rows_to_images)),
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
    fn stage_delete(&self, key: &[u8], batch: &mut WriteBatch) {
        match self.has_image.load(Ordering::SeqCst) {
            true => batch.put(keys::row(self.id, key), TOMBSTONE.to_vec()),
            false => batch.delete(keys::row(self.id, key)),
        }
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
            let retired = rows.write().unwrap_or_else(|p| p.into_inner()).index.finish_merge(job, merged);
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
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_rows(&self) -> RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
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

/// Decodes entries (each as many times as it is present).
fn to_batch<'a>(layout: &Layout, entries: impl Iterator<Item = EntryRef<'a>>) -> Result<RecordBatch> {
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

/// Applies the changes of one statement or one upstream transaction, atomically, to tables
/// that no view reads (tests and tools; the server commits through
/// [`crate::dataflow::Dataflow::commit`], which also maintains views).
///
/// Every change is checked first, the store receives one batch, and only then do the
/// in-memory rows change. A failed check or store write leaves everything as it was.
pub fn commit(store: &dyn StateStore, changes: &[(&TableState, &ChangeBatch)]) -> Result<()> {
    commit_with(store, changes, WriteBatch::default())
}

/// [`commit`], plus `extra` writes in the same atomic store batch.
pub fn commit_with(
    store: &dyn StateStore,
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
        let store = MemoryStore::default();
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
        let store = MemoryStore::default();
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
        let store = MemoryStore::default();
        let t = TableState::new(1, "t", schema(), Some(vec![0])).unwrap();
        commit(&store, &[(&t, &change(&[1], &["a"], &[1]))]).unwrap();
        let before = t.snapshot().unwrap();
        assert!(commit(&store, &[(&t, &change(&[3, 3], &["x", "y"], &[1, 1]))]).is_err());
        assert_eq!(t.snapshot().unwrap(), before);
        assert_eq!(store.scan_prefix(&keys::table_rows(1)).unwrap().len(), 1);
    }

    #[test]
    fn upsert_replays_row_images_in_order() {
        let store = MemoryStore::default();
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
            let store = MemoryStore::default();
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
        let store = MemoryStore::default();
        let t = TableState::new(2, "m", schema(), None).unwrap();
        commit(&store, &[(&t, &change(&[1, 1, 2], &["a", "a", "b"], &[1, 1, 1]))]).unwrap();
        assert_eq!(t.row_count(), 3);
        commit(&store, &[(&t, &change(&[1], &["a"], &[-1]))]).unwrap();
        assert_eq!(t.row_count(), 2);
        assert_eq!(t.snapshot().unwrap().num_rows(), 2);
    }
}
