//! The rows of one table in memory: an ordered map from row key to stored row whose clones
//! (pins) share its immutable runs.
//!
//! Every change to a table looks its keys up (is the key there, what did it hold), every
//! query pins the table, and a table may hold millions of rows, so both must be cheap and the
//! rows compact. [`RowIndex`] is a small LSM tree held in memory:
//!
//! - the *base*, a [`Run`]: an immutable sorted run in a few contiguous buffers (all keys, all
//!   rows, the counts) plus each key's first 15 bytes and its length as a big-endian `u128`,
//!   its *head*, so a binary search compares integers in one array and reads key bytes only
//!   for keys longer than 15 bytes that share a head (a key of one integer column is 9
//!   bytes). Every 16th head is copied into `fences`, a small array that stays in cache: a
//!   lookup searches the fences, then one block of 16 heads, so a lookup in a run of millions
//!   of rows misses the cache a handful of times instead of once per halving. Before that, a
//!   lookup guesses the key's position by interpolating its head between the run's first and
//!   last and brackets it from there in a few doubling steps: for evenly spread keys (dense
//!   or random integers) that reads one or two cache lines. No allocation per row. A commit
//!   looks its keys up together ([`RowIndex::get_many`]): each phase of the searches runs
//!   over all the keys before the next, so their cache misses overlap.
//! - `levels`: what changed since the base was built, as more immutable runs of the same
//!   shape, oldest first, where a count of 0 is a *tombstone* that hides a key of the runs
//!   below (a deletion). Each commit's changes become one new level (sorted once, copied into
//!   three buffers); a level at least half the size of the one below it is merged into it,
//!   so the levels' sizes fall geometrically (at most ~log₂ of the changes), each change is
//!   copied a logarithmic number of times before it reaches the base, and a commit never
//!   copies what it does not change (a persistent B-tree copies a 64-entry node per insert
//!   into a node a pin shares — every node, after every commit).
//!   The writer's index keeps a [`RecentFilter`] of the keys in the levels (a
//!   one-word-per-key Bloom filter), so most lookups of a key no level holds skip them.
//!
//! Cloning a [`RowIndex`] is O(levels) `Arc` clones: that is what makes a pin cheap. When the
//! levels outgrow an eighth of the base ([`RowIndex::needs_merge`]), [`RowIndex::merged`]
//! builds the next base by one linear merge; the table's writer does that outside the table's
//! lock (readers never wait for it). Two shortcuts skip the levels ([`RowIndex::set_all`]): new
//! keys after every held key (a snapshot in key order) are appended to an unshared base in
//! place, and a batch as large as the merge threshold (a view's first fill) is merged into a
//! new base directly.

use std::cmp::Ordering;
use std::sync::Arc;

use smallvec::SmallVec;

/// A row key: the primary key (or, in a multiset, the whole row) in Arrow's row format, which
/// sorts like the values it encodes. Keys up to 16 bytes are stored inline.
pub type Key = SmallVec<[u8; 16]>;

/// The levels hold at least this many changes before a merge, so small tables live in them.
const MIN_RECENT: usize = 8192;

/// One stored row and how many times it is present (always 1 in a keyed table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub row: Arc<[u8]>,
    pub count: i64,
}

impl Entry {
    /// The entry, borrowed.
    pub fn borrowed(&self) -> EntryRef<'_> {
        EntryRef { row: &self.row, count: self.count }
    }
}

/// A stored row, borrowed from a [`RowIndex`] or an [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub row: &'a [u8],
    pub count: i64,
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(self) -> Entry {
        Entry { row: self.row.into(), count: self.count }
    }
}

/// A level's entry for a deleted key (a live entry's count is never 0).
const TOMBSTONE: EntryRef<'static> = EntryRef { row: &[], count: 0 };

mod run;
#[cfg(test)]
mod tests;

pub use run::IndexBuilder;
use run::{head, merge_runs, Run, FENCE};

