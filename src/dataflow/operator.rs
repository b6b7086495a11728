//! The operator interface and the stateless operators.
//!
//! An [`Operator`] turns the deltas of one commit into the delta of its output. Stateless
//! operators are linear, so their delta rule is the operator itself:
//!
//! - [`Scan`]: Δout = the changed table's delta (projected), or nothing;
//! - [`Project`]: Δ(π e) = π e (Δin), weights unchanged (a projection of a Z-set keeps
//!   multiplicities, so two rows that become equal simply both stay);
//! - [`Filter`]: Δ(σ p) = σ p (Δin) (NULL counts as false, like WHERE);
//! - [`Union`]: Δ(A ⊎ B) = ΔA ⊎ ΔB (UNION ALL; UNION is a DISTINCT above it);
//! - [`Constant`]: a VALUES list or a `SELECT` without FROM: its rows once, at creation.
//!
//! Rows on which an expression fails become errors instead of output rows
//! ([`super::errors`]): Δerrors = the failing rows of Δin, linear as well.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatchOptions};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch, take};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::durable::OperatorState;
use super::errors::{evaluate_guarded, ErrorDelta};
use crate::change::{ApplyMode, ChangeBatch};
use crate::error::{Error, Result};
use crate::state::table::PinnedRows;

/// The deltas of one commit, by table (or view) id (the map derefs to them), and, for a
/// commit a view replays rather than sees live, its inputs' rows after it.
///
/// A live commit steps the views before it applies to any table, so an operator reading an
/// input's current rows reads them as of *before* the commit (a join side backed by its
/// table's rows, [`super::join`]). A view's first fill and the commits queued while it fills
/// are stepped later, when the tables have moved on: those carry each input's rows after the
/// commit in [`Deltas::after`].
#[derive(Clone, Default)]
pub struct Deltas {
    changes: HashMap<u64, ChangeBatch>,
    after: HashMap<u64, PinnedRows>,
    /// The engine clock's reading for this commit ([`super::clock`]).
    now: i64,
}

impl Deltas {
    /// No changes yet, in a commit at `now` (the engine clock, [`super::clock`]).
    pub fn at(now: i64) -> Self {
        Deltas { now, ..Deltas::default() }
    }

    /// The engine clock's reading for this commit: what temporal filters compare with.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Sets the commit's clock reading.
    pub fn set_now(&mut self, now: i64) {
        self.now = now;
    }

    /// Input `id`'s rows after this commit, when the commit is replayed (see the type).
    pub fn after(&self, id: u64) -> Option<&PinnedRows> {
        self.after.get(&id)
    }

    /// Marks the commit as replayed: `after` holds every input's rows after it.
    pub fn set_after(&mut self, after: HashMap<u64, PinnedRows>) {
        self.after = after;
    }
}

impl std::ops::Deref for Deltas {
    type Target = HashMap<u64, ChangeBatch>;

    fn deref(&self) -> &Self::Target {
        &self.changes
    }
}

impl std::ops::DerefMut for Deltas {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.changes
    }
}

impl FromIterator<(u64, ChangeBatch)> for Deltas {
    fn from_iter<I: IntoIterator<Item = (u64, ChangeBatch)>>(iter: I) -> Self {
        Deltas { changes: iter.into_iter().collect(), after: HashMap::new(), now: 0 }
    }
}

/// One node of a view's dataflow.
pub trait Operator: Send + Sync {
    /// The output delta for this commit's input deltas (`None`: nothing changed). Stateful
    /// operators update their state as they go.
    /// Rows of the input deltas on which an expression fails leave the delta and become
    /// `errors` ([`super::errors`]).
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>>;
    /// The schema of the output rows (every field nullable: internal batches never rely on it).
    fn schema(&self) -> SchemaRef;
    /// The ids of the tables and views this subtree reads.
    fn inputs(&self, out: &mut Vec<u64>);
    /// One line per node, indented by depth (EXPLAIN MATERIALIZED VIEW).
    fn explain(&self, depth: usize, out: &mut Vec<String>);
    /// Bytes of state kept by this subtree (approximate, for reporting).
    fn state_bytes(&self) -> usize;
    /// Calls `f` with each stateful operator of this subtree, parents before children (the
    /// order numbers their saved state: [`super::durable`]).
    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState));
}

/// `schema` with every field nullable (their metadata kept: it marks Postgres types kept as
/// text, `crate::types::PgText`).
pub fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true).with_metadata(f.metadata().clone()))
            .collect::<Vec<_>>(),
    ))
}

/// Evaluates `expr` on `batch` into an array of `batch.num_rows()` values.
pub fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    Ok(expr.evaluate(batch)?.into_array(batch.num_rows())?)
}

/// A batch of `schema` from `columns`, cast where a type differs (after coercions, a union
/// input or an expression may produce a narrower type than the node declares).
pub fn conform(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { cast(&c, f.data_type()) })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
}

