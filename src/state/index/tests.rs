use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::run::{head_order, HEAD};
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
