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

/// Bytes of a key its head holds; the head's last byte is the key's length.
const HEAD: usize = 15;

/// Heads per fence (see [`Run::search_head`]).
const FENCE: usize = 16;

/// Doubling steps an interpolated lookup takes from its guess before it falls back to the
/// fences (see [`Run::search_interpolated`]): it then brackets keys within 2⁵ entries.
const GALLOP: u32 = 5;

/// The first [`HEAD`] bytes of `key`, zero-padded, then its length (capped at 255), as a
/// big-endian integer. Compared with [`head_order`], heads order like their keys: a shorter
/// key's padding is below any byte where a longer one could differ, and two keys with the same
/// padded prefix of which one is at most [`HEAD`] bytes differ by trailing bytes, so the
/// shorter (smaller length byte) is the smaller. Only two keys longer than [`HEAD`] bytes with
/// one prefix need their bytes compared.
fn head(key: &[u8]) -> u128 {
    let mut bytes = [0u8; HEAD + 1];
    let n = key.len().min(HEAD);
    bytes[..n].copy_from_slice(&key[..n]);
    bytes[HEAD] = key.len().min(255) as u8;
    u128::from_be_bytes(bytes)
}

/// The order of two keys from their heads; `Equal` for equal keys of at most [`HEAD`] bytes
/// and for two longer keys with one prefix, whose bytes then decide.
fn head_order(a: u128, b: u128) -> Ordering {
    match (a >> 8).cmp(&(b >> 8)) {
        Ordering::Equal => {
            let (la, lb) = (a as u8, b as u8);
            if la as usize > HEAD && lb as usize > HEAD {
                Ordering::Equal
            } else {
                la.cmp(&lb)
            }
        }
        unequal => unequal,
    }
}

/// An immutable sorted run of entries in contiguous buffers.
#[derive(Debug, Default)]
struct Run {
    heads: Vec<u128>,
    /// `heads[0]`, `heads[FENCE]`, `heads[2 * FENCE]`, ...
    fences: Vec<u128>,
    key_ends: Vec<usize>,
    keys: Vec<u8>,
    /// Empty when every row is its own key (multisets).
    row_ends: Vec<usize>,
    rows: Vec<u8>,
    /// Empty when every count is 1 (always, in a keyed table's base).
    counts: Vec<i64>,
}

impl Run {
    fn len(&self) -> usize {
        self.heads.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.keys[start..self.key_ends[i]]
    }

    /// The order of entry `i`'s key against `key`, whose head is `h`.
    fn compare(&self, i: usize, key: &[u8], h: u128) -> Ordering {
        match head_order(self.heads[i], h) {
            Ordering::Equal if key.len() > HEAD => self.key(i).cmp(key),
            order => order,
        }
    }

    /// The order of entry `i`'s key against entry `j`'s of `other`.
    fn compare_at(&self, i: usize, other: &Run, j: usize) -> Ordering {
        match head_order(self.heads[i], other.heads[j]) {
            Ordering::Equal if self.heads[i] as u8 as usize > HEAD => self.key(i).cmp(other.key(j)),
            order => order,
        }
    }

