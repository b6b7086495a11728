//! Equi-joins (inner, left, right, full, semi, anti) with residual predicates.
//!
//! State: each side keeps an index of its rows by join key — a hash map from the key (Arrow
//! row format) to the rows with that key (row format too) and their multiplicities; a key
//! with one row (the common case, e.g. a primary key) holds it inline. Rows whose key
//! contains NULL never match and are not stored (unless the join treats NULLs as equal).
//!
//! Delta rule, applied left then right so that each pair is counted once:
//!
//! ```text
//! Δ(L ⋈ R) = ΔL ⋈ R_old  +  L_new ⋈ ΔR
//! ```
//!
//! The rows an outer join preserves (and what semi/anti joins keep) depend on whether a row
//! has any partner, which a delta of the *other* side can flip for rows it does not contain.
//! For every key K the other side's delta touches, the operator computes that part from the
//! state before and after: `Δ = unmatched_new(K) − unmatched_old(K)` (matched, for semi
//! joins), consolidated so that rows whose status did not change cancel. Under every other
//! key the other side is the same before and after, so the part is linear: the preserved
//! side's own delta rows, each kept by its own partners (one probe per delta row, the common
//! case of a semi join fed by its large side). Rows with a NULL key are never matched, so
//! their part is linear too: their own delta, NULL-extended.
//!
//! An update of a side's index groups the delta's rows by key (deletions first), so each key
//! is found once: an update's −old +new replaces the row in place.
//!
//! A side that reads a stored relation's columns as they are (a scan, maybe projected) and
//! joins on that relation's whole primary key keeps no index: its rows *are* the relation's
//! rows under the same key ([`TableRows`]), so the side probes a pin of them. That removes an
//! index update from every commit of the relation and the side's copy of its rows (the join
//! of a table with its extension table on the primary key: `orders ⋈ order_extension`).
//!
//! Errors ([`super::errors`]): a delta row whose join key fails to evaluate becomes an error
//! and never reaches the index. A pair on which the residual predicate fails does not match
//! and is an error of the pair delta `ΔL ⋈ R_old + L_new ⋈ ΔR` (inner and outer joins), so
//! it is retracted with the pair; semi and anti joins have no pair delta, so there such a
//! pair fails the step (the view then stops, errored, until a recompute succeeds).
//!
//! `NOT IN (subquery)` is a null-aware anti join, whose output also depends on the right side
//! as a whole; see [`null_aware`]. What of a join's state is saved at checkpoints, and what is
//! rebuilt from its inputs at start-up: [`saved`].

mod delta;
mod null_aware;
mod pairs;
mod saved;

use std::collections::hash_map::Entry::{Occupied, Vacant};
use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use super::durable::{pair, Dirty, OperatorState};
use super::errors::{screen, ErrorDelta};
use super::operator::{evaluate, indent, Deltas, Operator};
use crate::change::{ChangeBatch, FastMap};
use crate::error::{Error, Result};
use crate::state::index::Key;
use crate::state::table::PinnedRows;
use crate::state::TableState;

/// One input of a join and its index.
pub struct Side {
    pub input: Box<dyn Operator>,
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    rows: RowConverter,
    /// Keys inline (most join keys are a few bytes): a probe reads no second allocation.
    /// Empty when the side is backed by its relation's rows.
    index: FastMap<Key, Group>,
    bytes: usize,
    backed: Option<TableRows>,
    /// Rows changed since the last save ([`durable`](super::durable)).
    dirty: Dirty,
    /// The input keeps no state (see [`Join::rebuilds_side`]).
    input_stateless: bool,
    /// The index is saved (changes recorded), rather than rebuilt or absent.
    saved: bool,
}

/// A join side whose rows are a stored relation's rows keyed by the join key (its primary
/// key, in the same row format): the side probes the relation's rows instead of an index.
///
/// Which rows: a step starts from the relation's rows *before* the commit, which for a live
/// commit are its current rows (the dataflow applies a commit to tables only after every view
/// has stepped); after the side's own delta, the rows *after* it, which a live step computes
/// (a private copy with the delta applied) only when the rest of the step reads them. A
/// replayed commit (a view's first fill, the commits queued meanwhile) carries the rows after
/// it ([`Deltas::after`]), and the rows before are the previous replay's after.
struct TableRows {
    table: Arc<TableState>,
    /// The relation's column for each of the side's columns.
    columns: Vec<usize>,
    /// The rows the step has reached (`None`: no rows, before a view's first fill).
    now: Option<PinnedRows>,
    /// Set while a live step skipped computing the rows after the side's delta: `now` is
    /// stale and nothing may read it.
    stale: bool,
    /// Replaying: the rows after the step being replayed.
    after: Option<PinnedRows>,
}

