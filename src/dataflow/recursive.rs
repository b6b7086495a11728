//! `WITH RECURSIVE` in a materialized view: the fixpoint `X = S ∪ R(X)` kept up to date.
//!
//! `S` is the static term (its own operator tree over stored relations), `R` the recursive
//! term: an operator tree in which the CTE's name reads the [`WorkTable`], a leaf fed by this
//! operator. `R` must be linear in the work table (the reference appears once, under
//! projections, filters, unnests and joins on a side whose rows are kept — Postgres's rules,
//! checked by `compile`): then `R(A + B) = R(A) + R(B)`, so SQL's evaluation (each iteration
//! applies `R` to the previous iteration's rows only) equals feeding the work table the
//! growing result as a change stream, which is what an incremental `R` consumes. `R`'s
//! operators keep their state across commits: their work-table side holds `X`.
//!
//! Delta rule, `UNION ALL` (bags, Z-sets). A commit with base changes `ΔB` and static change
//! `ΔS`: `ΔX₀ = ΔS`; step `R` with `ΔB` and `ΔX₀` (only in the first round), then with
//! `ΔX_k`, where `ΔX_{k+1} = ΔR_k`, the change of `R`'s output, until it is empty. The
//! output is `ΔX = Σ ΔX_k`. `R`'s state is then `R(X + ΔX, B + ΔB)`, so
//! `X + ΔX = S + ΔS + R(X + ΔX)`: the fixpoint after the commit. Deletions are negative
//! weights and flow the same way (the sums are linear).
//!
//! Delta rule, `UNION` (sets). Monotone changes (every weight positive, in `ΔS` and in every
//! round's `ΔR`) are semi-naive evaluation: `ΔX_{k+1}` = the rows of `ΔR_k` not yet in `X`.
//! A retraction anywhere cannot be counted (rows of a cycle support each other), so the
//! fixpoint is derived again from the seeds: `R` is fed `−X` (its state keeps only the
//! base relations), then semi-naive from `S`; the output is the difference of the two
//! results. Its cost is the result's size, not the base relations' (they stay indexed).
//!
//! A recursion that does not end (a cycle under `UNION ALL`) stops after
//! [`MAX_ROUNDS`] rounds with 54001; the view fails with it, visible in `hw_catalog`.
//!
//! State: `X` and `S`, row → count (entries `0 ++ row` and `1 ++ row`), beside `R`'s and
//! `S`'s operators' own.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};

use super::consolidate;
use super::durable::{count_value, read_count, Dirty, OperatorState, StateWriter};
use super::errors::ErrorDelta;
use super::operator::{conform, indent, Deltas, Operator};
use crate::change::{ApplyMode, ChangeBatch, FastMap};
use crate::error::{Error, Result};

/// Rounds of one commit after which a recursion is taken not to end.
pub const MAX_ROUNDS: usize = 100_000;

/// Entry tags of the saved state.
const RESULT: u8 = 0;
const SEEDS: u8 = 1;

/// Per kept row: the boxed row's header and map slot.
const ROW_OVERHEAD: usize = 48;

/// The CTE's name inside its recursive term: the rows the recursion feeds back.
pub struct WorkTable {
    /// The id its rows carry in the deltas the recursion builds (not a stored relation's).
    pub id: u64,
    pub name: String,
    pub projection: Option<Vec<usize>>,
    pub schema: SchemaRef,
}

impl Operator for WorkTable {
    fn step(&mut self, inputs: &Deltas, _errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let Some(change) = inputs.get(&self.id) else { return Ok(None) };
        let columns = match &self.projection {
            Some(p) => p.iter().map(|&i| change.data.column(i).clone()).collect(),
            None => change.data.columns().to_vec(),
        };
        let data = conform(&self.schema, columns, change.len())?;
        Ok(Some(ChangeBatch { data, weights: change.weights.clone(), mode: ApplyMode::Delta }))
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, _out: &mut Vec<u64>) {}

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        out.push(format!("{}WorkTable {} (the recursion's rows, fed back)", indent(depth), self.name));
    }

    fn state_bytes(&self) -> usize {
        0
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        // Its rows are the recursion's result, saved by [`Recursive`]: listed as state so the
        // operators above it save theirs instead of rebuilding from stored relations.
        f(self);
    }
}

