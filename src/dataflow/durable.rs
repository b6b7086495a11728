//! Durable view state: a materialized view's operators save what changed in their state at
//! each checkpoint's cut, so that a restart loads the view instead of recomputing it.
//!
//! A view is its result rows plus its operators' state (an aggregate's groups, a join's
//! indexes, a top-k's partitions). The result is a stored table like any other (`r/<view>`,
//! with images: [`crate::state::image`]), staged with every commit. The operators' state is
//! kept in the store as entries under `o/<view id><operator no>` ([`crate::state::keys`]):
//!
//! - Each stateful operator ([`OperatorState`]) records which of its entries a step changed
//!   ([`Dirty`]); at a checkpoint's cut — between two commits, so result and state are as of
//!   the same commit, the commit the cut's staged writes end with — the dataflow asks each
//!   view's operators for those entries ([`save`]) and stages them. A checkpoint therefore
//!   writes the groups, join rows and partition rows that changed since the previous one,
//!   each once, never the whole state.
//! - When the entries an operator changed since the last cut grow past half its state and
//!   past 1 MiB (a view's first fill, a bulk load), it stops recording them and writes itself whole at the next cut,
//!   after deleting what the store held for it: cheaper than a log of every change.
//! - An operator whose state is an index of its input's rows (a join side, a top-k), fed by
//!   stored relations through stateless operators only (scans, projections, filters), is not
//!   saved at all: its state would repeat rows the store already holds, and every change would
//!   be written twice. At start-up it is rebuilt from those relations, which are loaded before
//!   ([`OperatorState::rebuilds`]) — a sequential pass over rows in memory, cheaper than
//!   reading the same number of entries back from the store.
//! - Entry `o/<view id>FFFF` holds the text of the view's optimized plan with its schema (and
//!   the state's format). Operators are numbered in tree order, so a restart whose plan
//!   prints the same — the same SQL over the same input schemas, the same Headwater version
//!   (which decides how a plan compiles to operators) — finds each operator's state under its
//!   number ([`load`]). Any other plan (an input gained columns the view reads through `*`,
//!   an upgrade) recomputes the view from its inputs and saves it whole, as at CREATE; so
//!   does a view that reads a view which was recomputed (its saved state matches the old
//!   rows), and a view whose state does not decode (logged: the state is derived data).
//! - Entries `o/<view id>FFFE<error>` hold the view's errors ([`super::errors`]) with their
//!   counts, saved like an operator's entries.
//!
//! Operators number their own entries; each documents its encoding.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::errors::ErrorSet;
use super::operator::{Deltas, Operator};
use crate::error::{Error, Result};
use crate::state::{keys, StateStore, WriteBatch};

/// Version of the entries' encodings: a restart with a different one recomputes views.
const FORMAT: u32 = 2;

/// The operator number of the plan entry.
const PLAN_ENTRY: u16 = u16::MAX;

/// The operator number under which the view's errors are saved ([`super::errors::ErrorSet`]).
const ERRORS_ENTRY: u16 = u16::MAX - 1;

/// Changes recorded since the last save, in bytes, below which an operator keeps recording
/// them whatever its size.
const MIN_RECORDED: usize = 1 << 20;

/// [`MIN_RECORDED`], or what a test set (`usize::MAX`: not set).
static MIN_RECORDED_NOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