impl TableRows {
    /// Positions the side before this step's commit.
    fn begin(&mut self, inputs: &Deltas) {
        self.stale = false;
        match inputs.after(self.table.id()) {
            Some(after) => {
                // Replaying: before is the previous replay's after (none before the fill).
                self.now = self.after.replace(after.clone());
            }
            None => {
                self.after = None;
                self.now = Some(self.table.pin());
            }
        }
    }

    /// Moves past the side's delta. `needed`: the rest of the step reads the rows after it.
    fn advance(&mut self, inputs: &Deltas, needed: bool) -> Result<()> {
        if let Some(after) = &self.after {
            self.now = Some(after.clone());
            return Ok(());
        }
        if !needed {
            self.stale = true;
            return Ok(());
        }
        let (Some(before), Some(change)) = (&self.now, inputs.get(&self.table.id())) else {
            return Err(Error::Internal("a table-backed join side stepped without its table's change".into()));
        };
        self.now = Some(self.table.apply_to_pinned(before, change)?);
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Option<(&[u8], i64)> {
        debug_assert!(!self.stale, "a table-backed join side read after a skipped advance");
        self.now.as_ref().and_then(|p| p.get(key)).map(|e| (e.row, e.count))
    }
}

/// The rows of one join key.
enum Group {
    One(Box<[u8]>, i64),
    Many(FastMap<Box<[u8]>, i64>),
}

/// Per stored row: the boxed bytes' header and allocator overhead, and the map slot.
const ROW_OVERHEAD: usize = 48;

impl Group {
    /// Adds `w` copies of `row` to a key's rows (`None`: the key has none), and returns
    /// `bytes` (the side's accounting) adjusted. A group left with one row holds it inline.
    fn apply(group: &mut Option<Group>, row: &[u8], w: i64, bytes: usize) -> usize {
        let (added, removed) = match group {
            None => {
                *group = Some(Group::One(row.into(), w));
                (row.len() + ROW_OVERHEAD, 0)
            }
            Some(Group::One(r, n)) if r.as_ref() == row => {
                *n += w;
                if *n == 0 {
                    *group = None;
                    (0, row.len() + ROW_OVERHEAD)
                } else {
                    (0, 0)
                }
            }
            Some(g) => {
                if let Group::One(r, n) = g {
                    let mut many = FastMap::default();
                    many.insert(std::mem::take(r), *n);
                    *g = Group::Many(many);
                }
                let Group::Many(many) = g else { unreachable!("converted above") };
                let change = match many.get_mut(row) {
                    Some(n) => {
                        *n += w;
                        if *n == 0 {
                            many.remove(row);
                            (0, row.len() + ROW_OVERHEAD)
                        } else {
                            (0, 0)
                        }
                    }
                    None => {
                        many.insert(row.into(), w);
                        (row.len() + ROW_OVERHEAD, 0)
                    }
                };
                match many.len() {
                    0 => *group = None,
                    1 => {
                        let (r, n) = many.drain().next().expect("one row");
                        *group = Some(Group::One(r, n));
                    }
                    _ => {}
                }
                change
            }
        };
        (bytes + added).saturating_sub(removed)
    }
}

impl Side {
    /// A join input with its key expressions.
    pub fn new(mut input: Box<dyn Operator>, keys: Vec<Arc<dyn PhysicalExpr>>) -> Result<Self> {
        let input_stateless = super::durable::stateless(input.as_mut());
        let schema = input.schema();
        let rows = RowConverter::new(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        Ok(Side {
            input,
            keys,
            schema,
            rows,
            index: FastMap::default(),
            bytes: 0,
            backed: None,
            dirty: Dirty::default(),
            input_stateless,
            // Settled by the join, which knows whether the side is saved.
            saved: true,
        })
    }

    /// The rows stored under `key`, with multiplicities (no allocation: called per probe).
    fn matches<'a>(&'a self, key: &[u8]) -> Matches<'a> {
        if let Some(t) = &self.backed {
            return Matches::One(t.get(key));
        }
        match self.index.get(key) {
            None => Matches::One(None),
            Some(Group::One(row, n)) => Matches::One(Some((row.as_ref(), *n))),
            Some(Group::Many(rows)) => Matches::Many(rows.iter()),
        }
    }

