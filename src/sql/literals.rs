//! Timestamp text the way Postgres reads it: `'2024-01-01 10:00'` (no seconds), `'2024-1-2'`.
//!
//! Arrow's string-to-timestamp cast wants seconds, so `TIMESTAMP '2024-01-01 10:00'`,
//! `'...'::timestamp`, `WHERE ts > '2024-01-01 10:00'` and `INSERT ... VALUES ('2024-01-01
//! 10:00')` failed with "error parsing time" where Postgres accepts them. Every one of those
//! is, once DataFusion has planned and coerced it, a cast of a text literal to a timestamp
//! type; [`TimestampLiterals`], an analyzer rule run after type coercion, gives such a literal
//! its `:00` seconds and two-digit month, day and hour. A literal used as text is never
//! touched.
//!
//! Integer literals typed as Postgres types them: `1` is `integer` when it fits in 32 bits
//! (`bigint` past that). DataFusion makes every integer literal Int64, so `SELECT 1` was
//! `bigint` to clients, `int_col + 1` was `bigint` and `2147483647 + 1` answered 2147483648
//! where Postgres fails with 22003 (issue 31). [`IntegerLiterals`], run *before* type
//! coercion, makes such literals Int32; coercion then widens them wherever the other side is
//! wider, as Postgres's operators do. `LIMIT`/`OFFSET` counts and `VALUES` rows keep Int64
//! (a `VALUES` node's schema is fixed when it is planned).

use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use regex::Regex;

/// The analyzer rule (see the module docs).
#[derive(Debug, Default)]
pub struct TimestampLiterals;

/// Puts [`IntegerLiterals`] first in `ctx`'s analyzer (before type coercion). Call it on a
/// fresh context, before any function is replaced: it rebuilds the state, and a rebuilt state
/// takes functions back from their aliases (see `session::with_memory_pool`).
pub fn register_first(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let existing = state.read().clone();
    let mut rules = vec![Arc::new(IntegerLiterals) as Arc<dyn AnalyzerRule + Send + Sync>];
    rules.extend(existing.analyzer().rules.iter().cloned());
    *state.write() =
        datafusion::execution::SessionStateBuilder::new_from_existing(existing).with_analyzer_rules(rules).build();
}

/// Whether [`IntegerLiterals`] may retype `plan`'s literals. Not in `INSERT`/`UPDATE`, whose
/// input rows must have the table's types as planned (`SET c = 100` on a `bigint` column is
/// the literal itself, uncast), nor where a recursive CTE's work table was typed from its
/// static term when planned (`SELECT k, 0 ... UNION ALL SELECT ..., r.d + 1`): those keep
/// DataFusion's `bigint` literals.
fn retypable(plan: &LogicalPlan) -> Result<bool> {
    if matches!(plan, LogicalPlan::Dml(_)) {
        return Ok(false);
    }
    let mut recursive = false;
    plan.apply_with_subqueries(|n| {
        recursive |= matches!(n, LogicalPlan::RecursiveQuery(_));
        Ok(if recursive {
            datafusion::common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion::common::tree_node::TreeNodeRecursion::Continue
        })
    })?;
    Ok(!recursive)
}

/// A `UNION`'s schema (fixed when it was planned, and kept by `recompute_schema`): a column
/// whose inputs all have one type now gets that type (`SELECT 1 UNION SELECT 2` is
/// `integer`); one whose inputs differ keeps the planned type, to which type coercion then
/// casts them (`integer` with `bigint` is `bigint`, as in Postgres).
fn union_of_inputs(u: datafusion::logical_expr::Union) -> Result<LogicalPlan> {
    let fields = u
        .schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            let first = u.inputs.first().map(|p| p.schema().field(i).data_type().clone());
            let same = first.filter(|t| u.inputs.iter().all(|p| p.schema().field(i).data_type() == t));
            let data_type = same.unwrap_or_else(|| field.data_type().clone());
            (qualifier.cloned(), Arc::new(field.as_ref().clone().with_data_type(data_type)))
        })
        .collect();
    let schema = datafusion::common::DFSchema::new_with_metadata(fields, u.schema.metadata().clone())?;
    Ok(LogicalPlan::Union(datafusion::logical_expr::Union { inputs: u.inputs, schema: Arc::new(schema) }))
}

/// Adds [`TimestampLiterals`] to `ctx`'s analyzer, after the built-in rules.
pub fn register(ctx: &SessionContext) {
    ctx.add_analyzer_rule(Arc::new(TimestampLiterals));
}

/// The analyzer rule that types integer literals as Postgres does (see the module docs).
#[derive(Debug, Default)]
pub struct IntegerLiterals;

