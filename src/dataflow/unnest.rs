//! `unnest(...)` in a view's select list (`SELECT id, unnest(string_to_array(tags, ',')) AS
//! tag FROM posts`): each input row becomes the rows of its lists.
//!
//! Delta rule: unnest is applied row by row, so it is linear: Δ(unnest R) = unnest(ΔR), each
//! output row with the weight of the input row it came from. A deleted row retracts exactly
//! the rows it produced (the same lists give the same rows). No state.
//!
//! The rows are made by DataFusion's own `UnnestExec` (the same code that answers the query
//! from scratch, so the view cannot differ from it in NULL or empty-list handling), run over
//! the delta with the weights as one more column, which the executor repeats like any
//! column that is not unnested.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::UnnestOptions;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::unnest::{ListUnnest, UnnestExec};
use datafusion::physical_plan::ExecutionPlan;

use super::durable::OperatorState;
use super::errors::ErrorDelta;
use super::operator::{conform, indent, Deltas, Operator};
use crate::change::{ApplyMode, ChangeBatch};
use crate::error::Result;

/// The column the weights ride in through the executor.
const WEIGHT: &str = "__hw_weight";

/// Unnests list (and struct) columns of its input's rows.
pub struct Unnest {
    input: Box<dyn Operator>,
    lists: Vec<ListUnnest>,
    structs: Vec<usize>,
    options: UnnestOptions,
    /// The output rows' schema (every field nullable).
    schema: SchemaRef,
}

impl Unnest {
    /// Unnests `lists` (input column, depth) and `structs` (input columns) of `input`'s
    /// rows into rows of `schema`, as DataFusion's planner describes them.
    pub fn new(
        input: Box<dyn Operator>,
        lists: Vec<ListUnnest>,
        structs: Vec<usize>,
        options: UnnestOptions,
        schema: SchemaRef,
    ) -> Self {
        Unnest { input, lists, structs, options, schema }
    }

    fn with_weight(schema: &Schema) -> SchemaRef {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(WEIGHT, DataType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    fn unnest(&self, change: ChangeBatch) -> Result<Option<ChangeBatch>> {
        let input_schema = Self::with_weight(change.data.schema().as_ref());
        let mut columns = change.data.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(change.weights)));
        let batch = RecordBatch::try_new(input_schema.clone(), columns)?;
        let source = MemorySourceConfig::try_new_exec(&[vec![batch]], input_schema, None)?;
        let exec = UnnestExec::new(
            source,
            self.lists.clone(),
            self.structs.clone(),
            Self::with_weight(&self.schema),
            self.options.clone(),
        )?;
        let stream = exec.execute(0, Arc::new(TaskContext::default()))?;
        // Memory in, memory out: the stream never waits on I/O.
        let batches = futures::executor::block_on(datafusion::physical_plan::common::collect(stream))?;
        let out_schema = exec.schema();
        let all = concat_batches(&out_schema, &batches)?;
        if all.num_rows() >= crate::alloc::MemoryCheck::EVERY {
            crate::alloc::check_process_memory("unnest")?;
        }
        if all.num_rows() == 0 {
            return Ok(None);
        }
        let last = all.num_columns() - 1;
        let weights = all.column(last).as_primitive::<Int64Type>().values().to_vec();
        let data = conform(&self.schema, all.columns()[..last].to_vec(), all.num_rows())?;
        Ok(Some(ChangeBatch { data, weights, mode: ApplyMode::Delta }))
    }
}

impl Operator for Unnest {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let Some(change) = self.input.step(inputs, errors)? else { return Ok(None) };
        if change.data.num_rows() == 0 {
            return Ok(None);
        }
        self.unnest(change)
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.input.inputs(out)
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        let lists: Vec<String> =
            self.lists.iter().map(|l| format!("#{} depth {}", l.index_in_input_schema, l.depth)).collect();
        out.push(format!("{}Unnest [{}] (linear: each row's lists, with its weight)", indent(depth), lists.join(", ")));
        self.input.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.input.state_bytes()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        self.input.visit_states(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::operator::Scan;
    use datafusion::arrow::array::{Array, ListArray, StringArray};
    use datafusion::arrow::datatypes::Int32Type;

    /// A random multiset of rows with lists, as insert/delete deltas; the view's rows
    /// (summed weights of the unnested deltas) equal unnest of the surviving rows.
    #[test]
    fn unnest_of_deltas_equals_unnest_of_the_result() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        let input_schema =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true), Field::new("l", list.clone(), true)]));
        let schema =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true), Field::new("e", DataType::Int32, true)]));
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let make_list = |next: &mut dyn FnMut(u64) -> u64| -> Option<Vec<Option<i32>>> {
            match next(5) {
                0 => None,
                1 => Some(Vec::new()),
                n => Some((0..n).map(|_| if next(6) == 0 { None } else { Some(next(4) as i32) }).collect()),
            }
        };
        let mut live: Vec<(String, Option<Vec<Option<i32>>>)> = Vec::new();
        let mut view: std::collections::BTreeMap<(String, Option<i32>), i64> = Default::default();
        for round in 0..200 {
            // Insert a row or delete a live one.
            let (row, weight) = if live.is_empty() || next(3) > 0 {
                let row = (format!("r{round}"), make_list(&mut next));
                live.push(row.clone());
                (row, 1)
            } else {
                let i = next(live.len() as u64) as usize;
                (live.swap_remove(i), -1)
            };
            let ids = StringArray::from(vec![row.0.clone()]);
            let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![row.1.clone()]);
            let data = RecordBatch::try_new(input_schema.clone(), vec![Arc::new(ids), Arc::new(lists)]).unwrap();
            let scan = Scan { table: 1, name: "t".into(), projection: None, schema: input_schema.clone() };
            let mut op = Unnest::new(
                Box::new(scan),
                vec![ListUnnest { index_in_input_schema: 1, depth: 1 }],
                Vec::new(),
                UnnestOptions::new().with_preserve_nulls(false),
                schema.clone(),
            );
            let deltas: Deltas = [(1u64, ChangeBatch::uniform(data, weight))].into_iter().collect();
            if let Some(out) = op.step(&deltas, &mut ErrorDelta::default()).unwrap() {
                let ids = out.data.column(0).as_string::<i32>();
                let es = out.data.column(1).as_primitive::<Int32Type>();
                for (i, w) in out.weights.iter().enumerate() {
                    let e = es.is_valid(i).then(|| es.value(i));
                    *view.entry((ids.value(i).to_string(), e)).or_default() += w;
                }
                view.retain(|_, w| *w != 0);
            }
            // From scratch: every element of every live row's list.
            let mut want: std::collections::BTreeMap<(String, Option<i32>), i64> = Default::default();
            for (id, l) in &live {
                for e in l.iter().flatten() {
                    *want.entry((id.clone(), *e)).or_default() += 1;
                }
            }
            assert_eq!(view, want, "after round {round}");
        }
    }
}