    /// Applies `change` to the index. The rows are grouped by key (deletions first), so each
    /// key is found once however many rows it has in the change (an update's −old +new
    /// replaces the row in place).
    fn update(&mut self, change: &ChangeBatch, keys: &Keys, inputs: &Deltas, needed: bool) -> Result<()> {
        if let Some(t) = &mut self.backed {
            return t.advance(inputs, needed);
        }
        let rows = self.rows.convert_columns(change.data.columns())?;
        let mut order: Vec<(&[u8], bool, usize)> = (0..change.len())
            .filter(|&i| !keys.null[i])
            .map(|i| (keys.rows.row(i).data(), change.weights[i] > 0, i))
            .collect();
        order.sort_unstable();
        let mut at = 0;
        while at < order.len() {
            let key = order[at].0;
            let run = order[at..].iter().take_while(|(k, ..)| *k == key).count();
            let changes = order[at..at + run].iter().map(|&(_, _, i)| (rows.row(i).data(), change.weights[i]));
            at += run;
            // The key's rows taken out of the map (one probe), changed, then put back.
            let (mut group, slot) = match self.index.entry(Key::from_slice(key)) {
                Occupied(mut slot) => {
                    (Some(std::mem::replace(slot.get_mut(), Group::One(Box::default(), 0))), Ok(slot))
                }
                Vacant(slot) => (None, Err(slot)),
            };
            for (row, w) in changes {
                self.bytes = Group::apply(&mut group, row, w, self.bytes);
                if self.saved {
                    self.dirty.mark(|| pair(key, row), self.bytes);
                }
            }
            match (group, slot) {
                (Some(g), Ok(mut slot)) => *slot.get_mut() = g,
                (None, Ok(slot)) => {
                    slot.remove();
                    self.bytes = self.bytes.saturating_sub(key.len() + ROW_OVERHEAD);
                }
                (Some(g), Err(slot)) => {
                    slot.insert(g);
                    self.bytes += key.len() + ROW_OVERHEAD;
                }
                (None, Err(_)) => {}
            }
        }
        Ok(())
    }

    fn decode(&self, rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        if let Some(t) = &self.backed {
            return match &t.now {
                Some(pin) if !rows.is_empty() => pin.decode_columns(rows, &t.columns),
                _ => Ok(self.schema.fields().iter().map(|f| new_null_array(f.data_type(), 0)).collect()),
            };
        }
        let parser = self.rows.parser();
        Ok(self.rows.convert_rows(rows.iter().map(|r| parser.parse(r)))?)
    }
}

/// Whether `side`, reading `columns` of `table`, can probe the table's rows: its key
/// expressions are the table's primary key columns in order, typed as the join's keys.
fn backable(side: &Side, table: &TableState, columns: &[usize], key_types: &[DataType]) -> bool {
    use datafusion::physical_expr::expressions::Column;
    let schema = table.schema();
    let Some(pk) = table.key_columns() else { return false };
    let same_columns = columns.len() == side.schema.fields().len()
        && columns
            .iter()
            .zip(side.schema.fields())
            .all(|(&c, f)| schema.fields().get(c).is_some_and(|t| t.data_type() == f.data_type()));
    same_columns
        && pk.len() == side.keys.len()
        && side.keys.iter().zip(pk).zip(key_types).all(|((k, &p), t)| {
            k.downcast_ref::<Column>().is_some_and(|c| columns.get(c.index()) == Some(&p))
                && schema.field(p).data_type() == t
        })
}

