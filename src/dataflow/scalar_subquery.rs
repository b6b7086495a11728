//! Uncorrelated scalar subqueries as joins, so a view can maintain them.
//!
//! DataFusion decorrelates correlated scalar subqueries into joins, but keeps an uncorrelated
//! one (`WHERE total = (SELECT max(total) FROM revenue)`, TPC-H Q11, Q15, Q22) as an
//! expression that its executor computes once per query. A view has to follow the subquery's
//! value as it changes, so before compiling, each such subquery in a `WHERE`/`HAVING`
//! (`Filter`), a select list (`Projection`) or an aggregate's arguments and plain `GROUP BY`
//! expressions (`Aggregate`) becomes a column of the subquery's result LEFT JOINed on nothing
//! to the node's input:
//!
//! ```text
//! Filter: p(x, (<subquery>))          Projection: <the input's columns>
//!   Input              ==>              Filter: p(x, __hw_scalar_0.v)
//!                                         Left Join (no keys): Input, (<subquery>) AS __hw_scalar_0
//! ```
//!
//! A subquery with no row joins as NULL, as SQL says. One that may return several rows (where
//! SQL raises an error only when it does) is refused: only subqueries whose plan yields at
//! most one row are rewritten — a global aggregate (no GROUP BY), maybe under a projection,
//! a filter (`HAVING`) or a sort. The join's delta rule makes a change of the subquery's value
//! re-emit every input row (−old +new), the cost of that value changing.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder};

use crate::error::{Error, Result};

/// `plan` with every uncorrelated scalar subquery of its filters and projections joined in
/// (see the module). Other plans come back as they are.
pub fn as_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut next = 0usize;
    Ok(plan.transform_up(|node| rewrite(node, &mut next))?.data)
}

fn uncorrelated(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|e| {
        found |= matches!(e, Expr::ScalarSubquery(s) if s.outer_ref_columns.is_empty());
        Ok(if found {
            datafusion::common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion::common::tree_node::TreeNodeRecursion::Continue
        })
    });
    found
}

/// True when `plan` yields at most one row whatever its inputs hold.
fn at_most_one_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
        LogicalPlan::Projection(p) => at_most_one_row(&p.input),
        LogicalPlan::Filter(f) => at_most_one_row(&f.input),
        LogicalPlan::Sort(s) => at_most_one_row(&s.input),
        LogicalPlan::SubqueryAlias(a) => at_most_one_row(&a.input),
        LogicalPlan::EmptyRelation(_) => true,
        _ => false,
    }
}

fn rewrite(node: LogicalPlan, next: &mut usize) -> datafusion::error::Result<Transformed<LogicalPlan>> {
    let (input, exprs) = match &node {
        LogicalPlan::Filter(f) if uncorrelated(&f.predicate) => (f.input.clone(), vec![f.predicate.clone()]),
        LogicalPlan::Projection(p) if p.expr.iter().any(uncorrelated) => (p.input.clone(), p.expr.clone()),
        // In an aggregate's arguments (`sum(v + (SELECT max(w) FROM b))`) or plain GROUP BY
        // expressions: joined to the aggregate's input, which keeps its rows one for one.
        LogicalPlan::Aggregate(a)
            if a.group_expr.iter().chain(&a.aggr_expr).any(uncorrelated)
                && !a.group_expr.iter().any(|g| matches!(g, Expr::GroupingSet(_))) =>
        {
            (a.input.clone(), a.group_expr.iter().chain(&a.aggr_expr).cloned().collect())
        }
        _ => return Ok(Transformed::no(node)),
    };
    let mut joined: LogicalPlan = input.as_ref().clone();
    let mut new_exprs = Vec::with_capacity(exprs.len());
    for e in exprs {
        let replaced = e.transform_up(|e| match e {
            Expr::ScalarSubquery(s) if s.outer_ref_columns.is_empty() => {
                if !at_most_one_row(&s.subquery) {
                    return Err(datafusion::error::DataFusionError::External(Box::new(Error::FeatureNotSupported(
                        "a scalar subquery that may return more than one row in a materialized view (aggregate it, \
                         e.g. max(...), so that it returns one)"
                            .into(),
                    ))));
                }
                let sub = as_joins(s.subquery.as_ref().clone())
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                let alias = format!("__hw_scalar_{next}");
                *next += 1;
                let sub = LogicalPlanBuilder::from(sub).alias(alias.as_str())?.build()?;
                let column: Column = sub.schema().columns().into_iter().next().ok_or_else(|| {
                    datafusion::error::DataFusionError::Plan("a scalar subquery without a column".into())
                })?;
                joined = LogicalPlanBuilder::from(std::mem::take(&mut joined))
                    .join_on(sub, JoinType::Left, [datafusion::logical_expr::lit(true)])?
                    .build()?;
                Ok(Transformed::yes(Expr::Column(column)))
            }
            e => Ok(Transformed::no(e)),
        })?;
        new_exprs.push(replaced);
    }
    let schema = node.schema().clone();
    let rewritten = match node {
        LogicalPlan::Filter(_) => {
            let predicate = new_exprs.pop().expect("one predicate").data;
            // The filter's own columns: the joined subquery columns leave again.
            let columns: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
            LogicalPlanBuilder::from(joined).filter(predicate)?.project(columns)?.build()?
        }
        LogicalPlan::Aggregate(a) => {
            // A rewritten expression keeps the output name it had, which the plan above reads.
            let mut exprs: Vec<Expr> = new_exprs
                .into_iter()
                .enumerate()
                .map(|(i, t)| if t.transformed { t.data.alias(schema.field(i).name()) } else { t.data })
                .collect();
            let aggregates = exprs.split_off(a.group_expr.len());
            LogicalPlan::Aggregate(datafusion::logical_expr::Aggregate::try_new(
                std::sync::Arc::new(joined),
                exprs,
                aggregates,
            )?)
        }
        _ => {
            let exprs: Vec<Expr> = new_exprs
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    if !t.transformed {
                        return t.data;
                    }
                    let (qualifier, field) = schema.qualified_field(i);
                    t.data.alias_qualified(qualifier.cloned(), field.name())
                })
                .collect();
            LogicalPlanBuilder::from(joined).project(exprs)?.build()?
        }
    };
    Ok(Transformed::yes(rewritten))
}