    fn entry(&self, i: usize) -> EntryRef<'_> {
        let row = if self.row_ends.is_empty() {
            self.key(i)
        } else {
            let start = if i == 0 { 0 } else { self.row_ends[i - 1] };
            &self.rows[start..self.row_ends[i]]
        };
        EntryRef { row, count: self.counts.get(i).copied().unwrap_or(1) }
    }

    /// [`Run::search_head`], computing the head.
    #[cfg(test)]
    fn search(&self, key: &[u8]) -> Result<usize, usize> {
        self.search_head(key, head(key))
    }

    /// The position of `key` (whose head `h` the caller has computed), or where it would be
    /// inserted. The fences narrow the search to the entries whose heads cannot order them on
    /// either side of `key` (one block of [`FENCE`] unless long keys share a prefix across
    /// blocks).
    fn search_head(&self, key: &[u8], h: u128) -> Result<usize, usize> {
        if let Some(found) = self.search_interpolated(key, h) {
            return found;
        }
        let below = self.fences.partition_point(|&f| head_order(f, h) == Ordering::Less);
        let not_above = below + self.fences[below..].partition_point(|&f| head_order(f, h) != Ordering::Greater);
        let mut lo = below.saturating_sub(1) * FENCE;
        let mut hi = (not_above * FENCE).min(self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.compare(mid, key, h) {
                Ordering::Less => lo = mid + 1,
                Ordering::Equal => return Ok(mid),
                Ordering::Greater => hi = mid,
            }
        }
        Err(lo)
    }

    /// Guesses `key`'s position from where its head falls between the run's first and last
    /// heads, then brackets it by doubling steps from the guess: for keys spread evenly (dense
    /// or random integer keys, the common primary key) the guess is within a few entries, so
    /// a lookup in a run of millions reads one or two cache lines of heads instead of
    /// searching the fences. Gives up (`None`, the caller searches the fences) when the key is
    /// outside the run's range or not bracketed within [`GALLOP`] doublings.
    fn search_interpolated(&self, key: &[u8], h: u128) -> Option<Result<usize, usize>> {
        let n = self.len();
        let at = self.guess(h)?;
        let (mut lo, mut hi) = match self.compare(at, key, h) {
            Ordering::Equal => return Some(Ok(at)),
            // Entries before `lo` sort below `key`, entries from `hi` on above it.
            Ordering::Less => {
                let mut lo = at + 1;
                let mut step = 1;
                loop {
                    let probe = at + step;
                    if probe >= n {
                        break (lo, n);
                    }
                    match self.compare(probe, key, h) {
                        Ordering::Less => lo = probe + 1,
                        Ordering::Equal => return Some(Ok(probe)),
                        Ordering::Greater => break (lo, probe),
                    }
                    if step >= 1 << GALLOP {
                        return None;
                    }
                    step *= 2;
                }
            }
            Ordering::Greater => {
                let mut hi = at;
                let mut step = 1;
                loop {
                    let Some(probe) = at.checked_sub(step) else { break (0, hi) };
                    match self.compare(probe, key, h) {
                        Ordering::Greater => hi = probe,
                        Ordering::Equal => return Some(Ok(probe)),
                        Ordering::Less => break (probe + 1, hi),
                    }
                    if step >= 1 << GALLOP {
                        return None;
                    }
                    step *= 2;
                }
            }
        };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.compare(mid, key, h) {
                Ordering::Less => lo = mid + 1,
                Ordering::Equal => return Some(Ok(mid)),
                Ordering::Greater => hi = mid,
            }
        }
        Some(Err(lo))
    }

    /// Where interpolation puts the key whose head is `h` (see [`Run::search_interpolated`]);
    /// `None` for a short run or a key outside the run's range.
    fn guess(&self, h: u128) -> Option<usize> {
        let n = self.len();
        if n < 4 * FENCE {
            return None;
        }
        let (first, last) = (self.heads[0], self.heads[n - 1]);
        // Heads compared as integers order like [`head_order`] (ties aside), so a key inside
        // the run's range has its head between the first and last.
        if h <= first || h >= last {
            return None;
        }
        let at = ((h - first) as f64 / (last - first) as f64 * (n - 1) as f64) as usize;
        Some(at.min(n - 1))
    }

    /// Searches the run for each of `wanted` (indexes into `keys` and `heads`), in phases over
    /// all of them, so that their cache misses overlap instead of following one another: the
    /// guessed heads are read first (independent loads the CPU issues together), then each
    /// key is searched among heads now in cache, then the found entries' row offsets and row
    /// bytes are read the same way. A lookup of one key in a large run misses the cache three
    /// or four times in a row; a thousand keys looked up like this take about the time of a
    /// few hundred misses. Returns `(index into keys, entry position)` of the keys found.
    fn search_many(&self, keys: &[&[u8]], heads: &[u128], wanted: &[usize]) -> Vec<(usize, usize)> {
        let mut touched = 0u128;
        for &k in wanted {
            if let Some(at) = self.guess(heads[k]) {
                touched ^= self.heads[at];
            }
        }
        let mut found = Vec::with_capacity(wanted.len());
        let mut offsets = 0usize;
        for &k in wanted {
            if let Ok(i) = self.search_head(keys[k], heads[k]) {
                found.push((k, i));
                offsets ^= self.row_ends.get(i).or_else(|| self.key_ends.get(i)).copied().unwrap_or(0);
            }
        }
        let mut bytes = 0u8;
        for &(_, i) in &found {
            bytes ^= self.entry(i).row.first().copied().unwrap_or(0);
        }
        std::hint::black_box((touched, offsets, bytes));
        found
    }

    /// Appends an entry whose key sorts after every key of the run.
    fn push(&mut self, key: &[u8], entry: EntryRef<'_>, rows_are_keys: bool) {
        if self.heads.len().is_multiple_of(FENCE) {
            self.fences.push(head(key));
        }
        self.heads.push(head(key));
        self.keys.extend_from_slice(key);
        self.key_ends.push(self.keys.len());
        if !rows_are_keys {
            self.rows.extend_from_slice(entry.row);
            self.row_ends.push(self.rows.len());
        }
        if entry.count != 1 || !self.counts.is_empty() {
            self.counts.resize(self.heads.len() - 1, 1); // the first count other than 1 fills in the ones
            self.counts.push(entry.count);
        }
    }

    /// The last key, if any.
    fn last_key(&self) -> Option<&[u8]> {
        self.len().checked_sub(1).map(|i| self.key(i))
    }

    fn bytes(&self) -> usize {
        self.keys.len()
            + self.rows.len()
            + 16 * (self.heads.len() + self.fences.len())
            + 8 * (self.key_ends.len() + self.row_ends.len() + self.counts.len())
    }
}