/// A Bloom filter of the keys in a [`RowIndex`]'s levels, one 64-bit word per key (both bits
/// of a key in one word: one cache line read per lookup). Sized for the merge threshold at 16
/// bits per key (about 1.5% false positives when full), and rebuilt with each base. A false
/// positive costs a search of the levels; there are no false negatives.
#[derive(Clone)]
pub struct RecentFilter {
    words: Vec<u64>,
}

impl RecentFilter {
    fn new(keys: usize) -> Self {
        RecentFilter { words: vec![0; (keys / 4).next_power_of_two().max(64)] }
    }

    /// The word and the two bits of the key whose head is `h`.
    fn slot(&self, h: u128) -> (usize, u64) {
        let x = (h as u64) ^ ((h >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let x = (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let x = x ^ (x >> 32);
        let word = (x as usize) & (self.words.len() - 1);
        (word, (1 << ((x >> 52) & 63)) | (1 << ((x >> 58) & 63)))
    }

    fn insert(&mut self, h: u128) {
        let (word, bits) = self.slot(h);
        self.words[word] |= bits;
    }

    fn may_contain(&self, h: u128) -> bool {
        let (word, bits) = self.slot(h);
        self.words[word] & bits == bits
    }
}

/// An ordered, persistent map from row key to [`Entry`] (see the module documentation).
#[derive(Clone)]
pub struct RowIndex {
    base: Arc<Run>,
    /// The changes since `base` was built, oldest first; a count of 0 is a deletion.
    levels: Vec<Arc<Run>>,
    /// Entries in `levels` (a key changed in two levels counts twice until they merge).
    recent: usize,
    /// The keys in `levels`, for lookups by the table's writer; a pin drops it
    /// ([`RowIndex::pinned`]), so that the writer's next change does not copy it. `None`: not
    /// tracked, every lookup searches the levels.
    filter: Option<Arc<RecentFilter>>,
    /// The oldest `merging` levels are being merged into a new base ([`RowIndex::begin_merge`]):
    /// newer levels are not merged into them, so they stay the runs the merge read.
    merging: usize,
    len: usize,
    rows_are_keys: bool,
}

/// A merge of a [`RowIndex`]'s base and oldest levels into a new base, run away from the
/// index ([`RowIndex::begin_merge`], [`MergeJob::run`], [`RowIndex::finish_merge`]): commits
/// go on adding levels meanwhile, and only the install takes the writer's attention.
pub struct MergeJob {
    base: Arc<Run>,
    levels: Vec<Arc<Run>>,
    rows_are_keys: bool,
}

impl MergeJob {
    /// The merged base: every level of the job folded over the job's base.
    pub fn run(&self) -> MergedBase {
        MergedBase(merge_all(&self.base, &self.levels, Run::default(), self.rows_are_keys))
    }
}

/// The result of [`MergeJob::run`].
pub struct MergedBase(Run);

/// The runs a merge replaced ([`RowIndex::finish_merge`]): freeing a large run takes
/// milliseconds, so the caller drops this outside any lock (pins may still share them).
pub struct Retired {
    _base: Arc<Run>,
    _levels: Vec<Arc<Run>>,
}

impl RowIndex {
    /// An empty index. `rows_are_keys`: every entry's row is its key (a multiset), stored once.
    pub fn new(rows_are_keys: bool) -> Self {
        Self::builder(rows_are_keys).finish()
    }

    /// A builder for an index with these entries.
    pub fn builder(rows_are_keys: bool) -> IndexBuilder {
        IndexBuilder { run: Run::default(), rows_are_keys, unsorted: false, expected: None }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same entries for a reader: an O(levels) clone without the writer's filter.
    pub fn pinned(&self) -> RowIndex {
        RowIndex { filter: None, ..self.clone() }
    }

    /// The entry under `key`.
    pub fn get(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        let h = head(key);
        if !self.levels.is_empty() && self.filter.as_ref().is_none_or(|f| f.may_contain(h)) {
            for level in self.levels.iter().rev() {
                if let Ok(i) = level.search_head(key, h) {
                    let entry = level.entry(i);
                    return (entry.count != 0).then_some(entry);
                }
            }
        }
        self.base.search_head(key, h).ok().map(|i| self.base.entry(i))
    }

    /// The entries under `keys` (as [`RowIndex::get`] for each), looked up together: each
    /// run is searched for the keys not found in a newer one by [`Run::search_many`].
    pub fn get_many(&self, keys: &[&[u8]]) -> Vec<Option<EntryRef<'_>>> {
        let heads: Vec<u128> = keys.iter().map(|k| head(k)).collect();
        let mut out: Vec<Option<EntryRef<'_>>> = vec![None; keys.len()];
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        if !self.levels.is_empty() {
            // Keys the filter rules out skip the levels; the others are searched newest first.
            let (mut recent, rest): (Vec<usize>, Vec<usize>) =
                pending.iter().partition(|&&k| self.filter.as_ref().is_none_or(|f| f.may_contain(heads[k])));
            pending = rest;
            for level in self.levels.iter().rev() {
                if recent.is_empty() {
                    break;
                }
                let mut hit = vec![false; keys.len()];
                for (k, i) in level.search_many(keys, &heads, &recent) {
                    let entry = level.entry(i);
                    out[k] = (entry.count != 0).then_some(entry);
                    hit[k] = true;
                }
                recent.retain(|&k| !hit[k]);
            }
            pending.extend(recent);
        }
        for (k, i) in self.base.search_many(keys, &heads, &pending) {
            out[k] = Some(self.base.entry(i));
        }
        out
    }

    /// Puts `new` under `key` (`None` removes it); `existed` says whether the key was present
    /// (the caller has just looked it up), which keeps [`RowIndex::len`] exact.
    pub fn set(&mut self, key: &[u8], new: Option<Entry>, existed: bool) {
        self.set_all(vec![(key.to_vec(), new, existed)]);
    }

    /// Applies many [`RowIndex::set`]s: `(key, new entry, whether the key existed)`, each key
    /// once, as one new level. A batch as large as a merge threshold (a bulk load, a view's
    /// first fill) is merged straight into a new base instead.
    pub fn set_all(&mut self, mut updates: Vec<(Vec<u8>, Option<Entry>, bool)>) {
        if self.try_append(&mut updates) {
            return;
        }
        updates.retain(|(_, new, existed)| new.is_some() || *existed);
        if updates.is_empty() {
            return;
        }
        for (_, new, existed) in &updates {
            match (existed, new) {
                (false, _) => self.len += 1,
                (true, None) => self.len -= 1,
                (true, Some(_)) => {}
            }
        }
        updates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut level = Self::builder(self.rows_are_keys);
        for (key, new, _) in &updates {
            level.push(key, new.as_ref().map_or(TOMBSTONE, Entry::borrowed));
        }
        let level = level.finish_run();
        if updates.len() > self.merge_threshold() {
            self.base = Arc::new(self.all_levels_over(level));
            self.levels.clear();
            self.recent = 0;
            self.filter = None;
            // A merge under way read the old base: `finish_merge` will see that and drop it.
            self.merging = 0;
            return;
        }
        if self.levels.is_empty() && self.filter.is_none() {
            // The first change since the base was built: from here on the writer tracks them.
            self.filter = Some(Arc::new(RecentFilter::new(self.merge_threshold())));
        }
        if let Some(filter) = &mut self.filter {
            let filter = Arc::make_mut(filter);
            for h in &level.heads {
                filter.insert(*h);
            }
        }
        self.recent += level.len();
        self.levels.push(Arc::new(level));
        // Keep the sizes falling geometrically: a level at least half its elder's size joins it.
        while let [.., older, newer] = self.levels.as_slice() {
            if older.len() > 2 * newer.len() || self.levels.len() - 2 < self.merging {
                break;
            }
            let merged = merge_runs(older, newer, true, self.rows_are_keys);
            self.recent -= older.len() + newer.len() - merged.len();
            self.levels.truncate(self.levels.len() - 2);
            self.levels.push(Arc::new(merged));
        }
    }

    /// A new base: the base with every level and then `top` merged over it. The levels are
    /// folded newest first, so each merge copies the smaller side's entries about once: the
    /// cost is linear in the levels' size, plus the one merge into the base.
    fn all_levels_over(&self, top: Run) -> Run {
        merge_all(&self.base, &self.levels, top, self.rows_are_keys)
    }

    /// True when `key` sorts after every key the index holds or has a tombstone for: such a
    /// key is certainly absent, with no lookup.
    pub fn sorts_after_all(&self, key: &[u8]) -> bool {
        std::iter::once(&self.base).chain(&self.levels).all(|run| run.last_key().is_none_or(|l| l < key))
    }

    /// Appends `updates` to the base in place when they are all new keys sorting after every
    /// key held (a snapshot or a bulk load arriving in key order) and no pin shares the base.
    fn try_append(&mut self, updates: &mut [(Vec<u8>, Option<Entry>, bool)]) -> bool {
        if updates.is_empty() || updates.iter().any(|(_, new, existed)| new.is_none() || *existed) {
            return false;
        }
        updates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if !self.sorts_after_all(&updates[0].0) {
            return false;
        }
        let rows_are_keys = self.rows_are_keys;
        let Some(run) = Arc::get_mut(&mut self.base) else {
            return false;
        };
        for (key, new, _) in updates.iter() {
            run.push(key, new.as_ref().expect("checked above").borrowed(), rows_are_keys);
        }
        self.len += updates.len();
        true
    }

    /// Makes room in the base for `entries` more appended entries of about `key_bytes` and
    /// `row_bytes` each, when no pin shares it: a snapshot in key order that announces its
    /// size grows the base's buffers once instead of doubling them, where every doubling
    /// copies the buffer into fresh memory the kernel must zero (a third of a large
    /// snapshot's CPU before).
    pub fn reserve_appends(&mut self, entries: usize, key_bytes: usize, row_bytes: usize) {
        let rows_are_keys = self.rows_are_keys;
        let Some(run) = Arc::get_mut(&mut self.base) else { return };
        // Only a hint: what the allocator refuses (an estimate far too high) is not reserved.
        let _ = run.heads.try_reserve(entries);
        let _ = run.fences.try_reserve(entries / FENCE + 1);
        let _ = run.key_ends.try_reserve(entries);
        let _ = run.keys.try_reserve(entries.saturating_mul(key_bytes));
        if !rows_are_keys {
            let _ = run.row_ends.try_reserve(entries);
            let _ = run.rows.try_reserve(entries.saturating_mul(row_bytes));
        }
    }

    /// Every entry in key order.
    pub fn iter(&self) -> Iter<'_> {
        self.cursors(|_| 0)
    }

    /// The entries from `start` on, in key order.
    pub fn range_from(&self, start: &[u8]) -> Iter<'_> {
        let h = head(start);
        self.cursors(|run| run.search_head(start, h).unwrap_or_else(|i| i))
    }

    fn cursors(&self, start: impl Fn(&Run) -> usize) -> Iter<'_> {
        let cursors = std::iter::once(&self.base)
            .chain(&self.levels)
            .map(|run| (run.as_ref(), start(run)))
            .filter(|(run, at)| *at < run.len())
            .collect();
        Iter { cursors }
    }