impl AnalyzerRule for IntegerLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if !retypable(&plan)? {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| {
            if matches!(node, LogicalPlan::Limit(_) | LogicalPlan::Values(_)) {
                return Ok(Transformed::no(node));
            }
            // Columns above refer to this node's outputs by name (`sum(Int64(1))`): each
            // expression keeps its name. A grouping key keeps its type: the names of the keys
            // inside `ROLLUP (k, v % 2)` cannot be kept by an alias.
            let names = NamePreserver::new(&node);
            let keys = match &node {
                LogicalPlan::Aggregate(a) => a.group_expr.len(),
                _ => 0,
            };
            let mut at = 0;
            let node = node.map_expressions(|e| {
                at += 1;
                if at <= keys {
                    return Ok(Transformed::no(e));
                }
                let name = names.save(&e);
                e.transform_down(|e| match e {
                    // `count(*)` is `count(Int64(1))`, which the planner answers from
                    // statistics where it can: left as planned.
                    Expr::AggregateFunction(ref f) if f.func.name() == "count" => {
                        Ok(Transformed::new(e, false, TreeNodeRecursion::Jump))
                    }
                    Expr::WindowFunction(ref w) if w.fun.name() == "count" => {
                        Ok(Transformed::new(e, false, TreeNodeRecursion::Jump))
                    }
                    Expr::Literal(ScalarValue::Int64(Some(v)), meta) if i32::try_from(v).is_ok() => {
                        Ok(Transformed::yes(Expr::Literal(ScalarValue::Int32(Some(v as i32)), meta)))
                    }
                    e => Ok(Transformed::no(e)),
                })
                .map(|t| if t.transformed { t.update_data(|e| name.restore(e)) } else { t })
            })?;
            // A column's type may have changed below: every node's schema follows its inputs.
            node.transform_data(|n| match n {
                LogicalPlan::Union(u) => union_of_inputs(u).map(Transformed::yes),
                n => n.recompute_schema().map(Transformed::yes),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "headwater_integer_literals"
    }
}

/// `'2024-1-1 9:30'` → `'2024-01-01 09:30:00'`: two-digit month, day and hour, and seconds
/// (a fraction and a zone are kept); `None` when the text is already in that shape or is not
/// a date with an optional time.
pub fn with_seconds(text: &str) -> Option<String> {
    static SHAPE: OnceLock<Regex> = OnceLock::new();
    let shape = SHAPE.get_or_init(|| {
        Regex::new(
            r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?)?(\s*(?:[+-]\d{1,2}(?::?\d{2})?|Z|UTC)?)\s*$",
        )
        .expect("a valid pattern")
    });
    let c = shape.captures(text)?;
    let date = format!("{}-{:0>2}-{:0>2}", &c[1], &c[2], &c[3]);
    let zone = c.get(7).map_or("", |m| m.as_str());
    let out = match (c.get(4), c.get(5)) {
        (Some(h), Some(m)) => {
            let s = c.get(6).map_or("00", |s| s.as_str());
            format!("{date} {:0>2}:{}:{s}{zone}", h.as_str(), m.as_str())
        }
        _ => format!("{date}{zone}"),
    };
    (out != text.trim()).then_some(out)
}

fn is_timestamp(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _))
}

fn fixed(expr: &Expr) -> Option<Expr> {
    let text = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
            _,
        ) => with_seconds(s),
        _ => None,
    };
    let literal = |s: String| Box::new(Expr::Literal(ScalarValue::Utf8(Some(s)), None));
    match expr {
        Expr::Cast(Cast { expr, field }) if is_timestamp(field.data_type()) => {
            text(expr).map(|s| Expr::Cast(Cast { expr: literal(s), field: field.clone() }))
        }
        Expr::TryCast(TryCast { expr, field }) if is_timestamp(field.data_type()) => {
            text(expr).map(|s| Expr::TryCast(TryCast { expr: literal(s), field: field.clone() }))
        }
        _ => None,
    }
}

impl AnalyzerRule for TimestampLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform_up(|e| Ok(fixed(&e).map_or_else(|| Transformed::no(e), Transformed::yes)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "headwater_timestamp_literals"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_get_seconds() {
        assert_eq!(with_seconds("2024-01-01 10:00").as_deref(), Some("2024-01-01 10:00:00"));
        assert_eq!(with_seconds("2024-1-1T9:05").as_deref(), Some("2024-01-01 09:05:00"));
        assert_eq!(with_seconds("2024-1-2 09:30:15.5").as_deref(), Some("2024-01-02 09:30:15.5"));
        assert_eq!(with_seconds("2024-1-2").as_deref(), Some("2024-01-02"));
        assert_eq!(with_seconds("2024-01-01 10:00+02").as_deref(), Some("2024-01-01 10:00:00+02"));
        assert_eq!(with_seconds("2024-01-01 10:00:00"), None);
        assert_eq!(with_seconds("2024-01-01"), None);
        assert_eq!(with_seconds("10:00"), None);
    }
}