/// Builds a [`RowIndex`] from entries, fastest when they come in key order (a store scan).
pub struct IndexBuilder {
    run: Run,
    rows_are_keys: bool,
    /// Set once an entry arrives out of order; [`IndexBuilder::finish`] then sorts.
    unsorted: bool,
    /// How many entries are coming and the bytes of their keys and rows together
    /// ([`IndexBuilder::expect`]); the first push sizes the buffers from it.
    expected: Option<(usize, usize)>,
}

impl IndexBuilder {
    /// Appends the entries `range` of `run`, which sort after everything pushed so far.
    fn extend_from(&mut self, run: &Run, range: std::ops::Range<usize>) {
        if range.is_empty() {
            return;
        }
        let (first, last) = (range.start, range.end - 1);
        let to = &mut self.run;
        let had = to.len();
        to.heads.extend_from_slice(&run.heads[range.clone()]);
        let first_fence = had.next_multiple_of(FENCE).min(to.heads.len());
        to.fences.extend(to.heads[first_fence..].iter().step_by(FENCE));
        let (start, end) = (if first == 0 { 0 } else { run.key_ends[first - 1] }, run.key_ends[last]);
        let shift = to.keys.len() as isize - start as isize;
        to.keys.extend_from_slice(&run.keys[start..end]);
        to.key_ends.extend(run.key_ends[range.clone()].iter().map(|&e| e.wrapping_add_signed(shift)));
        if !self.rows_are_keys {
            let (start, end) = (if first == 0 { 0 } else { run.row_ends[first - 1] }, run.row_ends[last]);
            let shift = to.rows.len() as isize - start as isize;
            to.rows.extend_from_slice(&run.rows[start..end]);
            to.row_ends.extend(run.row_ends[range.clone()].iter().map(|&e| e.wrapping_add_signed(shift)));
        }
        if !run.counts.is_empty() {
            to.counts.resize(had, 1);
            to.counts.extend_from_slice(&run.counts[range]);
        } else if !to.counts.is_empty() {
            to.counts.resize(to.len(), 1);
        }
    }

    /// Says that about `entries` entries whose keys and rows take `payload` bytes together are
    /// coming (a table image knows both): the buffers are then made that size at the first
    /// push, keys sized after the first key, instead of doubling as they fill — each doubling
    /// copies everything pushed so far and faults in fresh pages, and the final shrink copies
    /// once more. Sizes that turn out short only fall back to doubling.
    pub fn expect(&mut self, entries: usize, payload: usize) {
        self.expected = Some((entries, payload));
    }

    /// Adds an entry (a key given twice keeps its last entry).
    pub fn push(&mut self, key: &[u8], entry: EntryRef<'_>) {
        if let Some((entries, payload)) = self.expected.take() {
            let run = &mut self.run;
            let keys = (key.len() * entries).min(payload);
            run.heads.reserve(entries);
            run.fences.reserve(entries.div_ceil(FENCE));
            run.key_ends.reserve(entries);
            run.keys.reserve(keys);
            if !self.rows_are_keys {
                run.row_ends.reserve(entries);
                run.rows.reserve(payload - keys);
            }
        }
        if let Some(last) = self.run.last_key() {
            self.unsorted |= last >= key;
        }
        self.run.push(key, entry, self.rows_are_keys);
    }