/// Makes operators record at most `bytes` of changes before they save themselves whole
/// (`usize::MAX`: the default), so tests exercise both ways of saving.
#[doc(hidden)]
pub fn set_min_recorded_for_tests(bytes: usize) {
    MIN_RECORDED_NOW.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

fn min_recorded() -> usize {
    match MIN_RECORDED_NOW.load(std::sync::atomic::Ordering::Relaxed) {
        usize::MAX => MIN_RECORDED,
        n => n,
    }
}

/// The state of one stateful operator, saved entry by entry.
pub trait OperatorState {
    /// Writes the entries changed since the last save (all of them, if [`StateWriter::whole`]
    /// or if the operator stopped recording changes) and forgets the changes.
    fn save(&mut self, out: &mut StateWriter<'_>);
    /// Adds one saved entry back (at start-up, before any step; entries in key order).
    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Called once every entry is loaded: the operator is now as it was at the cut, after at
    /// least one step (a view's first fill steps every operator).
    fn restored(&mut self) {}
    /// True when the operator saves nothing and is rebuilt from its input at start-up instead
    /// ([`OperatorState::rebuild`]); only for an input subtree without state of its own.
    fn rebuilds(&self) -> bool {
        false
    }
    /// Rebuilds the state from `inputs`, the whole contents of the view's inputs as one
    /// insert-only commit (at start-up, after every operator is loaded).
    fn rebuild(&mut self, _inputs: &Deltas) -> Result<()> {
        Ok(())
    }
    /// The engine time at which the operator has output due although no input changes (a
    /// temporal filter's next row to enter or leave, [`super::temporal`]).
    fn wakes_at(&self) -> Option<i64> {
        None
    }
}

/// True when `op` keeps no state: nothing under it is saved or rebuilt.
pub fn stateless(op: &mut dyn Operator) -> bool {
    let mut any = false;
    op.visit_states(&mut |_| any = true);
    !any
}

/// Where an operator's [`OperatorState::save`] writes: its own entries in a checkpoint's batch.
pub struct StateWriter<'a> {
    prefix: Vec<u8>,
    batch: &'a mut WriteBatch,
    store: &'a dyn StateStore,
    /// The view's stored state was deleted: every operator writes itself whole.
    fresh: bool,
    error: Option<Error>,
}

impl StateWriter<'_> {
    /// True when the operator must write every entry (see [`Dirty::take`]).
    pub fn must_write_all(&self) -> bool {
        self.fresh
    }

    /// Starts writing the operator whole: what the store holds for it goes first.
    pub fn whole(&mut self) {
        if self.fresh {
            return;
        }
        if let Err(e) = self.batch.delete_prefix(self.store, &self.prefix) {
            self.error.get_or_insert(e);
        }
    }

    /// Sets entry `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.batch.put(self.key(key), value);
    }

    /// Sets entry `key` to the multiplicity `n`, or removes it (`None`: the row is gone).
    pub fn put_count(&mut self, key: &[u8], n: Option<i64>) {
        match n {
            Some(n) => self.put(key, count_value(n)),
            None => self.delete(key),
        }
    }

    /// Removes entry `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.batch.delete(self.key(key));
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }
}

/// The entries an operator changed since its last save, each once however often it changed,
/// or "all of them" once listing them would cost more than writing the operator whole.
#[derive(Default)]
pub struct Dirty {
    keys: HashSet<Box<[u8]>>,
    bytes: usize,
    all: bool,
}

impl Dirty {
    /// Records that entry `key` changed; `state_bytes` is the operator's size.
    pub fn mark(&mut self, key: impl FnOnce() -> Box<[u8]>, state_bytes: usize) {
        if self.all {
            return;
        }
        let key = key();
        let len = key.len();
        if self.keys.insert(key) {
            self.bytes += len + 32;
        }
        if self.bytes > min_recorded().max(state_bytes / 2) {
            self.all = true;
            self.keys = HashSet::new();
            self.bytes = 0;
        }
    }

    /// The changed entries to write (`None`: write every entry, after [`StateWriter::whole`]),
    /// and a fresh start for the next interval.
    pub fn take(&mut self, out: &mut StateWriter<'_>) -> Option<Vec<Box<[u8]>>> {
        let keys = self.take_changes();
        if keys.is_none() || out.must_write_all() {
            out.whole();
            return None;
        }
        keys
    }

    /// [`Dirty::take`] for an operator of several parts, which decides itself whether to
    /// write whole: `None` when this part recorded too much to list.
    pub fn take_changes(&mut self) -> Option<Vec<Box<[u8]>>> {
        self.bytes = 0;
        let keys = std::mem::take(&mut self.keys);
        (!std::mem::take(&mut self.all)).then(|| keys.into_iter().collect())
    }
}

/// `a` and `b` in one key, `a` length-prefixed (u32 BE) so the pair splits back.
pub fn pair(a: &[u8], b: &[u8]) -> Box<[u8]> {
    let mut k = Vec::with_capacity(4 + a.len() + b.len());
    k.extend_from_slice(&(a.len() as u32).to_be_bytes());
    k.extend_from_slice(a);
    k.extend_from_slice(b);
    k.into()
}

