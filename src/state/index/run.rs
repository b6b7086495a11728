//! The immutable sorted run every level and base of a [`super::RowIndex`] is made of, the
//! builder that fills one, and the merge of two (see the module documentation of
//! [`super`]).

use std::cmp::Ordering;

use std::sync::Arc;

use super::{EntryRef, RowIndex};

/// Bytes of a key its head holds; the head's last byte is the key's length.
pub(super) const HEAD: usize = 15;

/// Heads per fence (see [`Run::search_head`]).
pub(super) const FENCE: usize = 16;

/// Doubling steps an interpolated lookup takes from its guess before it falls back to the
/// fences (see [`Run::search_interpolated`]): it then brackets keys within 2⁵ entries.
pub(super) const GALLOP: u32 = 5;

/// The first [`HEAD`] bytes of `key`, zero-padded, then its length (capped at 255), as a
/// big-endian integer. Compared with [`head_order`], heads order like their keys: a shorter
/// key's padding is below any byte where a longer one could differ, and two keys with the same
/// padded prefix of which one is at most [`HEAD`] bytes differ by trailing bytes, so the
/// shorter (smaller length byte) is the smaller. Only two keys longer than [`HEAD`] bytes with
/// one prefix need their bytes compared.
pub(super) fn head(key: &[u8]) -> u128 {
    let mut bytes = [0u8; HEAD + 1];
    let n = key.len().min(HEAD);
    bytes[..n].copy_from_slice(&key[..n]);
    bytes[HEAD] = key.len().min(255) as u8;
    u128::from_be_bytes(bytes)
}

/// The order of two keys from their heads; `Equal` for equal keys of at most [`HEAD`] bytes
/// and for two longer keys with one prefix, whose bytes then decide.
pub(super) fn head_order(a: u128, b: u128) -> Ordering {
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
pub(super) struct Run {
    pub(super) heads: Vec<u128>,
    /// `heads[0]`, `heads[FENCE]`, `heads[2 * FENCE]`, ...
    pub(super) fences: Vec<u128>,
    pub(super) key_ends: Vec<usize>,
    pub(super) keys: Vec<u8>,
    /// Empty when every row is its own key (multisets).
    pub(super) row_ends: Vec<usize>,
    pub(super) rows: Vec<u8>,
    /// Empty when every count is 1 (always, in a keyed table's base).
    pub(super) counts: Vec<i64>,
}

impl Run {
    pub(super) fn len(&self) -> usize {
        self.heads.len()
    }

    pub(super) fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.keys[start..self.key_ends[i]]
    }

    /// The order of entry `i`'s key against `key`, whose head is `h`.
    pub(super) fn compare(&self, i: usize, key: &[u8], h: u128) -> Ordering {
        match head_order(self.heads[i], h) {
            Ordering::Equal if key.len() > HEAD => self.key(i).cmp(key),
            order => order,
        }
    }

    /// The order of entry `i`'s key against entry `j`'s of `other`.
    pub(super) fn compare_at(&self, i: usize, other: &Run, j: usize) -> Ordering {
        match head_order(self.heads[i], other.heads[j]) {
            Ordering::Equal if self.heads[i] as u8 as usize > HEAD => self.key(i).cmp(other.key(j)),
            order => order,
        }
    }

    pub(super) fn entry(&self, i: usize) -> EntryRef<'_> {
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
    pub(super) fn search(&self, key: &[u8]) -> Result<usize, usize> {
        self.search_head(key, head(key))
    }

    /// The position of `key` (whose head `h` the caller has computed), or where it would be
    /// inserted. The fences narrow the search to the entries whose heads cannot order them on
    /// either side of `key` (one block of [`FENCE`] unless long keys share a prefix across
    /// blocks).
    pub(super) fn search_head(&self, key: &[u8], h: u128) -> Result<usize, usize> {
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
    pub(super) fn search_interpolated(&self, key: &[u8], h: u128) -> Option<Result<usize, usize>> {
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
    pub(super) fn guess(&self, h: u128) -> Option<usize> {
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
    pub(super) fn search_many(&self, keys: &[&[u8]], heads: &[u128], wanted: &[usize]) -> Vec<(usize, usize)> {
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
    pub(super) fn push(&mut self, key: &[u8], entry: EntryRef<'_>, rows_are_keys: bool) {
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
    pub(super) fn last_key(&self) -> Option<&[u8]> {
        self.len().checked_sub(1).map(|i| self.key(i))
    }

    pub(super) fn bytes(&self) -> usize {
        self.keys.len()
            + self.rows.len()
            + 16 * (self.heads.len() + self.fences.len())
            + 8 * (self.key_ends.len() + self.row_ends.len() + self.counts.len())
    }
}

/// Builds a [`RowIndex`] from entries, fastest when they come in key order (a store scan).
pub struct IndexBuilder {
    pub(super) run: Run,
    pub(super) rows_are_keys: bool,
    /// Set once an entry arrives out of order; [`IndexBuilder::finish`] then sorts.
    pub(super) unsorted: bool,
    /// How many entries are coming and the bytes of their keys and rows together
    /// ([`IndexBuilder::expect`]); the first push sizes the buffers from it.
    pub(super) expected: Option<(usize, usize)>,
}

impl IndexBuilder {
    /// Appends the entries `range` of `run`, which sort after everything pushed so far.
    pub(super) fn extend_from(&mut self, run: &Run, range: std::ops::Range<usize>) {
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
    pub(super) fn finish_run(self) -> Run {
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
pub(super) fn merge_runs(older: &Run, newer: &Run, keep_tombstones: bool, rows_are_keys: bool) -> Run {
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
