//! Aggregate result types as Postgres's (issue 31): `sum(bigint)` is `numeric` and `avg` of
//! integers is `numeric`.
//!
//! DataFusion sums `bigint` into a wrapping `bigint` (two `9223372036854775807`s summed to
//! `-2`) and averages integers into a `double precision`. [`PostgresAggregateTypes`], a
//! function rewrite (DataFusion applies those before type coercion, which then retypes
//! every node above), casts the argument so that DataFusion's own aggregate computes
//! Postgres's type:
//!
//! - `sum(x bigint)` → `sum(x::numeric(38,0))`: exact, cannot overflow for fewer than 10^19
//!   rows, and `numeric` as Postgres's `sum(int8)`;
//! - `avg(x smallint|integer|bigint)` → `avg(x::numeric(31,12))`, which DataFusion answers as
//!   `numeric(35,16)`: Postgres's `avg` of integers is `numeric` with at least 16 significant
//!   digits, exactly 16 decimals whenever the average is between 1 and 9999 (`avg(1, 2)` is
//!   `1.5000000000000000` in both); outside that range the value is equal and only the
//!   number of trailing digits differs (Postgres's scale depends on each value's magnitude).
//!
//! Window aggregates (`sum(x) OVER (...)`) get the same types. `sum` of smaller integers is
//! already `bigint`, as in Postgres. The expression keeps its name (`sum(t.x)`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::average::Avg;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, ExprSchemable, GroupsAccumulator,
    ReversedUDAF, Signature,
};
use datafusion::prelude::SessionContext;

/// The function rewrite (see the module docs).
#[derive(Debug, Default)]
pub struct PostgresAggregateTypes;

/// Adds the rewrite to `ctx` (applied before type coercion).
pub fn register(ctx: &mut SessionContext) -> Result<()> {
    ctx.register_function_rewrite(Arc::new(PostgresAggregateTypes))
}

/// The type `name`'s single argument of type `arg` is cast to, if any.
fn argument_type(name: &str, arg: &DataType) -> Option<DataType> {
    match (name, arg) {
        ("sum", DataType::Int64 | DataType::UInt64) => Some(DataType::Decimal128(38, 0)),
        ("avg" | "mean", t) if t.is_integer() => Some(DataType::Decimal128(31, 12)),
        _ => None,
    }
}

/// `args` with its single argument cast for aggregate `name`, or `None` when it stays.
fn retyped(name: &str, args: &[Expr], schema: &DFSchema) -> Option<Vec<Expr>> {
    let [arg] = args else { return None };
    let to = argument_type(name, &arg.get_type(schema).ok()?)?;
    Some(vec![datafusion::logical_expr::cast(arg.clone(), to)])
}

impl FunctionRewrite for PostgresAggregateTypes {
    fn name(&self) -> &str {
        "headwater_postgres_aggregate_types"
    }

    fn rewrite(&self, expr: Expr, schema: &DFSchema, _config: &ConfigOptions) -> Result<Transformed<Expr>> {
        Ok(match expr {
            Expr::AggregateFunction(f) => match retyped(f.func.name(), &f.params.args, schema) {
                Some(args) => {
                    let mut f: AggregateFunction = f;
                    f.params.args = args;
                    Transformed::yes(Expr::AggregateFunction(f))
                }
                None => Transformed::no(Expr::AggregateFunction(f)),
            },
            Expr::WindowFunction(w) => {
                let name = match &w.fun {
                    WindowFunctionDefinition::AggregateUDF(u) => Some(u.name().to_string()),
                    _ => None,
                };
                match name.and_then(|n| retyped(&n, &w.params.args, schema)) {
                    Some(args) => {
                        let mut w: Box<WindowFunction> = w;
                        w.params.args = args;
                        Transformed::yes(Expr::WindowFunction(w))
                    }
                    None => Transformed::no(Expr::WindowFunction(w)),
                }
            }
            other => Transformed::no(other),
        })
    }
}

/// `avg` as DataFusion's, except that a `numeric` average is rounded to its last digit (half
/// away from zero) as Postgres's numeric division is, where DataFusion truncates:
/// `avg(1, 2, 2)` is `1.6666666666666667`, not `…6666`. The inner average is computed with
/// one more decimal and cast down (Arrow's decimal cast rounds). At precision 38 there is no
/// room for the extra digit and DataFusion's truncating average is kept.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RoundedAvg {
    inner: Avg,
}