/// The two parts of a [`pair`].
pub fn split_pair(key: &[u8]) -> Result<(&[u8], &[u8])> {
    let (len, rest) = key.split_first_chunk::<4>().ok_or_else(|| damaged("a key is truncated"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(damaged("a key is truncated"));
    }
    Ok(rest.split_at(len))
}

/// A multiplicity as stored.
pub fn count_value(n: i64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

/// A stored row's multiplicity: never 0 (a row that is gone has no entry).
pub fn read_multiplicity(value: &[u8]) -> Result<i64> {
    match read_count(value)? {
        0 => Err(damaged("a row with multiplicity 0")),
        n => Ok(n),
    }
}

/// A stored count.
pub fn read_count(value: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| damaged("a count is not 8 bytes"))?;
    Ok(i64::from_le_bytes(bytes))
}

/// The error for an entry that does not decode.
pub fn damaged(what: &str) -> Error {
    Error::Storage(format!("a materialized view's stored state is damaged: {what}"))
}

#[derive(Serialize, Deserialize, PartialEq)]
struct PlanEntry {
    format: u32,
    /// The Headwater version that compiled the plan (absent before 2026-12-06: recomputes).
    #[serde(default)]
    version: String,
    plan: String,
}

impl PlanEntry {
    fn now(plan: &str) -> PlanEntry {
        PlanEntry { format: FORMAT, version: env!("CARGO_PKG_VERSION").to_string(), plan: plan.to_string() }
    }
}

/// What a view's saved state is valid for: its optimized plan, printed with its schema.
pub fn plan_text(plan: &datafusion::logical_expr::LogicalPlan) -> String {
    plan.display_indent_schema().to_string()
}

fn plan_key(view: u64) -> Vec<u8> {
    keys::operator_state(view, PLAN_ENTRY)
}

/// Calls `f` with each stateful operator of `root` and its number.
fn each_state(root: &mut dyn Operator, f: &mut dyn FnMut(u16, &mut dyn OperatorState)) {
    let mut n = 0u16;
    root.visit_states(&mut |op| {
        f(n, op);
        n += 1;
    });
}

/// Stages in `batch` what changed in view `view`'s operators since the last save; `fresh`:
/// the view's stored state is replaced whole (a new view, or operators rebuilt), under
/// `plan` (the text [`load`] compares).
pub fn save(
    view: u64,
    plan: &str,
    root: &mut dyn Operator,
    errors: &mut ErrorSet,
    fresh: bool,
    store: &dyn StateStore,
    batch: &mut WriteBatch,
) -> Result<()> {
    if fresh {
        batch.delete_prefix(store, &keys::view_state(view))?;
        batch.put(plan_key(view), serde_json::to_vec(&PlanEntry::now(plan)).expect("serializable"));
    }
    let mut error = None;
    let mut save_one = |n: u16, op: &mut dyn OperatorState| {
        let mut out = StateWriter { prefix: keys::operator_state(view, n), batch, store, fresh, error: None };
        op.save(&mut out);
        if let Some(e) = out.error {
            error.get_or_insert(e);
        }
    };
    each_state(root, &mut save_one);
    save_one(ERRORS_ENTRY, errors);
    error.map_or(Ok(()), Err)
}

/// Loads view `view`'s operator state into `root` (freshly compiled from `plan`), and
/// rebuilds the operators that are not saved from `inputs` (the view's inputs' contents,
/// computed only if one is). `false`: nothing is stored for this plan, and `root` is untouched.
pub fn load(
    view: u64,
    plan: &str,
    root: &mut dyn Operator,
    errors: &mut ErrorSet,
    store: &dyn StateStore,
    inputs: &dyn Fn() -> Result<Deltas>,
) -> Result<bool> {
    let Some(entry) = store.get(&plan_key(view))? else { return Ok(false) };
    let entry: PlanEntry = serde_json::from_slice(&entry).map_err(|e| damaged(&e.to_string()))?;
    if entry != PlanEntry::now(plan) {
        return Ok(false);
    }
    let mut result = Ok(());
    let mut rebuilt = false;
    let mut load_one = |n: u16, op: &mut dyn OperatorState| {
        if result.is_err() {
            return;
        }
        let prefix = keys::operator_state(view, n);
        result = store.scan_prefix_each(&prefix, &mut |k, v| {
            let entry = &k[prefix.len()..];
            op.load(entry, v).map_err(|e| match e {
                Error::Storage(m) => {
                    Error::Storage(format!("{m} (operator {n}, entry {:?})", &entry[..entry.len().min(32)]))
                }
                e => e,
            })
        });
        op.restored();
        rebuilt |= op.rebuilds();
    };
    each_state(root, &mut load_one);
    load_one(ERRORS_ENTRY, errors);
    result?;
    if rebuilt {
        let inputs = inputs()?;
        let mut result = Ok(());
        root.visit_states(&mut |op| {
            if result.is_ok() && op.rebuilds() {
                result = op.rebuild(&inputs);
            }
        });
        result?;
    }
    Ok(true)
}

/// Stages the removal of everything view `view`'s operators stored (DROP, or a recompute).
pub fn forget(view: u64, store: &dyn StateStore, batch: &mut WriteBatch) -> Result<()> {
    batch.delete_prefix(store, &keys::view_state(view)).map(drop)
}