/// The rows of one key of a [`Side`].
enum Matches<'a> {
    One(Option<(&'a [u8], i64)>),
    Many(std::collections::hash_map::Iter<'a, Box<[u8]>, i64>),
}

impl<'a> Iterator for Matches<'a> {
    type Item = (&'a [u8], i64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Matches::One(one) => one.take(),
            Matches::Many(rows) => rows.next().map(|(r, n)| (r.as_ref(), *n)),
        }
    }
}

/// A change's join keys: encoded, and which rows have a NULL in theirs.
struct Keys {
    rows: Rows,
    null: Vec<bool>,
}

impl Keys {
    /// The distinct keys without a NULL.
    fn non_null(&self) -> BTreeSet<Vec<u8>> {
        (0..self.null.len()).filter(|&i| !self.null[i]).map(|i| self.rows.row(i).data().to_vec()).collect()
    }
}

/// An equi-join of two inputs.
pub struct Join {
    pub left: Side,
    pub right: Side,
    pub kind: JoinType,
    /// Residual predicate over `left ++ right` columns.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub nulls_equal: bool,
    /// Set for `x NOT IN (SELECT y ...)`: the state that makes its NULL semantics incremental.
    null_aware: Option<null_aware::NullAware>,
    key_format: RowConverter,
    key_types: Vec<DataType>,
    /// `left ++ right`, the row the filter and inner/outer outputs see.
    pair_schema: SchemaRef,
    schema: SchemaRef,
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Left,
    Right,
}

impl Join {
    /// Builds the operator; `schema` is the output (per `kind`), `pair_schema` is left ++ right.
    pub fn new(
        left: Side,
        right: Side,
        kind: JoinType,
        filter: Option<Arc<dyn PhysicalExpr>>,
        nulls_equal: bool,
        pair_schema: SchemaRef,
        schema: SchemaRef,
    ) -> Result<Self> {
        let probe = RecordBatch::new_empty(left.schema.clone());
        let key_types =
            left.keys.iter().map(|k| Ok(evaluate(k, &probe)?.data_type().clone())).collect::<Result<Vec<_>>>()?;
        let key_format = RowConverter::new(key_types.iter().map(|t| SortField::new(t.clone())).collect())?;
        let mut join = Join {
            left,
            right,
            kind,
            filter,
            nulls_equal,
            null_aware: None,
            key_format,
            key_types,
            pair_schema,
            schema,
        };
        join.settle_saving();
        Ok(join)
    }

    /// Backs each side given as `(relation, columns)` — the side's rows are those columns of
    /// the relation's rows, one per side column — by the relation's rows ([`TableRows`]),
    /// when the side's join key is the relation's whole primary key in key order and of the
    /// same types (so both encode keys alike).
    pub fn back_sides(&mut self, sides: [Option<(Arc<TableState>, Vec<usize>)>; 2]) {
        let [left, right] = sides;
        for (side, source) in [(&mut self.left, left), (&mut self.right, right)] {
            let Some((table, columns)) = source else { continue };
            if self.null_aware.is_some() || !backable(side, &table, &columns, &self.key_types) {
                continue;
            }
            side.backed = Some(TableRows { table, columns, now: None, stale: false, after: None });
        }
        self.settle_saving();
    }

    /// True when side `w` keeps an index that is rebuilt from its input at start-up rather
    /// than saved ([`durable`](super::durable)): its input keeps no state (the index repeats
    /// stored rows), it is not backed by its relation's rows, and the join is not null-aware
    /// (whose left rows with a NULL key are saved with the index they complete).
    fn rebuilds_side(&self, w: Which) -> bool {
        let side = self.side(w);
        side.input_stateless && side.backed.is_none() && self.null_aware.is_none()
    }

    /// Marks which sides record their changes to be saved (after backing and null-awareness
    /// are settled).
    fn settle_saving(&mut self) {
        for w in [Which::Left, Which::Right] {
            let saved = !self.rebuilds_side(w) && self.side(w).backed.is_none();
            self.side_mut(w).saved = saved;
        }
    }

    fn side(&self, w: Which) -> &Side {
        self.sides(w).0
    }

    fn side_mut(&mut self, w: Which) -> &mut Side {
        match w {
            Which::Left => &mut self.left,
            Which::Right => &mut self.right,
        }
    }

    /// Side `w` and the other side.
    fn sides(&self, w: Which) -> (&Side, &Side) {
        match w {
            Which::Left => (&self.left, &self.right),
            Which::Right => (&self.right, &self.left),
        }
    }

    fn keys(&self, w: Which, change: &ChangeBatch) -> Result<Keys> {
        let side = self.side(w);
        let mut arrays = Vec::with_capacity(side.keys.len());
        for (k, t) in side.keys.iter().zip(&self.key_types) {
            let a = evaluate(k, &change.data)?;
            arrays.push(if a.data_type() == t { a } else { cast(&a, t)? });
        }
        let null = (0..change.len()).map(|i| !self.nulls_equal && arrays.iter().any(|a| a.is_null(i))).collect();
        Ok(Keys { rows: self.key_format.convert_columns(&arrays)?, null })
    }

    fn inner_like(&self) -> bool {
        matches!(self.kind, JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full)
    }
}

impl Operator for Join {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let dl = self.left.input.step(inputs, errors)?;
        let dr = self.right.input.step(inputs, errors)?;
        let dl = dl.map(|d| screen(&self.left.keys, d, errors)).transpose()?;
        let dr = dr.map(|d| screen(&self.right.keys, d, errors)).transpose()?;
        if dl.is_none() && dr.is_none() {
            return Ok(None);
        }
        for side in [&mut self.left, &mut self.right] {
            if let Some(t) = &mut side.backed {
                t.begin(inputs);
            }
        }
        let kl = dl.as_ref().map(|d| self.keys(Which::Left, d)).transpose()?;
        let kr = dr.as_ref().map(|d| self.keys(Which::Right, d)).transpose()?;
        if self.null_aware.is_some() {
            return self.step_null_aware(dl, dr, kl, kr, inputs);
        }
        // Per preserved side, the keys whose partners the other side's delta changes: there
        // the kept rows are computed before and after; elsewhere from the side's own delta.
        let key_set = |k: &Option<Keys>| k.as_ref().map(Keys::non_null).unwrap_or_default();
        let preserved: Vec<(Which, bool, BTreeSet<Vec<u8>>)> = self
            .preserved()
            .into_iter()
            .map(|(w, want)| (w, want, key_set(if w == Which::Left { &kr } else { &kl })))
            .collect();
        let mut parts: Vec<ChangeBatch> = Vec::new();
        for (w, want, keys) in &preserved {
            parts.extend(self.preserved_part(*w, *want, keys, -1)?);
        }
        for (which, delta, keys) in [(Which::Left, &dl, &kl), (Which::Right, &dr, &kr)] {
            let (Some(d), Some(k)) = (delta, keys) else { continue };
            if self.inner_like() {
                parts.extend(self.join_delta(which, d, k, errors)?);
            }
            parts.extend(self.null_key_part(which, d, k)?);
            for (w, want, skip) in preserved.iter().filter(|(w, ..)| *w == which) {
                parts.extend(self.preserved_linear(*w, *want, d, k, skip)?);
            }
            // Whether the rest of the step reads this side after its delta: the right side's
            // delta probes the left; the preserved parts after the deltas read both sides,
            // under the keys the other side's delta touches (none when only one side changed:
            // a semi join fed by one side alone is linear and reads neither afterwards).
            let needed =
                (which == Which::Left && dr.is_some()) || preserved.iter().any(|(_, _, keys)| !keys.is_empty());
            match which {
                Which::Left => self.left.update(d, k, inputs, needed)?,
                Which::Right => self.right.update(d, k, inputs, needed)?,
            }
        }
        for (w, want, keys) in &preserved {
            parts.extend(self.preserved_part(*w, *want, keys, 1)?);
        }
        self.combine(parts)
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.left.input.inputs(out);
        self.right.input.inputs(out);
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        let on: Vec<String> = self.left.keys.iter().zip(&self.right.keys).map(|(l, r)| format!("{l} = {r}")).collect();
        let filter = self.filter.as_ref().map(|f| format!(" filter {f}")).unwrap_or_default();
        let state = |s: &Side| match &s.backed {
            Some(t) => format!("the rows of {}", t.table.name()),
            None => format!("{} keys", s.index.len()),
        };
        out.push(format!(
            "{}{:?}Join on [{}]{} (state: left {}, right {}, {} bytes)",
            indent(depth),
            self.kind,
            on.join(", "),
            filter,
            state(&self.left),
            state(&self.right),
            self.left.bytes + self.right.bytes
        ));
        self.left.input.explain(depth + 1, out);
        self.right.input.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.left.bytes + self.right.bytes + self.left.input.state_bytes() + self.right.input.state_bytes()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        f(self);
        self.left.input.visit_states(f);
        self.right.input.visit_states(f);
    }
}