    /// The sorted run of the entries pushed, without spare capacity.
    fn finish_run(self) -> Run {
        let mut run = self.run;
        if self.unsorted {
            let mut order: Vec<usize> = (0..run.len()).collect();
            // Stable, so among equal keys the last pushed stays last and wins below.
            order.sort_by(|&a, &b| run.key(a).cmp(run.key(b)));
            let mut sorted = RowIndex::builder(self.rows_are_keys);
            for (n, &i) in order.iter().enumerate() {
                if order.get(n + 1).is_some_and(|&next| run.key(next) == run.key(i)) {
                    continue;
                }
                sorted.push(run.key(i), run.entry(i));
            }
            run = sorted.run;
        }
        run.heads.shrink_to_fit();
        run.fences.shrink_to_fit();
        run.key_ends.shrink_to_fit();
        run.keys.shrink_to_fit();
        run.row_ends.shrink_to_fit();
        run.rows.shrink_to_fit();
        run.counts.shrink_to_fit();
        run
    }

    /// The index of the entries pushed.
    pub fn finish(self) -> RowIndex {
        let rows_are_keys = self.rows_are_keys;
        let run = self.finish_run();
        RowIndex {
            len: run.len(),
            base: Arc::new(run),
            levels: Vec::new(),
            recent: 0,
            filter: None,
            merging: 0,
            rows_are_keys,
        }
    }
}