    /// True when the levels have grown enough that [`RowIndex::merged`] should replace them.
    pub fn needs_merge(&self) -> bool {
        self.recent > self.merge_threshold()
    }

    fn merge_threshold(&self) -> usize {
        MIN_RECENT.max(self.base.len() / 8)
    }

    /// Starts merging the base and every level into a new base, when the levels have grown
    /// enough ([`RowIndex::needs_merge`]) and no merge is under way. Until
    /// [`RowIndex::finish_merge`] installs it, the index works as before, and changes made
    /// meanwhile stay levels above the merged ones.
    pub fn begin_merge(&mut self) -> Option<MergeJob> {
        if !self.needs_merge() {
            return None;
        }
        self.start_merge()
    }

    /// [`RowIndex::begin_merge`] however few the recent changes.
    fn start_merge(&mut self) -> Option<MergeJob> {
        if self.merging > 0 {
            return None;
        }
        self.merging = self.levels.len();
        Some(MergeJob { base: self.base.clone(), levels: self.levels.clone(), rows_are_keys: self.rows_are_keys })
    }

    /// Installs `merged`, the result of `job`, in place of the runs the job read, unless the
    /// index has meanwhile been rebuilt without them (a bulk change replaced the base); then
    /// it is dropped. Returns the runs replaced, for the caller to free outside any lock.
    pub fn finish_merge(&mut self, job: MergeJob, merged: MergedBase) -> Option<Retired> {
        let n = job.levels.len();
        let same = Arc::ptr_eq(&self.base, &job.base)
            && self.merging == n
            && self.levels.len() >= n
            && self.levels.iter().zip(&job.levels).all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            return None;
        }
        self.merging = 0;
        let old_base = std::mem::replace(&mut self.base, Arc::new(merged.0));
        let old_levels: Vec<Arc<Run>> = self.levels.drain(..n).collect();
        self.recent = self.levels.iter().map(|l| l.len()).sum();
        // The filter held the merged levels' keys too: rebuilt from the levels left.
        self.filter = (!self.levels.is_empty()).then(|| {
            let mut filter = RecentFilter::new(self.merge_threshold());
            for h in self.levels.iter().flat_map(|l| &l.heads) {
                filter.insert(*h);
            }
            Arc::new(filter)
        });
        Some(Retired { _base: old_base, _levels: old_levels })
    }

    /// Gives up a merge begun by [`RowIndex::begin_merge`] whose job will never finish.
    pub fn abandon_merge(&mut self) {
        self.merging = 0;
    }

    /// The same entries with everything in one base run.
    pub fn merged(&self) -> RowIndex {
        let base = self.all_levels_over(Run::default());
        RowIndex {
            len: base.len(),
            base: Arc::new(base),
            levels: Vec::new(),
            recent: 0,
            filter: None,
            merging: 0,
            rows_are_keys: self.rows_are_keys,
        }
    }

    /// Approximate bytes held: the base's and the levels' buffers.
    pub fn memory_bytes(&self) -> usize {
        std::iter::once(&self.base).chain(&self.levels).map(|run| run.bytes()).sum()
    }
}