/// Nothing of its own: see [`WorkTable::visit_states`].
impl OperatorState for WorkTable {
    fn save(&mut self, _out: &mut StateWriter<'_>) {}

    fn load(&mut self, _key: &[u8], _value: &[u8]) -> Result<()> {
        Err(super::durable::damaged("an entry under a work table"))
    }
}

/// The recursive CTE (see the module).
pub struct Recursive {
    name: String,
    seeds_op: Box<dyn Operator>,
    step_op: Box<dyn Operator>,
    work: u64,
    distinct: bool,
    schema: SchemaRef,
    format: RowConverter,
    /// `X`: row → count (1 for `UNION`).
    result: FastMap<Box<[u8]>, i64>,
    /// `S`: the static term's rows → count.
    seeds: FastMap<Box<[u8]>, i64>,
    bytes: usize,
    dirty: Dirty,
}

/// Encoded rows with weights: a Z-set in the making.
type Rows = Vec<(Box<[u8]>, i64)>;

impl Recursive {
    /// The CTE `name` with static term `seeds_op` and recursive term `step_op`, whose
    /// [`WorkTable`] reads deltas under `work`; `distinct` for `UNION`.
    pub fn new(
        name: String,
        seeds_op: Box<dyn Operator>,
        step_op: Box<dyn Operator>,
        work: u64,
        distinct: bool,
        schema: SchemaRef,
    ) -> Result<Self> {
        let fields = schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok(Recursive {
            name,
            seeds_op,
            step_op,
            work,
            distinct,
            schema,
            format: RowConverter::new(fields)?,
            result: FastMap::default(),
            seeds: FastMap::default(),
            bytes: 0,
            dirty: Dirty::default(),
        })
    }

    fn encode(&self, change: Option<ChangeBatch>) -> Result<Rows> {
        let Some(change) = change.filter(|c| !c.is_empty()) else { return Ok(Vec::new()) };
        let data = conform(&self.schema, change.data.columns().to_vec(), change.len())?;
        let rows = self.format.convert_columns(data.columns())?;
        Ok(change.weights.iter().enumerate().map(|(i, w)| (rows.row(i).data().into(), *w)).collect())
    }

    fn batch(&self, rows: &Rows) -> Result<ChangeBatch> {
        let parser = self.format.parser();
        let columns = self.format.convert_rows(rows.iter().map(|(r, _)| parser.parse(r)))?;
        let data = conform(&self.schema, columns, rows.len())?;
        Ok(ChangeBatch { data, weights: rows.iter().map(|(_, w)| *w).collect(), mode: ApplyMode::Delta })
    }

    /// Adds `w` to `row`'s count in the result (`seeds`: in the seeds).
    fn add(&mut self, seeds: bool, row: &[u8], w: i64) {
        let tag = if seeds { SEEDS } else { RESULT };
        self.dirty.mark(|| entry_key(tag, row), self.bytes);
        let map = if seeds { &mut self.seeds } else { &mut self.result };
        let n = map.entry(row.into()).or_insert(0);
        if *n == 0 {
            self.bytes += row.len() + ROW_OVERHEAD;
        }
        *n += w;
        if *n == 0 {
            map.remove(row);
            self.bytes = self.bytes.saturating_sub(row.len() + ROW_OVERHEAD);
        }
    }

    /// One round of `R`: `work` into the work table, with `base` (the commit's changes of
    /// stored relations, first round only). `R`'s output change, consolidated.
    fn round(&mut self, base: Option<&Deltas>, now: i64, work: &Rows, errors: &mut ErrorDelta) -> Result<Rows> {
        let mut deltas = match base {
            Some(b) => {
                let mut d: Deltas = b.iter().map(|(id, c)| (*id, c.clone())).collect();
                d.set_now(now);
                d
            }
            None => Deltas::at(now),
        };
        if !work.is_empty() {
            deltas.insert(self.work, self.batch(work)?);
        }
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.step_op.step(&deltas, errors)?;
        let out = match out.filter(|c| !c.is_empty()) {
            Some(c) => Some(consolidate(c)?),
            None => None,
        };
        self.encode(out)
    }

    fn no_fixpoint(&self) -> Error {
        Error::TooComplex(format!(
            "WITH RECURSIVE {} did not end after {MAX_ROUNDS} rounds (a cycle under UNION ALL repeats forever; \
             UNION stops at rows already found)",
            self.name
        ))
    }

    /// `UNION ALL`: every change flows through `R` until it is empty.
    fn step_bag(&mut self, inputs: &Deltas, seeds: Rows, errors: &mut ErrorDelta) -> Result<Rows> {
        let mut emitted: Rows = Vec::new();
        let mut feed = seeds;
        let mut base = Some(inputs);
        let mut memory = crate::alloc::MemoryCheck::default();
        for _ in 0..MAX_ROUNDS {
            memory.tick(feed.len() + 1, "a recursive query's rounds")?;
            for (row, w) in &feed {
                self.add(false, row, *w);
            }
            let out = self.round(base.take(), inputs.now(), &feed, errors)?;
            emitted.append(&mut feed);
            if out.is_empty() {
                return Ok(emitted);
            }
            feed = out;
        }
        Err(self.no_fixpoint())
    }

