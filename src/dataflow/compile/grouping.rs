//! Aggregates and `GROUP BY GROUPING SETS / ROLLUP / CUBE`.
//!
//! A grouping-sets aggregate is the union of one aggregate per set, which is how it is
//! maintained: each set groups by its own expressions, with the others NULL and the set's
//! grouping id (DataFusion's `__grouping_id`: a bit per expression, set when the expression is
//! left out, the first expression highest; duplicate sets numbered above those bits) as a
//! constant key. The empty set, `()` (ROLLUP's grand total), is a global aggregate: one row
//! even over no input, as in Postgres.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, GroupingSet};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::{lit, Column};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::scalar::ScalarValue;

use super::{aggregate_kind, node, physical, refuse};
use crate::dataflow::aggregate::{AggKind, AggSpec, Aggregate};
use crate::dataflow::operator::{Operator, Project, Union};
use crate::error::Result;

/// Most expressions a CUBE may have (2^n sets).
const MAX_CUBE: usize = 8;

/// The aggregates of `a`, planned against its input.
pub(super) fn aggregates(a: &datafusion::logical_expr::Aggregate) -> Result<Vec<AggSpec>> {
    let in_schema = a.input.schema();
    let in_arrow: Schema = in_schema.as_arrow().clone();
    let mut aggs = Vec::new();
    for e in &a.aggr_expr {
        let e = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let props = ExecutionProps::new();
        let context = PhysicalPlanningContext::default();
        let lowered = LoweredAggregateBuilder::new(e, in_schema, &in_arrow, &props, &context).build()?;
        let (function, filter, order_by) = (lowered.aggregate, lowered.filter, lowered.order_bys);
        let mut arg_types = function
            .expressions()
            .iter()
            .map(|x| x.data_type(&in_arrow))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let kind = aggregate_kind(function.fun().name(), function.is_distinct(), &arg_types);
        // An ordered aggregate (`string_agg(x, ',' ORDER BY y)`, `array_agg(.. ORDER BY ..)`,
        // `percentile_cont(..) WITHIN GROUP (ORDER BY ..)`) gets the ORDER BY values after its
        // arguments and orders by them itself, as in DataFusion's own plans; for the
        // aggregates maintained otherwise, order does not matter.
        let mut ordering = Vec::new();
        if kind == AggKind::Generic {
            for o in &order_by {
                arg_types.push(o.expr.data_type(&in_arrow)?);
                ordering.push(o.expr.clone());
            }
        }
        aggs.push(AggSpec::new(kind, function, filter, ordering, &arg_types)?);
    }
    Ok(aggs)
}

/// For each set, which of the distinct grouping expressions it leaves out.
fn left_out(sets: &GroupingSet, distinct: &[&Expr]) -> Result<Vec<Vec<bool>>> {
    let leaves_out = |set: &[&Expr]| distinct.iter().map(|e| !set.contains(e)).collect::<Vec<bool>>();
    Ok(match sets {
        GroupingSet::GroupingSets(sets) => sets.iter().map(|s| leaves_out(&s.iter().collect::<Vec<_>>())).collect(),
        GroupingSet::Rollup(exprs) => {
            let exprs: Vec<&Expr> = exprs.iter().collect();
            (0..=exprs.len()).rev().map(|k| leaves_out(&exprs[..k])).collect()
        }
        GroupingSet::Cube(exprs) => {
            if exprs.len() > MAX_CUBE {
                return Err(refuse(format!("CUBE of more than {MAX_CUBE} expressions")));
            }
            (0..1u32 << exprs.len())
                .map(|mask| {
                    let set: Vec<&Expr> =
                        exprs.iter().enumerate().filter(|(i, _)| mask & (1 << i) == 0).map(|(_, e)| e).collect();
                    leaves_out(&set)
                })
                .collect()
        }
    })
}

/// `GROUP BY` grouping sets over `a`'s input: a union of one aggregate per set (see the
/// module); `schema` is the plan's: the distinct grouping expressions, `__grouping_id`, the
/// aggregates.
pub(super) fn grouping_sets(
    a: &datafusion::logical_expr::Aggregate,
    sets: &GroupingSet,
    schema: SchemaRef,
    tables: &mut super::Inputs,
) -> Result<Box<dyn Operator>> {
    let in_schema = a.input.schema();
    let distinct = sets.distinct_expr();
    let n = distinct.len();
    let id_type = schema.field(n).data_type().clone();
    let mut ordinals: HashMap<Vec<bool>, u64> = HashMap::new();
    let mut inputs: Vec<Box<dyn Operator>> = Vec::new();
    for set in left_out(sets, &distinct)? {
        let ordinal = ordinals.entry(set.clone()).or_insert(0);
        let semantic = set.iter().fold(0u64, |id, out| (id << 1) | u64::from(*out));
        let id = ScalarValue::UInt64(Some(semantic | (*ordinal << n))).cast_to(&id_type)?;
        *ordinal += 1;
        let nulls = |i: usize| ScalarValue::try_from(schema.field(i).data_type());
        let input = node(&a.input, tables)?;
        let aggs = aggregates(a)?;
        if set.iter().all(|out| *out) {
            // The grand total: a global aggregate, its keys NULL and its grouping id added.
            let totals = Arc::new(Schema::new(schema.fields()[n + 1..].to_vec()));
            let total = Aggregate::new(input, Vec::new(), aggs, totals.clone())?;
            let mut exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
            for i in 0..n {
                exprs.push(lit(nulls(i)?));
            }
            exprs.push(lit(id));
            for (j, f) in totals.fields().iter().enumerate() {
                exprs.push(Arc::new(Column::new(f.name(), j)));
            }
            inputs.push(Box::new(Project { input: Box::new(total), exprs, schema: schema.clone() }));
        } else {
            let mut groups = Vec::with_capacity(n + 1);
            for (i, (e, out)) in distinct.iter().zip(&set).enumerate() {
                groups.push(if *out { lit(nulls(i)?) } else { physical(e, in_schema)? });
            }
            groups.push(lit(id));
            inputs.push(Box::new(Aggregate::new(input, groups, aggs, schema.clone())?));
        }
    }
    Ok(Box::new(Union { inputs, schema }))
}