/// `older` with `newer` on top: a key in both takes `newer`'s entry. `keep_tombstones`:
/// the result is a level (its tombstones still hide keys below it), else a base. Finding
/// where each of `newer`'s keys goes is a forward walk over `older`'s heads, and `older`'s
/// entries between two of them are copied as whole slices: a few nanoseconds per entry.
fn merge_runs(older: &Run, newer: &Run, keep_tombstones: bool, rows_are_keys: bool) -> Run {
    // Sized for both runs up front: growing buffers of a million entries by doubling copies
    // them again and again (a fifth of a base merge, measured).
    let sum = |f: fn(&Run) -> usize| f(older) + f(newer);
    let run = Run {
        heads: Vec::with_capacity(sum(Run::len)),
        fences: Vec::with_capacity(sum(Run::len) / FENCE + 1),
        key_ends: Vec::with_capacity(sum(Run::len)),
        keys: Vec::with_capacity(sum(|r| r.keys.len())),
        row_ends: Vec::with_capacity(sum(|r| r.row_ends.len())),
        rows: Vec::with_capacity(sum(|r| r.rows.len())),
        // Most runs hold no count other than 1, and then none at all.
        counts: Vec::new(),
    };
    let mut builder = IndexBuilder { run, rows_are_keys, unsorted: false, expected: None };
    let mut next = 0;
    for i in 0..newer.len() {
        let mut at = next;
        while at < older.len() && older.compare_at(at, newer, i) == Ordering::Less {
            at += 1;
        }
        builder.extend_from(older, next..at);
        next = at + usize::from(at < older.len() && older.compare_at(at, newer, i) == Ordering::Equal);
        let entry = newer.entry(i);
        if keep_tombstones || entry.count != 0 {
            builder.push(newer.key(i), entry);
        }
    }
    builder.extend_from(older, next..older.len());
    builder.finish_run()
}

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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn entry(row: &[u8], count: i64) -> Entry {
        Entry { row: row.into(), count }
    }

    fn check(index: &RowIndex, model: &BTreeMap<Vec<u8>, Entry>) {
        assert_eq!(index.len(), model.len());
        let all: Vec<(Vec<u8>, Entry)> = index.iter().map(|(k, e)| (k.to_vec(), e.to_entry())).collect();
        let expected: Vec<(Vec<u8>, Entry)> = model.iter().map(|(k, e)| (k.clone(), e.clone())).collect();
        assert_eq!(all, expected);
        for (k, e) in model {
            assert_eq!(index.get(k), Some(e.borrowed()));
        }
        check_many(index, model.keys().cloned().chain([vec![9u8; 3], vec![], vec![0u8; 20]]));
        check_many(&index.pinned(), model.keys().cloned().chain([vec![7u8; 2]]));
    }

    /// `get_many` of `probes` (present and absent keys, some twice) answers as `get` of each.
    fn check_many(index: &RowIndex, probes: impl Iterator<Item = Vec<u8>>) {
        let probes: Vec<Vec<u8>> = probes.collect();
        let mut refs: Vec<&[u8]> = probes.iter().map(|k| k.as_slice()).collect();
        refs.extend(probes.iter().rev().take(3).map(|k| k.as_slice()));
        let many = index.get_many(&refs);
        assert_eq!(many.len(), refs.len());
        for (k, got) in refs.iter().zip(many) {
            assert_eq!(got, index.get(k), "get_many of {k:?}");
        }
    }

    proptest! {
        /// Random sets and deletes, with pins taken along the way and merges forced often:
        /// the index equals a `BTreeMap` model (entries, order, lookups, ranges, length), and
        /// every pin keeps the contents it was taken with.
        #[test]
        fn index_matches_a_btreemap(
            ops in prop::collection::vec((prop::collection::vec(0u8..4, 0..10), 0u8..3, any::<bool>()), 1..300),
            rows_are_keys in any::<bool>(),
            merge_every in 1usize..40,
        ) {
            let mut index = RowIndex::new(rows_are_keys);
            let mut model: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
            let mut pins = Vec::new();
            for (n, (key, count, delete)) in ops.into_iter().enumerate() {
                let existed = model.contains_key(&key);
                prop_assert_eq!(index.get(&key).is_some(), existed);
                let new = (!delete).then(|| {
                    let row = if rows_are_keys { key.clone() } else { [key.as_slice(), b"row"].concat() };
                    entry(&row, count as i64 + 1)
                });
                if n % 5 == 0 {
                    index.set_all(vec![(key.clone(), new.clone(), existed)]);
                } else {
                    index.set(&key, new.clone(), existed);
                }
                match new {
                    Some(e) => { model.insert(key.clone(), e); }
                    None => { model.remove(&key); }
                }
                if n % merge_every == 0 {
                    index = index.merged();
                }
                if n % 7 == 0 {
                    pins.push((index.clone(), model.clone()));
                }
                let from: Vec<_> = index.range_from(&key).map(|(k, e)| (k.to_vec(), e.to_entry())).collect();
                let expected: Vec<_> = model.range(key.clone()..).map(|(k, e)| (k.clone(), e.clone())).collect();
                prop_assert_eq!(from, expected);
            }
            check(&index, &model);
            for (pinned, then) in &pins {
                check(pinned, then);
            }
        }
    }

    proptest! {
        /// Commits of several keys at once (each a new level, levels merging as they grow,
        /// deletions as tombstones over older levels and the base), with pins and occasional
        /// merges into the base: lookups, ranges and the length equal a `BTreeMap` model's.
        #[test]
        fn batched_levels_match_a_btreemap(
            batches in prop::collection::vec(prop::collection::btree_map(prop::collection::vec(0u8..6, 0..3), any::<bool>(), 1..20), 1..60),
            merge_at in 0usize..60,
            background in prop::collection::vec((0usize..60, 0usize..8), 0..4),
        ) {
            let mut index = RowIndex::new(false);
            let mut model: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
            let mut pins = Vec::new();
            // Background merges: begun after batch `at`, installed `after` batches later.
            let mut job: Option<(MergeJob, MergedBase, usize)> = None;
            for (n, batch) in batches.into_iter().enumerate() {
                let updates: Vec<_> = batch
                    .into_iter()
                    .map(|(key, delete)| {
                        let existed = model.contains_key(&key);
                        let new = (!delete).then(|| entry(&[key.as_slice(), &[n as u8]].concat(), 1));
                        match &new {
                            Some(e) => model.insert(key.clone(), e.clone()),
                            None => model.remove(&key),
                        };
                        (key, new, existed)
                    })
                    .collect();
                index.set_all(updates);
                prop_assert!(
                    index.levels[index.merging..].windows(2).all(|w| w[0].len() > 2 * w[1].len()),
                    "level sizes above a merge fall geometrically"
                );
                if job.as_ref().is_some_and(|(.., due)| *due <= n) {
                    let (j, merged, _) = job.take().expect("checked");
                    let levels = j.levels.len();
                    let before = index.levels.len();
                    if index.finish_merge(j, merged).is_some() {
                        prop_assert_eq!(index.levels.len(), before - levels);
                    }
                    check(&index, &model);
                }
                if let Some(&(_, after)) = background.iter().find(|(at, _)| *at == n) {
                    if let Some(j) = index.start_merge() {
                        let merged = j.run();
                        job = Some((j, merged, n + after));
                    }
                }
                if n == merge_at {
                    index = index.merged();
                }
                if n % 3 == 0 {
                    pins.push((index.pinned(), model.clone()));
                }
                check(&index, &model);
                for probe in [vec![], vec![2], vec![3, 3]] {
                    prop_assert_eq!(index.get(&probe).map(|e| e.to_entry()), model.get(&probe).cloned());
                    let from: Vec<_> = index.range_from(&probe).map(|(k, e)| (k.to_vec(), e.to_entry())).collect();
                    let expected: Vec<_> = model.range(probe.clone()..).map(|(k, e)| (k.clone(), e.clone())).collect();
                    prop_assert_eq!(from, expected);
                }
            }
            for (pinned, then) in &pins {
                check(pinned, then);
            }
        }
    }

    proptest! {
        /// Lookups through the fences find every key of a run, and place every absent key,
        /// as a binary search over the sorted keys does; keys around the head's 15 bytes
        /// share long prefixes, so equal heads span blocks.
        #[test]
        fn fenced_search_matches_a_sorted_vec(
            tails in prop::collection::btree_set(prop::collection::vec(0u8..3, 0..5), 1..120),
            probes in prop::collection::vec(prop::collection::vec(0u8..3, 0..5), 1..40),
            prefix_len in 11usize..16,
        ) {
            let key = |tail: &[u8]| [vec![7u8; prefix_len].as_slice(), tail].concat();
            let keys: Vec<Vec<u8>> = tails.iter().map(|t| key(t)).collect();
            let mut b = RowIndex::builder(true);
            for k in &keys {
                b.push(k, EntryRef { row: k, count: 1 });
            }
            let run = b.finish().base;
            for probe in probes.iter().map(|t| key(t)).chain(keys.iter().cloned()) {
                prop_assert_eq!(run.search(&probe), keys.binary_search(&probe));
            }
        }
    }

    proptest! {
        /// Interpolated lookups (runs of at least 64 keys) find and place keys as a binary
        /// search does, whatever the keys' spread: dense, sparse, clustered at one end
        /// (squares grow fast), and long keys sharing a prefix.
        #[test]
        fn interpolated_search_matches_a_sorted_vec(
            values in prop::collection::btree_set(0u64..1_000_000, 64..600),
            probes in prop::collection::vec(0u64..1_100_000, 1..60),
            shape in 0usize..4,
        ) {
            let key = |v: u64| -> Vec<u8> {
                match shape {
                    0 => (v % 700).to_be_bytes().to_vec(), // dense: probes land on or just past them
                    1 => v.to_be_bytes().to_vec(),
                    2 => (v * v).to_be_bytes().to_vec(),
                    _ => format!("customer-name-prefix-{v:08}").into_bytes(),
                }
            };
            let keys: Vec<Vec<u8>> = if shape == 0 {
                (0..values.len() as u64).map(key).collect()
            } else {
                values.iter().map(|&v| key(v)).collect::<BTreeSet<_>>().into_iter().collect()
            };
            let mut b = RowIndex::builder(true);
            for k in &keys {
                b.push(k, EntryRef { row: k, count: 1 });
            }
            let index = b.finish();
            let run = index.base.clone();
            for probe in probes.iter().map(|&v| key(v)).chain(keys.iter().cloned()) {
                prop_assert_eq!(run.search(&probe), keys.binary_search(&probe));
            }
            check_many(&index, probes.iter().map(|&v| key(v)).chain(keys.iter().step_by(7).cloned()));
        }
    }

    /// A batch larger than the merge threshold is merged into a new run: inserts, deletes and
    /// replacements land as they would one by one, with recent changes and the run both
    /// holding keys it touches.
    #[test]
    fn bulk_updates_merge_into_the_run() {
        let key = |i: u32| (i * 7 % 30_000).to_be_bytes().to_vec();
        let mut index = RowIndex::new(false);
        let mut model = BTreeMap::new();
        let apply = |index: &mut RowIndex,
                     model: &mut BTreeMap<Vec<u8>, Entry>,
                     range: std::ops::Range<u32>,
                     delete_every: u32,
                     bulk: bool| {
            let mut updates = Vec::new();
            for i in range {
                let k = key(i);
                let existed = model.contains_key(&k);
                let new = (i % delete_every != 0).then(|| entry(&i.to_le_bytes(), 1));
                match &new {
                    Some(e) => model.insert(k.clone(), e.clone()),
                    None => model.remove(&k),
                };
                updates.push((k, new, existed));
            }
            if bulk {
                index.set_all(updates);
            } else {
                for (k, new, existed) in updates {
                    index.set(&k, new, existed);
                }
            }
        };
        apply(&mut index, &mut model, 0..20_000, u32::MAX, true); // all in one run
        apply(&mut index, &mut model, 15_000..16_000, 3, false); // recent changes on top

        // A background merge of those is under way when the bulk batch replaces the base.
        let job = index.start_merge().expect("no merge under way");
        let merged = job.run();
        apply(&mut index, &mut model, 10_000..30_000, 4, true); // overlaps both
        assert!(index.finish_merge(job, merged).is_none(), "a merge of replaced runs is dropped");
        check(&index, &model);
        assert!(index.levels.is_empty(), "the bulk batch went to the run");
    }

    /// New keys after every held key are appended to the run in place, unless a pin shares it.
    #[test]
    fn appends_in_key_order_extend_the_run() {
        let mut index = RowIndex::new(false);
        let mut model = BTreeMap::new();
        for chunk in 0..4u32 {
            let updates: Vec<_> = (chunk * 100..chunk * 100 + 100)
                .rev()
                .map(|i| (i.to_be_bytes().to_vec(), Some(entry(&i.to_le_bytes(), 1)), false))
                .collect();
            for (k, e, _) in &updates {
                model.insert(k.clone(), e.clone().unwrap());
            }
            let pin = (chunk == 2).then(|| index.clone());
            index.set_all(updates);
            assert_eq!(index.levels.is_empty(), chunk < 2, "a pinned run is not appended to");
            if let Some(pin) = pin {
                assert_eq!(pin.len(), 200);
            }
        }
        check(&index, &model);
    }

    /// Entries given out of order (or a key twice) are sorted, the last entry winning.
    #[test]
    fn builder_sorts_unsorted_input() {
        let mut b = RowIndex::builder(false);
        for (k, c) in [(b"b".as_slice(), 1), (b"a", 2), (b"b", 3), (b"", 4)] {
            b.push(k, EntryRef { row: b"r", count: c });
        }
        let index = b.finish();
        let got: Vec<(Vec<u8>, i64)> = index.iter().map(|(k, e)| (k.to_vec(), e.count)).collect();
        assert_eq!(got, vec![(b"".to_vec(), 4), (b"a".to_vec(), 2), (b"b".to_vec(), 3)]);
    }

    /// Heads order like keys whenever they differ, including across lengths.
    #[test]
    fn heads_order_like_keys() {
        let keys: [&[u8]; 11] = [
            b"",
            b"\0",
            b"\0\0",
            b"a",
            b"a\0",
            b"abcdefghijklmno",
            b"abcdefghijklmno\0",
            b"abcdefghijklmnop",
            b"abcdefghijklmnop\0",
            b"abcdefghijklmnopq",
            b"abcdefghijklmnoq",
        ];
        let mut run = RowIndex::builder(true);
        for k in keys {
            run.push(k, EntryRef { row: k, count: 1 });
        }
        let run = run.finish().base;
        for (i, a) in keys.iter().enumerate() {
            for b in keys {
                if head_order(head(a), head(b)) != Ordering::Equal || a.len().max(b.len()) <= HEAD {
                    assert_eq!(head_order(head(a), head(b)), a.cmp(&b), "{a:?} vs {b:?}");
                }
                assert_eq!(run.compare(i, b, head(b)), a.cmp(&b), "{a:?} vs {b:?}");
            }
        }
    }
}