    /// `UNION`: semi-naive while everything grows; derived again from the seeds otherwise.
    fn step_set(&mut self, inputs: &Deltas, seeds: Rows, errors: &mut ErrorDelta) -> Result<Rows> {
        let mut emitted: Rows = Vec::new();
        let mut base = Some(inputs);
        let mut feed = if seeds.iter().any(|(_, w)| *w < 0) { None } else { Some(self.new_rows(seeds)) };
        if feed.is_none() {
            // The base changes still go in (with nothing from the work table).
            self.round(base.take(), inputs.now(), &Vec::new(), errors)?;
        }
        let mut rounds = 0;
        let mut memory = crate::alloc::MemoryCheck::default();
        while let Some(work) = feed.take() {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(self.no_fixpoint());
            }
            memory.tick(work.len() + 1, "a recursive query's rounds")?;
            for (row, w) in &work {
                self.add(false, row, *w);
            }
            let out = self.round(base.take(), inputs.now(), &work, errors)?;
            emitted.extend(work);
            if out.iter().any(|(_, w)| *w < 0) {
                break;
            }
            let next = self.new_rows(out);
            if next.is_empty() {
                return Ok(emitted);
            }
            feed = Some(next);
        }
        // A retraction: derive the fixpoint again from the seeds.
        let all: Rows = self.result.iter().map(|(r, n)| (r.clone(), -n)).collect();
        for (row, w) in &all {
            self.add(false, row, *w);
        }
        self.round(None, inputs.now(), &all, errors)?;
        emitted.extend(all);
        let mut work: Rows = self.seeds.iter().filter(|(_, n)| **n > 0).map(|(r, _)| (r.clone(), 1)).collect();
        for _ in 0..MAX_ROUNDS {
            if work.is_empty() {
                return Ok(emitted);
            }
            memory.tick(work.len() + 1, "a recursive query's rounds")?;
            for (row, w) in &work {
                self.add(false, row, *w);
            }
            let out = self.round(None, inputs.now(), &work, errors)?;
            emitted.append(&mut work);
            // The base relations are fixed now and the work table only grows: `R` only adds.
            work = self.new_rows(out.into_iter().filter(|(_, w)| *w > 0).collect());
        }
        Err(self.no_fixpoint())
    }

    /// The distinct rows of `rows` with a positive weight that the result does not hold, each
    /// once with weight 1.
    fn new_rows(&self, rows: Rows) -> Rows {
        let mut seen: FastMap<Box<[u8]>, ()> = FastMap::default();
        rows.into_iter()
            .filter(|(r, w)| *w > 0 && !self.result.contains_key(r))
            .filter_map(|(r, _)| seen.insert(r.clone(), ()).is_none().then_some((r, 1)))
            .collect()
    }
}

fn entry_key(tag: u8, row: &[u8]) -> Box<[u8]> {
    let mut k = Vec::with_capacity(1 + row.len());
    k.push(tag);
    k.extend_from_slice(row);
    k.into()
}

impl Operator for Recursive {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let seeds_change = self.seeds_op.step(inputs, errors)?;
        let seeds = match seeds_change.filter(|c| !c.is_empty()) {
            Some(c) => self.encode(Some(consolidate(c)?))?,
            None => Vec::new(),
        };
        for (row, w) in &seeds {
            self.add(true, row, *w);
        }
        let emitted =
            if self.distinct { self.step_set(inputs, seeds, errors)? } else { self.step_bag(inputs, seeds, errors)? };
        if emitted.is_empty() {
            return Ok(Some(ChangeBatch::uniform(RecordBatch::new_empty(self.schema.clone()), 1)));
        }
        Ok(Some(consolidate(self.batch(&emitted)?)?))
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.seeds_op.inputs(out);
        self.step_op.inputs(out);
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        out.push(format!(
            "{}Recursive {} ({}; state: {} result rows, {} seed rows, {} bytes)",
            indent(depth),
            self.name,
            if self.distinct { "UNION" } else { "UNION ALL" },
            self.result.len(),
            self.seeds.len(),
            self.bytes
        ));
        self.seeds_op.explain(depth + 1, out);
        self.step_op.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.bytes + self.seeds_op.state_bytes() + self.step_op.state_bytes()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        f(self);
        self.seeds_op.visit_states(f);
        self.step_op.visit_states(f);
    }
}

/// Entries: `0 ++ row` → count in the result, `1 ++ row` → count in the seeds.
impl OperatorState for Recursive {
    fn save(&mut self, out: &mut StateWriter<'_>) {
        let Some(changed) = self.dirty.take(out) else {
            for (tag, map) in [(RESULT, &self.result), (SEEDS, &self.seeds)] {
                for (row, n) in map {
                    out.put(&entry_key(tag, row), count_value(*n));
                }
            }
            return;
        };
        for key in changed {
            let Some((&tag, row)) = key.split_first() else { continue };
            let map = if tag == SEEDS { &self.seeds } else { &self.result };
            out.put_count(&key, map.get(row).copied());
        }
    }

    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (&tag, row) = key.split_first().ok_or_else(|| super::durable::damaged("an empty recursion entry"))?;
        let n = read_count(value)?;
        let map = match tag {
            RESULT => &mut self.result,
            SEEDS => &mut self.seeds,
            _ => return Err(super::durable::damaged("a recursion entry of no kind")),
        };
        map.insert(row.into(), n);
        self.bytes += row.len() + ROW_OVERHEAD;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
