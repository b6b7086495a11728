//! An aggregate's saved state ([`durable`](crate::dataflow::durable)): one entry per group
//! (its row count and linear accumulators) and one per value of each multiset aggregate, so a
//! checkpoint writes the groups and values a commit changed.

use super::{Acc, Aggregate, Group};
use crate::change::FastMap;
use crate::dataflow::durable::{count_value, damaged, pair, read_multiplicity, split_pair, OperatorState, StateWriter};
use crate::error::Result;

/// The entry of a group: `g` ++ group key.
pub(super) fn group_entry(key: &[u8]) -> Box<[u8]> {
    [b"g", key].concat().into()
}

/// The entry of one value of aggregate `agg`'s multiset in a group: `v` ++ agg (u16 BE) ++
/// [`pair`]`(group key, value)`.
pub(super) fn value_entry(agg: usize, key: &[u8], value: &[u8]) -> Box<[u8]> {
    [b"v".as_slice(), &(agg as u16).to_be_bytes(), &pair(key, value)].concat().into()
}

/// A group's row count then, per aggregate, its linear part (little-endian): `count` its i64,
/// `sum`/`avg` the i128 sum, the f64 sum and the i64 count; multisets nothing (their values
/// are entries of their own).
fn encode_group(group: &Group) -> Vec<u8> {
    let mut v = group.rows.to_le_bytes().to_vec();
    for acc in &group.accs {
        match acc {
            Acc::Count(n) => v.extend_from_slice(&n.to_le_bytes()),
            Acc::Sum { int, float, n } => {
                v.extend_from_slice(&int.to_le_bytes());
                v.extend_from_slice(&float.to_le_bytes());
                v.extend_from_slice(&n.to_le_bytes());
            }
            Acc::Values(_) => {}
        }
    }
    v
}

/// Reads [`encode_group`] into a new group's accumulators.
fn decode_group(group: &mut Group, bytes: &[u8]) -> Result<()> {
    fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N]> {
        let (head, rest) = bytes.split_first_chunk::<N>().ok_or_else(|| damaged("a group is truncated"))?;
        *bytes = rest;
        Ok(*head)
    }
    let mut bytes = bytes;
    group.rows = i64::from_le_bytes(take(&mut bytes)?);
    for acc in &mut group.accs {
        match acc {
            Acc::Count(n) => *n = i64::from_le_bytes(take(&mut bytes)?),
            Acc::Sum { int, float, n } => {
                *int = i128::from_le_bytes(take(&mut bytes)?);
                *float = f64::from_le_bytes(take(&mut bytes)?);
                *n = i64::from_le_bytes(take(&mut bytes)?);
            }
            Acc::Values(_) => {}
        }
    }
    match bytes.is_empty() {
        true => Ok(()),
        false => Err(damaged("a group is longer than its aggregates")),
    }
}

/// Entries: one per group ([`group_entry`], [`encode_group`]) and one per value of a
/// multiset aggregate ([`value_entry`], its multiplicity).
impl OperatorState for Aggregate {
    fn save(&mut self, out: &mut StateWriter<'_>) {
        let Some(changed) = self.dirty.take(out) else {
            for (key, &slot) in &self.index {
                let group = &mut self.groups_state[slot as usize];
                group.dirty = false;
                out.put(&group_entry(key), encode_group(group));
                for (n, acc) in group.accs.iter().enumerate() {
                    if let Acc::Values(map) = acc {
                        for (v, count) in map {
                            out.put(&value_entry(n, key, v), count_value(*count));
                        }
                    }
                }
            }
            return;
        };
        for entry in changed {
            match entry.split_first() {
                Some((b'g', key)) => match self.index.get(key) {
                    Some(&slot) => {
                        let group = &mut self.groups_state[slot as usize];
                        group.dirty = false;
                        out.put(&entry, encode_group(group));
                    }
                    None => out.delete(&entry),
                },
                Some((b'v', rest)) => out.put_count(&entry, value_of(&self.index, &self.groups_state, rest)),
                _ => {}
            }
        }
    }

    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        match key.split_first() {
            Some((b'g', group_key)) => {
                let slot = self.insert_group(group_key);
                decode_group(&mut self.groups_state[slot as usize], value)
            }
            Some((b'v', rest)) => {
                let (agg, rest) = rest.split_first_chunk::<2>().ok_or_else(|| damaged("a value is truncated"))?;
                let (group_key, v) = split_pair(rest)?;
                let slot = *self.index.get(group_key).ok_or_else(|| damaged("a value has no group"))?;
                let group = &mut self.groups_state[slot as usize];
                let Some(Acc::Values(map)) = group.accs.get_mut(u16::from_be_bytes(*agg) as usize) else {
                    return Err(damaged("a value of an aggregate without values"));
                };
                map.insert(v.to_vec(), read_multiplicity(value)?);
                self.bytes += v.len() + 40;
                Ok(())
            }
            _ => Err(damaged("an aggregate entry of unknown kind")),
        }
    }

    fn restored(&mut self) {
        self.started = true;
    }
}

/// The multiplicity of the value a [`value_entry`] (without its `v`) names, if stored.
fn value_of(index: &FastMap<Vec<u8>, u32>, groups: &[Group], entry: &[u8]) -> Option<i64> {
    let (agg, rest) = entry.split_first_chunk::<2>()?;
    let (key, v) = split_pair(rest).ok()?;
    let group = &groups[*index.get(key)? as usize];
    match group.accs.get(u16::from_be_bytes(*agg) as usize)? {
        Acc::Values(map) => map.get(v).copied(),
        _ => None,
    }
}
