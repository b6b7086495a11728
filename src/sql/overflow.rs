//! Integer arithmetic that fails on overflow, as Postgres's does (issue 31: `bigint + 1` and
//! `5::int * 1000000000::int` wrapped around silently — `705032704` — where Postgres says
//! 22003 "integer out of range").
//!
//! DataFusion evaluates `+`, `-` and `*` of integers with Arrow's wrapping kernels.
//! [`CheckedIntegerArithmetic`], an analyzer rule run after type coercion (so both sides have
//! one integer type), replaces each such operation with a function calling Arrow's checked
//! kernel, which fails on overflow; the expression keeps its name. Integer division already
//! fails on overflow (`i64::MIN / -1`) and by zero; float division by zero, `Infinity` in
//! DataFusion, fails with 22012 as in Postgres; numeric division gets Postgres's precision
//! ([`super::numeric_division`]).

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

/// The analyzer rule (see the module docs).
#[derive(Debug, Default)]
pub struct CheckedIntegerArithmetic;

/// Adds the rule to `ctx`'s analyzer (after type coercion: analyzer rules added later run
/// after the built-in ones).
pub fn register(ctx: &SessionContext) {
    ctx.add_analyzer_rule(Arc::new(CheckedIntegerArithmetic));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Subtract,
    Multiply,
    /// Float division, which fails on a zero divisor as Postgres's float8 division does
    /// (Arrow's kernel answers `Infinity` / `NaN`).
    Divide,
}

/// `a op b` of one integer type, failing on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    op: Op,
    signature: Signature,
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "hw_checked_add",
            Op::Subtract => "hw_checked_subtract",
            Op::Multiply => "hw_checked_multiply",
            Op::Divide => "hw_checked_divide",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (a, b) = (&arrays[0], &arrays[1]);
        let out = match self.op {
            Op::Add => numeric::add(a, b),
            Op::Subtract => numeric::sub(a, b),
            Op::Multiply => numeric::mul(a, b),
            Op::Divide => {
                if divides_by_zero(a, b)? {
                    return Err(datafusion::error::DataFusionError::ArrowError(
                        Box::new(datafusion::arrow::error::ArrowError::DivideByZero),
                        None,
                    ));
                }
                numeric::div(a, b)
            }
        }?;
        Ok(ColumnarValue::Array(out))
    }
}

fn udf(op: Op) -> Arc<ScalarUDF> {
    static UDFS: OnceLock<[Arc<ScalarUDF>; 4]> = OnceLock::new();
    let udfs = UDFS.get_or_init(|| {
        [Op::Add, Op::Subtract, Op::Multiply, Op::Divide].map(|op| {
            Arc::new(ScalarUDF::new_from_impl(Checked { op, signature: Signature::any(2, Volatility::Immutable) }))
        })
    });
    udfs[op as usize].clone()
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

/// Whether some row divides a value (not NULL) by zero.
fn divides_by_zero(a: &ArrayRef, b: &ArrayRef) -> Result<bool> {
    let b = datafusion::arrow::compute::cast(b, &DataType::Float64)?;
    let b = b.as_primitive::<Float64Type>();
    Ok((0..b.len()).any(|i| b.is_valid(i) && b.value(i) == 0.0 && a.is_valid(i)))
}

/// The checked form of `e` when it is integer `+`, `-` or `*`.
fn checked(e: &Expr, schema: &DFSchema) -> Option<Expr> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else { return None };
    let op = match op {
        Operator::Plus => Op::Add,
        Operator::Minus => Op::Subtract,
        Operator::Multiply => Op::Multiply,
        Operator::Divide => Op::Divide,
        _ => return None,
    };
    let (l, r) = (left.get_type(schema).ok()?, right.get_type(schema).ok()?);
    if op == Op::Divide && super::numeric_division::quotient_type(&l, &r).is_some() {
        let args = vec![left.as_ref().clone(), right.as_ref().clone()];
        return Some(Expr::ScalarFunction(ScalarFunction::new_udf(super::numeric_division::udf(), args)));
    }
    let wanted = match op {
        Op::Divide => l.is_floating() && l == r,
        _ => is_integer(&l) && l == r,
    };
    if !wanted {
        return None;
    }
    Some(Expr::ScalarFunction(ScalarFunction::new_udf(udf(op), vec![left.as_ref().clone(), right.as_ref().clone()])))
}

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            // The schema the node's expressions are typed against: its inputs' columns.
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            let names = NamePreserver::new(&node);
            // Top-down: each `checked` types the original operands (cheap for operators),
            // not the replaced ones, whose type comes from their names — quadratic per node
            // and cubic over a 500-term sum (57 s in a debug build; 4 s top-down).
            node.map_expressions(|e| {
                let name = names.save(&e);
                e.transform_down(|e| Ok(checked(&e, &schema).map_or_else(|| Transformed::no(e), Transformed::yes)))
                    .map(|t| t.update_data(|e| name.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "headwater_checked_integer_arithmetic"
    }
}