/// Registers [`RoundedAvg`] as `avg` (and `mean`) in `ctx`, replacing DataFusion's.
pub fn register_avg(ctx: &SessionContext) {
    ctx.register_udaf(AggregateUDF::new_from_impl(RoundedAvg { inner: Avg::new() }));
}

/// The type the inner average computes in, when it differs from `out`.
fn finer(out: &DataType) -> Option<DataType> {
    match out {
        DataType::Decimal128(p, s) if *p < 38 && *s < 38 => Some(DataType::Decimal128(p + 1, s + 1)),
        _ => None,
    }
}

impl AggregateUDFImpl for RoundedAvg {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let out = args.return_field.data_type().clone();
        let Some(fine) = finer(&out) else { return self.inner.accumulator(args) };
        let mut inner_args = args;
        inner_args.return_field = Arc::new(inner_args.return_field.as_ref().clone().with_data_type(fine));
        Ok(Box::new(Rounded { inner: self.inner.accumulator(inner_args)?, out }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        let out = args.return_field.data_type().clone();
        let Some(fine) = finer(&out) else { return self.inner.create_groups_accumulator(args) };
        let mut inner_args = args;
        inner_args.return_field = Arc::new(inner_args.return_field.as_ref().clone().with_data_type(fine));
        Ok(Box::new(RoundedGroups { inner: self.inner.create_groups_accumulator(inner_args)?, out }))
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        self.inner.reverse_expr()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// An average computed one decimal finer, rounded on the way out.
#[derive(Debug)]
struct Rounded {
    inner: Box<dyn Accumulator>,
    out: DataType,
}

impl Accumulator for Rounded {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()?.cast_to(&self.out)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.retract_batch(values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

/// [`Rounded`] for grouped aggregation.
struct RoundedGroups {
    inner: Box<dyn GroupsAccumulator>,
    out: DataType,
}

impl GroupsAccumulator for RoundedGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner.update_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(cast(&self.inner.evaluate(emit_to)?, &self.out)?)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.inner.merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

/// `min` / `max` as DataFusion's, except that over floats they are grouped with the
/// row-at-a-time accumulator: DataFusion's grouped float accumulator mishandles NaN
/// (`{-1.25, NaN, 1e10}` grouped gave min 1e10 and max 1e10), while its plain one orders NaN
/// above every number as Postgres does (min −1.25, max NaN). Other types keep the grouped
/// accumulator.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NanSafe<T>(T);

/// Registers `min` and `max` as [`NanSafe`] in `ctx`, replacing DataFusion's.
pub fn register_min_max(ctx: &SessionContext) {
    use datafusion::functions_aggregate::min_max::{Max, Min};
    ctx.register_udaf(AggregateUDF::new_from_impl(NanSafe(Min::new())));
    ctx.register_udaf(AggregateUDF::new_from_impl(NanSafe(Max::new())));
}

impl<T: AggregateUDFImpl + PartialEq + Eq + std::hash::Hash> AggregateUDFImpl for NanSafe<T> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn signature(&self) -> &Signature {
        self.0.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.0.return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.0.accumulator(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        let float = args.expr_fields.first().is_some_and(|f| f.data_type().is_floating());
        !float && self.0.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        self.0.create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.0.create_sliding_accumulator(args)
    }

    fn is_descending(&self) -> Option<bool> {
        self.0.is_descending()
    }

    fn order_sensitivity(&self) -> datafusion::logical_expr::utils::AggregateOrderSensitivity {
        self.0.order_sensitivity()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.0.coerce_types(arg_types)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        self.0.reverse_expr()
    }

    fn value_from_stats(&self, args: &datafusion::logical_expr::StatisticsArgs) -> Option<ScalarValue> {
        self.0.value_from_stats(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.0.documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> datafusion::logical_expr::SetMonotonicity {
        self.0.set_monotonicity(data_type)
    }

    fn aliases(&self) -> &[String] {
        self.0.aliases()
    }
}