/// Whether `plan` holds an uncorrelated scalar subquery anywhere (for tests and messages).
#[cfg(test)]
fn holds_one(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|n| {
        found |= n.expressions().iter().any(uncorrelated);
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn optimized(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (k INT, v INT)").await.unwrap();
        ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap()
    }

    #[tokio::test]
    async fn global_aggregates_become_left_joins_and_keep_the_schema() {
        for sql in [
            "SELECT k FROM t WHERE v > (SELECT avg(v) FROM t)",
            "SELECT k, (SELECT max(v) FROM t) AS top FROM t",
            "SELECT k, sum(v) FROM t GROUP BY k HAVING sum(v) > (SELECT sum(v) / 10 FROM t)",
        ] {
            let plan = optimized(sql).await;
            assert!(holds_one(&plan), "{sql}: {plan}");
            let joined = as_joins(plan.clone()).unwrap();
            assert!(!holds_one(&joined), "{sql}: {joined}");
            assert!(joined.display_indent().to_string().contains("Left Join"), "{sql}: {joined}");
            assert_eq!(joined.schema().as_arrow(), plan.schema().as_arrow(), "{sql}");
        }
    }

    /// The joins they become, stepped through random commits against the query from scratch.
    #[tokio::test]
    async fn scalar_subqueries_equal_recomputation() {
        for (i, sql) in [
            "SELECT k, v FROM t WHERE v > (SELECT avg(v) FROM u)",
            "SELECT k, (SELECT max(v) FROM u) AS top, (SELECT count(*) FROM u WHERE g = 1) AS n FROM t",
            "SELECT g, sum(v) AS s FROM t GROUP BY g HAVING sum(v) > (SELECT sum(v) / 10 FROM u)",
            "SELECT k FROM t WHERE v = (SELECT max(v) FROM t)",
            "SELECT g, sum(v + (SELECT max(v) FROM u)) AS s, count(*) FILTER (WHERE v > (SELECT avg(v) FROM u)) AS n \
             FROM t GROUP BY g",
        ]
        .into_iter()
        .enumerate()
        {
            crate::dataflow::testing::check(sql, 131 + i as u64, crate::dataflow::testing::STEPS).await;
        }
    }

    #[tokio::test]
    async fn subqueries_that_may_return_several_rows_are_refused() {
        let plan = optimized("SELECT k FROM t WHERE v > (SELECT v FROM t WHERE k = 1)").await;
        let e = as_joins(plan).unwrap_err();
        assert_eq!(e.sqlstate(), "0A000", "{e}");
    }
}