/// `base` with `levels` (oldest first) and then `top` merged over it. The levels are folded
/// newest first, so each merge copies the smaller side's entries about once: the cost is
/// linear in the levels' size, plus the one merge into the base.
fn merge_all(base: &Run, levels: &[Arc<Run>], top: Run, rows_are_keys: bool) -> Run {
    let mut acc = top;
    for level in levels.iter().rev() {
        acc = merge_runs(level, &acc, true, rows_are_keys);
    }
    merge_runs(base, &acc, false, rows_are_keys)
}

/// The entries of a [`RowIndex`] in key order: its runs merged, the newest entry of a key
/// winning, tombstones skipped.
pub struct Iter<'a> {
    /// Each run not yet done (the base, then the levels, oldest first) and its next entry.
    cursors: SmallVec<[(&'a Run, usize); 8]>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], EntryRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // The smallest next key; among equal keys the newest run's (the last) wins.
            let mut best = 0;
            for c in 1..self.cursors.len() {
                let ((run, at), (best_run, best_at)) = (self.cursors[c], self.cursors[best]);
                if run.compare_at(at, best_run, best_at) != Ordering::Greater {
                    best = c;
                }
            }
            let (run, at) = *self.cursors.get(best)?;
            let (key, entry) = (run.key(at), run.entry(at));
            for c in (0..self.cursors.len()).rev() {
                let (other, other_at) = self.cursors[c];
                if c == best || other.compare_at(other_at, run, at) == Ordering::Equal {
                    self.cursors[c].1 += 1;
                    if self.cursors[c].1 == other.len() {
                        self.cursors.remove(c);
                    }
                }
            }
            if entry.count != 0 {
                return Some((key, entry));
            }
        }
    }
}