#[cfg(test)]
mod tests {
    /// Inner, outer, semi and anti joins against DataFusion, over random deltas to both
    /// sides in the same commit (the delta rule's ΔA⋈ΔB term) and to one side at a time.
    #[tokio::test]
    async fn joins_match_a_recomputation() {
        for (i, sql) in [
            "SELECT t.k, u.k AS uk, t.v FROM t JOIN u ON t.g = u.g",
            "SELECT t.k, u.k AS uk FROM t LEFT JOIN u ON t.g = u.g AND u.v > 2",
            "SELECT t.k, u.k AS uk FROM t FULL JOIN u ON t.v = u.v",
            "SELECT k FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.g = t.g)",
            "SELECT k FROM t WHERE g NOT IN (SELECT v FROM u)",
            // Mark joins: EXISTS / IN under OR (a semi and an anti join, marked).
            "SELECT k, v FROM t WHERE v > 6 OR EXISTS (SELECT 1 FROM u WHERE u.g = t.g AND u.v > t.v)",
            "SELECT k FROM t WHERE v < 2 OR g IN (SELECT v FROM u WHERE k % 3 = 0)",
            "SELECT k FROM t WHERE v IS NULL OR NOT EXISTS (SELECT 1 FROM u WHERE u.v = t.g)",
        ]
        .into_iter()
        .enumerate()
        {
            crate::dataflow::testing::check(sql, 31 + i as u64, crate::dataflow::testing::STEPS).await;
        }
    }
}