/// The rows of `columns` at `indices`, in that order.
pub fn take_rows(columns: &[ArrayRef], indices: &[u32]) -> Result<Vec<ArrayRef>> {
    let indices = datafusion::arrow::array::UInt32Array::from(indices.to_vec());
    Ok(columns.iter().map(|c| take(c, &indices, None)).collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Keeps the rows where `mask` is true (NULL is false).
pub fn filter_change(change: &ChangeBatch, mask: &BooleanArray) -> Result<ChangeBatch> {
    let data = filter_record_batch(&change.data, mask)?;
    let weights = change
        .weights
        .iter()
        .enumerate()
        .filter(|(i, _)| mask.is_valid(*i) && mask.value(*i))
        .map(|(_, w)| *w)
        .collect();
    Ok(ChangeBatch { data, weights, mode: ApplyMode::Delta })
}

fn pad(depth: usize) -> String {
    "  ".repeat(depth)
}

/// Reads one table's (or view's) delta.
pub struct Scan {
    pub table: u64,
    pub name: String,
    pub projection: Option<Vec<usize>>,
    pub schema: SchemaRef,
}

impl Operator for Scan {
    fn step(&mut self, inputs: &Deltas, _errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let Some(change) = inputs.get(&self.table) else { return Ok(None) };
        let columns = match &self.projection {
            Some(p) => p.iter().map(|&i| change.data.column(i).clone()).collect(),
            // The columns the view was compiled with: a captured table may have gained
            // columns since (upstream ADD COLUMN appends them).
            None => change.data.columns()[..self.schema.fields().len().min(change.data.num_columns())].to_vec(),
        };
        let data = conform(&self.schema, columns, change.len())?;
        Ok(Some(ChangeBatch { data, weights: change.weights.clone(), mode: ApplyMode::Delta }))
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        out.push(self.table);
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        out.push(format!("{}Scan {} (changes of the stored relation)", pad(depth), self.name));
    }

    fn state_bytes(&self) -> usize {
        0
    }

    fn visit_states(&mut self, _f: &mut dyn FnMut(&mut dyn OperatorState)) {}
}

/// Evaluates expressions row by row.
pub struct Project {
    pub input: Box<dyn Operator>,
    pub exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub schema: SchemaRef,
}

impl Operator for Project {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let Some(change) = self.input.step(inputs, errors)? else { return Ok(None) };
        let (change, columns) = evaluate_guarded(&self.exprs, change, errors)?;
        let data = conform(&self.schema, columns, change.len())?;
        Ok(Some(ChangeBatch { data, weights: change.weights, mode: ApplyMode::Delta }))
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.input.inputs(out)
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        let exprs: Vec<String> = self.exprs.iter().map(|e| e.to_string()).collect();
        out.push(format!("{}Project [{}]", pad(depth), exprs.join(", ")));
        self.input.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.input.state_bytes()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        self.input.visit_states(f)
    }
}

/// Keeps the rows a predicate accepts.
pub struct Filter {
    pub input: Box<dyn Operator>,
    pub predicate: Arc<dyn PhysicalExpr>,
}

impl Operator for Filter {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let Some(change) = self.input.step(inputs, errors)? else { return Ok(None) };
        let (change, mut mask) = evaluate_guarded(std::slice::from_ref(&self.predicate), change, errors)?;
        let mask = mask.pop().expect("one predicate");
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::Internal(format!("filter {} is not boolean", self.predicate)))?;
        Ok(Some(filter_change(&change, mask)?))
    }

    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.input.inputs(out)
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        out.push(format!("{}Filter {}", pad(depth), self.predicate));
        self.input.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.input.state_bytes()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        self.input.visit_states(f)
    }
}

/// UNION ALL of its inputs.
pub struct Union {
    pub inputs: Vec<Box<dyn Operator>>,
    pub schema: SchemaRef,
}

impl Operator for Union {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let mut batches = Vec::new();
        let mut weights = Vec::new();
        for input in &mut self.inputs {
            if let Some(c) = input.step(inputs, errors)? {
                batches.push(conform(&self.schema, c.data.columns().to_vec(), c.len())?);
                weights.extend(c.weights);
            }
        }
        if batches.is_empty() {
            return Ok(None);
        }
        let data = concat_batches(&self.schema, &batches)?;
        Ok(Some(ChangeBatch { data, weights, mode: ApplyMode::Delta }))
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.inputs.iter().for_each(|i| i.inputs(out))
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        out.push(format!("{}UnionAll", pad(depth)));
        self.inputs.iter().for_each(|i| i.explain(depth + 1, out));
    }

    fn state_bytes(&self) -> usize {
        self.inputs.iter().map(|i| i.state_bytes()).sum()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        self.inputs.iter_mut().for_each(|i| i.visit_states(f))
    }
}

/// Rows that never change (VALUES, SELECT without FROM): emitted by the first step.
pub struct Constant {
    pub rows: Option<RecordBatch>,
    pub schema: SchemaRef,
}

impl Operator for Constant {
    fn step(&mut self, _inputs: &Deltas, _errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        Ok(self.rows.take().map(|data| ChangeBatch::uniform(data, 1)))
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, _out: &mut Vec<u64>) {}

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        out.push(format!("{}Constant", pad(depth)));
    }

    fn state_bytes(&self) -> usize {
        0
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        f(self)
    }
}

/// A constant's state is whether its rows were emitted: it saves nothing, and a restored
/// one has emitted them (they are in the restored result).
impl OperatorState for Constant {
    fn save(&mut self, _out: &mut super::durable::StateWriter<'_>) {}

    fn load(&mut self, _key: &[u8], _value: &[u8]) -> Result<()> {
        Ok(())
    }

    fn restored(&mut self) {
        self.rows = None;
    }
}

/// Indentation for [`Operator::explain`] lines.
pub fn indent(depth: usize) -> String {
    pad(depth)
}

#[cfg(test)]
mod tests {
    /// Project, Filter, Union and Scan against DataFusion, over random deltas.
    #[tokio::test]
    async fn stateless_operators_match_a_recomputation() {
        for (i, sql) in [
            "SELECT k, v + g AS s FROM t WHERE v > 3",
            "SELECT k, g FROM t WHERE g IS NULL OR v < 5 UNION ALL SELECT k, v FROM u",
            "SELECT g, v * 2 AS w FROM t",
        ]
        .into_iter()
        .enumerate()
        {
            crate::dataflow::testing::check(sql, 11 + i as u64, crate::dataflow::testing::STEPS).await;
        }
    }
}
